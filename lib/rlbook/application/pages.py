"""The pages a reader opens: a run's ``report.html`` and ``outputs/index.html``.

``report.html`` is the executed notebook rendered by nbconvert with the ``rlbook_report`` template (code cells
folded), after :func:`clean_outputs` (no stderr, progress bars or widgets); then :func:`prerender_html_math` turns
every ``$...$`` / ``$$...$$`` of the page's text into MathML by ``latex2mathml``, which browsers draw natively: the
page loads no MathJax, no require.js, no widget manager, nothing from the network).  Above the notebook sits
:func:`header_html`: notebook, profile, model, seeds, held-out problems, date, git sha and run id, with a banner on
smoke runs ("plumbing test, not a result").

``python -m rlbook.application.pages papermill RUN_DIR PID NOTEBOOK_OUT OUTPUTS`` finishes a run folder of a notebook that
the ``papermill`` command executed directly (started by :func:`rlbook.training.runs.start`): it waits for papermill
(``PID``) to end, copies the executed notebook into the folder, writes ``report.html``, marks the manifest and
rebuilds the index, like ``rlbook run``.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from rlbook.training import runs

TEMPLATES = Path(__file__).resolve().parent / "templates"
_PROGRESS = re.compile(r"\d+%\|.*\||\d+/\d+ \[\d")  # a tqdm bar or counter
SMOKE_PROFILES = ("smoke",)


# ---------------------------------------------------------------- what the notebook shows


def clean_outputs(nb: Any) -> Any:
    """The notebook as a reader wants it in the report: no stderr (warnings, loader logs, progress bars), no
    progress widgets (nor the notebook's saved widget state), no progress-bar lines in printed output; what the
    cells computed stays."""
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        kept = []
        for out in cell.get("outputs", []):
            if out.output_type == "stream":
                if out.name == "stderr":
                    continue
                lines = [ln for ln in out.text.replace("\r", "\n").split("\n") if not _PROGRESS.search(ln)]
                out.text = "\n".join(ln for ln in lines if ln.strip()) + "\n"
                if not out.text.strip():
                    continue
            data = out.get("data", {})
            if "application/vnd.jupyter.widget-view+json" in data:
                continue
            kept.append(out)
        cell.outputs = kept
    return nb


# $$...$$ (any lines), \begin{equation|align|...}...\end{...}, then $...$ on one line with no space inside
# either dollar (pandoc's rule, so "$5 and $6" stays text); code spans and fenced blocks are left alone.
_CODE = re.compile(r"(```.*?```|~~~.*?~~~|`[^`\n]+`)", re.S)
_DISPLAY = re.compile(r"\$\$(.+?)\$\$|\\begin\{(equation|align|gather|multline)(\*?)\}(.+?)\\end\{\2\3\}", re.S)
_INLINE = re.compile(r"(?<![\\$\w])\$(?=\S)([^$\n]+?)(?<=\S)\$(?![\w$])")


def latex_to_mathml(tex: str, display: bool) -> str:
    """MathML for ``tex`` (``latex2mathml``); the TeX itself in a ``<code>`` when it cannot be converted."""
    from latex2mathml.converter import convert

    try:
        return convert(tex.strip(), display="block" if display else "inline")
    except Exception:  # an unsupported command: show the source rather than lose the equation
        return f"<code>{html.escape(tex.strip())}</code>"


_SKIP = re.compile(r"(<(pre|code|script|style|textarea)\b.*?</\2>)", re.S | re.I)


def prerender_html_math(page: str) -> str:
    """An nbconvert HTML page with the TeX math of its text (``$...$``, ``$$...$$``, ``\\begin{align}``, which
    nbconvert's Markdown renderer leaves verbatim for MathJax) replaced by MathML; ``pre``, ``code``,
    ``script`` and ``style`` elements are left alone.  Done on the HTML, not the Markdown: MathML put into the
    Markdown is torn apart by the Markdown renderer's HTML handling."""
    def convert(tex: str, display: bool) -> str:
        return latex_to_mathml(html.unescape(tex), display)

    def display_math(m: re.Match[str]) -> str:
        tex = m.group(1) if m.group(1) is not None else m.group(4)
        if m.group(2) == "align":
            tex = r"\begin{aligned}" + tex + r"\end{aligned}"
        return convert(" ".join(tex.split()), True)

    parts = _SKIP.split(page)
    out = []
    i = 0
    while i < len(parts):
        text = parts[i]
        text = _DISPLAY.sub(display_math, text)
        out.append(_INLINE.sub(lambda m: convert(m.group(1), False), text))
        if i + 1 < len(parts):
            out.append(parts[i + 1])  # the skipped element, verbatim
        i += 3  # split() yields: text, whole element, tag name, text, ...
    return "".join(out)


# ---------------------------------------------------------------- the header


def run_facts(manifest: dict[str, Any]) -> dict[str, str]:
    """What a reader needs to know about the run that produced a report, as display strings."""
    p = manifest.get("params") or {}
    task = p.get("task") if isinstance(p.get("task"), dict) else {}
    train = p.get("train") if isinstance(p.get("train"), dict) else {}
    seeds = p.get("seeds", train.get("seed", manifest.get("seed")))
    if isinstance(seeds, int) and "seeds" in p:
        seeds_text = f"{seeds} seed{'s' if seeds != 1 else ''}"
    elif isinstance(seeds, list):
        seeds_text = f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''} ({', '.join(map(str, seeds))})"
    else:
        seeds_text = "1 run" + (f" (seed {seeds})" if seeds is not None else "")
    problems = p.get("eval_size", task.get("eval_size"))
    sha = (manifest.get("git_sha") or "no git")[:7] + (" (uncommitted changes)" if manifest.get("git_dirty") else "")
    facts = {
        "notebook": str(manifest.get("notebook") or "-"),
        "profile": str(manifest.get("profile") or "defaults (= cpu)"),
        "model": str(p.get("model", "-")),
        "task": str(p.get("task_preset") or task.get("name") or "-"),
        "seeds": seeds_text,
        "held-out problems": "-" if problems is None else str(problems),
        "training steps": "-" if train.get("steps") is None else str(train["steps"]),
        "date (UTC)": (manifest.get("start_time") or "-")[:16].replace("T", " "),
        "git sha": sha,
        "device": str(manifest.get("device") or "-"),
        "run id": str(manifest.get("run_id") or "-"),
    }
    return {k: v for k, v in facts.items() if v != "-" or k in ("notebook", "run id")}


def is_smoke(manifest: dict[str, Any]) -> bool:
    return manifest.get("profile") in SMOKE_PROFILES


def header_html(manifest: dict[str, Any]) -> str:
    """The report's header: the run's facts as one line of labelled fields, and the smoke banner."""
    facts = run_facts(manifest)
    items = "".join(f"<span><b>{html.escape(k)}</b> {html.escape(v)}</span>" for k, v in facts.items())
    banner = ""
    if is_smoke(manifest):
        nb = html.escape(facts["notebook"])
        banner = ("<p class='rlbook-smoke'><b>smoke: plumbing test, not a result.</b> This run used the "
                  "<code>smoke</code> profile (a few steps, tiny settings) to check that the notebook runs end to "
                  "end; its numbers and verdicts say nothing about the method, and the text below describes the "
                  f"full study. For the study: <code>rlbook run {nb} --profile cpu</code>.</p>")
    return f"<header class='rlbook-header'><div class='rlbook-facts'>{items}</div>{banner}</header>"


def page_title(manifest: dict[str, Any]) -> str:
    facts = run_facts(manifest)
    return f"{facts['notebook']} · {facts['profile']} · {facts.get('date (UTC)', '')} · rlbook report"


def write_report(notebook_path: Path, out: Path, manifest: dict[str, Any] | None = None) -> None:
    """Render an executed notebook to a self-contained ``report.html``: a header from ``manifest`` (default: the
    ``manifest.json`` next to ``out``), code cells folded, outputs cleaned, math pre-rendered."""
    import nbformat
    from nbconvert import HTMLExporter

    manifest = runs.read_json(Path(out).parent / runs.MANIFEST) if manifest is None else manifest
    exporter = HTMLExporter(template_name="rlbook_report", extra_template_basedirs=[str(TEMPLATES)],
                            embed_images=True, exclude_input_prompt=True, exclude_output_prompt=True)
    nb = clean_outputs(nbformat.read(notebook_path, as_version=4))
    nb.metadata["title"] = page_title(manifest)
    body, _ = exporter.from_notebook_node(nb, resources={"rlbook_header": header_html(manifest)})
    _write_text(Path(out), prerender_html_math(body))


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


# ---------------------------------------------------------------- outputs/index.html


def primary_verdict(results: dict[str, Any]) -> str:
    """The verdict of the run's primary claim (``primary: true`` in its row), else of its only claim, else the
    verdict counts; "-" without claims."""
    rows = [r for r in results.get("claims") or [] if isinstance(r, dict) and r.get("verdict")]
    primary = [r for r in rows if r.get("primary")] or (rows if len(rows) == 1 else [])
    if primary:
        return "; ".join(str(r["verdict"]) for r in primary)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["verdict"]] = counts.get(r["verdict"], 0) + 1
    return ", ".join(f"{n} {v}" for v, n in counts.items()) or "-"


