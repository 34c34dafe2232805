"""`make gpu-check` (benchmarks/gpu_check.py): the plan it runs, and its failures named in the JSON.  The GPU run
itself needs a GPU machine; these tests check the script on a CPU machine."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
gpu_check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_check)


def test_dry_run_plans_env_device_bench_and_a_few_gpu_steps_offline(tmp_path):
    out = tmp_path / "plan.json"
    assert gpu_check.main(["--dry-run", "--wheels", str(tmp_path / "w"), "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    plan = report["plan"]
    assert list(plan) == ["env", "device", "bench", "notebook"] and report["ok"] is None
    assert all("--no-index" in c and str(tmp_path / "w") in c for c in plan["env"][1:])  # no network
    assert "--device cuda" in plan["bench"][0]
    assert "run quickstart --profile gpu" in plan["notebook"][0] and "train.steps=3" in plan["notebook"][0]


def test_missing_wheels_fail_with_the_command_that_makes_them(tmp_path):
    out = tmp_path / "r.json"
    assert gpu_check.main(["--wheels", str(tmp_path / "none"), "--out", str(out)]) == 1
    report = json.loads(out.read_text())
    assert "make gpu-wheels" in report["error"] and report["ok"] is False


def test_a_failing_step_is_recorded_and_stops_the_step(tmp_path):
    res = gpu_check.run_step([["python3", "-c", "import sys; sys.exit(3)"], ["python3", "-c", "print(1)"]], 30, {})
    assert res["ok"] is False and res["returncode"] == 3 and len(res["commands"]) == 2 and "stdout_tail" in res
