"""Lp-Reg: keep valuable low-probability tokens ("reasoning sparks") alive during RLVR.

Source: "Low-probability Tokens Sustain Exploration in Reinforcement Learning with Verifiable Reward" (Lp-Reg,
2025); code github.com/CarlanLark/Lp-Reg, read in its development copy CarlanLark/Lp-Reg-dev:
``verl/trainer/ppo/core_algos.py::compute_policy_loss_lp_reg`` and ``kl_penalty`` (commit 700298f),
``verl/workers/actor/dp_actor.py::apply_min_p`` and ``update_policy`` (commit 7e7d20b), settings from
``recipe/lp_reg/Qwen3_14b_lp_reg_onpolicy_64gpu.sh`` (commit 700298f).

What the code does, per token of the batch:

* the **proxy** distribution (``apply_min_p``, regular_type ``minp``) drops every token whose probability is below
  ``min_p`` times the most likely token's (``minp_p_threshold`` 0.02) and renormalises the rest; the proxy log-prob
  of a kept sampled token is ``log pi(o_t) - log Z_t`` (Z_t = the kept mass), of a dropped one about -1e4.  The
  on-policy script computes it from the old policy (``minp_old_log_prob=True``);
* among the tokens of negative-advantage completions, the ``logp_neg_k_percent`` (1%) with the lowest log-prob
  (``k = max(1, int(n * 0.01))``, acting only when k > 1; the positive side has ``logp_pos_k_percent`` 0: off)
  whose proxy log-prob exceeds their log-prob (kept by the filter) get the loss
  ``-A rho + ppo_kl_coef * k3`` with ``k3 = exp(d) - d - 1``, ``d = log pi_proxy(o_t) - log pi(o_t)``, clamped to
  [-10, 10] (``kl_penalty`` ``low_var_kl``); every other token keeps PPO's clipped loss (clip 1.0 / 9.0: on
  policy nothing clips).

How it is implemented here: the phase ``lp_proxy`` computes ``d`` for every sampled token from one forward pass
without a gradient before the update (the old policy, as the on-policy script), and the estimator ``lp_reg``
returns GRPO's advantage with the regulariser's gradient folded into the selected tokens' advantage:
``A' = A + coef * (exp(d) - 1)``.  At ratio 1 (the first inner epoch; the code's on-policy script takes one
update per batch) the gradient of ``-A' rho`` equals the code's ``-A rho + coef * k3`` exactly, since
``d k3 / d log pi = 1 - exp(d)``; tokens whose k3 exceeds the clamp (10) get no KL gradient, as in the code.

Differences: the regulariser acts through the advantage, so with ``inner_epochs > 1`` its weight stays the one
of the first epoch (the code's KL gradient would follow the moving log-prob), and the selected tokens keep
PPO's clipped surrogate (the code's is unclipped: no difference at ratio 1).  The 1% is taken over the step's
whole batch (the code: over each micro-batch of up to 30k tokens).  The filter thresholds the sampling
distribution (temperature applied); the code thresholds the untempered softmax and then applies the temperature,
the same at its temperature 1.0.  The ranking uses the sampler's log-probs (context ``old_logp``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from rlbook.core.errors import ParamError
from rlbook.mechanisms import estimators, phases
from rlbook.policy.rollout import micro_batches, position_ids_from_mask, slice_rows

__all__ = ["LpProxy", "lp_reg", "lp_reg_selection", "min_p_proxy_log_ratio"]


def min_p_proxy_log_ratio(logits: Tensor, targets: Tensor, min_p: float = 0.02, temperature: float = 1.0) -> Tensor:
    """``d = log pi_proxy(target) - log pi(target)`` per position (``logits [..., V]``, ``targets [...]``).

    pi = softmax(logits / temperature); the proxy keeps the tokens with pi >= ``min_p`` * max pi and renormalises,
    so a kept target has d = -log Z >= 0 (Z = the kept mass) and a dropped one d = -inf."""
    if not 0.0 < min_p <= 1.0:
        raise ParamError(f"min_p={min_p!r} must be in (0, 1]")
    logq = torch.log_softmax(logits.float() / temperature, dim=-1)
    keep = logq >= logq.amax(dim=-1, keepdim=True) + math.log(min_p)
    log_z = torch.logsumexp(torch.where(keep, logq, torch.full_like(logq, -math.inf)), dim=-1)
    kept_target = keep.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return torch.where(kept_target, -log_z, torch.full_like(log_z, -math.inf))


def _lowest(values: Tensor, candidates: Tensor, share: float) -> Tensor:
    """The code's rule: the ``k = max(1, int(n * share))`` candidates with the lowest values, none unless k > 1."""
    n = int(candidates.sum())
    k = max(1, int(n * share))
    out = torch.zeros_like(candidates)
    if n == 0 or k <= 1:
        return out
    flat = torch.where(candidates, values, torch.full_like(values, math.inf)).reshape(-1)
    out.view(-1)[torch.topk(flat, k, largest=False).indices] = True
    return out


