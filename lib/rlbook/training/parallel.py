"""Train a sweep's missing runs in several processes at once (``rlbook run NOTEBOOK --jobs N``).

On a CPU one run of the 135M model keeps torch's threads poorly busy (small matrices, generation one token at a
time), so a sweep of many short runs finishes sooner as N one-thread runs side by side than as one run at a
time on N threads.  :func:`prefill` trains the (method, seed) pairs of a sweep that are not in the run cache,
``jobs`` at a time, each worker a process of its own with ``threads`` torch threads that loads the start model
once and trains runs from a shared queue through the sweep's own
:func:`rlbook.training.experiments._train_one`.  The sweep that follows
(:func:`rlbook.training.experiments.sweep`) then finds every run cached.

What a run computes does not change (the same function, config and seed; only the thread count, which the key
never held), so this module is outside the cache key (:data:`rlbook.core.cache.NOT_TRAINING`).  Each worker holds
its own copy of the model: about 2.5 GB of memory per job for the 135M policy at the cpu profiles.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import traceback
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from rlbook.training import experiments


def jobs_from_env(default: int = 1) -> int:
    """``$RLBOOK_JOBS`` (set by ``rlbook run --jobs``), else ``default``; a value below 1 is an error."""
    text = os.environ.get("RLBOOK_JOBS", "")
    if not text:
        return default
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"RLBOOK_JOBS={text!r} must be a whole number >= 1 (processes that train runs at once)")
    return int(text)


def prefill(specs: Sequence[experiments.RunSpec], seeds: int | Iterable[int], cache: str | Path, jobs: int,
            threads: int | None = None, progress: bool = True) -> set[str]:
    """Train the runs of ``specs`` x ``seeds`` not yet in ``cache`` with ``jobs`` worker processes; returns their keys.

    ``threads``: torch threads per worker (default: the machine's cores divided by ``jobs``, at least 1).  The start
    model's warm-start stage and the base evaluations are made here first, once, so the workers only train.  With
    one job, or fewer than two runs to train, nothing happens here and the sweep trains as always.  A worker's error
    stops the others and is raised with its traceback; the runs finished before it stay cached."""
    from rlbook.core.progress import tqdm

    root = Path(cache)
    todo = experiments.pending(specs, seeds, root)
    if jobs < 2 or len(todo) < 2:
        return set()
    experiments.check_one_start(specs)
    base, tok = experiments.default_model_factory(specs[0], root)()
    for spec in {s.base_key(): s for s in specs}.values():
        experiments._base_eval(spec, root, base, tok, False)
    del base, tok
    n = min(jobs, len(todo))
    threads = threads or max(1, (os.cpu_count() or 1) // n)
    ctx = mp.get_context("spawn")  # a fresh interpreter: no torch thread pool or kernel state is inherited
    tasks, events = ctx.Queue(), ctx.Queue()
    for pair in todo:
        tasks.put(pair)
    for _ in range(n):
        tasks.put(None)
    workers = [ctx.Process(target=_worker, args=(specs[0], str(root), threads, tasks, events), daemon=True)
               for _ in range(n)]
    for w in workers:
        w.start()
    bar = tqdm(total=len(todo), desc=f"{len(todo)} runs in {n} processes x {threads} thread(s)", unit="run",
               disable=not progress, bar_format=experiments._RUN_BAR)
    running: dict[int, float] = {}  # worker pid -> done fraction of its current run
    trained: set[str] = set()
    try:
        while len(trained) < len(todo):
            try:
                kind, pid, payload = events.get(timeout=5)
            except queue.Empty:
                dead = [w for w in workers if not w.is_alive() and w.exitcode not in (0, None)]
                if dead:
                    raise RuntimeError(f"a training worker died (exit code {dead[0].exitcode}, e.g. killed for "
                                       "memory); the runs it finished are cached: lower --jobs") from None
                continue
            if kind == "error":
                raise RuntimeError(f"a training worker failed:\n{payload}")
            if kind == "step":
                running[pid] = payload
            else:  # "done": the key of a finished run
                running.pop(pid, None)
                trained.add(payload)
            bar.update(len(trained) + sum(running.values()) - bar.n)
    finally:
        bar.close()
        for w in workers:
            if w.is_alive() and len(trained) < len(todo):
                w.terminate()
            w.join()
    return trained


def _worker(start: experiments.RunSpec, root: str, threads: int, tasks: Any, events: Any) -> None:
    """One training process: load the start model once, train runs from ``tasks`` until its ``None``."""
    import torch

    torch.set_num_threads(threads)
    pid = os.getpid()
    try:
        base, tok = experiments.default_model_factory(start, root)()
        while (item := tasks.get()) is not None:
            spec, seed = item
            base_eval = experiments._base_eval(spec, Path(root), base, tok, False)  # made by prefill: read back
            experiments._train_one(spec, seed, Path(root) / spec.key(seed), base, tok, base_eval,
                                   lambda m, done: events.put(("step", pid, float(done))))
            events.put(("done", pid, spec.key(seed)))
    except BaseException:
        events.put(("error", pid, traceback.format_exc()))
