"""Common random numbers: counter-based sampling noise (rlbook.policy.generation) and arms of one seed that share rollouts."""

from __future__ import annotations

import math

import pytest
import torch
from rlbook.data.tasks import make_task
from rlbook.mechanisms import estimators
from rlbook.mechanisms.estimators.group import grpo
from rlbook.policy.generation import (
    _mix32,
    _mix_int,
    _pick,
    exponential_noise,
    left_pad,
    noise_keys,
    sample_groups,
)
from rlbook.policy.models import tiny_llama, wrap_lora
from rlbook.training.trainer import Trainer
from scipy import stats

EOS = 2
WALL = {"gen_s", "gen_tok_s", "train_s", "train_tok_s", "step_s"}
TASK = {"name": "chain_sum", "config": {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1},
        "train_size": 40, "eval_size": 6, "system_prompt": None}


@estimators.register("crn_twin_grpo")
def _twin(rewards: torch.Tensor) -> torch.Tensor:
    """GRPO under another name that also draws from the global RNG (as a mechanism with randomness of its own)."""
    torch.rand(7)
    return grpo(rewards)


# ------------------------------------------------------------------------------ the noise function


def test_mix32_is_lowbias32_fixed_at_zero_and_a_bijection():
    assert _mix_int(0) == 0  # every step of lowbias32 maps 0 to 0 (xor-shift and multiply)
    # by hand: 1 -> 1 ^ 0 = 1 -> 0x7feb352d -> ^ (0x7feb352d >> 15 = 0xffd6) = 0x7feacafb -> ...
    x = 0x7FEB352D ^ (0x7FEB352D >> 15)
    assert x == 0x7FEBCAFB
    x = (x * 0x846CA68B) & 0xFFFFFFFF
    assert _mix_int(1) == x ^ (x >> 16)
    outs = {_mix_int(v) for v in range(1 << 16)}
    assert len(outs) == 1 << 16  # no two inputs share an output
    words = torch.arange(-(1 << 15), 1 << 15, dtype=torch.int32) * 65537
    signed = [(y - (1 << 32)) if y >= 1 << 31 else y for y in (_mix_int(w & 0xFFFFFFFF) for w in words.tolist())]
    assert torch.equal(_mix32(words.clone()), torch.tensor(signed, dtype=torch.int32))  # the tensor version wraps


def test_noise_is_deterministic_and_differs_by_every_coordinate():
    base = (3, 5, 0, 17, 2)  # seed, step, stream, prompt, sample
    keys = noise_keys([base, base])
    assert torch.equal(keys[0], keys[1])
    e = exponential_noise(keys, 4, 1000)
    assert torch.equal(e[0], e[1]) and torch.equal(e, exponential_noise(noise_keys([base, base]), 4, 1000))
    for i in range(len(base)):
        other = list(base)
        other[i] += 1
        f = exponential_noise(noise_keys([tuple(other)]), 4, 1000)[0]
        assert (f != e[0]).float().mean() > 0.99, f"coordinate {i}"
        assert abs(float(torch.corrcoef(torch.stack([f, e[0]]))[0, 1])) < 0.15
    later = exponential_noise(keys, 5, 1000)[0]  # the position
    assert (later != e[0]).float().mean() > 0.99
    big = noise_keys([(2**40 + 1, 0), (1, 0)])  # coordinates wider than 32 bits are not truncated
    assert not torch.equal(big[0], big[1])
    with pytest.raises(ValueError, match="non-negative"):
        noise_keys([(0, -1)])


def test_noise_is_exponential_with_unit_mean_and_variance():
    e = exponential_noise(noise_keys([(0, 0, 0, j, 0) for j in range(4)]), 0, 50_000)
    assert torch.isfinite(e).all() and (e > 0).all()
    assert torch.allclose(e.mean(1), torch.ones(4), atol=0.03)
    assert torch.allclose(e.var(1), torch.ones(4), atol=0.06)
    # P(E > 1) = e^-1 for Exp(1)
    assert abs(float((e > 1).float().mean()) - math.exp(-1)) < 0.005


# ----------------------------------------------------------------------- sampling is exact


def _nucleus_by_hand(logits: list[float], temperature: float, top_p: float) -> list[float]:
    z = [math.exp(x / temperature) for x in logits]
    p = [x / sum(z) for x in z]
    order = sorted(range(len(p)), key=lambda i: -p[i])
    kept, mass = [], 0.0
    for i in order:
        if mass > top_p:
            break
        kept.append(i)
        mass += p[i]
    return [p[i] / mass if i in kept else 0.0 for i in range(len(p))]


