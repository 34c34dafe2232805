"""Classic REINFORCE-family estimators: no baseline, batch baseline, leave-one-out, batch whitening."""

from __future__ import annotations

from torch import Tensor

from ._registry import register
from ._util import EPS, whiten


@register("reinforce")
def reinforce(rewards: Tensor) -> Tensor:
    """A = r, no baseline.

    Source: Williams, "Simple Statistical Gradient-Following Algorithms for Connectionist
    Reinforcement Learning" (1992), the REINFORCE estimator (Eq. 4 with b = 0).  Same as the paper.
    """
    return rewards.clone()


@register("reinforce_baseline")
def reinforce_baseline(rewards: Tensor) -> Tensor:
    """A = r - mean of the whole batch (one scalar baseline for every sample).

    Source: Williams (1992), REINFORCE with a reinforcement baseline b (Eq. 4); ours uses the batch
    mean reward as b, the common choice in LLM work.
    """
    return rewards - rewards.mean()


@register("rloo")
def rloo(rewards: Tensor) -> Tensor:
    """A_i = r_i - mean of the other G-1 rewards of the same prompt (= G/(G-1) * (r_i - group mean)).

    Source: Ahmadian et al., "Back to Basics: Revisiting REINFORCE Style Optimization for Learning
    from Human Feedback in LLMs" (2024), RLOO estimator Eq. 6 (Kool et al. 2019).  A group of one has
    no other sample: A = r (no baseline).
    """
    g = rewards.shape[1]
    if g == 1:
        return rewards.clone()
    others = (rewards.sum(dim=1, keepdim=True) - rewards) / (g - 1)
    return rewards - others


@register("reinforce_pp")
def reinforce_pp(rewards: Tensor, *, eps: float = EPS) -> Tensor:
    """A = (r - batch mean) / (batch std + eps): global batch whitening, no group baseline.

    Source: Hu, "REINFORCE++: A Simple and Efficient Approach for Aligning Large Language Models"
    (2025), Sec. 3 "advantage normalization" over the global batch; code: verl
    ``compute_reinforce_plus_plus_outcome_advantage`` (whitening of outcome returns).  Ours works on
    outcome rewards only (the KL-in-reward term is the loss module's business).
    """
    return whiten(rewards, eps=eps)


@register("reinforce_pp_baseline")
def reinforce_pp_baseline(rewards: Tensor, *, eps: float = EPS) -> Tensor:
    """A = whiten_batch(r - group mean): subtract each prompt's mean, then whiten over the batch.

    Source: Hu, "REINFORCE++" (2025), the "REINFORCE++-baseline" variant; code: verl
    ``compute_reinforce_plus_plus_baseline_outcome_advantage`` (group-mean subtraction followed by
    ``masked_whiten`` over the batch).  Same as the code for outcome rewards.
    """
    centered = rewards - rewards.mean(dim=1, keepdim=True)
    return whiten(centered, eps=eps)
