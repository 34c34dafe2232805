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
