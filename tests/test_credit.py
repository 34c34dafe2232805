"""Extra-rollout and probe phases (SPO-chain / Rewarding Progress Monte Carlo values, SPAE's potential, CAPO's
critic), few-shot line-format prompts, equal-token budgets, and one real trainer step of every credit preset."""

from __future__ import annotations

import math

import pytest
import torch
from rlbook.core.config import ParamError
from rlbook.data.tasks import chain_sum_solution, make_task
from rlbook.mechanisms import credit, process
from rlbook.mechanisms.presets import method_train
from rlbook.mechanisms.steps import oracle_step_labels
from rlbook.policy.models import tiny_llama, wrap_lora
from rlbook.training import experiments
from rlbook.training.trainer import Trainer
from test_process import chain_problem, line_tokenizer, make_batch

SUMS3 = {"name": "chain_sum", "config": {"min_terms": 3, "max_terms": 3, "min_digits": 1, "max_digits": 1},
         "train_size": 40, "eval_size": 8, "system_prompt": None}
CREDIT = ["prime", "prime_outcome", "implicit_prm", "oracle_process", "spo_chain", "tempo", "min_form", "sum_form",
          "clip_delta", "sum_prm", "spae", "rewarding_progress", "capo", "capo_oracle"]


def trainer_for(tok, method: str, **cfg) -> Trainer:
    model = wrap_lora(tiny_llama(vocab_size=98, seed=0, init_std=0.2), {"r": 4, "alpha": 8}, seed=0)
    train = {**method_train(method), "steps": 2, "prompts_per_step": 2, "group_size": 4, "max_new_tokens": 8,
             "filters": [], **cfg}
    train["phases"] = [*train.get("phases", []), {"name": "credit_audit"}]
    torch.manual_seed(0)
    return Trainer(model, tok, make_task(SUMS3), train, progress=False)


# ------------------------------------------------------------------------------------ Monte Carlo values


def test_low_prob_cutpoints_by_hand():
    # tokens sampled with p < 0.9 at 0, 2, 4 -> cutpoints before them: -1 (the prompt), 1, 3; every 2nd: -1, 3
    p = [0.5, 0.95, 0.3, 0.99, 0.6]
    assert credit.low_prob_cutpoints(p, 0.9, 1, 0) == [-1, 1, 3]
    assert credit.low_prob_cutpoints(p, 0.9, 2, 0) == [-1, 3]
    assert credit.low_prob_cutpoints(p, 0.9, 1, 2) == [-1, 1]
    assert credit.low_prob_cutpoints([0.95, 0.99], 0.9, 1, 0) == []


@pytest.mark.parametrize("cutpoints", ["low_prob", "step_ends"])
def test_mc_values_estimates_each_distinct_prefix_and_counts_its_tokens(tok, cutpoints):
    trainer = trainer_for(tok, "spo_chain")
    batch = trainer.collect()
    trainer.add_context(batch)
    phase = credit.MCValues(trainer, cutpoints=cutpoints, rollouts=3)
    m = phase.run(trainer, batch)
    tv, pv = batch.context["token_values"], batch.context["prompt_values"]
    assert tv.shape == batch.roll.completion_ids.view(batch.P, batch.G, -1).shape and pv.shape == (batch.P, batch.G)
    finite = torch.isfinite(tv)
    assert bool(((tv[finite] * 3).round() == tv[finite] * 3).all())  # means of 3 verifier scores: k/3
    assert batch.sampling["extra_gen_tokens"] > 0 and m["mc_prefixes"] >= 1
    if cutpoints == "step_ends":  # the prompt and every step end but the last (one line each for this model)
        assert bool(torch.isfinite(pv).all()) and m["mc_cuts"] == pytest.approx(1.0)
        assert int(pv.unique().numel()) <= batch.P  # the same prompt prefix is estimated once per group


def test_mc_values_of_a_deterministic_policy_are_its_outcome(tok):
    # temperature -> 0: every continuation of a prefix of a greedy completion repeats it, so V = its outcome
    trainer = trainer_for(tok, "spo_chain", temperature=1e-4)
    batch = trainer.collect()
    trainer.add_context(batch)
    credit.MCValues(trainer, cutpoints="step_ends", rollouts=2).run(trainer, batch)
    assert torch.equal(batch.context["prompt_values"], batch.correct.float())


# ---------------------------------------------------------------------------------------- SPAE probe


