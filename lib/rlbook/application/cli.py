"""``rlbook run / check / list / resume / cache / tasks / export``: execute notebooks into run folders, check
them, list them, choose tasks, manage the run cache, export a method.

``rlbook run NOTEBOOK [--profile P] [--params FILE] [-p key=value ...] [--outputs DIR]`` resolves the
parameters (:mod:`rlbook.training.params`) and plans every method (:func:`rlbook.training.experiments.plan`: presets, mechanisms,
hyper-parameters, group widths; a bad one is a one-line error, exit 2, nothing written), makes a
run folder (:mod:`rlbook.training.runs`), executes ``notebooks/NOTEBOOK.ipynb`` there with papermill, renders
``report.html``, marks the manifest ``ok`` / ``failed`` / ``interrupted`` and rebuilds
``outputs/index.html``.  Exit codes: 0 ok, 1 failed, 2 usage error, 130 SIGINT, 143 SIGTERM.

``rlbook check [NOTEBOOK ...] [--profile P | --all]`` does the same resolution and planning for any notebooks
and profiles (default: every notebook, its defaults) without running anything.

``rlbook tasks`` lists the task presets (with their last measured base accuracy) and every
reasoning-gym task; ``rlbook tasks --probe NAME [-p key=value ...]`` measures the base model on one
task configuration (:mod:`rlbook.analysis.probe`) and says whether GRPO gets any signal there.

``rlbook resume RUN_FOLDER`` (or ``rlbook run NOTEBOOK --resume RUN_FOLDER``) continues an interrupted
or failed run in the same folder with the parameters its manifest recorded: the previous executed
notebook and report are kept as ``<nb>.ipynb.attempt-N`` / ``report.html.attempt-N``, the manifest
records ``attempt``, ``resumed_from_step`` and ``previous_attempts``, and the notebook's trainer
(``checkpoint_dir=run.checkpoint_dir``) continues from the last checkpoint.  A run that finished
``ok`` is reused as it is (exit 0).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import sys
import traceback
from pathlib import Path
from types import FrameType
from typing import Any

from rlbook.application.pages import clean_outputs, write_index, write_report  # noqa: F401  (clean_outputs: re-exported)
from rlbook.core import threads
from rlbook.core.config import ParamError
from rlbook.training import params as P
from rlbook.training import runs

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class Terminated(KeyboardInterrupt):
    """Raised in the CLI process by SIGTERM so that it unwinds like Ctrl-C."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


def _install_sigterm() -> Any:
    """Route SIGTERM to :class:`Terminated`; returns the previous handler (None off the main thread)."""
    try:
        return signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # signal handlers can only be set from the main thread
        return None


def _error(msg: str) -> int:
    print(f"rlbook: error: {msg}", file=sys.stderr)
    return 2


def _outputs(args: argparse.Namespace, root: Path | None) -> Path:
    if args.outputs:
        return Path(args.outputs).expanduser().resolve()
    return (root or P.find_root()) / "outputs"


# ---------------------------------------------------------------- rlbook run


def kernel_name() -> str:
    """The Jupyter kernel ``rlbook`` if registered, else ``python3``."""
    from jupyter_client.kernelspec import KernelSpecManager

    return "rlbook" if "rlbook" in KernelSpecManager().find_kernel_specs() else "python3"


# Stream the notebook's own output (training progress bars, printed metrics) to the terminal while it
# runs; ``--quiet`` shows only the cell counter.
LOG_OUTPUT = True


# Kernel arguments: the kernel's own log (e.g. "Kernel is running over TCP without encryption", which is about a
# kernel on localhost that only papermill talks to) shows errors only; the notebook's warnings are not affected.
KERNEL_ARGS = ["--IPKernelApp.log_level=ERROR"]


def _papermill(notebook_in: Path, notebook_out: Path, parameters: dict[str, Any]) -> None:
    import papermill

    # Each output line once: papermill's log_output would log every stderr line (as a warning) on top of the copy
    # written to stderr_file.  The kernel draws text progress bars (RLBOOK_PROGRESS=text, rlbook.core.progress) that
    # a terminal shows, not widgets.
    os.environ["RLBOOK_PROGRESS"] = "text"
    papermill.execute_notebook(
        str(notebook_in),
        str(notebook_out),
        parameters=parameters,
        kernel_name=kernel_name(),
        progress_bar=not LOG_OUTPUT,
        log_output=False,
        stdout_file=sys.stdout if LOG_OUTPUT else None,
        stderr_file=sys.stderr if LOG_OUTPUT else None,
        cwd=str(notebook_in.parent),
        extra_arguments=KERNEL_ARGS,
    )


