"""Credit assignment inside a completion: estimators that return token-level advantages ``[P, G, T]``.

They read the step layout and the process signals of a batch (``rlbook.mechanisms.process``: ``step_index`` ``[P, G, T]``,
the step of each token, -1 on padding; ``step_rewards`` / ``step_mask`` ``[P, G, K]``; ``token_rewards``
``[P, G, T]``) or values estimated by extra rollouts and probes (``rlbook.mechanisms.credit``: ``token_values`` ``[P, G, T]``
with NaN where no value was estimated and ``prompt_values`` ``[P, G]``; ``step_values`` ``[P, G, K]``), plus
``token_mask`` (the completion mask), ``completion_ids`` and ``old_logp`` (the sampling log-probs).  Each
docstring names the code it follows, or says that no code exists and what was assumed.  Outside
``token_mask`` every advantage is 0.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from rlbook.core.errors import ParamError

from ._registry import ESTIMATORS, register
from ._util import EPS, grpo_advantage

# ------------------------------------------------------------------------------------------- helpers


def reverse_cumsum(x: Tensor) -> Tensor:
    """Return-to-go along the last dimension: ``out[..., t] = sum_{s >= t} x[..., s]`` (gamma = 1)."""
    return x.flip(-1).cumsum(-1).flip(-1)


def masked_whiten(x: Tensor, mask: Tensor, eps: float = 1e-8) -> Tensor:
    """verl's ``masked_whiten``: mean and Bessel-corrected variance over the masked entries of the whole batch,
    ``(x - mean) * rsqrt(var + eps)``; 0 outside the mask (and everywhere with fewer than two masked entries)."""
    m = mask.to(x.dtype)
    n = m.sum()
    if float(n) < 2.0:
        return torch.zeros_like(x)
    mean = (x * m).sum() / n
    var = (((x - mean) ** 2) * m).sum() / n * (n / (n - 1.0))
    return (x - mean) * torch.rsqrt(var + eps) * m


def last_token(token_mask: Tensor) -> Tensor:
    """``[P, G]`` long: the position of each completion's last token (its EOS, or the last one when truncated)."""
    return (token_mask.sum(-1).long() - 1).clamp(min=0)


def at_last_token(values: Tensor, token_mask: Tensor) -> Tensor:
    """``[P, G, T]``: ``values`` ``[P, G]`` on each completion's last token, 0 elsewhere."""
    out = torch.zeros_like(token_mask, dtype=values.dtype)
    out.scatter_(-1, last_token(token_mask).unsqueeze(-1), values.unsqueeze(-1))
    return out * token_mask.to(values.dtype)


def per_step_to_tokens(step_values: Tensor, step_index: Tensor) -> Tensor:
    """``[P, G, T]``: each token gets the value of its step (``step_values`` ``[P, G, K]``); 0 on padding."""
    idx = step_index.clamp(min=0)
    return step_values.gather(-1, idx) * (step_index >= 0).to(step_values.dtype)


def step_ends(step_index: Tensor, K: int) -> Tensor:
    """``[P, G, K]`` long: the last token of each step (-1 for a step that does not exist)."""
    T = step_index.shape[-1]
    pos = torch.arange(T, device=step_index.device).expand_as(step_index)
    out = torch.full((*step_index.shape[:2], K), -1, dtype=torch.long, device=step_index.device)
    for k in range(K):
        hit = torch.where(step_index == k, pos, torch.full_like(pos, -1))
        out[..., k] = hit.amax(-1)
    return out


def place_at(values: Tensor, positions: Tensor, T: int) -> Tensor:
    """``[P, G, T]``: ``values[..., k]`` added at token ``positions[..., k]`` (positions < 0 are skipped)."""
    out = torch.zeros(*values.shape[:2], T + 1, dtype=values.dtype, device=values.device)
    pos = torch.where(positions >= 0, positions, torch.full_like(positions, T))
    out.scatter_add_(-1, pos, torch.where(positions >= 0, values, torch.zeros_like(values)))
    return out[..., :T]


def _need_group(name: str, rewards: Tensor) -> int:
    G = rewards.shape[1]
    if G < 2:
        raise ParamError(f"{name} needs group_size >= 2 for its leave-one-out baseline; got {G}")
    return G


def leave_one_out_mean(x: Tensor) -> Tensor:
    """``[P, G]``: mean of the other G-1 values of the group."""
    G = x.shape[1]
    return (x.sum(1, keepdim=True) - x) / (G - 1)


