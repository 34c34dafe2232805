"""R^3: cross-context replay of past samples into groups whose rewards are all equal, and the structural-entropy
ranking reward for truncated failures.

Source: Jiang, Zhao, Xu, Lin, Liu, Luan, Shang, Han, "R^3: Replay, Reflection, and Ranking Rewards for LLM
Reinforcement Learning" (2026, arXiv 2601.19620).  **No public code** ("code and model will be released");
the rules follow the paper's Algorithm 1, Sec. 3.2.1-3.2.4 and Eqs. 1-3 (read through cached excerpts):

* buffer S: every rollout of a query is stored (S <- S u D_b after each step);
* CCR (cross-context replay), per group after scoring: if all G rewards are negative, ``k`` past *positive*
  responses of the same query are appended; if all are positive, ``k`` past negative ones (a group stays as
  it is when the buffer holds none).  The advantage over the mixed group G_mix (Eq. 3):
  A_i = (R_i - mean(G_mix)) / (alpha std(G_mix) + lambda), the estimator ``r3``;
* SERR (structural-entropy ranking reward), inside an all-negative group, for the truncated responses: with
  E_peak the mean of the top max(1, floor(p L)) token entropies and E_global the mean entropy, i dominates j
  when E_peak_i > E_peak_j and E_global_i < E_global_j; S_i = #dominated; ranked by S_i (descending), the
  response at rank k of N gets R_max (1 - k / (N - 1)) (:func:`serr_rewards`).
* ISR (in-context self-reflection: an extra query with a past wrong answer and a reflection instruction) is
  not implemented here.

Assumptions (not stated in the text): which k past samples (uniformly at random, seeded), the buffer keeps at
most ``keep`` of each sign per query (most recent), std with Bessel's correction (verl's GRPO), alpha = 1,
lambda = 1e-6, p = 0.1, R_max = 0.5, ties in SERR's ranking by index.  Replayed samples are trained like the
group's own samples (their old log-probs are those of the current policy: ratio 1, no behaviour-policy
correction, as a verl-style trainer that recomputes old log-probs gives).  Replayed samples cost no
generation; they do cost update compute.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from rlbook.core.errors import ParamError
from rlbook.mechanisms import phases
from rlbook.mechanisms.estimators import register
from rlbook.mechanisms.estimators._util import ragged_mean_std
from rlbook.policy.rollout import rollout_from_ids


@register("r3", ragged=True)
def r3(rewards: Tensor, *, sample_mask: Tensor | None = None, replayed: Tensor | None = None, alpha: float = 1.0,
       lam: float = 1e-6) -> Tensor:
    """R^3's Eq. 3: A = (R - mean) / (alpha std + lambda) over each group's filled slots (Bessel std; a group of
    one gets A = R); ``alpha`` acts on the groups holding a replayed sample (``replayed`` [P, G]), the other
    groups get GRPO's (R - mean) / (std + lambda)."""
    mask = torch.ones_like(rewards, dtype=torch.bool) if sample_mask is None else sample_mask.bool()
    mean, std = ragged_mean_std(rewards, mask)
    mixed = (replayed.bool() & mask).any(dim=1, keepdim=True) if replayed is not None else torch.zeros_like(mean, dtype=torch.bool)
    scale = torch.where(mixed, torch.full_like(std, alpha), torch.ones_like(std))
    out = (rewards - mean) / (scale * std + lam)
    return torch.where(mask, out, torch.zeros_like(out))


def peak_and_global(entropy: list[float], p: float) -> tuple[float, float]:
    """E_peak (mean of the top max(1, floor(p L)) entropies) and E_global (mean of all L)."""
    k = max(1, math.floor(p * len(entropy)))
    return float(np.mean(sorted(entropy, reverse=True)[:k])), float(np.mean(entropy))


def serr_rewards(stats: list[tuple[float, float]], r_max: float = 0.5) -> list[float]:
    """Ranking rewards from (E_peak, E_global) per response: S_i = #{j : E_peak_i > E_peak_j and E_global_i <
    E_global_j}, sorted by S descending (ties by index), rank k of N gets r_max (1 - k / (N - 1))."""
    n = len(stats)
    if n == 0:
        return []
    if n == 1:
        return [r_max]
    score = [sum(1 for j in range(n) if j != i and stats[i][0] > stats[j][0] and stats[i][1] < stats[j][1])
             for i in range(n)]
    out = [0.0] * n
    for rank, i in enumerate(sorted(range(n), key=lambda i: (-score[i], i))):
        out[i] = r_max * (1 - rank / (n - 1))
    return out


