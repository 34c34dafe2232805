"""The trainer on a tiny random Llama: masks, log-prob consistency with generation, learning."""

from __future__ import annotations

import math

import pytest
import torch
from rlbook.data.tasks import make_task
from rlbook.mechanisms import estimators, losses, rewards
from rlbook.policy.models import wrap_lora
from rlbook.policy.rollout import completion_mask, slice_rows, token_logprobs
from rlbook.training.trainer import Trainer

EOS = 2
TASK = {"name": "chain_sum", "config": {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1},
        "train_size": 40, "eval_size": 10, "system_prompt": None}


@rewards.register("test_lowercase")
def _lowercase(completions, problems, *, task):  # a reward the tiny model can learn in a few steps
    return [sum(ch.islower() for ch in c) / 8 for c in completions]


def make_trainer(model, tok, **cfg) -> Trainer:
    base = {"steps": 2, "prompts_per_step": 2, "group_size": 4, "max_new_tokens": 6, "micro_batch_size": 3,
            "gen_batch_size": 8, "rewards": [{"name": "test_lowercase"}], "eval_size": 4}
    base.update(cfg)
    torch.manual_seed(0)
    return Trainer(wrap_lora(model, {"r": 4, "alpha": 8}, seed=0), tok, make_task(TASK), base, progress=False)


def test_completion_mask_covers_tokens_through_first_eos_and_never_padding():
    ids = torch.tensor([[5, 6, EOS, EOS, EOS], [5, EOS, 7, EOS, 9], [5, 6, 7, 8, 9], [EOS, EOS, 3, 3, 3]])
    mask = completion_mask(ids, [EOS])
    assert mask.tolist() == [[1, 1, 1, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]]


def test_completion_mask_handles_several_eos_ids():
    ids = torch.tensor([[4, 9, 4, 2]])
    assert completion_mask(ids, [2, 9]).tolist() == [[1, 1, 0, 0]]


def _ragged_prompts(trainer) -> list[list[int]]:
    prompts = [trainer.prompt_ids(p) for p in trainer.task.train[:4]]
    prompts[1] = prompts[1][:-5]  # different prompt lengths -> real left padding
    assert len({len(p) for p in prompts}) > 1
    return prompts


def test_training_logprobs_equal_hf_generation_logprobs_under_left_padding(tiny_model, tok):
    trainer = make_trainer(tiny_model, tok, temperature=0.7, generation_backend="hf")
    prompts = _ragged_prompts(trainer)
    torch.manual_seed(1)
    roll = trainer.generate(prompts, max_new_tokens=6, do_sample=True, temperature=0.7)
    # Re-run generation with the same seed, keeping the logits of the forward passes that sampled.
    torch.manual_seed(1)
    lp = roll.prompt_len
    gen = trainer.model.generate(
        input_ids=roll.input_ids[:, :lp], attention_mask=roll.attention_mask[:, :lp], max_new_tokens=6,
        do_sample=True, temperature=0.7, top_k=0, top_p=1.0, pad_token_id=EOS, eos_token_id=[EOS],
        return_dict_in_generate=True, output_logits=True,
    )
    assert torch.equal(gen.sequences[:, lp : lp + roll.completion_ids.shape[1]], roll.completion_ids)
    gen_logits = torch.stack(gen.logits, dim=1)[:, : roll.completion_ids.shape[1]]
    gen_logp = torch.log_softmax(gen_logits.float() / 0.7, -1).gather(-1, roll.completion_ids.unsqueeze(-1)).squeeze(-1)
    ids, att, cmask, lc = slice_rows(roll, list(range(len(prompts))))
    with torch.no_grad():
        train_logp, _ = token_logprobs(trainer.model, ids, att, lc, temperature=0.7)
    m = cmask.bool()
    assert torch.allclose(train_logp[m], gen_logp[:, :lc][m], atol=1e-4)