# ----------------------------------------------------------------------------------------- PRIME


def prime_batch_norm(token_rewards: Tensor, token_mask: Tensor, eps: float = 1e-6) -> Tensor:
    """PRIME's ``prime_norm="batch_norm"``: divide every token reward of the batch by the largest absolute
    return-to-go of the process rewards in the batch (plus 1e-6), so that it becomes 1."""
    r = token_rewards * token_mask
    return r / (reverse_cumsum(r).abs().max() + eps)


def prime_rloo_parts(process: Tensor | None, outcome: Tensor, token_mask: Tensor) -> tuple[Tensor | None, Tensor]:
    """PRIME's leave-one-out, per reward source, in the code's form: with m_i the mean of sample i's values over
    its mask, every masked value r becomes ``r K/(K-1) - sum_j m_j / (K-1)``.  The outcome source is one value
    (the verifier's) on the last token, where this is plain RLOO; for the process source it equals the paper's
    ``r - mean_{j != i} m_j`` plus ``(r - m_i)/(K-1)``, a term that sums to zero over each completion."""
    K = outcome.shape[1]
    m = token_mask.to(outcome.dtype)
    out_tok = at_last_token(outcome * K / (K - 1) - outcome.sum(1, keepdim=True) / (K - 1), token_mask)
    if process is None:
        return None, out_tok
    means = (process * m).sum(-1) / m.sum(-1).clamp(min=1.0)  # [P, G]
    proc = (process * K / (K - 1) - means.sum(1, keepdim=True).unsqueeze(-1) / (K - 1)) * m
    return proc, out_tok


@register("prime_rloo")
def prime_rloo(rewards: Tensor, *, token_mask: Tensor, token_rewards: Tensor | None = None,
               process_coef: float = 5.0, outcome_coef: float = 5.0, norm: str = "batch_norm",
               whiten: bool = True) -> Tensor:
    """PRIME's advantage: leave-one-out per reward source (process rewards on every token, the verifier's
    outcome on the last token), summed with coefficients, returns-to-go (gamma = 1), then whitened over every
    completion token of the batch.

    Source: Cui et al., "Process Reinforcement through Implicit Rewards" (PRIME, 2025), Eq. 5-6; code: verl
    ``recipe/prime/prime_core_algos.py::compute_rloo_advantage_return`` (``masked_rloo`` per source times
    ``reward_dpo_coef`` = 5 / ``reward_gt_coef`` = 5, reverse cumsum, ``verl_F.masked_whiten``) and
    ``prime_dp_rm.py::prime_norm`` (``batch_norm``), as in PRIME-RL/PRIME ``core_algos.compute_rloo_returns``.
    The leave-one-out is the code's form (:func:`prime_rloo_parts`), not the paper's.  ``token_rewards`` are the
    process rewards of any source (the implicit PRM of ``rlbook.mechanisms.prm``, the oracle of ``rlbook.mechanisms.process``); the
    batch normalisation, which the code applies inside the reward model worker, is applied here so that every
    source gets it (``norm="none"`` turns it off).  ``process_coef = 0`` is PRIME's outcome-only RLOO (its
    matched baseline: same filter, whitening and loss).  The batch is the step's whole batch (the code's is
    each worker's shard).
    """
    _need_group("prime_rloo", rewards)
    if norm not in ("batch_norm", "none"):
        raise ParamError(f"prime_rloo: norm={norm!r} is not allowed; allowed: batch_norm, none")
    mask = token_mask.to(rewards.dtype)
    if process_coef != 0 and token_rewards is None:
        raise ParamError("prime_rloo with process_coef != 0 needs context 'token_rewards' (a process reward phase: "
                         "implicit_prm, oracle_steps, ...)")
    process = None
    if process_coef != 0:
        process = prime_batch_norm(token_rewards, mask) if norm == "batch_norm" else token_rewards * mask  # type: ignore[arg-type]
    proc, out = prime_rloo_parts(process, rewards, mask)
    combined = outcome_coef * out + (process_coef * proc if proc is not None else 0.0)
    returns = reverse_cumsum(combined * mask) * mask
    return masked_whiten(returns, mask) if whiten else returns


# ----------------------------------------------------------------------------------------- TEMPO


