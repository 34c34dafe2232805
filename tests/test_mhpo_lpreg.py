"""MHPO (losses.mhpo) and Lp-Reg (rlbook.mechanisms.exploration) against numbers worked out by hand from the formulas."""

from __future__ import annotations

import math

import pytest
import torch
from rlbook.core.errors import ParamError
from rlbook.mechanisms import estimators, losses
from rlbook.mechanisms.exploration import min_p_proxy_log_ratio

# ------------------------------------------------------------------ MHPO: -exp(psi(r) - sg zeta(r)) A


def _mhpo_tokens(log_ratio: list[float], adv: float) -> tuple[torch.Tensor, torch.Tensor, dict]:
    logp = torch.tensor([log_ratio], dtype=torch.float64, requires_grad=True)
    tl, info = losses.compute("mhpo", logp, torch.zeros_like(logp), torch.tensor([adv], dtype=torch.float64),
                              torch.ones_like(logp))
    (grad,) = torch.autograd.grad(tl.sum(), logp)
    return tl.detach()[0], -grad[0] / adv, info


def test_mhpo_loss_and_gradient_weight_match_the_formula_by_hand() -> None:
    # c = 1.5, (k+, l+) = (1.5, 1.0), (k-, l-) = (2.0, 0.8); softplus(0) = ln 2 = 0.693147.
    # r = 1: psi = 0, zeta = 0.693147^1.5 + (0.693147 / 0.8)^2 = 0.577082 + 0.750708 = 1.327790,
    #        weight = exp(-1.327790) = 0.265062 (also the loss value for A = 1, with a minus sign).
    # r = 2: psi = 1.5 tanh(0.693147 / 1.5) = 0.647689; softplus(psi) = 1.068533, softplus(-psi) = 0.420844;
    #        zeta = 1.068533^1.5 + (0.420844 / 0.8)^2 = 1.104547 + 0.276734 = 1.381281;
    #        exp(psi - zeta) = 0.480178; weight = that x sech^2(0.462098) = 0.480178 x 0.813555 = 0.390651.
    # r = 1/2: psi = -0.647689; zeta = 0.420844^1.5 + (1.068533 / 0.8)^2 = 0.273013 + 1.784024 = 2.057037;
    #        exp(psi - zeta) = 0.066889; weight = 0.066889 x 0.813555 = 0.054418.
    tl, weight, info = _mhpo_tokens([0.0, math.log(2.0), math.log(0.5)], 1.0)
    assert tl.tolist() == pytest.approx([-0.265062, -0.480178, -0.066889], abs=1e-5)
    assert weight.tolist() == pytest.approx([0.265062, 0.390651, 0.054418], abs=1e-5)
    # damped: weight below half its value at r = 1 (0.054418 / 0.265062 = 0.205): one token of three
    assert float(info["clip_frac"]) == pytest.approx(1 / 3)
    # a negative advantage flips the sign of the loss, not the weight (the hazard is on the ratio, not on A)
    tl_neg, weight_neg, _ = _mhpo_tokens([0.0, math.log(2.0), math.log(0.5)], -1.0)
    assert tl_neg.tolist() == pytest.approx([0.265062, 0.480178, 0.066889], abs=1e-5)
    assert weight_neg.tolist() == pytest.approx(weight.tolist(), abs=1e-9)


def test_mhpo_gradient_weight_is_bounded_by_e_to_the_c_and_vanishes_far_off_policy() -> None:
    lr = torch.linspace(-15, 15, 301).tolist()
    _, weight, _ = _mhpo_tokens(lr, 1.0)
    assert float(weight.max()) <= math.exp(1.5)
    assert float(weight[0]) < 1e-6 and float(weight[-1]) < 1e-6  # sech^2 fades both tails


def test_mhpo_is_zero_on_zero_advantage_and_padding_and_rejects_bad_settings() -> None:
    logp = torch.tensor([[0.3, -0.2, 5.0]], dtype=torch.float64)
    mask = torch.tensor([[1.0, 1.0, 0.0]], dtype=torch.float64)
    tl, _ = losses.compute("mhpo", logp, torch.zeros_like(logp), torch.zeros(1, dtype=torch.float64), mask)
    assert tl.abs().max() == 0
    tl, _ = losses.compute("mhpo", logp, torch.zeros_like(logp), torch.ones(1, dtype=torch.float64), mask)
    assert float(tl[0, 2]) == 0.0
    with pytest.raises(ParamError, match="mhpo needs"):
        losses.compute("mhpo", logp, logp, torch.ones(1), mask, c=0.0)


# ------------------------------------------------------------------ Lp-Reg: the min-p proxy


def test_min_p_proxy_drops_noise_and_renormalises_the_rest() -> None:
    logits = torch.tensor([0.5, 0.3, 0.19, 0.01]).log().expand(2, 4)
    # min_p 0.05: threshold 0.05 x 0.5 = 0.025 drops the 0.01 token; kept mass Z = 0.99, d = -ln 0.99 = 0.0100503
    d = min_p_proxy_log_ratio(logits, torch.tensor([0, 3]), min_p=0.05)
    assert float(d[0]) == pytest.approx(0.0100503, abs=1e-5)
    assert math.isinf(float(d[1])) and float(d[1]) < 0
    # min_p 0.5: threshold 0.25 keeps 0.5 and 0.3, Z = 0.8, d = -ln 0.8 = 0.223144; the 0.19 token is dropped
    d = min_p_proxy_log_ratio(logits, torch.tensor([1, 2]), min_p=0.5)
    assert float(d[0]) == pytest.approx(0.223144, abs=1e-5) and math.isinf(float(d[1]))
    # temperature 2: q proportional to sqrt(p) = (0.70711, 0.54772, 0.43589, 0.1), sum 1.79072, q_3 = 0.05584;
    # min_p 0.2: threshold 0.2 x 0.39487 = 0.07897 drops q_3; Z = 0.94416, d = -ln Z = 0.057459
    d = min_p_proxy_log_ratio(logits[:1], torch.tensor([0]), min_p=0.2, temperature=2.0)
    assert float(d[0]) == pytest.approx(0.057459, abs=1e-4)


