"""Reward functions, a registry.  Each maps completions (and their problems) to one float each.

``fn(completions: list[str], problems: list[Problem], *, <context>, <hyper>) -> list[float]``.
Context a reward may name (:data:`CONTEXT`): ``task``, ``lengths`` (tokens through EOS), ``correct`` (the
verifier's verdict, bool), ``max_new_tokens``, ``group_size``, ``prompt_ids`` (dataset index of each
completion's prompt), ``step``, ``total_steps``, ``state`` (a stateful reward's own object, made per
trainer and checkpointed), ``finished`` (the completion ended with EOS within the generation limit) and
``tokenizer``.  The trainer combines the rewards as ``sum(weight_k * reward_k)`` and also
hands each part separately to the estimators (``reward_parts``), e.g. for BNPO's advantage decomposition.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from rlbook.core.config import ParamError
from rlbook.core.errors import TrainingError
from rlbook.core.registry import Registry
from rlbook.data.tasks import Problem, Task, is_well_formatted

RewardFn = Callable[..., list[float]]
CONTEXT = ("task", "lengths", "correct", "max_new_tokens", "group_size", "prompt_ids", "step", "total_steps",
           "state", "finished", "tokenizer")
REWARDS = Registry("reward", leading=("completions", "problems"), context=CONTEXT)
available = REWARDS.available
get = REWARDS.get


def register(name: str, *, state: Callable[[], Any] | None = None) -> Callable[[RewardFn], RewardFn]:
    """Register a reward under ``name``; a stateful one names the factory of its state object."""
    return REWARDS.register(name, state=state)


@register("correct")
def correct(completions: list[str], problems: list[Problem], *, task: Task) -> list[float]:
    """1.0 when the task's own verifier (reasoning-gym ``score_answer``) accepts the extracted answer."""
    return [task.score(p, c) for c, p in zip(completions, problems, strict=True)]


@register("format")
def format_reward(completions: list[str], problems: list[Problem], *, task: Task) -> list[float]:
    """1.0 when the answer is given in the requested form (the answer alone, or in ``<answer>`` tags)."""
    return [float(is_well_formatted(c, task.spec.answer_format)) for c in completions]


@register("length_penalty")
def length_penalty(
    completions: list[str], problems: list[Problem], *, task: Task, lengths: list[int], max_new_tokens: int
) -> list[float]:
    """-(length / max_new_tokens): the plain additive length penalty the efficiency papers compare with."""
    return [-n / max_new_tokens for n in lengths]


@register("overlong")
def overlong(
    completions: list[str],
    problems: list[Problem],
    *,
    task: Task,
    lengths: list[int],
    max_new_tokens: int,
    cache: int | None = None,
    cache_frac: float = 0.25,
) -> list[float]:
    """DAPO's Soft Overlong Punishment: 0 up to ``L_max - L_cache`` tokens, then a linear penalty to -1 at ``L_max``.

    Source: Yu et al., "DAPO: An Open-Source LLM Reinforcement Learning System at Scale" (2025), Eq. 13:
    R = 0 if |y| <= L_max - L_cache; ((L_max - L_cache) - |y|) / L_cache if L_max - L_cache < |y| <= L_max;
    -1 if |y| > L_max.  Ours: L_max = ``max_new_tokens`` (the generation limit, so a truncated completion
    gets -1) and L_cache = ``cache`` tokens, by default ``cache_frac`` of L_max (the paper: 4096 of 20480,
    i.e. 0.2, with generation allowed up to L_max).
    """
    l_cache = int(cache) if cache is not None else max(1, round(cache_frac * max_new_tokens))
    if not 0 < l_cache <= max_new_tokens:
        raise ParamError(f"overlong: cache={l_cache} must be in [1, max_new_tokens={max_new_tokens}]")
    start = max_new_tokens - l_cache
    return [0.0 if n <= start else -1.0 if n > max_new_tokens else (start - n) / l_cache for n in lengths]


def score(uses: list[Any], completions: list[str], problems: list[Problem], context: dict[str, Any]) -> Tensor:
    """Reward parts ``[B, K]``, one column per configured reward (``use.name``, ``use.kwargs``, ``use.state``),
    unweighted.  Each reward gets the entries of ``context`` its signature names (and its own ``state``)."""
    cols = []
    for use in uses:
        vals = REWARDS.call(use.name, completions, problems, context={**context, "state": use.state}, **use.kwargs)
        if len(vals) != len(completions):
            raise TrainingError(f"reward {use.name!r} returned {len(vals)} values for {len(completions)} completions")
        cols.append(torch.as_tensor(vals, dtype=torch.float32))
    return torch.stack(cols, dim=-1)