def _tempo_deltas(ids: list[list[int]], a: list[float]) -> list[list[float]]:
    """Per completion and token: V(prefix through the token) - V(prefix before it), V = mean of ``a`` over the
    completions that share the prefix (the group's prefix tree)."""
    deltas = [[0.0] * len(x) for x in ids]
    stack = [(list(range(len(ids))), 0, sum(a) / len(a) if a else 0.0)]
    while stack:
        members, depth, value = stack.pop()
        children: dict[int, list[int]] = {}
        for i in members:
            if depth < len(ids[i]):
                children.setdefault(ids[i][depth], []).append(i)
        for child in children.values():
            v = sum(a[i] for i in child) / len(child)
            for i in child:
                deltas[i][depth] = v - value
            stack.append((child, depth + 1, v))
    return deltas


@register("tempo")
def tempo(rewards: Tensor, *, completion_ids: Tensor, token_mask: Tensor, lam: float = 1.0,
          eps: float = EPS) -> Tensor:
    """TEMPO: the group's completions as a prefix tree; each token gets GRPO's advantage plus ``lam`` times the
    temporal difference of the prefix value across it, V(prefix + token) - V(prefix), where V(prefix) is the mean
    GRPO advantage of the completions that share the prefix.  Where the tree does not branch the difference is 0
    (GRPO's advantage alone); it telescopes to the completion's own advantage, so TEMPO adds one more copy of it,
    spread over the branching tokens.

    Source: Tran, Yao & Yu, "Exploiting Tree Structure for Credit Assignment in RL Training of LLMs" (TEMPO,
    2025, arXiv 2509.18314): P2T prefix values and branch-gated TD corrections.  No public code was found; the
    form is ASSUMED from the abstract: values on GRPO's normalised scale (so V(root) = 0), gamma = 1, no
    intermediate reward, A = a_i + lam * delta with lam = 1.  Tokens through EOS are tree nodes.
    """
    a = grpo_advantage(rewards, eps=eps)
    lengths = token_mask.sum(-1).long()
    out = torch.zeros_like(token_mask, dtype=rewards.dtype)
    for j in range(rewards.shape[0]):
        ids = [completion_ids[j, g, : int(lengths[j, g])].tolist() for g in range(rewards.shape[1])]
        deltas = _tempo_deltas(ids, a[j].tolist())
        for g, d in enumerate(deltas):
            if d:
                out[j, g, : len(d)] = a[j, g] + lam * torch.tensor(d, dtype=rewards.dtype)
    return out * token_mask.to(rewards.dtype)


# ------------------------------------------------------------------------------- PURE (min-form)


def pure_step_rewards(step_rewards: Tensor, step_mask: Tensor, temperature: float, weighting: str) -> Tensor:
    """PURE's transform of a completion's step scores s_k: ``min``: w = softmax_k(-s_k / temperature), r_k = w_k s_k
    (so sum_k r_k is a soft minimum); ``mean`` (the sum-form ablation): r_k = s_k / K."""
    m = step_mask.to(step_rewards.dtype)
    if weighting == "min":
        logits = (-step_rewards / temperature).masked_fill(~step_mask.bool(), -math.inf)
        w = torch.softmax(logits, dim=-1).nan_to_num(0.0)
    elif weighting == "mean":
        w = m / m.sum(-1, keepdim=True).clamp(min=1.0)
    else:
        raise ParamError(f"min_form: weighting={weighting!r} is not allowed; allowed: min, mean")
    return w * step_rewards * m


