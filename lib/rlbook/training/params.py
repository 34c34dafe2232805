"""Notebook parameters: ``params/<notebook>.yaml`` + a profile + overrides, validated once.

A params file looks like::

    defaults: {...}      # every parameter of the notebook (the values of its `parameters` cell)
    profiles:
      smoke: {...}       # merged into the defaults (nested dicts merge key by key)
      cpu: {...}
      gpu: {...}

:func:`resolve` merges, in order, the defaults, the profile, an optional ``--params`` file (a mapping of
values) and ``key=value`` overrides (values parsed as YAML; dotted keys such as ``train.steps`` reach
into nested dicts), then :func:`validate` checks the result: keys named in
:func:`default_sections` are built by their dataclass, every other key is checked by type
against its default.  Every problem is a one-line :class:`~rlbook.core.config.ParamError`.  The method tables
(``methods``) are only typed here; :func:`rlbook.training.experiments.plan` resolves and checks each method on top of
these parameters (``rlbook run`` and ``rlbook check`` call both before anything runs).
"""

from __future__ import annotations

import copy
import hashlib
import json
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from rlbook.core.config import ParamError, TrainConfig, build
from rlbook.core.paths import find_root  # noqa: F401  (re-exported: rlbook.training.params.find_root)

COUNTS = ("seeds", "eval_size", "eval_max_new_tokens")  # top-level parameters many notebooks share: a count >= 1
RESERVED = ("run_dir", "profile")  # injected by the run machinery, never listed in a params file
SECTIONS = ("task", "train", "lora")  # dict parameters that a partial dict updates key by key (for_notebook)


def available(notebooks_dir: Path | None = None) -> list[str]:
    """Names of the notebooks (``notebooks/*.ipynb`` stems), sorted."""
    folder = Path(notebooks_dir) if notebooks_dir else find_root() / "notebooks"
    return sorted(p.stem for p in folder.glob("*.ipynb"))


def load_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as e:
        raise ParamError(f"{path}: not valid YAML: {' '.join(str(e).split())}") from e


def load_file(notebook: str, params_dir: Path | None = None) -> dict[str, Any]:
    """``params/<notebook>.yaml`` as ``{"defaults": {...}, "profiles": {...}}``."""
    path = Path(params_dir or find_root() / "params") / f"{notebook}.yaml"
    if not path.is_file():
        raise ParamError(f"no params file {path}")
    data = load_yaml(path) or {}
    if not isinstance(data, dict) or not isinstance(data.get("defaults"), dict):
        raise ParamError(f"{path} must be a mapping with a 'defaults' mapping")
    reserved = sorted(set(RESERVED) & set(data["defaults"]))
    if reserved:
        raise ParamError(f"{path}: {reserved[0]!r} is set by the run machinery; remove it from defaults")
    profiles = data.get("profiles") or {}
    if not isinstance(profiles, dict) or not all(isinstance(v or {}, dict) for v in profiles.values()):
        raise ParamError(f"{path}: 'profiles' must map profile names to mappings")
    return {"defaults": data["defaults"], "profiles": {k: v or {} for k, v in profiles.items()}}


def merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of ``base`` updated by ``over``; nested dicts merge key by key."""
    out = copy.deepcopy(dict(base))
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_override(text: str) -> tuple[str, Any]:
    """``"train.steps=3"`` -> ``("train.steps", 3)``; the value is parsed as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ParamError(f"override {text!r} must look like key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ParamError(f"override {key}: value {raw!r} is not valid YAML") from e
    return key.strip(), value


def set_dotted(params: dict[str, Any], key: str, value: Any) -> None:
    """Set ``params["a"]["b"] = value`` for ``key="a.b"``, creating missing nested dicts."""
    *path, last = key.split(".")
    node = params
    for i, part in enumerate(path):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ParamError(f"cannot set {key}: {'.'.join(path[: i + 1])} is {child!r}, not a mapping")
        node = child
    node[last] = value


def _type_name(default: Any) -> str:
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(
        type(default), type(default).__name__
    )


def check_type(key: str, value: Any, default: Any) -> Any:
    """``value`` if it has the type of ``default`` (float accepts int and numeric strings like 1e-4)."""
    if default is None:
        return value
    if isinstance(default, bool) or isinstance(value, bool):
        ok = isinstance(default, bool) and isinstance(value, bool)
    elif isinstance(default, float):
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                pass
        ok = isinstance(value, (int, float))
        value = float(value) if ok else value
    elif isinstance(default, int):
        ok = isinstance(value, int)
    elif isinstance(default, (list, tuple)):
        ok = isinstance(value, (list, tuple))
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ParamError(f"{key}={value!r} must be {_type_name(default)} (like the default {default!r})")
    return value


def _sections(sections: Mapping[str, type] | None) -> Mapping[str, type]:
    if sections is not None:
        return sections
    try:
        return default_sections()
    except ImportError as e:  # a module a section needs is missing: fall back to type checks
        warnings.warn(
            f"rlbook.training.params.default_sections() unavailable ({e}); sections checked by type only", stacklevel=3
        )
        return {}


def default_sections() -> dict[str, type]:
    """Top-level params keys that a dataclass validates: ``train``, ``lora``, ``task``."""
    from rlbook.data.tasks import TaskSpec
    from rlbook.policy.models import LoraConfig

    return {"train": TrainConfig, "lora": LoraConfig, "task": TaskSpec}


def _check_section(key: str, cls: type, value: Any) -> None:
    """Build the section's dataclass; the ``train`` section's mechanism names are checked too."""
    built = build(cls, value, key)
    if cls is TrainConfig:
        from rlbook.mechanisms import components

        components.check(built)


def validate(
    params: Mapping[str, Any], defaults: Mapping[str, Any], sections: Mapping[str, type] | None = None
) -> dict[str, Any]:
    """Check ``params`` against ``defaults``; returns them (ints given for floats become floats).

    ``sections`` maps top-level keys to dataclasses (default :func:`default_sections`, looked up
    only when a value is a mapping, since importing it loads the model stack).
    """
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        allowed = ", ".join(sorted(defaults))
        raise ParamError(f"unknown parameter {unknown[0]!r}; allowed: {allowed}")
    # the cheap checks first: a bad count or baseline fails before a section's dataclass loads the model stack
    deferred = [k for k in params if k in (sections if sections is not None else SECTIONS)]
    out = {k: v if k in deferred else check_type(k, v, defaults[k]) for k, v in params.items()}
    check_values(out)
    if deferred:
        sections = _sections(sections)
    for key in deferred:
        if key in sections:  # type: ignore[operator]
            _check_section(key, sections[key], params[key])  # type: ignore[index]
        else:  # default_sections() could not be imported: checked by type
            out[key] = check_type(key, params[key], defaults[key])
    return out


def check_values(params: Mapping[str, Any]) -> None:
    """Values the type check lets through but no run can use: a :data:`COUNTS` key below 1 (``seeds=0`` would load
    the model and run the notebook's lesson before its sweep found nothing to compare), a ``baseline`` that is not
    one of ``methods``.  ``train.steps=0`` is allowed (no method trains) but warns."""
    for key in COUNTS:
        value = params.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value < 1:
            hint = " (3 or more for a verdict)" if key == "seeds" else ""
            raise ParamError(f"{key}={value!r} must be at least 1{hint}")
    methods, baseline = params.get("methods"), params.get("baseline")
    if isinstance(baseline, str) and isinstance(methods, (Mapping, list)):
        names = list(methods) if isinstance(methods, Mapping) else [m for m in methods if isinstance(m, str)]
        if names and baseline not in names:
            raise ParamError(f"baseline={baseline!r} is not one of the methods; allowed: {', '.join(map(str, names))}")
    train = params.get("train")
    if isinstance(train, Mapping) and train.get("steps") == 0:  # valid (TrainConfig allows it), but says nothing
        warnings.warn("train.steps=0: no method trains, so every method is its start model and every comparison "
                      "is between identical policies", UserWarning, stacklevel=2)


def resolve(
    notebook: str,
    profile: str | None = None,
    params_file: str | Path | None = None,
    overrides: Iterable[str] = (),
    *,
    params_dir: Path | None = None,
    sections: Mapping[str, type] | None = None,
) -> dict[str, Any]:
    """Merged and validated parameters of ``notebook`` (raises :class:`ParamError`)."""
    spec = load_file(notebook, params_dir)
    params = copy.deepcopy(spec["defaults"])
    if profile is not None:
        if profile not in spec["profiles"]:
            allowed = ", ".join(spec["profiles"]) or "(none defined)"
            raise ParamError(f"unknown profile {profile!r} for {notebook}; allowed: {allowed}")
        params = merge(params, spec["profiles"][profile])
    if params_file is not None:
        extra = load_yaml(Path(params_file)) or {}
        if not isinstance(extra, dict):
            raise ParamError(f"{params_file} must be a mapping of parameter values")
        params = merge(params, extra)
    for text in overrides:
        set_dotted(params, *parse_override(text))
    return validate(params, spec["defaults"], sections)


def for_notebook(notebook: str, namespace: dict[str, Any], params_dir: Path | None = None) -> dict[str, Any]:
    """A notebook's parameters from its variables (``namespace`` = its ``globals()``), as ``rlbook run`` would
    resolve them, written back into ``namespace``.

    Under ``rlbook run`` (``run_dir`` set) the variables are already resolved: they are taken as they are.
    Otherwise (Run All in JupyterLab, ``papermill`` called directly): the ``profile`` variable's profile of
    ``params/<notebook>.yaml`` is merged into the defaults, then every variable that differs from its default
    (an edited cell, ``papermill -p`` / ``-y``) on top; a partial dict for a :data:`SECTIONS` key (``task``,
    ``train``, ``lora``) updates the defaults key by key (``-y "task: {train_size: 32}"`` keeps the rest of
    the task), any other value replaces its default.  The result is validated like ``rlbook run``'s.
    """
    spec = load_file(notebook, params_dir)
    defaults = spec["defaults"]
    missing = [k for k in defaults if k not in namespace]
    if missing:
        raise ParamError(f"{notebook}: parameters {missing} are not defined in the notebook")
    if namespace.get("run_dir") is not None:
        return {k: namespace[k] for k in defaults}
    profile = namespace.get("profile")
    params = copy.deepcopy(defaults)
    if profile is not None:
        if profile not in spec["profiles"]:
            allowed = ", ".join(spec["profiles"]) or "(none defined)"
            raise ParamError(f"profile = {profile!r} is not a profile of {notebook}; allowed: {allowed}")
        params = merge(params, spec["profiles"][profile])
    edited = [k for k in defaults if _plain(namespace[k]) != _plain(defaults[k])]
    for key in edited:
        value = namespace[key]
        if key in SECTIONS and isinstance(value, Mapping) and isinstance(params.get(key), dict):
            params[key] = merge(params[key], value)
        else:
            params[key] = copy.deepcopy(value)
    params = validate(params, defaults)
    namespace.update(params)
    if profile is not None or edited:
        print(f"parameters: profile {profile or '(none: the defaults)'}"
              + (f"; set in the notebook: {', '.join(edited)}" if edited else ""))
    return params


def _plain(value: Any) -> Any:
    """``value`` as JSON would store it (tuples as lists), to compare a variable with its default."""
    return json.loads(json.dumps(value, default=str))


def params_hash(params: Mapping[str, Any], n: int = 8) -> str:
    """A short stable hash of the resolved parameters (part of the run folder name)."""
    blob = json.dumps(params, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:n]
