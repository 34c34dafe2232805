"""rlbook.application.pages: the report's header and smoke banner, math without network, the styled index, file modes."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import nbformat
from rlbook.application import pages
from rlbook.training import runs

MANIFEST = {"notebook": "bnpo", "run_id": "20261207T010000Z-abc1234-0badf00d", "profile": "smoke",
            "params": {"model": "tiny-random", "seeds": 3, "eval_size": 8, "task": {"name": "composite"},
                       "train": {"steps": 2}},
            "git_sha": "abc1234def", "git_dirty": False, "start_time": "2026-12-07T01:00:00.000+00:00",
            "device": "cpu"}


def test_header_names_notebook_profile_model_seeds_problems_date_sha_and_run_id() -> None:
    head = pages.header_html(MANIFEST)
    for text in ("bnpo", "smoke", "tiny-random", "3 seeds", "<b>held-out problems</b> 8", "2026-12-07 01:00",
                 "abc1234", MANIFEST["run_id"]):
        assert text in head, text
    assert "abc1234def" not in head  # seven characters of the sha


def test_smoke_banner_only_on_smoke_runs() -> None:
    assert "plumbing test, not a result" in pages.header_html(MANIFEST)
    assert "plumbing test" not in pages.header_html({**MANIFEST, "profile": "cpu"})


def test_one_training_run_reads_as_one_run_not_one_seeds() -> None:
    facts = pages.run_facts({**MANIFEST, "params": {"train": {"seed": 0, "steps": 12}}})
    assert facts["seeds"] == "1 run (seed 0)"


def test_prerender_math_makes_whole_mathml_and_leaves_code_and_prices() -> None:
    page = ("<p>GRPO: $A_i = r_i - \\bar r$ costs $5 and $6; <code>x = $y$</code></p>\n"
            "<p>$$\\frac{a}{b} &lt; 1$$</p><pre>$z$</pre>")
    out = pages.prerender_html_math(page)
    assert out.count("<math") == 2 and 'display="block"' in out and 'display="inline"' in out
    assert "$5 and $6" in out and "<code>x = $y$</code>" in out and "<pre>$z$</pre>" in out
    # the elements nest (a fraction of a over b, then "<" unescaped into an operator), not empty tags in a row
    assert "<mfrac><mrow><mi>a</mi></mrow><mrow><mi>b</mi></mrow></mfrac>" in out and "<mo>&#x0003C;</mo>" in out
    assert "<mi></mi>" not in out


def test_unconvertible_tex_is_shown_as_code_not_lost() -> None:
    assert "<code>" in pages.latex_to_mathml("\\notacommand{", display=False)


def _notebook(path: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# BNPO\n\n$$A_i = \\frac{r_i - p}{f(p)}$$"),
                nbformat.v4.new_code_cell("print(1)", outputs=[
                    nbformat.v4.new_output("stream", name="stdout", text="1\n"),
                    nbformat.v4.new_output("stream", name="stderr", text="IProgress not found\n")])]
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    nbformat.write(nb, path)
    return path


def test_report_has_header_title_mathml_and_loads_nothing_from_the_network(tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    pages.write_report(_notebook(tmp_path / "bnpo.ipynb"), out, MANIFEST)
    page = out.read_text()
    assert re.search(r"<title>bnpo · smoke · 2026-12-07 01:00 · rlbook report</title>", page)
    assert "plumbing test, not a result" in page and "<math" in page
    assert "<mfrac><mrow><msub><mi>r</mi><mi>i</mi></msub>" in page and "<mi></mi>" not in page  # whole MathML
    assert not re.search(r"<script[^>]+src=", page)  # no MathJax, require.js or widget manager
    assert "mathjax" not in page.lower() and "IProgress" not in page


def test_index_is_a_styled_table_with_notebook_date_profile_primary_verdict_and_link(tmp_path: Path) -> None:
    run_dir, _ = runs.create("bnpo", {"seeds": 3}, tmp_path, tmp_path, profile="cpu")
    (run_dir / "report.html").write_text("<html></html>")
    runs.write_json(run_dir / runs.RESULTS, {"claims": [
        {"claim": "variance", "verdict": "inconclusive"},
        {"claim": "accuracy", "verdict": "replicated", "primary": True}]})
    runs.finish(run_dir, "ok")
    scratch = runs.scratch_dir(tmp_path, "bnpo")  # a hand run's scratch folder is not a run
    runs.write_json(scratch / runs.MANIFEST, {"notebook": "bnpo", "status": "ok"})
    page = pages.write_index(tmp_path).read_text()
    assert "<style>" in page and "<th>primary verdict</th>" in page and "href='scoreboard.html'" in page
    assert f'href="bnpo/{run_dir.name}/report.html"' in page
    assert ">replicated<" in page and ">inconclusive<" not in page and ">cpu<" in page
    assert "1 run," in page and "_scratch" not in page


def test_json_outputs_are_as_readable_as_other_files(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        runs.write_json(tmp_path / "results.json", {"a": 1})
        (tmp_path / "metrics.csv").write_text("a\n")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "results.json").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "metrics.csv").stat().st_mode) == 0o644