@register("min_form")
def min_form(rewards: Tensor, *, step_rewards: Tensor, step_mask: Tensor, step_index: Tensor, token_mask: Tensor,
             correct: Tensor, temperature: float = 0.1, weighting: str = "min", baseline: str = "token",
             verifiable_coef: float = 1.0, mask_step_ends: bool = True) -> Tensor:
    """PURE's min-form credit assignment: step scores turned into a soft minimum, a leave-one-out baseline,
    the verifiable reward at EOS, returns-to-go as advantages (no whitening), 0 on the reward positions.

    Source: Cheng et al., "Stop Summation: Min-Form Credit Assignment Is All Process Reward Model Needs for
    Reasoning" (PURE, 2025); code: CJReinforce/PURE (commit 41f9363) ``openrlhf/utils/utils.py::
    turn_process_reward_logits_to_reward`` (weights softmax(-s/T), T = 0.1; ``disable_weighted_reward``: 1/K),
    ``experience_maker.py::process_experiences`` (``reward_baseline="token"``: subtract
    b_i = sum_{j!=i} o_j / sum_{j!=i} len_j times the step's token count; ``"step"``: b_i = mean_{j!=i} o_j / K_j),
    verifiable reward (solved - 1) with its own leave-one-out times ``verifiable_reward_coef``, and
    ``make_experience_list`` (reverse cumsum, advantage = return, 0 at the step separators and EOS).
    Differences: the step scores come from any process reward of ``rlbook.mechanisms.process`` (the code's two-class PRM
    gives P(good) - P(bad) in [-1, 1]); a step's reward sits on its last token (our steps are lines, the
    code's end at "\\n\\n"); the code's KL-in-reward is not added (use the trainer's ``kl_coef``).
    Where the line credit comes from: the preset's ``line_validity`` phase, a hand-coded check of each line's
    arithmetic that agrees with the chain_sum oracle on most calc lines, not a learned PRM; its credit against the
    oracle is close to true by construction (``credit_assignment`` reports it as a check, not a claim).
    """
    _need_group("min_form", rewards)
    if baseline not in ("token", "step"):
        raise ParamError(f"min_form: baseline={baseline!r} is not allowed; allowed: token, step")
    K, T = step_rewards.shape[-1], step_index.shape[-1]
    mask = token_mask.to(rewards.dtype)
    r = pure_step_rewards(step_rewards.to(rewards.dtype), step_mask, temperature, weighting)
    o = r.sum(-1)  # [P, G]
    sm = step_mask.to(rewards.dtype)
    if baseline == "token":
        lengths = mask.sum(-1)
        b = (o.sum(1, keepdim=True) - o) / (lengths.sum(1, keepdim=True) - lengths).clamp(min=1.0)
        counts = torch.stack([(step_index == k).sum(-1) for k in range(K)], dim=-1).to(rewards.dtype)
        r = (r - b.unsqueeze(-1) * counts) * sm
    else:
        b = leave_one_out_mean(o / sm.sum(-1).clamp(min=1.0))
        r = (r - b.unsqueeze(-1)) * sm
    ends = step_ends(step_index, K)
    v = correct.to(rewards.dtype) - 1.0
    tok = place_at(r, ends, T) + at_last_token(verifiable_coef * (v - leave_one_out_mean(v)), token_mask)
    adv = reverse_cumsum(tok * mask) * mask
    if mask_step_ends:
        reward_pos = place_at(sm, ends, T) + at_last_token(torch.ones_like(rewards), token_mask)
        adv = adv * (reward_pos == 0).to(adv.dtype)
    return adv


# ------------------------------------------------------------------------------------- Clip / Delta


def clip_delta_transform(scores: Tensor, step_mask: Tensor, mode: str, eta: float) -> Tensor:
    """Gao et al.'s refinements of per-step PRM rewards p_k (k = 1..K of one completion): ``clip``:
    min(p_k - eta, 0), every step reward <= 0; ``delta``: p_k - p_{k+1} for k < K and p_K for the last, whose
    sum from step t on is p_t whatever follows; ``clip_delta``: clip, then delta; ``none``: p_k."""
    m = step_mask.to(scores.dtype)
    x = scores * m
    if mode in ("clip", "clip_delta"):
        x = torch.clamp(x - eta, max=0.0) * m
    if mode in ("delta", "clip_delta"):
        nxt = torch.cat([x[..., 1:], torch.zeros_like(x[..., :1])], dim=-1) * torch.cat(
            [m[..., 1:], torch.zeros_like(m[..., :1])], dim=-1)
        x = (x - nxt) * m
    elif mode not in ("none", "clip"):
        raise ParamError(f"clip_delta: mode={mode!r} is not allowed; allowed: none, clip, delta, clip_delta")
    return x


