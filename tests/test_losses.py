"""Policy losses, aggregation modes and KL estimators (rlbook.mechanisms.losses)."""

from __future__ import annotations

import math

import pytest
import torch
from rlbook.core.config import ParamError
from rlbook.mechanisms import losses

torch.set_num_threads(1)


def _batch(b: int = 4, t: int = 6, seed: int = 0, dtype: torch.dtype = torch.float64):
    g = torch.Generator().manual_seed(seed)
    old = -torch.rand(b, t, generator=g, dtype=dtype) * 3 - 0.1
    logp = (old + 0.3 * torch.randn(b, t, generator=g, dtype=dtype)).clamp(max=-1e-3)
    lengths = torch.randint(2, t + 1, (b,), generator=g)
    mask = torch.arange(t).unsqueeze(0) < lengths.unsqueeze(1)
    adv = torch.randn(b, generator=g, dtype=dtype)
    return logp.requires_grad_(True), old, adv, mask


def _ctx(b: int, t: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return {
        "token_ids": torch.randint(0, 5, (b, t), generator=g),
        "group_ids": torch.arange(b) // 2,
        "entropy": torch.rand(b, t, generator=g, dtype=torch.float64) * 0.5,
        "ref_logp": None,
        "correct": torch.arange(b) % 2 == 0,
    }


def _hyper(name: str, t: int) -> dict:
    """Hyper-parameters a loss needs beyond its defaults on a [B, t] batch."""
    return {"max_length": t} if name == "drpo" else {}


def _one_token(ratio: float, adv: float, name: str = "ppo_clip", **hyper):
    """A single unmasked token with the given ratio and advantage; returns (loss, grad wrt logp, info)."""
    old = torch.tensor([[math.log(0.5)]], dtype=torch.float64)
    logp = (old + math.log(ratio)).clone().requires_grad_(True)
    loss, info = losses.compute(
        name, logp, old, torch.tensor([adv], dtype=torch.float64), torch.ones(1, 1, dtype=torch.bool), **hyper
    )
    loss.sum().backward()
    return loss.item(), logp.grad.item(), info


# ------------------------------------------------------------------ registry


def test_registry_lists_every_loss():
    assert losses.available() == sorted(["ppo_clip", "gspo", "sapo", "cispo", "gtpo", "drpo", "mhpo"])


def test_unknown_loss_name_is_param_error_listing_available():
    with pytest.raises(ParamError, match="allowed: cispo, drpo, gspo"):
        losses.get("nope")


def test_unknown_hyperparameter_is_param_error_listing_allowed():
    logp, old, adv, mask = _batch()
    with pytest.raises(ParamError, match="allowed: eps_low, eps_high, dual_clip"):
        losses.compute("ppo_clip", logp, old, adv, mask, clip=0.1)


def test_context_passed_only_when_named_and_missing_required_context_is_error():
    logp, old, adv, mask = _batch()
    ctx = _ctx(*logp.shape)
    losses.compute("ppo_clip", logp, old, adv, mask, context=ctx)  # extra context ignored
    with pytest.raises(ParamError, match="needs context 'token_ids'"):
        losses.compute("gtpo", logp, old, adv, mask, context={})
    assert losses.context_names("gtpo") == ["token_ids", "group_ids", "entropy"]
    assert "eps_low" in losses.hyper_parameters("ppo_clip")
    assert "eps_low" not in losses.hyper_parameters("gspo")


def test_every_loss_returns_token_loss_and_scalar_clip_frac():
    logp, old, adv, mask = _batch()
    ctx = _ctx(*logp.shape)
    for name in losses.available():
        tl, info = losses.compute(name, logp, old, adv, mask, context=ctx, **_hyper(name, logp.shape[1]))
        assert tl.shape == logp.shape
        assert info["clip_frac"].dim() == 0 and 0.0 <= info["clip_frac"].item() <= 1.0
        assert all(v.dim() == 0 and not v.requires_grad for v in info.values())


# ------------------------------------------------------------------ ppo_clip


def test_ppo_clip_positive_advantage_clipped_at_one_plus_eps_high_with_zero_gradient():
    loss, grad, info = _one_token(1.5, 1.0, eps_low=0.2, eps_high=0.28)
    assert loss == pytest.approx(-1.28)
    assert grad == 0.0 and info["clip_frac"].item() == 1.0
    loss, grad, info = _one_token(1.1, 1.0, eps_low=0.2, eps_high=0.28)  # inside: -A·ρ, grad -A·ρ
    assert loss == pytest.approx(-1.1) and grad == pytest.approx(-1.1) and info["clip_frac"].item() == 0.0


def test_clip_higher_band_counts_positive_advantage_tokens_between_the_two_upper_bounds():
    # eps 0.2 / 0.28: band (1.2, 1.28] with A > 0.  Ratios 1.0, 1.25, 1.3, 1.25, 1.21 with A +1 +1 +1 -1 +1, the
    # last token padding: 1.25 (A > 0) is in; 1.0 below, 1.3 above, 1.25 with A < 0 out; padding out -> 1 / 4
    ratio = torch.tensor([[1.0, 1.25, 1.3, 1.25, 1.21]], dtype=torch.float64)
    adv = torch.tensor([[1.0, 1.0, 1.0, -1.0, 1.0]], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 1, 0]], dtype=torch.bool)
    old = torch.zeros(1, 5, dtype=torch.float64)
    _, info = losses.compute("ppo_clip", ratio.log(), old, adv, mask, eps_low=0.2, eps_high=0.28)
    assert float(info["band_frac"]) == pytest.approx(0.25)
    _, sym = losses.compute("ppo_clip", ratio.log(), old, adv, mask, eps_low=0.2, eps_high=0.2)
    assert "band_frac" not in sym  # no band without clip-higher (and no cost)