def test_training_logprobs_equal_shared_prefill_sampler_logprobs(tiny_model, tok):
    from rlbook.policy.generation import left_pad, sample_groups

    trainer = make_trainer(tiny_model, tok, temperature=0.7, gen_batch_size=64)  # one chunk: same RNG draws
    prompts = _ragged_prompts(trainer)
    ids, att = left_pad(prompts, EOS, torch.device("cpu"))
    torch.manual_seed(3)
    comp, gen_logp, _ = sample_groups(trainer.model, ids, att, 3, 6, [EOS], EOS, temperature=0.7, return_logprobs=True)
    torch.manual_seed(3)
    roll = trainer.generate(prompts, 6, do_sample=True, temperature=0.7, group_size=3)
    assert torch.equal(roll.completion_ids, comp[:, : roll.completion_ids.shape[1]])
    ids, att, cmask, lc = slice_rows(roll, list(range(len(prompts) * 3)))
    with torch.no_grad():
        train_logp, _ = token_logprobs(trainer.model, ids, att, lc, temperature=0.7)
    m = cmask.bool()
    assert torch.allclose(train_logp[m], gen_logp[:, :lc][m], atol=1e-4)


def test_shared_prefill_greedy_matches_transformers_generate(tiny_model, tok):
    trainer = make_trainer(tiny_model, tok)
    prompts = _ragged_prompts(trainer)
    ours = trainer.generate(prompts, 8, do_sample=False, group_size=2)
    trainer.cfg.generation_backend = "hf"
    theirs = trainer.generate(prompts, 8, do_sample=False, group_size=2)
    assert torch.equal(ours.completion_ids, theirs.completion_ids) and ours.texts == theirs.texts


def test_first_inner_epoch_has_ratio_one_so_nothing_is_clipped(tiny_model, tok):
    trainer = make_trainer(tiny_model, tok, inner_epochs=1, eps_low=1e-6, eps_high=1e-6)
    m = trainer.step()
    assert m["clip_frac"] == 0.0
    from rlbook.policy.models import tiny_llama

    trainer2 = make_trainer(tiny_llama(vocab_size=98), tok, inner_epochs=3, eps_low=1e-6, eps_high=1e-6, lr=1e-2)
    m2 = trainer2.step()
    if m2["trained_tokens"] > 0:  # later epochs move the policy, so some tokens get clipped
        assert m2["clip_frac"] > 0.0


def test_all_zero_advantage_step_is_a_normal_event(tiny_model, tok):
    @rewards.register("test_constant")
    def _const(completions, problems, *, task):
        return [1.0] * len(completions)

    trainer = make_trainer(tiny_model, tok, rewards=[{"name": "test_constant"}])
    before = [p.detach().clone() for p in trainer.params]
    m = trainer.step()
    assert m["zero_adv_group_frac"] == 1.0 and m["trained_seqs"] == 0
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.params, strict=True))


def test_same_seed_gives_identical_runs_on_cpu(tok):
    from rlbook.policy.models import tiny_llama

    runs = []
    for _ in range(2):
        trainer = make_trainer(tiny_llama(vocab_size=98, seed=0), tok, lr=1e-2)
        runs.append([trainer.step() for _ in range(2)])
    for a, b in zip(*runs, strict=True):
        assert a["reward_mean"] == b["reward_mean"] and a["loss"] == b["loss"]


def test_trainer_learns_a_trivially_learnable_reward(tok):
    from rlbook.policy.models import tiny_llama

    trainer = make_trainer(tiny_llama(vocab_size=98, seed=0, init_std=0.2), tok, lr=3e-2, prompts_per_step=4, group_size=8,
                           max_new_tokens=8, micro_batch_size=16, gen_batch_size=32)
    history = [trainer.step() for _ in range(25)]
    first = sum(h["reward_mean"] for h in history[:5]) / 5
    last = sum(h["reward_mean"] for h in history[-5:]) / 5
    assert last > first + 0.3, (first, last)


