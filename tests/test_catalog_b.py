"""Conditional (HDPO), COPO, CANON, ARM and GTPO against numbers worked out by hand from each paper's formula
(or its authors' code) on a small batch.  The arithmetic is in the comments; no expected value is produced by
calling rlbook a second way."""

from __future__ import annotations

import pytest
import torch
from rlbook.mechanisms import estimators as E
from rlbook.mechanisms import losses

torch.set_num_threads(1)


def approx(t: torch.Tensor, values: list[float], tol: float = 1e-4) -> None:
    assert t.flatten().tolist() == pytest.approx(values, abs=tol)


# ------------------------------------------------------------------ CANON (biuboomc/CANON core_algos.py)


def test_canon_splits_by_rank_with_ties_in_order_as_the_official_code() -> None:
    # group 0: lengths [3, 1, 2, 2]; a stable sort gives the order 1, 2, 3, 0 (the tie 2, 2 keeps 2 before 3),
    # the first G // 2 = 2 (samples 1, 2) are the low half, samples 3, 0 the high half (a median split would
    # put sample 3 low).  rewards [1, 0, 0, 1]: mean high = (1 + 1) / 2 = 1, mean low = (0 + 0) / 2 = 0.
    # lambda = 1: A = r - mean(other half) = [1 - 0, 0 - 1, 0 - 1, 1 - 0] = [1, -1, -1, 1]
    # group 1: lengths [4, 3, 2, 1], rewards [1, 1, 0, 1]: low = samples 3, 2 (r 1, 0: mean 0.5),
    # high = samples 1, 0 (r 1, 1: mean 1).  A = [1 - 0.5, 1 - 0.5, 0 - 1, 1 - 1] = [0.5, 0.5, -1, 0]
    r = torch.tensor([[1.0, 0, 0, 1], [1, 1, 0, 1]])
    lengths = torch.tensor([[3.0, 1, 2, 2], [4, 3, 2, 1]])
    approx(E.compute("canon", r, {"lengths": lengths}), [1, -1, -1, 1, 0.5, 0.5, -1, 0])


def test_canon_mixes_inter_and_intra_half_terms_with_lambda() -> None:
    # group 1 above, lambda = 0.5: A = 0.5 (r - mean other) + 0.5 (r - mean same)
    # sample 0 (high): 0.5 (1 - 0.5) + 0.5 (1 - 1) = 0.25;  sample 1 (high): 0.25
    # sample 2 (low): 0.5 (0 - 1) + 0.5 (0 - 0.5) = -0.75;  sample 3 (low): 0.5 (1 - 1) + 0.5 (1 - 0.5) = 0.25
    r = torch.tensor([[1.0, 1, 0, 1]])
    lengths = torch.tensor([[4.0, 3, 2, 1]])
    approx(E.compute("canon", r, {"lengths": lengths}, inter_weight=0.5), [0.25, 0.25, -0.75, 0.25])
    # scale=True divides lambda = 1's [0.5, 0.5, -1, 0] by the unbiased std of [1, 1, 0, 1]:
    # mean 0.75, var = (3 * 0.0625 + 0.5625) / 3 = 0.25, std 0.5 -> [1, 1, -2, 0]
    approx(E.compute("canon", r, {"lengths": lengths}, scale=True), [1, 1, -2, 0], tol=1e-3)


# ------------------------------------------------------------------ conditional / HDPO (Act Wisely, 2026)


def test_conditional_efficiency_channel_is_a_z_score_among_correct_samples_only() -> None:
    # rewards [1, 1, 1, 0]: accuracy channel GRPO, mean 0.75, unbiased std 0.5 -> [0.5, 0.5, 0.5, -1.5]
    # efficiency score -length among the correct ones: [-4, -8, -12], mean -8, population std
    # sqrt((16 + 0 + 16) / 3) = 3.265986 -> z = [1.224745, 0, -1.224745]; the incorrect sample gets 0
    # weight 0.5: A = [0.5 + 0.612372, 0.5, 0.5 - 0.612372, -1.5]
    r = torch.tensor([[1.0, 1, 1, 0]])
    ctx = {"correct": r.bool(), "lengths": torch.tensor([[4.0, 8, 12, 2]])}
    approx(E.compute("conditional", r, ctx, weight=0.5), [1.112372, 0.5, -0.112372, -1.5])


