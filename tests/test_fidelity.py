"""Each mechanism against numbers worked out by hand from its reference formula (issue "Trustworthy
replications", section 1).  The arithmetic is in the comments; no expected value here is produced by
calling rlbook a second way."""

from __future__ import annotations

import math

import pytest
import torch
from rlbook.core.config import ParamError
from rlbook.mechanisms import estimators as E
from rlbook.mechanisms import losses

torch.set_num_threads(1)


def approx(t: torch.Tensor, values: list[float], tol: float = 1e-4) -> None:
    assert t.flatten().tolist() == pytest.approx(values, abs=tol)


# ------------------------------------------------------------------ REINFORCE++ (verl masked_whiten over tokens)


def test_reinforce_pp_whitens_over_tokens_the_issue_example() -> None:
    # 2 correct answers of 10 tokens, 6 wrong of 30: N = 20 + 180 = 200 tokens, mean = 20/200 = 0.1,
    # sum L (r - mean)^2 = 20 * 0.81 + 180 * 0.01 = 18, var = 18 / 199 = 0.0904523, sd = 0.3007529
    # A+ = 0.9 / 0.3007529 = 2.99249, A- = -0.1 / 0.3007529 = -0.33250
    r = torch.tensor([[1.0, 1, 0, 0, 0, 0, 0, 0]])
    lengths = torch.tensor([[10.0, 10, 30, 30, 30, 30, 30, 30]])
    a = E.compute("reinforce_pp", r, {"lengths": lengths})
    approx(a, [2.99249] * 2 + [-0.33250] * 6)
    # a per-sequence whitening would give mean 0.25, sd sqrt(0.25 * 0.75 * 8 / 7) = 0.46291: +1.62 / -0.54
    assert abs(float(a[0, 0]) - 0.75 / 0.46291) > 1.0


def test_reinforce_pp_baseline_centres_per_group_then_whitens_over_tokens() -> None:
    # centred: group 0 mean 0.5 -> [0.5, -0.5]; group 1 mean 1 -> [0, 0]; lengths [2, 4, 3, 1], N = 10
    # mean = (2 * 0.5 - 4 * 0.5) / 10 = -0.1
    # sum L (x - mean)^2 = 2 * 0.36 + 4 * 0.16 + 3 * 0.01 + 1 * 0.01 = 1.40, var = 1.40 / 9, sd = 0.394405
    # A = [0.6, -0.4, 0.1, 0.1] / 0.394405
    r = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    lengths = torch.tensor([[2.0, 4.0], [3.0, 1.0]])
    a = E.compute("reinforce_pp_baseline", r, {"lengths": lengths})
    approx(a, [1.52128, -1.01419, 0.25355, 0.25355])


def test_reinforce_pp_baseline_group_of_one_has_baseline_zero() -> None:
    # verl: a group of one has mean 0, so x = r = [1, 0]; lengths [1, 3]: N = 4, mean = 0.25,
    # sum L (x - mean)^2 = 0.5625 + 3 * 0.0625 = 0.75, var = 0.75 / 3 = 0.25, sd = 0.5 -> [1.5, -0.5]
    r = torch.tensor([[1.0], [0.0]])
    a = E.compute("reinforce_pp_baseline", r, {"lengths": torch.tensor([[1.0], [3.0]])})
    approx(a, [1.5, -0.5])


# ------------------------------------------------------------------ NGRPO


def test_ngrpo_group_statistics_include_one_virtual_max_reward_sample() -> None:
    # group [1, 0, 0] + virtual 1 -> [1, 0, 0, 1]: mean 0.5, unbiased std sqrt(4 * 0.25 / 3) = 0.57735
    # A = [0.5, -0.5, -0.5] / (0.57735 + 1e-6) = [0.86602, -0.86602, -0.86602]
    # all-wrong [0, 0, 0] + 1: mean 0.25, std sqrt((3 * 0.0625 + 0.5625) / 3) = 0.5, A = -0.25 / 0.5 = -0.5
    r = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    approx(E.compute("ngrpo", r), [0.86602, -0.86602, -0.86602, -0.5, -0.5, -0.5])


