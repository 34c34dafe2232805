"""Group-relative estimators: GRPO and the variants that change its mean, its scale or its weighting."""

from __future__ import annotations

import torch
from torch import Tensor

from rlbook.core.config import ParamError

from ._registry import register
from ._util import (
    EPS,
    batch_std,
    group_mean_std,
    grpo_advantage,
    masked_group_stats,
    ragged_mean_std,
    to_unit,
)


@register("grpo", ragged=True)
def grpo(rewards: Tensor, *, sample_mask: Tensor | None = None, eps: float = EPS) -> Tensor:
    """A = (r - group mean) / (group std + eps), std with Bessel's correction.

    Source: Shao et al., "DeepSeekMath: Pushing the Limits of Mathematical Reasoning in Open Language
    Models" (2024), Sec. 4.1.2 outcome supervision; code: verl ``compute_grpo_outcome_advantage``.
    Same as the code (a group of one gets A = r).  Uneven groups (``sample_mask``): each group's own size,
    as the code's per-uid dict does (Knapsack RL trains with exactly this function).
    """
    return grpo_advantage(rewards, eps=eps, sample_mask=sample_mask)


@register("dr_grpo", ragged=True)
def dr_grpo(rewards: Tensor, *, sample_mask: Tensor | None = None) -> Tensor:
    """A = r - group mean (no division by the group std).

    Source: Liu et al., "Understanding R1-Zero-Like Training: A Critical Perspective" (2025), Dr. GRPO
    Eq. 3.  The paper's other half, the constant length normaliser, lives in the loss aggregation
    ``seq_mean_token_sum_norm`` (``rlbook.mechanisms.losses``), not here.  Uneven groups: the mean over filled slots.
    """
    return grpo_advantage(rewards, scale=False, sample_mask=sample_mask)


@register("lite_ppo")
def lite_ppo(rewards: Tensor, *, eps: float = EPS) -> Tensor:
    """A = (r - group mean) / (batch std of the rewards + eps): group-level mean, batch-level std.

    Source: Liu et al., "Part I: Tricks or Traps? A Deep Dive into RL for LLM Reasoning" (2025),
    Sec. 4.1 / Lite PPO (group-mean + batch-std normalisation).  The paper's second trick,
    token-level loss aggregation, is ``aggregation="token_mean"`` in the trainer config.
    """
    mean, _ = group_mean_std(rewards)
    return (rewards - mean) / (batch_std(rewards) + eps)


@register("ngrpo", ragged=True)
def ngrpo(rewards: Tensor, *, sample_mask: Tensor | None = None, max_reward: float = 1.0, n_virtual: int = 1,
          eps: float = EPS) -> Tensor:
    """GRPO whose group mean and std also count ``n_virtual`` virtual samples of reward ``max_reward``.

    An all-wrong group then gets negative advantages instead of zeros (advantage calibration); a group
    of one gets A = r (mean 0, std 1, no virtual sample: the code's convention).
    Source: Nan et al., "NGRPO: Negative-enhanced Group Relative Policy Optimization" (2025); code:
    github.com/nangongrui-ngr/NGRPO (commit e7a3804) ``verl/trainer/ppo/core_algos.py::
    compute_ngrpo_outcome_advantage`` (mean and unbiased std over the group plus ``add_max_reward_num``
    copies of ``max_reward``; eps 1e-6 added to the std).  Same as the code.  The rest of the method is
    trainer settings, not this estimator: asymmetric clipping (``train_scripts/train_qwen2.5-math-7b_ngrpo.sh``:
    clip_ratio_low 0.16, clip_ratio_high 0.24), token-mean aggregation, and the filter that drops only
    all-correct groups (``filter_groups.strategy=all_correct``).
    """
    if n_virtual < 0:
        raise ParamError(f"n_virtual={n_virtual!r} must be >= 0")
    p, g = rewards.shape
    if sample_mask is not None:  # uneven groups: each group's filled slots plus the virtual samples
        virtual = torch.ones(p, n_virtual, dtype=torch.bool, device=rewards.device)
        full = torch.cat([rewards, torch.full((p, n_virtual), float(max_reward), dtype=rewards.dtype)], dim=1)
        mask = torch.cat([sample_mask.bool(), virtual], dim=1)
        mean, std = ragged_mean_std(full, mask)
        single = sample_mask.sum(dim=1, keepdim=True) < 2  # a real group of one: A = r, as without the mask
        out = torch.where(single, rewards, (rewards - mean) / (std + eps))
        return torch.where(sample_mask.bool(), out, torch.zeros_like(out))
    if g == 1:
        return rewards.clone()
    virtual = torch.full((p, n_virtual), float(max_reward), dtype=rewards.dtype, device=rewards.device)
    aug = torch.cat([rewards, virtual], dim=1)
    mean = aug.mean(dim=1, keepdim=True)
    std = aug.std(dim=1, keepdim=True, correction=1)
    return (rewards - mean) / (std + eps)


