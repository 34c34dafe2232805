"""The thread policy of every rlbook process: torch's OpenMP threads must not collapse when another process
uses a core.

torch runs one OpenMP thread per core, and libgomp's default wait policy lets a thread that reaches a barrier
spin before it sleeps.  When another process holds a core, the partner thread is descheduled and the spinning
thread burns the core it is waiting for: on this project's 2-core machines a training step became 7x slower
with one other busy process and 14x slower during ``make demo`` (``benchmarks/README.md``, "Threads under
load").  ``OMP_WAIT_POLICY=PASSIVE`` makes a waiting thread sleep at once.  Measured there at a load average of
10-17, torch's default did not finish a small step's warm-up in 300 s, while PASSIVE with both threads took
58-78 s for all three steps, faster than one thread (82-95 s); so the thread count is left as it is.  On an
otherwise idle machine (2026-12-07, the benchmark's 8 x 8-sample step) PASSIVE takes 14.65 s per step, 3.03x faster
than TRL's trainer; with one competing busy process 22.3-24.4 s (1.5-1.7x idle), where torch's default takes
44.6-47.6 s (3.0-3.3x).

:func:`configure` sets it where processes start, before torch is imported: the ``rlbook`` command (the notebooks
it runs inherit the environment), the tests' ``conftest``, the benchmark; ``make install`` writes it into the
``rlbook`` Jupyter kernel's spec.  A value the user already set wins, and ``RLBOOK_THREADS=keep`` leaves the
environment alone (the benchmark uses it to measure torch's own default).
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping

ENV = "RLBOOK_THREADS"  # "keep": leave OpenMP's settings alone


def configure(environ: MutableMapping[str, str] | None = None) -> str | None:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` in ``environ`` (default ``os.environ``) unless it is set or ``RLBOOK_THREADS``
    is ``keep``; returns the wait policy in force (None: left alone).  Has no effect on a torch already imported
    (OpenMP reads its environment once), which it says on stderr."""
    env = os.environ if environ is None else environ
    if env.get(ENV, "").strip().lower() == "keep":
        return None
    if "OMP_WAIT_POLICY" not in env and environ is None and "torch" in sys.modules:
        print("[rlbook] torch was imported before rlbook.core.threads.configure(): OMP_WAIT_POLICY=PASSIVE comes too "
              "late for this process", file=sys.stderr)
    return env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
