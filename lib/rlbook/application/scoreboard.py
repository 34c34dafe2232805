"""The workbook scoreboard: every notebook's primary claim and verdict from the runs in ``outputs/``, with the
secondary claims under one workbook-wide false-discovery control.

For each notebook the newest finished run is read (the newest of a chosen profile when there is one,
:func:`newest_runs`).  Per notebook: its primary claim, the paper's effect, our effect with its 95% interval,
the mde (smallest effect found with 80% power at one-sided 0.025), the verdict and whether the claim is
*within reach here*, *needs a GPU* (the gpu profile's design would detect the paper's effect) or *needs the
paper's scale* (:func:`reach`).  Secondary rows of every notebook get Benjamini-Hochberg q-values across the
whole workbook (:func:`workbook_secondaries`); a notebook's own report adjusts only within the notebook.

``rlbook scoreboard`` writes ``outputs/scoreboard.md`` and ``outputs/scoreboard.html``.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from rlbook.analysis import stats
from rlbook.training import runs

COLUMNS = ["notebook", "profile", "claim", "paper effect", "effect", "95% CI", "mde", "verdict", "reach", "time",
           "report"]


def newest_runs(outputs: Path, profile: str | None = None) -> list[runs.RunRecord]:
    """Per notebook, the newest finished run with claim rows (of ``profile`` when given and one exists)."""
    by_nb: dict[str, list[runs.RunRecord]] = {}
    for r in runs.find_runs(outputs):
        if r.status == "ok" and r.results.get("claims"):
            by_nb.setdefault(r.notebook, []).append(r)
    out = []
    for recs in by_nb.values():
        same = [r for r in recs if profile is None or r.manifest.get("profile") == profile]
        out.append((same or recs)[-1])
    return sorted(out, key=lambda r: r.notebook)


def _num(x: Any, fmt: str = "+.3g") -> str:
    return format(x, fmt) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else "-"


def reach(row: Mapping[str, Any], gpu_design: tuple[int, int] | None = None) -> str:
    """Whether the claim's effect is within this design's reach: the paper's numeric effect against the mde
    measured here; else against the mde the gpu profile's ``(seeds, units)`` would have with the measured
    variance components; a verdict either way means the question was settled here."""
    if row.get("verdict") in ("replicated", "not replicated"):
        return "settled here"
    if row.get("verdict") == "untestable in this regime":
        return "regime not reached here"
    effect = row.get("paper_effect")
    mde = row.get("mde", math.nan)
    if not isinstance(effect, (int, float)) or isinstance(effect, bool) or not effect:
        return f"open (mde {_num(mde, '.3g')}; the paper gives no effect on this scale)"
    if math.isfinite(mde) and mde <= abs(effect):
        return "within reach here"
    if gpu_design is not None:
        comps = stats.Components.from_row(row)
        if comps.var_resid + comps.var_unit + comps.var_seed > 0 and comps.mde(*gpu_design) <= abs(effect):
            return f"needs a GPU (gpu profile: {gpu_design[0]} seeds x {gpu_design[1]} units)"
    return "needs the paper's scale"


def _gpu_design(notebook: str, row: Mapping[str, Any], root: Path | None) -> tuple[int, int] | None:
    from rlbook.training import params as rparams

    try:
        p = rparams.resolve(notebook, "gpu", params_dir=(root / "params") if root else None)
    except Exception:  # noqa: BLE001 - a notebook without a gpu profile: no gpu design to offer
        return None
    units = int(p.get("eval_size") or p.get("task", {}).get("eval_size", 0) or row.get("n_units") or 1)
    if not str(row.get("metric", "")).startswith(("final_", "accuracy_gain")):
        units = int(row.get("n_units") or 1)
    return int(p.get("seeds", 1)), max(units, 1)


def wall_time(seconds: Any) -> str:
    """A run's wall time as people read it: ``"45 s"``, ``"27 min"``, ``"1 h 05 min"``; ``"-"`` when unknown."""
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or not math.isfinite(seconds):
        return "-"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def run_time(manifest: dict[str, Any], results: dict[str, Any]) -> str:
    """The run's wall time, and how many of its training runs came from the run cache: a notebook re-run on cached
    runs takes seconds, which is not what training it costs (``"19 s (9 of 9 runs from the cache)"``)."""
    time = wall_time(manifest.get("wall_s"))
    trained, reused = results.get("runs_trained"), results.get("runs_reused")
    if isinstance(reused, int) and isinstance(trained, int) and reused > 0:
        return f"{time} ({reused} of {trained + reused} runs from the cache)"
    return time


