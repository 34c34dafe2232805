"""The estimator lab's bandit simulation (rlbook.simlab) and its notebook wiring."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from rlbook import estimators, simlab

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]


def test_true_gradient_matches_finite_difference_of_expected_reward():
    for shift in (0.0, 1.5):
        theta = simlab.prompt_set((0.05, 0.9), 7)
        bandit = simlab.Bandit(theta, stratum_shift=shift)
        h = 1e-6
        for i in range(7):
            up, down = theta.clone(), theta.clone()
            up[i] += h
            down[i] -= h
            fd = (
                simlab.Bandit(up, stratum_shift=shift).expected_reward()
                - simlab.Bandit(down, stratum_shift=shift).expected_reward()
            ) / (2 * h)
            # expected_reward averages over prompts, so its gradient is the per-prompt gradient / N
            assert fd * 7 == pytest.approx(float(bandit.true_gradient()[i]), rel=1e-6)


def test_gradient_estimate_is_group_mean_of_advantage_times_score():
    b = simlab.Batch(
        rewards=torch.tensor([[1.0, 0.0]], dtype=torch.float64),
        probs=torch.tensor([[0.25, 0.25]], dtype=torch.float64),
        strata=torch.zeros(1, 2, dtype=torch.long),
        lengths=torch.tensor([[10.0, 20.0]], dtype=torch.float64),
        ref_probs=torch.tensor([[0.25, 0.25]], dtype=torch.float64),
    )
    adv = torch.tensor([[2.0, -1.0]], dtype=torch.float64)
    # (2 * (1 - 0.25) + (-1) * (0 - 0.25)) / 2
    assert simlab.gradient_estimate(adv, b).item() == pytest.approx((1.5 + 0.25) / 2)


@pytest.mark.parametrize("name", ["reinforce", "rloo"])
def test_monte_carlo_estimate_of_unbiased_estimators_converges_to_true_gradient(name):
    bandit = simlab.Bandit(simlab.prompt_set((0.1, 0.9), 8))
    res = simlab.mc_estimates(name, simlab.sample_batches(bandit, 4, 4000, seed=1))
    mean = res.estimates.mean(0)
    se = res.estimates.std(0, ddof=1) / np.sqrt(len(res.estimates))
    z = (mean - bandit.true_gradient().numpy()) / se
    assert np.all(np.abs(z) < 4.5), z
    stats = simlab.gradient_stats(res, bandit.true_gradient())
    assert stats["rel_bias"] < 0.05 and stats["scale"] == pytest.approx(1.0, abs=0.05)


def test_grpo_is_biased_in_scale_but_not_in_direction_for_one_prompt_probability():
    bandit = simlab.Bandit(simlab.prompt_set((0.5, 0.5), 4))
    res = simlab.mc_estimates("grpo", simlab.sample_batches(bandit, 8, 500, seed=2))
    stats = simlab.gradient_stats(res, bandit.true_gradient())
    assert stats["scale"] > 1.5  # divides by a std of about 0.5
    assert stats["cos_mean"] > 0.99


def test_zero_signal_share_of_grpo_equals_probability_of_all_same_groups():
    theta = simlab.prompt_set((0.1, 0.9), 16)
    bandit = simlab.Bandit(theta)
    g = 4
    p = bandit.probs().numpy()
    expected = float(np.mean(p**g + (1 - p) ** g))
    res = simlab.mc_estimates("grpo", simlab.sample_batches(bandit, g, 1500, seed=3))
    assert res.zero_share.mean() == pytest.approx(expected, abs=0.01)


def test_batches_are_common_random_numbers_reproducible_by_seed():
    bandit = simlab.Bandit(simlab.prompt_set((0.1, 0.9), 5))
    a = simlab.sample_batches(bandit, 3, 2, seed=7)
    b = simlab.sample_batches(bandit, 3, 2, seed=7)
    assert all(torch.equal(x.rewards, y.rewards) for x, y in zip(a, b, strict=True))


def test_context_holds_every_trainer_context_entry_and_stratum_as_zero_weight_part():
    bandit = simlab.Bandit(simlab.prompt_set((0.1, 0.9), 5), stratum_shift=1.0)
    batch = bandit.sample(4, torch.Generator().manual_seed(0))
    ctx = simlab.make_context(batch, step=2, total_steps=5)
    # a bandit draw has no tokens: the token-level context is not there (token-level estimators are not run)
    assert set(estimators.CONTEXT_NAMES) - {"state"} - estimators.TOKEN_CONTEXT <= set(ctx)
    assert ctx["reward_parts"].shape == (5, 4, 2)
    torch.testing.assert_close((ctx["reward_parts"] * ctx["part_weights"]).sum(-1), batch.rewards.float())
    assert torch.all(ctx["seq_log_ratio"] == 0)  # theta == reference theta
    short, long_ = batch.lengths[batch.strata == 0], batch.lengths[batch.strata == 1]
    assert short.max() < long_.min()


def test_every_registered_estimator_runs_on_the_bandit():
    table, skipped = simlab.lab_table(
        simlab.estimator_names(), {"mixed": (0.1, 0.9)}, [4], n_prompts=6, n_batches=3, seed=0
    )
    assert not skipped, skipped
    assert set(table.estimator) == {n for n in estimators.available() if not estimators.token_level(n)}
    assert np.isfinite(table[["cos_batch", "rel_bias", "zero_share"]].to_numpy()).all()


def test_ngrpo_signals_every_all_wrong_group_in_the_right_direction_and_grpo_none():
    bandit = simlab.Bandit(simlab.prompt_set((0.02, 0.2), 16))
    batches = simlab.sample_batches(bandit, 4, 30, seed=0)
    ng = simlab.mc_estimates("ngrpo", batches).all_wrong_signal
    gr = simlab.mc_estimates("grpo", batches).all_wrong_signal
    assert np.nanmin(ng) == 1.0 and np.nanmax(gr) == 0.0
    row = simlab.claim_ngrpo_all_wrong(bandit, 4, 30)
    assert row["verdict"] == "replicated"


def test_stratified_normalisation_centres_advantages_within_each_stratum():
    bandit = simlab.Bandit(simlab.prompt_set((0.1, 0.9), 16), stratum_shift=1.5)
    batches = simlab.sample_batches(bandit, 8, 20, seed=0)
    san = simlab.mc_estimates("stratified", batches, key="part", blend=1.0).stratum_bias
    grpo = simlab.mc_estimates("grpo", batches).stratum_bias
    assert grpo.mean() > 0.2 and san.mean() < 0.05


def test_training_raises_expected_reward_and_is_reproducible():
    theta0 = simlab.prompt_set((0.1, 0.5), 8)
    a = simlab.train("rloo", theta0, 4, steps=30, lr=1.0, seed=0)
    b = simlab.train("rloo", theta0, 4, steps=30, lr=1.0, seed=0)
    assert a.shape == (31,) and np.array_equal(a, b)
    assert a[-1] > a[0] + 0.1


def test_medium_contrast_is_positive_for_the_exact_gradient_on_a_symmetric_set():
    bandit = simlab.Bandit(simlab.prompt_set((0.02, 0.98), 64))
    c = simlab.medium_contrast(bandit.true_gradient().numpy()[None, :], bandit.probs().numpy())
    assert c[0] > 0


def test_lab_claims_return_report_rows():
    prompt_sets = {"mixed": (0.05, 0.95), "hard": (0.02, 0.3)}
    curves = {
        "hard": simlab.train_curves(["grpo", "ngrpo"], simlab.prompt_set((0.02, 0.3), 8), 4, 3, 0.5, [0, 1])
    }
    rows, extras = simlab.lab_claims(8, prompt_sets, 4, 10, 1.5, seed=0, curves=curves)
    assert len(rows) == 7
    for r in rows:
        assert {"claim", "metric", "baseline", "effect", "ci_low", "ci_high", "verdict"} <= set(r)
        assert r["verdict"] in ("replicated", "not replicated", "inconclusive")
    assert "stratified_cosines" in extras


def test_notebook_parameters_cell_matches_params_defaults_and_has_no_outputs():
    nb = json.loads((ROOT / "notebooks" / "estimator_lab.ipynb").read_text())
    spec = yaml.safe_load((ROOT / "params" / "estimator_lab.yaml").read_text())
    assert set(spec["profiles"]) >= {"smoke", "cpu", "gpu"}
    assert nb["cells"][0]["cell_type"] == "markdown"
    param_cells = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(param_cells) == 1 and param_cells[0] is nb["cells"][1]
    values = {}
    for node in ast.parse("".join(param_cells[0]["source"])).body:
        assert isinstance(node, ast.Assign)
        values[node.targets[0].id] = ast.literal_eval(node.value)
    assert values.pop("run_dir") is None and values.pop("profile") is None
    assert {k: (list(v) if isinstance(v, tuple) else v) for k, v in values.items()} == spec["defaults"]
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None
