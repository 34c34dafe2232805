"""Each mechanism against numbers worked out by hand from its reference formula (issue "Trustworthy
replications", section 1).  The arithmetic is in the comments; no expected value here is produced by
calling rlbook a second way."""

from __future__ import annotations

import math

import pytest
import torch
from rlbook import estimators as E
from rlbook import losses
from rlbook.config import ParamError

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