def test_ngrpo_group_of_one_is_the_raw_reward() -> None:
    # the code: a group of one has mean 0 and std 1 (no virtual sample), so A = r / (1 + 1e-6)
    approx(E.compute("ngrpo", torch.tensor([[1.0], [0.0], [0.5]])), [1.0, 0.0, 0.5])


# ------------------------------------------------------------------ BNPO


def _beta_pdf(x: float, a: float, b: float) -> float:
    return x ** (a - 1) * (1 - x) ** (b - 1) * math.gamma(a + b) / (math.gamma(a) * math.gamma(b))


def test_bnpo_moment_fitted_beta_weights() -> None:
    # group means p = [0.25, 0.5, 0.75, 0.5]: m = 0.5, unbiased v = (0.0625 + 0 + 0.0625 + 0) / 3 = 0.041667
    # m(1-m)/v - 1 = 0.25 / 0.041667 - 1 = 5, a = b = 5 * 0.5 = 2.5, alpha = beta = 1 + 2.5/3 = 11/6
    r = torch.tensor([[1.0, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 0, 0]])
    ab = 11 / 6
    w = [1 / _beta_pdf(p, ab, ab) for p in (0.25, 0.5, 0.75, 0.5)]
    expected = []
    for row, p, wi in zip(r.tolist(), (0.25, 0.5, 0.75, 0.5), w, strict=True):
        expected += [wi * (x - p) for x in row]
    approx(E.compute("bnpo", r), expected)


def test_bnpo_decomposition_is_the_unweighted_mean_of_per_part_advantages() -> None:
    # part 0 (weight 1): groups [1,0,0,0], [1,1,1,1] -> p = [0.25, 1], m = 0.625, v = 2 * 0.375^2 = 0.28125
    #   > m(1-m) = 0.234375, so a, b < 0 and alpha = beta = 1 (uniform pdf): A0 = r - p
    # part 1 (weight 0.5): groups [1,1,1,0], [0,0,0,0] -> p = [0.75, 0], m = 0.375, v = 0.28125 > 0.234375
    #   -> A1 = r - p;  A = (A0 + A1) / 2, the 0.5 weight plays no part (the code averages the parts)
    # A0 = [.75,-.25,-.25,-.25, 0,0,0,0], A1 = [.25,.25,.25,-.75, 0,0,0,0] -> mean [.5,0,0,-.5, 0,0,0,0]
    acc = torch.tensor([[1.0, 0, 0, 0], [1, 1, 1, 1]])
    fmt = torch.tensor([[1.0, 1, 1, 0], [0, 0, 0, 0]])
    ctx = {"reward_parts": torch.stack([acc, fmt], dim=-1), "part_weights": torch.tensor([1.0, 0.5])}
    r = acc + 0.5 * fmt
    approx(E.compute("bnpo", r, ctx, decompose=True), [0.5, 0, 0, -0.5, 0, 0, 0, 0])
    # a part with weight 0 is not part of the reward and is left out
    ctx0 = {"reward_parts": ctx["reward_parts"], "part_weights": torch.tensor([1.0, 0.0])}
    approx(E.compute("bnpo", acc, ctx0, decompose=True), [0.75, -0.25, -0.25, -0.25, 0, 0, 0, 0])
    # off by default (the code's default and run.sh): one Beta on the declared range of the sum
    assert E.hyper_parameters("bnpo")["decompose"] is False


def test_bnpo_rewards_outside_the_declared_range_are_an_error_not_clamped() -> None:
    r = torch.tensor([[1.5, 0.0], [0.5, 0.0]])
    with pytest.raises(ParamError, match=r"1\.5.*outside the declared range.*max_value=1\.0"):
        E.compute("bnpo", r)
    # declared bounds [0, 2]: mapped [[0.75, 0], [0.25, 0]], p = [0.375, 0.125], m = 0.25, v = 0.03125,
    # m(1-m)/v - 1 = 5, a = 1.25, b = 3.75 -> alpha = 1 + 1.25/3, beta = 1 + 3.75/3 = 2.25
    alpha, beta = 1 + 1.25 / 3, 2.25
    w0, w1 = 1 / _beta_pdf(0.375, alpha, beta), 1 / _beta_pdf(0.125, alpha, beta)
    approx(E.compute("bnpo", r, max_value=2.0), [w0 * 0.375, -w0 * 0.375, w1 * 0.125, -w1 * 0.125])
    parts = torch.stack([r, torch.ones(2, 2)], dim=-1)
    with pytest.raises(ParamError, match="reward part 0"):
        E.compute("bnpo", r, {"reward_parts": parts}, decompose=True)


