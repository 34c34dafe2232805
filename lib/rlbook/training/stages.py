"""Expensive pipeline stages as cached artifacts, content-addressed like training runs (:mod:`rlbook.training.experiments`).

A stage is typed: its parameters are a frozen dataclass (a subclass of :class:`StageParams`) whose fields are
everything the stage reads, and its compute function receives that object and nothing else (reading a parameter
that is not a field fails with a ``KeyError`` naming the stage's fields).  The cache key is *derived*, never
listed by hand: the sha256 of the stage's name, every field of its parameters, the keys of the stages it reads
from (``upstream``) and the training code's version (:func:`rlbook.core.cache.code_version`).  Changing any
parameter of a stage therefore invalidates that stage and the stages downstream of it, and nothing else.

``Stage(name, params, upstream).run(root, compute)`` returns the stage's JSON result: read back from
``<root>/<name>-<key>/result.json`` when that folder is finished (its ``DONE`` marker, written last,
:func:`rlbook.core.cache.mark_done`), else ``compute(params, folder)`` (which may also write files, e.g. adapters,
into ``folder``) and stored.  ``rlbook cache`` lists stage folders with the runs (``config.json`` carries the
label, seed and code version) and ``--prune`` deletes stale ones.  A folder without ``DONE`` (a crash, Ctrl-C)
is wiped and recomputed.  :func:`stage` is the untyped form (a plain mapping as the config).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from rlbook.core.cache import DONE, code_version, is_done, mark_done  # noqa: F401  (DONE re-exported)
from rlbook.core.errors import ParamError
from rlbook.training.runs import plain, write_json

P = TypeVar("P", bound="StageParams")


@dataclass(frozen=True)
class StageParams:
    """Base of a stage's parameters: subclass it as a frozen dataclass whose fields are what the stage reads.

    ``params["name"]`` and ``params.get("name", default)`` read a field (as the notebooks' parameter dicts are
    read); any other name raises, so a stage cannot read a parameter that its key does not hold."""

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_params(cls: type[P], params: Mapping[str, Any], **values: Any) -> P:
        """The fields taken from ``params`` (a notebook's parameters), ``values`` set explicitly (e.g. ``seed``);
        a field with a default may be missing from ``params``."""
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name in values:
                kwargs[f.name] = values[f.name]
            elif f.name in params:
                kwargs[f.name] = params[f.name]
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ParamError(f"stage parameters {cls.__name__} need {f.name!r}; the parameters have: "
                                 f"{', '.join(sorted(params))}")
        return cls(**kwargs)

    def __getitem__(self, name: str) -> Any:
        if name not in self.names():
            raise KeyError(f"{type(self).__name__} has no parameter {name!r} (a stage reads only its own "
                           f"parameters, which make its cache key: {', '.join(self.names())})")
        return getattr(self, name)

    def get(self, name: str, default: Any = None) -> Any:
        value = self[name]
        return default if value is None else value

    def config(self) -> dict[str, Any]:
        """Every field, as JSON-ready values (what the key hashes)."""
        return plain({name: getattr(self, name) for name in self.names()})


def stage_key(name: str, config: Mapping[str, Any] | StageParams, upstream: Sequence[str] = ()) -> str:
    """Content address of a stage: sha256 (24 hex digits) of its name, config (every field of typed parameters),
    the keys of its upstream stages and the training code's version."""
    cfg = config.config() if isinstance(config, StageParams) else plain(dict(config))
    blob: dict[str, Any] = {"stage": name, "config": cfg, "code": code_version()}
    if upstream:
        blob["upstream"] = list(upstream)
    text = json.dumps(blob, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


@dataclass(frozen=True)
class Stage:
    """A named stage with typed parameters and the stages whose results it reads."""

    name: str
    params: StageParams
    upstream: tuple[Stage, ...] = ()

    @property
    def key(self) -> str:
        return stage_key(self.name, self.params, [u.key for u in self.upstream])

    def folder(self, root: str | Path) -> Path:
        return Path(root) / f"{self.name}-{self.key}"

    def run(self, root: str | Path, compute: Callable[[Any, Path], dict[str, Any]], force: bool = False
            ) -> dict[str, Any]:
        """The stage's result: read back when finished, else ``compute(self.params, folder)`` and stored."""
        return _run(self.folder(root), self.name, self.params.config(), lambda f: compute(self.params, f), force)


def stage(root: str | Path, name: str, config: Mapping[str, Any], compute: Callable[[Path], dict[str, Any]],
          force: bool = False) -> dict[str, Any]:
    """The result of the untyped stage ``name`` with ``config``: read from ``root`` when a finished copy exists,
    else ``compute(folder)`` (which may write files into ``folder``) and store its JSON-ready result."""
    return _run(Path(root) / f"{name}-{stage_key(name, config)}", name, plain(dict(config)), compute, force)


def _run(folder: Path, name: str, config: dict[str, Any], compute: Callable[[Path], dict[str, Any]],
         force: bool) -> dict[str, Any]:
    if is_done(folder) and not force:
        return json.loads((folder / "result.json").read_text())
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    write_json(folder / "config.json", {"label": name, "seed": config.get("seed"), "code": code_version(),
                                        "config": config})
    t0, c0 = time.perf_counter(), time.process_time()
    result = plain(compute(folder))
    result["stage_seconds"] = time.perf_counter() - t0
    result["stage_cpu_seconds"] = time.process_time() - c0  # all threads of this process: the cost on an idle machine
    write_json(folder / "result.json", result)
    mark_done(folder)
    return json.loads((folder / "result.json").read_text())
