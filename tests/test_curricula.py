"""Curricula family (rlbook.mechanisms.curricula): each selection rule on hand-made outcomes, with the numbers worked out by
hand from the paper's (or the official code's) formula, and one real trainer step of each mechanism on the tiny
model; uneven groups in the estimators, the update and the metrics."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from rlbook.core.errors import ParamError
from rlbook.data.tasks import Problem, make_task
from rlbook.mechanisms import estimators
from rlbook.mechanisms.curricula import adhint, d3s, dump, knapsack, pf_ppo, r3, spo_sampling, tppo
from rlbook.mechanisms.curricula._util import sample_advantages
from rlbook.mechanisms.curricula.adora import adora_weights
from rlbook.policy.models import wrap_lora
from rlbook.policy.rollout import Batch, pad_groups, rollout_from_ids
from rlbook.training.trainer import Trainer

A = pytest.approx


# ------------------------------------------------------------------------------------------ uneven groups
def test_grpo_over_uneven_groups_uses_each_groups_own_size():
    # sizes 1, 2, 4: [1] -> A = r = 1 (verl: a group of one has mean 0, std 1);
    # [1, 0]: mean .5, Bessel std sqrt(.5) = .7071 -> +-.7071; [1, 0, 0, 0]: mean .25, std .5 -> 1.5, -.5
    r = torch.tensor([[1.0, 0, 0, 0], [1, 0, 0, 0], [1, 0, 0, 0]])
    mask = torch.tensor([[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    a = estimators.compute("grpo", r, context={"sample_mask": mask})
    assert a[0].tolist() == A([1.0, 0, 0, 0], abs=1e-5)
    assert a[1].tolist() == A([0.70711, -0.70711, 0, 0], abs=1e-4)
    assert a[2].tolist() == A([1.5, -0.5, -0.5, -0.5], abs=1e-4)


def test_an_estimator_without_uneven_group_support_fails_clearly():
    mask = torch.tensor([[True, False]])
    with pytest.raises(ParamError, match="does not support uneven groups.*grpo"):
        estimators.compute("rloo", torch.tensor([[1.0, 0.0]]), context={"sample_mask": mask})


def test_ngrpo_over_an_uneven_group_counts_the_virtual_sample():
    # [0, 0, 0] of 4 slots + one virtual 1: mean .25, Bessel std .5 -> each real sample -.5
    r = torch.zeros(1, 4)
    mask = torch.tensor([[True, True, True, False]])
    assert estimators.compute("ngrpo", r, context={"sample_mask": mask})[0].tolist() == A([-0.5, -0.5, -0.5, 0.0], abs=1e-4)


def test_pad_groups_lays_out_budgets_and_fill_adds_samples(tok):
    prompts = [[5, 6, 7], [8, 9]]
    roll = rollout_from_ids([prompts[0]] * 2 + [prompts[1]], [[10, 11], [12], [13, 14, 2]], ["a", "b", "c"],
                            [True, True, True], pad_id=2)
    padded, mask = pad_groups(roll, [2, 1], 3, pad_id=2)
    assert mask.tolist() == [[True, True, False], [True, False, False]]
    assert padded.lengths.tolist() == [2, 1, 0, 3, 0, 0] and padded.texts[2] == ""
    b = Batch([0, 1], [None, None], padded, torch.zeros(6, 1), torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.bool),
              sample_mask=mask)
    extra = rollout_from_ids([prompts[1]], [[7, 7, 7, 7]], ["d"], [False], pad_id=2)
    b.fill([(1, 1)], extra, torch.ones(1, 1), [True], pad_id=2)
    assert b.sample_mask.tolist() == [[True, True, False], [True, True, False]]
    assert b.roll.lengths.tolist() == [2, 1, 0, 3, 4, 0] and b.correct[1, 1] and b.roll.texts[4] == "d"
    assert b.roll.completion_ids[4, :4].tolist() == [7, 7, 7, 7]


# ------------------------------------------------------------------------------------------ Knapsack RL
def test_knapsack_value_is_nonzero_gradient_probability_times_information_gain():
    # v(4, .5) = (1 - 2 x .0625) x .5 x .25 = .109375; v(8, .25) = (1 - .25^8 - .75^8) x .25 x .5625 = .126544
    assert knapsack.knapsack_value(4, 0.5) == A(0.109375)
    assert knapsack.knapsack_value(8, 0.25) == A(0.126544, abs=1e-6)


def test_knapsack_budgets_solve_the_dp_by_hand():
    # T = 4 x 4 = 16; grants 2 each, 8 left; costs: p=.5: log .1 / log .5 = 3.32 -> 3, p=.25: 8.004 -> min(8, .) = 8;
    # E = 11 >= 8: no fallback.  k3 + k4 = 8, k <= 6: (3, 5) = v(5,.5) + v(7,.25) = .117188 + .121845 = .239033
    # beats (2, 6) .235919, (4, 4) .236656, (5, 3) .230164, (6, 2) .219604 -> budgets 2, 2, 5, 7
    states = [(True, 0.0, 8), (True, 1.0, 8), (True, 0.5, 8), (True, 0.25, 16)]
    out, info = knapsack.knapsack_budgets(states, n=4, min_n=2, max_n=8)
    assert out == [2, 2, 5, 7] and not info["fallback"]


def test_knapsack_fallback_pours_the_surplus_on_the_unsolved_prompt():
    # T = 32, grants 2 each, 24 left; E = 3 + 3 = 6 < 24: surplus 18 to the p = 0 prompt, the DP gets W = 6:
    # (3, 3) = 2 v(5, .5) = .234375 beats (2, 4) .230469 and (1, 5) .216797 -> 20, 5, 5, 2
    states = [(True, 0.0, 8), (True, 0.5, 8), (True, 0.5, 8), (True, 1.0, 8)]
    out, info = knapsack.knapsack_budgets(states, n=8, min_n=2, max_n=8)
    assert out == [20, 5, 5, 2] and info["fallback"]


def test_knapsack_unseen_prompts_get_n_and_count_as_unsolved_in_the_fallback():
    # the code's quirk: an invalid prompt's rate stays 0, so it shares the surplus with p = 0 prompts.
    # grants: invalid 4, p=.5 2, p=1 2 -> 8 of 12, 4 left; E = 3 < 4 -> surplus 1 to the invalid prompt, DP W = 3
    states = [(False, 0.0, 0), (True, 0.5, 8), (True, 1.0, 8)]
    out, info = knapsack.knapsack_budgets(states, n=4, min_n=2, max_n=8)
    assert out == [5, 5, 2] and info["fallback"]


def test_knapsack_success_state_uses_the_newest_16_rewards_when_a_visit_is_small():
    s = knapsack.SuccessState(buffer=16, min_count=8)
    assert s.get(3) == (False, 0.0, 0)
    s.update(3, [1, 0, 0, 0, 0, 0, 0, 0])
    s.update(3, [1, 1, 0, 0, 0, 0, 0, 0])  # 8 < 16: mean of the newest 16 = 3 / 16
    assert s.get(3) == (True, A(0.1875), 16)
    s.update(3, [1.0] * 16)  # a visit of 16: its own mean
    assert s.get(3)[1] == 1.0


def test_knapsack_advantage_clip_bounds_a_lone_success():
    # 93 rollouts, one success: mean 1/93, Bessel std .10370, A = (92/93)/.10370 = 9.54 -> clipped to 5
    r = torch.zeros(1, 93)
    r[0, 0] = 1.0
    a = estimators.compute("grpo", r)
    assert float(a[0, 0]) == A(9.539, abs=1e-2)
    batch = SimpleNamespace(advantages=a)
    knapsack.AdvantageClip(None, value=5.0).run(None, batch)
    assert float(batch.advantages[0, 0]) == 5.0 and float(batch.advantages[0, 1]) == A(-0.1037, abs=1e-3)


# ------------------------------------------------------------------------------------------ DUMP
def test_dump_ucb_softmax_weights_by_hand():
    # N = 2200, 2 ln 2201 = 15.3933; bonus .12401, .12401, .27674; scores .22401 .92401 .77674;
    # (score - max) / .1 = -7, 0, -1.4727 -> exp .000912, 1, .22931 -> w .00074, .81286, .18639
    w = dump.ucb_weights([0.1, 0.8, 0.5], [1000, 1000, 200], c=1.0, tau=0.1)
    assert w == A([0.00074, 0.81286, 0.18639], abs=2e-5)


def test_dump_window_is_a_fifo_over_samples_and_counts_are_cumulative():
    win = dump.BucketWindow(300)
    win.update([1.0] * 200)
    win.update([0.0] * 200)  # the window holds 100 ones and 200 zeros
    assert win.mu == A(1 / 3) and win.n == 400


def _pool(n_each: int = 4) -> SimpleNamespace:
    probs = [Problem(i, "q", "1", [], {}, {"source": "a" if i < n_each else "b", "difficulty": {}})
             for i in range(2 * n_each)]
    return SimpleNamespace(train=probs)


def test_dump_observes_each_samples_advantage_magnitude_in_its_bucket():
    s = dump.DumpSampler(8, seed=0, task=_pool())
    adv = estimators.compute("grpo", torch.tensor([[1.0, 0, 0, 0], [1.0, 1, 1, 1]]))  # |A| 1.5 .5 .5 .5; 0 0 0 0
    roll = SimpleNamespace(completion_mask=torch.ones(8, 3))
    batch = SimpleNamespace(indices=[0, 5], advantages=adv, sample_mask=None, metrics={}, roll=roll)
    s.observe_batch(batch)
    assert s.windows["a"].mu == A(0.75, abs=1e-4) and s.windows["b"].mu == 0.0
    # a: .75 + sqrt(2 ln 9 / 5) = 1.6130; b: 0 + same bonus = .8630 -> softmax / .1 -> w_b = 1 / (1 + e^7.5)
    assert s.weights[1] == A(1 / (1 + math.exp(7.5)), rel=1e-3)
    s.weights = [0.0, 1.0]
    assert all(i >= 4 for i in s.next(20))  # every draw from bucket b, with replacement


def _token_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Token advantages [1, 4, 4] of completions 1, 4, 4 and 1 tokens long (zero past each one's end)."""
    lengths = [1, 4, 4, 1]
    adv = torch.tensor([[[2.0, 0, 0, 0], [-1.0] * 4, [1.5] * 4, [-0.5, 0, 0, 0]]])
    mask = torch.tensor([[1.0] * n + [0.0] * (4 - n) for n in lengths])
    return adv, mask


