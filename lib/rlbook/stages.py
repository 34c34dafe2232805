"""Expensive pipeline stages as cached artifacts, content-addressed like training runs (:mod:`rlbook.experiments`).

``stage(root, name, config, compute)`` returns the stage's JSON result: read back from
``<root>/<name>-<key>/result.json`` when that folder is finished (its ``DONE`` marker, written last), else
computed by ``compute(folder)`` (which may also write files, e.g. adapters, into ``folder``) and stored.  The
key is the sha256 of the stage's name, its config and the training code's version
(:func:`rlbook.cache.code_version`), so a stage computed by older code is never reused; ``rlbook cache`` lists
stage folders with the runs (``config.json`` carries the label, seed and code version) and ``--prune`` deletes
stale ones.  A folder without ``DONE`` (a crash, Ctrl-C) is wiped and recomputed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from rlbook.cache import code_version
from rlbook.runs import plain, write_json

DONE = "DONE"


def stage_key(name: str, config: Mapping[str, Any]) -> str:
    """Content address of a stage: sha256 (24 hex digits) of its name, config and the training code's version."""
    text = json.dumps({"stage": name, "config": config, "code": code_version()}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def stage(root: str | Path, name: str, config: Mapping[str, Any], compute: Callable[[Path], dict[str, Any]],
          force: bool = False) -> dict[str, Any]:
    """The result of stage ``name`` with ``config``: read from ``root`` when a finished copy exists, else
    ``compute(folder)`` (which may write files into ``folder``) and store its JSON-ready result."""
    folder = Path(root) / f"{name}-{stage_key(name, config)}"
    if (folder / DONE).is_file() and not force:
        return json.loads((folder / "result.json").read_text())
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    seed = config.get("seed") if isinstance(config, Mapping) else None
    write_json(folder / "config.json", {"label": name, "seed": seed, "code": code_version(),
                                             "config": plain(dict(config))})
    t0, c0 = time.perf_counter(), time.process_time()
    result = plain(compute(folder))
    result["stage_seconds"] = time.perf_counter() - t0
    result["stage_cpu_seconds"] = time.process_time() - c0  # all threads of this process: the cost on an idle machine
    write_json(folder / "result.json", result)
    tmp = folder / f".{DONE}.{os.getpid()}"
    tmp.write_text(time.strftime("%Y-%m-%dT%H:%M:%S"))
    os.replace(tmp, folder / DONE)
    return json.loads((folder / "result.json").read_text())