# ------------------------------------------------------------------ A-GRAE (the paper's asymmetric branch)


def test_a_grae_difficulty_curriculum_and_positive_suppression() -> None:
    # group [1, 0, 0, 0]: p = 0.25, GRPO A = (r - 0.25) / sd, sd = sqrt(0.75 / 4 * 4 / 3) = 0.5: [1.5, -0.5 x3]
    # group [1, 1, 0, 0]: p = 0.5, sd = sqrt(1/3) = 0.57735: A = [0.86603, 0.86603, -0.86603, -0.86603]
    # m = t = (0.25 + 0.5) / 2 = 0.375, shrink = min(1, m / 1) = 0.375
    # factor(p) = 0.5 [(1 - t) / (1 - sqrt p) + t / sqrt p]
    #   p = 0.25: 0.5 (0.625 / 0.5 + 0.375 / 0.5) = 1.0;  p = 0.5: 0.5 (0.625 / 0.29289 + 0.375 / 0.70711) = 1.33210
    # A' = A * factor, positive ones * 0.375:
    #   [1.5 * 0.375, -0.5, -0.5, -0.5, 0.86603 * 1.33210 * 0.375 (x2), -0.86603 * 1.33210 (x2)]
    r = torch.tensor([[1.0, 0, 0, 0], [1, 1, 0, 0]])
    approx(
        E.compute("a_grae", r),
        [0.5625, -0.5, -0.5, -0.5, 0.43262, 0.43262, -1.15363, -1.15363],
        tol=2e-4,
    )


# ------------------------------------------------------------------ GTPO (official gtpo_training.py)


def _gtpo_batch():
    # one group of 3 (completion 0 positive, 1 and 2 negative) and completion 3 alone in group 1
    ids = torch.tensor([[7, 8, 1, 9, 0], [7, 8, 2, 9, 0], [7, 3, 4, 5, 9], [7, 8, 1, 9, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 0], [1, 1, 1, 1, 1], [1, 1, 1, 1, 0]], dtype=torch.bool)
    adv = torch.tensor([1.0, -0.5, -0.5, 1.0], dtype=torch.float64)
    ctx = {"token_ids": ids, "group_ids": torch.tensor([0, 0, 0, 1]),
           "entropy": torch.full((4, 5), 0.1, dtype=torch.float64)}  # fmt: skip
    return ids, mask, adv, ctx


def test_gtpo_weights_match_the_official_loss_by_hand() -> None:
    # forward runs (same token, same position, opposite sign, counted from the start):
    #   row 0 [1,1,0,0], row 1 [1,1,0,0], row 2 [1,0,0,0,0];  backward runs (aligned at the end):
    #   row 0: last token 9 is shared with row 1 and 2 -> [0,0,0,1]; row 1 [0,0,0,1]; row 2 [0,0,0,0,1]
    # n_conflict (tokens in either run): 3, 3, 2, and 0 -> 1 for row 3
    # delta = d_fwd * d_bwd, positive run tokens 2, negative run tokens 0:
    #   row 0 [2,2,1,2], row 1 [0,0,1,0], row 2 [0,1,1,1,0], row 3 [1,1,1,1]
    # A' = A - 0.1 * H (H = 0.1): 0.99, -0.51, -0.51, 0.99;  token loss = -A' * delta / n_conflict
    _, mask, adv, ctx = _gtpo_batch()
    logp = torch.full((4, 5), -1.0, dtype=torch.float64, requires_grad=True)
    tl, info = losses.compute("gtpo", logp, logp.detach() + 0.5, adv, mask, context=ctx)
    expected = [
        [-0.66, -0.66, -0.33, -0.66, 0.0],
        [0.0, 0.0, 0.17, 0.0, 0.0],
        [0.0, 0.255, 0.255, 0.255, 0.0],
        [-0.99, -0.99, -0.99, -0.99, 0.0],
    ]
    approx(tl.detach(), sum(expected, []))
    (g,) = torch.autograd.grad(tl.sum(), logp)  # rho = exp(logp - sg(logp)): d token_loss / d logp = token_loss
    approx(g, sum(expected, []))
    # zeroed tokens: row 1 positions 0, 1, 3 and row 2 positions 0, 4 = 5 of the 17 real tokens
    assert info["clip_frac"].item() == pytest.approx(5 / 17)
    # the old log-probs (here 0.5 above) play no part: no ratio, no clipping
    tl_on, _ = losses.compute("gtpo", logp, logp.detach(), adv, mask, context=ctx)
    torch.testing.assert_close(tl, tl_on)


