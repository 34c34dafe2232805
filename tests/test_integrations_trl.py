"""rlbook inside TRL's GRPOTrainer on CPU: the tiny Llama, the character tokenizer, nothing downloaded.

The central check: one TRL step with an rlbook estimator gives the advantages that rlbook's own
``Trainer.step()`` computes from the same rollout and rewards (and, for RLOO, the hand formula).
"""

from __future__ import annotations

import string

import pytest
import torch

pytest.importorskip("trl")

from conftest import SPECIALS  # noqa: E402
from rlbook.application.integrations import trl as rt  # noqa: E402
from rlbook.core.config import ParamError  # noqa: E402
from rlbook.data.tasks import TaskSpec, make_task  # noqa: E402
from rlbook.mechanisms import rewards  # noqa: E402
from rlbook.policy.models import LoraConfig, tiny_llama, wrap_lora  # noqa: E402
from rlbook.policy.rollout import Batch, Rollout  # noqa: E402
from rlbook.training.trainer import Trainer  # noqa: E402
from rlbook.training.update import EMPTY  # noqa: E402
from trl import GRPOConfig  # noqa: E402

P, G, MAX_NEW = 2, 4, 6
TRAIN = {
    "prompts_per_step": P, "group_size": G, "max_new_tokens": MAX_NEW, "micro_batch_size": 4, "steps": 1,
    "rewards": [{"name": "correct", "weight": 1.0}, {"name": "length_penalty", "weight": 0.5}],
}


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    for key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):
        monkeypatch.setenv(key, "1")


@pytest.fixture(scope="module")
def task():
    cfg = {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1}
    return make_task(TaskSpec(name="chain_sum", config=cfg, train_size=16, eval_size=4))


def eos_heavy_model(tok):
    """The tiny Llama with every lowercase letter also an end token, so completion lengths (and the
    length reward) vary between samples of a group."""
    torch.manual_seed(0)
    model = tiny_llama(vocab_size=len(SPECIALS) + 95)
    letters = [tok.convert_tokens_to_ids(c) for c in string.ascii_lowercase]
    model.generation_config.eos_token_id = [tok.eos_token_id, *letters]
    model.generation_config.pad_token_id = tok.pad_token_id
    return model


def trl_step(tmp_path, tok, task, train: dict, peft_config=None) -> tuple[rt.RlbookGRPOTrainer, dict]:
    """One TRL optimizer step with RlbookGRPOTrainer; returns the trainer and the generation batch."""
    kw = rt.grpo_config_kwargs(train)
    funcs, weights = rt.reward_functions(train["rewards"], task, kw["max_completion_length"])
    args = GRPOConfig(output_dir=str(tmp_path), reward_weights=weights, use_cpu=True, report_to="none",
                      logging_strategy="no", disable_tqdm=True, bf16=False, activation_checkpointing=False,
                      **{**kw, "save_strategy": "no", "eval_strategy": "no"})
    trainer = rt.RlbookGRPOTrainer(eos_heavy_model(tok), funcs, args, train_dataset=rt.task_dataset(task),
                                   processing_class=tok, peft_config=peft_config, **rt.trainer_kwargs(train))
    seen: dict = {}
    generate = trainer._generate_and_score_completions

    def capture(inputs):
        out = generate(inputs)
        seen.update(out=out, parts=trainer._rlbook_parts.clone(), index=[x["problem_index"] for x in inputs])
        return out

    trainer._generate_and_score_completions = capture
    trainer.train()
    return trainer, seen


def rlbook_trainer_advantages(tok, task, train: dict, seen: dict, model=None) -> torch.Tensor:
    """rlbook's own Trainer.step() on TRL's rollout and reward parts; returns the advantages it trains on."""
    out = seen["out"]
    roll = Rollout(
        input_ids=torch.cat([out["prompt_ids"], out["completion_ids"]], dim=1),
        attention_mask=torch.cat([out["prompt_mask"], out["completion_mask"]], dim=1),
        prompt_len=out["prompt_ids"].shape[1],
        completion_ids=out["completion_ids"],
        completion_mask=out["completion_mask"].float(),
        texts=tok.batch_decode(out["completion_ids"], skip_special_tokens=True),
    )
    indices = seen["index"][::G]
    if model is None:
        model = wrap_lora(tiny_llama(vocab_size=len(SPECIALS) + 95), LoraConfig(r=2, target_modules=["q_proj"]))
    trainer = Trainer(model, tok, task, train, progress=False)
    problems = [task.train[i] for i in indices]
    flat = [p for p in problems for _ in range(G)]
    correct = torch.tensor([task.score(p, t) >= 1.0 for p, t in zip(flat, roll.texts, strict=True)])
    reward = (seen["parts"] * trainer.reward_weights).sum(-1).view(len(indices), G)
    batch = Batch(list(indices), problems, roll, seen["parts"], reward, correct.view(len(indices), G))
    batch.sampling = {"gen_tokens": 0, "gen_rollouts": len(flat), "groups": len(indices), "dropped": 0, "rounds": 1,
                      "shortfall": 0, "sampled_accuracy": float(correct.float().mean())}
    trainer.collect = lambda: batch
    got: dict = {}

    def update(inputs):
        got["adv"] = inputs.advantages.clone()
        return dict(EMPTY)

    trainer.update = update
    trainer.step()
    return got["adv"]


