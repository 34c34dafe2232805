"""Property tests for rlbook.mechanisms.estimators: one per estimator, plus registry and robustness checks."""

from __future__ import annotations

import inspect
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from rlbook.core.config import ParamError
from rlbook.mechanisms import estimators as E

torch.set_num_threads(1)

REQUIRED = {
    "reinforce", "reinforce_baseline", "rloo", "grpo", "dr_grpo", "reinforce_pp", "reinforce_pp_baseline",
    "lite_ppo", "bnpo", "ngrpo", "a_grae", "single_stream", "stratified", "ace", "dvao",
    "conditional", "copo", "canon", "arm",
}  # fmt: skip
FAST = settings(max_examples=25, deadline=None)


@st.composite
def reward_matrix(draw: st.DrawFn, binary: bool = False, min_g: int = 2) -> torch.Tensor:
    p = draw(st.integers(1, 5))
    g = draw(st.integers(min_g, 8))
    elem = st.sampled_from([0.0, 1.0]) if binary else st.floats(-3.0, 3.0, allow_nan=False, width=32)
    vals = draw(st.lists(elem, min_size=p * g, max_size=p * g))
    return torch.tensor(vals, dtype=torch.float32).reshape(p, g)


def ctx_for(name: str, p: int, g: int, seed: int = 0) -> dict:
    ctx = E.example_context(p, g, seed=seed)
    ctx["state"] = E.make_state(name)
    ctx["answer_ids"] = (ctx["reward_parts"][..., 0] >= 1).long()  # correct answers share one answer
    return ctx


# rewards of the "continuous" case lie in [0, 1.5]: estimators that map rewards by declared bounds
BOUNDED = {"bnpo", "a_grae", "single_stream"}


def compute(name: str, rewards: torch.Tensor, ctx: dict, **hyper: object) -> torch.Tensor:
    """E.compute, passing the context entries the registry does not list yet (answer_ids, spo_drift) as
    the keyword arguments they are until the trainer provides them as context."""
    ctx = dict(ctx)
    params = inspect.signature(E.get(name)).parameters
    for key in ("answer_ids", "spo_drift"):
        value = ctx.pop(key, None)
        if key in params and value is not None:
            if key in E.CONTEXT_NAMES:
                ctx[key] = value
            else:
                hyper[key] = value
    return E.compute(name, rewards, ctx, **hyper)


def close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-4) -> bool:
    return torch.allclose(a, b, atol=tol, rtol=tol)


# ---------------------------------------------------------------- registry


def test_available_lists_all_required_estimators_sorted() -> None:
    names = E.available()
    assert REQUIRED <= set(names)
    assert names == sorted(names)


def test_unknown_estimator_name_raises_param_error_listing_names() -> None:
    with pytest.raises(ParamError, match="allowed: .*grpo"):
        E.get("grpoo")


def test_unknown_hyper_parameter_raises_param_error_listing_allowed_ones() -> None:
    r = torch.rand(2, 4)
    with pytest.raises(ParamError, match=r"unknown hyper-parameter.*epsilon.*allowed: eps"):
        E.compute("grpo", r, {}, epsilon=0.1)
    with pytest.raises(ParamError, match=r"allowed: \(none\)"):
        E.compute("reinforce", r, {}, eps=0.1)


def test_context_is_passed_only_when_named_and_missing_context_is_a_clear_error() -> None:
    r = torch.rand(2, 4)
    full = E.example_context(2, 4)
    assert close(E.compute("grpo", r, full), E.compute("grpo", r, {}))  # extra context ignored
    with pytest.raises(ParamError, match="needs context 'seq_log_ratio'"):
        E.compute("ace", r, {})
    with pytest.raises(ParamError, match="make_state"):
        E.compute("single_stream", r, {"prompt_ids": torch.arange(2)})


def test_make_state_is_none_for_stateless_and_an_object_for_single_stream() -> None:
    assert E.make_state("grpo") is None
    assert isinstance(E.make_state("single_stream"), E.ValueTracker)


