"""One registry type for every kind of mechanism: estimators, losses, aggregations, rewards, samplers,
filters and phases.

A mechanism is a function (or, for samplers and phases, a class) registered under a name::

    ESTIMATORS = Registry("estimator", leading=("rewards",), context=CONTEXT_NAMES)

    @ESTIMATORS.register("grpo")
    def grpo(rewards, *, eps=1e-6): ...

Its signature is the contract.  After the ``leading`` positional parameters every parameter is either
**context** (its name is in the registry's context vocabulary: the trainer passes it, computed only
when some chosen mechanism names it) or a **hyper-parameter** (everything else, passed strictly from
the config: an unknown one is a :class:`~rlbook.core.errors.ParamError` that lists the allowed ones).

Traits the trainer reads instead of hard-coded lists (:class:`Entry`):

* ``needs``: the context names the mechanism asks for (from its signature, plus ``needs=`` at
  registration for what it reads indirectly), so the trainer computes a reference pass, per-token
  log-probs or entropies only when something needs them;
* ``zero_advantage_safe`` (losses): the token loss is exactly zero where the advantage is zero and looks
  at no other sample, so zero-advantage samples can be left out of the training pass;
* ``stateful``: ``state=Factory`` at registration; each trainer makes its own state object
  (:meth:`Registry.make_state`, never module-global, so two trainers in one process share nothing),
  passes it as context ``state`` and checkpoints it through its ``state_dict`` / ``load_state_dict``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rlbook.core.errors import ParamError

_VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


@dataclass(frozen=True)
class Entry:
    """A registered mechanism and what the trainer needs to know about it."""

    kind: str
    name: str
    fn: Callable[..., Any]
    needs: tuple[str, ...]  # context names it asks for, in signature order
    required: frozenset[str]  # the context names among them without a default
    hyper: dict[str, Any]  # hyper-parameter -> default (inspect.Parameter.empty when required)
    state_factory: Callable[[], Any] | None = None
    zero_advantage_safe: bool = False
    traits: Mapping[str, Any] = field(default_factory=dict)  # kind-specific extras (e.g. a phase's hook point)

    @property
    def stateful(self) -> bool:
        return self.state_factory is not None

    @property
    def doc(self) -> str:
        """First line of the docstring."""
        return (inspect.getdoc(self.fn) or "").split("\n", 1)[0]


def _parameters(fn: Callable[..., Any]) -> list[inspect.Parameter]:
    target = fn.__init__ if inspect.isclass(fn) else fn  # type: ignore[misc]
    params = list(inspect.signature(target).parameters.values())
    return params[1:] if inspect.isclass(fn) else params  # drop ``self``


class Registry:
    """Named mechanisms of one kind, with strict calls and declared traits."""

    def __init__(self, kind: str, leading: tuple[str, ...], context: Iterable[str]):
        self.kind = kind
        self.leading = tuple(leading)
        self.context = frozenset(context)
        self._entries: dict[str, Entry] = {}

    def register(
        self,
        name: str,
        *,
        state: Callable[[], Any] | None = None,
        zero_advantage_safe: bool = False,
        needs: Iterable[str] = (),
        **traits: Any,
    ) -> Callable[[Any], Any]:
        """Decorator: register ``fn`` under ``name`` (a name already taken is an error)."""

        def deco(fn: Any) -> Any:
            self._entries[name] = self._entry(name, fn, state, zero_advantage_safe, needs, traits)
            return fn

        return deco

    def _entry(self, name: str, fn: Any, state: Any, zero_safe: bool, needs: Iterable[str],
               traits: dict[str, Any]) -> Entry:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        params = _parameters(fn)
        first = tuple(p.name for p in params[: len(self.leading)])
        if first != self.leading:
            raise ValueError(f"{self.kind} {name!r}: parameters must start with {self.leading}, got {first}")
        rest = [p for p in params[len(self.leading):] if p.kind not in _VARIADIC]
        unknown = sorted(set(needs) - self.context)
        if unknown:
            raise ValueError(f"{self.kind} {name!r} declares unknown context {unknown}; known: {sorted(self.context)}")
        named = [p for p in rest if p.name in self.context]
        if any(p.name == "state" for p in named) != (state is not None):
            raise ValueError(f"{self.kind} {name!r}: a 'state' parameter and state= at registration go together")
        return Entry(
            kind=self.kind, name=name, fn=fn,
            needs=tuple(dict.fromkeys([p.name for p in named] + list(needs))),
            required=frozenset(p.name for p in named if p.default is inspect.Parameter.empty),
            hyper={p.name: p.default for p in rest if p.name not in self.context},
            state_factory=state, zero_advantage_safe=zero_safe, traits=dict(traits),
        )

    def available(self) -> list[str]:
        """Sorted names of every registered mechanism of this kind."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def entry(self, name: str) -> Entry:
        """The :class:`Entry` of ``name`` (``ParamError`` listing the allowed names if unknown)."""
        if name not in self._entries:
            raise ParamError(f"{self.kind}={name!r} is not allowed; allowed: {', '.join(self.available())}")
        return self._entries[name]

    def get(self, name: str) -> Any:
        """The registered function or class."""
        return self.entry(name).fn

    def hyper_parameters(self, name: str) -> dict[str, Any]:
        """The hyper-parameters ``name`` accepts, with their defaults."""
        return dict(self.entry(name).hyper)

    def check_hyper(self, name: str, hyper: Mapping[str, Any]) -> None:
        """``ParamError`` for a hyper-parameter ``name`` does not accept, or a required one missing."""
        allowed = self.entry(name).hyper
        unknown = sorted(set(hyper) - set(allowed))
        if unknown:
            raise ParamError(f"{self.kind} {name!r} got unknown hyper-parameter(s) {', '.join(unknown)}; "
                             f"allowed: {', '.join(allowed) or '(none)'}")
        missing = [k for k, v in allowed.items() if v is inspect.Parameter.empty and k not in hyper]
        if missing:
            raise ParamError(f"{self.kind} {name!r} needs hyper-parameter(s) {', '.join(missing)}")

    def bind(self, name: str, context: Mapping[str, Any] | None, hyper: Mapping[str, Any]) -> dict[str, Any]:
        """Keyword arguments for a call: each named context entry that is given (not None), and ``hyper``."""
        entry = self.entry(name)
        self.check_hyper(name, hyper)
        context = context or {}
        kwargs = dict(hyper)
        for key in entry.needs:
            if context.get(key) is not None:
                kwargs[key] = context[key]
            elif key in entry.required:
                hint = f" (from {self.kind}s.make_state)" if key == "state" else ""
                raise ParamError(f"{self.kind} {name!r} needs context {key!r}{hint}; given: "
                                 f"{', '.join(sorted(k for k, v in context.items() if v is not None)) or '(none)'}")
        return kwargs

    def call(self, name: str, *args: Any, context: Mapping[str, Any] | None = None, **hyper: Any) -> Any:
        """``fn(*args, **bind(name, context, hyper))``."""
        return self.entry(name).fn(*args, **self.bind(name, context, hyper))

    def make_state(self, name: str) -> Any:
        """A fresh state object for a stateful mechanism, ``None`` for a stateless one."""
        factory = self.entry(name).state_factory
        return factory() if factory is not None else None

    def table(self) -> list[dict[str, Any]]:
        """One row per mechanism: name, what it needs, its hyper-parameters and traits (for docs and notebooks)."""
        return [{"name": e.name, "needs": ", ".join(sorted(e.needs)),
                 "hyper": ", ".join(f"{k}={v!r}" for k, v in e.hyper.items() if v is not inspect.Parameter.empty),
                 "stateful": e.stateful, "zero_advantage_safe": e.zero_advantage_safe, "doc": e.doc}
                for e in (self._entries[n] for n in self.available())]
