"""Which sampled groups enter the update: a registry of group filters.

``keep = fn(rewards[P, G], *, <context>, <hyper>) -> Tensor[P] bool``.  Context a filter may name:
``correct`` ([P, G] bool, the task verifier), ``lengths`` ([P, G] tokens), ``reward_parts`` ([P, G, K]),
``prompt_ids`` ([P]), ``step``, ``state``.  The trainer applies every filter of ``cfg.filters`` (a group is
kept when all keep it), draws more prompts while fewer than P groups were kept, for at most
``cfg.max_sampling_rounds`` generation rounds, and reports ``filtered_groups`` and ``shortfall`` (groups
missing at the round limit) in the step's metrics.  At the limit the step trains on the groups it has,
unless ``cfg.top_up`` fills the batch with dropped groups (an explicit, non-default choice).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from rlbook.core.errors import ParamError
from rlbook.core.registry import Registry

FILTERS = Registry("filter", leading=("rewards",), context=("correct", "lengths", "reward_parts", "prompt_ids",
                                                           "step", "state"))
available = FILTERS.available


def register(name: str, *, state: Callable[[], Any] | None = None) -> Callable[[Any], Any]:
    return FILTERS.register(name, state=state)


def apply(name: str, rewards: Tensor, context: dict[str, Any], **hyper: Any) -> Tensor:
    """The keep mask ``[P]`` (bool) of filter ``name``."""
    keep = FILTERS.call(name, rewards, context=context, **hyper)
    if keep.shape != rewards.shape[:1] or keep.dtype != torch.bool:
        raise RuntimeError(f"filter {name!r} returned {tuple(keep.shape)} {keep.dtype}; expected [P] bool")
    return keep


def _mixed(values: Tensor) -> Tensor:
    """Groups whose values are not all equal; a group of one is kept (it has no spread to lose)."""
    if values.shape[1] == 1:
        return torch.ones(values.shape[0], dtype=torch.bool, device=values.device)
    return values.amax(dim=1) > values.amin(dim=1)


@register("dynamic_sampling")
def dynamic_sampling(rewards: Tensor, *, correct: Tensor, metric: str = "acc") -> Tensor:
    """DAPO's dynamic sampling: keep the groups whose accuracy is neither 0 nor 1 (all wrong or all right
    groups give GRPO zero advantage).

    Source: Yu et al., "DAPO: An Open-Source LLM Reinforcement Learning System at Scale" (2025), Eq. 11
    (0 < |{o_i : is_equivalent(a, o_i)}| < G); code: verl ``recipe/dapo/dapo_ray_trainer.py`` (group filter on
    ``algorithm.filter_groups.metric``, ``acc`` in the official scripts; groups whose metric has zero std are
    dropped, a group of one is kept).  ``metric="reward"`` filters on the total reward instead (it then
    keeps groups whose only difference is a length penalty).  At the round limit the official code raises an
    error; ours trains on the groups it has and reports the shortfall (``TrainConfig.top_up`` to fill up).
    """
    if metric == "acc":
        return _mixed(correct.float())
    if metric == "reward":
        return _mixed(rewards)
    raise ParamError(f"dynamic_sampling: metric={metric!r} is not allowed; allowed: acc, reward")


@register("drop_all_correct")
def drop_all_correct(rewards: Tensor, *, correct: Tensor) -> Tensor:
    """NGRPO's filter: drop only the groups that are all correct, keep the all-wrong ones (whose calibrated
    advantage is negative, what NGRPO learns from).

    Source: Nan et al., "NGRPO: Negative-enhanced Group Relative Policy Optimization" (2025); official
    script (github.com/nangongrui-ngr/NGRPO) filters groups by accuracy with the all-wrong groups kept.
    """
    return ~correct.bool().all(dim=1)


@register("accuracy_band")
def accuracy_band(rewards: Tensor, *, correct: Tensor, low: float = 0.2, high: float = 0.8) -> Tensor:
    """PRIME's online prompt filter: keep the groups whose accuracy lies in [low, high] (inclusive): with G = 4 it
    keeps 1 to 3 correct of 4, with G = 8 it keeps 2 to 6 of 8.

    Source: Cui et al., "Process Reinforcement through Implicit Rewards" (PRIME, 2025), Sec. 3 (online prompt
    filtering); code: PRIME-RL/PRIME ``training/verl/trainer/ppo/ray_trainer.py::filter`` and verl
    ``recipe/prime/prime_ray_trainer.py::filter_and_downsample`` (``accuracy_lower_bound`` 0.2,
    ``accuracy_upper_bound`` 0.8, both inclusive).  The recipe oversamples 4x and keeps the passing prompts
    first; the PRIME repo keeps drawing until the batch is full; ours draws again up to
    ``cfg.max_sampling_rounds`` rounds and reports the shortfall.
    """
    if not 0.0 <= low <= high <= 1.0:
        raise ParamError(f"accuracy_band: low={low!r}, high={high!r} must satisfy 0 <= low <= high <= 1")
    acc = correct.float().mean(dim=1)
    return (acc >= low - 1e-9) & (acc <= high + 1e-9)
