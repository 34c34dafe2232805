"""Regime checks matched to mechanisms (rlbook.regimes): clip-higher's band and a sampled-accuracy window over all
training steps, on hand-made metrics tables."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pandas as pd
from rlbook import regimes, study


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
