"""Classic REINFORCE-family estimators: no baseline, batch baseline, leave-one-out, batch whitening."""

from __future__ import annotations

import torch
from torch import Tensor

from rlbook.core.errors import ParamError

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


@register("reinforce_pp_kl")
def reinforce_pp_kl(rewards: Tensor, *, lengths: Tensor, token_log_ratio: Tensor, kl_coef: float = 1e-4,
                    eps: float = 1e-8) -> Tensor:
    """REINFORCE++ with its KL penalty in the reward: token-level returns, whitened over the batch's tokens.

    Per completion i with L_i tokens and per-token k1 = log pi_old(y_t) - log pi_ref(y_t) (``token_log_ratio``,
    the policy that sampled against the reference): the reward is r_i at the last token minus kl_coef * k1_t
    at every token, the return with gamma = 1 is R_i,t = r_i - kl_coef * sum_{t' >= t} k1_t', and the advantage
    is R whitened over every completion token of the batch (N tokens: mean over tokens, variance with Bessel
    over tokens, (R - mean) / sqrt(var + 1e-8)); 0 beyond L_i.  Example: rewards [1, 0], lengths [2, 1],
    k1 [[0.5, 0.5], [1.0]] and kl_coef 0.1 give returns [[0.9, 0.95], [-0.1]] (mean 0.5833, var 0.3508) and
    A = [[0.5346, 0.6190], [-1.1537]].
    Source: Hu et al., "REINFORCE++" (2025, arXiv 2501.03262), Eqs. 8-10 (A_t = r - beta sum_{i>=t} KL(i), KL
    = log pi_old / pi_SFT, then global normalisation); code: OpenRLHF ``openrlhf/models/utils.py::
    compute_reward`` (outcome reward at the EOS token plus -kl_coef * kl), ``experience_maker.py::
    get_cumulative_returns`` and the batch normalisation of ``compute_advantages_and_returns`` for
    ``advantage_estimator=reinforce``; kl_coef 1e-4 from its ``examples/scripts/
    train_reinforce_llama_ray_hybrid_engine.sh`` (``--init_kl_coef 1e-4``, k1 estimator by default).
    Differences: the variance uses Bessel's correction over tokens and eps inside the root (verl
    ``masked_whiten``, as :func:`reinforce_pp`); OpenRLHF uses the population variance clamped at 1e-8.
    Fewer than two tokens in the batch: A = 0.
    """
    if kl_coef < 0:
        raise ParamError(f"kl_coef={kl_coef!r} must be >= 0")
    T = token_log_ratio.shape[-1]
    mask = (torch.arange(T, device=rewards.device) < lengths.unsqueeze(-1)).to(rewards.dtype)
    kl = token_log_ratio.to(rewards.dtype) * mask
    tail = kl.flip(-1).cumsum(-1).flip(-1)  # sum over t' >= t of the completion's k1
    returns = (rewards.unsqueeze(-1) - kl_coef * tail) * mask
    n = mask.sum()
    if float(n) < 2.0:
        return torch.zeros_like(returns)
    mean = (returns * mask).sum() / n
    var = (((returns - mean) * mask) ** 2).sum() / (n - 1.0)
    return (returns - mean) * torch.rsqrt(var + eps) * mask


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