@pytest.mark.parametrize("estimator", ["grpo", "dr_grpo", "rloo", "bnpo", "single_stream"])
def test_one_trl_step_gives_rlbook_trainers_advantages(tmp_path, tok, task, estimator):
    # rewards are correct + 0.5 * (-length / max_new) in [-0.5, 1]: declared to the estimators that map bounds
    bounds = {"min_value": -0.5, "max_value": 1.0} if estimator in ("bnpo", "single_stream") else {}
    train = {**TRAIN, "estimator": estimator, "estimator_kwargs": bounds}
    trainer, seen = trl_step(tmp_path, tok, task, train)
    adv = seen["out"]["advantages"]
    lengths = seen["out"]["completion_mask"].sum(1).float()
    parts = seen["parts"]
    # the rewards are what rlbook's rewards give: correct (0 for the random model) and -length / max_new_tokens
    assert torch.allclose(parts[:, 1], -lengths / MAX_NEW)
    assert lengths.unique().numel() > 1, "lengths must vary for the test to mean something"
    assert torch.allclose(adv, rlbook_trainer_advantages(tok, task, train, seen), atol=1e-6)
    if estimator == "rloo":  # by hand: A_i = r_i - (sum of the group - r_i) / (G - 1), r = correct + 0.5 * length
        r = (parts[:, 0] + 0.5 * parts[:, 1]).view(P, G)
        by_hand = r - (r.sum(1, keepdim=True) - r) / (G - 1)
        assert torch.allclose(adv, by_hand.view(-1), atol=1e-6)
    assert trainer.state.global_step == 1
    if estimator == "single_stream":  # the tracker's state goes into TRL's checkpoint and comes back on resume
        trainer._save_checkpoint(trainer.model, None)
        saved = trainer.rlbook_state.state_dict()
        assert len(saved["prompt_ids"]) == P
        trainer.rlbook_state.table.clear()
        trainer._load_optimizer_and_scheduler(str(tmp_path / "checkpoint-1"))
        torch.testing.assert_close(trainer.rlbook_state.state_dict(), saved, equal_nan=True, rtol=0, atol=0)


def test_estimator_with_the_reference_log_ratio_under_a_peft_adapter(tmp_path, tok, task):
    # ACE scales negative GRPO advantages by 1 + softplus(c), c = log pi(y) - log pi_ref(y): TRL's model is a
    # random (non-zero) LoRA adapter, the reference is the adapter disabled, as in rlbook.  With lr = 0 the
    # step leaves the weights as they were, so rlbook's trainer on the same model sees the same log-ratios.
    from peft import LoraConfig as PeftLoraConfig

    lora = PeftLoraConfig(r=4, lora_alpha=64, target_modules=["q_proj", "v_proj", "down_proj"],
                          init_lora_weights=False, task_type="CAUSAL_LM")
    train = {**TRAIN, "estimator": "ace", "lr": 0.0}
    trainer, seen = trl_step(tmp_path, tok, task, train, peft_config=lora)
    adv = seen["out"]["advantages"]
    assert torch.allclose(adv, rlbook_trainer_advantages(tok, task, train, seen, model=trainer.model), atol=1e-5)
    r = (seen["parts"][:, 0] + 0.5 * seen["parts"][:, 1]).view(P, G)
    grpo = ((r - r.mean(1, keepdim=True)) / (r.std(1, keepdim=True) + 1e-6)).view(-1)
    neg = grpo < -1e-3
    c = torch.log(torch.expm1(adv[neg] / grpo[neg] - 1.0))  # the log-ratio ACE saw
    assert neg.any() and c.abs().max() > 1e-3


