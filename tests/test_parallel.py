"""rlbook.training.parallel: a sweep's missing runs trained by worker processes are the runs one process trains."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from rlbook.training import experiments, parallel
from rlbook.training.experiments import RunSpec

TASK = {"name": "chain_sum", "config": {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1},
        "train_size": 20, "eval_size": 4, "system_prompt": None}
TRAIN = {"steps": 2, "prompts_per_step": 2, "group_size": 3, "max_new_tokens": 4, "micro_batch_size": 6,
         "gen_batch_size": 8, "eval_size": 4}


def spec(label: str, **train) -> RunSpec:
    return RunSpec(label=label, train={**TRAIN, **train}, task=TASK, lora={"r": 2, "alpha": 4}, model="tiny-random")


def test_two_worker_processes_train_the_runs_one_process_trains(tmp_path):
    specs = [spec("GRPO"), spec("RLOO", estimator="rloo")]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the workers' thread count, so that both compute the same floats
    try:
        serial = experiments.sweep(specs, seeds=2, cache=tmp_path / "serial", progress=False)
    finally:
        torch.set_num_threads(threads)
    keys = parallel.prefill(specs, 2, tmp_path / "parallel", jobs=2, threads=1, progress=False)
    assert keys == {s.key(seed) for s in specs for seed in (0, 1)}
    par = experiments.sweep(specs, seeds=2, cache=tmp_path / "parallel", progress=False)
    assert par.trained == 0 and par.reused == 4  # everything was in the cache
    cols = ["method", "seed", "step", "reward_mean", "accuracy", "response_length", "loss", "gen_tokens"]
    pd.testing.assert_frame_equal(serial.metrics[cols], par.metrics[cols])
    assert serial.final["final_accuracy"].tolist() == par.final["final_accuracy"].tolist()
    assert parallel.prefill(specs, 2, tmp_path / "parallel", jobs=2, progress=False) == set()  # nothing left


def test_one_job_or_one_run_leaves_the_sweep_to_train(tmp_path):
    assert parallel.prefill([spec("GRPO")], 2, tmp_path, jobs=1) == set()
    assert parallel.prefill([spec("GRPO")], 1, tmp_path, jobs=4) == set()
    assert not any(tmp_path.iterdir())  # no model loaded, no base evaluation made


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_jobs_from_the_environment_must_be_a_count(value, monkeypatch):
    monkeypatch.setenv("RLBOOK_JOBS", value)
    with pytest.raises(ValueError, match=f"RLBOOK_JOBS='{value}' must be a whole number >= 1"):
        parallel.jobs_from_env()
    monkeypatch.setenv("RLBOOK_JOBS", "3")
    assert parallel.jobs_from_env() == 3
    monkeypatch.delenv("RLBOOK_JOBS")
    assert parallel.jobs_from_env() == 1
