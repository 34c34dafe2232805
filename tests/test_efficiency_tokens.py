"""Training tokens, accuracy per training token, the equal-tokens regime check and the frontier's missing methods
(rlbook.analysis.study, rlbook.analysis.efficiency), on hand-made runs with numbers worked out by hand."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pandas as pd
import pytest
from rlbook.analysis import efficiency, study
from rlbook.training.experiments import SweepResult

BASE = {"correct": [0, 1, 0, 0], "lengths": [40, 50, 60, 50], "accuracy": 0.25}
EVALS = {("GRPO", 0): {"base": BASE, "final": {"correct": [1, 0, 1, 1], "lengths": [20, 30, 20, 30]}},
         ("GRPO", 1): {"base": BASE, "final": {"correct": [1, 1, 0, 0], "lengths": [30, 30, 30, 30]}},
         ("Short", 0): {"base": BASE, "final": {"correct": [1, 0, 0, 1], "lengths": [10, 10, 10, 10]}},
         ("Short", 1): {"base": BASE, "final": {"correct": [1, 0, 0, 0], "lengths": [10, 20, 10, 20]}}}
GEN = {("GRPO", 0): [100, 80], ("GRPO", 1): [120, 100], ("Short", 0): [60, 40], ("Short", 1): [50, 30]}
EXTRA = {("Short", 1): [None, 20]}  # a phase's own generation (answers after prefixes) on one step; NaN elsewhere
METRICS = [{"method": m, "seed": s, "step": k, "gen_tokens": v, "extra_gen_tokens": EXTRA.get((m, s), [None] * 2)[k - 1]}
           for (m, s), steps in GEN.items() for k, v in enumerate(steps, 1)]


def result() -> study.StudyResult:
    final = pd.DataFrame([{"method": m, "seed": s, "final_accuracy": sum(e["final"]["correct"]) / 4,
                           "final_response_length": sum(e["final"]["lengths"]) / 4} for (m, s), e in EVALS.items()])
    sweep = SweepResult(metrics=pd.DataFrame(METRICS), final=final, evals=EVALS, folders={})
    return study.StudyResult(study.Study("x"), None, sweep, [], {"train": {}})  # type: ignore[arg-type]


def test_training_tokens_are_rollout_and_phase_tokens_summed_over_the_steps():
    t = study.METRICS["train_tokens"](result().sweep).set_index(["method", "seed"])["value"]
    # GRPO: 100 + 80 = 180 and 120 + 100 = 220; Short: 60 + 40 = 100 and 50 + 30 + 20 (phase) = 100
    assert t.to_dict() == {("GRPO", 0): 180.0, ("GRPO", 1): 220.0, ("Short", 0): 100.0, ("Short", 1): 100.0}


def test_training_tokens_are_a_count_on_the_log_scale():
    assert study.metric_scale("train_tokens") == "log1p"


def test_accuracy_per_training_ktokens_divides_held_out_accuracy_by_training_tokens():
    t = efficiency.accuracy_per_training_ktokens(result()).set_index(["method", "seed"])["value"]
    # GRPO seed 0: 3/4 right, 180 tokens -> 1000 * 0.75 / 180 = 4.1667; seed 1: 0.5 / 220 -> 2.2727
    # Short seed 0: 0.5 / 100 -> 5.0; seed 1: 0.25 / 100 -> 2.5
    assert t[("GRPO", 0)] == pytest.approx(4.1667, abs=1e-4)
    assert t[("GRPO", 1)] == pytest.approx(2.2727, abs=1e-4)
    assert t[("Short", 0)] == pytest.approx(5.0)
    assert t[("Short", 1)] == pytest.approx(2.5)


def test_equal_tokens_check_passes_a_method_that_generated_no_more_than_its_baseline():
    claim = study.Claim("c", "acc_per_1k", "Short", "GRPO")
    ok, why = study.CHECKS["train_tokens_at_most"](result(), claim)
    # Short: mean 100 tokens; GRPO: mean (180 + 220) / 2 = 200; ratio 0.5
    assert ok and "ratio 0.50" in why and "100" in why and "200" in why


def test_equal_tokens_check_fails_a_method_that_generated_more_than_the_allowed_ratio():
    claim = study.Claim("c", "acc_per_1k", "GRPO", "Short")
    ok, why = study.CHECKS["train_tokens_at_most"](result(), claim)  # 200 / 100 = 2.0 > 1.1
    assert not ok and "ratio 2.00" in why
    assert study.CHECKS["train_tokens_at_most"](result(), claim, max_ratio=2.0)[0]  # the bound is inclusive


def test_equal_tokens_check_needs_a_baseline():
    ok, why = study.CHECKS["train_tokens_at_most"](result(), study.Claim("c", "acc_per_1k", "Short"))
    assert not ok and "no baseline" in why


def test_frontier_table_marks_a_listed_method_without_runs_and_keeps_it_off_the_frontier():
    table = efficiency.frontier_table(result(), listed=["GRPO", "Short", "Never trained"])
    assert list(table.index) == ["GRPO", "Short", "Never trained"]
    assert table["has_runs"].tolist() == [True, True, False]
    assert not table.loc["Never trained", "on_frontier"] and math.isnan(table.loc["Never trained", "accuracy"])
    # GRPO: accuracy (0.75 + 0.5) / 2 = 0.625 at 26.25 tokens; Short: 0.375 at 12.5 tokens: neither dominates
    assert table.loc["GRPO", "accuracy"] == pytest.approx(0.625)
    assert table.loc["Short", "mean_tokens"] == pytest.approx(12.5)
    assert table["on_frontier"].tolist() == [True, True, False]
    assert table.loc["GRPO", "train_tokens"] == pytest.approx(200.0)


def test_frontier_figure_names_the_listed_methods_without_runs():
    import matplotlib

    matplotlib.use("Agg")
    res, saved = result(), {}
    res.run = SimpleNamespace(figure=lambda fig, name: saved.update({name: fig}))
    efficiency.frontier(res, listed=["GRPO", "Short", "Never trained"])
    fig = saved["frontier"]
    notes = " ".join(t.get_text() for t in fig.texts)
    assert "Never trained" in notes and "GRPO" not in notes
    assert fig.axes[0].get_title() == "2 of 3 methods with runs"