INDEX_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}
h1{font-size:1.5em;margin-bottom:.2em} p.sub{color:#666;margin-top:0}
table{border-collapse:collapse;width:100%;font-size:.92em}
th{background:#f3f4f6;text-align:left;position:sticky;top:0}
td,th{padding:6px 10px;border-bottom:1px solid #e5e7eb;vertical-align:top}
tr:hover td{background:#fafafa} td.num{font-variant-numeric:tabular-nums}
.st-ok{color:#15803d}.st-failed{color:#b91c1c}.st-interrupted,.st-running{color:#b45309}
.pf-smoke{color:#6b7280;font-style:italic} .v-replicated{color:#15803d} .v-not-replicated{color:#b91c1c}
code{font-size:.95em}
"""


def _index_row(rec: runs.RunRecord, outputs: Path) -> str:
    m = rec.manifest
    report = rec.dir / "report.html"
    link = (f'<a href="{html.escape(report.relative_to(Path(outputs).absolute()).as_posix())}">report</a>' if report.is_file()
            else "<span title='no report.html'>-</span>")
    profile = m.get("profile") or "-"
    verdict = primary_verdict(rec.results)
    sha = (m.get("git_sha") or "-")[:7] + ("+dirty" if m.get("git_dirty") else "")
    cells = [
        f"<b>{html.escape(rec.notebook)}</b>",
        html.escape((m.get("start_time") or "-")[:16].replace("T", " ")),
        f"<span class='pf-{html.escape(profile)}'>{html.escape(profile)}</span>",
        f"<span class='st-{html.escape(rec.status)}'>{html.escape(rec.status)}</span>",
        f"<span class='v-{html.escape(verdict.replace(' ', '-'))}'>{html.escape(verdict)}</span>",
        link,
        f"<code>{html.escape(rec.dir.name)}</code> <small>{html.escape(sha)}</small>",
    ]
    return "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def write_index(outputs: Path) -> Path:
    """Rebuild ``outputs/index.html``: every run, newest first: notebook, date, profile, status, the primary
    claim's verdict and a link to its report."""
    outputs = Path(outputs)
    outputs.mkdir(parents=True, exist_ok=True)
    records = list(reversed(runs.find_runs(outputs)))
    rows = "\n".join(_index_row(rec, outputs) for rec in records)
    head = "".join(f"<th>{h}</th>" for h in
                   ["notebook", "date (UTC)", "profile", "status", "primary verdict", "report", "run id, git sha"])
    page = (
        "<!doctype html>\n<html lang='en'><head><meta charset='utf-8'><title>rlbook runs</title>"
        f"<style>{INDEX_CSS}</style></head>\n<body><h1>rlbook runs</h1>\n"
        f"<p class='sub'>{len(records)} run{'s' if len(records) != 1 else ''}, newest first. "
        "Smoke runs are plumbing tests, not results. Every notebook's primary claim and verdict: "
        "<a href='scoreboard.html'>the scoreboard</a> (<code>rlbook scoreboard</code> writes it).</p>\n"
        f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{rows}\n</tbody>\n</table></body></html>\n"
    )
    path = outputs / "index.html"
    _write_text(path, page)
    return path


# ---------------------------------------------------------------- finishing a direct papermill run


def _papermill_status(nb: Any) -> tuple[str, str | None]:
    """``("ok", None)``, or ``("failed", error)`` from papermill's record of the failing cell."""
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                status = "interrupted" if out.get("ename") == "KeyboardInterrupt" else "failed"
                return status, f"{out.get('ename')}: {out.get('evalue')}"
    if nb.metadata.get("papermill", {}).get("exception"):
        return "failed", "papermill recorded an exception"
    return "ok", None


def finish_papermill(run_dir: Path, pid: int, notebook_out: Path, outputs: Path, poll_s: float = 0.5,
                     timeout_s: float = 7 * 24 * 3600) -> str:
    """Wait for papermill (``pid``) to end, then finish ``run_dir`` from its output notebook; returns the status."""
    import nbformat

    start = time.monotonic()
    while runs.pid_alive(pid) and time.monotonic() - start < timeout_s:
        time.sleep(poll_s)
    if not Path(notebook_out).is_file():
        runs.finish(run_dir, "failed", error=f"papermill wrote no notebook at {notebook_out}")
        write_index(outputs)
        return "failed"
    manifest = runs.read_json(run_dir / runs.MANIFEST)
    target = run_dir / f"{manifest.get('notebook') or Path(notebook_out).stem}.ipynb"
    shutil.copyfile(notebook_out, target)
    status, error = _papermill_status(nbformat.read(target, as_version=4))
    finished = runs.finish(run_dir, status, error=error)
    try:
        write_report(target, run_dir / "report.html", finished)
    except Exception as e:  # a report problem must not hide the run's own status
        print(f"rlbook: warning: report.html not written: {e}", file=sys.stderr)
    write_index(outputs)
    print(f"rlbook: {status}: {run_dir}")
    return status


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 5 or args[0] != "papermill":
        print("usage: python -m rlbook.application.pages papermill RUN_DIR PID NOTEBOOK_OUT OUTPUTS", file=sys.stderr)
        return 2
    status = finish_papermill(Path(args[1]), int(args[2]), Path(args[3]), Path(args[4]))
    return 0 if status == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