def test_sample_advantages_average_over_the_response_tokens_not_the_padded_width():
    adv, mask = _token_batch()
    # over each completion's tokens: 2/1, -4/4, 6/4, -.5/1; the padded width would give .5, -1, 1.5, -.125
    assert sample_advantages(adv, mask).tolist() == [[A(2.0), A(-1.0), A(1.5), A(-0.5)]]
    assert sample_advantages(adv[0, :2], mask[:2]).tolist() == adv[0, :2].tolist()  # [P, G] as it is


def test_dump_scores_token_advantages_over_the_response_mask():
    s = dump.DumpSampler(8, seed=0, task=_pool())
    adv, mask = _token_batch()
    batch = SimpleNamespace(indices=[0], advantages=adv, sample_mask=None, metrics={},
                            roll=SimpleNamespace(completion_mask=mask))
    s.observe_batch(batch)
    # |A| 2, 1, 1.5, .5 -> mu = 1.25 (the padded width: .5, 1, 1.5, .125 -> .78125)
    assert s.windows["a"].mu == A(1.25) and s.windows["a"].n == 4


def test_d3s_ranks_token_advantages_by_their_response_mean():
    adv, mask = _token_batch()
    roll = SimpleNamespace(completion_mask=mask, entropy=None)
    batch = SimpleNamespace(advantages=adv, kept=None, correct=torch.zeros(1, 4, dtype=torch.bool), G=4, roll=roll,
                            context={}, train_mask=None)
    batch.drop = lambda keep: setattr(batch, "train_mask", keep)
    trainer = SimpleNamespace(cfg=SimpleNamespace(gen_token_budget=0, steps=10), step_count=0, history=[])
    d3s.D3S(trainer, n_init=0.5, tokens=False).run(trainer, batch)
    # keep 2 of 4 = the largest and the smallest mean: 2 (slot 0) and -1 (slot 1); the padded means
    # (.5, -1, 1.5, -.125) would keep slots 1 and 2
    assert batch.train_mask.tolist() == [[True, True, False, False]]


