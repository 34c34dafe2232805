"""Run folders: ``outputs/<notebook>/<UTC time>-<sha7>-<params hash>/``.

A folder holds ``manifest.json`` (written atomically from the moment the folder exists: params, git
sha, package versions, device, times, ``status`` = running / ok / failed / interrupted), the executed
notebook, ``report.html``, ``figures/*.png``, ``metrics.csv`` and ``results.json``.

In a notebook::

    run = rlbook.training.runs.start("grpo_basics", run_dir, params)   # run_dir: set by papermill, else None
    run.figure(fig, "reward_curve")                            # figures/reward_curve.png
    run.save_results({"final_accuracy": acc, "claims": rows})  # merged into results.json

``results.json`` convention: top-level numbers are the run's headline numbers (shown by ``rlbook
list`` and in ``outputs/index.html``); ``claims`` holds the rows of
:func:`rlbook.analysis.stats.evaluate_claim` (through :meth:`rlbook.analysis.study.StudyResult.finish`).
"""

from __future__ import annotations

import atexit
import contextlib
import csv
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from rlbook.core.cache import PACKAGES as TRAINING_PACKAGES
from rlbook.core.cache import package_versions

MANIFEST, RESULTS, METRICS = "manifest.json", "results.json", "metrics.csv"
CHECKPOINTS = "checkpoints"
PACKAGES = (*TRAINING_PACKAGES, "papermill", "rlbook")  # a manifest records what computes a run, and the runner
STATUSES = ("running", "ok", "failed", "interrupted")
FILE_MODE = 0o666  # before the umask, like open(..., "w")
SCRATCH = "_scratch"  # outputs/_scratch/<notebook>/: the one folder of a notebook run by hand (reused)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ---------------------------------------------------------------- small atomic JSON helpers


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` atomically (temp file in the same folder, then os.replace)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, FILE_MODE & ~_umask())  # mkstemp makes 0600; every output is as readable as the others
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, default=str)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_json(path: Path) -> dict[str, Any]:
    """The JSON object at ``path``, or ``{}`` when missing or unreadable."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def plain(value: Any) -> Any:
    """JSON-ready copy: ints stay ints, floats plain floats (non-finite ones None), numpy arrays lists."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [plain(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (int, float)):
        return plain(value.tolist())  # numpy / torch scalars and arrays
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return str(value)


class MetricsLog:
    """A run's per-step metrics: kept in ``rows`` and appended to ``path`` (a CSV) as they happen.

    Every row has the first row's columns (the header is read back when appending to an existing file);
    :meth:`rewrite` replaces the file with ``rows`` (after a resume: no rows past the checkpoint).
    """

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else None
        self.rows: list[dict[str, Any]] = []

    def append(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists()
        fields = list(row)
        if not new:
            with open(self.path) as f:
                fields = next(csv.reader(f), fields)
        with open(self.path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow(row)

    def rewrite(self) -> None:
        if self.path is None:
            return
        if not self.rows:
            self.path.unlink(missing_ok=True)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(self.rows[0]), extrasaction="ignore")
            w.writeheader()
            w.writerows(self.rows)
        os.replace(tmp, self.path)


# ---------------------------------------------------------------- facts recorded in the manifest


def now_utc() -> datetime:
    return datetime.now(UTC)


def git_info(root: Path) -> dict[str, Any]:
    """``{"git_sha": full sha or None, "git_dirty": bool or None}``; tolerates no git."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    sha = git("rev-parse", "HEAD")
    status = git("status", "--porcelain") if sha else None
    return {"git_sha": sha, "git_dirty": None if status is None else bool(status)}


def device_name() -> str:
    """``"cpu"`` or the CUDA device's name."""
    try:
        import torch
    except ImportError:
        return "cpu"
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def find_seed(params: dict[str, Any]) -> Any:
    """The run's seed(s): ``seed``, ``seeds`` or ``train.seed``, whichever comes first."""
    for key in ("seed", "seeds"):
        if key in params:
            return params[key]
    train = params.get("train")
    return train.get("seed") if isinstance(train, dict) else None


def pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ---------------------------------------------------------------- folders and manifests


def run_id(params: dict[str, Any], sha: str | None, when: datetime | None = None) -> str:
    from rlbook.training.params import params_hash

    stamp = (when or now_utc()).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{(sha or 'nogit')[:7]}-{params_hash(params)}"


def make_run_dir(notebook_outputs: Path, rid: str) -> Path:
    """Create a fresh folder ``notebook_outputs/rid`` (``rid-2``, ``rid-3`` ... if taken); never reuses one."""
    Path(notebook_outputs).mkdir(parents=True, exist_ok=True)
    for i in range(1, 10_000):
        path = Path(notebook_outputs) / (rid if i == 1 else f"{rid}-{i}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        (path / "figures").mkdir()
        return path
    raise RuntimeError(f"no free run folder for {rid} under {notebook_outputs}")


def new_manifest(
    notebook: str, run_dir: Path, params: dict[str, Any], git: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    """The manifest of a run that starts now (status ``running``); ``git`` from :func:`git_info`."""
    return {
        "notebook": notebook,
        "run_id": run_dir.name,
        "status": "running",
        "params": params,
        "profile": None,
        "seed": find_seed(params),
        **git,
        "packages": package_versions(PACKAGES),
        "device": device_name(),
        "python": sys.version.split()[0],
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "start_time": now_utc().isoformat(timespec="milliseconds"),
        "end_time": None,
        "wall_s": None,
        "error": None,
        "traceback": None,
        **extra,
    }


def create(
    notebook: str, params: dict[str, Any], outputs: Path, root: Path, **extra: Any
) -> tuple[Path, dict[str, Any]]:
    """Make a new run folder under ``outputs/<notebook>/`` and write its manifest (status ``running``)."""
    git = git_info(root)
    run_dir = make_run_dir(Path(outputs) / notebook, run_id(params, git["git_sha"]))
    manifest = new_manifest(notebook, run_dir, params, git, **extra)
    write_json(run_dir / MANIFEST, manifest)
    return run_dir, manifest


def update_manifest(run_dir: Path, **changes: Any) -> dict[str, Any]:
    """Read, update and atomically rewrite ``run_dir/manifest.json``."""
    manifest = read_json(Path(run_dir) / MANIFEST)
    manifest.update(changes)
    write_json(Path(run_dir) / MANIFEST, manifest)
    return manifest


def finish(
    run_dir: Path, status: str, error: str | None = None, traceback: str | None = None
) -> dict[str, Any]:
    """Mark a run ``ok`` / ``failed`` / ``interrupted`` with its end time and wall seconds."""
    if status not in STATUSES:
        raise ValueError(f"status={status!r}; allowed: {', '.join(STATUSES)}")
    end = now_utc()
    manifest = read_json(Path(run_dir) / MANIFEST)
    start = manifest.get("attempt_start_time") or manifest.get("start_time")  # a resumed run: this attempt
    wall = (end - datetime.fromisoformat(start)).total_seconds() if start else None
    if wall is not None and manifest.get("attempt_start_time"):
        wall += sum(a.get("wall_s") or 0.0 for a in manifest.get("previous_attempts") or [])
    return update_manifest(
        run_dir,
        status=status,
        end_time=end.isoformat(timespec="milliseconds"),
        wall_s=wall,
        error=error,
        traceback=traceback,
    )


def effective_status(manifest: dict[str, Any]) -> str:
    """The recorded status, except that ``running`` with a dead pid on this host reads ``interrupted``."""
    status = manifest.get("status", "unknown")
    same_host = manifest.get("host") in (None, socket.gethostname())
    if status == "running" and same_host and not pid_alive(manifest.get("pid")):
        return "interrupted"
    return status


# ---------------------------------------------------------------- what a notebook uses


@dataclass
class Run:
    """A run folder as seen from inside its notebook."""

    dir: Path
    params: dict[str, Any]
    notebook: str = ""

    @property
    def profile(self) -> str | None:
        """The profile the run was made with (its manifest's ``profile``), None for the defaults."""
        return read_json(self.dir / MANIFEST).get("profile")

    @property
    def metrics_path(self) -> Path:
        return self.dir / METRICS

    @property
    def results_path(self) -> Path:
        return self.dir / RESULTS

    @property
    def checkpoint_dir(self) -> Path:
        """``<run folder>/checkpoints``: pass it to ``Trainer(..., checkpoint_dir=run.checkpoint_dir)`` so
        that ``rlbook resume`` continues the training from its last checkpoint."""
        return self.dir / CHECKPOINTS

    def figure(self, fig: Any, name: str) -> Path:
        """Save a matplotlib figure as ``figures/<name>.png`` (dpi 120) and return the path."""
        path = self.dir / "figures" / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120, bbox_inches="tight")
        return path

    def save_results(self, results: dict[str, Any]) -> dict[str, Any]:
        """Merge ``results`` into ``results.json`` (numbers as plain floats, atomic); returns all results."""
        merged = {**read_json(self.results_path), **plain(results)}
        write_json(self.results_path, merged)
        return merged

    def results(self) -> dict[str, Any]:
        return read_json(self.results_path)

    def log(self, msg: str) -> None:
        """Print ``msg`` with a UTC time stamp and append it to ``run.log``."""
        line = f"[{now_utc():%H:%M:%S}] {msg}"
        print(line, flush=True)
        with open(self.dir / "run.log", "a") as f:
            f.write(line + "\n")

    def fail(self, error: BaseException | str) -> None:
        """Mark an interactive run ``failed`` (papermill runs are marked by the CLI)."""
        finish(
            self.dir,
            "failed",
            error=str(error) if isinstance(error, str) else f"{type(error).__name__}: {error}",
        )


def _finish_interactive(run_dir: Path) -> None:
    if read_json(run_dir / MANIFEST).get("status") == "running":
        finish(run_dir, "ok")


def _watch_cells(run_dir: Path) -> None:
    """In IPython (JupyterLab), mirror each cell's outcome into the manifest: a cell stopped by Ctrl-C
    or "interrupt kernel" marks the run ``interrupted``, an exception ``failed`` (with the error); a
    later cell that succeeds (the user re-ran it) marks it ``running`` again."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None:
        return

    def post_run_cell(result: Any) -> None:
        status = read_json(run_dir / MANIFEST).get("status")
        err = result.error_in_exec
        if err is not None:
            import traceback as tb

            text = "".join(tb.format_exception(type(err), err, err.__traceback__))
            finish(run_dir, "interrupted" if isinstance(err, KeyboardInterrupt) else "failed",
                   error=f"{type(err).__name__}: {err}", traceback=text)
        elif status in ("failed", "interrupted"):
            update_manifest(run_dir, status="running", end_time=None, error=None, traceback=None)

    shell.events.register("post_run_cell", post_run_cell)


def start(
    notebook: str, run_dir: str | Path | None, params: dict[str, Any], profile: str | None = None
) -> Run:
    """The :class:`Run` of a notebook.

    * ``rlbook run`` (papermill with ``run_dir``): the folder the CLI made (with its manifest).
    * ``papermill IN OUT`` called directly (no ``run_dir``): a new run folder ``outputs/<notebook>/<id>``, and a
      small process that waits for papermill to end, then copies ``OUT`` there, renders ``report.html``, marks
      the manifest and rebuilds ``outputs/index.html`` (:mod:`rlbook.application.pages`), as ``rlbook run`` does.
    * By hand (JupyterLab): the notebook's scratch folder ``outputs/_scratch/<notebook>/``, emptied and reused
      by each hand run (no new folder per Run All), with an ``interactive`` manifest marked ``ok`` at
      interpreter exit unless a cell failed.
    """
    import pandas as pd

    pd.set_option("display.max_colwidth", None)  # whole problem texts in every table
    if run_dir is not None:
        path = Path(run_dir).resolve()
        (path / "figures").mkdir(parents=True, exist_ok=True)
        if not (path / MANIFEST).exists():
            write_json(
                path / MANIFEST, new_manifest(notebook, path, params, git_info(_root()), profile=profile)
            )
        return Run(path, params, notebook)
    root = _root()
    outputs = _outputs_of(root)
    pm_out = papermill_output()
    if pm_out is not None:
        path, _ = create(notebook, params, outputs, root, profile=profile, interactive=False,
                         papermill_output=str(pm_out))
        _watch_papermill(path, os.getppid(), pm_out, outputs)
        return Run(path, params, notebook)
    path = scratch_dir(outputs, notebook)
    git = git_info(root)
    write_json(path / MANIFEST, new_manifest(notebook, path, params, git, profile=profile, interactive=True))
    atexit.register(_finish_interactive, path)
    _watch_cells(path)
    return Run(path, params, notebook)


def _outputs_of(root: Path) -> Path:
    return Path(os.environ.get("RLBOOK_OUTPUTS") or root / "outputs").expanduser().resolve()


def scratch_dir(outputs: Path, notebook: str) -> Path:
    """``outputs/_scratch/<notebook>/``, emptied (the previous hand run's files removed) and made again."""
    import shutil

    path = Path(outputs) / SCRATCH / notebook
    if path.exists():
        shutil.rmtree(path)
    (path / "figures").mkdir(parents=True)
    return path


def papermill_output(pid: int | None = None) -> Path | None:
    """The output notebook of the ``papermill`` command that started this kernel (its parent process), or None
    (not under the papermill CLI, output to stdout, or no ``/proc``: not Linux)."""
    pid = os.getppid() if pid is None else pid
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
    except (OSError, UnicodeDecodeError):
        return None
    names = [Path(a).name for a in argv]
    at = next((i for i, n in enumerate(names[:3]) if n == "papermill"), None)
    if at is None:
        return None
    try:
        from papermill.cli import papermill as command

        ctx = command.make_context("papermill", [a for a in argv[at + 1:] if a], resilient_parsing=True)
    except Exception:  # an argv papermill's own parser does not read
        return None
    out = ctx.params.get("output_path")
    if not out or out == "-" or "://" in str(out):
        return None
    return (cwd / out).resolve()


def _watch_papermill(run_dir: Path, pid: int, notebook_out: Path, outputs: Path) -> None:
    """Start ``python -m rlbook.application.pages papermill ...`` in its own session: it outlives this kernel, waits for
    papermill (``pid``) to end and finishes the run folder; its messages go to ``run_dir/finish.log``."""
    cmd = [sys.executable, "-m", "rlbook.application.pages", "papermill", str(run_dir), str(pid), str(notebook_out),
           str(outputs)]
    with open(run_dir / "finish.log", "w") as log:
        subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                         cwd=str(run_dir), env={**os.environ, "PYTHONPATH": _pythonpath()})
    print(f"papermill run: the run folder {run_dir} gets the executed notebook, report.html and an index "
          "entry when papermill ends")


def _pythonpath() -> str:
    """This ``rlbook`` first (a checkout's ``lib/`` wins over an installed copy), then the caller's path."""
    here = str(Path(__file__).resolve().parents[2])  # lib/ (this file is lib/rlbook/training/runs.py)
    return os.pathsep.join([here, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))])


def from_namespace(notebook: str, namespace: dict[str, Any], params_dir: Path | None = None) -> Run:
    """The run of a notebook whose parameters are its variables (pass ``globals()``): resolved by
    :func:`rlbook.training.params.for_notebook` (the ``profile`` applied, partial section dicts merged into the defaults,
    the result written back into ``namespace``), then :func:`start`."""
    from rlbook.training.params import for_notebook

    params = for_notebook(notebook, namespace, params_dir)
    return start(notebook, namespace.get("run_dir"), params, profile=namespace.get("profile"))


def _root() -> Path:
    from rlbook.core.paths import find_root

    try:
        return find_root()
    except ValueError:
        return Path.cwd().resolve()


# ---------------------------------------------------------------- reading runs back


@dataclass
class RunRecord:
    """A finished (or running) run folder, read back for comparison."""

    dir: Path
    manifest: dict[str, Any]
    results: dict[str, Any] = field(default_factory=dict)

    @property
    def notebook(self) -> str:
        return self.manifest.get("notebook") or self.dir.parent.name

    @property
    def params(self) -> dict[str, Any]:
        return self.manifest.get("params", {})

    @property
    def status(self) -> str:
        return effective_status(self.manifest)

    @cached_property
    def metrics(self) -> Any:
        """``metrics.csv`` as a pandas DataFrame, or None when the run wrote none."""
        import pandas as pd

        path = self.dir / METRICS
        return pd.read_csv(path) if path.is_file() and path.stat().st_size else None

    def headline(self) -> dict[str, float]:
        """Top-level numbers of ``results.json``."""
        return {
            k: v for k, v in self.results.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
        }

    def verdicts(self) -> dict[str, int]:
        """Number of claims in ``results.json`` by verdict."""
        counts: dict[str, int] = {}
        for row in self.results.get("claims") or []:
            if isinstance(row, dict) and "verdict" in row:
                counts[row["verdict"]] = counts.get(row["verdict"], 0) + 1
        return counts


def load(run_dir: str | Path) -> RunRecord:
    """Read a run folder's manifest and results (metrics load lazily via ``.metrics``); ``dir`` is resolved."""
    return _read(Path(run_dir).resolve())


def _read(path: Path) -> RunRecord:
    if not (path / MANIFEST).is_file():
        raise FileNotFoundError(f"{path} is not a run folder (no {MANIFEST})")
    return RunRecord(path, read_json(path / MANIFEST), read_json(path / RESULTS))


def find_same(outputs: Path, notebook: str, params: dict[str, Any]) -> RunRecord | None:
    """The newest run of ``notebook`` under ``outputs`` with exactly these parameters: a finished
    (``ok``) one if any, else the newest interrupted or failed one (to resume); None when none.
    This is how a sweep resumes: finished runs are reused, interrupted ones continued."""
    same = [r for r in find_runs(outputs, notebook)
            if json.dumps(r.params, sort_keys=True) == json.dumps(plain_params(params), sort_keys=True)
            and r.status != "running"]
    ok = [r for r in same if r.status == "ok"]
    return (ok or same or [None])[-1]


def plain_params(params: dict[str, Any]) -> Any:
    """``params`` as the manifest stores them (a JSON round trip)."""
    return json.loads(json.dumps(params, default=str))


def find_runs(outputs: Path, notebook: str | None = None) -> list[RunRecord]:
    """Every run under ``outputs`` (optionally one notebook's), oldest first; folders whose name starts with
    ``_`` (the run cache, hand runs' scratch folders) are not runs.  Each record's ``dir`` is the folder as found
    under ``outputs`` (``outputs/<notebook>/<id>``, symlinks not resolved), so paths relative to ``outputs`` hold
    when ``outputs`` or a folder in it is a symlink."""
    pattern = f"{notebook or '*'}/*/{MANIFEST}"
    runs = [_read(p.parent) for p in Path(outputs).absolute().glob(pattern)
            if not p.parent.parent.name.startswith("_")]
    return sorted(runs, key=lambda r: (r.manifest.get("start_time") or "", r.dir.name))
