"""Estimators that reshape the group advantage with the policy's own signals (confidence, metric, consistency)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from rlbook.core.config import ParamError

from ._registry import register
from ._util import EPS, grpo_advantage, masked_group_stats


@register("ace")
def ace(rewards: Tensor, *, seq_log_ratio: Tensor, alpha: float = 1.0, eps: float = EPS) -> Tensor:
    """Asymmetric confidence-aware error penalty: negative advantages scaled up for overconfident errors.

    A = GRPO advantage; where A < 0: A <- A * (1 + alpha * softplus(c)), c = log pi_theta(y|x) -
    log pi_ref(y|x) (``seq_log_ratio``).  Positive advantages are unchanged.
    Source: Xu et al., "Overconfident Errors Need Stronger Correction: Asymmetric Confidence Penalties
    for Reinforcement Learning" (2026), arXiv 2602.21420: c_i as in the abstract; public summaries of
    the paper state the negative advantage is scaled by a softplus of c (softplus preferred over ReLU).
    No public code was found (the code index searched for ACE and the title; the arXiv HTML's method section
    was not readable here): the form 1 + alpha * softplus(c) and alpha = 1 are our assumption.  Reported
    effect: up to +3.0 points of pass@32 at equal pass@1 (Qwen2.5-Math-7B, MATH-500, summaries of the paper).
    With no reference pass (c = 0) every negative advantage is scaled by 1 + alpha * ln 2.
    """
    adv = grpo_advantage(rewards, eps=eps)
    scale = 1.0 + alpha * F.softplus(seq_log_ratio.float())
    return torch.where(adv < 0, adv * scale, adv)


@register("arm")
def arm(
    rewards: Tensor,
    *,
    seq_log_ratio: Tensor,
    lengths: Tensor,
    alpha: float = 1.0,
    eps: float = EPS,
) -> Tensor:
    """Advantage re-weighting by confidence: A_i + alpha (c(q) - c(o_i|q)) in groups with some reward.

    A = GRPO advantage; c(o_i|q) = per-token confidence of answer i; c(q) = the prompt-level
    confidence; groups whose rewards are all 0 keep A.  Over-confident answers get a smaller advantage,
    under-explored ones a larger one.
    Source: Li et al., "Back to Basics: Revisiting Exploration in Reinforcement Learning for LLM
    Reasoning via Generative Probabilities" (ProGRPO, 2026), arXiv 2602.05281, the ARM equation
    Ã_i = A_i if sum_k r_k = 0 else A_i + alpha (c_theta(q) - c_theta(o_i|q)).  The paper's
    c_theta(o|q) is the answer's mean log-probability over its low-probability tokens and c_theta(q)
    comes from the prompt perplexity; the trainer gives us neither, so ours uses the per-token
    log-ratio to the reference, ``seq_log_ratio / lengths``, as c(o|q) and its group mean as c(q)
    (assumption; with no reference pass c = 0 and ARM equals GRPO).
    """
    adv = grpo_advantage(rewards, eps=eps)
    conf = seq_log_ratio.float() / lengths.float().clamp(min=1.0)
    shaped = adv + alpha * (conf.mean(dim=1, keepdim=True) - conf)
    has_reward = (rewards != 0).any(dim=1, keepdim=True)
    return torch.where(has_reward, shaped, adv)


@register("canon")
def canon(
    rewards: Tensor,
    *,
    lengths: Tensor | None = None,
    seq_log_ratio: Tensor | None = None,
    metric: str = "length",
    inter_weight: float = 1.0,
    scale: bool = False,
    eps: float = EPS,
) -> Tensor:
    """Conditional advantage: split each group in two by a metric, compare across and within the halves.

    Each group's samples are ranked by the metric (a stable sort: ties keep their order); the first G // 2
    form the low half, the rest the high half.  With S(i) the half of sample i and O(i) the other half:
    A_inter = r_i - mean(r over O(i)) (does this trend beat the other?), A_intra = r_i - mean(r over S(i))
    (is it the better response of its own half?), A = inter_weight A_inter + (1 - inter_weight) A_intra,
    divided by the group std (+ eps) when ``scale``.  No direction of the metric is presumed: whichever half
    has the higher mean reward is pushed up.  A group of one sample gets A = 0.

    Source: Chen et al., "Conditional Advantage Estimation for Reinforcement Learning in Large Reasoning
    Models" (CANON, 2025, arXiv 2509.23962); code github.com/biuboomc/CANON (commit f3ee9fc)
    ``verl/trainer/ppo/core_algos.py::compute_dr_length_on_mean_group_outcome_advantage`` (estimator
    ``dr_length_on_mean``; the entropy variants split the same way on the mean token entropy) and
    ``scripts/setups.sh`` (``_lambda`` = 1.0, our ``inter_weight``; ``alpha`` = 1.0; loss
    ``seq-mean-token-sum``).  Followed: the rank split (``sorted`` by the metric, ``mid = n // 2``, ``i >= mid``
    is the high half) and the mixture with ``_lambda``.  Differences: the code's asymmetry ``alpha`` and offset
    ``beta`` are left out (1 and 0 in the scripts, which give this form); the code divides by the constant
    ``max_length`` (Dr. GRPO): ours leaves A unscaled by default and the preset ``canon`` divides the token sums
    by ``max_new_tokens`` in the aggregation (``seq_mean_token_sum_norm``), the same objective; ``scale=True``
    divides by the group std instead (GRPO-style, not in the code).  The code gives a one-sample group A = r.
    The paper's main metric is per-token entropy, which the trainer does not pass to estimators: ``metric`` is
    ``"length"`` (the paper's length variant) or ``"log_ratio"`` (per-token log-ratio to the reference).
    """
    if metric == "length":
        if lengths is None:
            raise ParamError("canon metric='length' needs context 'lengths'")
        m = lengths.float()
    elif metric == "log_ratio":
        if seq_log_ratio is None or lengths is None:
            raise ParamError("canon metric='log_ratio' needs context 'seq_log_ratio' and 'lengths'")
        m = seq_log_ratio.float() / lengths.float().clamp(min=1.0)
    else:
        raise ParamError(f"metric={metric!r} is not allowed; allowed: length, log_ratio")
    g = rewards.shape[1]
    order = torch.argsort(m, dim=1, stable=True)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(g, device=m.device).expand_as(order))
    high = rank >= g // 2
    mean_h, _, n_h = masked_group_stats(rewards, high)
    mean_l, _, n_l = masked_group_stats(rewards, ~high)
    group_mean = rewards.mean(dim=1, keepdim=True)
    split = (n_h > 0) & (n_l > 0)
    same = torch.where(split, torch.where(high, mean_h, mean_l), group_mean)
    other = torch.where(split, torch.where(high, mean_l, mean_h), group_mean)
    adv = inter_weight * (rewards - other) + (1 - inter_weight) * (rewards - same)
    if scale:
        std = rewards.std(dim=1, keepdim=True, correction=1) if g > 1 else torch.ones_like(group_mean)
        adv = adv / (std + eps)
    return adv


def answer_entropy_bits(answer_ids: Tensor, eps: float = 1e-8) -> Tensor:
    """Base-2 entropy of each group's extracted-answer distribution, ``[P]``: -sum_a p_a log2(p_a + 1e-8).

    p_a = share of the group's completions with answer id a (COPO's ``entropy_from_list``, eps as there).
    """
    out = []
    for row in answer_ids:
        counts = torch.unique(row, return_counts=True)[1].double()
        probs = counts / counts.sum()
        out.append(-(probs * torch.log2(probs + eps)).sum())
    return torch.stack(out).to(torch.float32).to(answer_ids.device)


@register("copo")
def copo(
    rewards: Tensor,
    *,
    answer_ids: Tensor | None = None,
    k: float = 20.0,
    b: float = 0.5,
    blend: str = "soft_with_zero",
    reward_coef: bool = False,
    eps: float = EPS,
) -> Tensor:
    """COPO: the group (local) advantage blended with a batch-level (global) one by answer entropy.

    H_g = base-2 entropy of group g's extracted answers (``answer_ids``: equal ids = equal answers),
    A_local = GRPO advantage, R_g = group mean reward (x (1 - lambda H_g), lambda = (1 - 1/G) / log2 G, if
    ``reward_coef``), A_global = (R_g - mean_g R) / (std_g R + eps) (unbiased std over the batch's groups,
    the same for every completion of the group), w = sigmoid(k (H_g - b)), with ``blend="soft_with_zero"``
    w_i = w [r_i != 0] (a completion with reward 0 gets the global term only) and ``blend="only_soft"``
    w_i = w.  Advantage: A_i = w_i A_local,i + (1 - w_i) A_global,g.

    Source: Han et al., "COPO: Consistency-Aware Policy Optimization" (2025, arXiv 2508.04138); code
    github.com/hijih/copo-code ``verl/trainer/ppo/core_algos.py`` (commit f66883f):
    ``compute_score_global`` / ``compute_grpo_outcome_advantage_with_global`` (H, R, A_global) and
    ``compute_policy_loss_with_global`` (w, the ``global_flg`` modes ``soft-with-zero`` / ``only-soft``).
    Loss level vs advantage level: the code blends two PPO losses, L = (1-w) f(A_global, rho) + w f(A_local,
    rho), with f the clipped (and dual-clipped) surrogate.  Wherever no clip is active, i.e. rho in
    [1 - eps_low, 1 + eps_high] (and rho < dual_clip), f(A, rho) = -A rho for both signs of A, so
    L = -rho (w A_local + (1-w) A_global) = f(A_i, rho) in value and gradient.  The trainer's first epoch has
    rho = 1 exactly (old log-probs are the same forward), so with ``inner_epochs = 1`` this estimator with
    ``ppo_clip`` (or ``cispo``, linear in A) is exactly the code's loss.  With ``inner_epochs > 1`` they can
    differ on clipped tokens of completions whose local and global advantages have opposite signs.
    Defaults: k = 20, b = 0.5 as the issue states (the function default in the code is k = 1, b = 0.5;
    ``run_copo.sh`` uses k = 5, b = 1, soft-with-zero, no reward_coef; ``run_wo_onlyZero.sh`` k = 20,
    b = 1.5, only-soft).  Differences: a single prompt gets A_global = 0 (the code's std of one value is
    NaN); the code's extracted answer is a string (a missing answer falls back to the text's tail), ours
    the trainer's ids (a missing answer has its own id).
    """
    if answer_ids is None:
        raise ParamError("estimator 'copo' needs context 'answer_ids' (equal ids = equal extracted answers)")
    if blend not in ("soft_with_zero", "only_soft"):
        raise ParamError(f"blend={blend!r} is not allowed; allowed: soft_with_zero, only_soft")
    local = grpo_advantage(rewards, eps=eps)
    h = answer_entropy_bits(answer_ids).to(rewards.device)
    r_group = rewards.mean(dim=1)
    g = rewards.shape[1]
    if reward_coef and g > 1:
        r_group = r_group * (1.0 - (1.0 - 1.0 / g) / math.log2(g) * h)
    if r_group.numel() > 1:
        glob = (r_group - r_group.mean()) / (r_group.std(correction=1) + eps)
    else:
        glob = torch.zeros_like(r_group)
    w = torch.sigmoid(k * (h - b)).unsqueeze(1).expand_as(rewards)
    if blend == "soft_with_zero":
        w = w * (rewards != 0).to(rewards.dtype)
    return w * local + (1.0 - w) * glob.unsqueeze(1)
