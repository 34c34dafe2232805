"""The run cache cannot lie: its keys include the code that trains, and stale entries are listed and pruned.

:func:`code_version` hashes the source of every module on the training path (every ``.py`` file of the
``rlbook`` package except the ones listed in :data:`NOT_TRAINING`, which only read, report or export runs)
together with the versions of the packages that compute a run (torch, transformers, peft, reasoning-gym).
:class:`rlbook.training.experiments.RunSpec` puts it into every run's key, so after a change to an estimator, a loss,
the trainer or a task the same config gets a new key: the old run is never reused, it becomes *stale*.
``rlbook cache`` lists the entries (stale ones marked), ``rlbook cache --prune`` deletes the stale and the
unfinished ones, ``--all`` every entry.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

PACKAGE = Path(__file__).resolve().parent.parent  # the rlbook package (this file is rlbook/core/cache.py)
# Modules that never change what a training run computes: they read, test, report or export runs.
NOT_TRAINING = ("application/cli.py", "application/export.py", "analysis/report.py", "analysis/stats.py",
                "analysis/study.py", "analysis/metrics.py", "analysis/simlab.py", "analysis/probe.py", "core/cache.py", "analysis/measure.py",
                "analysis/creditlab.py", "analysis/efficiency.py", "analysis/regimes.py", "application/integrations/",
                "analysis/pipeline.py", "training/stages.py", "analysis/lessons/", "analysis/power.py",
                "analysis/simclaims.py", "application/pages.py", "application/scoreboard.py",
                "training/parallel.py")
# The cache and stage plumbing above is imported by training modules (it keys and marks runs); every other module in
# NOT_TRAINING only reads runs, and no training module imports it (tests/test_cache.py checks both).
PLUMBING = ("core/cache.py", "training/stages.py")
PACKAGES = ("torch", "transformers", "peft", "reasoning_gym", "math-verify")
DONE = "DONE"  # the marker of a finished cache entry (a run or a stage), written last


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically: a temporary file in the same folder, then ``os.replace``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def is_done(folder: str | Path) -> bool:
    """A cache entry is finished only when its ``DONE`` marker exists (written last, by :func:`mark_done`)."""
    return (Path(folder) / DONE).is_file()


def mark_done(folder: str | Path) -> None:
    """Mark a cache entry finished: its ``DONE`` marker (the time), written atomically and last."""
    write_text_atomic(Path(folder) / DONE, time.strftime("%Y-%m-%dT%H:%M:%S"))


def training_sources(package: Path = PACKAGE) -> list[Path]:
    """The ``.py`` files on the training path, sorted."""
    files = sorted(p for p in Path(package).rglob("*.py") if "__pycache__" not in p.parts)
    rel = [(p, p.relative_to(package).as_posix()) for p in files]
    return [p for p, r in rel if not any(r == n or (n.endswith("/") and r.startswith(n)) for n in NOT_TRAINING)]


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Installed version of each distribution in ``names`` (None when missing); the run cache's key uses
    :data:`PACKAGES`, run manifests (:mod:`rlbook.training.runs`) a longer list."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def code_version(package: Path = PACKAGE) -> str:
    """sha256 (16 hex digits) of the training path's source and the versions of the packages that compute a run."""
    return _code_version(str(Path(package).resolve()))


@functools.lru_cache(maxsize=8)
def _code_version(package: str) -> str:
    h = hashlib.sha256()
    for path in training_sources(Path(package)):
        h.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    h.update(json.dumps(package_versions(), sort_keys=True).encode())
    return h.hexdigest()[:16]


def _size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def entries(root: str | Path) -> list[dict[str, Any]]:
    """Every entry of the cache at ``root``: key, label, seed, code version, state (ok / stale / unfinished),
    size in bytes and the time it finished."""
    current = code_version()
    out = []
    for folder in sorted(p for p in Path(root).iterdir() if p.is_dir()) if Path(root).is_dir() else []:
        cfg = _read(folder / "config.json")
        done = is_done(folder)
        code = cfg.get("code")
        state = "unfinished" if not done else "ok" if code == current else "stale"
        out.append({"key": folder.name, "label": cfg.get("label", "base eval" if folder.name.startswith("base-") else ""),
                    "seed": cfg.get("seed"), "code": code, "state": state, "bytes": _size(folder),
                    "finished": (folder / DONE).read_text().strip() if done else None, "path": folder})
    return out


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def prune(root: str | Path, everything: bool = False) -> list[dict[str, Any]]:
    """Delete the stale and unfinished entries (or, with ``everything``, all); returns the deleted entries.
    An unfinished entry younger than an hour may belong to a run in progress and is kept."""
    gone = []
    for e in entries(root):
        young = time.time() - e["path"].stat().st_mtime < 3600
        if everything or e["state"] == "stale" or (e["state"] == "unfinished" and not young):
            shutil.rmtree(e["path"], ignore_errors=True)
            gone.append(e)
    return gone
