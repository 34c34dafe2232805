"""Policy losses, loss aggregation and KL estimators (a registry of pure tensor functions).

``token_loss, info = compute(name, logp, old_logp, advantages, mask, context={...}, **hyper)``

Every loss is ``fn(logp[B, T], old_logp[B, T], advantages[B] | [B, T], mask[B, T], *, <context>, <hyper>)
-> (token_loss[B, T], info)``.  ``token_loss`` is the *negative* surrogate (to be minimised), exactly zero on
padding (``mask == 0``), and is reduced to a scalar by :func:`aggregate`.  ``info`` holds detached scalar
tensors averaged over the unmasked tokens, at least ``clip_frac`` (the share of tokens whose ratio was
clipped or gated).

Context (passed by :func:`compute` only when the signature names it): ``entropy[B, T]``, ``token_ids[B, T]``,
``group_ids[B]``, ``ref_logp[B, T] | None``, ``rewards[B]``, ``correct[B]`` (bool, the verifier's verdict),
``lengths[B]`` (completion tokens).  Every other keyword-only parameter is a hyper-parameter and is
passed strictly: an unknown one is a :class:`~rlbook.core.config.ParamError` that lists the allowed ones.

Padding safety: every loss forms the log-ratio as ``where(mask, logp - old_logp, 0)`` *before*
exponentiating, so ``-inf``/garbage log-probs on padded positions never reach ``exp`` and never produce NaN
gradients; the returned ``token_loss`` is ``where(mask, ., 0)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from rlbook.core.config import KL_KINDS
from rlbook.core.errors import ParamError
from rlbook.core.registry import Registry

LossFn = Callable[..., tuple[Tensor, dict[str, Tensor]]]
# What the trainer can hand a loss (each passed only when the signature names it).  Token-aligned ones
# ([B, T], cut to each micro-batch's width): entropy, token_ids, ref_logp; per-row ones ([B]): the rest.
CONTEXT_KEYS = ("entropy", "token_ids", "group_ids", "ref_logp", "rewards", "correct", "lengths", "max_new_tokens")
TOKEN_CONTEXT = frozenset({"entropy", "token_ids", "ref_logp"})
LOSSES = Registry("loss", leading=("logp", "old_logp", "advantages", "mask"), context=CONTEXT_KEYS)
# Aggregation modes: fn(token_loss[B, T], mask[B, T], *, max_tokens, n_seqs, n_tokens) -> scalar.
AGGREGATIONS = Registry("aggregation", leading=("x", "mask"), context=("max_tokens", "n_seqs", "n_tokens"))
_LOG_RATIO_CAP = 20.0  # |log ratio| cap before exp (float32 overflows near 88)


# ---------------------------------------------------------------------------------------------------------
# registry
# ---------------------------------------------------------------------------------------------------------


def register(name: str, *, zero_advantage_safe: bool = False) -> Callable[[LossFn], LossFn]:
    """Decorator: register ``fn`` under ``name``.  ``zero_advantage_safe``: its token loss is exactly zero
    where the advantage is zero and it looks at no other sample (so such samples may skip the forward)."""
    return LOSSES.register(name, zero_advantage_safe=zero_advantage_safe)


available = LOSSES.available
get = LOSSES.get
hyper_parameters = LOSSES.hyper_parameters


def context_names(name: str) -> list[str]:
    """The context entries loss ``name`` asks for (in signature order)."""
    return list(LOSSES.entry(name).needs)


def compute(
    name: str,
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    context: dict[str, Any] | None = None,
    **hyper: Any,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Call loss ``name``: context entries only if named, hyper-parameters strictly; ``old_logp`` is detached."""
    kwargs = LOSSES.bind(name, context, hyper)
    if logp.dim() != 2 or old_logp.shape != logp.shape or mask.shape != logp.shape:
        raise ValueError(
            f"logp, old_logp and mask must all be [B, T]; got {tuple(logp.shape)}, "
            f"{tuple(old_logp.shape)}, {tuple(mask.shape)}"
        )
    if advantages.shape not in (logp.shape[:1], logp.shape):
        raise ValueError(
            f"advantages must be [B] or [B, T]; got {tuple(advantages.shape)} for logp {tuple(logp.shape)}"
        )
    return LOSSES.get(name)(logp, old_logp.detach(), advantages, mask, **kwargs)


# ---------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``x`` over ``mask`` (0 when the mask is empty), padding-safe."""
    m = mask.bool()
    return torch.where(m, x, torch.zeros_like(x)).sum() / m.sum().clamp(min=1)


def _token_adv(advantages: Tensor, like: Tensor) -> Tensor:
    adv = advantages.to(like.dtype)
    return adv.unsqueeze(-1).expand_as(like) if adv.dim() == 1 else adv


def _log_ratio(logp: Tensor, old_logp: Tensor, mask: Tensor) -> Tensor:
    lr = torch.where(mask.bool(), logp - old_logp, torch.zeros_like(logp))
    return lr.clamp(-_LOG_RATIO_CAP, _LOG_RATIO_CAP)


def _check_eps(eps_low: float, eps_high: float, lo_name: str = "eps_low", hi_name: str = "eps_high") -> None:
    if not 0.0 <= eps_low <= 1.0:
        raise ParamError(f"{lo_name}={eps_low!r} must be in [0, 1]")
    if eps_high < 0.0:
        raise ParamError(f"{hi_name}={eps_high!r} must be >= 0")