def test_ppo_clip_negative_advantage_clipped_at_one_minus_eps_low_with_zero_gradient():
    loss, grad, info = _one_token(0.5, -1.0, eps_low=0.2, eps_high=0.28)
    assert loss == pytest.approx(0.8)
    assert grad == 0.0 and info["clip_frac"].item() == 1.0


def test_ppo_clip_pessimistic_side_is_never_clipped():
    # A > 0 with ρ below 1 - eps and A < 0 with ρ above 1 + eps keep the unclipped (worse) value and gradient
    loss, grad, _ = _one_token(0.5, 1.0, eps_low=0.2, eps_high=0.2)
    assert loss == pytest.approx(-0.5) and grad == pytest.approx(-0.5)
    loss, grad, _ = _one_token(2.0, -1.0, eps_low=0.2, eps_high=0.2)
    assert loss == pytest.approx(2.0) and grad == pytest.approx(2.0)


def test_dual_clip_bounds_negative_advantage_loss_at_c_times_abs_advantage():
    loss, grad, info = _one_token(5.0, -1.0, dual_clip=3.0)
    assert loss == pytest.approx(3.0) and grad == 0.0
    assert info["dual_clip_frac"].item() == 1.0 and info["clip_frac"].item() == 1.0
    loss, grad, info = _one_token(2.0, -1.0, dual_clip=3.0)  # below c: ordinary unclipped branch
    assert loss == pytest.approx(2.0) and grad == pytest.approx(2.0) and info["dual_clip_frac"].item() == 0.0
    loss, _, _ = _one_token(5.0, 1.0, dual_clip=3.0)  # positive advantages unaffected
    assert loss == pytest.approx(-1.2)
    with pytest.raises(ParamError, match="dual_clip"):
        _one_token(1.0, -1.0, dual_clip=0.5)


def test_ppo_clip_gradcheck_float64():
    logp, old, adv, mask = _batch()
    ctx = _ctx(*logp.shape)

    def f(x):
        return losses.aggregate(
            losses.compute(
                "ppo_clip", x, old, adv, mask, context=ctx, eps_low=0.1, eps_high=0.15, dual_clip=2.0
            )[0],
            mask,
            "seq_mean_token_mean",
        )

    assert torch.autograd.gradcheck(f, (logp.detach().clone().requires_grad_(True),))


# ------------------------------------------------------------------ gspo


def test_gspo_sequence_ratio_equals_exp_of_mean_token_log_ratio():
    logp, old, adv, mask = _batch()
    tl, info = losses.compute("gspo", logp, old, adv, mask, seq_eps_low=1.0, seq_eps_high=1e9)
    lr = torch.where(mask, logp - old, torch.zeros_like(logp)).detach()
    s = torch.exp(lr.sum(-1) / mask.sum(-1))
    expected = torch.where(mask, -(adv * s).unsqueeze(-1).expand_as(logp), torch.zeros_like(logp))
    torch.testing.assert_close(tl.detach(), expected)
    assert info["seq_ratio_mean"].item() == pytest.approx(s.mean().item())