def execute(notebook_in: Path, run_dir: Path, params: dict[str, Any], profile: str | None) -> int:
    """Run the notebook into ``run_dir``, render the report, mark the manifest; returns the exit code."""
    from papermill.exceptions import PapermillExecutionError

    status, error, tb, code = "ok", None, None, 0
    previous = _install_sigterm()
    try:
        _papermill(
            notebook_in, run_dir / notebook_in.name, {**params, "run_dir": str(run_dir), "profile": profile}
        )
    except PapermillExecutionError as e:
        status, code = ("interrupted", 130) if e.ename == "KeyboardInterrupt" else ("failed", 1)
        error, tb = f"{e.ename}: {e.evalue}", ANSI.sub("", "\n".join(e.traceback))
    except Terminated:
        status, error, code = "interrupted", "terminated by SIGTERM", 143
    except KeyboardInterrupt:
        status, error, code = "interrupted", "interrupted by SIGINT", 130
    except Exception as e:  # kernel failed to start, notebook unreadable, ...
        status, error, tb, code = "failed", f"{type(e).__name__}: {e}", traceback.format_exc(), 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    _finish_run(run_dir, notebook_in.name, status, error, tb)
    return code


def _finish_run(run_dir: Path, nb_file: str, status: str, error: str | None, tb: str | None) -> None:
    manifest = runs.finish(run_dir, status, error=error, traceback=tb)
    if (run_dir / nb_file).is_file():
        try:
            write_report(run_dir / nb_file, run_dir / "report.html", manifest)
        except Exception as e:  # a report problem must not hide the run's own status
            print(f"rlbook: warning: report.html not written: {e}", file=sys.stderr)
    print(f"rlbook: {status}: {run_dir}" + (f"\n  {error}" if error else ""), file=sys.stderr)
    if (run_dir / "report.html").is_file():
        print(f"report: {run_dir / 'report.html'}")


def _set_jobs(jobs: int) -> str | None:
    """``--jobs N``: the notebook's sweeps train N runs at once (:mod:`rlbook.training.parallel`), through the
    kernel's environment; an error message for N < 1."""
    if jobs < 1:
        return f"--jobs {jobs} must be at least 1 (training processes at once; 1 trains one run at a time)"
    if jobs > (os.cpu_count() or 1):
        print(f"rlbook: warning: --jobs {jobs} is more than the {os.cpu_count()} cores here; each job is a process "
              "with its own copy of the model", file=sys.stderr)
    os.environ["RLBOOK_JOBS"] = str(jobs)
    return None


def cmd_run(args: argparse.Namespace) -> int:
    if (bad := _set_jobs(args.jobs)) is not None:
        return _error(bad)
    if args.resume is not None:
        given = [flag for flag, v in (("--profile", args.profile), ("--params", args.params), ("-p", args.p)) if v]
        if given:
            return _error(f"--resume continues a run with the parameters it recorded; drop {', '.join(given)}")
        return resume(args.resume, args.notebook, args.outputs)
    try:
        root = P.find_root()
        names = P.available(root / "notebooks")
        if args.notebook not in names:
            return _error(f"unknown notebook {args.notebook!r}; available: {', '.join(names) or '(none)'}")
        if args.params is not None and not Path(args.params).is_file():
            return _error(f"--params {args.params}: no such file")
        params = P.resolve(args.notebook, args.profile, args.params, args.p, params_dir=root / "params")
        plan(params)  # every method resolved and checked before a folder or a model exists
    except ParamError as e:
        return _error(str(e))
    outputs = _outputs(args, root)
    if args.reuse:  # a sweep: a finished run with these params is reused, an interrupted one resumed
        previous = runs.find_same(outputs, args.notebook, params)
        if previous is not None:
            return resume(previous.dir, args.notebook, outputs)
    run_dir, _ = runs.create(
        args.notebook,
        params,
        outputs,
        root,
        profile=args.profile,
        interactive=False,
        params_file=str(args.params) if args.params else None,
        overrides=list(args.p),
        jobs=args.jobs,
    )
    print(f"rlbook: running {args.notebook} into {run_dir}", file=sys.stderr)
    try:
        return execute(root / "notebooks" / f"{args.notebook}.ipynb", run_dir, params, args.profile)
    finally:
        write_index(outputs)