@pytest.mark.parametrize(("temperature", "top_p"), [(1.0, 1.0), (0.7, 1.0), (1.3, 0.8)])
def test_keyed_sampling_draws_the_tempered_nucleus_distribution(temperature, top_p):
    logits = [2.0, 1.0, 0.5, 0.0, -1.0]
    want = _nucleus_by_hand(logits, temperature, top_p)
    n = 20_000
    keys = noise_keys([(1, 0, 0, j, 0) for j in range(n)])  # n rows: n independent draws
    toks = _pick(torch.tensor([logits] * n), True, temperature, top_p, keys, position=3)
    counts = torch.bincount(toks, minlength=5).tolist()
    assert all(c == 0 for c, w in zip(counts, want, strict=True) if w == 0.0)  # nothing outside the nucleus
    obs = [c for c, w in zip(counts, want, strict=True) if w > 0]
    exp = [w * n for w in want if w > 0]
    assert stats.chisquare(obs, exp).pvalue > 1e-3, (counts, exp)
    # the same test has power: against the untempered, unfiltered softmax it rejects
    if (temperature, top_p) != (1.0, 1.0):
        wrong = _nucleus_by_hand(logits, 1.0, 1.0)
        assert stats.chisquare(counts, [w * n for w in wrong]).pvalue < 1e-6


# ---------------------------------------------------------------- the sampler: rows and chunks


def _prompts(tok):
    return [tok(f"<bos>user:{a} + {b} = ?<eos><bos>assistant:", add_special_tokens=False)["input_ids"]
            for a in range(3) for b in range(2)]


def test_keyed_samples_ignore_the_global_rng_and_the_order_of_the_prompts(tok):
    model = tiny_llama(vocab_size=98, seed=0, init_std=0.2).eval()
    prompts = _prompts(tok)
    G = 3
    coords = [(0, 1, 0, j, g) for j in range(len(prompts)) for g in range(G)]
    ids, att = left_pad(prompts, EOS, torch.device("cpu"))
    torch.manual_seed(1)
    a = sample_groups(model, ids, att, G, 10, [EOS], EOS, noise_keys=noise_keys(coords))
    torch.manual_seed(2)
    b = sample_groups(model, ids, att, G, 10, [EOS], EOS, noise_keys=noise_keys(coords))
    assert torch.equal(a, b)
    order = list(reversed(range(len(prompts))))  # the prompts in another order, each keeping its coordinates
    ids_r, att_r = left_pad([prompts[j] for j in order], EOS, torch.device("cpu"))
    c = sample_groups(model, ids_r, att_r, G, 10, [EOS], EOS,
                      noise_keys=noise_keys([(0, 1, 0, j, g) for j in order for g in range(G)]))
    back = torch.cat([c[k * G : (k + 1) * G] for k in reversed(range(len(prompts)))])
    width = min(a.shape[1], back.shape[1])
    assert torch.equal(a[:, :width], back[:, :width])
    assert len({tuple(r) for r in a.tolist()}) > len(prompts)  # samples of one prompt differ from each other


# -------------------------------------------------------------------------- arms of one seed


def _run(estimator: str, **cfg) -> tuple[list[dict], list[str]]:
    torch.manual_seed(0)
    model = wrap_lora(tiny_llama(vocab_size=98, seed=0, init_std=0.2), {"r": 4, "alpha": 8}, seed=0)
    from rlbook.policy.models import char_tokenizer

    base = {"steps": 2, "prompts_per_step": 2, "group_size": 4, "max_new_tokens": 6, "micro_batch_size": 4,
            "gen_batch_size": 8, "lr": 3e-2, "eval_every": 1, "eval_size": 6, "estimator": estimator,
            "eval_pass_k": 2, **cfg}
    trainer = Trainer(model, char_tokenizer(), make_task(TASK), base, progress=False)
    texts: list[str] = []
    original = trainer.roll_out

    def recording(indices):
        batch = original(indices)
        texts.extend(batch.roll.texts)
        return batch

    trainer.roll_out = recording  # type: ignore[method-assign]
    history = trainer.fit()
    return [{k: v for k, v in m.items() if k not in WALL} for m in history], texts


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(x == y or (x != x and y != y) for x, y in zip(a.values(), b.values(), strict=True))


def test_the_same_method_under_two_names_gives_bit_identical_runs():
    grpo_rows, grpo_texts = _run("grpo")
    twin_rows, twin_texts = _run("crn_twin_grpo")
    assert grpo_texts == twin_texts and len(grpo_texts) == 16
    assert all(_same(a, b) for a, b in zip(grpo_rows, twin_rows, strict=True)), (grpo_rows, twin_rows)


def test_without_common_random_numbers_the_twin_runs_diverge():
    """The control: transformers.generate samples from the global RNG, which the twin's estimator moves."""
    _, grpo_texts = _run("grpo", generation_backend="hf", eval_pass_k=0)
    _, twin_texts = _run("crn_twin_grpo", generation_backend="hf", eval_pass_k=0)
    assert grpo_texts[:8] == twin_texts[:8]  # step 1: nothing has drawn from the RNG yet
    assert grpo_texts[8:] != twin_texts[8:]
