"""Trainer checkpoints: everything an interrupted run needs to continue exactly where it stopped.

Layout under a run folder::

    checkpoints/
      step-000012/            one complete checkpoint (never modified once written)
        adapter.safetensors   the trainable (LoRA) parameters, by name
        optimizer.pt          the optimizer's state_dict
        state.pt              RNG states (Python, NumPy, torch CPU and CUDA), sampler (data cursor),
                              estimator and reward state, counters, batch sizes and the metrics so far
      step-000011/
      latest                  the name of the newest complete checkpoint

Writes are atomic: a checkpoint is written into ``checkpoints/tmp-XXXX/`` and renamed into place with
``os.replace``, then ``latest`` is replaced the same way; a kill at any moment leaves the previous
checkpoint intact (and a stray ``tmp-*`` folder that the next save removes).  The last
:data:`KEEP` checkpoints are kept.

Exactness: ``save`` is called after a step's metrics are recorded, when all of that step's sampling
is done, so the saved RNG states are the ones the next step starts from.  On CPU a resumed run
reproduces the uninterrupted run bit for bit (``tests/test_resume.py``).
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from rlbook.core.cache import write_text_atomic


class Checkpointable(Protocol):
    """What a checkpoint reads and restores of :class:`rlbook.training.trainer.Trainer` (a protocol, so this module does
    not import the trainer that calls it)."""

    model: Any
    optimizer: torch.optim.Optimizer
    step_count: int

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


KEEP = 2
LATEST = "latest"
_STEP = re.compile(r"^step-(\d+)$")
FORMAT = 1


# ---------------------------------------------------------------- RNG states


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch (CPU and every CUDA device) RNG states, in plain picklable types."""
    kind, key, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": [kind, key.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_tuples(state["python"]))
    kind, key, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(key, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tuples(x: Any) -> Any:
    """``random.setstate`` needs tuples where a round trip may have made lists."""
    return tuple(_tuples(v) for v in x) if isinstance(x, (list, tuple)) else x


# ---------------------------------------------------------------- folders


def step_dirs(folder: str | Path) -> list[Path]:
    """Complete checkpoints in ``folder``, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if p.is_dir() and (m := _STEP.match(p.name))]
    return [p for _, p in sorted(found)]


def latest(folder: str | Path) -> Path | None:
    """The newest complete checkpoint: the one ``latest`` names, else the highest ``step-*``."""
    folder = Path(folder)
    with contextlib.suppress(OSError):
        name = (folder / LATEST).read_text().strip()
        if _STEP.match(name) and (folder / name / "state.pt").is_file():
            return folder / name
    dirs = [p for p in step_dirs(folder) if (p / "state.pt").is_file()]
    return dirs[-1] if dirs else None


def latest_step(folder: str | Path) -> int:
    """Step of the newest checkpoint in ``folder`` (0 when there is none)."""
    path = latest(folder)
    return int(_STEP.match(path.name).group(1)) if path is not None else 0  # type: ignore[union-attr]


# ---------------------------------------------------------------- save / load


def trainable_state(trainer: Checkpointable) -> dict[str, torch.Tensor]:
    """The trainable parameters by name (CPU, contiguous copies)."""
    return {
        n: p.detach().to("cpu").contiguous().clone()
        for n, p in trainer.model.named_parameters()
        if p.requires_grad
    }


def save(trainer: Checkpointable, folder: str | Path, keep: int = KEEP) -> Path:
    """Write a checkpoint of ``trainer`` at its current step into ``folder``; returns its path."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("tmp-*"):  # left by a killed save
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(dir=folder, prefix="tmp-"))
    try:
        save_file(trainable_state(trainer), str(tmp / "adapter.safetensors"))
        torch.save(trainer.optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save({"format": FORMAT, "rng": rng_state(), **trainer.state_dict()}, tmp / "state.pt")
        target = folder / f"step-{trainer.step_count:06d}"
        if target.exists():  # the same step saved again (e.g. at the end right after a periodic save)
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    write_text_atomic(folder / LATEST, target.name + "\n")
    for old in step_dirs(folder)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return target


def load(trainer: Checkpointable, folder: str | Path) -> int:
    """Restore ``trainer`` from the newest checkpoint in ``folder`` (a ``checkpoints/`` folder or one
    ``step-*`` folder); returns the restored step, 0 (and nothing changed) when there is none."""
    from safetensors.torch import load_file

    folder = Path(folder)
    path = folder if _STEP.match(folder.name) and (folder / "state.pt").is_file() else latest(folder)
    if path is None:
        return 0
    state = torch.load(path / "state.pt", weights_only=True)
    weights = load_file(str(path / "adapter.safetensors"))
    params = dict(trainer.model.named_parameters())
    missing = sorted(set(n for n, p in params.items() if p.requires_grad) - set(weights))
    unknown = sorted(set(weights) - set(params))
    if missing or unknown:
        raise ValueError(
            f"checkpoint {path} does not match the model: missing {missing[:3]}, unexpected {unknown[:3]} "
            "(was it written with another model or LoRA config?)"
        )
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value.to(params[name].device, params[name].dtype))
    trainer.optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
    trainer.load_state_dict(state)
    set_rng_state(state["rng"])
    return trainer.step_count