def test_gtpo_drops_high_entropy_completions_and_shapes_zero_advantage_ones() -> None:
    _, mask, adv, ctx = _gtpo_batch()
    ctx = {**ctx, "entropy": ctx["entropy"].clone()}
    ctx["entropy"][3] = 2.0  # mean entropy 2.0 > 0.7: A' = 0
    logp = torch.full((4, 5), -1.0, dtype=torch.float64, requires_grad=True)
    tl, info = losses.compute("gtpo", logp, logp.detach(), adv, mask, context=ctx)
    assert torch.all(tl[3] == 0) and info["entropy_drop_frac"].item() == pytest.approx(0.25)
    # an all-same group (A = 0, no conflicts, n = 1) still gets A' = -0.1 * H: token loss +0.1 * 0.1
    tl0, _ = losses.compute("gtpo", logp, logp.detach(), torch.zeros(4, dtype=torch.float64), mask, context=ctx)
    approx(tl0[0, :4].detach(), [0.01] * 4)


# ------------------------------------------------------------------ DRPO (discriminative loss, official core_algos.py)


def _drpo_batch():
    # group 0: A correct, 2 tokens [-1, -2]; B correct, 4 tokens [-1 x4]; C wrong, 1 token [-3]
    # group 1: D correct, 1 token [-0.5] (all correct: no term, but it counts in P)
    logp = torch.tensor(
        [[-1.0, -2.0, 0, 0], [-1.0, -1.0, -1.0, -1.0], [-3.0, 0, 0, 0], [-0.5, 0, 0, 0]], dtype=torch.float64
    )
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0], [1, 0, 0, 0]], dtype=torch.bool)
    ctx = {"group_ids": torch.tensor([0, 0, 0, 1]), "correct": torch.tensor([True, True, False, True])}
    return logp.requires_grad_(True), mask, ctx


def test_drpo_objective_value_and_gradient_by_hand() -> None:
    # s = [-1.5, -1, -3, -0.5]; max_length 4, Lambda 0.1: w_A = exp((1 - 2/4) / 0.1) = exp(5) = 148.41316,
    # w_B = exp(0) = 1 -> hat w = [0.993307, 0.006693]; one negative: tau * LME = tau * s_C / tau = -3
    # J_0 = 0.993307 * -1.5 + 0.006693 * -1 - (-3) = 1.503346;  P = 2 groups -> pg = -J_0 / 2 = -0.751673
    # old = logp + 0.02: k1 = old - logp = 0.02 on each of the N = 8 tokens, KL = 0.02 > delta = 1e-4,
    # coef = 1000 * (0.02 - 0.0001) = 19.9, penalty = 19.9 * 0.02 = 0.398;  loss = -0.751673 + 0.398
    logp, mask, ctx = _drpo_batch()
    tl, info = losses.compute("drpo", logp, logp.detach() + 0.02, torch.zeros(4), mask, context=ctx, max_length=4)
    loss = losses.aggregate(tl, mask, "seq_mean_token_sum")
    assert loss.item() == pytest.approx(-0.751673 + 0.398, abs=1e-5)
    (g,) = torch.autograd.grad(loss, logp)
    # d/dlogp: positives -(1/P) hat w_i / L_i; the negative +(1/P) tau * (q / tau) / L_C = 0.5; the penalty
    # coef * d KL / d logp = 19.9 * (-1 / 8) = -2.4875 on every token
    # A: -0.993307 / 4 - 2.4875 = -2.735827; B: -0.006693 / 8 - 2.4875 = -2.488337; C: 0.5 - 2.4875; D: -2.4875
    approx(g, [-2.735827, -2.735827, 0, 0] + [-2.488337] * 4 + [-1.9875, 0, 0, 0, -2.4875, 0, 0, 0], tol=1e-5)
    assert info["clip_frac"].item() == 1.0 and info["kl_old"].item() == pytest.approx(0.02)


