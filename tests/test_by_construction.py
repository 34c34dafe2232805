"""Properties the method notebooks once listed as claims but that hold by construction of the mechanism:
tested here with hand-computed numbers instead of being "replicated" by a run.

Elsewhere: GSPO clips almost every token at epsilon 3e-4 and GSPO's / SAPO's gradients equal GRPO's at ratio 1
(tests/test_measure.py); stratified normalisation has zero stratum bias and NGRPO's all-wrong update on one
Bernoulli arm points the right way (tests/test_simlab.py).
"""

from __future__ import annotations

import pytest
import torch
from rlbook.mechanisms import estimators as E


def test_ngrpo_gives_every_all_wrong_group_a_negative_advantage_where_grpo_gives_zero():
    r = torch.tensor([[0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    # all wrong + a virtual 1: [0, 0, 0, 0, 1], mean 0.2, Bessel var (4 * 0.04 + 0.64) / 4 = 0.2, std 0.44721:
    #   A = -0.2 / 0.44721 = -0.44721 for every sample
    # one right + a virtual 1: [1, 0, 0, 0, 1], mean 0.4, var (2 * 0.36 + 3 * 0.16) / 4 = 0.3, std 0.54772:
    #   A = 0.6 / 0.54772 = 1.09545 (right), -0.4 / 0.54772 = -0.73030 (wrong)
    ng = E.compute("ngrpo", r)
    assert ng[0].tolist() == pytest.approx([-0.44721] * 4, abs=1e-4)
    assert ng[1].tolist() == pytest.approx([1.09545, -0.73030, -0.73030, -0.73030], abs=1e-4)
    assert E.compute("grpo", r)[0].abs().max() == 0.0


def test_ngrpo_has_fewer_zero_advantage_groups_than_grpo_on_any_batch_with_an_all_wrong_group():
    gen = torch.Generator().manual_seed(0)
    r = (torch.rand(64, 8, generator=gen) < 0.1).float()  # most groups all wrong
    zero = {n: int((E.compute(n, r).abs().amax(-1) < 1e-8).sum()) for n in ("grpo", "ngrpo")}
    all_wrong, all_right = int((r.sum(-1) == 0).sum()), int((r.sum(-1) == 8).sum())
    assert all_wrong > 0 and zero["grpo"] == all_wrong + all_right and zero["ngrpo"] == all_right
