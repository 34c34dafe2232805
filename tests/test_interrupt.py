"""Ctrl-C (SIGINT) during ``rlbook run`` of a training notebook leaves the folder ``interrupted`` and
resumable; ``rlbook resume`` then finishes it from its last checkpoint (fixture root tests/fixtures/resume_root)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rlbook.application import cli
from rlbook.training import checkpoint, runs

FIXTURES = Path(__file__).parent.resolve() / "fixtures" / "resume_root"


def _sigint_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
@pytest.mark.parametrize("whole_group", [True])
def test_sigint_leaves_the_run_interrupted_and_resumable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         whole_group: bool) -> None:
    monkeypatch.setenv("RLBOOK_ROOT", str(FIXTURES))
    outputs = tmp_path / "outputs"
    # 1 s per step leaves 4 s between the step-2 checkpoint and the end of training for the signal to arrive
    cmd = [sys.executable, "-m", "rlbook.application.cli", "run", "train", "-p", "step_sleep=1.0", "--outputs",
           str(outputs)]
    # Ctrl-C reaches a terminal's foreground job with SIGINT at its default.  This test process may have inherited
    # SIGINT ignored (an in-process IPython kernel of an earlier test sets SIG_IGN, as ipykernel's init_signal does),
    # and an ignored SIGINT is inherited across exec: the run then never saw the signal and finished "ok"
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=_sigint_default)
    try:
        deadline = time.monotonic() + 90
        while not list(outputs.glob("train/*/checkpoints/step-000002")):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()  # type: ignore[union-attr]
            time.sleep(0.05)
        if whole_group:  # Ctrl-C in a terminal: the CLI and the kernel both get SIGINT
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    (run_dir,) = (outputs / "train").iterdir()
    m = runs.load(run_dir).manifest
    assert m["status"] == "interrupted" and "KeyboardInterrupt" in m["error"] or "SIGINT" in m["error"]
    step = checkpoint.latest_step(run_dir / "checkpoints")
    assert 2 <= step < 6
    time.sleep(1.0)  # the kernel was shut down with the CLI: nothing writes to the folder any more
    assert checkpoint.latest_step(run_dir / "checkpoints") == step

    assert cli.main(["resume", str(run_dir)]) == 0
    m = runs.load(run_dir).manifest
    assert m["status"] == "ok" and m["attempt"] == 2 and m["resumed_from_step"] == step
    assert m["previous_attempts"][0]["status"] == "interrupted"
    assert (run_dir / "train.ipynb.attempt-1").is_file() and (run_dir / "train.ipynb").is_file()
    results = runs.load(run_dir).results
    assert results["resumed_from_step"] == step and results["steps"] == 6
    rows = (run_dir / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == [str(s) for s in range(1, 7)]
    assert cli.main(["resume", str(run_dir)]) == 0  # finished: nothing to do, the run is reused
    assert runs.load(run_dir).manifest["attempt"] == 2


def test_interactive_cells_mark_the_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In JupyterLab (IPython), a cell stopped by Ctrl-C / "interrupt kernel" marks the run interrupted,
    an exception failed, and a later successful cell running again."""
    from IPython.core.interactiveshell import InteractiveShell

    for sub in ("params", "notebooks"):
        (tmp_path / sub).mkdir()
    monkeypatch.setenv("RLBOOK_ROOT", str(tmp_path))
    shell = InteractiveShell.instance()
    try:
        shell.run_cell("import rlbook.training.runs\nrun = rlbook.training.runs.start('tiny', None, {'seed': 0})")
        run_dir = shell.user_ns["run"].dir
        assert runs.load(run_dir).manifest["status"] == "running"
        shell.run_cell("raise KeyboardInterrupt")
        m = runs.load(run_dir).manifest
        assert m["status"] == "interrupted" and m["error"].startswith("KeyboardInterrupt")
        shell.run_cell("x = 1")
        assert runs.load(run_dir).manifest["status"] == "running"
        shell.run_cell("raise ValueError('boom')")
        m = runs.load(run_dir).manifest
        assert m["status"] == "failed" and m["error"] == "ValueError: boom" and "boom" in m["traceback"]
    finally:
        InteractiveShell.clear_instance()
