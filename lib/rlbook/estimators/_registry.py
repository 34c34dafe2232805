"""The estimator registry: names -> pure functions, plus the strict ``compute`` dispatcher."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from rlbook.config import ParamError

CONTEXT_NAMES = frozenset(
    {
        "lengths",
        "reward_parts",
        "part_weights",
        "correct",
        "prompt_ids",
        "seq_log_ratio",
        "max_new_tokens",
        "step",
        "total_steps",
        "state",
    }
)

Estimator = Callable[..., Tensor]


@dataclass(frozen=True)
class Entry:
    fn: Estimator
    stateful: bool
    state_factory: Callable[[], Any] | None


_REGISTRY: dict[str, Entry] = {}


def register(
    name: str, *, stateful: bool = False, state_factory: Callable[[], Any] | None = None
) -> Callable[[Estimator], Estimator]:
    """Register ``fn`` under ``name``; stateful estimators name a factory for their state object."""
    if stateful and state_factory is None:
        raise ValueError(f"stateful estimator {name!r} needs a state_factory")

    def deco(fn: Estimator) -> Estimator:
        if name in _REGISTRY:
            raise ValueError(f"estimator {name!r} is already registered")
        params = list(inspect.signature(fn).parameters)
        if not params or params[0] != "rewards":
            raise ValueError(f"estimator {name!r}: first parameter must be 'rewards'")
        _REGISTRY[name] = Entry(fn, stateful, state_factory)
        return fn

    return deco


def available() -> list[str]:
    """Sorted names of every registered estimator."""
    return sorted(_REGISTRY)


def _entry(name: str) -> Entry:
    if name not in _REGISTRY:
        raise ParamError(f"estimator={name!r} is not allowed; allowed: {', '.join(available())}")
    return _REGISTRY[name]


def get(name: str) -> Estimator:
    """The pure function registered as ``name`` (``ParamError`` listing the names if unknown)."""
    return _entry(name).fn


def make_state(name: str) -> Any:
    """A fresh state object for a stateful estimator, ``None`` for a stateless one."""
    entry = _entry(name)
    return entry.state_factory() if entry.state_factory is not None else None


def hyper_parameters(name: str) -> dict[str, Any]:
    """The hyper-parameters ``name`` accepts, with their defaults."""
    sig = inspect.signature(get(name))
    return {p.name: p.default for p in list(sig.parameters.values())[1:] if p.name not in CONTEXT_NAMES}


def compute(name: str, rewards: Tensor, context: dict[str, Any] | None = None, **hyper: Any) -> Tensor:
    """Advantages ``[P, G]`` (float32) of estimator ``name``.

    Each context entry is passed only if the function's signature names it; hyper-parameters are
    passed strictly (an unknown one is a ``ParamError`` listing the allowed ones).
    """
    entry = _entry(name)
    if rewards.dim() != 2:
        raise ParamError(f"rewards must be [P, G]; got shape {tuple(rewards.shape)}")
    context = context or {}
    allowed = hyper_parameters(name)
    unknown = sorted(set(hyper) - set(allowed))
    if unknown:
        raise ParamError(
            f"estimator {name!r} got unknown hyper-parameter(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(allowed) or '(none)'}"
        )
    kwargs: dict[str, Any] = dict(hyper)
    for p in list(inspect.signature(entry.fn).parameters.values())[1:]:
        if p.name not in CONTEXT_NAMES:
            continue
        if p.name in context and context[p.name] is not None:
            kwargs[p.name] = context[p.name]
        elif p.default is inspect.Parameter.empty:
            hint = " (from estimators.make_state)" if p.name == "state" else ""
            raise ParamError(f"estimator {name!r} needs context {p.name!r}{hint}; it was not given")
    out = entry.fn(rewards.float(), **kwargs)
    if out.shape[:2] != rewards.shape:
        raise RuntimeError(
            f"estimator {name!r} returned shape {tuple(out.shape)} for rewards {tuple(rewards.shape)}"
        )
    return out.float()