def test_drpo_negatives_through_tau_log_mean_exp() -> None:
    # one group: A correct s = -1, B and C wrong s = -2, -4 (one token each), max_length 1 -> hat w_A = 1
    # tau LME = 10 log((e^-0.2 + e^-0.4) / 2) = 10 log(0.7445254) = -2.950083;  J = -1 + 2.950083 = 1.950083
    # P = 1, no penalty (old = logp: KL = 0 < delta): loss = -1.950083
    # gradients: A -1; B q_B = e^-0.2 / (e^-0.2 + e^-0.4) = 0.549834; C 0.450166
    logp = torch.tensor([[-1.0], [-2.0], [-4.0]], dtype=torch.float64, requires_grad=True)
    mask = torch.ones(3, 1, dtype=torch.bool)
    ctx = {"group_ids": torch.zeros(3, dtype=torch.long), "correct": torch.tensor([True, False, False])}
    tl, info = losses.compute("drpo", logp, logp.detach(), torch.zeros(3), mask, context=ctx, max_length=1)
    loss = losses.aggregate(tl, mask, "seq_mean_token_sum")
    assert loss.item() == pytest.approx(-1.950083, abs=1e-5)
    (g,) = torch.autograd.grad(loss, logp)
    approx(g, [-1.0, 0.549834, 0.450166])
    assert info["clip_frac"].item() == 0.0


def test_drpo_micro_batches_of_whole_groups_sum_to_the_codes_mini_batch_loss() -> None:
    # the code scales each micro-batch loss by len(data) / mini_batch: micro-batch {group 0} (B=3, P=1) and
    # {group 1} (B=1, P=1): total = 3/4 * (-J_0 + pen_0) + 1/4 * (0 + pen_1), pen = coef * KL of that part;
    # old = logp + 0.02 everywhere: each part has KL 0.02, pen = 0.398 -> total = 3/4 (-1.503346) + 0.398
    logp, mask, ctx = _drpo_batch()
    total = 0.0
    for rows in ([0, 1, 2], [3]):
        sub = {k: v[rows] for k, v in ctx.items()}
        tl, _ = losses.compute("drpo", logp[rows], logp.detach()[rows] + 0.02, torch.zeros(len(rows)),
                               mask[rows], context=sub, max_length=4)  # fmt: skip
        total += losses.aggregate(tl, mask[rows], "seq_mean_token_sum", n_seqs=4).item()
    assert total == pytest.approx(0.75 * -1.503346 + 0.398, abs=1e-5)


def test_drpo_needs_max_length_and_the_verdicts() -> None:
    logp, mask, ctx = _drpo_batch()
    with pytest.raises(ParamError, match="max_length"):
        losses.compute("drpo", logp, logp.detach(), torch.zeros(4), mask, context=ctx)
    with pytest.raises(ParamError, match="needs context 'correct'"):
        losses.compute("drpo", logp, logp.detach(), torch.zeros(4), mask, context={"group_ids": ctx["group_ids"]},
                       max_length=4)  # fmt: skip
    assert "drpo" not in E.available()  # the loss replaces the old advantage-level approximation


# ------------------------------------------------------------------ COPO (copo-code core_algos.py)


def copo(rewards: torch.Tensor, answer_ids: torch.Tensor, **hyper: object) -> torch.Tensor:
    """Call COPO with answer_ids as context once the registry lists it, as a keyword until then."""
    if "answer_ids" in E.CONTEXT_NAMES:
        return E.compute("copo", rewards, {"answer_ids": answer_ids}, **hyper)
    return E.compute("copo", rewards, {}, answer_ids=answer_ids, **hyper)


