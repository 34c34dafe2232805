"""Every method notebook's study spec, read without training (rlbook.analysis.power.load_spec): exactly one primary
claim, no repeated rows, verdict roles the one test understands, and a power table for every profile."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from rlbook.analysis import metrics, power, stats, study
from rlbook.training import params as rparams

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb"))
NO_STUDY = {"quickstart", "estimator_lab"}  # the first steps notebook and the bandit lab (simclaims) have none


def spec(name: str, profile: str = "cpu"):
    return power.load_spec(name, rparams.resolve(name, profile, params_dir=ROOT / "params"), ROOT)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_every_method_notebook_has_exactly_one_primary_claim(name):
    s = spec(name)
    if name in NO_STUDY:
        assert s is None
        return
    primary = [c.text for c in s.claims if c.primary]
    assert len(primary) == 1, f"{name}: primary claims {primary}"
    assert s.primary is not None and not s.primary.check


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_no_duplicate_rows_and_known_scales(name):
    s = spec(name)
    if s is None:
        return
    keys = [(c.metric, c.method, c.baseline, c.direction) for c in s.claims]
    assert len(keys) == len(set(keys)) or name == "d3s", f"{name}: the same comparison twice: {keys}"
    assert all(c.scale in stats.SCALES for c in s.claims)


def test_a_study_refuses_two_primary_claims():
    c1 = study.Claim("a", "final_accuracy", "X", "Y", primary=True)
    c2 = study.Claim("b", "final_accuracy", "Z", "Y", primary=True)
    with pytest.raises(rparams.ParamError, match="2 primary claims"):
        study.Study("x", claims=[c1, c2])
    with pytest.raises(rparams.ParamError, match="cannot be the primary"):
        study.Claim("c", "final_accuracy", "X", "Y", primary=True, check=True)


@pytest.mark.parametrize("profile", ["smoke", "cpu", "gpu"])
def test_power_table_for_every_notebook_and_profile(profile, tmp_path):
    for name in NOTEBOOKS:
        p = rparams.resolve(name, profile, params_dir=ROOT / "params")
        s = power.load_spec(name, p, ROOT)
        if s is None:
            continue
        table = power.power_table(s, p, profile, tmp_path)
        assert len(table) == len(s.claims)
        acc = table[table["variance from"].str.startswith("assumed")]
        assert all(math.isfinite(x) and x > 0 for x in acc["mde (80% power)"]), name


def test_power_uses_a_runs_measured_components(tmp_path):
    # a finished run of a notebook whose claim row carries components: the planner uses them, not the pilot
    import json

    folder = tmp_path / "dler" / "r1"
    folder.mkdir(parents=True)
    c = study.Claim("acc", "final_accuracy", "DLER", "GRPO", "not_less", margin=0.05, paper_effect=0.05)
    (folder / "manifest.json").write_text(json.dumps({"notebook": "dler", "status": "ok", "profile": "cpu",
                                                      "start_time": "2026"}))
    (folder / "results.json").write_text(json.dumps({"claims": [{"claim": "acc", "var_seed": 0.0, "var_unit": 0.0,
                                                                 "var_resid": 0.2, "n_units": 500}]}))
    table = power.power_table(study.Study("dler", claims=[c]), {"seeds": 3, "eval_size": 500}, "cpu", tmp_path)
    # se = sqrt(0.2 / 1500) = 0.011547, df = 2 x 499 = 998: mde ~ 0.011547 x (1.9623 + 0.8419) = 0.03238
    assert table.loc[0, "variance from"].startswith("run r1")
    assert table.loc[0, "mde (80% power)"] == pytest.approx(0.03238, abs=2e-4)
    # 3 x 200: se = sqrt(0.2 / 600) = 0.018257, mde ~ 0.0513 > 0.05; 3 x 500 reaches it (0.0324)
    assert table.loc[0, "80% power at the paper effect"].startswith("3 x 500")


@pytest.mark.parametrize(("metric", "scale"), [("final_length", "log1p"), ("train:response_length:last3", "log1p"),
                                               ("length_change", "identity"), ("final_accuracy", "identity")])
def test_metrics_declare_their_scale(metric, scale):
    assert metrics.metric_scale(metric) == scale
    assert study.Claim("c", metric, "X", "Y").scale == scale
    assert study.Claim("c", metric, "X", "Y", scale="identity").scale == "identity"  # an explicit scale wins


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_borrowed_methods_are_trained_by_the_notebook(name):
    # a claim that pools its seed term over other methods must name methods of the same study (params methods)
    p = rparams.resolve(name, "cpu", params_dir=ROOT / "params")
    s = power.load_spec(name, p, ROOT)
    if s is None:
        return
    methods = set(p.get("methods") or {}) | set(p.get("reuse") or {})
    for c in s.claims:
        assert not c.borrow or set(c.borrow) <= methods, (name, c.text, c.borrow, sorted(methods))


@pytest.mark.parametrize("profile", ["cpu", "gpu"])
def test_heldout_sets_reach_the_target_where_the_task_has_the_questions(profile):
    # issue 21 item 7: 1,000 held-out problems (500 for 128-token answers) wherever the task's generator has that
    # many distinct questions besides the training pool; a task with fewer (one-digit arithmetic) is exempt
    short = []
    for name in NOTEBOOKS:
        h = power.heldout(rparams.resolve(name, profile, params_dir=ROOT / "params"))
        if h and h["capacity"] >= h["target"] and h["n"] < min(h["target"], h["max"]):
            short.append(f"{name}: {h['text']}")
    assert not short, short
