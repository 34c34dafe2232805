"""Reward functions, a registry.  Each maps completions (and their problems) to one float each.

``fn(completions: list[str], problems: list[Problem], *, task: Task, **kwargs) -> list[float]``.
The trainer combines them as ``sum(weight_k * reward_k)`` and also hands each part separately to
the estimators (``reward_parts``), e.g. for BNPO's advantage decomposition.
"""

from __future__ import annotations

from collections.abc import Callable

from rlbook.config import ParamError
from rlbook.tasks import Problem, Task, is_well_formatted

RewardFn = Callable[..., list[float]]
_REGISTRY: dict[str, RewardFn] = {}


def register(name: str) -> Callable[[RewardFn], RewardFn]:
    def deco(fn: RewardFn) -> RewardFn:
        _REGISTRY[name] = fn
        return fn

    return deco


def available() -> list[str]:
    return sorted(_REGISTRY)


def get(name: str) -> RewardFn:
    if name not in _REGISTRY:
        raise ParamError(f"reward {name!r} is unknown; available: {', '.join(available())}")
    return _REGISTRY[name]


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