@pytest.mark.parametrize("name", sorted(REQUIRED))
@pytest.mark.parametrize("kind", ["binary", "continuous", "all_zero", "all_one"])
def test_every_estimator_returns_finite_float32_of_shape_pg(name: str, kind: str) -> None:
    p, g = 5, 6
    ctx = ctx_for(name, p, g)
    rewards = {
        "binary": ctx["reward_parts"][..., 0],
        "continuous": (ctx["reward_parts"] * ctx["part_weights"]).sum(-1),
        "all_zero": torch.zeros(p, g),
        "all_one": torch.ones(p, g),
    }[kind]
    if kind != "continuous":  # keep the context consistent with the scalar reward
        ctx.update(reward_parts=rewards.unsqueeze(-1), part_weights=torch.ones(1), correct=rewards >= 1)
    hyper = {"max_value": 1.5} if kind == "continuous" and name in BOUNDED else {}
    adv = compute(name, rewards, ctx, **hyper)
    assert adv.shape == (p, g) and adv.dtype == torch.float32
    assert torch.isfinite(adv).all()
    if kind in ("all_zero", "all_one") and name in {
        "grpo",
        "dr_grpo",
        "rloo",
        "lite_ppo",
        "bnpo",
        "stratified",
    }:
        assert close(adv, torch.zeros(p, g)), "all-same groups carry no signal for this estimator"


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_every_estimator_handles_a_single_sample_group(name: str) -> None:
    ctx = ctx_for(name, 3, 1)
    adv = compute(name, ctx["reward_parts"][..., 0], ctx)
    assert adv.shape == (3, 1) and torch.isfinite(adv).all()


# ---------------------------------------------------------------- baselines


@FAST
@given(reward_matrix())
def test_reinforce_is_the_raw_reward_and_baseline_variant_is_batch_centred(r: torch.Tensor) -> None:
    assert close(E.compute("reinforce", r), r)
    a = E.compute("reinforce_baseline", r)
    assert close(a, r - r.mean()) and abs(float(a.sum())) < 1e-3


@FAST
@given(reward_matrix())
def test_rloo_is_unbiased_and_equals_scaled_centered_reward(r: torch.Tensor) -> None:
    g = r.shape[1]
    a = E.compute("rloo", r)
    assert close(a, g / (g - 1) * (r - r.mean(1, keepdim=True)), tol=1e-3)
    assert close(a.sum(1), torch.zeros(r.shape[0]), tol=1e-3)
    # the baseline of sample i does not depend on r_i: raising r_0 raises only A_0 by the same amount
    r2 = r.clone()
    r2[:, 0] += 1.0
    d = E.compute("rloo", r2) - a
    assert close(d[:, 0], torch.ones(r.shape[0]), tol=1e-3)


@FAST
@given(reward_matrix(), st.floats(-5, 5))
def test_reinforce_pp_baseline_ignores_per_prompt_offsets(r: torch.Tensor, shift: float) -> None:
    offsets = torch.arange(r.shape[0], dtype=torch.float32).unsqueeze(1) * shift
    lengths = {"lengths": (torch.arange(r.numel()).reshape(r.shape) % 5 + 1).float()}
    assert close(
        E.compute("reinforce_pp_baseline", r + offsets, lengths), E.compute("reinforce_pp_baseline", r, lengths),
        tol=1e-3,
    )  # fmt: skip


def test_reinforce_pp_needs_the_completion_lengths() -> None:
    with pytest.raises(ParamError, match="needs context 'lengths'"):
        E.compute("reinforce_pp", torch.rand(2, 4), {})


# ---------------------------------------------------------------- group family


@FAST
@given(reward_matrix(), st.floats(0.5, 4.0), st.floats(-3.0, 3.0))
def test_grpo_is_invariant_to_affine_reward_rescaling(r: torch.Tensor, a: float, b: float) -> None:
    r = r[r.std(1) > 0.1] if r.shape[0] else r
    if r.shape[0] == 0:
        return
    assert close(E.compute("grpo", a * r + b), E.compute("grpo", r), tol=1e-3)