# ------------------------------------------------------------------------------------------ D3S
G1 = [1.2076, 1.2076, 1.2076, -0.7246, -0.7246, -0.7246, -0.7246, -0.7246]  # GRPO A of [1,1,1,0,0,0,0,0]


def test_d3s_intra_group_keeps_the_most_balanced_subset():
    # N_s = 4 of g1: Var for j positives: j=1 .7000, j=2 .9333 (the largest), j=3 .7000 -> the first two of each
    assert d3s.max_variance_subset(G1, 4) == [0, 1, 3, 4]


def test_d3s_cross_group_selection_on_pooled_advantages():
    # g2 = [1,0,...,0]: A+ 2.4749, A- -.3536; g3 all 0.  Pooled 24, keep 6: Var(k top) k=2 1.5968 is the largest
    # -> g2's positive, g1's first positive, g1's first four negatives (brute force over all 134,596 subsets)
    adv = torch.tensor([G1, [2.4749] + [-0.3536] * 7, [0.0] * 8])
    keep = d3s.cross_select(adv, torch.ones(3, 8, dtype=torch.bool), 6)
    assert keep.nonzero().tolist() == [[0, 0], [0, 3], [0, 4], [0, 5], [0, 6], [1, 0]]


def test_d3s_token_selection_by_advantage_times_entropy():
    # |A| 1.2 and .7, entropies [.1, 2, .5] and [3, .2, .1]: scores [.12, 2.4, .6], [2.1, .14, .07];
    # K = 1/3 of 6 tokens = 2 -> (s1, t2) and (s2, t1)
    score = torch.tensor([[1.2], [0.7]]) * torch.tensor([[0.1, 2.0, 0.5], [3.0, 0.2, 0.1]])
    assert d3s.top_tokens(score, torch.ones(2, 3), 1 / 3).tolist() == [[0, 1, 0], [1, 0, 0]]


