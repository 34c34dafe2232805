"""Named adapters on one base (peft multi-adapter), the SFT and DPO losses by hand, and the training loops."""

from __future__ import annotations

import math

import pytest
import torch
from rlbook.policy.generation import left_pad, sample_groups
from rlbook.policy.models import (
    copy_adapter,
    current_adapter,
    merged_lora,
    tiny_llama,
    trainable_parameters,
    use_adapter,
    wrap_adapters,
)
from rlbook.training import finetune

EOS = 2
ROLES = ["generator", "verifier", "refiner"]
LORA = {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}


def _roles():
    base = tiny_llama(vocab_size=98, seed=0, init_std=0.2)
    base_ptrs = {n: p.data_ptr() for n, p in base.named_parameters()}
    return wrap_adapters(base, LORA, ROLES, seed=0), base_ptrs


def _lora(model, name):
    return {n: p.detach().clone() for n, p in model.named_parameters() if f".{name}." in n}


def test_three_roles_share_one_copy_of_the_base_weights():
    model, base_ptrs = _roles()
    frozen = {n: p for n, p in model.named_parameters() if "lora_" not in n}
    # every base tensor of the wrapped model is one of the original base tensors (same storage), none duplicated
    assert sorted(p.data_ptr() for p in frozen.values()) == sorted(base_ptrs.values())
    for role in ROLES:
        assert _lora(model, role), role
    n_lora = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
    n_base = sum(p.numel() for p in frozen.values())
    assert n_lora == 3 * sum(p.numel() for n, p in model.named_parameters() if ".generator." in n)
    assert n_base == sum(p.numel() for p in tiny_llama(vocab_size=98, seed=0).parameters())


def test_use_adapter_switches_role_and_trainable_set_and_restores():
    model, _ = _roles()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if ".verifier." in n and "lora_B" in n:
                p.normal_(0, 0.5)
    x = torch.tensor([[5, 6, 7, 8]])
    with model.disable_adapter(), torch.no_grad():
        base = model(input_ids=x).logits
    assert current_adapter(model) == "generator"
    with use_adapter(model, "verifier"):
        assert current_adapter(model) == "verifier"
        assert {n for n, p in model.named_parameters() if p.requires_grad} == set(_lora(model, "verifier"))
        with torch.no_grad():
            ver = model(input_ids=x).logits
            with merged_lora(model):  # merges the ACTIVE adapter (not "default")
                merged = model(input_ids=x).logits
    with torch.no_grad():
        gen = model(input_ids=x).logits
    assert current_adapter(model) == "generator"
    assert torch.allclose(gen, base, atol=1e-6)  # B = 0: the untrained generator is the base model
    assert not torch.allclose(ver, base, atol=1e-3) and torch.allclose(merged, ver, atol=1e-4)
    with pytest.raises(ValueError, match="not found"):
        with use_adapter(model, "critic"):
            pass


def test_copy_adapter_makes_an_independent_copy():
    model, _ = _roles()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if ".refiner." in n:
                p.add_(0.1)
    copy_adapter(model, "refiner", "refiner_ref")
    src, dst = _lora(model, "refiner"), _lora(model, "refiner_ref")
    assert all(torch.equal(v, dst[k.replace(".refiner.", ".refiner_ref.")]) for k, v in src.items())
    with torch.no_grad():
        for n, p in model.named_parameters():
            if ".refiner." in n:
                p.add_(1.0)
    assert all(torch.equal(v, _lora(model, "refiner_ref")[k]) for k, v in dst.items())


