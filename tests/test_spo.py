"""SPO's drift phase: NaN on a first visit, zero while the policy has not moved, positive once it has;
its store survives a checkpoint round trip; the single_stream estimator reads it."""

from __future__ import annotations

import math

import torch
from conftest import SPECIALS
from rlbook.data.tasks import make_task
from rlbook.mechanisms import rewards
from rlbook.policy.models import tiny_llama, wrap_lora
from rlbook.training.trainer import Trainer

TASK = {"name": "chain_sum", "config": {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1},
        "train_size": 3, "eval_size": 4, "system_prompt": None}


@rewards.register("test_spo_lowercase_share")
def _lowercase_share(completions, problems, *, task):  # in [0, 1], varies between samples
    return [sum(ch.islower() for ch in c) / max(len(c), 1) for c in completions]


def make(tok, lr: float) -> Trainer:
    model = wrap_lora(tiny_llama(vocab_size=len(SPECIALS) + 95, seed=0, init_std=0.2), {"r": 4, "alpha": 8}, seed=0)
    cfg = {"steps": 4, "prompts_per_step": 3, "group_size": 1, "max_new_tokens": 6, "lr": lr,
           "estimator": "single_stream", "phases": [{"name": "spo_drift"}],
           "rewards": [{"name": "test_spo_lowercase_share"}]}
    return Trainer(model, tok, make_task(TASK), cfg, progress=False)


def test_drift_is_nan_on_first_visit_zero_when_policy_is_unchanged_and_positive_after_an_update(tok):
    frozen = make(tok, lr=0.0)
    first = frozen.step()
    assert math.isnan(first["spo_drift"])  # every prompt is new
    second = frozen.step()  # 3 prompts, train_size 3: the same prompts again, the policy has not moved
    assert abs(second["spo_drift"]) < 1e-4
    moving = make(tok, lr=5e-2)
    moving.step()
    assert moving.step()["spo_drift"] > 1e-3


def test_drift_store_survives_a_checkpoint_round_trip(tok):
    t = make(tok, lr=1e-2)
    t.step()
    (_, phase), = t.phases
    state = t.state_dict()
    fresh = make(tok, lr=1e-2)
    fresh.load_state_dict(state)
    (_, restored), = fresh.phases
    assert restored.stored == phase.stored and len(phase.stored) == 3
    assert all(len(ids) == len(lp) > 0 for ids, lp in phase.stored.values())
    assert torch.isfinite(torch.tensor([x for _, lp in phase.stored.values() for x in lp])).all()
