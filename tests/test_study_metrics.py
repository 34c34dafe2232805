"""Study metrics and regime checks added for the method notebooks (rlbook.analysis.study), on hand-made runs."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from rlbook.analysis import metrics, regimes, study
from rlbook.training.experiments import SweepResult


def sweep(evals: dict, metrics: list[dict] | None = None) -> SweepResult:
    return SweepResult(metrics=pd.DataFrame(metrics or []), final=pd.DataFrame(), evals=evals, folders={})


def ev(correct: list[int], lengths: list[int]) -> dict:
    return {"correct": correct, "lengths": lengths, "accuracy": sum(correct) / len(correct)}


BASE = ev([0, 1, 0], [10, 12, 20])
EVALS = {("GRPO", 0): {"base": BASE, "final": ev([0, 1, 0], [14, 9, 26])},
         ("Dr", 0): {"base": BASE, "final": ev([0, 0, 1], [11, 8, 30])}}


def test_length_of_wrong_answers_is_nan_where_the_answer_was_right():
    t = metrics.METRICS["final_length_wrong"](sweep(EVALS))
    grpo = t[t.method == "GRPO"]["value"].tolist()
    assert grpo[0] == 14 and math.isnan(grpo[1]) and grpo[2] == 26


def test_length_change_of_wrong_answers_is_against_the_base_answer_of_the_same_problem():
    t = metrics.METRICS["length_wrong_change"](sweep(EVALS))
    dr = t[t.method == "Dr"]["value"].tolist()
    # Dr. wrong on problems 0 and 1: 11 - 10 = 1, 8 - 12 = -4; right on problem 2
    assert dr[:2] == [1.0, -4.0] and math.isnan(dr[2])


def test_paired_claim_on_wrong_answer_lengths_keeps_problems_both_got_wrong():
    t = metrics.METRICS["final_length_wrong"](sweep(EVALS))
    kept, why = study.finite_pairs(t, "Dr", "GRPO")
    assert why == "" and sorted(kept["unit"].unique()) == [0]  # problem 1: GRPO right, problem 2: Dr right


def test_growth_aggregation_is_last_three_minus_first_three_steps():
    # first three 10, 12, 14 (mean 12); last three 20, 22, 30 (mean 24)
    assert metrics.AGGS["growth"](pd.Series([10.0, 12, 14, 18, 20, 22, 30])) == pytest.approx(12.0)


def result(metrics: list[dict] | None = None, extra: dict | None = None) -> study.StudyResult:
    res = study.StudyResult(study.Study("x"), None, sweep(EVALS, metrics), [], {"train": {}})  # type: ignore[arg-type]
    res.extra = extra or {}
    return res


def test_sampled_truncation_check_reads_the_first_step_of_each_seed():
    rows = [{"method": "GRPO", "seed": s, "step": k, "truncated_frac": v}
            for s, vals in ((0, (0.02, 0.5)), (1, (0.06, 0.5))) for k, v in enumerate(vals, 1)]
    claim = study.Claim("c", "final_length", "Dr", "GRPO")
    # first steps of the baseline: 2% and 6% truncated, mean 4%
    ok, why = regimes.CHECKS["sampled_truncation_below"](result(rows), claim, max_frac=0.05)
    assert ok and "4.0%" in why
    assert not regimes.CHECKS["sampled_truncation_below"](result(rows), claim, max_frac=0.03)[0]


def test_measured_check_reads_a_measurement_given_to_finish():
    table = pd.DataFrame({"method": ["GSPO", "GSPO", "GRPO"], "clip_frac": [0.2, 0.4, 0.0], "value": [1, 2, 3]})
    claim = study.Claim("c", "grad", "GSPO", "GRPO")
    ok, why = regimes.CHECKS["measured"](result(extra={"grad": table}), claim, column="clip_frac", lo=0.05)
    assert ok and "0.3" in why
    ok, why = regimes.CHECKS["measured"](result(extra={"grad": table}), claim, column="clip_frac", lo=0.05,
                                       method="GRPO")
    assert not ok
    ok, why = regimes.CHECKS["measured"](result(), claim, column="clip_frac")
    assert not ok and "no measurement 'grad'" in why
    ok, why = regimes.CHECKS["measured"](result(extra={"grad": table}), claim, column="kl")
    assert not ok and "no rows with 'kl'" in why

