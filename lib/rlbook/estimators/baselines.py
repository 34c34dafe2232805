"""Classic REINFORCE-family estimators: no baseline, batch baseline, leave-one-out, batch whitening."""

from __future__ import annotations

from torch import Tensor

from ._registry import register
from ._util import token_weighted_whiten


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
    from Human Feedback in LLMs" (2024), RLOO estimator Eq. 6 (Kool et al. 2019); code: verl
    ``verl/trainer/ppo/core_algos.py::compute_rloo_outcome_advantage`` (r * G/(G-1) - mean * G/(G-1);
    a group of one keeps A = r).  Same as the code for outcome rewards.
    """
    g = rewards.shape[1]
    if g == 1:
        return rewards.clone()
    others = (rewards.sum(dim=1, keepdim=True) - rewards) / (g - 1)
    return rewards - others


@register("reinforce_pp")
def reinforce_pp(rewards: Tensor, *, lengths: Tensor, eps: float = 1e-8) -> Tensor:
    """A = whitening of the rewards over every completion token of the batch (no group baseline).

    With N = sum of the completion lengths L_i: mean = sum_i L_i r_i / N, var = sum_i L_i (r_i - mean)^2
    / (N - 1), A_i = (r_i - mean) / sqrt(var + 1e-8).  Long completions weigh more in the mean and std
    because each of their tokens is one sample of the whitening.  Example: rewards [1,1,0,0,0,0,0,0] with
    correct answers of 10 tokens and wrong ones of 30 give A = +2.99 / -0.33 (a per-sequence whitening
    would give +1.62 / -0.54).
    Source: Hu, "REINFORCE++: A Simple and Efficient Approach for Aligning Large Language Models"
    (2025), Sec. 3 global advantage normalisation; code: verl ``verl/trainer/ppo/core_algos.py::
    compute_reinforce_plus_plus_outcome_advantage`` (returns with gamma, then ``verl_F.masked_whiten``
    over the response mask of the whole batch).  Same as the code for an outcome reward with gamma = 1
    (every token's return is then r_i).  The KL-in-reward term of the paper is not included (the
    reference KL is the trainer's ``kl_coef`` loss term).  Fewer than two tokens in the batch: A = 0
    (verl raises).
    """
    return token_weighted_whiten(rewards, lengths, eps=eps)


@register("reinforce_pp_baseline")
def reinforce_pp_baseline(rewards: Tensor, *, lengths: Tensor, eps: float = 1e-8) -> Tensor:
    """A = token-weighted whitening of (r - group mean): the group mean first, then REINFORCE++'s whitening.

    The group mean of a group of one is 0 (verl's convention), so its centred reward is r.  The
    whitening is :func:`reinforce_pp`'s: over all completion tokens of the batch, each sample weighted by
    its length.
    Source: Hu, "REINFORCE++" (2025), the "REINFORCE++-baseline" variant; code: verl
    ``verl/trainer/ppo/core_algos.py::compute_reinforce_plus_plus_baseline_outcome_advantage`` (group-mean
    subtraction, tiled over the response tokens, then ``verl_F.masked_whiten``).  Same as the code for
    outcome rewards.
    """
    if rewards.shape[1] == 1:
        centered = rewards.clone()
    else:
        centered = rewards - rewards.mean(dim=1, keepdim=True)
    return token_weighted_whiten(centered, lengths, eps=eps)
