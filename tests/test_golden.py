"""The trainer reproduces, number for number, the per-step metrics of the trainer before the refactor into
phases and registries (commit 3421196), on the tiny model: plain GRPO, and ACE + KL + two inner epochs +
periodic evaluation (reference pass, log-ratio pass, clipping).  Wall-clock columns are left out; columns added
since (:data:`ADDED`) are allowed, every old column keeps its value and its place in the order.

Integers (counts, lengths, the sampled tokens behind them) must be equal.  Floats are compared with a tolerance
(:data:`REL_TOL`, :data:`ABS_TOL`) chosen from measured cross-kernel differences: the recording was made on
another CPU, and on an AMD EPYC with torch 2.13 the same computation run with ``ATEN_CPU_CAPABILITY`` =
avx512 / avx2 / default and with 1 or 2 torch threads (six runs) gave every column within 6.0e-7 absolute and
1.4e-6 relative of the recording, and within 8.6e-7 absolute of each other (2026-12-06; the largest: ``adv_std``
1.6067224 vs 1.6067230 at ``default``, ``grad_norm`` between avx512 and default at 2 threads); columns below
0.01 in magnitude matched exactly.  The relative tolerance leaves a margin of about 70x; the absolute one only
matters near zero.  A real change of the path (a different token sampled, a different loss) moves the numbers
by far more, and integer columns must still be equal.  The thread count is pinned to 1
(the recording's); the SIGKILL/resume tests (``test_resume.py``, ``test_interrupt.py``) stay bit-identical
within one machine."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from conftest import SPECIALS, char_tokenizer
from rlbook.data.tasks import make_task
from rlbook.mechanisms import rewards
from rlbook.policy.models import tiny_llama, wrap_lora
from rlbook.training.trainer import Trainer

GOLDEN = Path(__file__).parent / "fixtures" / "golden" / "trainer_metrics_3421196.json"
TASK = {"name": "chain_sum", "config": {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1},
        "train_size": 40, "eval_size": 8, "system_prompt": None}
WALL = {"gen_s", "gen_tok_s", "train_s", "train_tok_s", "step_s"}
ADDED = {"truncated_frac", "clip_frac_late", "gen_rollouts", "nonzero_adv_frac"}  # diagnostics added after the refactor (issue: claims need them)
REL_TOL, ABS_TOL = 1e-4, 1e-6  # measured: <= 1.4e-6 relative, <= 6.0e-7 absolute across CPU kernels and threads
CONFIGS = {"grpo": {}, "kl_ace_2epochs": {"estimator": "ace", "kl_coef": 0.05, "inner_epochs": 2, "eval_every": 2}}


@rewards.register("golden_lowercase")
def _lowercase(completions, problems, *, task):
    return [sum(ch.islower() for ch in c) / 8 for c in completions]


def _same(a: object, b: object) -> bool:
    """Equal integers and strings; floats within the measured cross-kernel tolerance (NaN equals NaN)."""
    if isinstance(a, float) or isinstance(b, float):
        if not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
            return False
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=ABS_TOL)
    return a == b


def test_tolerance_tells_a_kernel_difference_from_a_change():
    assert _same(1.6067224, 1.6067230) and _same(0.21616218984127045, 0.2161622066050768) and _same(3, 3)
    assert not _same(1.6067, 1.6077) and not _same(3, 4) and not _same(0.0, 1e-5) and not _same(float("nan"), 0.0)


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