class Buffer:
    """Past responses per query: (completion ids, text, reward parts, correct, finished), newest last."""

    def __init__(self, keep: int = 8):
        self.keep = keep
        self.table: dict[int, dict[bool, list[tuple[list[int], str, list[float], bool]]]] = {}

    def add(self, pid: int, ids: list[int], text: str, parts: list[float], correct: bool, finished: bool) -> None:
        side = self.table.setdefault(int(pid), {True: [], False: []})[bool(correct)]
        side.append((ids, text, parts, finished))
        del side[: max(0, len(side) - self.keep)]

    def get(self, pid: int, correct: bool) -> list[tuple[list[int], str, list[float], bool]]:
        return self.table.get(int(pid), {}).get(bool(correct), [])

    def state_dict(self) -> dict[str, Any]:
        return {"table": {k: {"pos": [list(x) for x in v[True]], "neg": [list(x) for x in v[False]]}
                          for k, v in self.table.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        def rows(xs: list[Any]) -> list[tuple[list[int], str, list[float], bool]]:
            return [([int(t) for t in a], str(b), [float(v) for v in c], bool(d)) for a, b, c, d in xs]

        self.table = {int(k): {True: rows(v["pos"]), False: rows(v["neg"])} for k, v in state["table"].items()}


@phases.register("r3_replay", at="before_advantages")
class R3Replay(phases.Phase):
    """SERR on truncated failures of all-wrong groups, then CCR: past samples of the opposite outcome into the
    empty slots of groups whose samples all agree (``train.rollouts_per_prompt`` < ``group_size`` leaves them);
    this step's samples then enter the buffer.  Context ``replayed`` marks the replayed slots."""

    def __init__(self, trainer: Any, *, k: int = 1, keep: int = 8, serr: bool = False, p: float = 0.1,
                 r_max: float = 0.5, seed: int = 0):
        free = trainer.cfg.group_size - (trainer.cfg.rollouts_per_prompt or trainer.cfg.group_size)
        if k < 1 or free < k:
            raise ParamError(f"r3_replay k={k} needs k free slots per group: set train.rollouts_per_prompt to "
                             f"train.group_size - k (now {trainer.cfg.rollouts_per_prompt} of {trainer.cfg.group_size})")
        self.k, self.serr, self.p, self.r_max, self.seed = k, serr, p, r_max, seed
        self.buffer = Buffer(keep)

    def run(self, trainer: Any, batch: Any) -> dict[str, float]:
        filled = batch.sample_mask if batch.sample_mask is not None else torch.ones_like(batch.correct, dtype=torch.bool)
        own = filled.clone()
        n_serr = self.rank_truncated(batch, filled) if self.serr else 0
        slots, rows, hits, same = self.choose(trainer, batch, filled)
        self.store(batch, own)
        if rows:
            roll = rollout_from_ids([trainer.prompt_ids(batch.problems[j]) for j, _ in slots], [r[0] for r in rows],
                                    [r[1] for r in rows], [r[3] for r in rows], trainer.tok.pad_token_id)
            parts = torch.tensor([r[2] for r in rows], dtype=batch.parts.dtype)
            batch.fill(slots, roll, parts, [r[4] for r in rows], trainer.tok.pad_token_id)
            for (j, g), value in zip(slots, (parts * trainer.reward_weights).sum(-1).tolist(), strict=True):
                batch.rewards[j, g] = value  # the stored reward (the group's own, SERR-ranked ones stay)
        replayed = torch.zeros_like(batch.correct, dtype=torch.bool)
        for j, g in slots:
            replayed[j, g] = True
        batch.context["replayed"] = replayed
        return {"r3_homogeneous_frac": same / batch.P, "r3_hit_rate": hits / max(same, 1),
                "r3_replayed": float(len(slots)), "r3_serr_ranked": float(n_serr)}

    def choose(self, trainer: Any, batch: Any, filled: Tensor) -> tuple[list[tuple[int, int]], list[Any], int, int]:
        slots: list[tuple[int, int]] = []
        rows: list[Any] = []
        hits = same = 0
        for j, pid in enumerate(batch.indices):
            got = batch.correct[j][filled[j]]
            if got.numel() == 0 or bool(got.any()) != bool(got.all()):
                continue  # a mixed group: nothing to replay
            same += 1
            want = not bool(got[0])
            past = self.buffer.get(pid, want)
            if not past:
                continue
            hits += 1
            rng = np.random.default_rng([self.seed, trainer.step_count, int(pid)])
            pick = rng.choice(len(past), size=min(self.k, len(past)), replace=False)
            free = (~filled[j]).nonzero().flatten().tolist()
            for g, i in zip(free, sorted(int(x) for x in pick), strict=False):
                slots.append((j, g))
                rows.append((*past[i], want))  # (ids, text, parts, finished, correct)
        return slots, rows, hits, same

    def store(self, batch: Any, own: Tensor) -> None:
        for j, pid in enumerate(batch.indices):
            for g in own[j].nonzero().flatten().tolist():
                r = j * batch.G + g
                n = int(batch.roll.lengths[r])
                self.buffer.add(pid, batch.roll.completion_ids[r, :n].tolist(), batch.roll.texts[r],
                                batch.parts[r].tolist(), bool(batch.correct[j, g]),
                                bool(batch.roll.finished[r]) if batch.roll.finished is not None else True)

    def rank_truncated(self, batch: Any, filled: Tensor) -> int:
        """SERR: rewards of the truncated responses of all-wrong groups replaced by their ranking reward."""
        if batch.roll.entropy is None or batch.roll.finished is None:
            raise ParamError("r3_replay serr needs per-token entropies (generation_backend: rlbook)")
        ranked = 0
        for j in range(batch.P):
            if bool(batch.correct[j][filled[j]].any()):
                continue
            rows = [j * batch.G + g for g in filled[j].nonzero().flatten().tolist()
                    if not bool(batch.roll.finished[j * batch.G + g])]
            stats = [peak_and_global(batch.roll.entropy[r, : int(batch.roll.lengths[r])].tolist(), self.p) for r in rows]
            for r, value in zip(rows, serr_rewards(stats, self.r_max), strict=True):
                batch.rewards[j, r - j * batch.G] = value
            ranked += len(rows)
        return ranked

    def state_dict(self) -> dict[str, Any]:
        return {"buffer": self.buffer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.buffer.load_state_dict(state["buffer"])