def plan(params: dict[str, Any]) -> dict[str, Any]:
    """The run plan of resolved parameters (:func:`rlbook.training.experiments.plan`): ``{table: [RunSpec, ...]}``."""
    from rlbook.training import experiments

    return experiments.plan(params)


# ---------------------------------------------------------------- rlbook check


def check_one(notebook: str, profile: str | None, overrides: list[str], params_dir: Path) -> str:
    """Resolve ``notebook``'s parameters under ``profile`` and plan every method, as ``rlbook run`` does before it
    starts; a one-line summary (raises ``ParamError``)."""
    tables = plan(P.resolve(notebook, profile, None, overrides, params_dir=params_dir))
    parts = []
    for key, specs in tables.items():
        widths = [f"{s.label} group_size={s.train_config(0).group_size} (sampler {s.train_config(0).sampler})"
                  for s in specs if s.train.get("group_size", 0) is None]
        parts.append(f"{key}: {len(specs)}" + (f" [{'; '.join(widths)}]" if widths else ""))
    return ", ".join(parts) or "no method tables"


def cmd_check(args: argparse.Namespace) -> int:
    """``rlbook check [NOTEBOOK ...] [--profile P | --all]``: everything ``rlbook run`` checks before it starts
    (parameters, every method's presets, mechanisms, hyper-parameters and group widths), for each notebook and
    profile, without a run folder or a model.  Exit 0 when all pass, 2 when one does not."""
    if args.profile and args.all:
        return _error("give --profile P or --all, not both")
    try:
        root = P.find_root()
        names = P.available(root / "notebooks")
        unknown = [n for n in args.notebooks if n not in names]
        if unknown:
            return _error(f"unknown notebook {unknown[0]!r}; available: {', '.join(names) or '(none)'}")
    except ParamError as e:
        return _error(str(e))
    failed = 0
    for name in args.notebooks or names:
        try:
            profiles = list(P.load_file(name, root / "params")["profiles"]) if args.all else [args.profile]
        except ParamError as e:
            profiles, failed = [], failed + 1
            print(f"FAIL {name}: {e}")
        for profile in profiles:
            try:
                print(f"ok   {name} {profile or 'defaults'}: {check_one(name, profile, args.p, root / 'params')}")
            except ParamError as e:
                failed += 1
                print(f"FAIL {name} {profile or 'defaults'}: {e}")
    if failed:
        return _error(f"{failed} notebook/profile pair(s) failed the check")
    return 0


# ---------------------------------------------------------------- rlbook list and index.html


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def headline_text(rec: runs.RunRecord) -> str:
    parts = [f"{k}={_fmt(v)}" for k, v in rec.headline().items()]
    verdicts = rec.verdicts()
    if verdicts:
        parts.append("claims: " + ", ".join(f"{n} {v}" for v, n in verdicts.items()))
    return "  ".join(parts)


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join([*(c.ljust(w) for c, w in zip(r, widths, strict=False)), r[-1]]) for r in rows)


def cmd_list(args: argparse.Namespace) -> int:
    try:
        outputs = _outputs(args, None)
    except ParamError as e:
        return _error(str(e))
    records = runs.find_runs(outputs, args.notebook)
    if not records:
        print(f"no runs under {outputs}")
        return 0
    rows = [["notebook", "run id", "status", "profile", "wall s", "headline"]]
    for rec in records:
        m = rec.manifest
        wall = "-" if m.get("wall_s") is None else f"{m['wall_s']:.1f}"
        rows.append(
            [rec.notebook, rec.dir.name, rec.status, m.get("profile") or "-", wall, headline_text(rec)]
        )
    print(_table(rows))
    return 0


# ---------------------------------------------------------------- rlbook resume, parser, main


