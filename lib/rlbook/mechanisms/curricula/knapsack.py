"""Knapsack RL: a rollout budget per prompt from its learning status, solved as a knapsack under a total budget.

Source: Li, Chen, Yang, Ding, Sun, Zhang, Huang, Luo, "Knapsack RL: Unlocking Exploration of LLMs via
Optimizing Budget Allocation" (2025, arXiv 2509.25849); code: github.com/liziniu/KnapsackRL (commit 05eeb92):

* ``verl/utils/dataset/rl_dataset.py::RLHFDataset.update_sample_state`` / ``get_sample_state``: per prompt the
  rewards of every visit; the success estimate is the mean of the latest visit, or, when that visit has fewer
  than ``reward_buffer_length`` (16) rewards, the mean of the 16 most recent rewards across visits
  (``epoch_estimation`` and ``robust_epoch_estimation`` on, as the 7B script sets them); a prompt is *valid*
  once ``count >= min_buffer_length`` (8) rewards were seen.  :class:`SuccessState`.
* ``verl/trainer/ppo/exploration_utils.py::sampling_budget_by_knapsack`` (:func:`knapsack_budgets`) and
  ``solve_by_dp`` (:func:`solve_knapsack_dp`): invalid prompts get ``n``; valid ones with p = 0 / p = 1 get
  ``negative_n`` / ``positive_n``; the others (effective) get ``min_n`` plus a share of the rest chosen by an
  exact-capacity dynamic programme maximising sum_i v(min_n + k_i, p_i), v(N, p) = (1 - p^N - (1-p)^N) p (1-p)^2
  (the probability of a non-zero gradient times the information gain p (1-p)^2 of Prop. 1).  When the
  effective prompts' estimated cost sum int(min(max_n, log(1-alpha) / log(max(p, 1-p)))) is below the rest,
  the surplus goes to the p = 0 prompts first (fallback).
* ``examples/knapsack_trainer/run_knapsack_grpo_7b.sh``: n = 8, min_n = negative_n = positive_n = 2,
  max_n = 128, alpha = 0.9, cost_estimation = probability; the advantage is verl's GRPO over each uid's
  own rollouts (``grpo`` with ``sample_mask``), clipped to [-5, 5] (``adv_clip``), token-mean loss.

Differences: success is the task verifier's verdict (the code asserts rewards in {-1, 0, 1} and maps -1 to
0; ``success_threshold`` counts a total reward >= threshold instead); prompts are drawn as an epoch permutation like verl's shuffled dataloader; the budgets are capped by
nothing but ``train.group_size`` (the width of a group), which the run plan sets to the widest budget
:meth:`KnapsackSampler.widest_group` can give (``P n - (P - 1) m``, m the smallest budget a prompt can get), so no
budget can exceed it mid-run.  The code's numba path is the same programme.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from rlbook.core.errors import ParamError
from rlbook.mechanisms import phases
from rlbook.mechanisms.sampling import SAMPLERS, EpochSampler


def knapsack_value(N: int, p: float) -> float:
    """v(N, p) = (1 - p^N - (1 - p)^N) p (1 - p)^2: P(some but not all of N rollouts succeed) x InfoGain(p)."""
    return (1.0 - p ** N - (1.0 - p) ** N) * p * (1.0 - p) ** 2


def solve_knapsack_dp(rates: list[float], effective: list[int], min_n: int, extra_max: int, capacity: int,
                      ) -> list[int]:
    """Extra rollouts per prompt (``solve_by_dp``): each effective prompt i takes k_i in 0..extra_max extra, the
    k_i sum to exactly ``capacity`` (else the largest feasible sum, the rest spread evenly over the effective
    prompts), maximising sum over k_i >= 1 of v(min_n + k_i, p_i) (k_i = 0 scores 0).  Ties: the first best
    found, scanning "no extra" first, then k ascending (strict >), as the code does."""
    out = [0] * len(rates)
    if capacity <= 0:
        return out
    if not effective:  # the code's uniform spread
        for i in range(len(rates)):
            out[i] = capacity // len(rates) + (1 if i < capacity % len(rates) else 0)
        return out
    n = len(effective)
    dp = np.full((n + 1, capacity + 1), -np.inf)
    dp[0, 0] = 0.0
    choice = np.zeros((n + 1, capacity + 1), dtype=np.int64)
    for i in range(1, n + 1):
        p = np.float32(rates[effective[i - 1]])  # the code keeps the success rates in a float32 array
        for w in range(capacity + 1):
            if dp[i - 1, w] > dp[i, w]:
                dp[i, w], choice[i, w] = dp[i - 1, w], 0
            for k in range(1, min(extra_max, w) + 1):
                if dp[i - 1, w - k] == -np.inf:
                    continue
                gain = (1 - p ** (k + min_n) - (1 - p) ** (k + min_n)) * p * ((1 - p) ** 2)
                if dp[i - 1, w - k] + gain > dp[i, w]:
                    dp[i, w], choice[i, w] = dp[i - 1, w - k] + gain, k
    usable = capacity
    while usable > 0 and dp[n, usable] == -np.inf:
        usable -= 1
    w = usable
    for i in range(n, 0, -1):
        out[effective[i - 1]] += int(choice[i, w])
        w -= int(choice[i, w])
    left = capacity - usable
    for j, idx in enumerate(effective):
        out[idx] += left // n + (1 if j < left % n else 0)
    return out


def _cost(p: float, alpha: float, how: str) -> float:
    if how == "probability":
        return math.log(1 - alpha) / math.log(max(p, 1 - p))
    if how == "expectation":
        return 1 / (p * (1 - p)) - 1
    raise ParamError(f"knapsack cost_estimation={how!r} is not allowed; allowed: probability, expectation")


def knapsack_budgets(states: list[tuple[bool, float, int]], n: int, min_n: int = 2, max_n: int = 128,
                     alpha: float = 0.9, negative_n: int | None = None, positive_n: int | None = None,
                     total_budget: int | None = None, cost_estimation: str = "probability",
                     allow_fallback: bool = True) -> tuple[list[int], dict[str, Any]]:
    """Rollouts per prompt from ``(valid, success rate, count)`` states, summing to ``total_budget``
    (default ``len(states) * n``); see the module docstring.  ``info``: fallback, effective prompts."""
    negative_n = min_n if negative_n is None else negative_n
    positive_n = min_n if positive_n is None else positive_n
    total = len(states) * n if total_budget is None else total_budget
    budget = [0] * len(states)
    rates = [0.0] * len(states)  # zero for invalid prompts too: the code's quirk (they count as p = 0 below)
    costs: dict[int, float] = {}
    effective: list[int] = []
    for i, (valid, p, _count) in enumerate(states):
        if not valid:
            budget[i] = n
            continue
        rates[i] = float(np.float32(p))
        if 0 < rates[i] < 1:
            costs[i] = float(np.float32(_cost(rates[i], alpha, cost_estimation)))
            budget[i] = min_n
            effective.append(i)
        else:
            budget[i] = negative_n if rates[i] == 0 else positive_n
    rest = total - sum(budget)
    zero = [i for i in range(len(states)) if rates[i] == 0]
    info: dict[str, Any] = {"fallback": False, "effective": len(effective)}
    if rest > 0 and not effective:
        if not zero:
            return [n] * len(states), info
        for j, i in enumerate(zero):
            budget[i] += rest // len(zero) + (1 if j < rest % len(zero) else 0)
        return budget, info
    estimated = sum(int(min(max_n, costs[i])) for i in effective)
    cand = zero or [i for i in range(len(states)) if i not in effective]
    if estimated < rest and allow_fallback and cand:  # (the code divides by zero when every prompt is effective)
        info["fallback"] = True
        surplus = rest - estimated
        for j, i in enumerate(cand):
            budget[i] += surplus // len(cand) + (1 if j < surplus % len(cand) else 0)
        rest = estimated
    extra = solve_knapsack_dp(rates, effective, min_n, max_n - min_n, rest)
    out = [b + e for b, e in zip(budget, extra, strict=True)]
    if sum(out) != total:
        raise AssertionError(f"knapsack budgets {out} do not sum to {total}")
    return out, info


class SuccessState:
    """Per-prompt success estimate (``update_sample_state``): count, the latest visit's size and mean, and
    the most recent ``buffer`` rewards (all the estimate ever reads)."""

    def __init__(self, buffer: int = 16, min_count: int = 8, epoch_estimation: bool = True, robust: bool = True):
        self.buffer, self.min_count, self.epoch, self.robust = buffer, min_count, epoch_estimation, robust
        self.table: dict[int, dict[str, Any]] = {}

    def update(self, index: int, rewards: list[float]) -> None:
        s = self.table.setdefault(int(index), {"count": 0, "recent": [], "ema": 0.0})
        s["count"] += len(rewards)
        s["recent"] = (s["recent"] + [float(r) for r in rewards])[-self.buffer:]
        if self.epoch and not (len(rewards) < self.buffer and self.robust):
            s["ema"] = float(np.mean(rewards))
        else:  # the newest ``buffer`` rewards across visits
            s["ema"] = float(np.mean(s["recent"]))

    def get(self, index: int) -> tuple[bool, float, int]:
        """``(valid, success rate, count)``; an unseen prompt is ``(min_count == 0, 0.0, 0)``."""
        s = self.table.get(int(index))
        if s is None:
            return self.min_count == 0, 0.0, 0
        return s["count"] >= self.min_count, s["ema"], s["count"]

    def state_dict(self) -> dict[str, Any]:
        return {"table": {k: {"count": v["count"], "recent": list(v["recent"]), "ema": v["ema"]}
                          for k, v in self.table.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.table = {int(k): {"count": int(v["count"]), "recent": [float(x) for x in v["recent"]],
                               "ema": float(v["ema"])} for k, v in state["table"].items()}


def _check(n: int, min_n: int, max_n: int, alpha: float, cost_estimation: str) -> None:
    """The sampler's hyper-parameters, checked when the run is planned and again when the sampler is built."""
    if not 1 <= min_n <= max_n or n < 1:
        raise ParamError(f"knapsack needs n >= 1 and 1 <= min_n <= max_n; got n={n}, min_n={min_n}, max_n={max_n}")
    _cost(0.5, alpha, cost_estimation)  # a bad cost_estimation fails here, not mid-run


