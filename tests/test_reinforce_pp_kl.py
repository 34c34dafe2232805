"""REINFORCE++ with its KL penalty in the token reward (estimators.reinforce_pp_kl) and the trainer's
``token_log_ratio`` context provider."""

from __future__ import annotations

import math

import pytest
import torch
from rlbook.core.errors import ParamError
from rlbook.data.tasks import make_task
from rlbook.mechanisms import estimators as E
from rlbook.mechanisms import rewards
from rlbook.mechanisms.presets import method_train
from rlbook.policy.models import tiny_llama, wrap_lora
from rlbook.training.trainer import Trainer

torch.set_num_threads(1)


@rewards.register("test_kl_lowercase")
def _lowercase(completions, problems, *, task):  # varies within groups of the tiny model: the policy moves
    return [sum(ch.islower() for ch in c) / 8 for c in completions]


def test_returns_subtract_the_kl_to_go_then_whiten_over_tokens_hand_computed():
    # rewards [1, 0], lengths [2, 1], k1 [[0.5, 0.5], [1.0, -]], kl_coef 0.1
    # returns: 1 - 0.1 (0.5 + 0.5) = 0.9, 1 - 0.1 * 0.5 = 0.95, 0 - 0.1 * 1.0 = -0.1
    # mean over 3 tokens 0.58333; deviations 0.31667, 0.36667, -0.68333; Bessel var 0.70167 / 2 = 0.35083
    # sd 0.59231: A = 0.53463, 0.61904, -1.15367; 0 beyond the second completion's one token
    a = E.compute("reinforce_pp_kl", torch.tensor([[1.0, 0.0]]),
                  {"lengths": torch.tensor([[2.0, 1.0]]), "token_log_ratio": torch.tensor([[[0.5, 0.5], [1.0, 7.0]]])},
                  kl_coef=0.1)
    assert a.shape == (1, 2, 2)
    assert a[0, 0].tolist() == pytest.approx([0.53463, 0.61904], abs=1e-4)
    assert a[0, 1].tolist() == pytest.approx([-1.15367, 0.0], abs=1e-4)


def test_without_kl_it_is_the_token_weighted_whitening_of_reinforce_pp():
    # kl_coef 0: every token of completion i carries r_i, so the token whitening is reinforce_pp's
    r, lengths = torch.tensor([[1.0, 0.0, 0.0, 1.0]]), torch.tensor([[3.0, 1.0, 2.0, 2.0]])
    ratio = torch.randn(1, 4, 3)
    a = E.compute("reinforce_pp_kl", r, {"lengths": lengths, "token_log_ratio": ratio}, kl_coef=0.0)
    ref = E.compute("reinforce_pp", r, {"lengths": lengths})
    for i in range(4):
        n = int(lengths[0, i])
        assert torch.allclose(a[0, i, :n], ref[0, i].expand(n), atol=1e-6)
        assert torch.all(a[0, i, n:] == 0)


def test_negative_kl_coef_is_a_param_error():
    with pytest.raises(ParamError, match="kl_coef"):
        E.compute("reinforce_pp_kl", torch.rand(1, 2), {"lengths": torch.ones(1, 2),
                                                         "token_log_ratio": torch.zeros(1, 2, 1)}, kl_coef=-1.0)


def test_the_preset_puts_the_kl_in_the_reward_not_in_the_loss():
    cfg = method_train("reinforce_pp")
    assert cfg["estimator"] == "reinforce_pp_kl" and cfg["estimator_kwargs"] == {"kl_coef": 1e-4}
    assert cfg["kl_coef"] == 0.0


def test_trainer_provides_token_log_ratios_zero_at_the_start_then_nonzero(tok):
    task = make_task({"name": "chain_sum", "config": {"min_terms": 2, "max_terms": 2, "min_digits": 1,
                      "max_digits": 1}, "train_size": 20, "eval_size": 4, "system_prompt": None})
    cfg = {"steps": 3, "prompts_per_step": 2, "group_size": 4, "max_new_tokens": 6, "lr": 0.05,
           "estimator": "reinforce_pp_kl", "estimator_kwargs": {"kl_coef": 0.05},
           "rewards": [{"name": "test_kl_lowercase"}]}
    torch.manual_seed(0)
    model = wrap_lora(tiny_llama(vocab_size=98, seed=0, init_std=0.2), {"r": 4, "alpha": 8}, seed=0)
    trainer = Trainer(model, tok, task, cfg, progress=False)
    first = trainer.step()
    assert first["token_kl"] == 0.0  # a fresh LoRA adapter (B = 0) is the reference itself
    trainer.step()
    batch = trainer.roll_out([0, 1])
    trainer.add_context(batch)
    ratio, lengths = batch.context["token_log_ratio"], batch.lengths
    assert ratio.shape[:2] == (2, 4) and ratio.shape[2] == batch.roll.completion_mask.shape[1]
    beyond = torch.arange(ratio.shape[2]) >= lengths.unsqueeze(-1)
    assert torch.all(ratio[beyond] == 0) and ratio.abs().sum() > 0
    assert math.isfinite(batch.metrics["token_kl"])
