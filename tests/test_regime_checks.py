"""Regime checks matched to mechanisms (rlbook.analysis.regimes): clip-higher's band and a sampled-accuracy window over all
training steps, on hand-made metrics tables."""

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
    assert "clip_band" in study.CHECKS


def test_sampled_accuracy_window_reads_every_step_not_the_first():
    claim = study.Claim("NGRPO beats GRPO", "final_accuracy", "NGRPO", "GRPO")
    # GRPO's steps: .10 first, then .20, .30 (two seeds alike): the first step alone is in 5-15%, all steps mean .20
    rows = [{"method": "GRPO", "seed": seed, "step": s + 1, "accuracy": a}
            for seed in (0, 1) for s, a in enumerate([0.10, 0.20, 0.30])]
    rows.append({"method": "NGRPO", "seed": 0, "step": 1, "accuracy": 0.5})
    ok, why = regimes.check_sampled_accuracy_all_steps(_res(rows), claim, lo=0.05, hi=0.15)
    assert not ok and "20.0%" in why and "6 training steps" in why
    assert regimes.check_sampled_accuracy_all_steps(_res(rows), claim, lo=0.05, hi=0.25)[0]
    assert "sampled_accuracy_all_steps" in study.CHECKS
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