def _beta_log_pdf(x: Tensor, alpha: Tensor, beta: Tensor) -> Tensor:
    """log Beta(x; alpha, beta), exact at x = 0 or 1 (xlogy gives 0 * log 0 = 0)."""
    log_norm = torch.lgamma(alpha + beta) - torch.lgamma(alpha) - torch.lgamma(beta)
    return torch.xlogy(alpha - 1, x) + torch.xlogy(beta - 1, 1 - x) + log_norm


def _bnpo_single(scores: Tensor, max_weight: float) -> Tensor:
    """BNPO on rewards already mapped to [0, 1]; returns A = (r - p) / Beta_pdf(p; alpha, beta)."""
    p_group = scores.mean(dim=1, keepdim=True) if scores.shape[1] > 1 else torch.zeros_like(scores)
    means = p_group[:, 0].double()
    if means.numel() > 1:
        m, v = means.mean(), means.var(correction=1)
    else:  # the official code's convention for a single prompt
        m, v = torch.zeros((), dtype=torch.float64), torch.ones((), dtype=torch.float64)
    if v <= 0:  # all group means equal: nothing to fit, use the uniform Beta(1, 1)
        alpha = beta = torch.ones((), dtype=torch.float64)
    else:
        k = m * (1 - m) / v - 1
        alpha = torch.clamp(1 + k * m / 3, min=1.0)
        beta = torch.clamp(1 + k * (1 - m) / 3, min=1.0)
    pdf = _beta_log_pdf(p_group.double(), alpha, beta).exp()
    weight = (1.0 / pdf).clamp(max=max_weight)  # 1/0 = inf -> max_weight
    return (weight * (scores.double() - p_group.double())).to(scores.dtype)


