"""Out-of-memory retry, one wrapper around a phase of a step: halve the phase's batch knob once and retry."""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Any

import torch

from rlbook.core.config import TrainConfig
from rlbook.core.errors import TrainingError


def is_oom(e: BaseException) -> bool:
    """True for a CUDA / MPS / CPU allocator out-of-memory error."""
    return isinstance(e, torch.OutOfMemoryError) or (isinstance(e, RuntimeError) and "out of memory" in str(e).lower())


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def retry(cfg: TrainConfig, step: int, phase: str, knob: str, fn: Callable[[], Any],
          restore: Callable[[], None] | None = None) -> Any:
    """``fn()``; on out-of-memory, undo the partial work (``restore``), halve ``cfg.<knob>`` once and retry
    the whole phase; a second out-of-memory (or one at ``<knob> = 1``) is a :class:`TrainingError`."""
    try:
        return fn()
    except Exception as e:
        if not is_oom(e):
            raise
        before = getattr(cfg, knob)
        after = max(1, before // 2)
        free_memory()
        if restore is not None:
            restore()
        if after == before:
            raise TrainingError(
                f"out of memory during {phase} at step {step} with train.{knob}=1; "
                "lower train.max_new_tokens, train.prompts_per_step or train.group_size"
            ) from e
        print(f"[rlbook] step {step}: out of memory during {phase} with train.{knob}={before}; "
              f"retrying with train.{knob}={after}")
        setattr(cfg, knob, after)
    try:
        return fn()
    except Exception as e:
        if not is_oom(e):
            raise
        free_memory()
        raise TrainingError(
            f"out of memory during {phase} at step {step}: tried train.{knob}={before}, "
            f"then {after}; lower train.{knob} (or max_new_tokens, prompts_per_step, group_size)"
        ) from e