def test_d3s_linear_schedule():
    assert d3s.linear(0.25, 4, 8) == 5 and d3s.linear(0.25, 0.2, 1.0) == A(0.4)


# ------------------------------------------------------------------------------------------ PF-PPO
def test_pf_ppo_rank_filters():
    s = [0.9, 0.1, -0.2, 0.5, -0.8]  # ranking 0, 3, 1, 2, 4
    assert pf_ppo.pf_select(s, "bon") == [0]
    assert pf_ppo.pf_select(s, "bw") == [0, 4]
    picks = {tuple(pf_ppo.pf_select(s, "br", np.random.default_rng(i))) for i in range(200)}
    assert picks == {(0, 1), (0, 2), (0, 3), (0, 4)}  # the best and one other, each possible
    # GRPO on the BW pair (.9, -.8): mean .05, Bessel std 1.2021 -> +-.7071
    mask = torch.tensor([[True, False, False, False, True]])
    a = estimators.compute("grpo", torch.tensor([s]), context={"sample_mask": mask})
    assert a[0, [0, 4]].tolist() == A([0.70711, -0.70711], abs=1e-4) and a[0, 1:4].abs().sum() == 0


def test_noisy_rm_is_the_verifier_through_tanh_plus_seeded_noise():
    clean = pf_ppo.noisy_rm(["x", "y"], [None, None], correct=[True, False], prompt_ids=[0, 0], step=0, sigma=0.0)
    assert clean == A([math.tanh(1.0), -math.tanh(1.0)])
    a = pf_ppo.noisy_rm(["x"] * 3, [None] * 3, correct=[True] * 3, prompt_ids=[0, 0, 1], step=2, sigma=1.0)
    b = pf_ppo.noisy_rm(["x"] * 3, [None] * 3, correct=[True] * 3, prompt_ids=[0, 0, 1], step=2, sigma=1.0)
    assert a == b and len(set(a)) == 3  # deterministic, and a different draw per sample