@SAMPLERS.register("knapsack")
class KnapsackSampler(EpochSampler):
    """Knapsack RL: prompts as a shuffled epoch, rollouts per prompt from :func:`knapsack_budgets` over each
    prompt's success estimate (:class:`SuccessState`), which every step's verdicts update."""

    def __init__(self, n_problems: int, seed: int = 0, *, n: int = 8, min_n: int = 2, max_n: int = 128,
                 alpha: float = 0.9, negative_n: int | None = None, positive_n: int | None = None,
                 min_buffer_length: int = 8, reward_buffer_length: int = 16, epoch_estimation: bool = True,
                 robust_epoch_estimation: bool = True, cost_estimation: str = "probability",
                 allow_fallback: bool = True, success_threshold: float | None = None):
        super().__init__(n_problems, seed)
        self.threshold = success_threshold  # None: the verifier's verdict; else total reward >= threshold
        _check(n, min_n, max_n, alpha, cost_estimation)
        self.kw = {"n": n, "min_n": min_n, "max_n": max_n, "alpha": alpha, "negative_n": negative_n,
                   "positive_n": positive_n, "cost_estimation": cost_estimation, "allow_fallback": allow_fallback}
        self.state = SuccessState(reward_buffer_length, min_buffer_length, epoch_estimation, robust_epoch_estimation)
        self.last: dict[str, float] = {}

    @classmethod
    def widest_group(cls, prompts_per_step: int, *, n: int, min_n: int, max_n: int, alpha: float,
                     negative_n: int | None, positive_n: int | None, cost_estimation: str, **_: Any) -> int:
        """The largest budget :func:`knapsack_budgets` can give one of P prompts: the budgets sum to ``P n`` and
        every other prompt gets at least m = min(n, min_n, negative_n, positive_n) (n if not yet valid, else
        its class's floor), so at most ``P n - (P - 1) m``; reached when one prompt has p = 0 and the rest p = 1
        (the rest goes to the p = 0 prompts).  Fewer prompts (a filter's refill round) give less."""
        _check(n, min_n, max_n, alpha, cost_estimation)
        floor = min(n, min_n, min_n if negative_n is None else negative_n, min_n if positive_n is None else positive_n)
        return prompts_per_step * n - (prompts_per_step - 1) * max(0, floor)

    def budgets(self, indices: list[int]) -> list[int]:
        states = [self.state.get(i) for i in indices]
        out, info = knapsack_budgets(states, **self.kw)
        self.last = {"knapsack_valid_frac": float(np.mean([s[0] for s in states])),
                     "knapsack_max_budget": float(max(out)), "knapsack_fallback": float(info["fallback"]),
                     "knapsack_effective": float(info["effective"])}
        return out

    def observe_batch(self, batch: Any) -> None:
        """Each prompt's verdicts on the rollouts it was given (``on_batch_end``, grouped by dataset index)."""
        mask = batch.sample_mask if batch.sample_mask is not None else batch.correct.new_ones(batch.correct.shape)
        success = batch.correct if self.threshold is None else batch.rewards >= self.threshold
        by_index: dict[int, list[float]] = {}
        for j, idx in enumerate(batch.indices):
            by_index.setdefault(int(idx), []).extend(success[j][mask[j].bool()].float().tolist())
        for idx, rewards in by_index.items():
            self.state.update(idx, rewards)
        batch.metrics.update(self.last)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "success": self.state.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.state.load_state_dict(state["success"])


@phases.register("adv_clip", at="after_advantages")
class AdvantageClip(phases.Phase):
    """Advantages clipped to [-value, value]: ``ray_trainer.py`` of the Knapsack RL code clamps them when
    ``algorithm.adv_clip_value`` is set (5.0 in ``run_knapsack_grpo_7b.sh``), which bounds the advantage of a
    lone success among many rollouts (1 of 93: 9.54 -> 5)."""

    def __init__(self, trainer: Any, *, value: float = 5.0):
        if value <= 0:
            raise ParamError(f"adv_clip value={value!r} must be > 0")
        self.value = value

    def run(self, trainer: Any, batch: Any) -> dict[str, float]:
        clipped = (batch.advantages.abs() > self.value).float().mean()
        batch.advantages = batch.advantages.clamp(-self.value, self.value)
        return {"adv_clipped_frac": float(clipped)}