def test_grpo_matches_hand_computed_values() -> None:
    r = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    std = math.sqrt(((0.75**2) + 3 * 0.25**2) / 3)
    assert close(E.compute("grpo", r), (r - 0.25) / (std + 1e-6))


@FAST
@given(reward_matrix())
def test_dr_grpo_equals_grpo_without_std_division(r: torch.Tensor) -> None:
    std = r.std(1, keepdim=True)
    assert close(E.compute("dr_grpo", r), E.compute("grpo", r) * (std + 1e-6), tol=1e-3)


@FAST
@given(reward_matrix(min_g=2))
def test_lite_ppo_uses_group_mean_and_batch_std(r: torch.Tensor) -> None:
    a = E.compute("lite_ppo", r)
    assert close(a.sum(1), torch.zeros(r.shape[0]), tol=1e-3)  # centred per group
    expected = (r - r.mean(1, keepdim=True)) / (r.std() + 1e-6) if r.numel() > 1 else r
    assert close(a, expected, tol=1e-3)


@FAST
@given(st.integers(1, 4), st.integers(2, 8))
def test_ngrpo_gives_nonzero_advantage_to_all_wrong_groups(p: int, g: int) -> None:
    zeros = torch.zeros(p, g)
    assert (E.compute("ngrpo", zeros) < -0.1).all()
    assert close(E.compute("grpo", zeros), zeros)
    # with no virtual sample it is GRPO again
    r = torch.randint(0, 2, (p, g)).float()
    assert close(E.compute("ngrpo", r, n_virtual=0), E.compute("grpo", r))


def test_ngrpo_all_wrong_group_matches_closed_form() -> None:
    g = 4  # group of zeros + one virtual 1: mean 1/5, unbiased std sqrt(1/5 * 4/5 * 5/4)
    mean, std = 0.2, math.sqrt((4 * 0.04 + 0.64) / 4)
    assert close(E.compute("ngrpo", torch.zeros(1, g)), torch.full((1, g), -mean / (std + 1e-6)))


def test_bnpo_reduces_to_group_baseline_when_alpha_beta_one() -> None:
    # group means 1/8 and 7/8: v = 2 * (3/8)^2 = 0.28 >= m(1-m) = 0.25, so a, b <= 0 and alpha = beta = 1
    r = torch.zeros(2, 8)
    r[0, 0] = 1.0
    r[1, :7] = 1.0
    p = r.mean(1, keepdim=True)
    assert close(E.compute("bnpo", r), r - p)


def test_bnpo_weights_by_inverse_beta_density_with_moment_fit() -> None:
    r = torch.tensor([[1.0, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 0, 0]])
    p = r.mean(1).double()
    m, v = p.mean(), p.var()
    k = m * (1 - m) / v - 1
    alpha, beta = max(1.0, float(1 + k * m / 3)), max(1.0, float(1 + k * (1 - m) / 3))
    pdf = torch.distributions.Beta(alpha, beta).log_prob(p).exp()
    expected = ((r.double() - p[:, None]) / pdf[:, None]).float()
    assert alpha > 1 and beta > 1
    assert close(E.compute("bnpo", r), expected)


@FAST
@given(reward_matrix(binary=True))
def test_bnpo_all_same_batches_are_zero_and_advantage_sign_follows_reward(r: torch.Tensor) -> None:
    a = E.compute("bnpo", r)
    assert torch.isfinite(a).all()
    centred = r - r.mean(1, keepdim=True)
    assert (torch.sign(a) == torch.sign(centred)).all() | (a.abs() < 1e-6).all()


def test_bnpo_decomposes_multi_part_rewards_into_the_mean_of_per_part_advantages() -> None:
    ctx = E.example_context(6, 8, K=3, seed=1)
    parts, w = ctx["reward_parts"], ctx["part_weights"]
    r = (parts * w).sum(-1)
    a = E.compute("bnpo", r, ctx, decompose=True)
    per_part = sum(E.compute("bnpo", parts[..., k]) for k in range(3)) / 3
    assert close(a, per_part)
    assert not close(a, E.compute("bnpo", r, max_value=2.0))  # differs from normalising the sum
    assert close(E.compute("bnpo", r, ctx, max_value=2.0), E.compute("bnpo", r, max_value=2.0))  # default off


