"""The trainer reproduces, number for number, the per-step metrics of the trainer before the refactor into
phases and registries (commit 3421196), on the tiny model: plain GRPO, and ACE + KL + two inner epochs +
periodic evaluation (reference pass, log-ratio pass, clipping).  Wall-clock columns are left out; columns added
since (:data:`ADDED`) are allowed, every old column keeps its value and its place in the order."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from conftest import SPECIALS, char_tokenizer
from rlbook import rewards
from rlbook.models import tiny_llama, wrap_lora
from rlbook.tasks import make_task
from rlbook.trainer import Trainer

GOLDEN = Path(__file__).parent / "fixtures" / "golden" / "trainer_metrics_3421196.json"
TASK = {"name": "chain_sum", "config": {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1},
        "train_size": 40, "eval_size": 8, "system_prompt": None}
WALL = {"gen_s", "gen_tok_s", "train_s", "train_tok_s", "step_s"}
ADDED = {"truncated_frac", "clip_frac_late", "gen_rollouts", "nonzero_adv_frac"}  # diagnostics added after the refactor (issue: claims need them)
CONFIGS = {"grpo": {}, "kl_ace_2epochs": {"estimator": "ace", "kl_coef": 0.05, "inner_epochs": 2, "eval_every": 2}}


@rewards.register("golden_lowercase")
def _lowercase(completions, problems, *, task):
    return [sum(ch.islower() for ch in c) / 8 for c in completions]


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_trainer_metrics_equal_those_before_the_refactor(name):
    torch.set_num_threads(1)
    model = wrap_lora(tiny_llama(vocab_size=len(SPECIALS) + 95, seed=0, init_std=0.2), {"r": 4, "alpha": 8}, seed=0)
    cfg = {"steps": 3, "prompts_per_step": 3, "group_size": 4, "max_new_tokens": 8, "micro_batch_size": 5,
           "gen_batch_size": 8, "lr": 1e-2, "eval_size": 8,
           "rewards": [{"name": "golden_lowercase"}, {"name": "correct", "weight": 0.5}], **CONFIGS[name]}
    history = Trainer(model, char_tokenizer(), make_task(TASK), cfg, progress=False).fit()
    expected = json.loads(GOLDEN.read_text())[name]
    got = [{k: v for k, v in m.items() if k not in WALL} for m in history]
    for g, e in zip(got, expected, strict=True):
        assert set(g) - set(e) <= ADDED, set(g) - set(e)
        assert [k for k in g if k in e] == list(e)  # the old columns, in the old order
    for step, (g, e) in enumerate(zip(got, expected, strict=True), 1):
        bad = {k: (g[k], e[k]) for k in e if not _same(g[k], e[k])}
        assert not bad, f"step {step}: {bad}"