@register("clip_delta")
def clip_delta(rewards: Tensor, *, step_rewards: Tensor, step_mask: Tensor, step_index: Tensor,
               token_mask: Tensor, mode: str = "clip_delta", eta: float = 0.5, process_coef: float = 1.0) -> Tensor:
    """Clip / Delta: PRM step rewards refined so that the return of a completion is bounded whatever the number
    of steps (repeating steps cannot pay), plus the outcome reward at the last token; return-to-go minus the
    leave-one-out mean of the group's total returns.

    Source: Gao et al., "On Designing Effective RL Reward at Training Time for LLM Reasoning" (2024, arXiv
    2410.15115), Sec. 4 (Clip: r = min(p - eta, 0); Delta: r_k = p_k - p_{k+1}, last p_K).  No public code was
    found; the formulas are from the paper as recalled, not checked against code.  The paper trains with PPO
    and a critic (GAE); we have no critic, so the baseline is ASSUMED: the leave-one-out mean of the other
    completions' total return (as RLOO, PURE), no whitening.  ``eta``: the clip threshold (ASSUMED 0.5 for scores
    in [0, 1]).  ``mode="none"`` is the plain sum of PRM rewards (the hackable form the paper starts from).
    Where the line credit comes from: the preset's ``line_validity`` phase (1 / 0), a hand-coded check of each
    line's arithmetic that agrees with the chain_sum oracle on most calc lines, not the paper's learned PRM; its
    credit against the oracle is close to true by construction (``credit_assignment`` reports it as a check).
    """
    T = step_index.shape[-1]
    mask = token_mask.to(rewards.dtype)
    r = clip_delta_transform(step_rewards.to(rewards.dtype), step_mask, mode, eta)
    tok = process_coef * place_at(r, step_ends(step_index, r.shape[-1]), T) + at_last_token(rewards, token_mask)
    ret = reverse_cumsum(tok * mask) * mask
    if rewards.shape[1] < 2:
        return ret
    total = ret[..., 0]
    return (ret - leave_one_out_mean(total).unsqueeze(-1)) * mask


# -------------------------------------------------------------------------------- SPO-chain, PAV


def spo_chain_row(values: list[float | None], prompt_value: float | None, outcome: float) -> list[float]:
    """One completion's chain advantages: ``values[t]`` is the MC value after token t (None where no cutpoint), the
    last token's value is the outcome; each token gets the value at the end of its segment minus the value at the
    end of the segment before (0 for the first segment when the prompt's value was not estimated)."""
    n = len(values)
    vals = list(values)
    vals[n - 1] = outcome
    adv: list[float | None] = [None] * n
    base = prompt_value
    for t in range(n):
        if vals[t] is not None:
            adv[t] = vals[t] - base if base is not None else 0.0  # type: ignore[operator]
            base = vals[t]
    for t in range(n - 2, -1, -1):
        if adv[t] is None:
            adv[t] = adv[t + 1]
    return [float(x) for x in adv]  # type: ignore[arg-type]


def _finite(x: float) -> float | None:
    return None if math.isnan(x) else x


@register("spo_chain")
def spo_chain(rewards: Tensor, *, token_values: Tensor, prompt_values: Tensor, old_logp: Tensor,
              token_mask: Tensor, prob_threshold: float = 0.9, whiten: bool = True) -> Tensor:
    """SPO-chain: Monte Carlo values at cutpoints (``rlbook.mechanisms.credit.MCValues``); every token of a segment gets the
    value at the segment's end minus the value at its start; tokens the policy sampled with probability
    >= ``prob_threshold`` get advantage 0 (the probability mask); then whitening over the unmasked tokens.

    Source: Guo et al., "Segment Policy Optimization: Effective Segment-Level Credit Assignment in RL for Large
    Language Models" (2025); code: AIFrameResearch/SPO (commit b9fc6a2) ``math_episode_generator_with_mc_
    advantages.py::_compute_token_advantages`` (chain advantages, back-filled; 0 on the first segment when no
    value was estimated at the prompt; prob mask p > 0.9) and ``trainers/ppo_trainer.py`` + ``utils.py::
    masked_whiten`` (whitening over response & p < 0.9 tokens, eps 1e-8).  Differences: the probability is the
    sampling distribution's (``old_logp``); the code also drops the masked tokens from the loss's token count
    (ours keeps them with advantage 0, a constant rescaling of the loss per batch).
    """
    keep = token_mask.bool() & (old_logp.exp() < prob_threshold)
    out = chain_advantages(rewards, token_values, prompt_values, token_mask) * keep.to(rewards.dtype)
    return masked_whiten(out, keep) if whiten else out


