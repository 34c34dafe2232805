"""rlbook.study: held-out curve metrics by hand, claims evaluated from a tiny sweep with regime checks."""

from __future__ import annotations

import numpy as np
import pytest
from rlbook import study
from rlbook.errors import ParamError


def test_drawdown_is_the_largest_fall_below_the_running_maximum():
    # running max 0.2, 0.5, 0.5, 0.5, 0.6: falls 0, 0, 0.2, 0.1, 0 -> 0.2
    assert study.drawdown(np.array([0.2, 0.5, 0.3, 0.4, 0.6])) == pytest.approx(0.2)
    assert study.drawdown(np.array([0.1, 0.2, 0.3])) == 0.0


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
