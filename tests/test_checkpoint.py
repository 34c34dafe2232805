"""Checkpoints (rlbook.training.checkpoint), in-process exact resume, non-finite steps and out-of-memory retries."""

from __future__ import annotations

import csv
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SPECIALS
from rlbook.data.tasks import make_task
from rlbook.mechanisms import rewards
from rlbook.policy.models import tiny_llama, wrap_lora
from rlbook.training import checkpoint
from rlbook.training.trainer import Trainer, TrainingError

TASK = {"name": "chain_sum", "config": {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1},
        "train_size": 24, "eval_size": 4, "system_prompt": None}
TIMING = {"gen_s", "train_s", "step_s", "gen_tok_s", "train_tok_s"}


@rewards.register("test_ckpt_lowercase")
def _lowercase(completions, problems, *, task):
    return [sum(ch.islower() for ch in c) / 8 for c in completions]


@rewards.register("test_ckpt_nan")
def _nan(completions, problems, *, task):
    return [float("nan")] * len(completions)


def make_trainer(tok, tmp: Path | None = None, **cfg) -> Trainer:
    base = {"steps": 4, "prompts_per_step": 2, "group_size": 4, "max_new_tokens": 6, "micro_batch_size": 3,
            "gen_batch_size": 8, "rewards": [{"name": "test_ckpt_lowercase"}], "eval_size": 4, "lr": 1e-2,
            "estimator": "single_stream", "kl_coef": 0.05, "eval_every": 2, "checkpoint_every": 1}
    base.update(cfg)
    model = wrap_lora(tiny_llama(vocab_size=len(SPECIALS) + 95, seed=0, init_std=0.2), {"r": 4, "alpha": 8,
                                                                                       "dropout": 0.1}, seed=0)
    return Trainer(model, tok, make_task(TASK), base, progress=False,
                   metrics_path=tmp / "metrics.csv" if tmp else None,
                   checkpoint_dir=tmp / "checkpoints" if tmp else None)


def strip(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in m.items() if k not in TIMING} for m in history]


def same(a: list[dict], b: list[dict]) -> bool:
    """Equal metrics, NaN equal to NaN."""
    def eq(x, y):
        return x == y or (isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y))
    return len(a) == len(b) and all(m.keys() == n.keys() and all(eq(m[k], n[k]) for k in m) for m, n in zip(a, b, strict=False))


def adapter(trainer: Trainer) -> dict[str, torch.Tensor]:
    return checkpoint.trainable_state(trainer)


