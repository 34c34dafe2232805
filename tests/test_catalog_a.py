"""A-GRAE, single-stream (SPO), stratified GRPO, ACE and DVAO against numbers worked out by hand from each
paper's formula on a small batch, plus the unbiased pass@k estimator and the catalog_a lesson figures."""

from __future__ import annotations

import pytest
import torch
from rlbook.analysis import measure
from rlbook.core.config import ParamError
from rlbook.mechanisms import estimators as E

torch.set_num_threads(1)
TOL = dict(atol=1e-4, rtol=0)


def close(x: torch.Tensor, expected: list) -> None:
    torch.testing.assert_close(x.double(), torch.tensor(expected, dtype=torch.float64), **TOL)


# ------------------------------------------------------------------------------------------- A-GRAE
# p = (0.25, 0.75), batch mean m = 0.5; GRPO (Bessel std 0.5): (1.5, -0.5, -0.5, -0.5), (0.5, 0.5, 0.5, -1.5).
# weight 0.5 [(1 - t)/(1 - sqrt p) + t/sqrt p]: group 1 (sqrt p = 0.5) 1 for any t; group 2 (sqrt p = 0.8660254)
# t = 0.5: 0.5 (0.5/0.1339746 + 0.5/0.8660254) = 2.1547005; positives x min(1, m / 1) = 0.5.
def test_a_grae_reweights_by_difficulty_and_halves_positive_advantages_at_half_accuracy():
    r = torch.tensor([[1.0, 0, 0, 0], [1.0, 1, 1, 0]])
    close(E.compute("a_grae", r), [[0.75, -0.5, -0.5, -0.5], [0.5386751, 0.5386751, 0.5386751, -3.2320508]])


def test_a_grae_step_curriculum_shifts_weight_to_the_harder_group_side():
    # t = 3/4: group 2 weight 0.5 (0.25/0.1339746 + 0.75/0.8660254) = 1.3660254; shrink still m = 0.5
    r = torch.tensor([[1.0, 0, 0, 0], [1.0, 1, 1, 0]])
    adv = E.compute("a_grae", r, context={"step": 3, "total_steps": 4}, curriculum="step")
    close(adv, [[0.75, -0.5, -0.5, -0.5], [0.3415064, 0.3415064, 0.3415064, -2.0490381]])


# ------------------------------------------------------------------------------------------- SPO
def test_single_stream_uses_the_tracked_value_before_updating_it_and_whitens_over_the_batch():
    state = E.make_state("single_stream")
    r = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    # new prompts: p_hat = 0.5; r - p_hat = (.5, -.5, .5, .5); mean .25, Bessel std .5 -> (.5, -1.5, .5, .5)
    adv = E.compute("single_stream", r, context={"state": state, "prompt_ids": torch.tensor([7, 9])})
    close(adv, [[0.5, -1.5], [0.5, 0.5]])
    # no drift measured: rho = rho_max = 0.96; alpha <- .96 * .5 + sum r, beta <- .96 * .5 + sum (1 - r)
    assert state.table[7] == pytest.approx((1.48, 1.48)) and state.table[9] == pytest.approx((2.48, 0.48))
    # prompt 9 again, drift D = 0.06 = D_half: rho = 2^-1 = 0.5 -> clipped to rho_min 0.875;
    # p_hat = 2.48 / 2.96 = 0.8378378; r - p_hat = (-.8378, .1622): whitened (-0.7071068, 0.7071068)
    adv = E.compute("single_stream", torch.tensor([[0.0, 1.0]]),
                    context={"state": state, "prompt_ids": torch.tensor([9]), "spo_drift": torch.tensor([0.06])})
    close(adv, [[-0.7071068, 0.7071068]])
    assert state.table[9] == pytest.approx((0.875 * 2.48 + 1, 0.875 * 0.48 + 1))


