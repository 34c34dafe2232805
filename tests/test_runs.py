"""Run folders, manifests and the ``rlbook`` CLI, on the fixture notebook tests/fixtures/notebooks/tiny.ipynb."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from rlbook.application import cli
from rlbook.training import runs

FIXTURES = (Path(__file__).parent / "fixtures").resolve()
FILES = {"tiny.ipynb", "report.html", "figures", "metrics.csv", "manifest.json", "results.json"}


@pytest.fixture(autouse=True)
def fixture_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RLBOOK_ROOT", str(FIXTURES))


def rlbook(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The CLI in a subprocess (env carries RLBOOK_ROOT)."""
    cmd = [sys.executable, "-m", "rlbook.application.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=os.environ.copy())


def only_run(outputs: Path) -> Path:
    (run_dir,) = (outputs / "tiny").iterdir()
    return run_dir


@pytest.fixture(scope="module")
def ok_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """One real papermill run of the fixture notebook, shared by the tests that inspect it."""
    outputs = tmp_path_factory.mktemp("ok") / "outputs"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RLBOOK_ROOT", str(FIXTURES))
        code = cli.main(["run", "tiny", "--profile", "cpu", "-p", "label=hello", "--outputs", str(outputs)])
    yield code, outputs


@pytest.mark.slow
def test_ok_run_writes_every_file(ok_run: tuple[int, Path]) -> None:
    code, outputs = ok_run
    assert code == 0
    run_dir = only_run(outputs)
    assert FILES <= {p.name for p in run_dir.iterdir()}
    assert (run_dir / "figures" / "curve.png").stat().st_size > 0
    assert (run_dir / "metrics.csv").read_text().splitlines()[0] == "step,reward"
    assert "data:image/png;base64" in (run_dir / "report.html").read_text()
    assert not list(run_dir.glob(".*.tmp"))


@pytest.mark.slow
def test_ok_run_manifest(ok_run: tuple[int, Path]) -> None:
    run_dir = only_run(ok_run[1])
    m = json.loads((run_dir / "manifest.json").read_text())
    assert m["status"] == "ok" and m["error"] is None
    assert m["params"] == {
        "scale": 2.0,
        "steps": 4,
        "label": "hello",
        "fail": False,
        "sleep_s": 0.0,
        "seed": 0,
    }
    assert m["profile"] == "cpu" and m["seed"] == 0 and m["interactive"] is False
    assert m["overrides"] == ["label=hello"]
    assert set(m["packages"]) == set(runs.PACKAGES) and m["packages"]["papermill"]
    assert m["device"] == "cpu" or "cpu" not in m["device"]
    assert m["wall_s"] > 0 and m["end_time"] > m["start_time"]
    assert isinstance(m["git_dirty"], bool) and len(m["git_sha"]) == 40
    sha7, phash = run_dir.name.split("-")[1:3]
    assert sha7 == m["git_sha"][:7] and len(phash) == 8


@pytest.mark.slow
def test_ok_run_results_and_load(ok_run: tuple[int, Path]) -> None:
    rec = runs.load(only_run(ok_run[1]))
    assert rec.notebook == "tiny" and rec.status == "ok"
    assert rec.results["final_reward"] == 6.0 and rec.headline() == {"final_reward": 6.0}
    assert rec.verdicts() == {"replicated": 1, "inconclusive": 1}
    assert list(rec.metrics.columns) == ["step", "reward"] and len(rec.metrics) == 4


@pytest.mark.slow
def test_ok_run_index_html(ok_run: tuple[int, Path]) -> None:
    outputs = ok_run[1]
    run_dir = only_run(outputs)
    page = (outputs / "index.html").read_text()
    m = runs.load(run_dir).manifest
    assert f'href="tiny/{run_dir.name}/report.html"' in page
    assert m["git_sha"][:7] in page and ">cpu<" in page and ">ok<" in page
    assert "1 replicated, 1 inconclusive" in page  # no claim marked primary: the verdict counts
    assert m["start_time"][:10] in page


@pytest.mark.slow
def test_ok_run_report_has_header_and_json_files_share_the_modes(ok_run: tuple[int, Path]) -> None:
    run_dir = only_run(ok_run[1])
    page = (run_dir / "report.html").read_text()
    assert "<title>tiny · cpu ·" in page and "rlbook-header" in page and run_dir.name in page
    assert "plumbing test" not in page
    modes = {p.name: p.stat().st_mode & 0o777 for p in run_dir.iterdir() if p.is_file()}
    assert modes["manifest.json"] == modes["results.json"] == modes["metrics.csv"], modes


def test_each_message_once_and_no_kernel_transport_warning(tmp_path: Path) -> None:
    done = rlbook("run", "tiny", "-p", "sleep_s=0.01", "--outputs", str(tmp_path / "outputs"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("sleeping") == 1
    assert "over TCP" not in done.stderr
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert len(lines) == len(set(lines)), done.stderr


@pytest.mark.slow
def test_failing_run_keeps_folder_with_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    outputs = tmp_path / "outputs"
    assert cli.main(["run", "tiny", "-p", "fail=true", "-p", "steps=1", "--outputs", str(outputs)]) == 1
    run_dir = only_run(outputs)
    m = runs.load(run_dir).manifest
    assert m["status"] == "failed"
    assert m["error"] == "RuntimeError: fixture failure requested"
    assert "raise RuntimeError" in m["traceback"] and "\x1b[" not in m["traceback"]
    assert (run_dir / "tiny.ipynb").is_file() and (run_dir / "report.html").is_file()
    assert not (run_dir / "results.json").exists()
    assert ">failed<" in (outputs / "index.html").read_text()
    assert "fixture failure requested" in capsys.readouterr().err


def test_unknown_parameter_is_exit_2_and_writes_nothing(tmp_path: Path) -> None:
    outputs = tmp_path / "outputs"
    done = rlbook("run", "tiny", "-p", "nonexistent=1", "--outputs", str(outputs))
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0
    assert (
        "'nonexistent'" in done.stderr and "allowed: fail, label, scale, seed, sleep_s, steps" in done.stderr
    )
    assert not outputs.exists()


def test_bad_value_and_unknown_notebook_are_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outputs = tmp_path / "outputs"
    assert cli.main(["run", "tiny", "-p", "steps=many", "--outputs", str(outputs)]) == 2
    assert "steps='many' must be an integer" in capsys.readouterr().err
    assert cli.main(["run", "nope", "--outputs", str(outputs)]) == 2
    assert "unknown notebook 'nope'; available: tiny" in capsys.readouterr().err
    assert cli.main(["run", "tiny", "--profile", "tpu", "--outputs", str(outputs)]) == 2
    assert "allowed: smoke, cpu, gpu" in capsys.readouterr().err
    assert not outputs.exists()


def test_resume_of_a_folder_without_manifest_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["resume", "somewhere"]) == 2
    assert "is not a run folder (no manifest.json)" in capsys.readouterr().err


def test_runs_in_the_same_second_get_distinct_folders(tmp_path: Path) -> None:
    params = {"a": 1}
    dirs = [runs.create("tiny", params, tmp_path, FIXTURES)[0] for _ in range(3)]
    assert len({d.name for d in dirs}) == 3
    assert dirs[1].name == dirs[0].name + "-2" or dirs[1].name[:16] != dirs[0].name[:16]
    for d in dirs:
        assert runs.load(d).manifest["status"] == "running" and (d / "figures").is_dir()


def test_make_run_dir_never_reuses_a_folder(tmp_path: Path) -> None:
    first = runs.make_run_dir(tmp_path, "x")
    (first / "keep.txt").write_text("mine")
    second = runs.make_run_dir(tmp_path, "x")
    assert second.name == "x-2" and (first / "keep.txt").read_text() == "mine"


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_list_shows_runs_and_dead_running_as_interrupted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    live, _ = runs.create("tiny", {"a": 1}, tmp_path, FIXTURES, profile="smoke")
    dead, _ = runs.create("tiny", {"a": 2}, tmp_path, FIXTURES, profile="gpu")
    runs.update_manifest(dead, pid=_dead_pid())
    done, _ = runs.create("tiny", {"a": 3}, tmp_path, FIXTURES, profile="cpu")
    runs.Run(done, {"a": 3}).save_results(
        {"accuracy": 0.25, "name": "x", "claims": [{"verdict": "replicated"}]}
    )
    runs.finish(done, "ok")
    assert cli.main(["list", "--outputs", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["notebook", "run", "id", "status", "profile", "wall", "s", "headline"]
    by_id = {line.split()[1]: line.split() for line in lines[1:]}
    assert by_id[live.name][2:4] == ["running", "smoke"]
    assert by_id[dead.name][2:4] == ["interrupted", "gpu"]
    assert by_id[done.name][2:4] == ["ok", "cpu"] and "accuracy=0.25" in by_id[done.name]
    assert runs.load(dead).status == "interrupted"


def test_list_with_no_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["list", "--outputs", str(tmp_path)]) == 0
    assert "no runs" in capsys.readouterr().out


def test_run_object_figure_results_log(tmp_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    run_dir, _ = runs.create("tiny", {"a": 1}, tmp_path, FIXTURES)
    run = runs.start("tiny", run_dir, {"a": 1})
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    path = run.figure(fig, "line")
    plt.close(fig)
    assert path == run_dir / "figures" / "line.png" and path.stat().st_size > 0
    run.save_results({"acc": np.float32(0.5), "n": 3, "ok": True, "curve": np.arange(2), "bad": float("nan")})
    merged = run.save_results({"acc": 0.75})
    assert merged == {"acc": 0.75, "n": 3, "ok": True, "curve": [0, 1], "bad": None}
    assert json.loads(run.results_path.read_text()) == merged
    assert type(json.loads(run.results_path.read_text())["n"]) is int  # counts stay integers (n_seeds)
    run.log("hello")
    assert "hello" in (run_dir / "run.log").read_text()
    assert run.metrics_path == run_dir / "metrics.csv"


def test_interactive_start_marks_ok_at_exit(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "params").mkdir(parents=True)
    (root / "notebooks").mkdir()
    code = "import rlbook.training.runs as r; run = r.start('tiny', None, {'seed': 3}); print(run.dir)"
    env = {**os.environ, "RLBOOK_ROOT": str(root)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    run_dir = Path(out.stdout.strip())
    assert run_dir == root / "outputs" / "_scratch" / "tiny"
    m = runs.load(run_dir).manifest
    assert m["status"] == "ok" and m["interactive"] is True and m["seed"] == 3 and m["wall_s"] >= 0
    (run_dir / "figures" / "old.png").write_bytes(b"x")
    again = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert Path(again.stdout.strip()) == run_dir and not (run_dir / "figures" / "old.png").exists()
    assert runs.find_runs(root / "outputs") == []  # hand runs do not litter outputs/ with run folders


@pytest.mark.slow
def test_direct_papermill_run_gets_a_run_folder_report_and_index(tmp_path: Path) -> None:
    root = FIXTURES / "papermill_root"
    outputs = tmp_path / "outputs"
    env = {**os.environ, "RLBOOK_ROOT": str(root), "RLBOOK_OUTPUTS": str(outputs)}
    papermill = Path(sys.executable).parent / "papermill"
    cmd = [str(papermill), str(root / "notebooks" / "tiny_pm.ipynb"), str(tmp_path / "out.ipynb"),
           "-p", "profile", "smoke", "-p", "label", "direct", "-k", "python3"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    deadline = time.monotonic() + 60
    while not list(outputs.glob("tiny_pm/*/report.html")) and time.monotonic() < deadline:
        time.sleep(0.2)
    (run_dir,) = (outputs / "tiny_pm").iterdir()
    while runs.load(run_dir).manifest["status"] == "running" and time.monotonic() < deadline:
        time.sleep(0.2)
    rec = runs.load(run_dir)
    assert rec.status == "ok" and rec.manifest["profile"] == "smoke"
    assert rec.params == {"steps": 2, "label": "direct", "seed": 0}  # the smoke profile applied, -p on top
    assert rec.results["steps_run"] == 2 and (run_dir / "tiny_pm.ipynb").is_file()
    assert "<math" in (run_dir / "report.html").read_text()
    assert f'href="tiny_pm/{run_dir.name}/report.html"' in (outputs / "index.html").read_text()


@pytest.mark.slow
def test_sigterm_marks_interrupted(tmp_path: Path) -> None:
    outputs = tmp_path / "outputs"
    cmd = [sys.executable, "-m", "rlbook.application.cli", "run", "tiny", "-p", "sleep_s=60", "--outputs", str(outputs)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 45
        while not list(outputs.glob("tiny/*/run.log")) and time.monotonic() < deadline:
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err
    m = runs.load(only_run(outputs)).manifest
    assert m["status"] == "interrupted" and "SIGTERM" in m["error"]
    assert (only_run(outputs) / "tiny.ipynb").is_file()