def chain_advantages(rewards: Tensor, token_values: Tensor, prompt_values: Tensor, token_mask: Tensor) -> Tensor:
    """``[P, G, T]``: :func:`spo_chain_row` of every completion (0 past its end)."""
    lengths = token_mask.sum(-1).long()
    out = torch.zeros_like(token_mask, dtype=rewards.dtype)
    for j in range(rewards.shape[0]):
        for g in range(rewards.shape[1]):
            n = int(lengths[j, g])
            if n == 0:
                continue
            vals = [_finite(float(v)) for v in token_values[j, g, :n]]
            row = spo_chain_row(vals, _finite(float(prompt_values[j, g])), float(rewards[j, g]))
            out[j, g, :n] = torch.tensor(row, dtype=rewards.dtype)
    return out


@ESTIMATORS.register("spo_tree", phases=("spo_tree",), token_level=True, ragged=True)
def spo_tree(rewards: Tensor, *, token_values: Tensor, prompt_values: Tensor, old_logp: Tensor, token_mask: Tensor,
             tree_edges: Tensor, sample_mask: Tensor | None = None, prob_threshold: float = 0.9,
             whiten: bool = True) -> Tensor:
    """SPO-tree: every token of a segment of the tree (phase :class:`rlbook.mechanisms.spo_tree.SPOTree`) gets V(node) -
    V(parent) (the values of the tree, the root's in ``prompt_values``), on the edges a completion trains
    (``tree_edges``: the segments it generated, with a nonzero advantage); tokens the policy sampled with
    probability >= ``prob_threshold`` get 0; then whitening over the remaining tokens of the batch.  0 elsewhere
    (the phase also leaves the other tokens out of the loss).

    Source: AIFrameResearch/SPO (commit b9fc6a2) ``episode_generators/tree_episode_generator.py::
    extract_edges_from_tree`` (``adv_method="rloo"``: ``child["reward"] - parent["reward"]``, edges with advantage
    0 dropped) and ``trainers/ppo_trainer.py`` (``masked_whiten`` over response tokens with p < 0.9, unbiased
    variance, eps 1e-8; the loss over the same tokens).  The tree and its differences: :mod:`rlbook.mechanisms.spo_tree`.
    Difference: the probability is the sampling distribution's (``old_logp``), and the tokens with p >= 0.9 stay
    in the loss's token count (advantage 0; the code drops them), as in :func:`spo_chain`.  ``sample_mask``: the
    tree's groups are uneven; no statistic is per group (the empty slots have no token).
    """
    keep = token_mask.bool() & tree_edges.bool() & (old_logp.exp() < prob_threshold)
    out = chain_advantages(rewards, token_values, prompt_values, token_mask) * keep.to(rewards.dtype)
    return masked_whiten(out, keep) if whiten else out


@register("rewarding_progress")
def rewarding_progress(rewards: Tensor, *, token_values: Tensor, prompt_values: Tensor, step_index: Tensor,
                       token_mask: Tensor, prover_k: int = 4, alpha: float = 1.0) -> Tensor:
    """Rewarding Progress: a step's process reward is its progress, the change in the probability that a prover
    policy mu finishes correctly, before vs after the step; each token of step h gets the group-centred outcome
    plus ``alpha`` times the progress of its step.

    Source: Setlur et al., "Rewarding Progress: Scaling Automated Process Verifiers for LLM Reasoning" (2024):
    effective reward Q^pi + alpha A^mu with a Best-of-K prover, Q^mu(s) = 1 - (1 - Q^pi(s))^K.  No public code was
    found.  Q^pi at the prompt and at every step end but the last is a Monte Carlo estimate with the current
    policy (``rlbook.mechanisms.credit.MCValues`` with ``cutpoints="step_ends"``: an exact-in-expectation "MC-PAV" instead
    of the paper's learned verifier); the last step's value is the completion's own outcome.  ASSUMED: the
    outcome term is R_i - mean of the group (no std), alpha = 1, K = 4 (``prover_k = 1``: the prover is the policy).
    """
    K = int(step_index.max().item()) + 1 if bool((step_index >= 0).any()) else 1
    ends = step_ends(step_index, K)
    out = torch.zeros_like(token_mask, dtype=rewards.dtype)
    centred = rewards - rewards.mean(1, keepdim=True)
    for j in range(rewards.shape[0]):
        for g in range(rewards.shape[1]):
            n_steps = int((ends[j, g] >= 0).sum())
            if n_steps == 0:
                continue
            q = [float(prompt_values[j, g])] + [float(token_values[j, g, int(ends[j, g, h])]) for h in range(n_steps - 1)]
            if any(math.isnan(x) for x in q):
                raise ParamError("rewarding_progress needs MC values at the prompt and every step end but the last "
                                 "(phase mc_values with cutpoints=step_ends)")
            mu = [1.0 - (1.0 - x) ** prover_k for x in q] + [float(rewards[j, g])]
            progress = torch.tensor([mu[h + 1] - mu[h] for h in range(n_steps)], dtype=rewards.dtype)
            idx = step_index[j, g]
            sel = idx >= 0
            out[j, g, sel] = centred[j, g] + alpha * progress[idx[sel]]
    return out * token_mask.to(rewards.dtype)


