"""A symlinked ``outputs/`` (a bigger disk, a shared folder) and run cache: a notebook run ends with exit 0, its
report linked from ``outputs/index.html``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from rlbook.application import cli
from rlbook.training import runs

ROOT = Path(__file__).resolve().parents[1]


def linked_root(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A workbook root whose ``outputs`` is a symlink to another disk, and whose ``outputs/_cache`` (the run
    cache) is a symlink to a third folder."""
    root, disk, cache = tmp_path / "root", tmp_path / "disk", tmp_path / "cache"
    for folder in (root, disk, cache):
        folder.mkdir()
    for name in ("notebooks", "params"):
        (root / name).symlink_to(ROOT / name, target_is_directory=True)
    (root / "outputs").symlink_to(disk, target_is_directory=True)
    (disk / "_cache").symlink_to(cache, target_is_directory=True)
    return root, disk, cache


def test_index_links_runs_under_a_symlinked_outputs(tmp_path: Path) -> None:
    root, disk, _ = linked_root(tmp_path)
    outputs = root / "outputs"  # not resolved: what `rlbook run` uses when --outputs is not given
    run_dir, _ = runs.create("quickstart", {"a": 1}, outputs, ROOT)
    (run_dir / "report.html").write_text("<html></html>")
    runs.finish(run_dir, "ok")
    (rec,) = runs.find_runs(outputs)
    assert rec.dir == outputs / "quickstart" / run_dir.name  # as found under outputs, not the resolved path
    page = cli.write_index(outputs).read_text()
    assert f'href="quickstart/{run_dir.name}/report.html"' in page
    assert (disk / "index.html").is_file()


@pytest.mark.slow
def test_smoke_notebook_runs_with_outputs_and_run_cache_behind_symlinks(tmp_path: Path) -> None:
    root, disk, cache = linked_root(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "RLBOOK_RUNS_CACHE"}  # the default cache: outputs/_cache
    proc = subprocess.run([sys.executable, "-m", "rlbook.application.cli", "run", "dr_grpo", "--profile", "smoke", "--quiet"],
                          cwd=root, capture_output=True, text=True, timeout=900,
                          env={**env, "RLBOOK_ROOT": str(root), "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (run_dir,) = (disk / "dr_grpo").iterdir()
    assert runs.load(run_dir).status == "ok"
    assert f'href="dr_grpo/{run_dir.name}/report.html"' in (disk / "index.html").read_text()
    assert any(p.name.startswith("base-") for p in (cache / "runs").iterdir())  # the sweep used the linked cache
