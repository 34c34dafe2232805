"""Advantage estimators: a registry of pure tensor functions ``fn(rewards[P, G], *, context, hyper) -> [P, G]``.

>>> from rlbook import estimators
>>> estimators.available()[:3]
['a_grae', 'ace', 'arm']
>>> adv = estimators.compute("grpo", rewards, context=estimators.example_context(P, G))  # doctest: +SKIP

Families: ``baselines`` (REINFORCE, RLOO, REINFORCE++), ``group`` (GRPO and its variants, BNPO, NGRPO,
A-GRAE, Stratified), ``multi`` (DVAO, conditional/HDPO), ``confidence`` (ACE, ARM, CANON, COPO),
``stateful`` (single-stream SPO tracker), ``process`` (token-level credit assignment: PRIME, TEMPO, PURE,
Clip/Delta, SPO-chain, Rewarding Progress, SPAE, CAPO).  See docs/ARCHITECTURE.md for the contract.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from . import baselines, confidence, group, multi, process, stateful  # noqa: F401  (registration side effects)
from ._registry import (
    CONTEXT_NAMES,
    ESTIMATORS,
    TOKEN_CONTEXT,
    available,
    compute,
    get,
    hyper_parameters,
    make_state,
    register,
    token_level,
)
from .stateful import ValueTracker

__all__ = [
    "CONTEXT_NAMES",
    "ESTIMATORS",
    "TOKEN_CONTEXT",
    "ValueTracker",
    "available",
    "compute",
    "example_context",
    "get",
    "hyper_parameters",
    "make_state",
    "register",
    "token_level",
]


def example_context(P: int, G: int, K: int = 2, seed: int = 0, max_new_tokens: int = 32) -> dict[str, Any]:
    """A full, realistic context for ``P`` prompts x ``G`` samples (for tests and notebooks).

    ``reward_parts[..., 0]`` is a binary correctness score, the other K-1 parts are continuous in
    [0, 1]; ``correct`` is part 0 >= 1.  The matching scalar rewards are
    ``(ctx["reward_parts"] * ctx["part_weights"]).sum(-1)``.  ``state`` is not included: add
    ``make_state(name)`` for a stateful estimator.
    """
    if K < 1:
        raise ValueError(f"K={K} must be >= 1")
    gen = torch.Generator().manual_seed(seed)
    acc = (torch.rand(P, 1, generator=gen) * torch.ones(P, G)).clamp(0.05, 0.95)
    binary = (torch.rand(P, G, generator=gen) < acc).float()
    cont = torch.rand(P, G, K - 1, generator=gen)
    parts = torch.cat([binary.unsqueeze(-1), cont], dim=-1)
    weights = torch.tensor([1.0] + [0.5] * (K - 1))
    lengths = torch.randint(1, max_new_tokens + 1, (P, G), generator=gen).float()
    beyond = torch.arange(max_new_tokens) >= lengths.unsqueeze(-1)
    return {
        "lengths": lengths,
        "reward_parts": parts,
        "part_weights": weights,
        "correct": binary >= 1.0,
        # correct samples share answer 0; wrong ones give one of three wrong answers
        "answer_ids": torch.where(binary >= 1.0, torch.zeros(P, G, dtype=torch.long),
                                  torch.randint(1, 4, (P, G), generator=gen)),
        "prompt_ids": torch.randperm(10 * P + 10, generator=gen)[:P],
        "seq_log_ratio": torch.randn(P, G, generator=gen) * 0.5,
        "token_log_ratio": (torch.randn(P, G, max_new_tokens, generator=gen) * 0.1).masked_fill(beyond, 0.0),
        "spo_drift": torch.rand(P, generator=gen) * 0.1,  # per-token policy drift on each prompt's last response
        "max_new_tokens": max_new_tokens,
        "step": 3,
        "total_steps": 10,
        **example_token_context(lengths, max_new_tokens, gen),
        **example_length_context(binary >= 1.0, lengths, max_new_tokens, gen),
        **example_curricula_context(lengths, max_new_tokens, gen),
        **example_exploration_context(lengths, max_new_tokens),
    }


def example_exploration_context(lengths: torch.Tensor, T: int) -> dict[str, Any]:
    """Lp-Reg's phase context (``lp_proxy``): log pi_proxy - log pi per token, every fifth token dropped by the
    min-p filter (-inf), the others 0, 0.1, 0.2 or 0.3 in turn (0 beyond each length); no random draws."""
    pos = torch.arange(T).expand(*lengths.shape, T)
    d = torch.where(pos % 5 == 4, torch.full(pos.shape, -math.inf), 0.1 * (pos % 4).float())
    return {"lp_proxy_log_ratio": d.masked_fill(pos >= lengths.unsqueeze(-1), 0.0)}


def example_curricula_context(lengths: torch.Tensor, T: int, gen: torch.Generator) -> dict[str, Any]:
    """The curricula family's context: every slot filled (``sample_mask``), none replayed, completions shorter
    than ``T`` finished, and a value model's per-token values (0 beyond each length)."""
    P, G = lengths.shape
    beyond = torch.arange(T) >= lengths.unsqueeze(-1)
    return {"sample_mask": torch.ones(P, G, dtype=torch.bool), "replayed": torch.zeros(P, G, dtype=torch.bool),
            "finished": lengths < T,
            "values": (torch.rand(P, G, T, generator=gen)).masked_fill(beyond, 0.0)}