# ------------------------------------------------------------------------------------------ ADORA
def test_adora_weights_by_the_length_of_correct_and_wrong_answers():
    c = torch.tensor([[1, 1, 0, 0]] * 3, dtype=torch.bool)
    lengths = torch.tensor([[30, 50, 40, 44], [30, 35, 40, 44], [30, 35, 64, 20]])
    # 50 > mean(40, 44) = 42 -> 1; 35 < 42 -> .1; the 64-token (truncated) negative is excluded: 35 > 20 -> 1
    assert adora_weights(c, lengths, 64.0, 0.1).tolist() == A([1.0, 0.1, 1.0])
    # no correct answer: the LLM code scales by .1, the VL code keeps 1
    none = torch.zeros(1, 4, dtype=torch.bool)
    assert adora_weights(none, lengths[:1], 64.0, 0.1).tolist() == A([0.1])
    assert adora_weights(none, lengths[:1], 64.0, 0.1, variant="vl").tolist() == A([1.0])
    a = estimators.compute("adora", torch.tensor([[1.0, 1, 0, 0]]), context={
        "correct": c[1:2], "lengths": lengths[1:2], "max_new_tokens": 64})
    assert a[0].tolist() == A([0.0866, 0.0866, -0.0866, -0.0866], abs=1e-4)  # GRPO +-.8660 x .1


def test_adora_default_keeps_truncated_wrong_answers_as_the_official_run():
    # ADORA.sh: max_length_threshold 3900 > max_response_length 2048, so no wrong answer is dropped. Group:
    # correct lengths 30, 35; wrong 64 (truncated at max_new_tokens=64) and 20. Every wrong one counts:
    # mean_neg = (64 + 20) / 2 = 42 > max_pos 35 -> lamda; with the threshold at 64 the 64 is dropped:
    # mean_neg = 20 < 35 -> 1.
    c = torch.tensor([[1, 1, 0, 0]], dtype=torch.bool)
    lengths = torch.tensor([[30, 35, 64, 20]])
    r = torch.tensor([[1.0, 1, 0, 0]])
    ctx = {"correct": c, "lengths": lengths, "max_new_tokens": 64}
    grpo = 0.8660  # (1 - .5) / std([1, 1, 0, 0], unbiased) = .5 / .57735
    assert estimators.compute("adora", r, context=ctx)[0].tolist() == A([.1 * grpo] * 2 + [-.1 * grpo] * 2, abs=1e-4)
    cut = estimators.compute("adora", r, context=ctx, max_length_threshold=64)
    assert cut[0].tolist() == A([grpo] * 2 + [-grpo] * 2, abs=1e-4)


# ------------------------------------------------------------------------------------------ SPO sampling
def test_spo_sampling_weights_and_tracker_update():
    # p_hat .0556 .2778 .5 .9444 (offline 0, 2, 4, 8 of 8): w = sqrt(p(1-p)) + .05 = .27906 .49790 .55 .27906
    p = np.array([0.4444 / 8.0, 2.2222 / 8.0, 0.5, 7.5556 / 8.0])
    assert spo_sampling.spo_weights(p).tolist() == A([0.17376, 0.31002, 0.34246, 0.17376], abs=2e-4)
    assert spo_sampling.spo_rho(0.03) == 0.875 and spo_sampling.spo_rho(0.001) == 0.96
    s = spo_sampling.SPOSampler(4, seed=0)
    s.alpha[1], s.beta[1] = 2.2222, 5.7778
    batch = SimpleNamespace(indices=[1], correct=torch.tensor([[True]]), sample_mask=None, context={}, metrics={})
    s.observe_batch(batch)  # D = 0 -> rho = .96: alpha .96 x 2.2222 + 1 = 3.1333, beta .96 x 5.7778 = 5.5467
    assert (s.alpha[1], s.beta[1]) == (A(3.1333, abs=1e-4), A(5.5467, abs=1e-4))


# ------------------------------------------------------------------------------------------ R^3
def test_r3_advantage_on_a_mixed_group():
    # [0,0,0,0] + replayed 1: mean .2, Bessel std sqrt(.2) = .44721 -> -.44721 x 4, 1.78885; alpha 2 halves them
    r = torch.tensor([[0.0, 0, 0, 0, 1]])
    rep = torch.tensor([[False] * 4 + [True]])
    assert estimators.compute("r3", r, context={"replayed": rep})[0].tolist() == A([-0.44721] * 4 + [1.78885], abs=1e-4)
    a2 = estimators.compute("r3", r, context={"replayed": rep}, alpha=2.0)
    assert a2[0].tolist() == A([-0.22361] * 4 + [0.89443], abs=1e-4)