def test_metrics_include_every_documented_field_and_are_written_as_they_happen(tiny_model, tok, tmp_path):
    trainer = make_trainer(tiny_model, tok, eval_every=1, kl_coef=0.05)
    trainer.metrics_path = tmp_path / "metrics.csv"
    m = trainer.step()
    for key in ["reward_mean", "reward_std", "accuracy", "response_length", "zero_adv_group_frac", "entropy", "kl",
                "clip_frac", "grad_norm", "gen_s", "gen_tok_s", "train_s", "train_tok_s", "eval_accuracy"]:
        assert key in m, key
        assert isinstance(m[key], float | int)
    assert math.isfinite(m["kl"])
    lines = (tmp_path / "metrics.csv").read_text().splitlines()
    assert len(lines) == 2 and "eval_accuracy" in lines[0]


def test_evaluate_does_not_change_the_training_random_stream(tiny_model, tok):
    trainer = make_trainer(tiny_model, tok)
    state = torch.get_rng_state()
    trainer.evaluate(n=3)
    assert torch.equal(state, torch.get_rng_state())


@pytest.mark.parametrize("bad", [{"estimator": "nope"}, {"loss": "nope"}, {"rewards": [{"name": "nope"}]}])
def test_bad_trainer_config_names_the_allowed_values(tiny_model, tok, bad):
    from rlbook.core.config import ParamError

    with pytest.raises(ParamError, match="allowed|available"):
        make_trainer(tiny_model, tok, **bad)


def test_dynamic_sampling_drops_all_same_groups_and_refills(tok):
    from rlbook.policy.models import tiny_llama

    @rewards.register("test_even_constant")
    def _even_constant(completions, problems, *, task):  # all-same groups for even problems, mixed for odd
        return [1.0 if p.index % 2 == 0 else sum(ch.islower() for ch in c) / 8 for c, p in zip(completions, problems, strict=True)]

    trainer = make_trainer(tiny_llama(vocab_size=98, seed=0, init_std=0.2), tok, group_size=4, prompts_per_step=3,
                           filters=[{"name": "dynamic_sampling", "kwargs": {"metric": "reward"}}],
                           max_sampling_rounds=10,
                           rewards=[{"name": "test_even_constant"}])
    m = trainer.step()
    assert m["dropped_groups"] > 0 and m["sampled_groups"] == 3 + m["dropped_groups"]
    assert m["zero_adv_group_frac"] == 0.0  # only informative groups were kept
    off = make_trainer(tiny_llama(vocab_size=98, seed=0, init_std=0.2), tok, group_size=4, prompts_per_step=3,
                       rewards=[{"name": "test_even_constant"}])
    m_off = off.step()
    assert m_off["dropped_groups"] == 0 and m_off["sampled_groups"] == 3


def test_rollout_cat_keeps_rows_and_masks(tiny_model, tok):
    from rlbook.policy.rollout import Rollout

    trainer = make_trainer(tiny_model, tok)
    a = trainer.generate([trainer.prompt_ids(trainer.task.train[0])] * 2, 5)
    b = trainer.generate([trainer.prompt_ids(trainer.task.train[1])[:-3]] * 3, 7)
    c = Rollout.cat([a, b], tok.pad_token_id)
    assert c.input_ids.shape[0] == 5 and c.texts == a.texts + b.texts
    assert torch.equal(c.lengths, torch.cat([a.lengths, b.lengths]))
    ids, att, cmask, lc = slice_rows(c, [0, 4])
    with torch.no_grad():
        lp_c, _ = token_logprobs(trainer.model, ids, att, lc)
        ids_b, att_b, _, lc_b = slice_rows(b, [2])
        lp_b, _ = token_logprobs(trainer.model, ids_b, att_b, lc_b)
    n = int(b.lengths[2])
    assert torch.allclose(lp_c[1, :n], lp_b[0, :n], atol=1e-5)