def lp_reg_selection(adv: Tensor, old_logp: Tensor, token_mask: Tensor, log_ratio: Tensor,
                     neg_k_percent: float = 0.01, pos_k_percent: float = 0.0, kl_cap: float = 10.0) -> Tensor:
    """[P, G, T] bool: the tokens Lp-Reg regularises (``adv`` [P, G] the GRPO advantages): the lowest-probability
    ``neg_k_percent`` of the negative-advantage tokens (and ``pos_k_percent`` of the positive ones) that the
    proxy keeps (d > 0) and whose k3 = exp(d) - d - 1 is below the clamp ``kl_cap``."""
    if not (0.0 <= neg_k_percent <= 1.0 and 0.0 <= pos_k_percent <= 1.0):
        raise ParamError(f"neg_k_percent={neg_k_percent!r} and pos_k_percent={pos_k_percent!r} must be in [0, 1]")
    valid = token_mask.bool()
    a = adv.unsqueeze(-1).expand_as(valid)
    picked = _lowest(old_logp, valid & (a < 0), neg_k_percent) | _lowest(old_logp, valid & (a > 0), pos_k_percent)
    d = torch.where(torch.isfinite(log_ratio), log_ratio, torch.full_like(log_ratio, -1.0))
    k3 = torch.expm1(d) - d
    return picked & (d > 0) & (k3 < kl_cap)


@estimators.ESTIMATORS.register("lp_reg", phases=("lp_proxy",), token_level=True)
def lp_reg(rewards: Tensor, *, old_logp: Tensor, token_mask: Tensor, lp_proxy_log_ratio: Tensor, eps: float = 1e-6,
           coef: float = 1.0, neg_k_percent: float = 0.01, pos_k_percent: float = 0.0, kl_cap: float = 10.0) -> Tensor:
    """GRPO's advantage per token, plus Lp-Reg's regulariser on the selected low-probability tokens ([P, G, T]).

    ``A'_t = A + coef * (exp(d_t) - 1)`` on the tokens of :func:`lp_reg_selection`, ``A`` elsewhere, 0 past each
    completion; ``d`` = ``lp_proxy_log_ratio`` (phase ``lp_proxy``).  The gradient of the policy loss at ratio 1
    is then the code's ``-A rho + coef * k3(d)`` (see the module docstring for the source and the differences);
    ``coef`` is the code's ``ppo_kl_coef`` (1), the shares its ``logp_neg_k_percent`` (0.01) and
    ``logp_pos_k_percent`` (0), ``kl_cap`` the clamp of its ``kl_penalty`` (10)."""
    if coef < 0 or kl_cap <= 0:
        raise ParamError(f"lp_reg needs coef >= 0 and kl_cap > 0; got coef={coef!r}, kl_cap={kl_cap!r}")
    adv = estimators.compute("grpo", rewards, eps=eps)
    mask = token_mask.bool()
    sel = lp_reg_selection(adv, old_logp, mask, lp_proxy_log_ratio, neg_k_percent, pos_k_percent, kl_cap)
    d = torch.where(sel, lp_proxy_log_ratio, torch.zeros_like(lp_proxy_log_ratio))
    out = adv.unsqueeze(-1).expand_as(d) + coef * torch.expm1(d)
    return torch.where(mask, out, torch.zeros_like(out))


@phases.register("lp_proxy", at="before_advantages")
class LpProxy(phases.Phase):
    """Context ``lp_proxy_log_ratio`` [P, G, T]: ``d`` of :func:`min_p_proxy_log_ratio` for every sampled token,
    from one forward pass of the policy without a gradient before the update (0 on padding).  Metrics: the share
    of sampled tokens the filter drops (``lp_dropped_frac``), the mean kept mass (``lp_kept_mass``) and, when the
    estimator is ``lp_reg``, the share of tokens it regularises (``lp_reg_frac``)."""

    def __init__(self, trainer: Any, *, min_p: float = 0.02):
        if not 0.0 < min_p <= 1.0:
            raise ParamError(f"lp_proxy: min_p={min_p!r} must be in (0, 1]")
        self.min_p = min_p

    @torch.no_grad()
    def run(self, trainer: Any, batch: Any) -> dict[str, float]:
        roll, cfg = batch.roll, trainer.cfg
        out = torch.zeros(roll.completion_mask.shape)
        rows = batch.valid.nonzero().flatten().tolist()
        for mb in micro_batches(rows, roll.lengths.tolist(), cfg, False):
            ids, att, _, lc = slice_rows(roll, mb)
            logits = trainer.model(input_ids=ids, attention_mask=att, position_ids=position_ids_from_mask(att),
                                   logits_to_keep=lc + 1, use_cache=False).logits[:, :-1]
            d = min_p_proxy_log_ratio(logits, ids[:, -lc:], self.min_p, cfg.temperature).cpu()
            out[torch.tensor(mb), :lc] = d
        mask = roll.completion_mask.bool() & batch.valid.view(-1, 1)
        out = torch.where(mask, out, torch.zeros_like(out))
        batch.context["lp_proxy_log_ratio"] = out.view(batch.P, batch.G, -1)
        n = mask.sum().clamp(min=1)
        metrics = {"lp_dropped_frac": float((torch.isinf(out) & mask).sum() / n),
                   "lp_kept_mass": float(torch.where(mask & torch.isfinite(out), torch.exp(-out), 0.0).sum()
                                         / (mask & torch.isfinite(out)).sum().clamp(min=1))}
        if cfg.estimator == "lp_reg" and "old_logp" in batch.context:
            h = {**estimators.hyper_parameters("lp_reg"), **trainer.comp.estimator.kwargs}
            adv = estimators.compute("grpo", batch.rewards, eps=h["eps"])
            sel = lp_reg_selection(adv, batch.context["old_logp"], mask.view(batch.P, batch.G, -1),
                                   batch.context["lp_proxy_log_ratio"], h["neg_k_percent"], h["pos_k_percent"],
                                   h["kl_cap"])
            metrics["lp_reg_frac"] = float(sel.sum() / n)
        return metrics
