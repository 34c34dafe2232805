"""The implicit PRM: a second adapter on the policy's base weights (one copy), its loss, scores, online update,
checkpoint and exact resume; the accuracy-band filter."""

from __future__ import annotations

import math

import pytest
import torch
from rlbook.data.tasks import make_task
from rlbook.mechanisms import filters, prm
from rlbook.mechanisms.presets import method_train
from rlbook.policy.models import adapter_parameters, tiny_llama, use_adapter, wrap_lora
from rlbook.policy.rollout import slice_rows, token_logprobs
from rlbook.training.trainer import Trainer

TASK = {"name": "chain_sum", "config": {"min_terms": 3, "max_terms": 3, "min_digits": 1, "max_digits": 1},
        "train_size": 40, "eval_size": 8, "system_prompt": None}
TIMING = {"gen_s", "train_s", "step_s", "gen_tok_s", "train_tok_s"}


def prime_trainer(tok, steps: int = 3, **prm_kwargs) -> Trainer:
    model = wrap_lora(tiny_llama(vocab_size=98, seed=0, init_std=0.2), {"r": 4, "alpha": 8}, seed=0)
    cfg = {**method_train("prime"), "steps": steps, "prompts_per_step": 2, "group_size": 4, "max_new_tokens": 8,
           "micro_batch_size": 3, "lr": 1e-2, "rewards": [{"name": "correct"}, {"name": "test_prm_lowercase"}],
           "filters": [], "checkpoint_every": 1}
    cfg["phases"] = [{"name": "implicit_prm", "kwargs": {"beta": 0.05, "lr": 5e-2, **prm_kwargs}}]
    torch.manual_seed(0)
    return Trainer(model, tok, make_task(TASK), cfg, progress=False)


@pytest.fixture(autouse=True)
def _lowercase_reward():
    from rlbook.mechanisms import rewards

    if "test_prm_lowercase" not in rewards.available():
        @rewards.register("test_prm_lowercase")
        def _lower(completions, problems, *, task):  # mixed outcomes for the tiny model
            return [float(sum(ch.islower() for ch in c) >= 3) for c in completions]
    yield


def test_ce_loss_and_dpo_accuracy_by_hand():
    # beta 0.05, sums of q 4, -3, 3 -> beta * sum = 0.2, -0.15, 0.15 -> p = 0.549834, 0.462570, 0.537430
    # labels 1, 0, 1: -ln .549834 = .598139; -ln(1 - .462570) = .620957; -ln .537430 = .620957; mean .613351
    loss = prm.ce_loss(torch.tensor([4.0, -3.0, 3.0]), torch.tensor([1.0, 0.0, 1.0]), 0.05)
    assert float(loss) == pytest.approx(0.613351, abs=1e-6)
    # group 1: scores [3, 1, 2], labels [1, 0, 0]: pairs (0,1) and (0,2) ordered like the labels, (1,2) same label
    # -> 1.0; group 2: every label equal -> 0.5; mean 0.75
    acc = prm.dpo_accuracy(torch.tensor([[3.0, 1.0, 2.0], [1.0, 2.0, 3.0]]), torch.tensor([[1, 0, 0], [1, 1, 1]]))
    assert acc == pytest.approx(0.75)
    # wrong order: scores [1, 3], labels [1, 0] -> 0
    assert prm.dpo_accuracy(torch.tensor([[1.0, 3.0]]), torch.tensor([[1, 0]])) == 0.0


def test_accuracy_band_filter_keeps_groups_between_bounds_inclusive():
    # K = 4: correct counts 0..4 -> accuracy 0, .25, .5, .75, 1 -> keep the middle three
    c4 = torch.tensor([[i < n for i in range(4)] for n in range(5)])
    assert filters.apply("accuracy_band", c4.float(), {"correct": c4}).tolist() == [False, True, True, True, False]
    # K = 8: counts 1, 2, 6, 7 -> .125, .25, .75, .875 -> keep 2 and 6 of 8
    c8 = torch.tensor([[i < n for i in range(8)] for n in (1, 2, 6, 7)])
    assert filters.apply("accuracy_band", c8.float(), {"correct": c8}).tolist() == [False, True, True, False]


def test_prm_adapter_shares_the_base_weights_one_copy(tok):
    model = wrap_lora(tiny_llama(vocab_size=98, seed=0, init_std=0.2), {"r": 4, "alpha": 8}, seed=0)
    base = {n: p.data_ptr() for n, p in model.named_parameters() if "lora_" not in n}
    n_before = sum(p.numel() for p in model.parameters())
    cfg = {**method_train("prime"), "steps": 1, "prompts_per_step": 2, "group_size": 4, "max_new_tokens": 8,
           "filters": []}
    trainer = Trainer(model, tok, make_task(TASK), cfg, progress=False)
    after = {n: p.data_ptr() for n, p in model.named_parameters() if "lora_" not in n}
    assert after == base  # the same base tensors, not a copy
    prm_params = adapter_parameters(model, "prm")
    policy = adapter_parameters(model, "default")
    assert len(prm_params) == len(policy) > 0
    assert sum(p.numel() for p in model.parameters()) - n_before == sum(p.numel() for p in prm_params.values())
    # the trainer's optimizer holds the policy adapter only; the PRM's optimizer the PRM adapter only
    phase = trainer.phases[0][1]
    opt_ids = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    assert opt_ids == {id(p) for p in policy.values()}
    assert {id(p) for p in phase.params} == {id(p) for p in prm_params.values()}


