"""Small tensor helpers shared by the estimator families."""

from __future__ import annotations

import torch
from torch import Tensor

from rlbook.core.config import ParamError

EPS = 1e-6


def group_mean_std(rewards: Tensor, unbiased: bool = True) -> tuple[Tensor, Tensor]:
    """Per-prompt mean and std, shapes ``[P, 1]``.

    ``unbiased`` uses Bessel's correction like ``torch.std`` in verl's GRPO.  A group of one has no
    baseline: mean 0 and std 1 (verl's convention), so the advantage is the raw reward.
    """
    if rewards.shape[1] == 1:
        return torch.zeros_like(rewards), torch.ones_like(rewards)
    mean = rewards.mean(dim=1, keepdim=True)
    std = rewards.std(dim=1, keepdim=True, correction=1 if unbiased else 0)
    return mean, std


def ragged_mean_std(rewards: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Per-prompt mean and Bessel std over the filled slots of uneven groups (``mask`` [P, G] bool), ``[P, 1]``.

    verl's ``compute_grpo_outcome_advantage`` groups by uid with a dict, so each group uses its own size m:
    mean and ``torch.std`` (n - 1) over its m samples; a group of one gets mean 0 and std 1 (A = r).  An empty
    group gets mean 0, std 1 (its slots are masked anyway)."""
    m = mask.to(rewards.dtype)
    n = m.sum(dim=1, keepdim=True)
    mean = (rewards * m).sum(dim=1, keepdim=True) / n.clamp(min=1.0)
    var = (((rewards - mean) ** 2) * m).sum(dim=1, keepdim=True) / (n - 1.0).clamp(min=1.0)
    single = n < 2
    mean = torch.where(single, torch.zeros_like(mean), mean)
    std = torch.where(single, torch.ones_like(var), var.sqrt())
    return mean, std


def batch_std(x: Tensor) -> Tensor:
    """Std over every element (unbiased when there are at least two), a 0-d tensor."""
    return x.std(correction=1) if x.numel() > 1 else torch.zeros((), dtype=x.dtype, device=x.device)


def whiten(x: Tensor, center: bool = True, eps: float = EPS) -> Tensor:
    """Batch whitening: ``(x - mean) / (std + eps)`` over all elements (``center=False`` keeps the mean)."""
    mean = x.mean() if center else 0.0
    return (x - mean) / (batch_std(x) + eps)


def grpo_advantage(rewards: Tensor, eps: float = EPS, scale: bool = True, sample_mask: Tensor | None = None) -> Tensor:
    """``(r - group mean) / (group std + eps)``; ``scale=False`` drops the division (Dr. GRPO).  With
    ``sample_mask`` (uneven groups) the statistics are over each group's filled slots
    (:func:`ragged_mean_std`) and empty slots get 0."""
    if sample_mask is None:
        mean, std = group_mean_std(rewards)
        centered = rewards - mean
        return centered / (std + eps) if scale else centered
    mean, std = ragged_mean_std(rewards, sample_mask)
    centered = rewards - mean
    out = centered / (std + eps) if scale else centered
    return torch.where(sample_mask.bool(), out, torch.zeros_like(out))


def masked_group_stats(values: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Mean, population std and count of ``values`` over ``mask`` within each row, shapes ``[P, 1]``."""
    m = mask.to(values.dtype)
    n = m.sum(dim=1, keepdim=True)
    mean = (values * m).sum(dim=1, keepdim=True) / n.clamp(min=1.0)
    var = (((values - mean) ** 2) * m).sum(dim=1, keepdim=True) / n.clamp(min=1.0)
    return mean, var.sqrt(), n


def to_unit(x: Tensor, min_value: float, max_value: float, name: str = "reward") -> Tensor:
    """Affine map of the declared range ``[min_value, max_value]`` onto ``[0, 1]``.

    Nothing is clamped: a value outside the declared range is a ``ParamError`` that names the value and
    the bounds (a reward outside its declared range is a configuration error, not noise to hide).
    """
    if max_value <= min_value:
        raise ParamError(f"max_value={max_value!r} must be > min_value={min_value!r}")
    unit = (x - min_value) / (max_value - min_value)
    bad = (unit < -1e-6) | (unit > 1 + 1e-6) | ~torch.isfinite(unit)
    if bool(bad.any()):
        value = float(x[bad].flatten()[0])
        raise ParamError(
            f"{name} value {value!r} is outside the declared range [min_value={min_value!r}, "
            f"max_value={max_value!r}]; declare bounds that contain every {name}"
        )
    return unit.clamp(0.0, 1.0)  # only float rounding (|excess| <= 1e-6) is removed here


def token_weighted_whiten(values: Tensor, lengths: Tensor, eps: float = 1e-8) -> Tensor:
    """Whiten per-sample ``values`` over all completion *tokens* of the batch (verl ``masked_whiten``).

    Each sample's value is repeated on each of its ``lengths`` tokens, so with N = sum(lengths):
    mean = sum(L_i x_i) / N, var = [sum(L_i (x_i - mean)^2) / N] * N / (N - 1) (Bessel over tokens), and
    the result is (x - mean) / sqrt(var + eps), eps = 1e-8 inside the root as in verl.  With fewer than two
    tokens in the batch (verl raises there) every advantage is 0.
    """
    w = lengths.to(values.dtype).clamp(min=0.0)
    n = w.sum()
    if float(n) < 2.0:
        return torch.zeros_like(values)
    mean = (w * values).sum() / n
    var = (w * (values - mean) ** 2).sum() / n * (n / (n - 1.0))
    return (values - mean) * torch.rsqrt(var + eps)