def primary_table(records: Sequence[runs.RunRecord], root: Path | None = None) -> pd.DataFrame:
    """One row per notebook: its primary claim (or a note that the run has none), the run's wall time (with the
    share of its runs read from the cache, :func:`run_time`) and its report's path
    (``<notebook>/<run id>/report.html`` under the outputs folder)."""
    rows = []
    for rec in records:
        claims = [c for c in rec.results["claims"] if isinstance(c, dict)]
        prim = next((c for c in claims if c.get("role") == "primary" or c.get("primary")), None)
        where = {"time": run_time(rec.manifest, rec.results), "report": f"{rec.notebook}/{rec.dir.name}/report.html"}
        if prim is None:
            rows.append({"notebook": rec.notebook, "profile": rec.manifest.get("profile") or "-",
                         "claim": "(this run has no primary claim: re-run it)", **where})
            continue
        paper = prim.get("paper_effect")
        rows.append({"notebook": rec.notebook, "profile": rec.manifest.get("profile") or "-",
                     "claim": prim["claim"],
                     "paper effect": _num(paper) if isinstance(paper, (int, float)) else (prim.get("paper") or "-"),
                     "effect": _num(prim.get("effect")),
                     "95% CI": (f"[{_num(prim.get('ci_low'))}, {_num(prim.get('ci_high'))}]"
                                if _num(prim.get("ci_low")) != "-" else "no interval"),
                     "mde": _num(prim.get("mde"), ".3g"), "verdict": prim.get("verdict", "-"),
                     "reach": reach(prim, _gpu_design(rec.notebook, prim, root)), **where})
    return pd.DataFrame(rows, columns=COLUMNS)


def workbook_secondaries(records: Sequence[runs.RunRecord], alpha: float = stats.ALPHA) -> pd.DataFrame:
    """Every secondary claim of every notebook's run with a Benjamini-Hochberg q-value across the workbook and
    the verdict it gives (rows without a verdict in their notebook, e.g. untestable, stay out)."""
    rows = []
    for rec in records:
        for c in rec.results["claims"]:
            if isinstance(c, dict) and c.get("role", "secondary") == "secondary" and c.get("verdict") not in \
                    stats.NO_FAMILY and isinstance(c.get("p_value"), (int, float)):
                rows.append({"notebook": rec.notebook, "claim": c["claim"], "effect": c.get("effect"),
                             "p": float(c["p_value"]), "p_opposite": float(c.get("p_opposite", math.nan))})
    df = pd.DataFrame(rows, columns=["notebook", "claim", "effect", "p", "p_opposite"])
    if df.empty:
        return df.assign(q=[], verdict=[])
    df["q"] = stats.benjamini_hochberg(df["p"].to_numpy())
    q_opp = stats.benjamini_hochberg(df["p_opposite"].fillna(1.0).to_numpy())
    df["verdict"] = stats.verdicts_from_p(df["q"].to_numpy(), q_opp, alpha)
    return df


def markdown(primary: pd.DataFrame, secondary: pd.DataFrame) -> str:
    def table(df: pd.DataFrame) -> str:
        if df.empty:
            return "(none)\n"
        cols = list(df.columns)
        lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for r in df.astype(str).to_numpy():
            lines.append("| " + " | ".join(v.replace("|", "/") for v in r) + " |")
        return "\n".join(lines) + "\n"

    counts = primary["verdict"].value_counts().to_dict() if len(primary) else {}
    head = (f"# rlbook scoreboard\n\n{len(primary)} notebooks with runs; primary verdicts: "
            + (", ".join(f"{n} {v}" for v, n in counts.items()) or "none") + ".\n\n")
    sec = secondary.assign(q=secondary["q"].map(lambda x: _num(x, ".3g")),
                           effect=secondary["effect"].map(_num)).drop(columns=["p", "p_opposite"]) \
        if len(secondary) else secondary
    return (head + "## Primary claims (one per notebook, tested alone at one-sided 0.025)\n\n" + table(primary)
            + "\n## Secondary claims (Benjamini-Hochberg across the whole workbook)\n\n" + table(sec))


def html_page(primary: pd.DataFrame, secondary: pd.DataFrame) -> str:
    style = ("body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;"
             "font-size:14px}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}"
             "th{background:#f3f3f3}h2{font-size:1.1em;margin-top:1.5em}")
    sec = secondary.drop(columns=["p", "p_opposite"], errors="ignore")
    body = ("<h2>Primary claims: one per notebook, tested alone at one-sided 0.025</h2>"
            + primary.to_html(index=False, escape=True, na_rep="-")
            + "<h2>Secondary claims: Benjamini-Hochberg across the whole workbook</h2>"
            + sec.to_html(index=False, escape=True, na_rep="-", float_format=lambda x: f"{x:.3g}"))
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>rlbook scoreboard</title><style>{style}"
            f"</style></head><body><h1>rlbook scoreboard</h1><p>{html.escape(str(len(primary)))} notebooks with "
            f"runs. <a href='index.html'>All runs</a></p>{body}</body></html>")


def write(outputs: Path, profile: str | None = None, root: Path | None = None) -> tuple[Path, Path]:
    """``outputs/scoreboard.md`` and ``outputs/scoreboard.html`` from the newest run of every notebook."""
    records = newest_runs(outputs, profile)
    primary, secondary = primary_table(records, root), workbook_secondaries(records)
    md, page = Path(outputs) / "scoreboard.md", Path(outputs) / "scoreboard.html"
    md.write_text(markdown(primary, secondary))
    page.write_text(html_page(primary, secondary))
    return md, page