# ------------------------------------------------------------------------------------------- stratified
def test_stratified_normalises_within_each_stratum_then_blends_with_grpo():
    r = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    fmt = torch.tensor([[1.0, 1.0, 0.0, 0.0]])  # strata: samples {0, 1} (format kept) and {2, 3}
    ctx = {"reward_parts": torch.stack([r, fmt], dim=-1)}
    # SAN: stratum {0,1} rewards (1, 1): 0, 0; stratum {2,3} rewards (1, 0), population std .5: (1, -1)
    close(E.compute("stratified", r, context=ctx, key="part", part=-1, blend=1.0), [[0.0, 0.0, 1.0, -1.0]])
    # GRPO: mean .75, Bessel std .5: (.5, .5, .5, -1.5); blend .5: (.25, .25, .75, -1.25)
    close(E.compute("stratified", r, context=ctx, key="part", part=-1, blend=0.5), [[0.25, 0.25, 0.75, -1.25]])


# ------------------------------------------------------------------------------------------- ACE
def test_ace_scales_only_negative_advantages_by_one_plus_softplus_of_the_confidence_shift():
    r = torch.tensor([[1.0, 0, 0, 0]])
    c = torch.tensor([[0.3, 2.0, 0.0, -3.0]])
    # GRPO (1.5, -.5, -.5, -.5); softplus(2) = 2.1269280, softplus(0) = 0.6931472, softplus(-3) = 0.0485874
    adv = E.compute("ace", r, context={"seq_log_ratio": c}, alpha=1.0)
    close(adv, [[1.5, -0.5 * 3.1269280, -0.5 * 1.6931472, -0.5 * 1.0485874]])


# ------------------------------------------------------------------------------------------- DVAO
PARTS = torch.tensor([[[1.0, 1.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0]]])  # correct, format
OMEGA = torch.tensor([1.0, 0.5])


def test_dvao_weights_each_objective_by_its_group_variance():
    # correct: var .25, z = (1, -1, -1, 1); format: mean .75, var .1875, z = (.5773503 x 3, -1.7320508)
    # raw weights (1 x .25, .5 x .1875) = (.25, .09375) -> w = (.7272727, .2727273)
    r = (PARTS * OMEGA).sum(-1)
    adv = E.compute("dvao", r, context={"reward_parts": PARTS, "part_weights": OMEGA})
    close(adv, [[0.8847319, -0.5698135, -0.5698135, 0.2548952]])
    assert float(adv.abs().max()) <= 3 ** 0.5  # bounded by sqrt(G - 1)


def test_dvao_fixed_weighting_is_the_static_advantage_sum():
    # w = (1, .5) / 1.5 = (2/3, 1/3), whatever the variances
    r = (PARTS * OMEGA).sum(-1)
    adv = E.compute("dvao", r, context={"reward_parts": PARTS, "part_weights": OMEGA}, weighting="fixed")
    close(adv, [[2 / 3 + 0.5773503 / 3, -2 / 3 + 0.5773503 / 3, -2 / 3 + 0.5773503 / 3, 2 / 3 - 1.7320508 / 3]])
    with pytest.raises(ParamError, match="weighting='sum'.*allowed: variance, fixed"):
        E.compute("dvao", r, context={"reward_parts": PARTS, "part_weights": OMEGA}, weighting="sum")


# ------------------------------------------------------------------------------------------- pass@k
@pytest.mark.parametrize(("n", "c", "k", "expected"), [
    (4, 1, 2, 1 - 3 / 6),  # 1 - C(3, 2) / C(4, 2)
    (5, 2, 3, 1 - 1 / 10),  # 1 - C(3, 3) / C(5, 3)
    (8, 0, 8, 0.0), (8, 1, 8, 1.0), (8, 3, 1, 3 / 8),
])
def test_pass_at_k_estimate_matches_the_combinatorial_formula(n, c, k, expected):
    assert measure.pass_at_k_estimate(n, c, k) == pytest.approx(expected)


def test_pass_at_k_estimate_refuses_k_above_n():
    with pytest.raises(ParamError, match="k=9"):
        measure.pass_at_k_estimate(8, 1, 9)