def example_length_context(correct: torch.Tensor, lengths: torch.Tensor, T: int, gen: torch.Generator,
                           n_budgets: int = 4) -> dict[str, Any]:
    """The length family's phase context: each correct completion's redundant span (its second half), and answer
    scores at ``n_budgets`` equal budgets up to ``T`` (the last budget's score is the verdict)."""
    n = lengths.long()
    span = torch.stack([n // 2, n - 1], dim=-1) * correct.long().unsqueeze(-1)
    ends = torch.tensor([round(T * (s + 1) / n_budgets) for s in range(n_budgets)])
    scores = (torch.rand(*lengths.shape, n_budgets, generator=gen) < 0.5).float()
    scores[..., -1] = correct.float()
    return {"redundant_span": span, "budget_scores": scores, "budget_ends": ends}


def example_token_context(lengths: torch.Tensor, T: int, gen: torch.Generator, step_len: int = 4) -> dict[str, Any]:
    """Token- and step-level context for completions of ``lengths`` tokens padded to ``T``: steps of
    ``step_len`` tokens, random ids, sampling log-probs, process rewards, step potentials, Monte Carlo
    values at every step end but the last (and at the prompt), and SPO-tree edges (a first segment shared by
    each group: only sample 0 trains it)."""
    P, G = lengths.shape
    pos = torch.arange(T).expand(P, G, T)
    mask = (pos < lengths.unsqueeze(-1)).float()
    step_index = torch.where(mask > 0, pos // step_len, torch.full_like(pos, -1))
    K = (T + step_len - 1) // step_len
    n_steps = (lengths.long() + step_len - 1) // step_len
    step_mask = torch.arange(K).expand(P, G, K) < n_steps.unsqueeze(-1)
    value_at = (pos % step_len == step_len - 1) & (pos < (n_steps.unsqueeze(-1) - 1) * step_len)
    return {
        "token_mask": mask,
        "completion_ids": torch.randint(3, 20, (P, G, T), generator=gen) * mask.long(),
        "old_logp": torch.log(torch.rand(P, G, T, generator=gen).clamp(min=1e-3)) * mask,
        "step_index": step_index,
        "token_rewards": torch.randn(P, G, T, generator=gen) * 0.1 * mask,
        "step_rewards": torch.where(step_mask, torch.randn(P, G, K, generator=gen).sign(), torch.zeros(P, G, K)),
        "step_mask": step_mask,
        "step_values": torch.rand(P, G, K, generator=gen) * step_mask,
        "token_values": torch.where(value_at, torch.rand(P, G, T, generator=gen), torch.full((P, G, T), float("nan"))),
        "prompt_values": torch.rand(P, G, generator=gen),
        # an SPO-tree whose first segment is shared: sample 0 of a group trains it, the others from step_len on
        "tree_edges": mask * ((torch.arange(G).view(1, G, 1) == 0) | (pos >= step_len)).float(),
    }