@register("bnpo")
def bnpo(
    rewards: Tensor,
    *,
    reward_parts: Tensor | None = None,
    part_weights: Tensor | None = None,
    min_value: float = 0.0,
    max_value: float = 1.0,
    part_bounds: list[list[float]] | None = None,
    max_weight: float = 1e6,
    decompose: bool = False,
) -> Tensor:
    """Beta-normalised advantage A_i = (r_i - p) / Beta_pdf(p; alpha, beta).

    r is mapped to [0, 1] by the declared bounds (min_value, max_value); a reward outside them is a
    ``ParamError`` (never clamped).  p = group mean of the mapped rewards (0 for a group of one); a Beta is
    fitted to the batch's group means by moments: m = mean(p), v = var(p) (unbiased; m = 0, v = 1 for a
    single prompt), a = (m(1-m)/v - 1) m, b = (m(1-m)/v - 1)(1-m), alpha = max(1, 1 + a/3),
    beta = max(1, 1 + b/3); 1/pdf is capped at ``max_weight``.

    Advantage decomposition (``decompose=True``, off by default as in the code): each reward part k of
    ``reward_parts`` (those with a non-zero ``part_weights`` entry) is mapped by its own bounds
    ``part_bounds[k] = [min, max]`` (default [0, 1] each), normalised separately, and the advantage is the
    *unweighted mean* of the per-part advantages, A = (1/K) sum_k A_k.

    Source: Xiao et al., "BNPO: Beta Normalization Policy Optimization" (2025), alpha/beta moment fit and
    "advantage decomposition"; code: github.com/changyi7231/BNPO (commit a9c51b9)
    ``recipe/bnpo/src/bnpo_ray_trainer.py::compute_bnpo_outcome_advantage`` and, for the decomposition,
    ``RayBNPOTrainer.fit`` (``use_advantage_decomposition``: the advantages of every ``*reward_tensor``
    part are summed and divided by their count; ``run.sh`` sets it False).  Differences: the code asserts
    only that each group mean lies in [0, 1], we check every mapped reward; the code calls the per-part
    estimator with the default bounds [0, 1] (it has no per-part bounds); where the code divides by zero
    (all group means equal, v = 0, e.g. an all-0 or all-1 batch) we use alpha = beta = 1, i.e. A = r - p.
    """
    k = reward_parts.shape[-1] if reward_parts is not None and reward_parts.dim() == 3 else 1
    if not decompose or k == 1:
        return _bnpo_single(to_unit(rewards, min_value, max_value), max_weight)
    if part_bounds is not None and len(part_bounds) != k:
        raise ParamError(f"part_bounds has {len(part_bounds)} entries for {k} reward parts; give one [min, max] each")
    used = [i for i in range(k) if part_weights is None or float(part_weights[i]) != 0.0]
    per_part = []
    for i in used:
        lo, hi = part_bounds[i] if part_bounds is not None else (0.0, 1.0)
        unit = to_unit(reward_parts[..., i].float(), float(lo), float(hi), name=f"reward part {i}")
        per_part.append(_bnpo_single(unit, max_weight))
    return torch.stack(per_part).mean(dim=0)


@register("a_grae")
def a_grae(
    rewards: Tensor,
    *,
    step: int = 0,
    total_steps: int = 1,
    curriculum: str = "accuracy",
    positive_alpha: float = 1.0,
    norm_std: bool = True,
    min_value: float = 0.0,
    max_value: float = 1.0,
    eps: float = EPS,
) -> Tensor:
    """Asymmetric GRAE: GRPO advantage reweighted for difficulty and with positive advantages scaled down.

    With A the GRPO advantage, p = group accuracy (group mean of the rewards mapped to [0, 1] by the
    declared bounds; outside them is a ``ParamError``), m = batch mean of p and t in [0, 1] the progress:
      A' = 0.5 A [ (1 - t) / (1 - sqrt(p) + eps) + t / (sqrt(p) + eps) ]   (easy first, hard later)
      A' <- A' * min(1, m / positive_alpha)   where A' > 0.
    Source: Yu et al., "Unveiling Implicit Advantage Symmetry: Why GRPO Struggles with Exploration and
    Difficulty Adaptation" (2026, arXiv 2602.05548): the asymmetric suppression of correct trajectories and
    the easy-to-hard shift guided by the batch mean reward.  The formula above is the ``grpo_weight == 2.0``
    branch of github.com/Yu7-code/A-GRAE (commit 5f129ef) ``verl/trainer/ppo/core_algos.py::
    compute_grpo_outcome_advantage`` (t = m, ``alpha = 1`` for math).  The released trainer never runs that
    branch: ``ray_trainer.py`` passes grpo_weight = cfg + (global_steps / total_steps) * (1 - cfg), and with
    cfg = 2.0 (``run_qwen2.5-math-7b-grpo-agrae.sh``) and global_steps >= 1 this is never exactly 2.0, so the
    released code trains plain GRPO.  We implement what the paper states (the branch), not what the released
    trainer runs.  ``curriculum="accuracy"`` (default) uses t = m as the branch does; ``curriculum="step"``
    uses t = step / total_steps (our addition).  A group of one uses p = its own mapped reward (the code's
    group mean would be 0).
    """
    if curriculum not in ("accuracy", "step"):
        raise ParamError(f"curriculum={curriculum!r} is not allowed; allowed: accuracy, step")
    adv = grpo_advantage(rewards, eps=eps, scale=norm_std)
    p = to_unit(rewards, min_value, max_value).mean(dim=1, keepdim=True)
    m = p.mean()
    t = m if curriculum == "accuracy" else torch.tensor(min(max(step / max(total_steps, 1), 0.0), 1.0))
    sq = p.sqrt()
    out = 0.5 * adv * ((1 - t) / (1 - sq + eps) + t / (sq + eps))
    shrink = torch.clamp(m / positive_alpha, max=1.0)
    return torch.where(out > 0, out * shrink, out)


