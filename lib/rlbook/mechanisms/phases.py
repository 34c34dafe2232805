"""Extra stages of a training step: a registry of phases (a multi-stage method adds a phase, not a branch).

A phase is a class registered with ``@register(name, at=HOOK)``::

    @register("prm_update", at="before_advantages")
    class PRMUpdate(Phase):
        def __init__(self, trainer, *, lr=1e-6): ...          # hyper-parameters from cfg.phases[i].kwargs
        def run(self, trainer, batch) -> dict[str, float]: ... # may add entries to batch.context
        def state_dict(self) / load_state_dict(self, state)    # checkpointed with the trainer

Hook points, in the order of :meth:`rlbook.training.trainer.Trainer.step` (its stages 3, 6 and 8):

* ``before_advantages`` (stage 3): after scoring, filtering and the on-demand context, before the estimator (e.g. a
  process reward model scores tokens into ``batch.context["token_rewards"]``, or updates itself);
* ``after_advantages`` (stage 6): after the estimator and the sampler's ``observe_batch``, before the update: a phase may drop samples
  (``batch.sample_mask``) or tokens (``batch.context["loss_token_mask"]``, [B, Lc], 0 = no gradient), e.g.
  advantage-variance down-sampling;
* ``after_update`` (stage 8): after the policy update (e.g. an SFT step, a reward model's update on this batch).

The metrics a phase returns are added to the step's metrics (prefix them with the phase's name).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rlbook.core.errors import ParamError
from rlbook.core.registry import Registry

HOOKS = ("before_advantages", "after_advantages", "after_update")
PHASES = Registry("phase", leading=("trainer",), context=())
available = PHASES.available


class Phase:
    """Base class of phases: no state by default."""

    def run(self, trainer: Any, batch: Any) -> dict[str, float]:
        raise NotImplementedError

    def generation_limit(self, trainer: Any) -> int | None:
        """The generation limit this phase sets for the next rollout (None: no opinion); e.g. SIRI's schedule."""
        return None

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def register(name: str, *, at: str) -> Callable[[type], type]:
    """Register a :class:`Phase` subclass under ``name``, run at hook point ``at`` (one of :data:`HOOKS`)."""
    if at not in HOOKS:
        raise ValueError(f"phase {name!r}: at={at!r} is not a hook point; allowed: {', '.join(HOOKS)}")
    return PHASES.register(name, at=at)


def make(name: str, trainer: Any, **hyper: Any) -> Phase:
    """A phase object for ``trainer`` (hyper-parameters checked strictly)."""
    phase = PHASES.call(name, trainer, **hyper)
    if not isinstance(phase, Phase):
        raise ParamError(f"phase {name!r} must subclass rlbook.mechanisms.phases.Phase")
    return phase


def hook(name: str) -> str:
    """The hook point phase ``name`` runs at."""
    return str(PHASES.entry(name).traits["at"])
