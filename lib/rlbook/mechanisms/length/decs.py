"""DECS's redundancy marks and curriculum data schedule (a phase and a stateful filter).

Source: "Overthinking Reduction with Decoupled Rewards and Curriculum Data Scheduling" (DECS, 2025); code
github.com/pixas/DECS (commit 0d12e53): chunks and their judge in ``src_valid/reward_manager.py``
(``split_into_chunks``, ``batch_classify_all_chunks``, ``batch_compute_chunk_adv``), the kappa schedule in
``src_valid/valid_ray_trainer.py`` (filter_groups with ``enable_kappa``; kappa starts at 0, the previous NRP
ratio at 0.5, ``kappa_lr`` 0.2).
"""

from __future__ import annotations

import bisect
from typing import Any

import numpy as np
import torch
from torch import Tensor

from rlbook.data.tasks import extract_answer
from rlbook.mechanisms import filters, phases
from rlbook.mechanisms.length import text as T
from rlbook.mechanisms.length.phases import _text_end
from rlbook.mechanisms.steps import token_offsets
from rlbook.policy.rollout import Batch


class Kappa:
    """The schedule's state: kappa, the previous step's NRP ratio, all-correct groups owed, and its RNG."""

    def __init__(self, seed: int = 0) -> None:
        self.kappa, self.last_ratio, self.kept_cum, self.step = 0.0, 0.5, 0, -1
        self.rng = np.random.default_rng(seed)

    def update(self, ratio: float, lr: float) -> None:
        """kappa <- kappa + lr (ratio - previous ratio), then previous <- ratio (the code skips the update while
        the previous ratio is 0).  No correct answer with chunks this step (ratio NaN): no update (the code
        would turn kappa into NaN)."""
        if ratio != ratio:  # NaN
            return
        if self.last_ratio != 0:
            self.kappa += lr * (ratio - self.last_ratio)
        self.last_ratio = ratio

    def state_dict(self) -> dict[str, Any]:
        return {"kappa": self.kappa, "last_ratio": self.last_ratio, "kept_cum": self.kept_cum, "step": self.step,
                "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.kappa, self.last_ratio = float(state["kappa"]), float(state["last_ratio"])
        self.kept_cum, self.step = int(state["kept_cum"]), int(state["step"])
        self.rng.bit_generator.state = state["rng"]


@filters.register("decs_curriculum", state=Kappa)
def decs_curriculum(rewards: Tensor, *, correct: Tensor, step: int, state: Kappa) -> Tensor:
    """DECS's data schedule: the mixed groups (dynamic sampling), plus some all-correct groups once kappa > 0.

    Per generation round: kept_cum += #mixed groups; n_add = int(kappa kept_cum / (1 - kappa)); when n_add > 0,
    kept_cum resets; min(n_add, #all-correct groups) of them are added, chosen at random.  kept_cum resets at
    every step.  kappa moves with the NRP ratio (:meth:`Kappa.update`, called by :class:`AnswerMarks`): as the
    first correct answer moves later within the answers (less trailing redundancy), more easy prompts enter.
    Difference: the code's filter metric is the reward sum (our ``correct``, the same for a 0/1 score).
    """
    c = correct.float()
    keep = (c.amax(dim=1) > c.amin(dim=1)) if c.shape[1] > 1 else torch.ones(c.shape[0], dtype=torch.bool)
    if step != state.step:
        state.step, state.kept_cum = step, 0
    if state.kappa > 0:
        state.kept_cum += int(keep.sum())
        n_add = int(state.kappa * state.kept_cum / (1 - state.kappa)) if state.kappa < 1 else c.shape[0]
        if n_add > 0:
            state.kept_cum = 0
        easy = torch.nonzero(c.amin(dim=1) > 0).flatten().tolist()
        for j in state.rng.permutation(easy)[: min(n_add, len(easy))]:
            keep[int(j)] = True
    return keep


def redundant_span(text: str, answer: str, offsets: list[tuple[int, int]], n_text: int) -> tuple[int, int, float]:
    """(start, end, NRP ratio) of one correct completion: its redundant tokens are those of the chunks after the
    chunk holding the first statement of ``answer`` (:func:`rlbook.mechanisms.length.text.first_answer_end`), through its
    last text token; (0, 0) when there are none.  NRP ratio = (index of that chunk + 1) / #chunks (0 when no
    chunk states the answer).  The rule judge stands in for DECS's LLM judge (``DECS_NRP_DETECTOR``)."""
    end = T.first_answer_end(text, answer)
    starts = T.chunk_starts(text)
    if end is None or not starts:
        return 0, 0, 0.0
    k = bisect.bisect_right(starts, max(end - 1, 0)) - 1
    ratio = (k + 1) / len(starts)
    if k + 1 >= len(starts):
        return 0, 0, ratio
    first = T.token_index_at(offsets, starts[k + 1])
    return (first, n_text, ratio) if first < n_text else (0, 0, ratio)


@phases.register("answer_marks", at="before_advantages")
class AnswerMarks(phases.Phase):
    """DECS's judge over the batch: each correct completion's redundant span (context ``redundant_span``
    ``[P, G, 2]``), and the step's NRP ratio that moves kappa of the ``decs_curriculum`` filter (if used).
    Reports the share of redundant tokens in correct answers, the NRP ratio and kappa."""

    def __init__(self, trainer: Any, *, kappa_lr: float = 0.2):
        self.kappa_lr = float(kappa_lr)

    def run(self, trainer: Any, batch: Batch) -> dict[str, float]:
        P, G = batch.P, batch.G
        spans = torch.zeros(P * G, 2, dtype=torch.long)
        ratios, shares = [], []
        for row in range(P * G):
            if not bool(batch.correct.view(-1)[row]):
                continue
            text, n = batch.roll.texts[row], _text_end(batch, row)
            stated = extract_answer(text, numeric=trainer.task.numeric) or batch.problems[row // G].answer
            offsets = token_offsets(trainer.tok, batch.roll.completion_ids[row, :n].tolist())
            a, b, ratio = redundant_span(text, stated, offsets, n)
            spans[row] = torch.tensor([a, b])
            shares.append((b - a) / max(int(batch.roll.lengths[row]), 1))
            if ratio > 0:
                ratios.append(ratio)
        batch.context["redundant_span"] = spans.view(P, G, 2)
        ratio = sum(ratios) / len(ratios) if ratios else float("nan")
        kappa = float("nan")
        for use in trainer.comp.filters:
            if use.name == "decs_curriculum":
                use.state.update(ratio, self.kappa_lr)
                kappa = use.state.kappa
        return {"decs_redundant_share": sum(shares) / len(shares) if shares else float("nan"),
                "decs_nrp_ratio": ratio, "decs_kappa": kappa}