def test_sft_loss_by_hand():
    logp = torch.tensor([[-1.0, -2.0], [-3.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    # token mean: (1 + 2 + 3) / 3 tokens = 2.0
    assert float(finetune.sft_loss(logp, mask)) == pytest.approx(2.0)
    # per-sequence sums (-3, -3), weights (1, 0), mean over the batch of 2 (zero-weight row included): 1.5
    assert float(finetune.sft_loss(logp, mask, torch.tensor([1.0, 0.0]), "seq_sum_mean")) == pytest.approx(1.5)
    # Digi-Q's example: sums (-2, -5), weights (1, 0) -> -(1 * -2 + 0 * -5) / 2 = 1.0
    two = torch.tensor([[-2.0], [-5.0]])
    assert float(finetune.sft_loss(two, torch.ones(2, 1), torch.tensor([1.0, 0.0]), "seq_sum_mean")) == pytest.approx(1.0)
    # probability clamp (0.001, 0.99): p = 0.995 -> -ln 0.99 = 0.010050; p = 0.0005 -> -ln 0.001 = 6.907755
    clamped = torch.tensor([[math.log(0.995), math.log(0.0005)]])
    loss = finetune.sft_loss(clamped, torch.ones(1, 2), None, "seq_sum_mean", prob_clamp=(0.001, 0.99))
    assert float(loss) == pytest.approx(0.010050 + 6.907755, abs=1e-5)
    with pytest.raises(ValueError, match="allowed"):
        finetune.sft_loss(logp, mask, reduction="sum")


def test_dpo_loss_by_hand():
    # delta = (-10 - -11) - (-12 - -11.5) = 1.5; beta 0.1 -> -log sigmoid(0.15) = 0.620957; beta 0.5 -> 0.386871
    args = [torch.tensor([-10.0]), torch.tensor([-12.0]), torch.tensor([-11.0]), torch.tensor([-11.5])]
    loss, info = finetune.dpo_loss(*args, beta=0.1)
    assert float(loss) == pytest.approx(0.620957, abs=1e-6) and float(info["accuracy"]) == 1.0
    assert float(finetune.dpo_loss(*args, beta=0.5)[0]) == pytest.approx(0.386871, abs=1e-6)
    assert float(info["reward_chosen"]) == pytest.approx(0.1) and float(info["reward_rejected"]) == pytest.approx(-0.05)
    same = torch.tensor([-4.0])
    assert float(finetune.dpo_loss(same, same, same, same)[0]) == pytest.approx(math.log(2), abs=1e-7)


def test_sequence_logprobs_match_the_samplers(tok):
    """Right-padded completions in the rollout layout give the sampler's own log-probs (temperature 1)."""
    model = tiny_llama(vocab_size=98, seed=0, init_std=0.2).eval()
    prompts = [tok(f"<bos>user:{'x' * (i + 1)}<eos><bos>assistant:", add_special_tokens=False)["input_ids"]
               for i in range(3)]
    ids, att = left_pad(prompts, EOS, torch.device("cpu"))
    torch.manual_seed(0)
    comp, logp, _ = sample_groups(model, ids, att, 1, 6, [EOS], EOS, return_logprobs=True)
    comps = []
    for row in comp.tolist():
        comps.append(row[: row.index(EOS) + 1] if EOS in row else row)
    with torch.no_grad():
        ours, mask = finetune.sequence_logprobs(model, prompts, comps, EOS)
    for i, c in enumerate(comps):
        assert torch.allclose(ours[i, : len(c)], logp[i, : len(c)], atol=1e-4)
        assert mask[i].sum() == len(c)


def test_sft_trains_only_the_active_adapter_and_lowers_the_loss(tok):
    model, _ = _roles()
    ex = [finetune.Example(tok("<bos>user:hi<eos><bos>assistant:", add_special_tokens=False)["input_ids"],
                           finetune.completion_ids(tok, "hello"))] * 4
    before = {r: _lora(model, r) for r in ROLES}
    base = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" not in n}
    with use_adapter(model, "refiner"):
        rows = finetune.train_sft(model, tok, ex, lr=5e-2, epochs=5, batch_size=4, seed=0)
        assert len(trainable_parameters(model)) == len(before["refiner"])
    assert rows[-1]["loss"] < rows[0]["loss"]
    for role in ("generator", "verifier"):
        assert all(torch.equal(v, _lora(model, role)[k]) for k, v in before[role].items())
    assert any(not torch.equal(v, _lora(model, "refiner")[k]) for k, v in before["refiner"].items())
    assert all(torch.equal(v, dict(model.named_parameters())[k]) for k, v in base.items())


def test_dpo_starts_at_ln2_against_its_frozen_copy_and_raises_the_margin(tok):
    model, _ = _roles()
    p = tok("<bos>user:pick<eos><bos>assistant:", add_special_tokens=False)["input_ids"]
    pairs = [finetune.Pair(p, finetune.completion_ids(tok, "yes"), finetune.completion_ids(tok, "no"))] * 4
    copy_adapter(model, "verifier", "verifier_ref")
    with use_adapter(model, "verifier_ref"):
        ref_c = finetune.summed_logprobs(model, tok, [x.prompt for x in pairs], [x.chosen for x in pairs])
        ref_r = finetune.summed_logprobs(model, tok, [x.prompt for x in pairs], [x.rejected for x in pairs])
    with use_adapter(model, "verifier"):
        rows = finetune.train_dpo(model, tok, pairs, ref_c, ref_r, beta=0.5, lr=5e-2, epochs=4, batch_size=4, seed=0)
    assert rows[0]["loss"] == pytest.approx(math.log(2), abs=1e-5)
    assert rows[-1]["loss"] < rows[0]["loss"] and rows[-1]["margin"] > 0


def test_subsample_is_seeded_and_keeps_order():
    a = finetune.subsample(list(range(10)), 4, seed=1)
    assert a == sorted(a) and len(a) == 4 and a == finetune.subsample(list(range(10)), 4, seed=1)
    assert finetune.subsample([1, 2], 5, seed=0) == [1, 2]
