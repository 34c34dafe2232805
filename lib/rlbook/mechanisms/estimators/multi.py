"""Estimators for several reward channels: variance-adaptive mixing and conditional channels.

DRPO's decoupled length reward is a loss (``rlbook.mechanisms.losses`` ``drpo``), not an advantage."""

from __future__ import annotations

import torch
from torch import Tensor

from rlbook.core.config import ParamError

from ._registry import register
from ._util import EPS, grpo_advantage, masked_group_stats


@register("dvao")
def dvao(
    rewards: Tensor,
    *,
    reward_parts: Tensor | None = None,
    part_weights: Tensor | None = None,
    weighting: str = "variance",
    eps: float = EPS,
) -> Tensor:
    """Variance-adaptive advantage combination over K reward parts.

    Per prompt and part k: z_k = (r_k - mean_k) / (std_k + eps) (population std), weights
    w_k = |omega_k| var_k / sum_j |omega_j| var_j (omega = ``part_weights``), A = sum_k sign(omega_k) w_k z_k.
    Parts with more within-group variance (a stronger signal) get more weight, a part with no
    variance gets none, and since sum_k w_k = 1, |A| <= max_k |z_k| <= sqrt(G - 1) (bounded).
    ``weighting="fixed"`` is the paper's *Advantage Combination* baseline with the same z-scores and static
    weights w_k = |omega_k| / sum_j |omega_j| (no variance); the *Reward Combination* baseline is ``grpo`` on
    the weighted sum of the parts (the trainer's ``rewards``).
    Source: Jiang et al., "DVAO: Dynamic Variance-adaptive Advantage Optimization for Multi-reward
    Reinforcement Learning" (2026), abstract.  No public code was found (searched the code index for DVAO and
    the title): the weight formula (variance-proportional, normalised to sum to one, scaled by the configured
    part weights) is our reading of "combination weights based on the empirical reward variance of each
    objective within a rollout group" with "bounded advantage magnitudes"; the paper's "self-adaptive
    cross-objective regularization" is not modelled beyond these weights.  Without ``reward_parts`` (K = 1) it
    is GRPO with the population std.
    """
    if weighting not in ("variance", "fixed"):
        raise ParamError(f"weighting={weighting!r} is not allowed; allowed: variance, fixed")
    parts = reward_parts.float() if reward_parts is not None else rewards.unsqueeze(-1)
    k = parts.shape[-1]
    omega = (
        part_weights.float().to(parts.device)
        if part_weights is not None
        else torch.ones(k, device=parts.device)
    )
    mean = parts.mean(dim=1, keepdim=True)
    std = parts.std(dim=1, keepdim=True, correction=0) if parts.shape[1] > 1 else torch.zeros_like(mean)
    z = (parts - mean) / (std + eps)  # [P, G, K]
    raw = omega.abs() * std.squeeze(1) ** 2 if weighting == "variance" else omega.abs().expand(parts.shape[0], k)
    w = raw / (raw.sum(dim=-1, keepdim=True) + eps * eps)
    return (z * (torch.sign(omega) * w).unsqueeze(1)).sum(dim=-1)


def _cost_channel(lengths: Tensor | None, reward_parts: Tensor | None, channel: str, part: int) -> Tensor:
    """The efficiency score (higher is better): minus the length, or a reward part."""
    if channel == "length":
        if lengths is None:
            raise ParamError("channel='length' needs context 'lengths'")
        return -lengths.float()
    if channel == "part":
        if reward_parts is None:
            raise ParamError("channel='part' needs context 'reward_parts'")
        return reward_parts[..., part].float()
    raise ParamError(f"channel={channel!r} is not allowed; allowed: length, part")


@register("conditional")
def conditional(
    rewards: Tensor,
    *,
    correct: Tensor,
    lengths: Tensor | None = None,
    reward_parts: Tensor | None = None,
    channel: str = "length",
    part: int = -1,
    weight: float = 1.0,
    eps: float = EPS,
) -> Tensor:
    """Two decoupled channels: A = A_acc + weight * A_eff.

    A_acc is the GRPO advantage of ``rewards`` over the whole group; A_eff is the efficiency score
    (``channel="length"``: minus the completion length; ``"part"``: reward part ``part``) z-scored
    only among the group's correct samples, and 0 for incorrect samples (conditional advantage).
    Source: "Act Wisely: Cultivating Meta-Cognitive Tool Use in Agentic Multimodal Models" (HDPO,
    2026), conditional advantage estimation of the efficiency channel over the qualifying set of
    correct rollouts.  The paper's efficiency reward is 1/(T+1) for T tool calls; we have no tools, so
    the cost is a parameter; the paper combines the channels at the loss level with weights, we sum
    the advantages with ``weight`` (equivalent for a loss linear in the advantage).
    """
    acc = grpo_advantage(rewards, eps=eps)
    score = _cost_channel(lengths, reward_parts, channel, part)
    ok = correct.bool()
    mean, std, _ = masked_group_stats(score, ok)
    eff = torch.where(ok, (score - mean) / (std + eps), torch.zeros_like(score))
    return acc + weight * eff