def test_potential_and_probe_scores_by_hand():
    # Phi = 1.5 Acc Conf + 0.5 Acc - Conf: (.1,.2) -> 0.03 + 0.05 - 0.2 = -0.12; (.95,.95) -> 0.87875; corners 1, -1, .5, 0
    acc = torch.tensor([0.1, 0.5, 0.95, 1.0, 0.0, 1.0, 0.0])
    conf = torch.tensor([0.2, 0.4, 0.95, 1.0, 1.0, 0.0, 0.0])
    want = torch.tensor([-0.12, 0.15, 0.87875, 1.0, -1.0, 0.5, 0.0])
    assert torch.allclose(credit.potential(acc, conf), want, atol=1e-6)
    # lp = [-0.1, -0.2], H = [0.3, 0.5]: code Acc = exp(-0.3)/2 = 0.370409, Conf = exp(-0.8)/2 = 0.224664;
    # paper Acc = (0.904837 + 0.818731)/2 = 0.861784, Conf = exp(-0.4) = 0.670320
    lp, h = torch.tensor([[-0.1, -0.2]]), torch.tensor([[0.3, 0.5]])
    a, c = credit.probe_scores(lp, h, "code")
    assert float(a) == pytest.approx(0.370409, abs=1e-6) and float(c) == pytest.approx(0.224664, abs=1e-6)
    a, c = credit.probe_scores(lp, h, "paper")
    assert float(a) == pytest.approx(0.861784, abs=1e-6) and float(c) == pytest.approx(0.670320, abs=1e-6)


def test_step_potential_probes_every_step(tok):
    trainer = trainer_for(tok, "spae")
    batch = trainer.collect()
    trainer.add_context(batch)
    m = credit.StepPotential(trainer).run(trainer, batch)
    lay = process.batch_layout(trainer, batch)
    assert m["spae_probes"] == sum(len(e) for e in lay.ends)
    phi = batch.context["step_values"]
    assert bool(((phi >= -1.0) & (phi <= 1.0)).all()) and bool((phi[batch.context["step_mask"]] != 0).any())
    # the first probe by one plain forward pass of prompt + head + answer (no shared prompt)
    from rlbook.policy.rollout import token_logprobs

    phase = credit.StepPotential(trainer)
    heads, answers, where = phase.probes(trainer, batch, lay)
    seq = torch.tensor([trainer.prompt_ids(batch.problems[0]) + heads[0] + answers[0]])
    with torch.no_grad():
        lp, ent = token_logprobs(trainer.model, seq, torch.ones_like(seq), len(answers[0]), 1.0, with_entropy=True)
    acc, conf = credit.probe_scores(lp, ent, "code")
    assert where[0] == (0, 0) and float(phi[0, 0, 0]) == pytest.approx(float(credit.potential(acc, conf)), abs=1e-5)


# ---------------------------------------------------------------------------------------- CAPO critic


def test_votes_and_critique_parsing_by_hand():
    # 3 critiques x 3 steps, flags per step [1,0,0], [1,1,0], [1,1,1] (columns)
    flags = torch.tensor([[1, 1, 1], [0, 1, 1], [0, 0, 1]])
    assert credit.vote(flags, "majority").tolist() == [0.0, 1.0, 1.0]
    assert credit.vote(flags, "intersection").tolist() == [0.0, 0.0, 1.0]
    assert torch.allclose(credit.vote(flags, "average"), torch.tensor([1 / 3, 2 / 3, 1.0]))
    assert credit.parse_critique("Steps 2 and 3 are wrong.", 3) == [2, 3]
    assert credit.parse_critique("None of them", 3) == [] and credit.parse_critique("step 7", 3) == []


def test_noisy_oracle_critic_without_noise_is_the_oracle():
    tok = line_tokenizer()
    # 4 - 1 - 7: lines right, wrong, wrong answer -> flags [0, 1, 1] -> step rewards [0, -1, -1]
    batch = make_batch(tok, chain_problem("4 - 1 - 7"), ["4 - 1 = 3\n3 - 7 = -5\nAnswer: -5"], [False])
    trainer = type("T", (), {"tok": tok})()
    m = credit.CAPOCritic(trainer, critic="noisy_oracle", flip=0.0).run(trainer, batch)
    assert batch.context["step_rewards"].tolist() == [[[0.0, -1.0, -1.0]]] and m["capo_step_auc"] == 1.0
    torch.manual_seed(0)
    m = credit.CAPOCritic(trainer, critic="noisy_oracle", flip=1.0).run(trainer, batch)  # every verdict flipped
    assert batch.context["step_rewards"].tolist() == [[[-1.0, 0.0, 0.0]]] and m["capo_step_auc"] == 0.0