def test_loss_over_micro_batches_adds_up_to_the_aggregation_over_the_batch(tmp_path, tok, task):
    # Two micro-batches of 4 with gradient accumulation 2.  At the first pass the ratio is 1, so rlbook's
    # PPO token loss is -A: the batch losses are, by hand, seq_mean_token_mean: -mean_i(A_i);
    # token_mean: -sum_i(A_i n_i) / sum_i(n_i); seq_mean_token_sum_norm: -sum_i(A_i n_i) / (MAX_NEW * B).
    trainer, seen = trl_step(tmp_path, tok, task, {**TRAIN, "estimator": "rloo"})
    out = seen["out"]
    A, n = out["advantages"], out["completion_mask"].sum(1).float()
    expected = {"seq_mean_token_mean": -A.mean(), "token_mean": -(A * n).sum() / n.sum(),
                "seq_mean_token_sum_norm": -(A * n).sum() / (MAX_NEW * A.numel())}
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 2
    assert len(trainer._buffered_inputs) == 2
    for mode, value in expected.items():
        trainer.rlbook_aggregation = mode
        with torch.no_grad():
            total = sum(trainer._compute_loss(trainer.model, mb) for mb in trainer._buffered_inputs)
        assert abs(float(total) - float(value)) < 1e-5, mode


def test_rewards_as_trl_reward_functions(task):
    p = task.train[0]
    right, wrong = p.answer, str(int(p.answer) + 1)
    correct = rt.reward_function("correct", task)
    assert correct.__name__ == "correct"
    conversational = [[{"role": "assistant", "content": right}], [{"role": "assistant", "content": wrong}]]
    assert correct([p.messages] * 2, conversational, problem_index=[0, 0], split=["train"] * 2) == [1.0, 0.0]
    # length_penalty: -n / max_new_tokens with n = completion tokens: -2/8, -4/8
    penalty = rt.reward_function("length_penalty", task, max_new_tokens=8)
    assert penalty(["", ""], ["ab", "abcd"], completion_ids=[[1, 2], [1, 2, 3, 4]], problem_index=[0, 1]) == [-0.25, -0.5]
    ev = task.eval[1]
    assert correct([ev.messages], [ev.answer], problem_index=[1], split=["eval"]) == [1.0]
    with pytest.raises(ParamError, match="max_new_tokens"):
        rt.reward_function("overlong", task)
    with pytest.raises(ParamError, match="problem_index"):
        correct([p.messages], [right])
    data = rt.task_dataset(task, "eval")
    assert data.column_names == ["prompt", "problem_index", "split", "answer"] and len(data) == 4


def test_every_registered_reward_works_as_a_trl_reward_function(task):
    texts, ids = ["12", "<answer>5</answer>"], [[5, 6], [7] * 8]
    problems = [task.train[0], task.train[1]]
    library = [n for n in rewards.available() if rewards.get(n).__module__.startswith("rlbook.")]
    assert {"correct", "format", "length_penalty", "overlong"} <= set(library)
    from types import SimpleNamespace

    from rlbook.policy.models import char_tokenizer

    tok = char_tokenizer()
    for name in library:
        fn = rt.reward_function(name, task, max_new_tokens=8, group_size=2, tokenizer=tok)
        got = fn([p.messages for p in problems], texts, completion_ids=ids, problem_index=[0, 1],
                 trainer_state=SimpleNamespace(global_step=0, max_steps=1))
        context = {"task": task, "lengths": [2, 8], "max_new_tokens": 8, "prompt_ids": [0, 1],
                   "correct": [task.score(p, t) >= 1.0 for p, t in zip(problems, texts, strict=True)],
                   "state": rewards.REWARDS.make_state(name), "group_size": 2, "tokenizer": tok,
                   "finished": [False, False], "step": 0, "total_steps": 1}
        assert got == rewards.REWARDS.call(name, texts, problems, context=context), name


