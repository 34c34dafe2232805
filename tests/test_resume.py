"""Exact resume after a SIGKILL at a random step (a real subprocess of tests/resume_script.py)."""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from rlbook.training import checkpoint
from safetensors.torch import load_file

HERE = Path(__file__).parent.resolve()
SCRIPT = HERE / "resume_script.py"
TIMING = {"gen_s", "train_s", "step_s", "gen_tok_s", "train_tok_s"}
STEPS = 8


def script(run_dir: Path, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.Popen([sys.executable, str(SCRIPT), str(run_dir), "--steps", str(STEPS), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out
    return out


def metrics(run_dir: Path) -> list[dict]:
    history = json.loads((run_dir / "history.json").read_text())["history"]
    return [{k: v for k, v in m.items() if k not in TIMING} for m in history]


def equal(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


@pytest.mark.parametrize("variant", ["default", "knapsack"])
def test_sigkill_at_a_random_step_then_resume_matches_the_uninterrupted_run(tmp_path: Path, variant: str) -> None:
    """``knapsack``: a stateful sampler whose per-prompt success state sets each prompt's rollout budget."""
    kill_after = random.Random().randint(1, STEPS - 2)  # the checkpoint to wait for; the kill lands after it
    delay = random.Random().uniform(0.0, 0.25)  # ... anywhere in the next step, or in the middle of a save
    alone, killed = tmp_path / "alone", tmp_path / "killed"
    for d in (alone, killed):
        d.mkdir()
    ref = script(alone, "--variant", variant)
    victim = script(killed, "--sleep", "0.25", "--variant", variant)
    try:
        deadline = time.monotonic() + 90
        while checkpoint.latest_step(killed / "checkpoints") < kill_after:
            assert victim.poll() is None and time.monotonic() < deadline, victim.stdout.read()  # type: ignore[union-attr]
            time.sleep(0.02)
        time.sleep(delay)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
    finally:
        if victim.poll() is None:
            victim.kill()
    info = f"killed after checkpoint {kill_after} + {delay:.2f} s"
    assert victim.returncode == -signal.SIGKILL and not (killed / "history.json").exists(), info
    at = checkpoint.latest_step(killed / "checkpoints")
    assert kill_after <= at < STEPS, info
    finish(ref)
    out = finish(script(killed, "--variant", variant))
    assert f"at step {at}" in out, info
    assert json.loads((killed / "history.json").read_text())["resumed_from_step"] == at

    got, want = metrics(killed), metrics(alone)
    assert [m["step"] for m in got] == list(range(1, STEPS + 1)), info
    for g, w in zip(got, want, strict=True):
        assert g.keys() == w.keys() and all(equal(g[k], w[k]) for k in g), (info, g, w)
    a, b = load_file(str(alone / "adapter.safetensors")), load_file(str(killed / "adapter.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), info
    if variant == "knapsack":  # the restored success state decided budgets after the resume point (DP on)
        assert any(m["knapsack_valid_frac"] > 0 and m["knapsack_effective"] > 0 for m in got[at:]), info
    rows = (killed / "metrics.csv").read_text().splitlines()
    assert len(rows) == STEPS + 1 and [r.split(",")[0] for r in rows[1:]] == [str(s) for s in range(1, STEPS + 1)]