def _strata(
    lengths: Tensor | None, reward_parts: Tensor | None, key: str, part: int, n_strata: int
) -> Tensor:
    """Integer stratum id per sample, ``[P, G]``."""
    if key == "length":
        if lengths is None:
            raise ParamError("stratified key='length' needs context 'lengths'")
        flat = lengths.float().flatten()
        qs = torch.quantile(flat, torch.linspace(0, 1, n_strata + 1, device=flat.device)[1:-1])
        return torch.bucketize(lengths.float().contiguous(), qs.contiguous())
    if key == "part":
        if reward_parts is None:
            raise ParamError("stratified key='part' needs context 'reward_parts'")
        vals = reward_parts[..., part].float()
        return torch.unique(torch.round(vals * 1e4), return_inverse=True)[1].reshape(vals.shape)
    raise ParamError(f"key={key!r} is not allowed; allowed: length, part")


@register("stratified")
def stratified(
    rewards: Tensor,
    *,
    lengths: Tensor | None = None,
    reward_parts: Tensor | None = None,
    key: str = "length",
    part: int = -1,
    n_strata: int = 2,
    blend: float = 0.5,
    eps: float = EPS,
) -> Tensor:
    """Stratified advantage normalisation (SAN) blended with the group (GRPO) estimate.

    Within each prompt's group, samples are partitioned into strata; A_SAN = (r - stratum mean) /
    (stratum std + eps) and A = blend * A_SAN + (1 - blend) * A_GRPO.
    Source: Zhu et al., "Stratified GRPO: Handling Structural Heterogeneity in Reinforcement Learning of
    LLM Search Agents" (2025), SAN (Sec. 4) and the linear blend with the global estimator.  The paper
    stratifies search-agent trajectories by their number/outcome of search calls; we have no tools,
    so the stratum key is a parameter: ``key="length"`` buckets completion lengths into ``n_strata``
    batch quantiles, ``key="part"`` uses the distinct values of reward part ``part`` (e.g. format
    followed or not).  ``blend`` (our default 0.5) is not stated in the abstract.  A stratum of one
    sample gets A_SAN = 0; strata use the population std.  No code from the authors was found (the code
    index searched for the title and for SAN): the strata are taken inside each prompt's group, as the
    abstract's "trajectories are evaluated only against their true peers" and the per-prompt GRPO baseline
    it blends with suggest; that reading is ours.
    """
    if not 0.0 <= blend <= 1.0:
        raise ParamError(f"blend={blend!r} must be in [0, 1]")
    ids = _strata(lengths, reward_parts, key, part, n_strata)
    san = torch.zeros_like(rewards)
    for s in torch.unique(ids).tolist():
        mask = ids == s
        mean, std, _ = masked_group_stats(rewards, mask)
        san = torch.where(mask, (rewards - mean) / (std + eps), san)
    return blend * san + (1 - blend) * grpo_advantage(rewards, eps=eps)