def resume(run_folder: str | Path, notebook: str | None = None, outputs: Path | None = None) -> int:
    """Continue the run in ``run_folder`` (see the module docstring); returns the exit code."""
    run_dir = Path(run_folder).expanduser().resolve()
    if not (run_dir / runs.MANIFEST).is_file():
        return _error(f"{run_dir} is not a run folder (no {runs.MANIFEST})")
    rec = runs.load(run_dir)
    name, status = rec.notebook, rec.status
    if notebook is not None and notebook != name:
        return _error(f"{run_dir} is a run of {name!r}, not {notebook!r}")
    if status == "ok":
        print(f"rlbook: {run_dir} finished ok; reusing it (nothing to resume)", file=sys.stderr)
        return 0
    if status == "running":
        m = rec.manifest
        return _error(f"{run_dir} is still running (pid {m.get('pid')} on {m.get('host')}); stop it first")
    try:
        root = P.find_root()
    except ParamError as e:
        return _error(str(e))
    nb_in = root / "notebooks" / f"{name}.ipynb"
    if not nb_in.is_file():
        return _error(f"cannot resume {run_dir}: notebook {nb_in} not found")
    from rlbook.training.checkpoint import latest_step

    m = rec.manifest
    attempt = int(m.get("attempt") or 1)
    for fname in (f"{name}.ipynb", "report.html"):  # nothing lost: keep the previous attempt's files
        if (run_dir / fname).exists():
            os.replace(run_dir / fname, run_dir / f"{fname}.attempt-{attempt}")
    previous = {k: m.get(k) for k in ("status", "error", "traceback", "pid", "host", "end_time")}
    earlier = sum(a.get("wall_s") or 0.0 for a in m.get("previous_attempts") or [])
    previous.update(attempt=attempt, start_time=m.get("attempt_start_time") or m.get("start_time"),
                    wall_s=None if m.get("wall_s") is None else m["wall_s"] - earlier, status=status)
    step = latest_step(run_dir / runs.CHECKPOINTS)
    runs.update_manifest(
        run_dir,
        status="running",
        pid=os.getpid(),
        host=socket.gethostname(),
        attempt=attempt + 1,
        attempt_start_time=runs.now_utc().isoformat(timespec="milliseconds"),
        resumed_from_step=step,
        previous_attempts=[*(m.get("previous_attempts") or []), previous],
        end_time=None,
        wall_s=None,
        error=None,
        traceback=None,
    )
    where = f"from checkpoint step {step}" if step else "from the start (no checkpoint)"
    print(f"rlbook: resuming {name} in {run_dir} {where} (attempt {attempt + 1})", file=sys.stderr)
    try:
        return execute(nb_in, run_dir, rec.params, m.get("profile"))
    finally:
        write_index(Path(outputs).expanduser().resolve() if outputs else run_dir.parent.parent)


def cmd_cache(args: argparse.Namespace) -> int:
    """``rlbook cache [--prune [--all]]``: list the cached training runs (stale ones marked), or prune them."""
    from rlbook.core import cache
    from rlbook.training import experiments

    root = Path(args.root).expanduser().resolve() if args.root else experiments.cache_root()
    if args.prune:
        gone = cache.prune(root, everything=args.all)
        freed = sum(e["bytes"] for e in gone) / 1e6
        print(f"pruned {len(gone)} entries ({freed:.1f} MB) from {root}")
        return 0
    rows = [["key", "label", "seed", "state", "MB", "finished"]]
    for e in cache.entries(root):
        rows.append([e["key"], str(e["label"]), str(e["seed"]), e["state"], f"{e['bytes'] / 1e6:.1f}",
                     e["finished"] or "-"])
    if len(rows) == 1:
        print(f"no cached runs under {root}")
        return 0
    print(_table(rows))
    stale = sum(1 for r in rows[1:] if r[3] != "ok")
    print(f"{len(rows) - 1} entries under {root}; current code version {cache.code_version()}"
          + (f"; {stale} stale or unfinished: `rlbook cache --prune` deletes them" if stale else ""))
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    if (bad := _set_jobs(args.jobs)) is not None:
        return _error(bad)
    return resume(args.run_folder, None, args.outputs)


