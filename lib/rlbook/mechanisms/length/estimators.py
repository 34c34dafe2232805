"""Token-level advantage estimators of the length family (registered in :data:`rlbook.mechanisms.estimators.ESTIMATORS`).

Each is registered with the trait ``phases``: the phases that provide its context, one of which the config
must list (checked by :func:`rlbook.mechanisms.components.check`).  Each returns ``[P, G, T]`` advantages with T = the longest completion of the batch, zero past each
completion's end.  Their extra context comes from the length phases (:mod:`rlbook.mechanisms.length.phases`):
``redundant_span`` (DECS), ``budget_scores`` / ``budget_ends`` (AnytimeReasoner's BRPO), ``token_rewards``
(VSRM).
"""

from __future__ import annotations

import torch
from torch import Tensor

from rlbook.core.errors import ParamError
from rlbook.mechanisms.estimators import ESTIMATORS


def _positions(lengths: Tensor) -> tuple[Tensor, Tensor]:
    """Token positions ``[T]`` and the valid-token mask ``[P, G, T]`` (t < L)."""
    T = max(1, int(lengths.max()))
    t = torch.arange(T, dtype=torch.float32)
    return t, t.view(1, 1, T) < lengths.unsqueeze(-1).float()


@ESTIMATORS.register("decs", phases=("answer_marks",), token_level=True)
def decs(rewards: Tensor, *, correct: Tensor, lengths: Tensor, redundant_span: Tensor, max_new_tokens: int,
         beta: float = 0.1, eps: float = 1e-6) -> Tensor:
    """DECS's decoupled token rewards with a per-position group baseline.

    R[i, t] = s_i (1 + beta) at every position (also past the end of i, as the code repeats the score over
    the padded width); for a correct i and t in its redundant span (tokens after the chunk holding the first
    correct answer, ``redundant_span[i] = (start, end)``): R[i, t] = s_i + beta (1 - L_i / W).  s_i = 1 for a
    correct answer, else 0; W = ``max_new_tokens`` (the code's padded response width).  Per group and position:
    A[i, t] = (R[i, t] - mean_i R[., t]) / (std_i R[., t] + eps) (unbiased std; a group of one: mean 0, std 1),
    zero at t >= L_i.  A redundant token thus earns beta * L_i / W less than its answer's other tokens.
    Source: "Overthinking Reduction with Decoupled Rewards and Curriculum Data Scheduling" (DECS, 2025); code
    github.com/pixas/DECS (commit 0d12e53) ``src_valid/valid_ray_trainer.py::
    compute_grpo_proc_length_advantage_return`` (reward_func ``constant``, beta = ``length_reward_beta`` 0.1).
    Same as the code given the span; the span comes from a rule judge (:class:`AnswerMarks`), not the code's
    LLM judge.  ``rewards`` is not used (the outcome is ``correct``).
    """
    if beta < 0:
        raise ParamError(f"decs: beta={beta!r} must be >= 0")
    t, valid = _positions(lengths)
    s = correct.float().unsqueeze(-1)  # [P, G, 1]
    R = (s * (1.0 + beta)).expand(*correct.shape, t.numel()).clone()
    span = redundant_span.long()
    in_span = (t.view(1, 1, -1) >= span[..., :1]) & (t.view(1, 1, -1) < span[..., 1:]) & correct.bool().unsqueeze(-1)
    pen = s + beta * (1.0 - lengths.float().unsqueeze(-1) / max_new_tokens)
    R = torch.where(in_span, pen.expand_as(R), R)
    if R.shape[1] == 1:
        mean, std = torch.zeros_like(R), torch.ones_like(R)
    else:
        mean, std = R.mean(dim=1, keepdim=True), R.std(dim=1, keepdim=True)
    return torch.where(valid, (R - mean) / (std + eps), torch.zeros_like(R))


def budget_prior(kind: str, ends: Tensor) -> Tensor:
    """AnytimeReasoner's prior over budgets: ``uniform`` 1/S, ``linear`` p_s proportional to b_s, ``base`` all
    mass on the last budget (plain GRPO at the full budget); ``brpo.py::get_budget_probs``."""
    S = ends.numel()
    if kind == "uniform":
        p = torch.ones(S)
    elif kind == "linear":
        p = ends.float()
    elif kind == "base":
        p = torch.zeros(S)
        p[-1] = 1.0
    else:
        raise ParamError(f"brpo: prior={kind!r} is not allowed; allowed: uniform, linear, base")
    return p / p.sum()