def _clipped_surrogate(
    ratio: Tensor, adv: Tensor, lo: float, hi: float, dual_clip: float | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """PPO's pessimistic surrogate as a loss: max(-A·ρ, -A·clip(ρ)); optional dual clip for A < 0.

    Returns (loss, clipped, dual_clipped) where ``clipped`` marks tokens on a flat (zero-gradient) branch.
    """
    l1 = -adv * ratio
    l2 = -adv * ratio.clamp(lo, hi)
    loss = torch.maximum(l1, l2)
    clipped = l2 > l1
    dual = torch.zeros_like(clipped)
    if dual_clip is not None:
        l3 = -adv * dual_clip
        dual = (adv < 0) & (l3 < loss)
        loss = torch.where(dual, l3, loss)
    return loss, clipped | dual, dual


def _finish(loss: Tensor, mask: Tensor) -> Tensor:
    return torch.where(mask.bool(), loss, torch.zeros_like(loss))


# ---------------------------------------------------------------------------------------------------------
# losses
# ---------------------------------------------------------------------------------------------------------


@register("ppo_clip", zero_advantage_safe=True)
def ppo_clip(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    eps_low: float = 0.2,
    eps_high: float = 0.2,
    dual_clip: float | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """PPO's clipped surrogate per token, with DAPO's decoupled clip range and optional dual clip.

    Source: "Proximal Policy Optimization Algorithms" (Schulman et al., 2017), Eq. 7, as used per token by
    GRPO ("DeepSeekMath: Pushing the Limits of Mathematical Reasoning in Open Language Models", Eq. 3);
    the decoupled range clip(ρ, 1 − ε_low, 1 + ε_high) is DAPO's Clip-Higher ("DAPO: An Open-Source LLM
    Reinforcement Learning System at Scale", Eq. 10); the dual clip is from "Mastering Complex Control in
    MOBA Games with Deep Reinforcement Learning" (Ye et al., 2020, Eq. 5): for A < 0 the objective is
    further bounded below by c·A (c > 1), so a huge ratio on a bad token cannot produce an unbounded step.

    ``token_loss = max(−A·ρ, −A·clip(ρ, 1−ε_low, 1+ε_high))`` and, with ``dual_clip=c`` and A < 0,
    ``min(that, −c·A)``.  ρ = exp(logp − old_logp).  With ε_high > ε_low (clip-higher), ``info["band_frac"]``
    is the share of tokens that clip-higher un-clips: A > 0 and 1+ε_low < ρ <= 1+ε_high (a symmetric clip at
    ε_low would have stopped their gradient).

    Differences: none in the formula.  The KL term of GRPO's Eq. 3 is not part of this function (the
    trainer adds ``kl_coef · kl(...)``); GRPO's 1/|o_i| normalisation is the aggregation mode.
    """
    _check_eps(eps_low, eps_high)
    if dual_clip is not None and dual_clip <= 1.0:
        raise ParamError(f"dual_clip={dual_clip!r} must be > 1 (or None to turn it off)")
    ratio = torch.exp(_log_ratio(logp, old_logp, mask))
    adv = _token_adv(advantages, logp)
    loss, clipped, dual = _clipped_surrogate(ratio, adv, 1.0 - eps_low, 1.0 + eps_high, dual_clip)
    info = {
        "clip_frac": masked_mean(clipped.float(), mask).detach(),
        "dual_clip_frac": masked_mean(dual.float(), mask).detach(),
        "ratio_mean": masked_mean(ratio, mask).detach(),
    }
    if eps_high > eps_low:
        band = (adv > 0) & (ratio > 1.0 + eps_low) & (ratio <= 1.0 + eps_high)
        info["band_frac"] = masked_mean(band.float(), mask).detach()
    return _finish(loss, mask), info


@register("gspo", zero_advantage_safe=True)
def gspo(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    seq_eps_low: float = 3e-4,
    seq_eps_high: float = 4e-4,
) -> tuple[Tensor, dict[str, Tensor]]:
    """GSPO: clip a sequence-level, length-normalised importance ratio instead of token ratios.

    Source: "Group Sequence Policy Optimization" (Zheng et al., 2025): s_i = (π(y_i)/π_old(y_i))^(1/|y_i|)
    = exp(mean_t log ρ_i,t) (Eq. 7), objective min(s_i·A_i, clip(s_i, 1−ε, 1+ε)·A_i) (Eq. 5).  We use the
    token-level form of its "GSPO-token" variant (Eq. 13) as implemented in verl
    (``verl/trainer/ppo/core_algos.py::compute_policy_loss_gspo``): s_i,t = sg[s_i] · π(y_i,t)/sg[π(y_i,t)],
    whose value equals s_i at every token and whose gradient w.r.t. log π(y_i,t) is s_i.  Averaged over the
    sequence's tokens (aggregation ``seq_mean_token_mean``, what the paper uses) the gradient is exactly
    GSPO's s_i·A_i·(1/|y_i|)·Σ_t ∇log π(y_i,t).  With token-level advantages [B, T] this is GSPO-token.

    Differences: the clip range has its own names (``seq_eps_low``/``seq_eps_high``, paper defaults 3e-4 and
    4e-4) so that the trainer's token-level ``eps_low``/``eps_high`` (≈0.2) are not applied to the much
    narrower sequence ratio by accident.  verl caps log s_i at 10; we cap |log ρ| at 20 per token.
    """
    _check_eps(seq_eps_low, seq_eps_high, "seq_eps_low", "seq_eps_high")
    m = mask.bool()
    log_ratio = _log_ratio(logp, old_logp, mask)
    n_tok = m.sum(-1).clamp(min=1)
    seq_log_ratio = log_ratio.sum(-1) / n_tok  # log s_i
    tok = torch.where(m, logp - logp.detach(), torch.zeros_like(logp)) + seq_log_ratio.detach().unsqueeze(-1)
    s = torch.exp(tok.clamp(max=_LOG_RATIO_CAP))
    adv = _token_adv(advantages, logp)
    loss, clipped, _ = _clipped_surrogate(s, adv, 1.0 - seq_eps_low, 1.0 + seq_eps_high)
    info = {
        "clip_frac": masked_mean(clipped.float(), mask).detach(),
        "seq_ratio_mean": torch.exp(seq_log_ratio).mean().detach(),
    }
    return _finish(loss, mask), info


@register("sapo", zero_advantage_safe=True)
def sapo(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    tau_pos: float = 1.0,
    tau_neg: float = 1.05,
) -> tuple[Tensor, dict[str, Tensor]]:
    """SAPO: a smooth, temperature-controlled gate on the token ratio instead of a hard clip.

    Source: "Soft Adaptive Policy Optimization" (Gao et al., 2025, arXiv:2511.20347), the SAPO objective
    J = E[1/G Σ_i 1/|y_i| Σ_t f_i,t(ρ_i,t)·A_i] with f(ρ) = (4/τ)·σ(τ(ρ − 1)), τ = τ_pos for A > 0 and
    τ_neg for A < 0 (negative tokens get the faster-decaying gate, τ_neg > τ_pos).  Defaults τ_pos = 1.0,
    τ_neg = 1.05 are those of the public re-implementations (verl's SAPO recipe, Trinity-RFT, torchforge).

    The gradient w.r.t. log π is w·ρ·A·∇log π with w = 4σ(1−σ) (the paper's soft trust-region weight; PPO's
    unclipped gradient is ρ·A·∇log π, i.e. w = 1): at ρ = 1, w = 1 and the gradient is exactly the plain
    policy gradient A·∇log π; w decays smoothly as ρ leaves 1.  ``clip_frac`` here is the share of tokens
    with w < 0.5 ("gated"); ``gate_weight_mean`` is the masked mean of w.

    Differences: the loss value is −f(ρ)·A, which at ρ = 1 equals −(2/τ)·A, not −A; only gradients matter.
    """
    if tau_pos <= 0 or tau_neg <= 0:
        raise ParamError(f"tau_pos={tau_pos!r} and tau_neg={tau_neg!r} must be > 0")
    ratio = torch.exp(_log_ratio(logp, old_logp, mask))
    adv = _token_adv(advantages, logp)
    tau = torch.where(adv > 0, torch.full_like(adv, tau_pos), torch.full_like(adv, tau_neg))
    sig = torch.sigmoid(tau * (ratio - 1.0))
    gate = (4.0 / tau) * sig
    loss = -gate * adv
    with torch.no_grad():
        weight = 4.0 * sig * (1.0 - sig)
    info = {
        "clip_frac": masked_mean((weight < 0.5).float(), mask),
        "gate_weight_mean": masked_mean(weight, mask),
        "ratio_mean": masked_mean(ratio, mask).detach(),
    }
    return _finish(loss, mask), info


@register("cispo", zero_advantage_safe=True)
def cispo(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    is_eps_low: float = 1.0,
    is_eps_high: float = 4.0,
) -> tuple[Tensor, dict[str, Tensor]]:
    """CISPO: a detached, clipped importance weight times the log-probability (every token keeps a gradient).

    Source: "MiniMax-M1: Scaling Test-Time Compute Efficiently with Lightning Attention" (MiniMax, 2025),
    Sec. 3.1, Eqs. 4-5: J = E[1/Σ|o_i| Σ_i Σ_t sg(r̂_i,t)·Â_i,t·log π(o_i,t)], r̂ = clip(r, 1−ε_low^IS,
    1+ε_high^IS).  The paper sets ε_low^IS large (no lower bound) and tunes only ε_high^IS; our defaults
    (ε_low = 1 → lower bound 0, ε_high = 4) follow torchtitan's ``pg_cispo``.

    ``token_loss = −sg(clip(ρ, 1−is_eps_low, 1+is_eps_high))·A·logp``; its gradient is −r̂·A·∇log π for
    every token, clipped or not (unlike PPO, whose clipped tokens get zero gradient).

    Differences: the IS clip range has its own names so the trainer's PPO ``eps_low``/``eps_high`` do not
    reach it.  The paper normalises by the total token count: use aggregation ``token_mean`` to match.  The
    optional masking variant of Sec. 3.1 (the "unified formulation") is not implemented.
    """
    if is_eps_low < 0 or is_eps_high < 0:
        raise ParamError(f"is_eps_low={is_eps_low!r} and is_eps_high={is_eps_high!r} must be >= 0")
    ratio = torch.exp(_log_ratio(logp, old_logp, mask)).detach()
    lo, hi = max(0.0, 1.0 - is_eps_low), 1.0 + is_eps_high
    weight = ratio.clamp(lo, hi)
    adv = _token_adv(advantages, logp)
    safe_logp = torch.where(mask.bool(), logp, torch.zeros_like(logp))
    loss = -weight * adv * safe_logp
    clipped = (ratio < lo) | (ratio > hi)
    info = {
        "clip_frac": masked_mean(clipped.float(), mask),
        "is_weight_mean": masked_mean(weight, mask),
    }
    return _finish(loss, mask), info


def mhpo_weights(log_ratio: Tensor, c: float, k_pos: float, lambda_pos: float, k_neg: float,
                 lambda_neg: float) -> tuple[Tensor, Tensor]:
    """MHPO's Log-Fidelity Modulator psi = c tanh(log r / c) and Decoupled Hazard Penalty
    zeta = (softplus(psi) / lambda_pos)^k_pos + (softplus(-psi) / lambda_neg)^k_neg (computed on a detached psi)."""
    psi = c * torch.tanh(log_ratio / c)
    s = psi.detach()
    zeta = (torch.nn.functional.softplus(s) / lambda_pos) ** k_pos + (torch.nn.functional.softplus(-s) / lambda_neg) ** k_neg
    return psi, zeta


@register("mhpo", zero_advantage_safe=True)
def mhpo(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    c: float = 1.5,
    k_pos: float = 1.5,
    lambda_pos: float = 1.0,
    k_neg: float = 2.0,
    lambda_neg: float = 0.8,
) -> tuple[Tensor, dict[str, Tensor]]:
    """MHPO: a bounded, smooth map of the log-ratio times a Weibull hazard damping, instead of PPO's clip.

    ``token_loss = -exp(psi(r) - sg[zeta(r)]) * A`` with ``psi = c tanh(log r / c)`` (the Log-Fidelity Modulator,
    bounded in (-c, c)) and ``zeta = (softplus(sg psi) / lambda_pos)^k_pos + (softplus(-sg psi) / lambda_neg)^k_neg``
    (the Decoupled Hazard Penalty: Weibull cumulative hazards of the positive and the negative shift).  Its
    gradient is ``M(r) A grad log pi`` with ``M = exp(psi - zeta) sech^2(log r / c)``, at most ``e^c``.

    Source: "MHPO: Modulated Hazard-aware Policy Optimization for Stable Reinforcement Learning" (Wang et al.,
    2026, arXiv:2603.16929).  The authors published no code; this follows the objective as written in a
    third-party verl re-implementation (github.com/hope586/verl, ``examples/grpo_trainer/
    run_qwen3-4b_gsm8k_3090_mhpo.sh`` and its implementation report, which quotes the core of its
    ``core_algos.compute_policy_loss_mhpo``; the function itself was not in the snapshot we could read) and the
    defaults it attributes to the paper's Sec. 4.1: c = 1.5, (k_pos, lambda_pos) = (1.5, 1.0),
    (k_neg, lambda_neg) = (2.0, 0.8).

    Differences and notes: |log r| is capped at 20 before the tanh (as the re-implementation does); the
    paper's normalisation 1/K sum_i 1/T_i sum_t is aggregation ``seq_mean_token_mean`` (the re-implementation's
    script uses token-mean).  At r = 1 the damping is not 1: zeta(1) = (ln 2 / lambda_pos)^k_pos +
    (ln 2 / lambda_neg)^k_neg = 1.328 with the defaults, so every gradient carries the constant factor
    exp(-1.328) = 0.265 (AdamW mostly cancels a constant factor; gradient-norm clipping does not).
    ``clip_frac``: the share of tokens whose weight M(r) is below half its value at r = 1 ("damped"), like
    SAPO's gated share; ``survival_mean``: the mean of exp(-zeta).
    """
    if c <= 0 or lambda_pos <= 0 or lambda_neg <= 0 or k_pos <= 0 or k_neg <= 0:
        raise ParamError(f"mhpo needs c, k_pos, lambda_pos, k_neg, lambda_neg > 0; got {c}, {k_pos}, {lambda_pos}, "
                         f"{k_neg}, {lambda_neg}")
    log_ratio = _log_ratio(logp, old_logp, mask)
    psi, zeta = mhpo_weights(log_ratio, c, k_pos, lambda_pos, k_neg, lambda_neg)
    adv = _token_adv(advantages, logp)
    loss = -torch.exp(psi - zeta) * adv
    with torch.no_grad():
        _, zeta_1 = mhpo_weights(torch.zeros(()), c, k_pos, lambda_pos, k_neg, lambda_neg)
        weight = torch.exp(psi - zeta + zeta_1) * (1.0 - torch.tanh(log_ratio / c) ** 2)  # M(r) / M(1)
    info = {
        "clip_frac": masked_mean((weight < 0.5).float(), mask),
        "survival_mean": masked_mean(torch.exp(-zeta), mask),
        "ratio_mean": masked_mean(torch.exp(log_ratio), mask).detach(),
    }
    return _finish(loss, mask), info


def _conflict_any(ids: Tensor, mask: Tensor, sign: Tensor, group_ids: Tensor) -> Tensor:
    """[B, T] bool: token ids[i, t] also sits at position t of a same-group completion of opposite sign."""
    m = mask.bool()
    same_tok = (ids.unsqueeze(1) == ids.unsqueeze(0)) & m.unsqueeze(1) & m.unsqueeze(0)  # [B, B, T]
    pair = (group_ids.unsqueeze(1) == group_ids.unsqueeze(0)) & (sign.unsqueeze(1) * sign.unsqueeze(0) < 0)
    return (same_tok & pair.unsqueeze(-1)).any(dim=1)


def _leading_run(x: Tensor) -> Tensor:
    return torch.cumprod(x.to(torch.int64), dim=1).bool()


def _right_align(x: Tensor, lengths: Tensor, fill: Any) -> Tensor:
    """Row i of the result holds x[i, len_i-1], x[i, len_i-2], ... (reversed completion, end aligned)."""
    _, t = x.shape
    k = torch.arange(t, device=x.device).unsqueeze(0)
    src = (lengths.unsqueeze(1) - 1 - k).clamp(min=0)
    out = x.gather(1, src)
    return torch.where(k < lengths.unsqueeze(1), out, torch.full_like(out, fill))


def gtpo_conflict_runs(
    token_ids: Tensor, mask: Tensor, seq_adv: Tensor, group_ids: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """GTPO's conflict positions: (any, forward run, backward run), each [B, T] bool.

    ``any``: token v at position t of completion i also sits at position t of a completion j of the same
    group whose advantage has the opposite sign (completions with A = 0 take no part).  ``forward``: the
    leading run of such positions counted from the start.  ``backward``: the same with positions counted
    from each completion's end (completions aligned at their last token), its leading run mapped back.
    The official code (``build_conflict_mask``) uses the two runs.  Assumes left-aligned completions.
    """
    sign = torch.sign(seq_adv)
    m = mask.bool()
    fwd_any = _conflict_any(token_ids, m, sign, group_ids) & m
    lengths = m.sum(-1)
    rev_ids = _right_align(token_ids, lengths, -1)
    rev_mask = _right_align(m, lengths, False)
    bwd_rev = _leading_run(_conflict_any(rev_ids, rev_mask, sign, group_ids)) & rev_mask
    # map back: position t of row i corresponds to k = len_i - 1 - t
    t_idx = torch.arange(m.shape[1], device=m.device).unsqueeze(0)
    k = (lengths.unsqueeze(1) - 1 - t_idx).clamp(min=0)
    bwd = bwd_rev.gather(1, k) & (t_idx < lengths.unsqueeze(1))
    return fwd_any, _leading_run(fwd_any) & m, bwd & m


def gtpo_conflicts(
    token_ids: Tensor, mask: Tensor, seq_adv: Tensor, group_ids: Tensor, scope: str = "runs"
) -> Tensor:
    """GTPO's conflict tokens, [B, T] bool: ``scope="runs"`` the union of the forward and backward runs of
    :func:`gtpo_conflict_runs` (the official code), ``scope="position"`` every conflict position (the
    paper's definition)."""
    if scope not in ("runs", "position"):
        raise ParamError(f"conflict_scope={scope!r} is not allowed; allowed: runs, position")
    any_pos, fwd, bwd = gtpo_conflict_runs(token_ids, mask, seq_adv, group_ids)
    return any_pos if scope == "position" else fwd | bwd


def _conflict_weight(run: Tensor, pos: Tensor, neg: Tensor, w: float) -> Tensor:
    """1 off the run; on it ``w`` for a positive completion, 0 for a negative one (1 if A = 0)."""
    d = torch.ones(run.shape, dtype=torch.float32, device=run.device)
    d = torch.where(run & pos.unsqueeze(-1), torch.full_like(d, w), d)
    return torch.where(run & neg.unsqueeze(-1), torch.zeros_like(d), d)


def _gtpo_delta(
    token_ids: Tensor, mask: Tensor, seq_adv: Tensor, group_ids: Tensor, scope: str, w: float
) -> tuple[Tensor, Tensor]:
    """(conflict tokens, token weights delta) of GTPO for ``conflict_scope`` ``scope``."""
    if scope not in ("runs", "position"):
        raise ParamError(f"conflict_scope={scope!r} is not allowed; allowed: runs, position")
    any_pos, fwd, bwd = gtpo_conflict_runs(token_ids, mask, seq_adv, group_ids)
    pos, neg = seq_adv > 0, seq_adv < 0
    if scope == "position":
        return any_pos, _conflict_weight(any_pos, pos, neg, w)
    return fwd | bwd, _conflict_weight(fwd, pos, neg, w) * _conflict_weight(bwd, pos, neg, w)


@register("gtpo")
def gtpo(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    token_ids: Tensor,
    group_ids: Tensor,
    entropy: Tensor,
    entropy_threshold: float = 0.7,
    conflict_weight: float = 2.0,
    conflict_scope: str = "runs",
    entropy_coef: float = 0.1,
) -> tuple[Tensor, dict[str, Tensor]]:
    """GTPO: shield conflict tokens from negative updates, amplify them on positive ones, drop chaotic outputs.

    Per completion i with advantage A_i (sign taken before shaping), mean token entropy H_i and token
    weights delta_i,t, the code's per-token loss is
      token_loss_i,t = - rho_i,t * A'_i * delta_i,t / n_i,    rho = exp(logp - sg(logp))  (value 1)
      A'_i = A_i - entropy_coef * H_i  if H_i <= entropy_threshold, else 0
      delta = d_fwd * d_bwd: d = 1 off a conflict run, ``conflict_weight`` (2) on a positive completion's
              run, 0 on a negative completion's run (a token in both runs of a positive completion gets 4)
      n_i = number of the completion's tokens in either run (at least 1).
    Use aggregation ``seq_mean_token_mean`` (the code's per-completion ``(loss * mask).sum() / n_tok``).
    ``conflict_scope="position"``: every conflict position (the paper's definition), one weight d.

    Source: "GTPO: Trajectory-Based Policy Optimization in Large Language Models" (Simoni, Fontana,
    Rossolini, Saracino, 2025, arXiv:2508.03772); code github.com/winstonsmith1897/GTPO (commit 5d33811)
    ``gtpo/gtpo_training.py``: ``build_conflict_mask``, ``gtpo_compute_loss`` and
    ``UnslothEfficientGTPO.forward`` (constants ``W_RAW = 2``, ``ENT_THRESHOLD = 0.7``, ``ENT_SCALE = 0.1``).
    The code pairs it with A = r - group mean (no std: ``_prepare_inputs``), i.e. estimator ``dr_grpo``.
    No importance ratio and no clipping: ``old_logp`` is not used, as in the code (its ratio is
    pi / sg[pi]); with ``inner_epochs > 1`` every pass is a plain on-sample policy-gradient step.  No KL.

    Differences: the code sums the completions' losses, we average them (a constant factor 1/B); the
    code's H_i is the entropy of the logits without the sampling temperature, ours the trainer's
    ``entropy`` (temperature applied).  Token-level advantages [B, T]: a completion's sign is that of its
    masked mean advantage, the shaping is applied per token.  ``clip_frac``: share of tokens zeroed
    (negative conflict tokens, dropped completions).
    """
    if conflict_weight < 0:
        raise ParamError(f"conflict_weight={conflict_weight!r} must be >= 0")
    m = mask.bool()
    adv = _token_adv(advantages, logp)
    seq_adv = advantages.to(logp.dtype) if advantages.dim() == 1 else masked_mean_rows(adv, m)
    with torch.no_grad():
        conflict, delta = _gtpo_delta(token_ids, m, seq_adv, group_ids, conflict_scope, conflict_weight)
        n_conflict = (conflict & m).sum(-1).clamp(min=1).to(logp.dtype)
        seq_entropy = masked_mean_rows(entropy.to(logp.dtype), m)
        keep = seq_entropy <= entropy_threshold
        shaped = torch.where(
            keep.unsqueeze(-1), adv - entropy_coef * seq_entropy.unsqueeze(-1), torch.zeros_like(adv)
        )
        weight = shaped * delta.to(logp.dtype) / n_conflict.unsqueeze(-1)
    safe = torch.where(m, logp, torch.zeros_like(logp))
    rho = torch.exp(safe - safe.detach())
    return _finish(-rho * weight, mask), _gtpo_info(m, conflict, delta, keep)


def _gtpo_info(m: Tensor, conflict: Tensor, delta: Tensor, keep: Tensor) -> dict[str, Tensor]:
    has_tokens = m.any(-1)
    gated = ((delta == 0) | ~keep.unsqueeze(-1)) & m
    return {
        "clip_frac": masked_mean(gated.float(), m),
        "conflict_frac": masked_mean(conflict.float(), m),
        "skipped_frac": masked_mean((delta == 0).float(), m),
        "entropy_drop_frac": ((~keep) & has_tokens).float().sum() / has_tokens.sum().clamp(min=1),
    }


def _drpo_pg_tokens(
    logp: Tensor, m: Tensor, correct: Tensor, group_ids: Tensor, max_length: int, tau: float, lam: float
) -> tuple[Tensor, int]:
    """Token values whose sum over a micro-batch is -(B_mb / P_mb) * sum_groups J_g (see :func:`drpo`)."""
    lengths = m.sum(-1).clamp(min=1).to(logp.dtype)
    safe = torch.where(m, logp, torch.zeros_like(logp))
    score = safe.sum(-1) / lengths  # s_i: mean log-likelihood of completion i
    groups = torch.unique(group_ids)
    scale = m.shape[0] / len(groups)  # B_mb / P_mb
    out = torch.zeros_like(logp)
    n_valid = 0
    for g in groups:
        idx = group_ids == g
        pos, neg = idx & correct, idx & ~correct
        if not (bool(pos.any()) and bool(neg.any())):
            continue  # all correct or all wrong: no term (but the group counts in P_mb)
        n_valid += 1
        w = torch.exp((1.0 - lengths[pos] / max_length) / lam)
        pos_coef = torch.zeros_like(lengths)
        pos_coef[pos] = scale * (w / w.sum()) / lengths[pos]
        neg_scores = score[neg] / tau
        lme = torch.logsumexp(neg_scores, dim=0) - math.log(int(neg.sum()))
        share = torch.zeros_like(lengths)  # spreads the group's tau * LME over its negative tokens (sums to 1)
        share[neg] = (scale * torch.softmax(neg_scores, dim=0) / lengths[neg]).detach()
        out = out - pos_coef.unsqueeze(-1) * safe + share.unsqueeze(-1) * (tau * lme)
    return torch.where(m, out, torch.zeros_like(out)), n_valid


def _check_drpo(
    m: Tensor, max_length: int | None, tau: float, lam: float, delta: float, beta: float, kl_kind: str
) -> None:
    if max_length is None or max_length <= 0:
        raise ParamError(
            "loss 'drpo' needs max_length > 0 (the code's L_max): set loss_kwargs max_length to train.max_new_tokens"
        )
    if tau <= 0 or lam <= 0 or beta < 0 or delta < 0:
        raise ParamError(f"drpo needs tau > 0, Lambda > 0, beta >= 0, delta >= 0; got {tau}, {lam}, {beta}, {delta}")
    if kl_kind not in ("k1", "k3"):
        raise ParamError(f"kl_kind={kl_kind!r} is not allowed; allowed: k1, k3")
    if m.numel() and int(m.sum(-1).max()) > max_length:
        raise ParamError(f"a completion has {int(m.sum(-1).max())} tokens > max_length={max_length}")


@register("drpo")
def drpo(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    group_ids: Tensor,
    correct: Tensor,
    max_new_tokens: int | None = None,
    max_length: int | None = None,
    tau: float = 10.0,
    Lambda: float = 0.1,  # the code's name
    delta: float = 1e-4,
    beta: float = 1e3,
    kl_kind: str = "k1",
) -> tuple[Tensor, dict[str, Tensor]]:
    """DRPO's discriminative objective with length-weighted positives and a KL trust region (not an advantage).

    Per group g with correct and wrong completions (other groups give no term), s_i = mean log-prob of
    completion i (length L_i), positives weighted w_i = exp((1 - L_i / max_length) / Lambda) normalised
    within the group (hat w), negatives pushed down through a log-mean-exp:
      J_g = sum_{i correct} hat w_i s_i - tau * log mean_{j wrong} exp(s_j / tau)
      loss = -(1/P) sum_g J_g + max(beta (KL - delta), 0) * KL,  KL = token mean of k(old_logp, logp)
    (P = number of groups, the penalty coefficient detached; k1 = old - logp, the script's ``kl``;
    ``kl_kind="k3"``: exp(logp - old) - (logp - old) - 1, the code's ``low_var_kl``).
    Token form: with aggregation ``seq_mean_token_sum`` (token sum per sequence, mean over the B
    sequences) the aggregate of ``token_loss`` equals the loss above in value and gradient: a positive
    token carries -(B/P) hat w_i logp_i,t / L_i, the group's (B/P) tau LME_g is split over its negative
    tokens in detached shares q_j / L_j (q = softmax of s_j / tau over the wrong completions, summing to 1),
    and every token carries (B/N) coef k_t (N tokens).  Each micro-batch uses its own B, P, N and KL: the
    sum over micro-batches (whole groups each, as the trainer cuts them for a loss that names
    ``group_ids``) is sum_mb (B_mb / B) loss_mb, the code's ``loss * len(data) / ppo_mini_batch_size``.

    Source: Li et al., "DRPO: Efficient Reasoning via Decoupled Reward Policy Optimization" (2025); code
    github.com/Optimization-AI/DRPO (commit 405f702) ``verl/verl/trainer/ppo/core_algos.py::
    compute_policy_loss_drpo``; defaults from ``scripts/train/run_drpo_1.5b_8k.sh`` (tau 10, Lambda 0.1,
    delta 1e-4, beta 1e3, ppo_kl_type kl).  ``max_length`` is the code's L_max = the padded response width
    = ``data.max_response_length``; by default the trainer's ``max_new_tokens`` (context).  ``advantages`` is not used.
    Differences: positives / negatives are the verifier's ``correct`` (the code tests reward == 1 / == 0,
    the same for its 0/1 reward); the value of the negative term is the true tau * LME (the code's
    ``neg_sum_exp / sg(neg_sum_exp)`` has value tau and the same gradient); the code's KL and group count
    are over its all-gathered micro-batch, ours over the trainer's micro-batch.
    """
    m = mask.bool()
    max_length = max_length if max_length is not None else max_new_tokens
    _check_drpo(m, max_length, tau, Lambda, delta, beta, kl_kind)
    assert max_length is not None
    pg, n_valid = _drpo_pg_tokens(logp, m, correct.bool(), group_ids, max_length, tau, Lambda)
    k = kl(old_logp, logp, kind=kl_kind, mask=m)  # samples from pi_old: KL(pi_old || pi_theta)
    n_tok = m.sum().clamp(min=1)
    kl_mb = k.sum() / n_tok
    coef = torch.clamp(beta * (kl_mb - delta), min=0.0).detach()
    loss = pg + (m.shape[0] / n_tok) * coef * k
    info = {
        "clip_frac": (kl_mb > delta).float().detach(),
        "kl_old": kl_mb.detach(),
        "valid_group_frac": torch.tensor(n_valid / max(len(torch.unique(group_ids)), 1)),
    }
    return _finish(loss, mask), info


def masked_mean_rows(x: Tensor, mask: Tensor) -> Tensor:
    """Per-row mean of ``x`` over ``mask`` ([B, T] -> [B]; 0 for empty rows)."""
    m = mask.bool()
    return torch.where(m, x, torch.zeros_like(x)).sum(-1) / m.sum(-1).clamp(min=1)


# ---------------------------------------------------------------------------------------------------------
# aggregation and KL
# ---------------------------------------------------------------------------------------------------------


@AGGREGATIONS.register("seq_mean_token_mean")
def seq_mean_token_mean(x: Tensor, mask: Tensor, *, n_seqs: int | None = None) -> Tensor:
    """Mean over a sequence's tokens, then over sequences (GRPO, "DeepSeekMath", Eq. 3)."""
    per_seq = x.sum(-1) / mask.bool().sum(-1).clamp(min=1)
    return per_seq.sum() / max(n_seqs if n_seqs is not None else x.shape[0], 1)


@AGGREGATIONS.register("token_mean")
def token_mean(x: Tensor, mask: Tensor, *, n_tokens: int | float | None = None) -> Tensor:
    """Sum over all tokens of the batch divided by their count (DAPO, "DAPO: An Open-Source LLM
    Reinforcement Learning System at Scale", Eq. 12)."""
    toks = n_tokens if n_tokens is not None else mask.bool().sum()
    return x.sum() / (toks.clamp(min=1) if isinstance(toks, Tensor) else max(float(toks), 1.0))


@AGGREGATIONS.register("seq_mean_token_sum_norm")
def seq_mean_token_sum_norm(x: Tensor, mask: Tensor, *, max_tokens: int | None = None,
                            n_seqs: int | None = None) -> Tensor:
    """A sequence's token sum divided by the constant ``max_tokens``, then the mean over sequences (Dr. GRPO,
    "Understanding R1-Zero-Like Training: A Critical Perspective", Sec. 3.2)."""
    if max_tokens is None or max_tokens <= 0:
        raise ParamError(f"aggregation 'seq_mean_token_sum_norm' needs max_tokens > 0; got {max_tokens!r}")
    return (x.sum(-1) / float(max_tokens)).sum() / max(n_seqs if n_seqs is not None else x.shape[0], 1)


@AGGREGATIONS.register("seq_mean_token_sum")
def seq_mean_token_sum(x: Tensor, mask: Tensor, *, n_seqs: int | None = None) -> Tensor:
    """A sequence's token sum (no length normaliser), then the mean over sequences: verl
    ``verl/trainer/ppo/core_algos.py::agg_loss`` mode ``"seq-mean-token-sum"``, the mode of BNPO's
    ``recipe/bnpo/run.sh`` (github.com/changyi7231/BNPO) and the one group-level objectives (``drpo``)
    spread their per-group value over tokens with."""
    return x.sum(-1).sum() / max(n_seqs if n_seqs is not None else x.shape[0], 1)


def aggregate(
    token_loss: Tensor,
    mask: Tensor,
    mode: str,
    max_tokens: int | None = None,
    n_seqs: int | None = None,
    n_tokens: int | float | None = None,
) -> Tensor:
    """Reduce ``token_loss[B, T]`` to a scalar with the registered aggregation ``mode``
    (:data:`AGGREGATIONS`: seq_mean_token_mean, token_mean, seq_mean_token_sum_norm, seq_mean_token_sum).

    Micro-batching: pass the *whole batch's* ``n_seqs`` (number of sequences) and ``n_tokens`` (number of
    unmasked tokens) and each micro-batch's value is normalised by them, so the micro-batch values sum to
    the full-batch loss.  Padding never contributes (even if ``token_loss`` is NaN there).
    """
    x = torch.where(mask.bool(), token_loss, torch.zeros_like(token_loss))
    context = {"max_tokens": max_tokens, "n_seqs": n_seqs, "n_tokens": n_tokens}
    return AGGREGATIONS.call(mode, x, mask, context=context)


def kl(logp: Tensor, ref_logp: Tensor, kind: str = "k3", mask: Tensor | None = None) -> Tensor:
    """Per-token estimators of KL(π_θ ‖ π_ref) from samples of π_θ ([B, T]; 0 on padding when ``mask`` given).

    Source: J. Schulman, "Approximating KL Divergence" (blog post, 2020), with log r = ref_logp − logp:
    k1 = −log r = logp − ref (unbiased, high variance, can be negative); k2 = ½(log r)² (biased, low
    variance); k3 = (r − 1) − log r = exp(ref − logp) − (ref − logp) − 1 (unbiased and ≥ 0; GRPO's Eq. 4).
    |log r| is capped at 20 before exp so float32 never overflows.
    """
    if kind not in KL_KINDS:
        raise ParamError(f"kl_kind={kind!r} is not allowed; allowed: {', '.join(KL_KINDS)}")
    d = ref_logp - logp  # log r
    if mask is not None:
        d = torch.where(mask.bool(), d, torch.zeros_like(d))
    if kind == "k1":
        out = -d
    elif kind == "k2":
        out = 0.5 * d * d
    else:
        d = d.clamp(-_LOG_RATIO_CAP, _LOG_RATIO_CAP)
        out = torch.exp(d) - d - 1.0
    return out