def test_rng_state_round_trip():
    state = checkpoint.rng_state()
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    checkpoint.set_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_exact_resume_in_process_and_metrics_not_duplicated(tok, tmp_path):
    full = make_trainer(tok, tmp_path / "full")
    expected = full.fit()
    assert len(expected) == 4 and checkpoint.latest_step(tmp_path / "full" / "checkpoints") == 4

    part = make_trainer(tok, tmp_path / "part")
    part.fit(steps=2)  # "killed" after step 2's checkpoint ...
    part.step()  # ... with one more step recorded in metrics.csv but never checkpointed
    assert len((tmp_path / "part" / "metrics.csv").read_text().splitlines()) == 4

    resumed = make_trainer(tok, tmp_path / "part")
    history = resumed.fit()
    assert resumed.resumed_from_step == 2 and [m["step"] for m in history] == [1, 2, 3, 4]
    assert same(strip(history), strip(expected))
    a, b = adapter(full), adapter(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rows = list(csv.DictReader(open(tmp_path / "part" / "metrics.csv")))
    assert [r["step"] for r in rows] == ["1", "2", "3", "4"]
    assert len(resumed.estimator_state) == len(full.estimator_state) > 0


def test_checkpoint_contents_keep_two_and_latest_pointer(tok, tmp_path):
    trainer = make_trainer(tok, tmp_path, eval_every=0)
    trainer.fit(steps=3)
    folder = tmp_path / "checkpoints"
    assert [p.name for p in checkpoint.step_dirs(folder)] == ["step-000002", "step-000003"]
    assert (folder / "latest").read_text().strip() == "step-000003"
    step = folder / "step-000003"
    assert {p.name for p in step.iterdir()} == {"adapter.safetensors", "optimizer.pt", "state.pt"}
    state = torch.load(step / "state.pt", weights_only=True)
    assert state["step_count"] == 3 and len(state["history"]) == 3
    assert state["sampler"]["cursor"] == 6 and state["components"]["estimator"]["prompt_ids"].numel() > 0
    assert set(state["rng"]) == {"python", "numpy", "torch", "cuda"}
    assert torch.load(step / "optimizer.pt", weights_only=True)["state"]


def test_interrupted_save_leaves_previous_checkpoint(tok, tmp_path, monkeypatch):
    trainer = make_trainer(tok, tmp_path, eval_every=0)
    trainer.fit(steps=2)
    folder = tmp_path / "checkpoints"
    trainer.step()

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # as if the process died in the middle of the write

    monkeypatch.setattr(checkpoint.torch, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(trainer, folder)
    monkeypatch.undo()
    assert checkpoint.latest(folder) == folder / "step-000002" and not list(folder.glob("tmp-*"))
    # a SIGKILL leaves the temporary folder behind, and the pointer may be stale or garbage
    (folder / "tmp-dead").mkdir()
    (folder / "tmp-dead" / "adapter.safetensors").write_bytes(b"partial")
    (folder / "latest").write_text("step-000099\n")
    assert checkpoint.latest(folder) == folder / "step-000002"
    fresh = make_trainer(tok, eval_every=0)
    assert checkpoint.load(fresh, folder) == 2 and fresh.step_count == 2 and len(fresh.history) == 2
    checkpoint.save(trainer, folder)
    assert not (folder / "tmp-dead").exists() and checkpoint.latest_step(folder) == 3


def test_load_rejects_a_checkpoint_of_another_model(tok, tmp_path):
    trainer = make_trainer(tok, tmp_path, eval_every=0)
    trainer.fit(steps=1)
    other = Trainer(wrap_lora(tiny_llama(vocab_size=len(SPECIALS) + 95, seed=0), {"r": 2, "alpha": 4,
                                                                                  "target_modules": ["q_proj"]}),
                    tok, make_task(TASK), {"steps": 1}, progress=False)
    with pytest.raises(ValueError, match="does not match the model"):
        checkpoint.load(other, tmp_path / "checkpoints")


def test_no_checkpoint_means_a_fresh_start(tok, tmp_path):
    trainer = make_trainer(tok, tmp_path, eval_every=0)
    assert checkpoint.load(trainer, tmp_path / "checkpoints") == 0 and trainer.step_count == 0


# ---------------------------------------------------------------- non-finite steps


def test_non_finite_steps_are_skipped_counted_and_fail_after_k(tok, capsys):
    trainer = make_trainer(tok, rewards=[{"name": "test_ckpt_nan"}], skip_zero_advantage=False,
                           estimator="grpo", kl_coef=0.0, eval_every=0, max_bad_steps=2)
    before = [p.detach().clone() for p in trainer.params]
    m = trainer.step()
    assert m["skipped_step"] == 1
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.params, strict=True))
    assert "step 1: non-finite loss" in capsys.readouterr().out
    with pytest.raises(TrainingError, match=r"2 consecutive steps with a non-finite loss or gradient \(last at step 2\)"):
        trainer.step()


# ---------------------------------------------------------------- out of memory


def _oom_once(fn, error: Exception, times: int = 1):
    calls = {"n": 0}

    def wrapped(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] <= times:
            raise error
        return fn(*args, **kwargs)

    return wrapped, calls


def test_generation_oom_retries_once_with_half_the_batch(tok, capsys):
    ref = make_trainer(tok, eval_every=0, estimator="grpo", kl_coef=0.0)
    trainer = make_trainer(tok, eval_every=0, estimator="grpo", kl_coef=0.0)
    trainer.generate, calls = _oom_once(trainer.generate, torch.OutOfMemoryError("CUDA out of memory"))
    m, m_ref = trainer.step(), ref.step()
    assert calls["n"] == 2 and trainer.cfg.gen_batch_size == 4
    assert trainer.sampler.state_dict() == ref.sampler.state_dict()  # the retry drew the same prompts
    assert m["step"] == m_ref["step"] == 1
    assert "out of memory during generation with train.gen_batch_size=8; retrying with train.gen_batch_size=4" in \
        capsys.readouterr().out


def test_training_oom_retries_then_fails_clearly(tok):
    trainer = make_trainer(tok, eval_every=0, estimator="grpo", kl_coef=0.0, inner_epochs=2)
    trainer.update, calls = _oom_once(trainer.update, RuntimeError("MPS backend out of memory"))
    trainer.step()
    assert calls["n"] == 2 and trainer.cfg.micro_batch_size == 1
    trainer.update, calls = _oom_once(trainer.update, torch.OutOfMemoryError("out of memory"), times=5)
    with pytest.raises(TrainingError, match="out of memory during training at step 2 with train.micro_batch_size=1"):
        trainer.step()
    trainer.cfg.micro_batch_size = 4
    with pytest.raises(TrainingError, match=r"out of memory during training at step 2: tried "
                                            r"train.micro_batch_size=4, then 2; lower train.micro_batch_size"):
        trainer.step()


def test_other_errors_are_not_retried(tok):
    trainer = make_trainer(tok, eval_every=0, estimator="grpo", kl_coef=0.0)
    trainer.generate, calls = _oom_once(trainer.generate, RuntimeError("shape mismatch"))
    with pytest.raises(RuntimeError, match="shape mismatch"):
        trainer.step()
    assert calls["n"] == 1 and trainer.cfg.gen_batch_size == 8