def test_grpo_config_kwargs_maps_rlbook_settings():
    from rlbook.application.integrations import method_train

    train = {"prompts_per_step": 6, "group_size": 2, "micro_batch_size": 8, "inner_epochs": 2, "kl_coef": 0.01,
             "eps_low": 0.2, "eps_high": 0.28, "max_new_tokens": 64, "lr": 1e-5, "steps": 7}
    kw = rt.grpo_config_kwargs(train)
    # 12 samples in equal micro-batches of at most 8: 6 x 2
    assert (kw["generation_batch_size"], kw["per_device_train_batch_size"], kw["gradient_accumulation_steps"]) == (12, 6, 2)
    assert (kw["num_generations"], kw["num_iterations"], kw["beta"], kw["epsilon"], kw["epsilon_high"]) == (2, 2, 0.01, 0.2, 0.28)
    # TRL counts optimizer steps: 7 rlbook steps x 2 inner epochs, eval / checkpoints every 5 steps likewise
    assert (kw["max_completion_length"], kw["learning_rate"], kw["max_steps"]) == (64, 1e-5, 14)
    assert (kw["eval_strategy"], kw["save_strategy"], kw["save_steps"]) == ("no", "steps", 10)
    assert kw["use_bias_correction_kl"] is False
    # on 4 processes: 3 samples each, one micro-batch of 3, the same global batch of 12
    kw4 = rt.grpo_config_kwargs(train, num_processes=4)
    assert (kw4["generation_batch_size"], kw4["per_device_train_batch_size"], kw4["gradient_accumulation_steps"]) == (12, 3, 1)
    with pytest.raises(ParamError, match="over 5 processes"):
        rt.grpo_config_kwargs(train, num_processes=5)
    dapo = {**train, **method_train("dapo")}
    with pytest.raises(ParamError, match="filter dynamic_sampling: TRL's GRPOTrainer trains every generated group"):
        rt.grpo_config_kwargs(dapo)  # refused, never silently dropped
    assert rt.trainer_kwargs(dapo)["aggregation"] == "token_mean"


def test_unsupported_trl_options_and_bad_names_are_refused(tmp_path, tiny_model, tok, task):
    args = GRPOConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none", top_entropy_quantile=0.5,
                      num_generations=2, per_device_train_batch_size=2)
    with pytest.raises(ParamError, match="top_entropy_quantile"):
        rt.RlbookGRPOTrainer(tiny_model, [rt.reward_function("correct", task)], args, processing_class=tok)
    with pytest.raises(ParamError, match="estimator='nope'"):
        rt.RlbookGRPOTrainer(tiny_model, None, args, estimator="nope")
    with pytest.raises(ParamError, match="unknown hyper-parameter"):
        rt.RlbookGRPOTrainer(tiny_model, None, args, loss="gspo", loss_kwargs={"eps": 1.0})
    with pytest.raises(ParamError, match="needs .*token_mask.*only rlbook's trainer"):  # a token-level estimator
        rt.RlbookGRPOTrainer(tiny_model, None, args, estimator="prime_rloo")


# The notebook methods' loss settings: GRPO, Dr. GRPO, BNPO (dual clip 10, sequence mean of token sums) and DAPO
# without its filter (clip-higher, token mean); DAPO's filter itself is refused under TRL (test above).
METHOD_LOSSES = {
    "grpo": {"estimator": "grpo", "aggregation": "seq_mean_token_mean"},
    "dr_grpo": {"estimator": "dr_grpo", "aggregation": "seq_mean_token_sum_norm"},
    "bnpo": {"estimator": "bnpo", "estimator_kwargs": {"min_value": -0.5, "max_value": 1.0},
             "aggregation": "seq_mean_token_sum", "eps_high": 0.28, "loss_kwargs": {"dual_clip": 10.0}},
    "dapo w/o filter": {"estimator": "grpo", "aggregation": "token_mean", "eps_high": 0.28},
}


@pytest.mark.parametrize("method", list(METHOD_LOSSES))
def test_exported_trl_trainer_gives_rlbooks_loss_on_the_same_batch(tmp_path, tok, task, method):
    # TRL's loss, summed over its shuffled micro-batches with gradient accumulation, equals rlbook's loss and
    # aggregation over the whole batch (rlbook.training.trainer's update at the first inner epoch: old = current log-probs)
    from rlbook.mechanisms import losses

    train = {**TRAIN, **METHOD_LOSSES[method]}
    trainer, seen = trl_step(tmp_path, tok, task, train)
    out = seen["out"]
    ids = torch.cat([out["prompt_ids"], out["completion_ids"]], dim=1)
    att = torch.cat([out["prompt_mask"], out["completion_mask"]], dim=1)
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = len(trainer._buffered_inputs)
    with torch.no_grad():
        logp = trainer._get_per_token_logps_and_entropies(trainer.model, ids, att, ids.shape[1] - out["prompt_ids"].shape[1])[0]
        trl_loss = sum(trainer._compute_loss(trainer.model, mb) for mb in trainer._buffered_inputs)
    mask = out["completion_mask"].float()
    kw = {"eps_low": 0.2, "eps_high": train.get("eps_high", 0.2), **train.get("loss_kwargs", {})}
    token_loss, _ = losses.compute("ppo_clip", logp, logp, out["advantages"], mask, **kw)
    ours = losses.aggregate(token_loss, mask, train["aggregation"], max_tokens=MAX_NEW)
    assert abs(float(trl_loss) - float(ours)) < 1e-5, method
    assert float(ours) != 0.0 or out["advantages"].abs().max() == 0