def cmd_export(args: argparse.Namespace) -> int:
    """``rlbook export NOTEBOOK --method NAME --to trl|verl``: the logic is :mod:`rlbook.application.export`."""
    from rlbook.application.export import export

    try:
        root = P.find_root()
        names = P.available(root / "notebooks")
        if args.notebook not in names:
            return _error(f"unknown notebook {args.notebook!r}; available: {', '.join(names) or '(none)'}")
        path = export(args.notebook, args.method, args.to, args.out, args.profile, args.p, params_dir=root / "params")
    except ParamError as e:
        return _error(str(e))
    print(f"rlbook: wrote {path}")
    return 0


# ---------------------------------------------------------------- rlbook tasks


def cmd_tasks(args: argparse.Namespace) -> int:
    from rlbook.analysis import probe

    try:
        root = P.find_root()
    except ParamError:
        root = None
    results = root / probe.RESULTS_FILE if root is not None else None
    if args.probe is None:
        if args.p:
            return _error("-p needs --probe NAME")
        print(probe.list_text(results))
        return 0
    try:
        spec, mnt = probe.task_from_cli(args.probe, args.p)
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        res = probe.probe(spec, max_new_tokens=mnt or args.max_new_tokens, n_eval=args.n_eval,
                          n_prompts=args.prompts, group_size=args.group_size, temperature=args.temperature,
                          seed=args.seed, model_name=args.model)
    except ParamError as e:
        return _error(str(e))
    if args.probe in probe.preset_names():
        res["preset"] = args.probe
    print(probe.format_report(res))
    if args.save:
        probe.save_result(res, args.save)
        print(f"saved: {args.save}")
    return 0


# ---------------------------------------------------------------- rlbook power


def cmd_power(args: argparse.Namespace) -> int:
    from rlbook.analysis import power

    try:
        root = P.find_root()
        names = sorted(p.stem for p in (root / "notebooks").glob("*.ipynb")) if args.all else args.notebook
        if not names:
            return _error("name one or more notebooks, or --all")
        for name in names:
            params = P.resolve(name, args.profile, params_dir=root / "params")
            spec = power.load_spec(name, params, root)
            if spec is None:
                print(f"== {name}: no study spec (no claims to plan)")
                continue
            table = power.power_table(spec, params, args.profile, _outputs(args, root))
            print(f"== {name} ({args.profile or 'defaults'} profile)")
            print(power.format_table(table) if len(table) else "  (no claims)")
    except ParamError as e:
        return _error(str(e))
    return 0


# ---------------------------------------------------------------- rlbook scoreboard


def cmd_scoreboard(args: argparse.Namespace) -> int:
    from rlbook.application import scoreboard

    try:
        root = P.find_root()
        outputs = _outputs(args, root)
    except ParamError as e:
        return _error(str(e))
    md, page = scoreboard.write(outputs, args.profile, root)
    print(md.read_text())
    print(f"rlbook: wrote {md} and {page}")
    return 0