def test_merged_lora_generation_matches_unmerged_and_restores_base_weights(tok):
    from rlbook.policy.models import merged_lora, tiny_llama

    trainer = make_trainer(tiny_llama(vocab_size=98, seed=0, init_std=0.2), tok, lr=5e-2)
    trainer.step()  # move the LoRA weights away from their zero init
    base_before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "base_layer" in n}
    ids = torch.tensor([trainer.prompt_ids(trainer.task.train[0])])
    with torch.no_grad():
        plain = trainer.model(input_ids=ids).logits
        with merged_lora(trainer.model):
            merged = trainer.model(input_ids=ids).logits
    assert torch.allclose(plain, merged, atol=1e-5)
    with torch.no_grad(), trainer.model.disable_adapter():
        base_logits = trainer.model(input_ids=ids).logits
    assert not torch.allclose(plain, base_logits, atol=1e-4)  # the adapter does change the model
    for n, p in trainer.model.named_parameters():
        if "base_layer" in n:
            assert torch.equal(p, base_before[n]), n


def _grads_of_update(trainer, roll, rows, adv):
    captured = {}

    def capture():
        for n, p in trainer.model.named_parameters():
            if p.requires_grad:
                captured[n] = p.grad.detach().clone()

    trainer.optimizer.step = capture
    from rlbook.policy.rollout import micro_batches
    from rlbook.training.update import UpdateInputs

    batches = micro_batches(rows, roll.lengths.tolist(), trainer.cfg, trainer.whole_groups)
    m = trainer.update(UpdateInputs(roll, rows, batches, adv, {}, {}, float(roll.completion_mask.sum())))
    return m, captured


def test_optimized_training_pass_gives_the_same_loss_and_gradients_as_the_plain_one(tok):
    """Shared prompt forward + skipping zero-advantage samples + grouped micro-batches == plain path."""
    from rlbook.policy.models import tiny_llama

    trainers = {}
    for name, flags in {"plain": dict(share_prompt_forward=False, skip_zero_advantage=False, micro_batch_size=3),
                        "fast": dict(share_prompt_forward=True, skip_zero_advantage=True, micro_batch_size=8)}.items():
        t = make_trainer(tiny_llama(vocab_size=98, seed=0, init_std=0.2), tok, group_size=4, prompts_per_step=3, **flags)
        torch.manual_seed(5)
        for n, p in t.model.named_parameters():  # a non-trivial adapter, the same in both
            if "lora_B" in n:
                p.data.normal_(0, 0.1)
        trainers[name] = t
    prompts = _ragged_prompts(trainers["plain"])[:3]
    torch.manual_seed(2)
    roll = trainers["plain"].generate(prompts, 6, do_sample=True, group_size=4)
    adv = torch.randn(12)
    adv[4:8] = 0.0  # one group with zero advantage: skipped by the fast path
    m_plain, g_plain = _grads_of_update(trainers["plain"], roll, list(range(12)), adv)
    fast_rows = [r for r in range(12) if adv[r] != 0]
    m_fast, g_fast = _grads_of_update(trainers["fast"], roll, fast_rows, adv)
    assert m_plain["loss"] == pytest.approx(m_fast["loss"], abs=1e-6)
    assert g_plain.keys() == g_fast.keys() and len(g_plain) > 0
    for n in g_plain:
        assert torch.allclose(g_plain[n], g_fast[n], atol=1e-6, rtol=1e-4), n


@pytest.mark.parametrize("name", estimators.available())
def test_every_registered_estimator_runs_a_real_training_step(tok, name):
    from rlbook.mechanisms.presets import PRESETS
    from rlbook.policy.models import tiny_llama

    # an estimator that reads a phase's signals (process rewards, Monte Carlo values) runs with its preset's phases
    preset = next((p.train for p in PRESETS.values() if p.train.get("estimator") == name), {})
    phases = preset.get("phases", [])
    # a phase that fills free slots of each group (R^3's replay) needs them left free by the rollout
    free = sum(int(p.get("kwargs", {}).get("k", 0)) for p in phases if p["name"] == "r3_replay")
    groups = {"rollouts_per_prompt": 4 - free if free else 0}
    groups.update({k: preset[k] for k in ("rollouts_per_prompt", "group_size") if k in preset})  # SPO-tree's tree
    trainer = make_trainer(tiny_llama(vocab_size=98, seed=0, init_std=0.2), tok, estimator=name, steps=3, phases=phases,
                           **groups)
    m = trainer.step()
    assert math.isfinite(m["loss"]) and math.isfinite(m["adv_std"]) and m["skipped_step"] == 0