def test_copo_entropy_weight_and_global_advantage_by_hand() -> None:
    # row 0: rewards [1,1,0,0], answers {5: 2, 7: 1, 9: 1}: H = -(0.5 log2 0.5 + 2 * 0.25 log2 0.25) = 1.5 bits
    # row 1: all correct, one answer: H = 0
    # local (GRPO): row 0 [0.86603, 0.86603, -0.86603, -0.86603], row 1 zeros
    # global: R = [0.5, 1], mean 0.75, unbiased std 0.353553 -> [-0.707105, 0.707105]
    # k = 20, b = 0.5: w0 = sigmoid(20) ~ 1, w1 = sigmoid(-10) = 4.5398e-5
    # soft_with_zero: reward-0 completions take the global term only: row 0 [0.86603, 0.86603, -0.70711, -0.70711]
    # row 1: (1 - 4.5398e-5) * 0.707105 = 0.707073
    r = torch.tensor([[1.0, 1, 0, 0], [1, 1, 1, 1]])
    ids = torch.tensor([[5, 5, 7, 9], [3, 3, 3, 3]])
    approx(copo(r, ids), [0.86603, 0.86603, -0.70711, -0.70711] + [0.707073] * 4)
    # only_soft with the run_copo.sh slope and offset k = 5, b = 1: w0 = sigmoid(2.5) = 0.924142,
    # w1 = sigmoid(-5) = 0.0066929; row 0: 0.924142 * 0.86603 - 0.075858 * 0.707105 = 0.746690 (r = 1)
    # and -0.800330 - 0.053640 = -0.853970 (r = 0); row 1: 0.9933071 * 0.707105 = 0.702372
    approx(copo(r, ids, k=5.0, b=1.0, blend="only_soft"), [0.746690, 0.746690, -0.853970, -0.853970] + [0.702372] * 4)


def test_copo_consistency_coefficient_of_the_global_reward() -> None:
    # row 2: all wrong, 4 different answers: H = 2 bits.  Without the coefficient R = [0.5, 1, 0], mean 0.5,
    # std 0.5 -> global [0, 1, -1]; row 2 (rewards 0, soft_with_zero) is pure global: -1
    # with it: lambda = (1 - 1/4) / log2 4 = 0.375, R = [0.5 (1 - 0.5625), 1, 0] = [0.21875, 1, 0],
    # mean 0.40625, std sqrt((0.035156 + 0.352539 + 0.165039) / 2) = 0.525706 -> row 2: -0.40625 / 0.525706
    r = torch.tensor([[1.0, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]])
    ids = torch.tensor([[5, 5, 7, 9], [3, 3, 3, 3], [1, 2, 3, 4]])
    approx(copo(r, ids)[2], [-1.0] * 4)
    approx(copo(r, ids, reward_coef=True)[2], [-0.772771] * 4)


def test_copo_advantage_blend_equals_the_codes_loss_blend_at_ratio_one_only() -> None:
    # the code: (1 - w) f(A_global) + w f(A_local), f the dual-clipped PPO surrogate; at rho = 1 no clip is
    # active, so it equals f(w A_local + (1 - w) A_global): same value and gradient
    f64 = torch.float64
    a_loc, a_glob = torch.tensor([1.2, -0.8], dtype=f64), torch.tensor([-0.7, 0.7], dtype=f64)
    w = torch.tensor([0.3, 0.6], dtype=f64)
    mask = torch.ones(2, 3, dtype=torch.bool)
    hyper = {"eps_low": 0.2, "eps_high": 0.2, "dual_clip": 3.0}

    def both(shift: float) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.full((2, 3), -1.0, dtype=torch.float64, requires_grad=True)
        old = x.detach() - shift
        code = sum(c.unsqueeze(-1) * losses.compute("ppo_clip", x, old, a, mask, **hyper)[0]
                   for c, a in ((1 - w, a_glob), (w, a_loc)))  # fmt: skip
        ours = losses.compute("ppo_clip", x, old, w * a_loc + (1 - w) * a_glob, mask, **hyper)[0]
        g_code, g_ours = (torch.autograd.grad(v.sum(), x)[0] for v in (code, ours))
        return (code - ours).abs().max() + (g_code - g_ours).abs().max(), g_code

    assert both(0.0)[0] < 1e-12  # rho = 1 (the trainer's first epoch)
    assert both(0.5)[0] > 1e-3  # rho = e^0.5 > 1.2: clipped tokens, opposite-sign parts: not equal


