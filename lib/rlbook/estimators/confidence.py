"""Estimators that reshape the group advantage with the policy's own signals (confidence, metric, consistency)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from rlbook.config import ParamError

from ._registry import register
from ._util import EPS, grpo_advantage, masked_group_stats, whiten


@register("ace")
def ace(rewards: Tensor, *, seq_log_ratio: Tensor, alpha: float = 1.0, eps: float = EPS) -> Tensor:
    """Asymmetric confidence-aware error penalty: negative advantages scaled up for overconfident errors.

    A = GRPO advantage; where A < 0: A <- A * (1 + alpha * softplus(c)), c = log pi_theta(y|x) -
    log pi_ref(y|x) (``seq_log_ratio``).  Positive advantages are unchanged.
    Source: Xu et al., "Overconfident Errors Need Stronger Correction: Asymmetric Confidence Penalties
    for Reinforcement Learning" (2026), arXiv 2602.21420: c_i as in the abstract; public summaries of
    the paper state the negative advantage is scaled by a softplus of c (softplus preferred over ReLU).
    No public code was found: the form 1 + alpha * softplus(c) and alpha = 1 are our assumption.
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
    inter_weight: float = 0.5,
    scale: bool = True,
    eps: float = EPS,
) -> Tensor:
    """Conditional advantage: split each group at the median of a metric, compare across and within halves.

    With S(i) the half of sample i (metric above the group median, or not) and O(i) the other half:
    A_inter = r_i - mean(r over O(i)) (does this trend beat the other?), A_intra = r_i - mean(r over
    S(i)) (is it the better response of its own half?), A = inter_weight A_inter + (1 - inter_weight)
    A_intra, divided by the group std (+ eps) when ``scale``.  No direction of the metric is presumed:
    whichever half has the higher mean reward is pushed up.  If a half is empty both terms fall back
    to r - group mean.
    Source: "Conditional Advantage Estimation for Reinforcement Learning in Large Reasoning Models"
    (CANON, 2025), abstract.  No public code was found: the two-term form and the median split are
    our reading of "regroups the sampled responses into two groups based on the higher or lower value
    of a target metric, measures which metric trend contributes to better performance through
    inter-group comparison, and identifies the better response within the same group".  The paper's
    main metric is token entropy, which the trainer does not pass: ``metric`` is ``"length"`` or
    ``"log_ratio"`` (per-token log-ratio to the reference).
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
    high = m > m.median(dim=1, keepdim=True).values
    mean_h, _, n_h = masked_group_stats(rewards, high)
    mean_l, _, n_l = masked_group_stats(rewards, ~high)
    group_mean = rewards.mean(dim=1, keepdim=True)
    split = (n_h > 0) & (n_l > 0)
    same = torch.where(split, torch.where(high, mean_h, mean_l), group_mean)
    other = torch.where(split, torch.where(high, mean_l, mean_h), group_mean)
    adv = inter_weight * (rewards - other) + (1 - inter_weight) * (rewards - same)
    if scale:
        std = (
            rewards.std(dim=1, keepdim=True, correction=1)
            if rewards.shape[1] > 1
            else torch.ones_like(group_mean)
        )
        adv = adv / (std + eps)
    return adv


@register("copo")
def copo(
    rewards: Tensor,
    *,
    min_value: float = 0.0,
    max_value: float = 1.0,
    eps: float = EPS,
) -> Tensor:
    """Consistency-aware advantage: local GRPO blended by outcome entropy with a global, batch-level term.

    p = group mean reward mapped to [0, 1]; the global term gives every sample of a prompt the batch
    z-score of p (all-correct, consistent groups up, all-wrong groups down; over the batch's prompts);
    the blend weight is the normalised binary entropy h(p) = H(p) / ln 2 of the group's outcomes:
    A = h(p) A_GRPO + (1 - h(p)) A_global.  Mixed groups (h = 1 at p = 0.5) are pure GRPO; all-same
    groups (h = 0), whose GRPO advantage is 0, get the global signal.
    Source: Han et al., "COPO: Consistency-Aware Policy Optimization" (2025), arXiv 2508.04138,
    abstract: a structured global reward based on outcome consistency and an entropy-based soft
    blending of local and global optimisation.  The code (github.com/hijih/copo-code) is not in the
    store we could reach; the global reward (the group's consistency-weighted accuracy p, z-scored
    over the batch) and the weight h(p) are our assumptions.  The paper blends two losses; we blend
    advantages (equivalent for losses linear in the advantage).
    """
    if max_value <= min_value:
        raise ParamError(f"max_value={max_value!r} must be > min_value={min_value!r}")
    local = grpo_advantage(rewards, eps=eps)
    p = ((rewards.mean(dim=1, keepdim=True) - min_value) / (max_value - min_value)).clamp(0.0, 1.0)
    glob = whiten(p, eps=eps).expand_as(rewards)
    h = -(torch.xlogy(p, p) + torch.xlogy(1 - p, 1 - p)) / math.log(2.0)
    return h * local + (1 - h) * glob