@pytest.mark.parametrize("name", losses.available())
def test_every_registered_loss_runs_a_real_training_step_with_two_inner_epochs(tok, name):
    from rlbook.policy.models import tiny_llama

    trainer = make_trainer(tiny_llama(vocab_size=98, seed=0, init_std=0.2), tok, loss=name, inner_epochs=2)
    m = trainer.step()
    assert math.isfinite(m["loss"]) and math.isfinite(m["grad_norm"]) and m["skipped_step"] == 0


def test_evaluation_sorted_by_prompt_length_reports_each_problem_in_its_own_order(tiny_model, tok):
    from rlbook.training.experiments import evaluate

    task = make_task({**TASK, "config": {**TASK["config"], "max_digits": 3}})  # prompts of several lengths
    cfg = {"max_new_tokens": 6, "eval_size": 10, "gen_batch_size": 3, "rewards": [{"name": "test_lowercase"}]}
    trainer = Trainer(wrap_lora(tiny_model, {"r": 4, "alpha": 8}, seed=0), tok, task, cfg, progress=False)
    problems = trainer.task.eval[:10]
    assert len({len(trainer.prompt_ids(p, "eval")) for p in problems}) > 1  # sorting reorders them
    out = trainer.evaluate()
    alone = [trainer.generate([trainer.prompt_ids(p, "eval")], 6, do_sample=False).texts[0] for p in problems]
    assert out["completions"] == alone  # each problem's own greedy completion, in the problems' order
    assert out["correct"] == [trainer.task.score(p, t) >= 1.0 for p, t in zip(problems, alone, strict=True)]
    assert out["n"] == 10 and len(out["lengths"]) == len(out["truncated"]) == len(out["formatted"]) == 10
    again = evaluate(trainer, 10, 6)  # the sweeps' evaluation is the trainer's
    assert again.keys() == out.keys() and all(again[k] == v for k, v in out.items() if v == v)


def test_a_reference_pass_cut_into_other_micro_batches_gives_the_update_the_same_kl(tok):
    # The reference pass covers every valid row; the update may leave zero-advantage rows out, so its
    # micro-batches can differ from the reference pass's and a row's reference log-probs can be shorter than the
    # update micro-batch's width (a canon run crashed so: "stack expects each tensor to be equal size").  The KL the
    # update sees must not depend on how the reference pass was cut.
    import dataclasses

    from rlbook.policy.models import tiny_llama
    from rlbook.policy.rollout import logprobs_no_grad, micro_batches
    from rlbook.training.update import UpdateInputs, micro_batch_loss

    trainer = make_trainer(tiny_llama(vocab_size=98, seed=0, init_std=0.2), tok, kl_coef=0.1, max_new_tokens=40,
                           micro_batch_size=4)
    batch = trainer.roll_out([0, 1])
    lengths = batch.roll.lengths.tolist()
    assert len(set(lengths)) > 2  # rows of several widths: a one-row reference micro-batch is as wide as its row
    rows = list(range(len(lengths)))
    adv = torch.linspace(-1.0, 1.0, len(rows))

    def kl_of_update(ref_micro_batch: int) -> float:
        cfg = dataclasses.replace(trainer.cfg, micro_batch_size=ref_micro_batch)
        ref = logprobs_no_grad(trainer.model, cfg, batch.roll, rows, True, False)
        inp = UpdateInputs(batch.roll, rows, micro_batches(rows, lengths, trainer.cfg, False), adv, ref, {},
                           float(batch.roll.completion_mask.sum()))
        kl = sum(micro_batch_loss(trainer.model, trainer.cfg, trainer.comp, inp, mb, 0)["kl"] for mb in inp.batches)
        trainer.optimizer.zero_grad(set_to_none=True)
        return kl

    same, narrower = kl_of_update(4), kl_of_update(1)
    assert math.isfinite(same) and narrower == pytest.approx(same, rel=1e-5, abs=1e-7)
