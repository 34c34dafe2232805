"""Regime checks (rlbook.analysis.regimes): clip-higher's band, a sampled-accuracy window over all training
steps, a training metric in a range and a measured table in a range, on hand-made tables."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pandas as pd
from rlbook.analysis import regimes, study


def _res(rows: list[dict]) -> SimpleNamespace:
    return SimpleNamespace(sweep=SimpleNamespace(metrics=pd.DataFrame(rows)))


def test_clip_band_check_reads_the_band_not_all_clipping():
    claim = study.Claim("clip-higher keeps entropy higher", "train:entropy:last3", "DAPO", "DAPO w/o clip-higher")
    # much clipping (clip_frac_late .2) but only .002 of tokens in the band: fails at .005; .004 and .008 -> .006 passes
    res = _res([{"method": "DAPO", "seed": 0, "step": s, "clip_frac_late": 0.2, "clip_band_frac_late": 0.002}
                for s in (1, 2)])
    ok, why = regimes.check_clip_band(res, claim, min_frac=0.005)
    assert not ok and "0.0020" in why
    res = _res([{"method": "DAPO", "seed": 0, "step": 1, "clip_band_frac_late": 0.004},
                {"method": "DAPO", "seed": 0, "step": 2, "clip_band_frac_late": 0.008}])
    assert regimes.check_clip_band(res, claim, min_frac=0.005)[0]
    no_band = _res([{"method": "DAPO", "seed": 0, "step": 1, "clip_frac_late": 0.2}])
    assert regimes.check_clip_band(no_band, claim)[0] is False
    assert "clip_band" in regimes.CHECKS


def test_sampled_accuracy_window_reads_every_step_not_the_first():
    claim = study.Claim("NGRPO beats GRPO", "final_accuracy", "NGRPO", "GRPO")
    # GRPO's steps: .10 first, then .20, .30 (two seeds alike): the first step alone is in 5-15%, all steps mean .20
    rows = [{"method": "GRPO", "seed": seed, "step": s + 1, "accuracy": a}
            for seed in (0, 1) for s, a in enumerate([0.10, 0.20, 0.30])]
    rows.append({"method": "NGRPO", "seed": 0, "step": 1, "accuracy": 0.5})
    ok, why = regimes.check_sampled_accuracy_all_steps(_res(rows), claim, lo=0.05, hi=0.15)
    assert not ok and "20.0%" in why and "6 training steps" in why
    assert regimes.check_sampled_accuracy_all_steps(_res(rows), claim, lo=0.05, hi=0.25)[0]
    assert "sampled_accuracy_all_steps" in regimes.CHECKS
    empty = regimes.check_sampled_accuracy_all_steps(_res([{"method": "X", "accuracy": math.nan}]), claim, 0.0, 1.0)
    assert empty[0] is False


def _pool(tmp_path, monkeypatch, success: list[float], group_size: int) -> SimpleNamespace:
    """A result whose start-model histogram (per-prompt success of ``success``) is already in the run cache, under
    the key of the notebook's ``histogram`` parameters: a check that measured again would need a model."""
    import json

    monkeypatch.setenv("RLBOOK_RUNS_CACHE", str(tmp_path))
    params = {"model": "tiny-random", "task": {"name": "chain_sum", "train_size": len(success)},
              "train": {"max_new_tokens": 8}, "histogram": {"n_prompts": len(success), "group_size": group_size}}
    folder = tmp_path / regimes._key(params, len(success), group_size, 0)
    folder.mkdir(parents=True)
    (folder / "probe.json").write_text(json.dumps({"sampled": {"per_prompt_success": success, "group_size": group_size,
                                                               "histogram": [], "all_wrong_share": 0.0}}))
    (folder / "DONE").write_text("x")
    return SimpleNamespace(params=params, run=SimpleNamespace(dir=tmp_path / "nb" / "run"))


def test_all_wrong_share_counts_prompts_with_no_right_sample(tmp_path, monkeypatch):
    claim = study.Claim("NGRPO beats GRPO", "final_accuracy", "NGRPO", "GRPO")
    # G = 4, eight prompts: 0 right on prompts 1, 2, 3, 8 -> 4/8 all wrong; 4/8 with a right sample
    res = _pool(tmp_path, monkeypatch, [0, 0, 0, 0.25, 0.5, 1.0, 0.75, 0], 4)
    assert regimes.all_wrong(regimes.pool_histogram(res)) == {"all_wrong": 0.5, "solved": 0.5}
    ok, why = regimes.check_all_wrong_share(res, claim)
    assert ok and "50% of prompts all wrong, 50% with a right sample" in why
    assert not regimes.check_all_wrong_share(res, claim, min_wrong=0.6)[0]
    assert not regimes.check_all_wrong_share(res, claim, min_solved=0.6)[0]
    assert "all_wrong_share" in study.CHECKS


