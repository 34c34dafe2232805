"""Cached pipeline stages and claims evaluated on measured tables."""

from __future__ import annotations

import numpy as np
import pytest
from rlbook.analysis import pipeline, report, study
from rlbook.core import cache
from rlbook.training import runs, stages


def test_stage_computes_once_and_reads_back(tmp_path):
    calls = []

    def compute(folder):
        calls.append(folder)
        (folder / "extra.txt").write_text("x")
        return {"value": 1.5, "arr": np.array([1, 2])}

    a = stages.stage(tmp_path, "demo", {"seed": 0, "k": 1}, compute)
    b = stages.stage(tmp_path, "demo", {"seed": 0, "k": 1}, compute)
    assert len(calls) == 1 and a["value"] == b["value"] == 1.5 and b["arr"] == [1, 2]
    stages.stage(tmp_path, "demo", {"seed": 1, "k": 1}, compute)
    assert len(calls) == 2
    entry = {e["key"]: e for e in cache.entries(tmp_path)}[calls[0].name]
    assert entry["state"] == "ok" and entry["label"] == "demo" and entry["seed"] == 0


def test_unfinished_or_stale_stage_is_recomputed(tmp_path, monkeypatch):
    calls = []

    def compute(folder):
        calls.append(1)
        return {"n": len(calls)}

    stages.stage(tmp_path, "demo", {"k": 1}, compute)
    folder = next(tmp_path.iterdir())
    (folder / stages.DONE).unlink()  # a crash before DONE
    assert stages.stage(tmp_path, "demo", {"k": 1}, compute)["n"] == 2
    monkeypatch.setattr(stages, "code_version", lambda: "changed-code")
    assert stages.stage(tmp_path, "demo", {"k": 1}, compute)["n"] == 3  # new key: the old result is never reused


def _table(effect, seeds=3, units=40, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(seeds):
        for u in range(units):
            base = float(rng.random() < 0.3)
            rows += [{"method": "B", "seed": s, "unit": u, "value": base},
                     {"method": "A", "seed": s, "unit": u, "value": float(rng.random() < 0.3 + effect)}]
    return rows


def _result(tmp_path, claims):
    run = runs.Run(tmp_path, {"seeds": 3}, "demo")
    return pipeline.PipelineResult(study.Study("demo", claims=claims), run, {"seeds": 3})


def test_claims_on_measured_tables(tmp_path):
    claims = [study.Claim("A beats B", "acc", "A", "B", "greater"),
              study.Claim("A is not below B", "acc", "A", "B", "not_less", margin=0.2),
              study.Claim("needs a regime", "acc", "A", "B", requires=[("measured_between",
                                                                         {"table": "rate", "lo": 0.5})])]
    res = _result(tmp_path, claims)
    res.add("acc", _table(0.5))
    res.add("rate", [{"method": "A", "seed": s, "value": 0.2} for s in range(3)])
    rows = {r["claim"]: r for r in res.evaluate()}
    assert rows["A beats B"]["verdict"] == "replicated" and rows["A beats B"]["effect"] > 0.3
    assert rows["A is not below B"]["verdict"] == "replicated"
    assert rows["needs a regime"]["verdict"] == "untestable in this regime"
    assert "rate (A) = 0.2" in rows["needs a regime"]["reason"]
    assert (tmp_path / "tables" / "acc.csv").exists()
    s = res.summary("acc", baseline="B")
    assert s.loc["A", "diff"] == pytest.approx(s.loc["A", "mean"] - s.loc["B", "mean"])


def test_two_seeds_are_underpowered_and_tiny_margins_untestable(tmp_path):
    res = _result(tmp_path, [study.Claim("A beats B", "acc", "A", "B", "greater"),
                             study.Claim("parity", "acc", "A", "B", "not_less", margin=0.01)])
    res.add("acc", _table(0.5, seeds=2))
    rows = {r["claim"]: r for r in res.evaluate()}
    assert rows["A beats B"]["verdict"] == "underpowered"
    assert rows["parity"]["verdict"] == "untestable in this regime" and "standard error" in rows["parity"]["reason"]


def test_missing_table_is_named(tmp_path):
    res = _result(tmp_path, [study.Claim("A beats B", "nope", "A", "B")])
    with pytest.raises(Exception, match="no measured table 'nope'"):
        res.evaluate()


def test_a_degenerate_seed_warns_and_its_claim_rows_say_so(tmp_path, capsys):
    res = _result(tmp_path, [study.Claim("A beats B", "acc", "A", "B", "greater")])
    res.add("acc", _table(0.5))
    seeds = {0: {"degenerate": []}, 1: {}, 2: {"degenerate": ["generator: no positive example"]}}
    with pytest.warns(pipeline.DegenerateStageWarning, match="seed 2: malt: generator: no positive example"):
        found = res.note_degenerate(seeds, stage="malt")
    assert found == {2: ["generator: no positive example"]}
    assert "WARNING: degenerate stage, seed 2" in capsys.readouterr().out
    row = res.evaluate()[0]
    assert row["degenerate"] == "seed 2: malt: generator: no positive example"
    assert "DEGENERATE STAGE" in report.short_reason(row) and "Degenerate stage" in report.claim_sentence(row)
    # a table without seed 2 carries no note; a usable study carries none either
    res.add("acc", [r for r in _table(0.5) if r["seed"] != 2])
    assert res.evaluate()[0]["degenerate"] == ""


def test_degenerate_seeds_reads_a_string_or_a_list_and_skips_usable_seeds():
    assert pipeline.degenerate_seeds({0: {"degenerate": "constant critic"}, 1: {"degenerate": None},
                                      3: {"degenerate": ["a", "b"]}}) == {0: ["constant critic"], 3: ["a", "b"]}
