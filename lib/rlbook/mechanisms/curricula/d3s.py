"""Learning More with Less (D3S): keep the rollouts that maximise the advantages' variance, then the tokens with
the largest |A| x entropy, aggressively early and less so later.

Source: Wang, Yang, Tian et al., "Learning More with Less: A Dynamic Dual-Level Down-Sampling Framework for
Efficient Policy Optimization" (2025, arXiv 2509.22115).  **No public code** (the abstract promises it in the
supplementary material); the rules below follow the abstract and third-party paper notes:

1. sample level: GRPO advantages on the full group, then per group the ``n_keep`` samples whose advantages
   have the largest (population) variance.  For any values the best subset is the j largest plus the
   n_keep - j smallest for the best j (the lemma of PODS, Xu et al. 2025, "Not All Rollouts are Useful",
   whose public rule this is), :func:`max_variance_subset`; ``mode="cross"`` applies the same rule to the
   pooled advantages of the whole batch (no re-normalisation), ``"intra+cross"`` both in turn;
2. token level: among the kept samples' tokens, the top ``K`` share by |A_i| x H_{i,t}, H the entropy of the
   sampling distribution at that token, pooled over the batch (:func:`top_tokens`); the others get no gradient;
3. schedule: with progress t in [0, 1], n(t) = (1 - t) n_init + t n_final and K(t) likewise (linear).

A sample's advantage A_i, for a token-level estimator, is the mean of its token advantages over its own
response tokens (``roll.completion_mask``), not over the padded width.

Assumptions (unknown in the available text): the four schedule constants (defaults n 0.5 -> 1.0 of a group,
K 0.2 -> 1.0), rounding (half up, at least ``min_keep`` = 2 samples per group), ties (lowest index first),
progress = steps done / ``train.steps`` (or generated tokens / ``train.gen_token_budget`` when set).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from rlbook.core.errors import ParamError
from rlbook.mechanisms import phases
from rlbook.mechanisms.curricula._util import sample_advantages

MODES = ("intra", "cross", "intra+cross")


def max_variance_subset(values: list[float], k: int) -> list[int]:
    """Indices of the ``k`` values with the largest population variance: the j largest and k - j smallest for
    the best j (ties: the lowest index first; for equal variances the smallest j)."""
    if k >= len(values):
        return list(range(len(values)))
    order = sorted(range(len(values)), key=lambda i: (-values[i], i))  # descending, stable by index
    low = sorted(range(len(values)), key=lambda i: (values[i], i))  # ascending
    best: tuple[float, list[int]] | None = None
    for j in range(k + 1):
        top = order[:j]
        bottom = [i for i in low if i not in top][: k - j]
        pick = top + bottom
        x = torch.tensor([values[i] for i in pick], dtype=torch.float64)
        var = float(x.var(correction=0)) if len(pick) > 1 else 0.0
        if best is None or var > best[0] + 1e-12:
            best = (var, pick)
    return sorted(best[1]) if best else []


def intra_select(adv: Tensor, mask: Tensor, n_keep: int) -> Tensor:
    """[P, G] bool: per group the ``n_keep`` filled slots of maximal advantage variance."""
    keep = torch.zeros_like(mask, dtype=torch.bool)
    for j in range(adv.shape[0]):
        slots = mask[j].nonzero().flatten().tolist()
        for i in max_variance_subset([float(adv[j, g]) for g in slots], n_keep):
            keep[j, slots[i]] = True
    return keep


def cross_select(adv: Tensor, mask: Tensor, n_keep: int) -> Tensor:
    """[P, G] bool: the ``n_keep`` samples (among ``mask``) of maximal variance of the pooled advantages."""
    slots = mask.reshape(-1).nonzero().flatten().tolist()
    keep = torch.zeros(mask.numel(), dtype=torch.bool)
    for i in max_variance_subset([float(adv.reshape(-1)[s]) for s in slots], n_keep):
        keep[slots[i]] = True
    return keep.view_as(mask)


def top_tokens(score: Tensor, token_mask: Tensor, share: float) -> Tensor:
    """[B, T] 0/1: the top ``ceil(share x #tokens)`` tokens of ``score`` among ``token_mask`` (pooled; ties by
    position)."""
    flat, m = score.reshape(-1), token_mask.reshape(-1).bool()
    idx = m.nonzero().flatten()
    k = min(len(idx), max(1, math.ceil(share * len(idx) - 1e-9))) if len(idx) else 0
    out = torch.zeros_like(flat)
    if k:
        order = sorted(idx.tolist(), key=lambda i: (-float(flat[i]), i))[:k]
        out[order] = 1.0
    return out.view_as(score)


def linear(t: float, start: float, end: float) -> float:
    return (1.0 - t) * start + t * end


def progress(trainer: Any) -> float:
    """Steps done / ``train.steps``, or generated tokens / ``train.gen_token_budget`` when a budget is set."""
    cfg = trainer.cfg
    if cfg.gen_token_budget > 0:
        spent = sum(int(m["gen_tokens"]) for m in trainer.history)
        return min(1.0, spent / cfg.gen_token_budget)
    return min(1.0, trainer.step_count / max(cfg.steps, 1))


@phases.register("d3s", at="after_advantages")
class D3S(phases.Phase):
    """Dynamic dual-level down-sampling after the advantages (see the module docstring)."""

    def __init__(self, trainer: Any, *, mode: str = "intra", n_init: float = 0.5, n_final: float = 1.0,
                 k_init: float = 0.2, k_final: float = 1.0, min_keep: int = 2, tokens: bool = True):
        if mode not in MODES:
            raise ParamError(f"d3s mode={mode!r} is not allowed; allowed: {', '.join(MODES)}")
        for key, v in (("n_init", n_init), ("n_final", n_final), ("k_init", k_init), ("k_final", k_final)):
            if not 0.0 < v <= 1.0:
                raise ParamError(f"d3s {key}={v!r} must be in (0, 1]")
        self.mode, self.n, self.k, self.min_keep, self.tokens = mode, (n_init, n_final), (k_init, k_final), min_keep, tokens

    def run(self, trainer: Any, batch: Any) -> dict[str, float]:
        t = progress(trainer)
        frac, share = linear(t, *self.n), linear(t, *self.k)
        adv = sample_advantages(batch.advantages, batch.roll.completion_mask)
        mask = batch.kept if batch.kept is not None else torch.ones_like(batch.correct, dtype=torch.bool)
        keep = mask.bool()
        if self.mode in ("intra", "intra+cross"):
            keep = intra_select(adv, keep, max(self.min_keep, math.floor(frac * batch.G + 0.5)))
        if self.mode in ("cross", "intra+cross"):
            keep = cross_select(adv, keep, max(self.min_keep, math.floor(frac * int(keep.sum()) + 0.5)))
        batch.drop(keep)
        out = {"d3s_kept_samples": float(keep.sum()) / max(float(mask.sum()), 1.0), "d3s_token_share": 1.0}
        if self.tokens and share < 1.0:
            if batch.roll.entropy is None:
                raise ParamError("d3s token selection needs the sampler's per-token entropy (generation_backend: rlbook)")
            rows = keep.reshape(-1).float().unsqueeze(1)
            cmask = batch.roll.completion_mask * rows
            score = adv.reshape(-1, 1).abs() * batch.roll.entropy.float()
            tm = top_tokens(score, cmask, share)
            batch.context["loss_token_mask"] = tm if batch.context.get("loss_token_mask") is None else tm * batch.context["loss_token_mask"]
            out["d3s_token_share"] = float(tm.sum()) / max(float(cmask.sum()), 1.0)
        return out