def test_serr_ranks_by_structural_entropy_dominance():
    # (E_peak, E_global): s1 (2, .5), s2 (1.5, .6), s3 (2.5, .4), s4 (1, .9): S = [2, 1, 3, 0]
    # order s3, s1, s2, s4 -> R_max (1 - k/3) with R_max .5: s1 .3333, s2 .1667, s3 .5, s4 0
    stats = [(2.0, 0.5), (1.5, 0.6), (2.5, 0.4), (1.0, 0.9)]
    assert r3.serr_rewards(stats, r_max=0.5) == A([1 / 3, 1 / 6, 0.5, 0.0])
    # L = 8, p = .25 -> top 2 entropies (2.0, 1.2): E_peak 1.6, E_global 5.15 / 8
    assert r3.peak_and_global([0.1, 2.0, 0.3, 1.2, 0.05, 0.9, 0.4, 0.2], 0.25) == A((1.6, 0.64375))


# ------------------------------------------------------------------------------------------ ADHint
def test_adhint_hint_length_follows_the_naive_success():
    # w = .8 (1 - success) + .1: success .25 -> .7 -> 14 of 20 tokens; 0 -> .9 -> 18; 1 -> .1 -> 2
    sol = list(range(20))
    for success, n in ((0.25, 14), (0.0, 18), (1.0, 2)):
        assert len(adhint.hint_ids(sol, adhint.hint_ratio(success, 0.1, 0.9))) == n


def test_adhint_selective_masking_and_union_advantage():
    # a hinted rollout: 3 hint + 4 continuation tokens; A = -.5 -> hint tokens masked; A = 1.2 -> none
    m = adhint.selective_mask(torch.tensor([-0.5, 1.2]), torch.tensor([3, 3]), 7)
    assert m.tolist() == [[0, 0, 0, 1, 1, 1, 1], [1] * 7]
    # 4 naive [0,0,0,0] + 4 hinted [1,1,0,0]: mean .25, Bessel std .46291 -> 1.6202, -.5401
    a = estimators.compute("grpo", torch.tensor([[0.0, 0, 0, 0, 1, 1, 0, 0]]))
    assert a[0].tolist() == A([-0.5401] * 4 + [1.6202] * 2 + [-0.5401] * 2, abs=1e-4)


def test_adhint_reference_solutions_from_generator_metadata():
    task = make_task({"name": "composite", "train_size": 30, "eval_size": 4, "config": {"datasets": [
        {"name": "chain_sum", "config": {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1}},
        {"name": "letter_counting", "config": {"min_words": 2, "max_words": 2}}]}})
    for p in task.train:
        sol = adhint.reference_solution(p)
        assert sol.endswith(p.answer)
        if p.meta["source"] == "chain_sum":
            assert sol == f"{p.entry['metadata']['expression']} = {p.answer}"


# ------------------------------------------------------------------------------------------ T-PPO
def test_egae_bootstraps_a_truncated_rollout_with_its_last_value():
    # gamma 1, lambda .95, V = [.5, .6, .4, .7], truncated: V(s_4) := V(s_3) = .7 -> deltas .1, -.2, .3, 0;
    # A_3 = 0, A_2 = .3, A_1 = -.2 + .95 x .3 = .085, A_0 = .1 + .95 x .085 = .18075
    v = torch.tensor([[0.5, 0.6, 0.4, 0.7]])
    cut = tppo.egae(torch.tensor([1.0]), v, torch.tensor([4]), torch.tensor([False]), 1.0, 0.95)
    assert cut[0].tolist() == A([0.18075, 0.085, 0.3, 0.0], abs=1e-6)  # the reward of a cut rollout is ignored
    # finished with reward 1 (V(terminal) = 0): delta_3 = 1 - .7 = .3; A_2 = .3 + .95 x .3 = .585;
    # A_1 = -.2 + .95 x .585 = .35575; A_0 = .1 + .95 x .35575 = .43796
    done = tppo.egae(torch.tensor([1.0]), v, torch.tensor([4]), torch.tensor([True]), 1.0, 0.95)
    assert done[0].tolist() == A([0.43796, 0.35575, 0.585, 0.3], abs=1e-5)


