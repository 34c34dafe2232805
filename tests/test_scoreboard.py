"""rlbook scoreboard: the primary claim of every notebook's newest run, workbook-wide BH for the secondaries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rlbook.application import scoreboard
from rlbook.application.cli import main


def _run(outputs: Path, nb: str, name: str, profile: str, claims: list[dict], start: str,
         wall_s: float | None = None) -> None:
    d = outputs / nb / name
    d.mkdir(parents=True)
    (d / "manifest.json").write_text(json.dumps({"notebook": nb, "status": "ok", "profile": profile,
                                                 "start_time": start, "wall_s": wall_s}))
    (d / "results.json").write_text(json.dumps({"claims": claims}))


def _claim(text: str, role: str, p: float, verdict: str, **kw) -> dict:
    return {"claim": text, "role": role, "p_value": p, "p_opposite": 1 - p, "verdict": verdict, "effect": 0.1,
            "ci_low": 0.02, "ci_high": 0.18, "mde": 0.05, "var_seed": 0.0, "var_unit": 0.0, "var_resid": 0.2,
            "n_units": 200, "metric": "final_accuracy", **kw}


def test_newest_run_per_notebook_and_workbook_wide_bh(tmp_path):
    _run(tmp_path, "a", "old", "cpu", [_claim("a old", "primary", 0.5, "inconclusive")], "2026-01")
    _run(tmp_path, "a", "new", "cpu", [_claim("a primary", "primary", 0.001, "replicated"),
                                      _claim("a sec", "secondary", 0.01, "replicated")], "2026-02", wall_s=1625.0)
    _run(tmp_path, "b", "r", "smoke", [_claim("b primary", "primary", 0.3, "inconclusive", paper_effect=0.5),
                                      _claim("b sec", "secondary", 0.02, "replicated"),
                                      _claim("b check", "check", 0.0, "check")], "2026-02")
    recs = scoreboard.newest_runs(tmp_path, "cpu")
    assert [r.dir.name for r in recs] == ["new", "r"]  # b has no cpu run: its newest of any profile
    prim = scoreboard.primary_table(recs)
    assert prim["claim"].tolist() == ["a primary", "b primary"]
    assert prim.loc[1, "reach"] == "within reach here"  # mde 0.05 <= paper's 0.5
    assert prim["time"].tolist() == ["27 min", "-"]  # 1625 s; b's manifest has no wall time
    assert prim["report"].tolist() == ["a/new/report.html", "b/r/report.html"]
    sec = scoreboard.workbook_secondaries(recs)
    # two secondaries across the workbook, p = 0.01 and 0.02: BH q = 0.02 and 0.02 (0.01 x 2 / 1, 0.02 x 2 / 2)
    assert sec["q"].tolist() == pytest.approx([0.02, 0.02])
    assert sec["verdict"].tolist() == ["replicated", "replicated"]
    assert "b check" not in set(sec["claim"])


def test_reach_says_what_scale_a_claim_needs():
    row = {"verdict": "inconclusive", "paper_effect": 0.02, "mde": 0.1, "var_seed": 0.0, "var_unit": 0.0,
           "var_resid": 0.2}
    # gpu design 5 seeds x 5000 units: se = sqrt(0.2 / 25000) = 0.00283, mde ~ 0.0079 <= 0.02
    assert scoreboard.reach(row, (5, 5000)).startswith("needs a GPU")
    assert scoreboard.reach(row, (3, 200)) == "needs the paper's scale"
    assert scoreboard.reach({**row, "verdict": "replicated"}) == "settled here"


def test_cli_writes_markdown_and_html(tmp_path, capsys):
    _run(tmp_path, "a", "new", "cpu", [_claim("a primary", "primary", 0.001, "replicated")], "2026-02")
    assert main(["scoreboard", "--outputs", str(tmp_path)]) == 0
    assert "a primary" in (tmp_path / "scoreboard.md").read_text()
    assert "<title>rlbook scoreboard</title>" in (tmp_path / "scoreboard.html").read_text()


def test_time_says_how_many_runs_came_from_the_cache():
    """A re-run on cached runs took 19 s; the row says 9 of its 9 runs were not trained by it."""
    assert scoreboard.run_time({"wall_s": 19.0}, {"runs_trained": 0, "runs_reused": 9}) == \
        "19 s (9 of 9 runs from the cache)"
    assert scoreboard.run_time({"wall_s": 1625.0}, {"runs_trained": 3, "runs_reused": 6}) == \
        "27 min (6 of 9 runs from the cache)"
    assert scoreboard.run_time({"wall_s": 1625.0}, {"runs_trained": 9, "runs_reused": 0}) == "27 min"
    assert scoreboard.run_time({"wall_s": 1625.0}, {}) == "27 min"  # a notebook that trains no sweep


def test_wall_time_reads_as_seconds_minutes_or_hours():
    assert [scoreboard.wall_time(x) for x in (45.2, 1625.0, 3900.0, None, float("nan"))] == [
        "45 s", "27 min", "1 h 05 min", "-", "-"]