def test_gspo_gradient_matches_finite_difference_of_sequence_objective():
    """seq_mean_token_mean of the token form == mean_i max(-A s_i, -A clip(s_i)) in value and gradient."""
    logp, old, adv, mask = _batch(seed=3)

    def token_form(x):
        return losses.aggregate(
            losses.compute("gspo", x, old, adv, mask, seq_eps_low=0.05, seq_eps_high=0.05)[0],
            mask,
            "seq_mean_token_mean",
        )

    def sequence_form(x):
        s = torch.exp(torch.where(mask, x - old, torch.zeros_like(x)).sum(-1) / mask.sum(-1))
        return torch.maximum(-adv * s, -adv * s.clamp(0.95, 1.05)).mean()

    x = logp.detach().clone().requires_grad_(True)
    g1 = torch.autograd.grad(token_form(x), x)[0]
    g2 = torch.autograd.grad(sequence_form(x), x)[0]
    assert token_form(x).item() == pytest.approx(sequence_form(x).item())
    torch.testing.assert_close(g1, g2)
    assert torch.autograd.gradcheck(sequence_form, (x,))


# ------------------------------------------------------------------ sapo


def test_sapo_gate_at_ratio_one_gives_plain_policy_gradient():
    logp, _, adv, mask = _batch()
    old = logp.detach().clone()  # on-policy: ρ = 1 everywhere
    tl, info = losses.compute("sapo", logp, old, adv, mask, tau_pos=1.0, tau_neg=1.05)
    (g,) = torch.autograd.grad(tl.sum(), logp)
    expected = torch.where(mask, -adv.unsqueeze(-1).expand_as(logp), torch.zeros_like(logp))
    torch.testing.assert_close(g, expected)
    assert info["clip_frac"].item() == 0.0 and info["gate_weight_mean"].item() == pytest.approx(1.0)


def test_sapo_gate_attenuates_far_off_policy_tokens_smoothly_and_negative_gate_decays_faster():
    _, g_near, _ = _one_token(1.1, 1.0, "sapo")
    _, g_far, info = _one_token(8.0, 1.0, "sapo")
    assert abs(g_far) < abs(g_near) and g_far != 0.0 and info["clip_frac"].item() == 1.0
    # weight 4σ(1-σ): larger tau decays faster away from ρ = 1
    _, gp, _ = _one_token(3.0, 1.0, "sapo", tau_pos=1.0, tau_neg=2.0)
    _, gn, _ = _one_token(3.0, -1.0, "sapo", tau_pos=1.0, tau_neg=2.0)
    assert abs(gn) < abs(gp)


def test_sapo_gradcheck_float64():
    logp, old, adv, mask = _batch(seed=5)
    assert torch.autograd.gradcheck(
        lambda x: losses.compute("sapo", x, old, adv, mask, tau_pos=0.8, tau_neg=1.5)[0].sum(),
        (logp.detach().clone().requires_grad_(True),),
    )


# ------------------------------------------------------------------ cispo


def test_cispo_weight_is_detached_so_gradient_is_clipped_weight_times_advantage():
    logp, old, adv, mask = _batch(seed=1)
    tl, info = losses.compute("cispo", logp, old, adv, mask, is_eps_low=0.1, is_eps_high=0.1)
    (g,) = torch.autograd.grad(tl.sum(), logp)
    w = torch.exp(logp.detach() - old).clamp(0.9, 1.1)
    expected = torch.where(mask, -w * adv.unsqueeze(-1), torch.zeros_like(w))
    torch.testing.assert_close(g, expected)
    clipped = ((torch.exp(logp.detach() - old) - 1).abs() > 0.1) & mask
    assert info["clip_frac"].item() == pytest.approx(clipped.sum().item() / mask.sum().item())


def test_cispo_keeps_gradient_on_tokens_ppo_would_clip():
    _, g_ppo, _ = _one_token(2.0, 1.0, "ppo_clip")
    _, g_cispo, info = _one_token(2.0, 1.0, "cispo", is_eps_high=0.2)
    assert g_ppo == 0.0 and g_cispo == pytest.approx(-1.2) and info["clip_frac"].item() == 1.0


# ------------------------------------------------------------------ gtpo


