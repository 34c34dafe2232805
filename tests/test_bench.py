"""benchmarks/bench_trainer.py: argument parsing, the same-work check, and a tiny end-to-end run."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "bench_trainer.py"


def _load():
    spec = importlib.util.spec_from_file_location("bench_trainer", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_trainer"] = mod
    spec.loader.exec_module(mod)
    return mod


bench = _load()


def test_defaults_match_rlbook_train_config():
    from rlbook.core.config import TrainConfig

    cfg, path = bench.parse_args(["--device", "cpu"])
    t = TrainConfig()
    assert path is None
    assert (cfg.prompts, cfg.group_size, cfg.max_new_tokens) == (t.prompts_per_step, t.group_size, t.max_new_tokens)
    assert (cfg.micro_batch, cfg.temperature, cfg.lr) == (t.micro_batch_size, t.temperature, t.lr)
    assert cfg.batch_size == 64 and cfg.grad_accum == 4 and cfg.sides == ("trl", "rlbook")


def test_parse_args_options(tmp_path):
    cfg, path = bench.parse_args([
        "--steps", "2", "--prompts", "4", "--group-size", "4", "--max-new-tokens", "8", "--micro-batch", "8",
        "--device", "cpu", "--only", "trl", "--json", str(tmp_path / "r.json"),
    ])
    assert (cfg.steps, cfg.prompts, cfg.group_size, cfg.max_new_tokens, cfg.micro_batch) == (2, 4, 4, 8, 8)
    assert cfg.grad_accum == 2 and cfg.sides == ("trl",) and path == tmp_path / "r.json"


@pytest.mark.parametrize(
    "argv",
    [["--micro-batch", "5"], ["--group-size", "1"], ["--steps", "0"], ["--only", "vllm"]],
)
def test_parse_args_rejects(argv, capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(["--device", "cpu", *argv])


def _rec(side, i, gen, trained, seqs=4, warmup=False):
    return bench.StepRecord(side=side, index=i, warmup=warmup, seconds=1.0 + i, gen_seqs=seqs, gen_tokens=gen,
                            train_seqs=seqs, train_tokens=trained, gen_s=0.5, train_s=0.5)


def test_same_work_check():
    ok = [_rec("trl", 0, 999, 1, warmup=True), _rec("trl", 1, 60, 60), _rec("rlbook", 1, 56, 56)]
    res = bench.check_same_work(ok, expected_seqs=4, tolerance=0.25)
    assert res["same_work"], res["problems"]  # the warm-up step is not checked
    assert res["trl"]["gen_tokens_per_step"] == [60] and res["rlbook"]["mean_gen_tokens_per_step"] == 56

    bad = [_rec("trl", 1, 60, 50), _rec("rlbook", 1, 20, 20, seqs=3)]
    res = bench.check_same_work(bad, expected_seqs=4, tolerance=0.25)
    assert not res["same_work"]
    text = " ".join(res["problems"])
    assert "trained 50 + skipped 0 tokens but generated 60" in text
    assert "generated 3 sequences" in text and "differ by" in text


def test_same_work_check_counts_skipped_zero_advantage_samples_as_done():
    skip = _rec("rlbook", 1, 60, 40, seqs=4)
    skip.train_seqs, skip.skipped_seqs, skip.skipped_tokens = 3, 1, 20
    res = bench.check_same_work([_rec("trl", 1, 60, 60), skip], expected_seqs=4, tolerance=0.25)
    assert res["same_work"], res["problems"]
    skip.skipped_tokens = 10  # tokens neither trained nor skipped: not the same work
    assert not bench.check_same_work([_rec("trl", 1, 60, 60), skip], expected_seqs=4, tolerance=0.25)["same_work"]


def test_results_and_ratio():
    recs = [_rec("trl", 0, 60, 60), _rec("rlbook", 0, 60, 60), _rec("trl", 1, 60, 60), _rec("rlbook", 1, 60, 60)]
    for r in recs:
        r.seconds = 4.0 if r.side == "trl" else 2.0
    cfg = bench.BenchConfig(steps=2, warmup=0, prompts=2, group_size=2, micro_batch=2)
    res = bench.build_results(cfg, recs, errors={})
    assert res["trl_s_per_step"] == 4.0 and res["rlbook_s_per_step"] == 2.0 and res["ratio"] == 2.0
    assert res["trl"]["gen_tokens_per_s"] == 120.0  # 120 tokens over 2 x 0.5 s
    json.dumps(res)  # serialisable as written by --json


def test_tiny_end_to_end(tmp_path):
    """Both trainers (or TRL alone while rlbook.training.trainer is missing) on a random tiny Llama: ~15 s."""
    pytest.importorskip("trl")
    out = tmp_path / "bench.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, str(SCRIPT), "--tiny", "--device", "cpu", "--steps", "2", "--prompts", "2",
           "--group-size", "2", "--max-new-tokens", "4", "--micro-batch", "2", "--no-skip", "--json", str(out)]
    if importlib.util.find_spec("rlbook.training.trainer") is None:
        cmd += ["--only", "trl"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads(out.read_text())
    assert {"rlbook_s_per_step", "trl_s_per_step", "ratio", "config", "device"} <= set(res)
    assert res["trl_s_per_step"] > 0 and res["config"]["tiny"] is True
    assert res["trl"]["mean_gen_tokens_per_step"] == 16  # 4 sequences x 4 tokens: a random model never stops
    assert res["work_check"]["same_work"], res["work_check"]["problems"]
    if "--only" not in cmd:
        assert res["ratio"] > 0 and res["rlbook"]["mean_train_tokens_per_step"] == 16
