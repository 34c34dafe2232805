"""rlbook.analysis.study: held-out curve metrics by hand, claims evaluated from a tiny sweep with regime checks."""

from __future__ import annotations

import numpy as np
import pytest
from rlbook.analysis import metrics, stats, study
from rlbook.core.errors import ParamError


def test_drawdown_is_the_largest_fall_below_the_running_maximum():
    # running max 0.2, 0.5, 0.5, 0.5, 0.6: falls 0, 0, 0.2, 0.1, 0 -> 0.2
    assert metrics.drawdown(np.array([0.2, 0.5, 0.3, 0.4, 0.6])) == pytest.approx(0.2)
    assert metrics.drawdown(np.array([0.1, 0.2, 0.3])) == 0.0


def test_a_claim_with_an_unknown_check_or_direction_is_a_clear_error():
    with pytest.raises(ParamError, match="unknown regime check 'nope'"):
        study.Claim("x", "final_accuracy", "A", "B", requires=[("nope", {})])
    with pytest.raises(ParamError, match="direction='up'"):
        study.Claim("x", "final_accuracy", "A", "B", direction="up")


def test_margin_check_needs_a_margin_above_one_runs_evaluation_standard_error():
    c = study.Claim("x", "final_accuracy", "A", "B", "not_less", margin=0.05)
    ok, why = study.margin_check(c, 200)  # sqrt(0.25 / 200) = 0.0354 < 0.05
    assert ok and "0.035" in why
    assert not study.margin_check(c, 64)[0]  # sqrt(0.25 / 64) = 0.0625 > 0.05
    assert study.margin_check(study.Claim("x", "final_accuracy", "A", "B"), 64) is None  # directional: no margin


def test_an_inconclusive_primary_names_the_design_that_would_settle_it() -> None:
    # components: seed var 0.0028 (digi_q's), unit 0, resid 0.2; 3 seeds x 100 episodes.  At 6 seeds x 200 the
    # variance of the mean is 0.0028/6 + 0.2/1200 = 6.33e-4 (se 0.0252, df 5 = S - 1): mde 0.088 < 0.10; with 4
    # seeds even 2000 units leave 0.0028/4 = 7e-4 from the seeds alone (se > 0.026 on 3 df): mde 0.115 > 0.10
    row = {"claim": "x", "verdict": "inconclusive", "effect": 0.03, "paper_effect": 0.10, "mde": 0.188,
           "direction": "greater", "n_seeds": 3, "n_units": 100, "var_seed": 0.0028, "var_unit": 0.0,
           "var_resid": 0.2}
    text = study.settling_design(row)
    assert "3 seeds x 100 units" in text and "0.188" in text and "paper's effect of 0.1" in text
    first = text.split("needs ")[1].split(",")[0]
    seeds, units = int(first.split(" seeds")[0]), int(first.split("x ")[1].split(" units")[0])
    assert stats.Components(0.0028, 0.0, 0.2).mde(seeds, units) <= 0.10
    assert (seeds, units) == (6, 200)


def test_a_fixed_checkpoint_claim_is_settled_by_more_units_not_seeds() -> None:
    # units alone (seed_random=False): var of the mean = var_unit / U; 0.2 / U at an effect of 0.1 needs
    # se ~ 0.1 / 2.8 (80% power at one-sided 0.025): U ~ 0.2 * 7.9 / 0.01 = 157 -> the first grid size, 200
    row = {"verdict": "inconclusive", "effect": -0.1, "paper_effect": None, "mde": 0.3, "direction": "less",
           "n_seeds": 1, "n_units": 3, "var_seed": 0.0, "var_unit": 0.2, "var_resid": 0.0, "design": "units"}
    text = study.settling_design(row)
    assert "(3 units)" in text and "needs 200 units" in text and "seeds x" not in text


def test_the_conclusion_names_a_warm_start_as_the_start_model_not_the_base() -> None:
    """curricula's cpu conclusion read "Base model: 43.1% held-out accuracy" for the policy after 32 SFT steps."""
    from rlbook.analysis.study import start_text

    assert start_text({"warm_start": {"steps": 32, "lr": 0.0005}}) == \
        "Start model (the base after a 32-step SFT warm start)"
    assert start_text({"warm_start": {"steps": 0}}) == "Base model"
    assert start_text({"seeds": 3}) == "Base model"


def test_steps_text_says_each_methods_steps_when_a_token_budget_ends_runs_early() -> None:
    """spo_chain's cpu run read "3 seeds x 12 steps per method" while its runs stopped at 2 to 12 steps under the
    3,000-token budget; by hand: GRPO ran 5 steps on both seeds, SPO-chain 2 and 4."""
    import pandas as pd
    from rlbook.analysis.study import steps_text

    rows = [("GRPO", 0, s) for s in range(1, 6)] + [("GRPO", 1, s) for s in range(1, 6)] + \
        [("SPO-chain", 0, s) for s in (1, 2)] + [("SPO-chain", 1, s) for s in range(1, 5)]
    m = pd.DataFrame(rows, columns=["method", "seed", "step"])
    assert steps_text(m, 2, 3000) == \
        "2 seeds; steps per run: GRPO 5, SPO-chain 2-4 (each run stops at 3,000 generated tokens)"
    same = m[m["method"] == "GRPO"]
    assert steps_text(same, 2, 3000) == "2 seeds x 5 steps per method"
    assert steps_text(m, 2) == "2 seeds; steps per run: GRPO 5, SPO-chain 2-4"