def test_a_grae_scales_down_positive_advantages_asymmetrically() -> None:
    r = torch.tensor([[1.0, 0, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])  # batch accuracy 3/16
    a, base = E.compute("a_grae", r), E.compute("grpo", r)
    m = float(r.mean(1).mean())
    sq = r.mean(1, keepdim=True).sqrt()
    factor = 0.5 * ((1 - m) / (1 - sq + 1e-6) + m / (sq + 1e-6))
    expected = torch.where(base * factor > 0, base * factor * m, base * factor)
    assert close(a, expected, tol=1e-3)
    # asymmetry: in a 50/50 group GRPO is symmetric, A-GRAE's positive side is smaller
    row = a[1]
    assert float(row[row > 0].sum()) < -float(row[row < 0].sum())


def test_a_grae_step_curriculum_moves_focus_from_easy_to_hard_prompts() -> None:
    r = torch.tensor([[1.0, 1, 1, 0], [1, 0, 0, 0]])  # easy prompt, hard prompt
    early = E.compute("a_grae", r, {"step": 0, "total_steps": 10}, curriculum="step")
    late = E.compute("a_grae", r, {"step": 10, "total_steps": 10}, curriculum="step")
    ratio = lambda a: float(a[0].abs().sum() / a[1].abs().sum())  # noqa: E731
    assert ratio(early) > 1.0 > ratio(late)


def test_stratified_removes_cross_stratum_offset_and_blends_with_grpo() -> None:
    # two strata by length; long answers all have reward 1 more than short ones
    lengths = torch.tensor([[1.0, 2, 3, 4, 10, 11, 12, 13]])
    r = torch.tensor([[0.0, 0.2, 0.4, 0.6, 1.0, 1.2, 1.4, 1.6]])
    ctx = {"lengths": lengths}
    san = E.compute("stratified", r, ctx, blend=1.0)
    assert close(san[:, :4], san[:, 4:])  # same within-stratum position, same advantage
    assert close(san.reshape(2, 4).sum(1), torch.zeros(2), tol=1e-4)
    assert close(E.compute("stratified", r, ctx, blend=0.0), E.compute("grpo", r))
    mix = E.compute("stratified", r, ctx, blend=0.3)
    assert close(mix, 0.3 * san + 0.7 * E.compute("grpo", r))


def test_stratified_by_reward_part_groups_equal_part_values() -> None:
    parts = torch.tensor([[[1.0], [1.0], [0.0], [0.0]]])
    r = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    a = E.compute("stratified", r, {"reward_parts": parts}, key="part", part=0, blend=1.0)
    assert close(a[:, :2], a[:, 2:]) and (a[:, 0] > 0).all()


# ---------------------------------------------------------------- multi-channel


@FAST
@given(st.integers(1, 4), st.integers(2, 8), st.integers(0, 10_000))
def test_dvao_is_bounded_and_ignores_zero_variance_parts(p: int, g: int, seed: int) -> None:
    ctx = E.example_context(p, g, K=3, seed=seed)
    parts, w = ctx["reward_parts"], ctx["part_weights"]
    r = (parts * w).sum(-1)
    a = E.compute("dvao", r, ctx)
    assert (a.abs() <= math.sqrt(g - 1) + 1e-3).all()
    # a constant extra part changes nothing
    parts2 = torch.cat([parts, torch.full((p, g, 1), 0.7)], dim=-1)
    w2 = torch.cat([w, torch.tensor([5.0])])
    a2 = E.compute("dvao", r, {"reward_parts": parts2, "part_weights": w2})
    assert close(a, a2, tol=1e-4)


def test_dvao_upweights_the_part_with_more_variance() -> None:
    parts = torch.tensor([[[1.0, 0.50], [0.0, 0.52], [1.0, 0.48], [0.0, 0.50]]])  # part 0 varies much more
    a = E.compute("dvao", parts.sum(-1), {"reward_parts": parts, "part_weights": torch.ones(2)})
    z0 = (parts[..., 0] - 0.5) / 0.5
    assert close(a, z0, tol=0.05)


def test_conditional_efficiency_channel_only_acts_among_correct_samples() -> None:
    correct = torch.tensor([[True, True, False, False]])
    r = correct.float()
    lengths = torch.tensor([[5.0, 20.0, 1.0, 30.0]])
    ctx = {"correct": correct, "lengths": lengths}
    a = E.compute("conditional", r, ctx, weight=0.5)
    acc = E.compute("grpo", r)
    assert close(a[:, 2:], acc[:, 2:])  # incorrect: accuracy channel only, length ignored
    assert a[0, 0] > a[0, 1] > 0  # shorter correct beats longer correct
    assert close(a[0, 0] - a[0, 1], torch.tensor(1.0))  # z-scores +-1 among the two correct, times 0.5
    # a small length cost folded into the scalar reward is swamped by accuracy variance in GRPO
    scalar = E.compute("grpo", r - 0.001 * lengths)
    assert float(scalar[0, 0] - scalar[0, 1]) < 0.05


# ---------------------------------------------------------------- confidence / metric / consistency


def test_ace_penalises_overconfident_errors_more_and_leaves_positives_alone() -> None:
    r = torch.tensor([[1.0, 0.0, 0.0, 1.0]])
    c = torch.tensor([[3.0, 3.0, -3.0, -3.0]])
    a, base = E.compute("ace", r, {"seq_log_ratio": c}), E.compute("grpo", r)
    assert close(a[r > 0], base[r > 0])
    assert a[0, 1] < a[0, 2] < 0  # same error, more confident -> more negative
    assert close(a[0, 1], base[0, 1] * (1 + math.log1p(math.exp(3.0))))


def test_arm_lowers_advantage_of_overconfident_correct_answers_and_skips_all_wrong_groups() -> None:
    r = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    c = torch.tensor([[4.0, 0.0, 0.0, 0.0], [4.0, 0.0, 0.0, 0.0]])
    ctx = {"seq_log_ratio": c, "lengths": torch.ones(2, 4)}
    a = E.compute("arm", r, ctx)
    assert a[0, 0] < a[0, 1]  # equally correct, the over-confident one gets less
    assert close(a[1], torch.zeros(4))  # all-zero group keeps GRPO's zeros
    assert close(E.compute("arm", r, {"seq_log_ratio": torch.zeros(2, 4), "lengths": torch.ones(2, 4)}),
                 E.compute("grpo", r))  # fmt: skip


@FAST
@given(st.integers(0, 10_000))
def test_canon_learns_the_metric_direction_without_presuming_it(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randperm(8, generator=gen).float().unsqueeze(0) + 1
    long = lengths > lengths.median()
    r = long.float() * 0.5 + 0.25 * (torch.rand(1, 8, generator=gen) > 0.5).float()  # long answers always do better
    a = E.compute("canon", r, {"lengths": lengths})
    assert float(a[long].sum()) > float(a[~long].sum())
    flipped = E.compute("canon", r, {"lengths": 100 - lengths})  # same data, metric reversed
    assert close(a, flipped, tol=1e-4)  # the halves are the same sets: the direction comes from rewards


def test_canon_with_no_inter_weight_is_within_half_centring() -> None:
    r = torch.tensor([[1.0, 0.0, 1.0, 1.0]])
    lengths = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    a = E.compute("canon", r, {"lengths": lengths}, inter_weight=0.0, scale=False)
    assert close(a, torch.tensor([[0.5, -0.5, 0.0, 0.0]]))


def test_copo_gives_signal_to_all_same_groups_and_is_grpo_on_diverse_correct_answers() -> None:
    r = torch.tensor([[1.0, 1, 1, 1], [0, 0, 0, 0], [1, 1, 0, 0]])
    ids = torch.tensor([[0, 0, 0, 0], [1, 1, 1, 1], [2, 3, 4, 5]])  # consistent, consistent, 2 bits
    a = compute("copo", r, {"answer_ids": ids})
    assert (a[0] > 0).all() and (a[1] < 0).all()  # GRPO gives 0 there
    assert close(a[2, :2], E.compute("grpo", r)[2, :2], tol=1e-3)  # w = sigmoid(20 * 1.5) ~ 1 where r != 0
    with pytest.raises(ParamError, match="answer_ids"):
        E.compute("copo", r)


# ---------------------------------------------------------------- stateful


def _spo_step(
    state: E.ValueTracker, rewards: torch.Tensor, ids: torch.Tensor, drift: torch.Tensor
) -> torch.Tensor:
    return compute("single_stream", rewards, {"state": state, "prompt_ids": ids, "spo_drift": drift})


def test_single_stream_tracker_learns_per_prompt_success_rate() -> None:
    state = E.make_state("single_stream")
    ids = torch.tensor([7, 11])
    for _ in range(60):
        _spo_step(state, torch.tensor([[1.0], [0.0]]), ids, torch.zeros(2))
    assert state.value(7) > 0.95 and state.value(11) < 0.05
    # a prompt that always succeeds now gets a smaller advantage than a surprising success
    a = _spo_step(state, torch.tensor([[1.0], [1.0]]), ids, torch.zeros(2))
    assert a[1, 0] > a[0, 0]


def test_single_stream_gives_signal_without_groups_and_adapts_faster_after_policy_shift() -> None:
    ids = torch.tensor([0])
    slow, fast = E.make_state("single_stream"), E.make_state("single_stream")
    for s in (slow, fast):
        for _ in range(20):
            _spo_step(s, torch.ones(1, 2), ids, torch.zeros(1))
    _spo_step(slow, torch.zeros(1, 2), ids, torch.zeros(1))  # policy unchanged: rho = rho_max
    _spo_step(fast, torch.zeros(1, 2), ids, torch.full((1,), 1.0))  # big drift: rho = rho_min
    assert fast.value(0) < slow.value(0)


def test_single_stream_state_round_trips_exactly_through_state_dict() -> None:
    state = E.make_state("single_stream")
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        ids = torch.randperm(6, generator=gen)[:3]
        _spo_step(state, torch.rand(3, 4, generator=gen), ids, torch.rand(3, generator=gen) * 0.02)
    sd = state.state_dict()
    assert all(isinstance(v, torch.Tensor) for v in sd.values())
    restored = E.make_state("single_stream")
    restored.load_state_dict({k: v.clone() for k, v in sd.items()})
    r, ids, c = torch.rand(3, 4, generator=gen), torch.tensor([0, 1, 9]), torch.rand(3, generator=gen) * 0.02
    assert torch.equal(_spo_step(state, r, ids, c), _spo_step(restored, r, ids, c))
    assert all(
        torch.equal(a, b)
        for a, b in zip(state.state_dict().values(), restored.state_dict().values(), strict=True)
    )


# ---------------------------------------------------------------- example_context


def test_example_context_is_complete_and_deterministic() -> None:
    a, b = E.example_context(3, 4, K=2, seed=5), E.example_context(3, 4, K=2, seed=5)
    assert set(a) == E.CONTEXT_NAMES - {"state"}
    assert a["reward_parts"].shape == (3, 4, 2) and a["part_weights"].shape == (2,)
    assert torch.equal(a["correct"], a["reward_parts"][..., 0] >= 1)
    same = [torch.equal(a[k], b[k]) or (a[k].is_floating_point() and torch.allclose(a[k], b[k], equal_nan=True))
            for k in a if isinstance(a[k], torch.Tensor)]  # token_values: NaN where no value was estimated
    assert all(same)
    assert not torch.equal(a["reward_parts"], E.example_context(3, 4, K=2, seed=6)["reward_parts"])