def test_base_model_critic_generates_and_counts_tokens(tok):
    trainer = trainer_for(tok, "capo")
    batch = trainer.collect()
    trainer.add_context(batch)
    m = credit.CAPOCritic(trainer, critic="base", votes=2, max_new_tokens=4).run(trainer, batch)
    assert batch.sampling["extra_gen_tokens"] > 0 and 0.0 <= m["capo_flag_rate"] <= 1.0
    assert bool((batch.context["step_rewards"] <= 0).all())


# --------------------------------------------------------------------------------- trainer integration


@pytest.mark.parametrize("method", CREDIT)
def test_every_credit_preset_runs_a_real_training_step_with_the_audit(tok, method):
    trainer = trainer_for(tok, method, rewards=[{"name": "correct"}])
    m = trainer.step()
    assert math.isfinite(m["loss"]) and m["skipped_step"] == 0
    assert "format_share" in m and "credit_pair_acc" in m and "outcome_credit_auc" in m  # the audit ran after the update


def test_gen_token_budget_stops_training_at_equal_generated_tokens(tok):
    trainer = trainer_for(tok, "spo_chain", steps=10, gen_token_budget=1)
    hist = trainer.fit()
    assert len(hist) == 1  # the first step spent the budget
    assert trainer.generated_tokens == hist[0]["gen_tokens"] + hist[0]["extra_gen_tokens"] > 1
    plain = trainer_for(tok, "grpo", steps=3, gen_token_budget=0)
    assert len(plain.fit()) == 3


def test_notebook_phases_run_after_every_methods_own():
    base = {"train": {"steps": 2, "phases": [{"name": "credit_audit"}]}, "task": SUMS3, "model": "tiny-random"}
    specs = experiments.make_specs({"GRPO": "grpo", "PRIME": "prime"}, base)
    assert specs[0].train["phases"] == [{"name": "credit_audit"}]
    assert [p["name"] for p in specs[1].train["phases"]] == ["implicit_prm", "credit_audit"]


# ---------------------------------------------------------------------------------------- few-shot


def test_shots_are_worked_line_format_solutions_from_neither_split():
    t = make_task({**SUMS3, "shots": 2, "instruction": ""})
    msgs = t.train[0].messages
    assert [m["role"] for m in msgs] == ["user", "assistant", "user", "assistant", "user"]
    questions = {p.question for p in t.train + t.eval}
    assert msgs[0]["content"] not in questions and msgs[2]["content"] not in questions
    p = chain_problem("6 + 2 - 5")
    assert chain_sum_solution(p.entry) == "6 + 2 = 8\n8 - 5 = 3\nAnswer: 3"
    for shot in (msgs[1]["content"], msgs[3]["content"]):
        assert shot.count("\n") == 2 and shot.startswith(tuple("0123456789"))
    assert all(oracle_step_labels(q, chain_sum_solution(q.entry)) == [True, True, True] for q in t.train[:20])
    assert [m["role"] for m in make_task(SUMS3).train[0].messages] == ["user"]  # no shots by default
    with pytest.raises(ParamError, match="shots"):
        make_task({"name": "products", "shots": 1})
    with pytest.raises(ParamError, match="shots"):
        make_task({**SUMS3, "shots": -1})


# ------------------------------------------------------------------------------------------- prefix cache


def test_prefix_cache_generates_what_full_prefill_generates(tok):
    from rlbook.policy.rollout import common_prefix

    assert common_prefix([[1, 2, 3, 4], [1, 2, 5]], min_len=2) == 2 and common_prefix([[1, 2], [1, 2]], min_len=1) == 1
    task = make_task({**SUMS3, "shots": 2, "instruction": ""})
    model = wrap_lora(tiny_llama(vocab_size=98, seed=0, init_std=0.2), {"r": 4, "alpha": 8}, seed=0)
    outs = []
    for flag in (False, True):
        trainer = Trainer(model, tok, task, {"prefix_cache": flag, "gen_batch_size": 8}, progress=False)
        prompts = [trainer.prompt_ids(p) for p in task.train[:5]]
        assert common_prefix(prompts) > 100  # the system turn and the two worked examples
        torch.manual_seed(3)
        greedy = trainer.generate(prompts, 8, do_sample=False)
        torch.manual_seed(3)
        sampled = trainer.generate(prompts, 8, do_sample=True, temperature=1.0, group_size=2)
        outs.append((greedy, sampled))
    (g0, s0), (g1, s1) = outs
    assert torch.equal(g0.completion_ids, g1.completion_ids) and torch.equal(g0.input_ids, g1.input_ids)
    assert torch.equal(s0.completion_ids, s1.completion_ids)
    m = s0.completion_mask.bool()
    assert torch.allclose(s0.logp[m], s1.logp[m], atol=1e-4)