def test_fresh_prm_gives_zero_rewards_and_loss_ln2_then_learns_alone(tok):
    trainer = prime_trainer(tok, update="after")
    batch = trainer.collect()
    trainer.add_context(batch)
    policy_before = {n: p.detach().clone() for n, p in adapter_parameters(trainer.model, "default").items()}
    base_before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora_" not in n}
    phase = trainer.phases[0][1]
    m = phase.run(trainer, batch)
    # update="after": the scores come from the PRM before its step, which equals the reference exactly
    assert torch.count_nonzero(batch.context["token_rewards"]) == 0
    assert m["prm_loss"] == pytest.approx(math.log(2.0), abs=1e-6)
    for _ in range(5):
        m = phase.run(trainer, batch)
    assert m["prm_loss"] < math.log(2.0) - 1e-3  # the CE loss went down on this batch
    assert torch.count_nonzero(batch.context["token_rewards"]) > 0
    for n, p in adapter_parameters(trainer.model, "default").items():
        assert torch.equal(p, policy_before[n]), n  # the PRM's update leaves the policy alone
    for n, p in trainer.model.named_parameters():
        if "lora_" not in n:
            assert torch.equal(p, base_before[n]), n  # and the shared base weights
    # step rewards are the sums of the token rewards over each step (Q_k - Q_{k-1})
    tr_sum = batch.context["token_rewards"].sum(-1)
    assert torch.allclose(batch.context["step_rewards"].sum(-1), tr_sum, atol=1e-6)
    # update="after" scored with the PRM before this last step: recompute beta * log(pi_prm / pi_ref) after it and
    # check the next "none" scores equal it, row 0, by a plain forward pass of each model
    phase.update = "none"
    phase.run(trainer, batch)
    ids, att, cmask, lc = slice_rows(batch.roll, [0])
    with torch.no_grad():
        with use_adapter(trainer.model, "prm"):
            lp_prm, _ = token_logprobs(trainer.model, ids, att, lc)
        with trainer.model.disable_adapter():
            lp_ref, _ = token_logprobs(trainer.model, ids, att, lc)
    want = 0.05 * (lp_prm - lp_ref)[0] * cmask[0]
    assert torch.allclose(batch.context["token_rewards"][0, 0, :lc], want, atol=1e-5)
    assert trainer.model.active_adapter == "default"


def test_policy_update_leaves_the_prm_alone(tok):
    trainer = prime_trainer(tok)
    prm_before = {n: p.detach().clone() for n, p in adapter_parameters(trainer.model, "prm").items()}
    phase = trainer.phases[0][1]
    phase.update = "none"  # freeze it: only the policy moves
    trainer.step()
    for n, p in adapter_parameters(trainer.model, "prm").items():
        assert torch.equal(p, prm_before[n]), n


def _metrics(history):
    return [{k: v for k, v in m.items() if k not in TIMING} for m in history]


def _same(a, b) -> bool:
    return (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)) or a == b


def test_prm_checkpoints_with_the_policy_and_resumes_exactly(tok, tmp_path):
    alone = prime_trainer(tok)
    want = _metrics(alone.fit())
    first = prime_trainer(tok)
    first.fit(steps=2, checkpoint_dir=tmp_path)  # checkpoints at steps 1 and 2
    resumed = prime_trainer(tok)
    got = _metrics(resumed.fit(steps=3, checkpoint_dir=tmp_path))
    assert resumed.resumed_from_step == 2 and len(got) == 3
    assert any(m["prm_loss"] != want[0]["prm_loss"] for m in want[1:])  # the PRM changed along the way
    for g, w in zip(got, want, strict=True):
        assert g.keys() == w.keys() and all(_same(g[k], w[k]) for k in g), (g, w)
    for name in ("prm", "default"):
        a, b = adapter_parameters(alone.model, name), adapter_parameters(resumed.model, name)
        assert all(torch.equal(a[n], b[n]) for n in a), name
    pa, pb = alone.phases[0][1], resumed.phases[0][1]
    assert pa.updates == pb.updates == 3
    sa, sb = pa.optimizer.state_dict()["state"], pb.optimizer.state_dict()["state"]
    assert all(torch.equal(sa[i]["exp_avg"], sb[i]["exp_avg"]) for i in sa)


def test_offline_warmup_counts_its_tokens_and_leaves_the_rng(tok):
    trainer = prime_trainer(tok, update="none", warmup_prompts=4, warmup_epochs=2, warmup_rows=8)
    m = trainer.step()
    assert m["extra_gen_tokens"] > 0 and "prm_warmup_loss" in m
    assert trainer.phases[0][1].warmed and trainer.phases[0][1].updates == 2 * 2  # 16 rows / 8 per step, 2 epochs
    plain = prime_trainer(tok, update="none")
    m2 = plain.step()
    assert m2["accuracy"] == m["accuracy"] and m2["gen_tokens"] == m["gen_tokens"]  # same rollouts: RNG untouched
    assert trainer.generated_tokens == m["gen_tokens"] + m["extra_gen_tokens"]