def _gtpo_case():
    # one group of 3: completion 0 positive, 1 and 2 negative; 3 is another group (positive)
    ids = torch.tensor([[7, 8, 1, 9, 0], [7, 8, 2, 9, 0], [7, 3, 4, 5, 9], [7, 8, 1, 9, 0]])
    mask = torch.tensor(
        [[1, 1, 1, 1, 0], [1, 1, 1, 1, 0], [1, 1, 1, 1, 1], [1, 1, 1, 1, 0]], dtype=torch.bool
    )
    adv = torch.tensor([1.0, -0.5, -0.5, 1.0], dtype=torch.float64)
    group = torch.tensor([0, 0, 0, 1])
    ent = torch.full((4, 5), 0.1, dtype=torch.float64)
    return ids, mask, adv, group, ent


def test_gtpo_conflict_tokens_are_same_token_same_position_opposite_sign_same_group():
    ids, mask, adv, group, _ = _gtpo_case()
    pos = losses.gtpo_conflicts(ids, mask, adv, group, scope="position")
    expected = torch.tensor(
        [[1, 1, 0, 1, 0], [1, 1, 0, 1, 0], [1, 0, 0, 0, 0], [0, 0, 0, 0, 0]], dtype=torch.bool
    )
    assert torch.equal(pos, expected)
    # official "runs": leading run from the start plus trailing run aligned at each completion's end
    runs = losses.gtpo_conflicts(ids, mask, adv, group, scope="runs")
    expected_runs = torch.tensor(
        [[1, 1, 0, 1, 0], [1, 1, 0, 1, 0], [1, 0, 0, 0, 1], [0, 0, 0, 0, 0]], dtype=torch.bool
    )
    assert torch.equal(runs, expected_runs)


def test_gtpo_ignores_old_logp_and_never_clips():
    # the code's ratio is pi / sg[pi]: a far off-policy old_logp changes nothing
    ids, mask, adv, group, ent = _gtpo_case()
    logp = torch.full((4, 5), -1.0, dtype=torch.float64, requires_grad=True)
    ctx = {"token_ids": ids, "group_ids": group, "entropy": ent}
    a, _ = losses.compute("gtpo", logp, logp.detach(), adv, mask, context=ctx)
    b, _ = losses.compute("gtpo", logp, logp.detach() - 3.0, adv, mask, context=ctx)
    torch.testing.assert_close(a, b)
    assert "eps_low" not in losses.hyper_parameters("gtpo")


# ------------------------------------------------------------------ padding


def test_padding_tokens_never_contribute_even_when_their_logprobs_are_inf_or_nan():
    logp, old, adv, mask = _batch(seed=2)
    ctx = _ctx(*logp.shape)
    junk = logp.detach().clone()
    junk[~mask] = float("nan")
    junk[~mask & (torch.arange(logp.shape[1]) % 2 == 0)] = -float("inf")
    junk.requires_grad_(True)
    clean = logp.detach().clone().requires_grad_(True)
    for name in losses.available():
        for mode in ("seq_mean_token_mean", "token_mean", "seq_mean_token_sum_norm", "seq_mean_token_sum"):
            hyper = _hyper(name, logp.shape[1])
            a = losses.aggregate(
                losses.compute(name, junk, old, adv, mask, context=ctx, **hyper)[0], mask, mode, max_tokens=8
            )
            b = losses.aggregate(
                losses.compute(name, clean, old, adv, mask, context=ctx, **hyper)[0], mask, mode, max_tokens=8
            )
            (ga,) = torch.autograd.grad(a, junk)
            (gb,) = torch.autograd.grad(b, clean)
            assert torch.isfinite(a) and a.item() == pytest.approx(b.item()), (name, mode)
            assert torch.all(ga[~mask] == 0) and torch.isfinite(ga).all(), (name, mode)
            torch.testing.assert_close(ga, gb)


# ------------------------------------------------------------------ aggregation