JOBS_HELP = ("train N of a sweep's runs at once, each in its own process with cores/N torch threads (default 1); "
             "about 2.5 GB of memory per job for the 135M policy")


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--outputs", type=Path, help="outputs folder (default: outputs/ at the repo root)")
    common.add_argument("--quiet", action="store_true", help="show only a cell counter, not the notebook's output")
    top = argparse.ArgumentParser(prog="rlbook", description="Run rlbook notebooks into run folders.")
    sub = top.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", parents=[common], help="execute a notebook into a new run folder")
    run.add_argument("notebook", help="name of notebooks/NOTEBOOK.ipynb")
    run.add_argument("--profile", help="a profile of params/NOTEBOOK.yaml (smoke, cpu, gpu)")
    run.add_argument("--params", type=Path, help="YAML file of parameter values merged after the profile")
    run.add_argument("-p", action="append", default=[], metavar="KEY=VALUE", help="override (YAML value)")
    run.add_argument("--resume", metavar="RUN_FOLDER", help="continue this interrupted run of NOTEBOOK instead")
    run.add_argument("--reuse", action="store_true",
                     help="if a run with the same parameters exists: reuse it when ok, else resume it (sweeps)")
    run.add_argument("--jobs", type=int, default=1, metavar="N", help=JOBS_HELP)
    run.set_defaults(func=cmd_run)
    chk = sub.add_parser("check", help="resolve and check notebooks' parameters and methods without running them")
    chk.add_argument("notebooks", nargs="*", metavar="NOTEBOOK", help="notebooks to check (default: every one)")
    chk.add_argument("--profile", help="a profile of params/NOTEBOOK.yaml (default: the defaults)")
    chk.add_argument("--all", action="store_true", help="every profile of each notebook")
    chk.add_argument("-p", action="append", default=[], metavar="KEY=VALUE", help="override (YAML value)")
    chk.set_defaults(func=cmd_check)
    lst = sub.add_parser("list", parents=[common], help="list run folders")
    lst.add_argument("notebook", nargs="?", help="only this notebook's runs")
    lst.set_defaults(func=cmd_list)
    res = sub.add_parser("resume", parents=[common], help="continue an interrupted or failed run in its folder")
    res.add_argument("run_folder")
    res.add_argument("--jobs", type=int, default=1, metavar="N", help=JOBS_HELP)
    res.set_defaults(func=cmd_resume)
    cch = sub.add_parser("cache", help="list the cached training runs; --prune deletes stale and unfinished ones")
    cch.add_argument("--root", help="the cache folder (default: $RLBOOK_RUNS_CACHE or outputs/_cache/runs)")
    cch.add_argument("--prune", action="store_true", help="delete stale (made by other code) and unfinished entries")
    cch.add_argument("--all", action="store_true", help="with --prune: delete every entry")
    cch.set_defaults(func=cmd_cache)
    exp = sub.add_parser("export", help="write a notebook's method as a TRL script or a verl config (scale out)")
    exp.add_argument("notebook", help="name of notebooks/NOTEBOOK.ipynb")
    exp.add_argument("--method", help="a label of the notebook's methods, or a method preset name")
    exp.add_argument("--to", required=True, choices=("trl", "verl"), help="the engine")
    exp.add_argument("--profile", help="a profile of params/NOTEBOOK.yaml (smoke, cpu, gpu)")
    exp.add_argument("-p", action="append", default=[], metavar="KEY=VALUE", help="override (YAML value)")
    exp.add_argument("--out", help="file (trl) or folder (verl) to write; default exports/NOTEBOOK-METHOD-ENGINE")
    exp.set_defaults(func=cmd_export)
    pwr = sub.add_parser("power", parents=[common],
                         help="before training: each claim's paper effect, the mde at a profile, seeds x units for 80%% power")
    pwr.add_argument("notebook", nargs="*", help="notebooks/NOTEBOOK.ipynb names")
    pwr.add_argument("--profile", help="a profile of params/NOTEBOOK.yaml (smoke, cpu, gpu)")
    pwr.add_argument("--all", action="store_true", help="every notebook")
    pwr.set_defaults(func=cmd_power)
    scb = sub.add_parser("scoreboard", parents=[common],
                         help="every notebook's primary claim and verdict from outputs/ (scoreboard.md and .html)")
    scb.add_argument("--profile", help="prefer each notebook's newest run of this profile")
    scb.set_defaults(func=cmd_scoreboard)
    tsk = sub.add_parser("tasks", help="list tasks; --probe NAME measures the base model on one configuration")
    tsk.add_argument("--probe", metavar="NAME", help="a preset or reasoning-gym task to measure")
    tsk.add_argument("-p", action="append", default=[], metavar="KEY=VALUE",
                     help="task override: config.KEY=V, answer_format=tag, instruction=..., max_new_tokens=N")
    tsk.add_argument("--max-new-tokens", type=int, default=32, help="when neither the preset nor -p sets it")
    tsk.add_argument("--n-eval", type=int, default=100, help="held-out problems decoded greedily")
    tsk.add_argument("--prompts", type=int, default=32, help="train prompts sampled G times (0: skip)")
    tsk.add_argument("--group-size", type=int, default=8, help="G samples per prompt")
    tsk.add_argument("--temperature", type=float, default=1.0)
    tsk.add_argument("--seed", type=int, default=0)
    tsk.add_argument("--model", default="smollm2-135m-instruct")
    tsk.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    tsk.add_argument("--save", type=Path, help="append the result as one JSON line to this file")
    tsk.set_defaults(func=cmd_tasks)
    return top


def main(argv: list[str] | None = None) -> int:
    global LOG_OUTPUT
    threads.configure()  # before torch is imported, here and in the notebooks' kernels (rlbook.core.threads)
    args = parser().parse_args(argv)
    LOG_OUTPUT = not getattr(args, "quiet", False)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
