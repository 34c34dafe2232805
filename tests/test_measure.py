"""Mechanistic measurements (rlbook.analysis.measure): held-out curves, losses' gradients across inner epochs,
NGRPO's all-wrong groups, token-level advantages in the gradient-variance measurement."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from rlbook.analysis import measure
from rlbook.core.errors import ParamError
from rlbook.data.tasks import make_task
from rlbook.mechanisms import rewards
from rlbook.policy.models import tiny_llama, wrap_lora
from rlbook.training.trainer import Trainer

TASK = {"name": "chain_sum", "config": {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1},
        "train_size": 24, "eval_size": 4, "system_prompt": None}


@rewards.register("test_measure_lowercase")
def _lowercase(completions, problems, *, task):  # varies within the tiny model's groups
    return [sum(ch.islower() for ch in c) / 8 for c in completions]


@rewards.register("test_measure_zero")
def _zero(completions, problems, *, task):  # every group all wrong as far as the estimators can tell
    return [0.0 for _ in completions]


def trainers(tok, methods: dict[str, dict], reward: str = "test_measure_lowercase") -> dict[str, Trainer]:
    torch.manual_seed(0)
    model = wrap_lora(tiny_llama(vocab_size=98, seed=0, init_std=0.2), {"r": 4, "alpha": 8}, seed=0)
    task = make_task(TASK)
    base = {"steps": 2, "prompts_per_step": 2, "group_size": 4, "max_new_tokens": 6, "lr": 0.05,
            "rewards": [{"name": reward}], "inner_epochs": 2}
    return {k: Trainer(model, tok, task, {**base, **v}, progress=False) for k, v in methods.items()}


# ------------------------------------------------------------------------------ held-out curves


def fake_result(curves: dict[tuple[str, int], list[float]], eval_every: int, steps: int) -> SimpleNamespace:
    """A study result whose runs have held-out accuracies ``[base, eval at eval_every, ...]`` on 10 problems."""
    rows, evals = [], {}
    for (method, seed), acc in curves.items():
        evals[(method, seed)] = {"base": {"correct": [1] * round(10 * acc[0]) + [0] * round(10 - 10 * acc[0])}}
        mid = iter(acc[1:])
        for step in range(1, steps + 1):
            ev = next(mid) if step % eval_every == 0 else math.nan
            rows.append({"method": method, "seed": seed, "step": step, "samples": 8 * step, "eval_accuracy": ev,
                         "eval_n": 10.0 if step % eval_every == 0 else math.nan})
    return SimpleNamespace(sweep=SimpleNamespace(metrics=pd.DataFrame(rows), evals=evals))


def test_steps_to_target_uses_the_baselines_gain_of_the_same_seed_and_flags_censored_runs():
    res = fake_result({("base", 0): [0.1, 0.2, 0.3, 0.5], ("fast", 0): [0.1, 0.4, 0.4, 0.4],
                       ("slow", 0): [0.1, 0.1, 0.1, 0.2]}, eval_every=2, steps=6)
    # target = 0.1 + 0.5 * (0.5 - 0.1) = 0.3: base reaches it at step 4, fast at step 2, slow never
    t = measure.steps_to_target(res, "base", frac=0.5).set_index("method")
    assert t.loc["base", "target"] == pytest.approx(0.3)
    assert t.loc["base", "value"] == 4 and t.loc["fast", "value"] == 2 and t.loc["fast", "samples"] == 16
    assert math.isnan(t.loc["slow", "value"]) and not t.loc["slow", "reached"]


def test_time_to_target_sums_step_seconds_and_tokens_until_frac_of_the_baselines_last_accuracy():
    res = fake_result({("base", 0): [0.1, 0.2, 0.3, 0.5], ("fast", 0): [0.1, 0.5, 0.5, 0.5],
                       ("slow", 0): [0.1, 0.1, 0.1, 0.2]}, eval_every=2, steps=6)
    m = res.sweep.metrics
    m["step_s"] = m["method"].map({"base": 2.0, "fast": 3.0, "slow": 1.0})  # fast: slower steps, fewer of them
    m["gen_tokens"] = m["method"].map({"base": 10.0, "fast": 20.0, "slow": 10.0})
    # target = 0.9 x 0.5 = 0.45: base first at step 6 (0.5): 6 x 2 s = 12 s, 60 tokens; fast at step 2: 2 x 3 s = 6 s,
    # 40 tokens; slow never (censored: NaN, not its total)
    t = measure.time_to_target(res, "base").set_index("method")
    assert t["target"].tolist() == pytest.approx([0.45] * 3)
    assert t.loc["base", "value"] == pytest.approx(12.0) and t.loc["fast", "value"] == pytest.approx(6.0)
    assert t.loc["base", "step"] == 6 and t.loc["fast", "step"] == 2
    assert math.isnan(t.loc["slow", "value"]) and t.loc["slow", "reached"] == 0.0 and t.loc["fast", "reached"] == 1.0
    tok = measure.time_to_target(res, "base", cost="tokens").set_index("method")
    assert tok.loc["base", "value"] == pytest.approx(60.0) and tok.loc["fast", "value"] == pytest.approx(40.0)
    assert measure.time_to_target(res, "base", cost="steps").set_index("method").loc["fast", "value"] == 2
    # a target at or below the curve's start measures nothing: flagged
    high = fake_result({("base", 0): [0.6, 0.5, 0.55, 0.6]}, eval_every=2, steps=6)
    high.sweep.metrics["step_s"] = 1.0
    row = measure.time_to_target(high, "base").iloc[0]
    assert row["target"] == pytest.approx(0.54) and row["target_above_base"] == 0.0 and row["step"] == 4
    with pytest.raises(ParamError, match="cost='flops' is not allowed; allowed: seconds, tokens, steps"):
        measure.time_to_target(res, "base", cost="flops")


# ------------------------------------------------------------------------------ losses' gradients


def test_at_ratio_one_gspo_and_sapo_gradients_equal_grpos_and_differ_in_epoch_two(tok):
    tr = trainers(tok, {"GRPO": {}, "GSPO": {"loss": "gspo"}, "SAPO": {"loss": "sapo"}})
    batch = tr["GRPO"].roll_out([0, 1, 2])
    before = [p.detach().clone() for p in tr["GRPO"].params]
    out = {k: measure.two_epoch_gradients(t, batch) for k, t in tr.items()}
    assert all(torch.equal(p, b) for p, b in zip(tr["GRPO"].params, before, strict=True))  # restored
    g1 = out["GRPO"][0]
    assert g1.norm() > 0
    for k in ("GSPO", "SAPO"):
        assert torch.allclose(out[k][0], g1, rtol=1e-4, atol=1e-7), k  # ratio 1: the same policy gradient
        assert out[k][2] == 0.0  # nothing clipped or gated at ratio 1
    assert not torch.allclose(out["GSPO"][1], out["GRPO"][1], rtol=1e-3, atol=1e-6)


def test_gspo_clips_almost_every_token_after_one_step_at_epsilon_3e4(tok):
    # a sequence ratio moves by far more than 3e-4 after one AdamW step of lr 0.05: the clip range is tiny
    tr = trainers(tok, {"GRPO": {}, "GSPO": {"loss": "gspo"}})
    batch = tr["GRPO"].roll_out([0, 1, 2])
    _, _, _, clip_gspo = measure.two_epoch_gradients(tr["GSPO"], batch)
    _, _, _, clip_grpo = measure.two_epoch_gradients(tr["GRPO"], batch)
    assert clip_gspo > 0.3 and clip_gspo > clip_grpo


def test_loss_checkpoint_rows_give_both_epochs_per_method_on_shared_batches(tok):
    tr = trainers(tok, {"GRPO": {}, "SAPO": {"loss": "sapo"}})
    df = pd.DataFrame(measure.loss_checkpoint_rows(tr, n_batches=3, prompts=2, seed=0, checkpoint="base"))
    assert set(df["epoch"]) == {"ratio 1", "epoch 2"} and len(df) == 2 * 2 * 3
    r1 = df[df.epoch == "ratio 1"].pivot(index="unit", columns="method", values="rel_var")
    np.testing.assert_allclose(r1["SAPO"], r1["GRPO"], rtol=1e-3)  # identical gradients at ratio 1


# ------------------------------------------------------------------------------ NGRPO's all-wrong groups


def test_gold_completion_follows_the_answer_format():
    task = SimpleNamespace(spec=SimpleNamespace(answer_format="tag"))
    assert measure.gold_completion(task, SimpleNamespace(answer="12")) == "<answer>12</answer>"
    task.spec.answer_format = "plain"
    assert measure.gold_completion(task, SimpleNamespace(answer="12")) == "12"


def test_on_all_wrong_groups_grpo_leaves_the_answer_unchanged_and_ngrpo_moves_it(tok):
    # a zero reward everywhere: every group is all wrong, GRPO has nothing to train on, NGRPO's virtual
    # max-reward sample gives the sampled answers negative advantages
    tr = trainers(tok, {"GRPO": {}, "NGRPO": {"estimator": "ngrpo"}}, reward="test_measure_zero")
    before = [p.detach().clone() for p in tr["GRPO"].params]
    df = pd.DataFrame(measure.all_wrong_rows(tr, n_batches=2, prompts=3, seed=0))
    # all-wrong is the verifier's verdict (the tiny model answers some prompts right by chance): at least two
    # prompts of the six, each with a row per method
    assert set(df["method"]) == {"GRPO", "NGRPO"} and len(df) >= 2 * 2
    assert (df.groupby("unit")["before"].nunique() == 1).all()  # one reference log-prob per prompt
    assert (df[df.method == "GRPO"]["value"] == 0.0).all()
    assert (df[df.method == "NGRPO"]["value"].abs() > 1e-6).all()
    assert all(torch.equal(p, b) for p, b in zip(tr["GRPO"].params, before, strict=True))


# ------------------------------------------------------------------------------ token-level advantages


def test_token_level_advantages_constant_over_tokens_give_the_sequence_level_gradient(tok):
    # reinforce_pp_kl without its KL term repeats reinforce_pp's advantage on every token of a completion
    tr = trainers(tok, {"A": {}})["A"]
    g_seq = measure.batch_gradients(tr, [0, 1], {"s": "reinforce_pp"})["s"]
    tr._rollouts_this_step = 0  # the same noise stream: the same completions (common random numbers)
    g_tok = measure.batch_gradients(tr, [0, 1], {"t": ("reinforce_pp_kl", {"kl_coef": 0.0})})["t"]
    assert g_seq.norm() > 0 and torch.allclose(g_seq, g_tok, rtol=1e-4, atol=1e-8)


def test_token_advantages_expand_sequence_values_and_cut_token_values_to_width():
    seq = measure.token_advantages(torch.tensor([[1.0, -1.0]]), rows=2, width=3)
    assert seq.tolist() == [[1.0, 1.0, 1.0], [-1.0, -1.0, -1.0]]
    tok_level = measure.token_advantages(torch.arange(8.0).view(1, 2, 4), rows=2, width=3)
    assert tok_level.tolist() == [[0.0, 1.0, 2.0], [4.0, 5.0, 6.0]]


def test_relative_variance_unbiased_parts_and_jackknife_by_hand() -> None:
    # one-dimensional gradients [1, 2, 3]: trace of the covariance = ((1-2)^2 + 0 + (3-2)^2) / 2 = 1;
    # U-statistic ||mean||^2 = ((1+2+3)^2 - (1+4+9)) / (3 * 2) = 22 / 6 = 3.666667; R = 0.272727.
    # Leave out 1: [2, 3]: trace (13 - 25/2) / 1 = 0.5, ||mean||^2 = (25 - 13) / 2 = 6, R = 0.083333;
    # pseudo-value 3 log(0.272727) - 2 log(0.083333) = 3 (-1.299283) + 2 (2.484907) = 1.071964
    from rlbook.analysis import measure

    out = measure.relative_variance(torch.tensor([[1.0], [2.0], [3.0]]))
    assert out["rel_var"] == pytest.approx(0.272727, abs=1e-6)
    assert out["pseudo"][0] == pytest.approx(1.071964, abs=1e-5)


def test_relative_variance_does_not_saturate_where_the_plug_in_ratio_does() -> None:
    # true R = tr(Cov) / ||mu||^2 = (D sigma^2) / (D mu^2) = 30 with 6 batches: the plug-in ratio
    # mean ||g_b - gbar||^2 / ||gbar||^2 is at most N - 1 = 5 whatever R is; the U-statistic estimate is centred
    # on 30 in log terms (median over 200 repetitions within 30%)
    from rlbook.analysis import measure

    gen = torch.Generator().manual_seed(0)
    est, plug = [], []
    for _ in range(200):
        g = 1.0 + math.sqrt(30.0) * torch.randn(6, 4000, generator=gen, dtype=torch.float64)
        est.append(measure.relative_variance(g)["rel_var"])
        m = g.mean(0)
        plug.append(float(((g - m).pow(2).sum(-1)).mean() / m.pow(2).sum()))
    assert max(plug) < 5.0
    assert np.median(est) == pytest.approx(30.0, rel=0.3)


def test_per_batch_stats_rel_err_and_leave_one_out_cosine_by_hand() -> None:
    # gradients [1,0], [0,1], [1,1]: sum [2,2], mean [2/3,2/3], ||mean||^2 = 8/9.
    # batch 0: ||g - mean||^2 = 1/9 + 4/9 = 5/9, rel_err sqrt(5/8) = 0.790569; leave-one-out direction [1,2],
    #   cos = 1 / sqrt(5) = 0.447214.  batch 2: ||g - mean||^2 = 2/9, rel_err 0.5; leave-one-out [1,1], cos 1.
    from rlbook.analysis import measure

    out = measure.per_batch_stats(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
    assert out["rel_err"].tolist() == pytest.approx([0.790569, 0.790569, 0.5], abs=1e-6)
    assert out["cos"].tolist() == pytest.approx([0.447214, 0.447214, 1.0], abs=1e-6)


def test_gram_summed_over_column_blocks_is_the_full_product() -> None:
    # [[1,2,3],[4,5,6]] in blocks of one column (8 bytes x 2 rows = 16): g0.g0 = 14, g0.g1 = 32, g1.g1 = 77
    from rlbook.analysis import measure

    g = measure.gram(torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]), chunk_bytes=16)
    assert g.tolist() == [[14.0, 32.0], [32.0, 77.0]]


def test_per_batch_stats_makes_no_full_size_copy_of_the_gradients() -> None:
    # bnpo's cpu profile (120 batches x 4.9M LoRA parameters x 3 estimators) was killed for memory at 21.8 GB
    # while float64 copies, deviations and leave-one-out means of the whole [N, D] set were made.  In a fresh
    # process: the peak RSS added by per_batch_stats on 400 MB of float32 gradients stays under half of that.
    code = (
        "import resource, torch\n"
        "from rlbook.analysis import measure\n"
        "g = torch.randn(20, 5_000_000) + 0.1\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "measure.per_batch_stats(g)\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "lib"), "OMP_NUM_THREADS": "1"}
    added = int(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                               env=env).stdout.split()[-1])
    assert added < 0.5 * 20 * 5_000_000 * 4, f"per_batch_stats added {added / 1e6:.0f} MB"