def test_success_spread_reads_both_ends_or_mixed_groups_only(tmp_path, monkeypatch):
    claim = study.Claim("Knapsack RL beats GRPO", "final_accuracy", "Knapsack RL", "GRPO")
    # success <= 1/4: 0, 0, 0, .25, 0 -> 5/8; >= 3/4: 1, .75 -> 2/8; strictly between 0 and 1: .25, .5, .75 -> 3/8
    res = _pool(tmp_path, monkeypatch, [0, 0, 0, 0.25, 0.5, 1.0, 0.75, 0], 4)
    ok, why = regimes.check_success_spread(res, claim)
    assert ok and "38% mixed, 62% <= 1/4, 25% >= 3/4" in why
    assert not regimes.check_success_spread(res, claim, min_each=0.3)[0]  # 25% near 1 < 30%
    assert not regimes.check_success_spread(res, claim, min_mixed=0.4)[0]
    # the base pool of issue 22 (no prompt near 1): the spread fails, the mixed-groups form does not ask for ends
    cold = _pool(tmp_path / "cold", monkeypatch, [0, 0, 0, 0.25, 0.5, 0.25, 0, 0], 4)
    assert not regimes.check_success_spread(cold, claim)[0]
    ok, why = regimes.check_success_spread(cold, claim, min_each=0.0)
    assert ok and "at each end" not in why


def test_metric_between_and_train_metric_between_are_one_check_weighing_seeds_equally():
    assert regimes.CHECKS["metric_between"] is regimes.CHECKS["train_metric_between"]
    assert regimes.check_metric_between is regimes.check_train_metric_between
    claim = study.Claim("R^3 fills groups", "final_accuracy", "R3", "GRPO")
    # seed 0 logs 1.0 on four steps, seed 1 logs 3.0 on one step (NaN elsewhere): per-seed means 1 and 3 -> 2.0;
    # pooling the five steps would give (4 * 1 + 3) / 5 = 1.4
    rows = [{"method": "R3", "seed": 0, "step": s, "fill": 1.0} for s in range(4)]
    rows += [{"method": "R3", "seed": 1, "step": s, "fill": 3.0 if s == 0 else math.nan} for s in range(4)]
    ok, why = regimes.CHECKS["metric_between"](_res(rows), claim, column="fill", lo=1.8, hi=2.2)
    assert ok and "= 2.000" in why
    assert not regimes.CHECKS["metric_between"](_res(rows), claim, column="fill", lo=0.0, hi=1.5)[0]
    ok, why = regimes.CHECKS["metric_between"](_res(rows), claim, column="missing", lo=0.0, hi=1.0)
    assert not ok and "not recorded" in why


def test_measured_and_measured_between_are_one_check_on_study_and_pipeline_tables():
    assert regimes.CHECKS["measured"] is regimes.CHECKS["measured_between"]
    claim = study.Claim("stage learned", "forgetting", "GRPO", "SFT")
    gain = pd.DataFrame({"method": ["GRPO", "GRPO", "SFT"], "seed": [0, 1, 0], "value": [0.01, 0.05, 0.2]})
    headroom = pd.DataFrame({"seed": [0, 1, 2], "value": [0.1, 0.2, 0.6]})
    pipeline = SimpleNamespace(tables={"stage_gain": gain, "headroom": headroom})
    # a pipeline's table: GRPO's rows (0.01, 0.05) mean 0.03
    ok, why = regimes.CHECKS["measured_between"](pipeline, claim, table="stage_gain", lo=0.02)
    assert ok and "stage_gain (GRPO) = 0.03" in why
    assert regimes.CHECKS["measured_between"](pipeline, claim, table="stage_gain", lo=0.1, method="SFT")[0]
    # no method column: every row, mean 0.3
    ok, why = regimes.CHECKS["measured_between"](pipeline, claim, table="headroom", lo=0.25)
    assert ok and "= 0.3 over 3 rows" in why
    # a method named and absent fails instead of falling back to every row
    ok, why = regimes.CHECKS["measured_between"](pipeline, claim, table="stage_gain", lo=0.0, method="RFT")
    assert not ok and "no rows of 'RFT'" in why
    # a sweep study's measurements (StudyResult.extra), the same check
    study_res = SimpleNamespace(extra={"forgetting": gain})
    ok, why = regimes.CHECKS["measured"](study_res, claim, column="value", hi=0.02)
    assert not ok and "forgetting (GRPO) = 0.03" in why and "needs at most 0.02" in why


def test_runs_differ_fails_where_a_seed_of_the_added_mechanism_equals_its_base_run():
    claim = study.Claim("DA-DLER is shorter than DLER", "final_length", "DA-DLER", "DLER")
    # seeds 0 and 2: DA-DLER's rewards equal DLER's at every step (the cap never cut); seed 1 differs at step 2
    rows = [{"method": m, "seed": seed, "step": step, "reward_mean": 0.25 + 0.1 * step
             + (0.05 if (m, seed, step) == ("DA-DLER", 1, 2) else 0.0)}
            for m in ("DLER", "DA-DLER") for seed in (0, 1, 2) for step in (1, 2, 3)]
    ok, why = regimes.check_runs_differ(_res(rows), claim)
    assert not ok and "on 1 of 3 seeds" in why and "never acted" in why
    assert regimes.check_runs_differ(_res(rows), claim, min_frac=0.3)[0]
    assert regimes.CHECKS["runs_differ"] is regimes.check_runs_differ
    assert not regimes.check_runs_differ(_res(rows), claim, column="nope")[0]