# ------------------------------------------------------------------ single-stream SPO (verl recipe spo)


def spo(state: E.ValueTracker, rewards: torch.Tensor, ids: list[int], drift: list[float] | None = None):
    ctx = {"state": state, "prompt_ids": torch.tensor(ids)}
    hyper = {} if drift is None else {"spo_drift": torch.tensor(drift)}
    if "spo_drift" in E.CONTEXT_NAMES:
        ctx.update(hyper)
        hyper = {}
    return E.compute("single_stream", rewards, ctx, **hyper)


def test_spo_prior_whitening_and_kl_adaptive_update_by_hand() -> None:
    state = E.make_state("single_stream")
    # step 1, first visits: prior alpha = beta = 0.5, p_hat = 0.5; A = r - 0.5 = [0.5, -0.5], whitened:
    # mean 0, unbiased std sqrt(0.5) = 0.707107 -> [0.707107, -0.707107]
    approx(spo(state, torch.tensor([[1.0], [0.0]]), [7, 11]), [0.707107, -0.707107])
    # no drift measured: D = 0, rho = clip(2^0, 0.875, 0.96) = 0.96
    # prompt 7: alpha = 0.96 * 0.5 + 1 = 1.48, beta = 0.48 -> 1.48 / 1.96 = 0.755102; prompt 11: 0.244898
    assert state.value(7) == pytest.approx(0.755102, abs=1e-6) and state.value(11) == pytest.approx(0.244898, abs=1e-6)
    # step 2: D = 0.006 -> rho = 2^(-0.1) = 0.933033 (inside the clip); D = 1 -> 2^(-16.7) -> clipped to 0.875
    # rewards 0: prompt 7: alpha = 0.933033 * 1.48 = 1.380889, beta = 0.933033 * 0.48 + 1 = 1.447856
    #   -> 0.488163;  prompt 11: alpha = 0.875 * 0.48 = 0.42, beta = 0.875 * 1.48 + 1 = 2.295 -> 0.154696
    spo(state, torch.tensor([[0.0], [0.0]]), [7, 11], drift=[0.006, 1.0])
    assert state.value(7) == pytest.approx(0.488163, abs=1e-6) and state.value(11) == pytest.approx(0.154696, abs=1e-6)


def test_spo_whitening_over_three_prompts() -> None:
    # p_hat = 0.5 for all: A = [0.5, 0.5, -0.5], mean 1/6, deviations [1/3, 1/3, -2/3],
    # unbiased var = (1/9 + 1/9 + 4/9) / 2 = 1/3, std 0.577350 -> [0.577350, 0.577350, -1.154701]
    a = spo(E.make_state("single_stream"), torch.tensor([[1.0], [1.0], [0.0]]), [1, 2, 3])
    approx(a, [0.577350, 0.577350, -1.154701])


# ------------------------------------------------------------------ Free Process Rewards (ImplicitPRM run_ce.sh)


def test_implicit_prm_preset_fits_the_offline_prm_for_run_ce_shs_one_epoch() -> None:
    from rlbook.mechanisms.presets import PRESETS, method_train

    (phase,) = method_train("implicit_prm")["phases"]
    kw = phase["kwargs"]
    # run_ce.sh: max_epochs=1, beta=0.05, train_batch_size 64
    assert (kw["warmup_epochs"], kw["beta"], kw["warmup_rows"]) == (1, 0.05, 64)
    # the notebook's G = 4: 16 prompts x 4 = 64 rows -> ceil(64 / 64) x 1 epoch = one AdamW step
    assert math.ceil(kw["warmup_prompts"] * 4 / kw["warmup_rows"]) * kw["warmup_epochs"] == 1
    assert "one epoch" in PRESETS["implicit_prm"].source
