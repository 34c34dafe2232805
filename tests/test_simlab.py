"""The estimator lab's bandit simulation (rlbook.analysis.simlab) and its notebook wiring."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from rlbook.analysis import simclaims, simlab
from rlbook.mechanisms import estimators

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


def test_on_one_bernoulli_arm_ngrpo_signals_every_all_wrong_group_the_right_way_by_construction():
    # one right and one wrong answer: pushing the sampled wrong answer down is pushing the right one up
    bandit = simlab.Bandit(simlab.prompt_set((0.02, 0.2), 16))
    batches = simlab.sample_batches(bandit, 4, 30, seed=0)
    ng = simlab.mc_estimates("ngrpo", batches).all_wrong_signal
    gr = simlab.mc_estimates("grpo", batches).all_wrong_signal
    assert np.nanmin(ng) == 1.0 and np.nanmax(gr) == 0.0


def test_stratified_normalisation_has_zero_stratum_bias_and_grpo_does_not():
    bandit = simlab.Bandit(simlab.prompt_set((0.1, 0.9), 16), stratum_shift=1.5)
    batches = simlab.sample_batches(bandit, 8, 20, seed=0)
    san = simlab.mc_estimates("stratified", batches, key="part", blend=1.0).stratum_bias
    grpo = simlab.mc_estimates("grpo", batches).stratum_bias
    assert grpo.mean() > 0.2 and san.max() < 1e-6


def test_training_raises_expected_reward_and_is_reproducible():
    theta0 = simlab.prompt_set((0.1, 0.5), 8)
    a = simlab.train("rloo", theta0, 4, steps=30, lr=1.0, seed=0)
    b = simlab.train("rloo", theta0, 4, steps=30, lr=1.0, seed=0)
    assert a.shape == (31,) and np.array_equal(a, b)
    assert a[-1] > a[0] + 0.1


def test_medium_contrast_is_positive_for_the_exact_gradient_on_a_symmetric_set():
    bandit = simlab.Bandit(simlab.prompt_set((0.02, 0.98), 64))
    c = simclaims.medium_contrast(bandit.true_gradient().numpy()[None, :], bandit.probs().numpy())
    assert c[0] > 0


def test_curve_band_is_the_t_interval_across_seeds():
    mean, lo, hi = simlab.curve_band(np.array([[0.0, 1.0], [0.0, 3.0]]))
    # step 1: mean 2, sd sqrt(2), n 2: half width t(0.975, 1) * sqrt(2) / sqrt(2) = 12.7062
    assert mean.tolist() == [0.0, 2.0] and lo[0] == hi[0] == 0.0
    assert hi[1] - 2.0 == pytest.approx(12.7062, abs=1e-3) and lo[1] == pytest.approx(2.0 - 12.7062, abs=1e-3)


def test_token_log_ratio_spreads_the_sequence_log_ratio_over_its_tokens():
    out = simlab.token_spread(torch.tensor([[0.6, -1.0]]), torch.tensor([[3.0, 1.0]]), width=4)
    torch.testing.assert_close(out, torch.tensor([[[0.2, 0.2, 0.2, 0.0], [-1.0, 0.0, 0.0, 0.0]]]))


def test_categorical_set_puts_the_right_answer_in_range_and_one_dominant_wrong_answer():
    pi = torch.softmax(simclaims.categorical_set((0.1, 0.3), 3, n_answers=4, decay=0.5), -1)
    assert pi[:, 0].tolist() == pytest.approx([0.1, 0.2, 0.3])
    # wrong mass 0.9 split 4:2:1 (weights 1, 0.5, 0.25 normalised)
    assert pi[0, 1:].tolist() == pytest.approx([0.9 * 4 / 7, 0.9 * 2 / 7, 0.9 / 7])


def test_right_logp_change_after_one_step_hand_computed():
    bandit = simclaims.Categorical(torch.tensor([[0.2, 0.5, 0.3], [0.2, 0.6, 0.2]]).log())
    answers = torch.tensor([[1, 2], [2, 2]])  # both groups all wrong
    # NGRPO: rewards [0, 0] + a virtual 1: mean 1/3, unbiased std sqrt(1/3), A = -(1/3)/sqrt(1/3) = -0.57735.
    # prompt 0: grad = A ((e1 + e2)/2 - pi) = (0.11547, 0, -0.11547); new normaliser
    #   0.2 e^0.11547 + 0.5 + 0.3 e^-0.11547 = 0.991764, change = 0.11547 - log 0.991764 = 0.12374.
    # prompt 1 (only the minor wrong answer sampled): grad = A (e2 - pi) = (0.11547, 0.34641, -0.46188);
    #   normaliser 0.2 e^0.11547 + 0.6 e^0.34641 + 0.2 e^-0.46188 = 1.19889, change = 0.11547 - 0.18140 = -0.06593:
    #   the freed mass goes mostly to the dominant wrong answer, so the claim is not true by construction.
    ng = simclaims.right_logp_change("ngrpo", bandit, answers)
    assert ng.tolist() == pytest.approx([0.12374, -0.06593], abs=2e-5)
    assert simclaims.right_logp_change("grpo", bandit, answers).tolist() == [0.0, 0.0]


def test_grpo_expected_update_in_closed_form_by_hand():
    # G = 2: only k = 1, s = sqrt(1/2): E = 2 p (1 - p) x 1 / (4 x .70711) = .70711 p (1 - p)
    p = np.array([0.1, 0.5])
    assert simlab.grpo_expected_update(p, 2).tolist() == pytest.approx((0.70711 * p * (1 - p)).tolist(), abs=1e-5)
    # G = 4: k = 1, 3: s = .5, weight 3 / (16 x .5) = .375; k = 2: s = .57735, weight 4 / (16 x .57735) = .43301.
    # p = .5: .25 x .375 + .375 x .43301 + .25 x .375 = .34988; p = .1: .2916 x .375 + .0486 x .43301 + .0036 x .375
    assert simlab.grpo_expected_update(p, 4).tolist() == pytest.approx([0.131744, 0.34988], abs=1e-5)


def test_grpo_expected_update_matches_the_monte_carlo_mean():
    bandit = simlab.Bandit(simlab.prompt_set((0.1, 0.9), 5))
    mc = simlab.mc_estimates("grpo", simlab.sample_batches(bandit, 4, 4000, 0)).estimates.mean(0)
    assert mc.tolist() == pytest.approx(simlab.grpo_expected_update(bandit.probs().numpy(), 4).tolist(), abs=0.01)


def test_medium_contrast_rows_are_exact_values():
    # p = .1, .5, .9; medium .5, extreme .1 and .9.  G = 4: GRPO's E .131744, .34988, .131744 (mean .204456):
    # (.34988 - .131744) / .204456 = 1.06691; exact p (1 - p) .09, .25, .09: (.25 - .09) / .143333 = 1.11628
    bandit = simlab.Bandit(simlab.prompt_set((0.1, 0.9), 3))
    m = simclaims.medium_exact(bandit, 4)
    assert (m["grpo"], m["exact"], m["grpo - exact"]) == pytest.approx((1.06691, 1.11628, -0.04937), abs=1e-4)
    # G = 2: GRPO's expected update is .70711 x the exact gradient, and the contrast is scale-free: equal
    assert simclaims.medium_exact(bandit, 2)["grpo - exact"] == pytest.approx(0.0, abs=1e-12)


def test_all_wrong_change_is_exact_over_every_wrong_multiset():
    # pi = (.2, .5, .3), G = 2, NGRPO's A = -.57735 on an all-wrong group: answers {1,1} (prob .25) -> .16063,
    # {1,2} (prob 2 x .5 x .3 = .3) -> .12374, {2,2} (prob .09) -> .02739 (one SGD step each, as in the test above);
    # expectation given all wrong: (.25 x .16063 + .3 x .12374 + .09 x .02739) / .64 = .12460
    bandit = simclaims.Categorical(torch.tensor([[0.2, 0.5, 0.3]]).log())
    assert simclaims.all_wrong_exact("ngrpo", bandit, 2) == pytest.approx(0.12460, abs=2e-5)
    assert simclaims.all_wrong_exact("grpo", bandit, 2) == 0.0


def test_lab_claims_test_the_estimates_and_show_the_analytic_rows_exactly():
    prompt_sets = {"mixed": (0.05, 0.95), "hard": (0.02, 0.3)}
    curves = {
        "hard": simlab.train_curves(["grpo", "ngrpo"], simlab.prompt_set((0.02, 0.3), 8), 4, 3, 0.5, [0, 1, 2])
    }
    rows, tables = simclaims.lab_claims(8, prompt_sets, 4, 12, seeds=[0, 1, 2], curves=curves)
    assert len(rows) == 6 and {"rel_variance", "exact", "train_auc"} <= set(tables)
    tested = [r for r in rows if r["role"] != "check"]
    exact = [r for r in rows if r["role"] == "check"]
    assert len(tested) == 3 and all(r["family_size"] == 3 and r["n_seeds"] == 3 for r in tested)
    assert all(r["verdict"] in ("replicated", "not replicated", "inconclusive") for r in tested)
    assert all(r["ci_low"] <= r["effect"] <= r["ci_high"] for r in rows)
    assert len(exact) == 3 and {r["verdict"] for r in exact} == {"check"}
    assert all(r["design"] == "exact" and r["ci_low"] == r["effect"] == r["ci_high"] for r in exact)
    medium = simclaims.medium_exact(simlab.Bandit(simlab.prompt_set((0.05, 0.95), 8)), 4)
    assert exact[1]["effect"] == medium["grpo"] and exact[2]["effect"] == medium["grpo - exact"]
    two, _ = simclaims.lab_claims(8, prompt_sets, 4, 12, seeds=[0, 1])
    assert {r["verdict"] for r in two} == {"underpowered", "check"}


def test_notebook_parameters_cell_matches_params_defaults_and_has_no_outputs():
    nb = json.loads((ROOT / "notebooks" / "estimator_lab.ipynb").read_text())
    spec = yaml.safe_load((ROOT / "params" / "estimator_lab.yaml").read_text())
    assert set(spec["profiles"]) >= {"smoke", "cpu", "gpu"}
    assert nb["cells"][0]["cell_type"] == "markdown"
    param_cells = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(param_cells) == 1  # after the lesson cells (tests/test_lessons.py)
    values = {}
    for node in ast.parse("".join(param_cells[0]["source"])).body:
        assert isinstance(node, ast.Assign)
        values[node.targets[0].id] = ast.literal_eval(node.value)
    assert values.pop("run_dir") is None and values.pop("profile") is None
    assert {k: (list(v) if isinstance(v, tuple) else v) for k, v in values.items()} == spec["defaults"]
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None