def test_aggregation_modes_on_hand_made_tensors():
    tl = torch.tensor([[1.0, 2.0, 3.0, 100.0], [4.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]], dtype=torch.bool)
    assert losses.aggregate(tl, mask, "seq_mean_token_mean").item() == pytest.approx((2.0 + 4.0) / 2)
    assert losses.aggregate(tl, mask, "token_mean").item() == pytest.approx(10.0 / 4)
    assert losses.aggregate(tl, mask, "seq_mean_token_sum_norm", max_tokens=4).item() == pytest.approx(
        (6.0 / 4 + 4.0 / 4) / 2
    )
    # seq_mean_token_sum: (1 + 2 + 3) and 4, mean over the 2 sequences = 5
    assert losses.aggregate(tl, mask, "seq_mean_token_sum").item() == pytest.approx((6.0 + 4.0) / 2)
    with pytest.raises(ParamError, match="max_tokens"):
        losses.aggregate(tl, mask, "seq_mean_token_sum_norm")
    with pytest.raises(ParamError, match="allowed: seq_mean_token_mean, seq_mean_token_sum, seq_mean_token_sum_norm, token_mean"):
        losses.aggregate(tl, mask, "sum")


@pytest.mark.parametrize("mode", ["seq_mean_token_mean", "token_mean", "seq_mean_token_sum_norm", "seq_mean_token_sum"])
def test_sum_over_micro_batches_equals_full_batch_loss_and_gradient(mode):
    logp, old, adv, mask = _batch(b=7, t=9, seed=4)
    full = losses.aggregate(losses.compute("ppo_clip", logp, old, adv, mask)[0], mask, mode, max_tokens=9)
    (g_full,) = torch.autograd.grad(full, logp)
    total = torch.zeros((), dtype=torch.float64)
    g_micro = torch.zeros_like(logp)
    for idx in (slice(0, 3), slice(3, 5), slice(5, 7)):
        x = logp.detach()[idx].clone().requires_grad_(True)
        part = losses.aggregate(
            losses.compute("ppo_clip", x, old[idx], adv[idx], mask[idx])[0],
            mask[idx],
            mode,
            max_tokens=9,
            n_seqs=7,
            n_tokens=int(mask.sum()),
        )
        (g,) = torch.autograd.grad(part, x)
        g_micro[idx] = g
        total = total + part.detach()
    assert total.item() == pytest.approx(full.item())
    torch.testing.assert_close(g_micro, g_full)


# ------------------------------------------------------------------ KL


def test_kl_estimators_match_their_formulas():
    logp = torch.log(torch.tensor([[0.2, 0.5, 0.9]]))
    ref = torch.log(torch.tensor([[0.4, 0.5, 0.3]]))
    d = logp - ref
    torch.testing.assert_close(losses.kl(logp, ref, "k1"), d)
    torch.testing.assert_close(losses.kl(logp, ref, "k2"), 0.5 * d**2)
    torch.testing.assert_close(losses.kl(logp, ref, "k3"), torch.exp(-d) + d - 1)
    with pytest.raises(ParamError, match="allowed: k1, k2, k3"):
        losses.kl(logp, ref, "k4")


def test_k3_is_nonnegative_and_zero_only_when_equal():
    g = torch.Generator().manual_seed(0)
    logp = -torch.rand(1000, generator=g) * 10
    ref = -torch.rand(1000, generator=g) * 10
    assert torch.all(losses.kl(logp, ref, "k3") >= 0)
    assert torch.all(losses.kl(logp, logp, "k3") == 0)


def test_k1_and_k3_are_unbiased_for_kl_on_a_toy_categorical():
    p = torch.tensor([0.5, 0.3, 0.15, 0.05], dtype=torch.float64)
    q = torch.tensor([0.25, 0.25, 0.25, 0.25], dtype=torch.float64)
    true_kl = (p * (p / q).log()).sum().item()
    g = torch.Generator().manual_seed(0)
    x = torch.multinomial(p, 200_000, replacement=True, generator=g)
    lp, lq = p.log()[x].unsqueeze(0), q.log()[x].unsqueeze(0)
    for kind in ("k1", "k3"):
        est = losses.kl(lp, lq, kind)
        se = est.std().item() / math.sqrt(est.numel())
        assert abs(est.mean().item() - true_kl) < 4 * se, kind
    # exact expectation, no sampling noise
    assert (p * (p.log() - q.log())).sum().item() == pytest.approx(true_kl)
    assert (p * losses.kl(p.log().unsqueeze(0), q.log().unsqueeze(0), "k3")[0]).sum().item() == pytest.approx(
        true_kl
    )


def test_kl_mask_zeroes_padding():
    logp = torch.tensor([[-1.0, -float("inf")]])
    ref = torch.tensor([[-2.0, -1.0]])
    out = losses.kl(logp, ref, "k3", mask=torch.tensor([[True, False]]))
    assert out[0, 1] == 0 and torch.isfinite(out).all()