def test_conditional_efficiency_channel_from_a_reward_part() -> None:
    # channel "part": the format part [1, 0, 1, 1] among the correct samples 0, 1 (samples 2, 3 wrong):
    # mean 0.5, population std 0.5 -> z = [1, -1, 0, 0]; accuracy GRPO of [1, 1, 0, 0]: +-0.866025
    r = torch.tensor([[1.0, 1, 0, 0]])
    parts = torch.tensor([[[1.0, 1], [1, 0], [0, 1], [0, 1]]])
    ctx = {"correct": r.bool(), "reward_parts": parts}
    approx(E.compute("conditional", r, ctx, channel="part", part=1), [1.866025, -0.133975, -0.866025, -0.866025])


# ------------------------------------------------------------------ ARM (ProGRPO, 2026)


def test_arm_adds_the_group_confidence_minus_the_answer_confidence() -> None:
    # group 0: rewards [1, 1, 0, 0] -> GRPO +-0.866025 (mean 0.5, unbiased std 0.57735)
    # c(o|q) = seq_log_ratio / length = [2/2, 0/1, 1/1, -3/3] = [1, 0, 1, -1], c(q) = mean = 0.25
    # alpha = 1: A + (0.25 - c) = [0.866 - 0.75, 0.866 + 0.25, -0.866 - 0.75, -0.866 + 1.25]
    # group 1: all rewards 0 -> ARM keeps GRPO's zeros
    r = torch.tensor([[1.0, 1, 0, 0], [0, 0, 0, 0]])
    ctx = {"seq_log_ratio": torch.tensor([[2.0, 0, 1, -3], [5, 0, 0, 0]]),
           "lengths": torch.tensor([[2.0, 1, 1, 3], [1, 1, 1, 1]])}  # fmt: skip
    approx(E.compute("arm", r, ctx), [0.116025, 1.116025, -1.616025, 0.383975, 0, 0, 0, 0])


# ------------------------------------------------------------------ COPO (hijih/copo-code core_algos.py)


def test_copo_blend_with_the_run_copo_slope_and_offset() -> None:
    # k = 5, b = 1, soft-with-zero.  group 0: rewards [1, 1, 1, 1], one answer: H = 0 bits;
    # group 1: rewards [1, 0, 1, 0], answers a, b, a, c: p = 0.5, 0.25, 0.25, H = 0.5 + 2 * 0.25 * 2 = 1.5 bits.
    # R = [1, 0.5], global = (R - 0.75) / unbiased std 0.353553 = [0.707107, -0.707107]
    # group 0: w = sigmoid(5 (0 - 1)) = 0.0066929, local 0: A = (1 - w) 0.707107 = 0.702374
    # group 1: w = sigmoid(5 * 0.5) = 0.9241418; correct: w 0.866025 + (1 - w)(-0.707107) = 0.746690;
    # wrong: w = 0 (soft-with-zero) -> A = global = -0.707107
    r = torch.tensor([[1.0, 1, 1, 1], [1, 0, 1, 0]])
    ids = torch.tensor([[0, 0, 0, 0], [1, 2, 1, 3]])
    a = E.compute("copo", r, {"answer_ids": ids}, k=5.0, b=1.0)
    approx(a, [0.702374] * 4 + [0.746690, -0.707107, 0.746690, -0.707107])


# ------------------------------------------------------------------ GTPO (winstonsmith1897/GTPO gtpo_training.py)


def test_gtpo_protects_conflict_tokens_of_the_negative_completion() -> None:
    # one group: tokens [5, 6, 7] (A = +1) and [5, 8, 7] (A = -1), token entropy 0.1.
    # forward run: position 0 (5 in both, opposite signs), stopped by 6 != 8 -> [1, 0, 0]
    # backward run (aligned at the end): 7 in both -> [0, 0, 1];  n_conflict = 2 for each completion
    # delta: positive completion 2 on its runs, 1 elsewhere -> [2, 1, 2]; negative 0 on its runs -> [0, 1, 0]
    # A' = A - 0.1 * H = 0.99 and -1.01; weight = A' delta / n: [0.99, 0.495, 0.99] and [0, -0.505, 0]
    # token loss = -rho * weight, rho = 1 in value
    ids = torch.tensor([[5, 6, 7], [5, 8, 7]])
    mask = torch.ones(2, 3, dtype=torch.bool)
    logp = torch.full((2, 3), -1.0, dtype=torch.float64, requires_grad=True)
    ctx = {"token_ids": ids, "group_ids": torch.tensor([0, 0]), "entropy": torch.full((2, 3), 0.1, dtype=torch.float64)}
    tl, _ = losses.compute("gtpo", logp, logp.detach(), torch.tensor([1.0, -1.0], dtype=torch.float64), mask,
                           context=ctx)  # fmt: skip
    approx(tl, [-0.99, -0.495, -0.99, 0.0, 0.505, 0.0])