# -------------------------------------------------------------------------------------------- SPAE


def spae_step_weights(potential: Tensor, step_mask: Tensor, a: Tensor, tau_sat: float, rho: float) -> Tensor:
    """``[P, G, K]``: 1, or ``rho`` on the steps after the first one whose potential exceeds ``tau_sat`` when the
    completion's outcome advantage is positive (the saturation penalty)."""
    over = (potential > tau_sat) & step_mask.bool()
    seen = over.long().cumsum(-1)
    after = (seen - over.long()) > 0  # a saturated step came before this one
    w = torch.ones_like(potential)
    return torch.where(after & (a.unsqueeze(-1) > 0), torch.full_like(w, rho), w)


@register("spae")
def spae(rewards: Tensor, *, step_values: Tensor, step_mask: Tensor, step_index: Tensor, token_mask: Tensor,
         tau_sat: float = 0.9, rho: float = 0.5, xi: float = 1.0, eps: float = EPS) -> Tensor:
    """SPAE: GRPO's outcome advantage, down-weighted by ``rho`` after the step potential saturates (correct
    completions only), plus ``xi`` times the potential gain of the step (0 for the first step).

    Source: Wu et al., "Step Potential Advantage Estimation: Harnessing Intermediate Confidence and Correctness
    for Efficient Mathematical Reasoning" (SPAE, 2026); code: cii030/SPAE-RL (commit ed529f8) releases only the
    probe (``inference/probe_mechanism_example.py``: the potential, ``rlbook.mechanisms.credit.StepPotential``) and its
    saturation threshold 0.9; the training code is not released, so this advantage is ASSUMED from the abstract
    and README ("potential difference shaping", "potential saturation penalty"): A = w_k a_i + xi dPhi_k with
    w_k = rho after saturation when a_i > 0, rho = 0.5, xi = 1.
    """
    a = grpo_advantage(rewards, eps=eps)
    phi = step_values.to(rewards.dtype) * step_mask.to(rewards.dtype)
    dphi = torch.cat([torch.zeros_like(phi[..., :1]), phi[..., 1:] - phi[..., :-1]], dim=-1) * step_mask.to(phi.dtype)
    w = spae_step_weights(phi, step_mask, a, tau_sat, rho)
    per_step = w * a.unsqueeze(-1) + xi * dphi
    return per_step_to_tokens(per_step, step_index) * token_mask.to(rewards.dtype)


# -------------------------------------------------------------------------------------------- CAPO


@register("capo")
def capo(rewards: Tensor, *, step_rewards: Tensor, step_index: Tensor, token_mask: Tensor, w_whole: float = 1.0,
         w_process: float = 0.5, eps: float = EPS) -> Tensor:
    """CAPO: the outcome advantage (GRPO on the verifier reward, times ``w_whole``) minus ``w_process`` on the tokens
    of the steps a generative critic flags as wrong (``step_rewards`` = minus the vote, in [-1, 0]:
    ``rlbook.mechanisms.credit.CAPOCritic``).

    Source: Xie et al., "CAPO: Towards Enhancing LLM Reasoning through Verifiable Generative Credit Assignment"
    (2025, arXiv 2508.02298): token reward R_t = r_v W_whole - 1[t in an erroneous step] W_process.  Official code
    (andyclsr/CAPO) is not released.  ASSUMED: W_whole = 1, W_process = 0.5, and the advantage group-normalises
    the outcome part and adds the process penalty per token unnormalised.
    """
    a = grpo_advantage(rewards, eps=eps)
    pen = per_step_to_tokens(step_rewards.to(rewards.dtype), step_index)
    return (w_whole * a.unsqueeze(-1) + w_process * pen) * token_mask.to(rewards.dtype)
