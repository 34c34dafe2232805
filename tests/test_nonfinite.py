"""One non-finite policy for every training loop (rlbook.core.guard.StepGuard): a step whose loss is NaN is skipped
(the parameters do not move), counted in the loop's metrics, and a stated number in a row fail with a
TrainingError naming the loop.  Each loop kind gets an injected NaN: SFT and DPO (NaN weights / reference
sums), the Digi-Q critic (NaN rewards), the T-PPO critic (NaN returns), the implicit PRM (a NaN loss).  The
policy update's own case is tests/test_checkpoint.py::test_non_finite_steps_are_skipped_counted_and_fail_after_k."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from rlbook.core.errors import TrainingError
from rlbook.core.guard import StepGuard
from rlbook.mechanisms.curricula.tppo import TPPOCritic
from rlbook.pipelines import qvalue
from rlbook.policy.models import tiny_llama, use_adapter, wrap_adapters
from rlbook.training import finetune


def _params(module):
    return [p.detach().clone() for p in module.parameters() if p.requires_grad]


def _same(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_guard_skips_counts_resets_and_fails_after_max_bad():
    lin = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(lin.parameters(), lr=0.1)
    x = torch.ones(1, 2)

    def step(value: float) -> tuple[float, bool]:
        loss = lin(x).sum() * value  # value nan: loss and gradient NaN
        loss.backward()
        return guard.step(lin.parameters(), opt, float(loss.detach()), max_grad_norm=1.0)

    guard = StepGuard(max_bad=2, name="toy")
    before = _params(lin)
    norm, skipped = step(math.nan)
    assert skipped and guard.bad == 1 and guard.skipped == 1 and math.isnan(norm)
    assert _same(before, _params(lin)) and all(p.grad is None for p in lin.parameters())
    # d/dw (w.x + b) = (1, 1, 1): norm sqrt(3), clipped to 1; a good step resets the run of bad ones
    norm, skipped = step(1.0)
    assert not skipped and norm == pytest.approx(math.sqrt(3)) and guard.bad == 0 and guard.skipped == 1
    assert not _same(before, _params(lin))
    step(math.nan)
    with pytest.raises(TrainingError, match=r"toy: 2 consecutive steps with a non-finite loss or gradient \(last at step 4\)"):
        step(math.inf)
    assert guard.skipped == 3


def test_guard_rejects_a_bad_limit():
    with pytest.raises(ValueError, match="max_bad=0"):
        StepGuard(max_bad=0)


def _one_adapter():
    return wrap_adapters(tiny_llama(vocab_size=98, seed=0, init_std=0.2), {"r": 4, "alpha": 8}, ["a"], seed=0)


def _examples(tok, weights):
    prompt = tok("<bos>user:hi<eos><bos>assistant:", add_special_tokens=False)["input_ids"]
    return [finetune.Example(prompt, finetune.completion_ids(tok, "ok"), w) for w in weights]


def test_sft_skips_a_nan_batch_and_counts_it(tok):
    model = _one_adapter()
    with use_adapter(model, "a"):
        before = [p.detach().clone() for p in model.parameters() if p.requires_grad]
        # batch size 1, epochs 1: the seeded order puts the NaN-weight example in one step of three
        rows = finetune.train_sft(model, tok, _examples(tok, [1.0, math.nan, 1.0]), lr=1e-2, batch_size=1, seed=0)
    assert sum(r["skipped"] for r in rows) == 1
    assert [r["skipped"] for r in rows] == [int(math.isnan(r["loss"])) for r in rows]
    assert not _same(before, [p.detach() for p in model.parameters() if p.requires_grad])


def test_sft_fails_after_max_bad_steps_in_a_row(tok):
    model = _one_adapter()
    with use_adapter(model, "a"), pytest.raises(TrainingError, match=r"sft: 2 consecutive .* \(last at step 2\)"):
        finetune.train_sft(model, tok, _examples(tok, [math.nan] * 3), lr=1e-2, batch_size=1, max_bad_steps=2)


def test_dpo_skips_nan_reference_sums(tok):
    model = _one_adapter()
    prompt = tok("<bos>user:hi<eos><bos>assistant:", add_special_tokens=False)["input_ids"]
    pairs = [finetune.Pair(prompt, finetune.completion_ids(tok, "yes"), finetune.completion_ids(tok, "no"))] * 2
    with use_adapter(model, "a"):
        before = [p.detach().clone() for p in model.parameters() if p.requires_grad]
        rows = finetune.train_dpo(model, tok, pairs, torch.full((2,), math.nan), torch.zeros(2), lr=1e-2,
                                  batch_size=2, epochs=2)
        assert [r["skipped"] for r in rows] == [1, 1]
        assert _same(before, [p.detach() for p in model.parameters() if p.requires_grad])
        with pytest.raises(TrainingError, match="dpo: 3 consecutive"):
            finetune.train_dpo(model, tok, pairs, torch.full((2,), math.nan), torch.zeros(2), lr=1e-2,
                               batch_size=2, epochs=3)


def _chain(reward: float) -> dict[str, torch.Tensor]:
    return {"s": torch.eye(3)[:2], "sa": torch.eye(4)[:2], "r": torch.tensor([0.0, reward]),
            "done": torch.tensor([0.0, 1.0]), "s_next": torch.eye(3)[1:]}


def test_digiq_critic_skips_nan_rewards_and_fails_after_max_bad_steps():
    torch.manual_seed(0)
    fresh = qvalue.DoubleCritic(4, 3, 8)
    critic, hist = qvalue.train_critic(_chain(math.nan), steps=2, batch_size=2, hidden=8, seed=0, max_bad_steps=3)
    assert [h["skipped"] for h in hist] == [1, 1]
    assert _same(_params(fresh), _params(critic))  # seed 0 builds the same critic; it never moved
    with pytest.raises(TrainingError, match=r"Digi-Q critic: 3 consecutive .* \(last at step 3\)"):
        qvalue.train_critic(_chain(math.nan), steps=5, batch_size=2, hidden=8, seed=0)
    _, hist = qvalue.train_critic(_chain(1.0), steps=3, batch_size=2, hidden=8, seed=0)
    assert [h["skipped"] for h in hist] == [0, 0, 0]


def test_tppo_critic_skips_nan_returns_and_fails_after_max_bad_steps():
    trainer = SimpleNamespace(model=SimpleNamespace(config=SimpleNamespace(hidden_size=4)),
                              cfg=SimpleNamespace(max_bad_steps=3))
    feats = {0: torch.ones(2, 4), 1: torch.zeros(3, 4)}
    finished = torch.tensor([True, True])
    phase = TPPOCritic(trainer, lr=0.1, critic_steps=2)
    before = _params(phase.head)
    assert math.isnan(phase.fit(feats, torch.tensor([math.nan, 1.0]), finished))
    assert phase.guard.skipped == 2 and _same(before, _params(phase.head))
    phase.fit(feats, torch.tensor([0.0, 1.0]), finished)  # finite: the head moves, the run of bad steps resets
    assert phase.guard.bad == 0 and not _same(before, _params(phase.head))
    phase.steps = 5
    with pytest.raises(TrainingError, match="tppo_critic: 3 consecutive"):
        phase.fit(feats, torch.tensor([math.nan, 1.0]), finished)


def test_implicit_prm_skips_a_nan_loss_counts_it_and_fails_after_max_bad_steps(tok, monkeypatch):
    from rlbook.mechanisms import prm, rewards
    from test_prm import prime_trainer

    if "test_prm_lowercase" not in rewards.available():  # the reward test_prm's fixture registers
        rewards.register("test_prm_lowercase")(
            lambda completions, problems, *, task: [float(sum(ch.islower() for ch in c) >= 3) for c in completions])
    real = prm.ce_loss
    monkeypatch.setattr(prm, "ce_loss", lambda q, acc, beta: real(q, acc, beta) * math.nan)
    tr = prime_trainer(tok, steps=3)
    phase = next(p for _, p in tr.phases if isinstance(p, prm.ImplicitPRM))
    before = [p.detach().clone() for p in phase.params]
    m = tr.step()
    assert m["prm_skipped"] == 1 and phase.updates == 0 and math.isnan(m["prm_loss"])
    assert _same(before, [p.detach() for p in phase.params])
    assert m["skipped_step"] == 0  # the policy update is its own loop; it trained
    tr.step()  # train.max_bad_steps (3): the third NaN step in a row fails
    with pytest.raises(TrainingError, match=r"implicit_prm: 3 consecutive .* \(last at step 3\)"):
        tr.step()