# ------------------------------------------------------------------ Lp-Reg: the advantage with the regulariser


def _lp_batch() -> dict[str, torch.Tensor]:
    # one group of 4: rewards [1, 0, 0, 0] -> GRPO mean 0.25, std (Bessel) 0.5 -> A = [1.5, -0.5, -0.5, -0.5]
    old_logp = torch.tensor([[[-0.3, -0.3], [-0.1, -3.0], [-2.0, -0.2], [-4.0, 0.0]]])
    token_mask = torch.tensor([[[1.0, 1.0], [1.0, 1.0], [1.0, 1.0], [1.0, 0.0]]])
    # d = log pi_proxy - log pi: row 1 kept (0.1, 0.5); row 2 kept far out (3.0: k3 = e^3 - 4 = 16.1 > 10) and
    # nothing dropped (0); row 3 dropped by the filter (-inf)
    ratio = torch.tensor([[[0.2, 0.2], [0.1, 0.5], [3.0, 0.0], [-math.inf, 0.0]]])
    return {"old_logp": old_logp, "token_mask": token_mask, "lp_proxy_log_ratio": ratio}


def test_lp_reg_regularises_the_lowest_probability_negative_tokens_the_proxy_keeps() -> None:
    rewards = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    # 5 negative tokens, 50%: k = int(2.5) = 2, the two lowest log-probs: row 3 t0 (-4.0, dropped by the
    # filter: untouched) and row 1 t1 (-3.0, d = 0.5): A' = -0.5 + (e^0.5 - 1) = -0.5 + 0.648721 = 0.148721
    adv = estimators.compute("lp_reg", rewards, context=_lp_batch(), neg_k_percent=0.5)
    expected = [[1.5, 1.5], [-0.5, 0.148721], [-0.5, -0.5], [-0.5, 0.0]]
    assert torch.allclose(adv[0], torch.tensor(expected), atol=1e-5), adv[0]
    # every negative token (k = 5): row 1 t0 -0.5 + (e^0.1 - 1) = -0.394829; row 2 t0's k3 is clamped (no
    # gradient), row 2 t1 has d = 0 (the proxy equals the policy): both stay -0.5
    adv = estimators.compute("lp_reg", rewards, context=_lp_batch(), neg_k_percent=1.0)
    expected = [[1.5, 1.5], [-0.394829, 0.148721], [-0.5, -0.5], [-0.5, 0.0]]
    assert torch.allclose(adv[0], torch.tensor(expected), atol=1e-5), adv[0]


def test_lp_reg_needs_k_above_one_like_the_code_and_then_equals_grpo() -> None:
    rewards = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    # the paper's 1% of 5 tokens: k = max(1, int(0.05)) = 1, and the code acts only when k > 1
    adv = estimators.compute("lp_reg", rewards, context=_lp_batch())
    expected = [[1.5, 1.5], [-0.5, -0.5], [-0.5, -0.5], [-0.5, 0.0]]
    assert torch.allclose(adv[0], torch.tensor(expected), atol=1e-5), adv[0]
    with pytest.raises(ParamError, match="must be in"):
        estimators.compute("lp_reg", rewards, context=_lp_batch(), neg_k_percent=2.0)


def test_lp_reg_advantage_gives_the_official_losss_gradient_at_ratio_one() -> None:
    """The code's loss on the selected tokens, written out: -A rho + coef * clamp(k3(tgt - logp), -10, 10) with
    tgt = the proxy log-prob (-1e4 where the filter dropped the token), selected when logp < tgt; at rho = 1 its
    gradient equals that of PPO's loss with Lp-Reg's advantage."""
    ctx = _lp_batch()
    rewards = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    adv = estimators.compute("lp_reg", rewards, context=ctx, neg_k_percent=1.0).reshape(4, 2).double()
    mask = ctx["token_mask"].reshape(4, 2).double()
    logp = ctx["old_logp"].reshape(4, 2).double().requires_grad_(True)
    ours, _ = losses.compute("ppo_clip", logp, logp.detach(), adv, mask, eps_low=1.0, eps_high=9.0)
    (g_ours,) = torch.autograd.grad(ours.sum(), logp)
    d = ctx["lp_proxy_log_ratio"].reshape(4, 2).double()
    tgt = torch.where(torch.isfinite(d), logp.detach() + d, torch.full_like(d, -1e4))
    a = torch.tensor([1.5, -0.5, -0.5, -0.5], dtype=torch.float64).unsqueeze(-1).expand(4, 2)
    selected = (a < 0) & (logp.detach() < tgt) & (mask > 0)  # every negative token kept by the filter with d > 0
    kl = tgt - logp
    k3 = (torch.exp(kl) - kl - 1).clamp(-10, 10)
    rho = torch.exp(logp - logp.detach())
    official = (-a * rho + torch.where(selected, k3, torch.zeros_like(k3))) * mask
    (g_official,) = torch.autograd.grad(official.sum(), logp)
    assert torch.allclose(g_ours, g_official, atol=1e-6), (g_ours, g_official)