def brpo_segment_advantages(scores: Tensor, probs: Tensor, variance_reduction: str = "brpo") -> Tensor:
    """AnytimeReasoner's thinking advantages per budget segment, ``[P, G, S]`` from scores ``[P, G, S]``.

    R_{g,s} = sum_{s' >= s} p_s' r_{g,s'}; V2_s = mean_g R_{g,s}; V1_{g,s} = [sum_{j<s} 2^j r_{g,j} / sum_{j<s}
    2^j] * sum_{s' >= s} p_s' (0 at s = 0); baseline ``brpo`` = (s V1 + (S - s) V2) / S (s 0-based),
    ``v1only`` V1, ``v2only`` V2, ``none`` 0; A = R - baseline (no std).  Code: ``brpo.py::compute_cot_advantage``.
    """
    P, G, S = scores.shape
    tail = torch.flip(torch.cumsum(torch.flip(probs, [0]), 0), [0])  # sum_{s' >= s} p_s'
    R = torch.flip(torch.cumsum(torch.flip(scores * probs, [-1]), -1), [-1])
    v2 = R.mean(dim=1, keepdim=True).expand_as(R) if G > 1 else torch.zeros_like(R)
    w = 2.0 ** torch.arange(S, dtype=torch.float32)
    prev = torch.cumsum(scores * w, -1) / torch.cumsum(w, 0)  # discounted mean of budgets 0..s
    v1 = torch.zeros_like(R)
    v1[..., 1:] = prev[..., :-1] * tail[1:]
    s = torch.arange(S, dtype=torch.float32)
    base = {"brpo": (s * v1 + (S - s) * v2) / S, "v1only": v1, "v2only": v2, "none": torch.zeros_like(R)}
    if variance_reduction not in base:
        raise ParamError(f"brpo: variance_reduction={variance_reduction!r}; allowed: {', '.join(base)}")
    return R - base[variance_reduction]


@ESTIMATORS.register("brpo", phases=("budget_answers",), token_level=True)
def brpo(rewards: Tensor, *, lengths: Tensor, budget_scores: Tensor, budget_ends: Tensor, prior: str = "uniform",
         variance_reduction: str = "brpo") -> Tensor:
    """Budget Relative Policy Optimization: each segment of the thinking gets the advantage of the budgets it
    can still influence (:func:`brpo_segment_advantages`).

    Tokens in [b_{s-1}, b_s) (b_0 = 0) of completion g get A_{g,s}; ``budget_scores[p, g, s]`` is the score of
    the answer given when g is cut at budget b_s (:class:`BudgetAnswers`).  Source: Qi et al., "Optimizing
    Anytime Reasoning via Budget Relative Policy Optimization" (2025); code github.com/sail-sg/AnytimeReasoner
    (commit 7e3f5bb) ``verl/verl/trainer/ppo/brpo.py::compute_cot_advantage`` and
    ``compute_token_level_advantage``.  Differences: the summaries' own tokens are not trained (the code also
    trains them with ``compute_summary_advantage``); ``rewards`` is not used (the last budget's score is the
    outcome).
    """
    probs = budget_prior(prior, budget_ends)
    seg_adv = brpo_segment_advantages(budget_scores.float(), probs, variance_reduction)  # [P, G, S]
    t, valid = _positions(lengths)
    seg = torch.bucketize(t, budget_ends.float(), right=True).clamp(max=budget_ends.numel() - 1)  # [T]
    adv = seg_adv[..., seg]  # [P, G, T]
    return torch.where(valid, adv, torch.zeros_like(adv))


@ESTIMATORS.register("vsrm", phases=("step_answers",), token_level=True)
def vsrm(rewards: Tensor, *, lengths: Tensor, token_rewards: Tensor, eps: float = 1e-8) -> Tensor:
    """REINFORCE++ on VSRM's stepwise rewards: token return-to-go, whitened over every token of the batch.

    Token rewards: each step's reward on its last token (:class:`StepAnswers`), plus the outcome reward
    ``rewards`` on the completion's last token; return G[i, t] = sum_{t' >= t} r[i, t'] (gamma = 1);
    A = (G - mean) / sqrt(var + eps) over all valid tokens (verl ``masked_whiten``, Bessel over tokens).
    Source: Yue et al., "Promoting Efficient Reasoning with Verifiable Stepwise Reward" (2025), trained with
    PPO and REINFORCE++ (the latter here); code: not public ("upon acceptance").
    """
    t, valid = _positions(lengths)
    T = t.numel()
    r = torch.zeros(*rewards.shape, T)
    r[..., : min(T, token_rewards.shape[-1])] = token_rewards[..., :T].float()
    last = (lengths.long() - 1).clamp(min=0).unsqueeze(-1)
    r.scatter_add_(-1, last, rewards.float().unsqueeze(-1))
    ret = torch.flip(torch.cumsum(torch.flip(r, [-1]), -1), [-1])
    ret = torch.where(valid, ret, torch.zeros_like(ret))
    w = valid.float()
    n = w.sum()
    if float(n) < 2:
        return torch.zeros_like(ret)
    mean = (w * ret).sum() / n
    var = (w * (ret - mean) ** 2).sum() / n * (n / (n - 1))
    return torch.where(valid, (ret - mean) * torch.rsqrt(var + eps), torch.zeros_like(ret))


__all__ = ["brpo", "brpo_segment_advantages", "budget_prior", "decs", "vsrm"]
