"""How each step draws its prompts from the training split: a registry of samplers that see outcomes.

``sampler = make(name, n_problems, seed=seed, task=task, **kwargs)``; each step the trainer calls

* ``sampler.next(k) -> list[int]``: the indices of the next ``k`` prompts;
* ``sampler.observe(indices, rewards, correct, lengths)`` after scoring (``rewards``/``correct``/``lengths``
  are ``[P, G]`` tensors, one row per index), so a curriculum or a replay buffer can react to what the
  policy is learning.  The trainer calls ``sampler.observe_batch(batch)`` once the advantages are computed;
  by default it calls ``observe``; a sampler that needs more (the advantages, the uneven groups'
  ``sample_mask``, each problem's ``meta``, context such as ``spo_drift``) overrides it;
* ``sampler.budgets(indices) -> list[int] | None``: how many completions to generate for each prompt
  (None: ``train.group_size`` each); a budget per prompt (Knapsack RL) makes the groups uneven.  Such a sampler
  declares the widest group it can ask for, ``Sampler.widest_group(prompts_per_step, **hyper)``, and the run
  plan (:func:`group_size`) sets ``train.group_size`` to it, or checks a given one against it, before any
  compute: the trainer's groups are that wide, and a budget beyond it would fail mid-run.

Samplers keep their cursor, RNG and any statistics in ``state_dict()`` so a resumed run draws exactly the
prompts the uninterrupted run would have drawn.  A sampler is a class registered with
``@SAMPLERS.register(name)`` whose ``__init__(self, n_problems, seed, *, <task>, <hyper>)`` takes the
optional context ``task`` (the :class:`~rlbook.data.tasks.Task`, e.g. for each problem's ``meta``) by name.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
from torch import Tensor

from rlbook.core.errors import ParamError
from rlbook.core.registry import Registry

SAMPLERS = Registry("sampler", leading=("n_problems", "seed"), context=("task",))
available = SAMPLERS.available


class Sampler:
    """Base class: ``next`` must be defined; ``observe`` does nothing; state is the instance's own."""

    def next(self, k: int) -> list[int]:
        raise NotImplementedError

    def observe(self, indices: list[int], rewards: Tensor, correct: Tensor, lengths: Tensor) -> None:
        """Outcomes of the prompts drawn this step (one row of ``[P, G]`` per index)."""

    def observe_batch(self, batch: Any) -> None:
        """The step's :class:`~rlbook.policy.rollout.Batch` after the estimator (advantages, ``sample_mask``, context);
        default: :meth:`observe` with its rewards, verdicts and lengths."""
        self.observe(batch.indices, batch.rewards, batch.correct, batch.lengths)

    def budgets(self, indices: list[int]) -> list[int] | None:
        """Completions to generate for each prompt of ``indices`` (None: ``train.group_size`` each)."""
        return None

    @classmethod
    def widest_group(cls, prompts_per_step: int, **hyper: Any) -> int | None:
        """The most completions :meth:`budgets` can ask for one prompt in a step of ``prompts_per_step`` prompts
        with these hyper-parameters (all of them, defaults filled in); None: the sampler asks for
        ``train.group_size`` each.  A sampler that overrides :meth:`budgets` overrides this."""
        return None

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


@SAMPLERS.register("uniform")
class EpochSampler(Sampler):
    """Uniform without replacement: a fresh seeded permutation of the train split each epoch."""

    def __init__(self, n_problems: int, seed: int = 0):
        self.n = n_problems
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(self.n)
        self.cursor = 0
        self.epoch = 0

    def next(self, k: int) -> list[int]:
        out: list[int] = []
        while len(out) < k:
            if self.cursor >= self.n:
                self.order = self.rng.permutation(self.n)
                self.cursor = 0
                self.epoch += 1
            take = min(k - len(out), self.n - self.cursor)
            out.extend(int(i) for i in self.order[self.cursor : self.cursor + take])
            self.cursor += take
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"order": self.order.tolist(), "cursor": self.cursor, "epoch": self.epoch, "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.order = np.asarray(state["order"])
        self.cursor = int(state["cursor"])
        self.epoch = int(state["epoch"])
        self.rng.bit_generator.state = state["rng"]


def declares_width(name: str) -> bool:
    """Sampler ``name`` (registered) gives rollout budgets and declares its widest group."""
    return name in SAMPLERS and SAMPLERS.get(name).widest_group.__func__ is not Sampler.widest_group.__func__


def widest_group(name: str, prompts_per_step: int, hyper: dict[str, Any]) -> int | None:
    """:meth:`Sampler.widest_group` of sampler ``name`` with ``hyper`` over its defaults (names checked)."""
    SAMPLERS.check_hyper(name, hyper)
    defaults = {k: v for k, v in SAMPLERS.hyper_parameters(name).items() if v is not inspect.Parameter.empty}
    return SAMPLERS.get(name).widest_group(prompts_per_step, **{**defaults, **hyper})


def group_size(name: str, prompts_per_step: int, hyper: dict[str, Any], given: int | None) -> int | None:
    """The run plan's rule for ``train.group_size`` under sampler ``name``: the widest group it can ask for when
    ``given`` is None, else ``given`` if it is at least that wide (a ``ParamError`` if not).  A sampler that
    declares no width leaves ``given`` as it is."""
    width = widest_group(name, prompts_per_step, hyper)
    if width is None or given is None:
        return given if width is None else width
    if given < width:
        raise ParamError(f"train.group_size={given} is narrower than the {width} completions sampler {name!r} can "
                         f"ask for one prompt (prompts_per_step={prompts_per_step}); leave group_size unset (null) "
                         f"for the plan to set it, or set it >= {width}")
    return given


def make(name: str, n_problems: int, seed: int = 0, task: Any = None, **kwargs: Any) -> Sampler:
    """A fresh sampler ``name`` over ``n_problems`` prompts (hyper-parameters checked strictly)."""
    return SAMPLERS.call(name, n_problems, seed, context={"task": task}, **kwargs)
