"""The mechanisms a :class:`~rlbook.core.config.TrainConfig` names, looked up once: entries, hyper-parameters,
per-trainer state objects, and what they need from the trainer.

``check(cfg)`` validates every name and hyper-parameter against its registry (a one-line
:class:`~rlbook.core.errors.ParamError` naming the bad value and the allowed ones); ``Components(cfg)`` does the
same and builds the state objects the trainer owns (estimator, rewards, filters).  Samplers and phases
are built by the trainer (they need the task and the trainer).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rlbook.core.config import TrainConfig, is_checked, mark_checked
from rlbook.core.errors import ParamError
from rlbook.core.registry import Entry
from rlbook.mechanisms import (
    credit,
    curricula,
    estimators,
    exploration,
    filters,
    length,
    losses,
    phases,
    prm,
    process,
    rewards,
    sampling,
    spo,
    spo_tree,
    toolcalls,
)


@dataclass
class Use:
    """One configured use of a registered mechanism: its entry, hyper-parameters, weight and state."""

    entry: Entry
    kwargs: dict[str, Any]
    weight: float = 1.0
    state: Any = None

    @property
    def name(self) -> str:
        return self.entry.name


def loss_hyper(cfg: TrainConfig) -> dict[str, Any]:
    """The hyper-parameters the trainer passes to its loss: ``eps_low``/``eps_high`` where the loss names
    them, then ``cfg.loss_kwargs`` (which win)."""
    accepted = losses.LOSSES.entry(cfg.loss).hyper
    hyper = {k: v for k, v in (("eps_low", cfg.eps_low), ("eps_high", cfg.eps_high)) if k in accepted}
    return {**hyper, **cfg.loss_kwargs}


def check(cfg: TrainConfig) -> None:
    """Validate every mechanism name and hyper-parameter of ``cfg`` (raises :class:`ParamError`), once: a config
    that passed is marked (:func:`rlbook.core.config.mark_checked`) and not checked again until a mechanism field is
    set (the run plan checks; the trainer it hands the config to does not)."""
    if is_checked(cfg):
        return
    def named(registry: Any, key: str, name: str, kwargs: dict[str, Any]) -> None:
        if name not in registry:
            raise ParamError(f"{key}={name!r} is not allowed; allowed: {', '.join(registry.available())}")
        try:
            registry.check_hyper(name, kwargs)
        except ParamError as e:
            raise ParamError(f"{key}: {e}") from e

    named(estimators.ESTIMATORS, "train.estimator", cfg.estimator, cfg.estimator_kwargs)
    providers = estimators.ESTIMATORS.entry(cfg.estimator).traits.get("phases", ())
    if providers and not {p["name"] for p in cfg.phases} & set(providers):
        raise ParamError(f"train.estimator={cfg.estimator!r} needs one of the phases {', '.join(providers)} in "
                         "train.phases (they compute its context)")
    named(losses.LOSSES, "train.loss", cfg.loss, {})
    named(losses.LOSSES, "train.loss", cfg.loss, loss_hyper(cfg))
    named(losses.AGGREGATIONS, "train.aggregation", cfg.aggregation, {})
    named(sampling.SAMPLERS, "train.sampler", cfg.sampler, cfg.sampler_kwargs)
    for key, items, registry in (("rewards", cfg.rewards, rewards.REWARDS), ("filters", cfg.filters, filters.FILTERS),
                                 ("phases", cfg.phases, phases.PHASES)):
        for i, item in enumerate(items):
            named(registry, f"train.{key}[{i}].name", item["name"], item.get("kwargs", {}))
    mark_checked(cfg)


MODULES = (estimators, filters, losses, phases, rewards, sampling, spo, spo_tree, process, prm, credit, length, curricula,
           exploration, toolcalls)  # every module that registers mechanisms


class Components:
    """What the trainer calls each step, built once from ``cfg``."""

    def __init__(self, cfg: TrainConfig):
        check(cfg)
        self.estimator = Use(estimators.ESTIMATORS.entry(cfg.estimator), dict(cfg.estimator_kwargs),
                             state=estimators.make_state(cfg.estimator))
        self.loss = Use(losses.LOSSES.entry(cfg.loss), loss_hyper(cfg))
        self.rewards = [Use(rewards.REWARDS.entry(r["name"]), dict(r.get("kwargs", {})), float(r.get("weight", 1.0)),
                            rewards.REWARDS.make_state(r["name"])) for r in cfg.rewards]
        self.filters = [Use(filters.FILTERS.entry(f["name"]), dict(f.get("kwargs", {})),
                            state=filters.FILTERS.make_state(f["name"])) for f in cfg.filters]
        self.kl = cfg.kl_coef > 0

    def needs(self) -> set[str]:
        """Every context name the estimator, loss, rewards and filters ask for."""
        out: set[str] = set()
        for use in [self.estimator, self.loss, *self.rewards, *self.filters]:
            out.update(use.entry.needs)
        return out

    @property
    def needs_reference(self) -> bool:
        """A reference pass is needed: a KL term, or a mechanism asking for reference log-probs or log-ratios."""
        return self.kl or bool({"ref_logp", "seq_log_ratio", "token_log_ratio"} & self.needs())

    def state_dict(self) -> dict[str, Any]:
        """The state objects of the stateful mechanisms (the sampler's and phases' are the trainer's)."""
        def states(uses: list[Use]) -> dict[str, Any]:
            return {f"{i}:{u.name}": u.state.state_dict() for i, u in enumerate(uses) if u.state is not None}

        est = self.estimator.state
        return {"estimator": est.state_dict() if est is not None else None,
                "rewards": states(self.rewards), "filters": states(self.filters)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.estimator.state is not None and state.get("estimator") is not None:
            self.estimator.state.load_state_dict(state["estimator"])
        for key, uses in (("rewards", self.rewards), ("filters", self.filters)):
            saved = state.get(key) or {}
            for i, u in enumerate(uses):
                if u.state is not None and f"{i}:{u.name}" in saved:
                    u.state.load_state_dict(saved[f"{i}:{u.name}"])