# ------------------------------------------------------------------------------------------ one real step each
TASK = {"name": "composite", "train_size": 24, "eval_size": 4, "system_prompt": None, "config": {"datasets": [
    {"name": "chain_sum", "config": {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1}},
    {"name": "products", "config": {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1}}]}}
BASE = {"steps": 2, "prompts_per_step": 2, "group_size": 4, "max_new_tokens": 6, "micro_batch_size": 3,
        "gen_batch_size": 8, "lr": 1e-2, "eval_size": 4}
CASES = {
    "knapsack": {"sampler": "knapsack", "sampler_kwargs": {"n": 4, "min_n": 2, "max_n": 8, "min_buffer_length": 4},
                 "group_size": 8, "aggregation": "token_mean", "phases": [{"name": "adv_clip"}]},
    "dump": {"sampler": "dump"},
    "spo_sampling": {"sampler": "spo_sampling", "phases": [{"name": "spo_drift"}]},
    "d3s": {"phases": [{"name": "d3s", "kwargs": {"mode": "intra+cross"}}]},
    "pf_ppo": {"rewards": [{"name": "noisy_rm"}], "phases": [{"name": "pf_ppo", "kwargs": {"strategy": "bw"}}]},
    "r3": {"estimator": "r3", "group_size": 5, "rollouts_per_prompt": 4,
           "phases": [{"name": "r3_replay", "kwargs": {"serr": True}}]},
    "adhint": {"group_size": 8, "rollouts_per_prompt": 4, "phases": [{"name": "adhint"}, {"name": "adhint_mask"}]},
    "adora": {"estimator": "adora", "phases": [{"name": "adora_stats"}]},
    "tppo": {"estimator": "tppo_egae", "phases": [{"name": "tppo_critic"}]},
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_one_real_trainer_step(name, tiny_model, tok):
    model = wrap_lora(tiny_model, {"r": 4, "alpha": 8}, seed=0)
    tr = Trainer(model, tok, make_task(TASK), {**BASE, **CASES[name]}, progress=False)
    before = [p.detach().clone() for p in tr.params]
    m = tr.step()
    assert math.isfinite(m["loss"]) and m["gen_rollouts"] >= 8
    assert m["trained_seqs"] <= m["gen_rollouts"] + (2 if name == "r3" else 0) + (8 if name == "adhint" else 0)
    moved = any(not torch.equal(a, b) for a, b in zip(before, tr.params, strict=True))
    assert moved == (m["trained_seqs"] > 0)


def test_knapsack_step_generates_the_budgets_and_trains_each_group_on_its_own(tiny_model, tok):
    model = wrap_lora(tiny_model, {"r": 4, "alpha": 8}, seed=0)
    cfg = {**BASE, **CASES["knapsack"]}
    tr = Trainer(model, tok, make_task(TASK), cfg, progress=False)
    for i in range(3):  # two prompts of four rollouts: valid after one visit (min_buffer_length 4)
        tr.sampler.state.update(i, [1.0, 0.0, 0.0, 0.0])
    tr.sampler.order, tr.sampler.cursor = np.array([0, 1, 2] + list(range(3, 24))), 0
    m = tr.step()
    # prompts 0 and 1 (p = .25): min_n 2 each + DP over the 4 left (costs int(min(8, 8.004)) = 8 each, E = 16 >= 4)
    assert m["gen_rollouts"] == 8 and m["knapsack_valid_frac"] == 1.0 and m["knapsack_effective"] == 2.0
    assert tr.sampler.state.get(0)[2] + tr.sampler.state.get(1)[2] == 16  # 4 old + the new ones each


def test_token_budget_stops_training(tiny_model, tok):
    model = wrap_lora(tiny_model, {"r": 4, "alpha": 8}, seed=0)
    tr = Trainer(model, tok, make_task(TASK), {**BASE, "steps": 10, "gen_token_budget": 1}, progress=False)
    assert len(tr.fit()) == 1