def test_filtered_steps_report_the_accuracy_of_every_sampled_completion(tok):
    trainer = trainer_for(tok, "prime_outcome", filters=[{"name": "accuracy_band", "kwargs": {"low": 0.2, "high": 0.8}}],
                          rewards=[{"name": "correct"}])
    m = trainer.step()
    assert 0.0 <= m["sampled_accuracy"] <= 1.0 and "sampled_accuracy" not in trainer_for(tok, "grpo").step()


def test_curves_on_a_shared_token_grid_by_hand():
    import pandas as pd
    from rlbook.analysis import creditlab

    # run A: steps of 100 tokens (accuracy 0.0, 0.2), run B: one step of 100 + 50 extra (accuracy 0.4)
    m = pd.DataFrame([{"method": "A", "seed": 0, "step": 1, "gen_tokens": 100, "accuracy": 0.0},
                      {"method": "A", "seed": 0, "step": 2, "gen_tokens": 100, "accuracy": 0.2},
                      {"method": "B", "seed": 0, "step": 1, "gen_tokens": 100, "extra_gen_tokens": 50, "accuracy": 0.4}])
    df = creditlab.with_tokens(m)
    assert df["tokens"].tolist() == [100.0, 200.0, 150.0] and df["sampled_accuracy"].tolist() == [0.0, 0.2, 0.4]
    grid = creditlab.on_token_grid(m, ["accuracy"], points=3)  # tokens 100, 150, 200
    a = grid[grid.method == "A"]["accuracy"].tolist()
    assert a == pytest.approx([0.0, 0.1, 0.2])  # interpolated halfway at 150
    b = grid[grid.method == "B"]["accuracy"].tolist()
    assert math.isnan(b[0]) and b[1] == pytest.approx(0.4) and math.isnan(b[2])  # only where B has data


def test_credit_vs_outcome_pairs_each_batch_with_outcome_credit_on_the_same_lines():
    from types import SimpleNamespace

    import pandas as pd
    from rlbook.analysis import creditlab, stats

    nan = float("nan")
    # two seeds; seed 1's step 2 has no right-and-wrong pair (NaN): left out of both arms
    m = pd.DataFrame([{"method": "X", "seed": 0, "step": 1, "credit_auc": 0.9, "outcome_credit_auc": 0.7},
                      {"method": "X", "seed": 0, "step": 2, "credit_auc": 0.8, "outcome_credit_auc": 0.7},
                      {"method": "X", "seed": 1, "step": 1, "credit_auc": 0.75, "outcome_credit_auc": 0.6},
                      {"method": "X", "seed": 1, "step": 2, "credit_auc": nan, "outcome_credit_auc": nan},
                      {"method": "Y", "seed": 0, "step": 1, "credit_auc": 0.5, "outcome_credit_auc": 0.5}])
    t = creditlab.credit_vs_outcome(SimpleNamespace(sweep=SimpleNamespace(metrics=m)), ["X"])
    assert sorted(set(t["method"])) == ["X", "X (outcome-only credit)"] and len(t) == 6
    assert sorted(set(t["unit"])) == ["0:1", "0:2", "1:1"]  # units nested in seeds
    r = stats.compare(t, "X", creditlab.outcome_label("X"))
    # differences 0.2, 0.1 (seed 0) and 0.15 (seed 1): the incomplete-grid test, effect = mean of seed means
    assert r["design"] == "incomplete" and r["effect"] == pytest.approx((0.15 + 0.15) / 2)
    assert r["n_seeds"] == 2 and r["n_units"] == 3


FAMILY = ["prime", "implicit_prm", "spo_chain", "tempo", "min_form", "clip_delta", "spae", "rewarding_progress", "capo",
          "credit_assignment"]


def test_the_family_notebooks_share_their_runs_with_credit_assignment():
    from rlbook.training import params

    defaults = {nb: params.resolve(nb, "cpu") for nb in FAMILY}
    keys = ("model", "task", "lora", "train", "seeds", "eval_size")
    for nb in FAMILY:
        assert {k: defaults[nb][k] for k in keys} == {k: defaults["credit_assignment"][k] for k in keys}, nb
    shared = defaults["credit_assignment"]["methods"]
    for nb in FAMILY[:-1]:
        for label, method in defaults[nb]["methods"].items():
            if label in shared:
                assert method == shared[label], (nb, label)  # same settings -> the same cache key
    covered = {lab for nb in FAMILY[:-1] for lab in defaults[nb]["methods"]}
    assert set(shared) <= covered  # every run of credit_assignment is made by a method notebook too
