"""Continual post-training: forgetting metrics by hand, instance filtering, task mixing, stage chaining, a sequence."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from rlbook.core.errors import ParamError
from rlbook.data.tasks import make_task
from rlbook.pipelines import continual
from rlbook.policy.models import tiny_llama, wrap_lora

GCD = {"name": "gcd", "config": {"min_value": 1, "max_value": 20}, "train_size": 12, "eval_size": 4}
PROD = {"name": "products", "config": {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1},
        "train_size": 12, "eval_size": 4}


def test_cl_metrics_by_hand():
    # after T1 (0.60, 0.20, 0.30); after T2 (0.65, 0.70, 0.25); after T3 (0.35, 0.50, 0.80)
    # AA = (0.35 + 0.50 + 0.80) / 3 = 0.55; BWT = ((0.35 - 0.60) + (0.50 - 0.70)) / 2 = -0.225
    # FM = ((max(0.60, 0.65) - 0.35) + (0.70 - 0.50)) / 2 = 0.25  (not -BWT: task 1 improved after T2)
    a = np.array([[0.1, 0.1, 0.1], [0.60, 0.20, 0.30], [0.65, 0.70, 0.25], [0.35, 0.50, 0.80]])
    m = continual.cl_metrics(a)
    assert m["AA"] == pytest.approx(0.55) and m["BWT"] == pytest.approx(-0.225) and m["FM"] == pytest.approx(0.25)
    with pytest.raises(ValueError, match="N \\+ 1"):
        continual.cl_metrics(a[1:])


def test_rif_keeps_instances_with_mixed_rollouts():
    acc = np.array([0.0, 0.25, 1.0, 0.5, 0.0])
    assert continual.rif_keep(acc).tolist() == [False, True, False, True, False]
    assert continual.rif_keep(acc, 0.0, 1.01).tolist() == [False, True, True, True, False]


def test_task_mix_interleaves_reindexes_and_scores_with_the_right_task():
    a, b = make_task(GCD), make_task(PROD)
    mix = continual.TaskMix([(a, a.train[:3]), (b, b.train[:2])])
    assert [p.index for p in mix.train] == [0, 1, 2, 3, 4]
    assert [p.question for p in mix.train] == [a.train[0].question, b.train[0].question, a.train[1].question,
                                               b.train[1].question, a.train[2].question]
    for p in mix.train:  # the gold answer scores 1 under its own task's verifier, whatever its new index
        assert mix.score(p, p.answer) == 1.0
    with pytest.raises(ParamError):
        continual.TaskMix([(a, [])])


def test_gold_text_follows_the_answer_format():
    assert continual.gold_text("4", "plain") == "4" and continual.gold_text("4", "tag") == "<answer>4</answer>"


def test_next_stage_reference_is_the_model_the_stage_starts_from():
    model = wrap_lora(tiny_llama(vocab_size=98, seed=0, init_std=0.2), {"r": 4, "alpha": 8}, seed=0)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.3)
    x = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        trained = model(input_ids=x).logits
        with model.disable_adapter():
            base = model(input_ids=x).logits
    nxt = continual.next_stage_model(model, {"r": 4, "alpha": 8}, seed=1)
    with torch.no_grad():
        start = nxt(input_ids=x).logits  # fresh adapter (B = 0)
        with nxt.disable_adapter():
            ref = nxt(input_ids=x).logits
    assert not torch.allclose(trained, base, atol=1e-3)
    assert torch.allclose(start, trained, atol=1e-4) and torch.allclose(ref, trained, atol=1e-4)


def _fake_study():
    # 2 tasks (a, b) + probe p, 2 problems each; base row, then one arm's two stages
    base = {"a": [0, 0], "b": [0, 1], "p": [1, 1]}
    rows = [{"after": "a", "correct": {"a": [1, 1], "b": [0, 1], "p": [1, 0]}},
            {"after": "b", "correct": {"a": [1, 0], "b": [1, 1], "p": [0, 0]}}]
    return {"base": base, "tasks": ["a", "b"], "probes": ["p"],
            "runs": {("SFT", 0): {"rows": rows, "stages": [{"kind": "sft"}, {"kind": "sft"}]},
                     ("MT", 0): {"rows": rows[1:], "stages": [{"kind": "multitask", "zero_adv_group_frac": 0.5}]}}}


def test_forgetting_tables_by_hand():
    t = continual.forgetting_tables(_fake_study())
    bwt = [r["value"] for r in t["backward_transfer"] if r["method"] == "SFT"]
    assert bwt == [0.0, -1.0]  # task a: final (1, 0) minus after its stage (1, 1)
    gain = [r["value"] for r in t["stage_gain"] if r["method"] == "SFT"]
    assert gain == [1.0, 1.0, 1.0, 0.0]  # a: (1,1)-(0,0); b: (1,1)-(0,1)
    assert [r["value"] for r in t["probe_change"] if r["method"] == "SFT"] == [-1.0, -1.0]
    assert not [r for r in t["backward_transfer"] if r["method"] == "MT"]  # one stage: no backward transfer
    assert len([r for r in t["final_accuracy"] if r["method"] == "MT"]) == 4
    m = continual.metrics_table(_fake_study())
    assert m == [{"method": "SFT", "seed": 0, "AA": 0.75, "BWT": -0.5, "FM": 0.5}]
    assert continual.zero_advantage_table(_fake_study()) == [{"method": "MT", "seed": 0, "value": 0.5}]


def test_arm_rejects_bad_settings():
    with pytest.raises(ParamError, match="allowed"):
        continual.Arm(kind="ppo")
    with pytest.raises(ParamError, match="data"):
        continual.Arm(kind="sft", sft={"data": "distilled"})
    with pytest.raises(ParamError, match="GRPO"):
        continual.Arm(kind="sft", rif={"k": 4})


def test_a_short_sequence_on_the_tiny_model(tok):
    tasks = {"gcd": make_task(GCD), "products": make_task(PROD)}

    def factory():
        return tiny_llama(vocab_size=98, seed=0, init_std=0.2), tok

    kw = {"lora": {"r": 4, "alpha": 8}, "train": {"steps": 1, "prompts_per_step": 2, "group_size": 2,
                                                   "max_new_tokens": 4}, "seed": 0, "eval_size": 2,
          "eval_max_new_tokens": 4}
    sft = continual.run_sequence(factory, continual.Arm(kind="sft", sft={"lr": 1e-3}), tasks, {}, **kw)
    assert [r["after"] for r in sft["rows"]] == ["gcd", "products"]
    assert sft["stages"][0]["examples"] == 2 and set(sft["rows"][1]["correct"]) == {"gcd", "products"}
    rif = continual.run_sequence(factory, continual.Arm(kind="grpo", train={"kl_coef": 0.01},
                                                        rif={"k": 2, "pool": 4}), tasks, {}, **kw)
    assert rif["stages"][0]["rif_pool"] == 4 and rif["stages"][0]["steps"] == 1
    mt = continual.run_sequence(factory, continual.Arm(kind="multitask"), tasks, {}, **kw)
    assert [r["after"] for r in mt["rows"]] == ["multitask"] and mt["stages"][0]["steps"] == 2
