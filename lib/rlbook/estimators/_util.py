"""Small tensor helpers shared by the estimator families."""

from __future__ import annotations

import torch
from torch import Tensor

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


def batch_std(x: Tensor) -> Tensor:
    """Std over every element (unbiased when there are at least two), a 0-d tensor."""
    return x.std(correction=1) if x.numel() > 1 else torch.zeros((), dtype=x.dtype, device=x.device)


def whiten(x: Tensor, center: bool = True, eps: float = EPS) -> Tensor:
    """Batch whitening: ``(x - mean) / (std + eps)`` over all elements (``center=False`` keeps the mean)."""
    mean = x.mean() if center else 0.0
    return (x - mean) / (batch_std(x) + eps)


def grpo_advantage(rewards: Tensor, eps: float = EPS, scale: bool = True) -> Tensor:
    """``(r - group mean) / (group std + eps)``; ``scale=False`` drops the division (Dr. GRPO)."""
    mean, std = group_mean_std(rewards)
    centered = rewards - mean
    return centered / (std + eps) if scale else centered


def masked_group_stats(values: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Mean, population std and count of ``values`` over ``mask`` within each row, shapes ``[P, 1]``."""
    m = mask.to(values.dtype)
    n = m.sum(dim=1, keepdim=True)
    mean = (values * m).sum(dim=1, keepdim=True) / n.clamp(min=1.0)
    var = (((values - mean) ** 2) * m).sum(dim=1, keepdim=True) / n.clamp(min=1.0)
    return mean, var.sqrt(), n


def to_unit(x: Tensor, min_value: float, max_value: float) -> Tensor:
    """Affine map of ``[min_value, max_value]`` onto ``[0, 1]``, clamped."""
    if max_value <= min_value:
        raise ValueError(f"max_value={max_value} must be > min_value={min_value}")
    return ((x - min_value) / (max_value - min_value)).clamp(0.0, 1.0)
