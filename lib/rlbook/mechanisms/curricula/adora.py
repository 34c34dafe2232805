"""ADORA: advantage weighting by each group's utility, classified online from the group's own rollouts.

Source: "ADORA: Training Reasoning Models with Dynamic Advantage Estimation on Reinforcement Learning"
(2025/2026); code: github.com/ShadeCloak/ADORA (commit c518485)
``ADORA/verl/trainer/ppo/core_algos.py::compute_grpo_outcome_advantage_ADORA`` (``ADORA/ADORA.sh``:
``correct_score = 1.01``, ``lamda = 0.1``): per group, positives are samples scoring above ``correct_score``,
negatives the others shorter than ``max_length_threshold`` (complete answers); the group is *advantageous*
when the longest positive is longer than the mean negative (``max_pos > mean_neg``, -inf when a set is
empty); GRPO's advantage (mean, ``torch.std`` + 1e-6; a group of one keeps its score) is multiplied by
``lamda`` in every group that is not advantageous.  The VL variant (``ADORA_VL/.../experience_maker_vl.py::
weight_func``) keeps weight 1 for groups without a positive (``variant="vl"``).

The length threshold: the official run (``ADORA.sh``) sets ``max_length_threshold=3900`` with
``data.max_response_length=2048``, so no response ever reaches it and *every* wrong answer, truncated ones
included, is a negative.  ``max_length_threshold=None`` (the default) does the same here: no wrong answer is
dropped.  A number keeps only wrong answers shorter than it (``max_length_threshold=max_new_tokens`` drops the
truncated ones, which the official run never does).

Differences: a positive is a sample the task verifier marks correct (the code's ``score > 1.01`` is
Logic-RL's reward scale).  Uneven groups: the statistics over each group's filled slots.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from rlbook.core.errors import ParamError
from rlbook.mechanisms import phases
from rlbook.mechanisms.estimators import register
from rlbook.mechanisms.estimators._util import EPS, grpo_advantage


def adora_weights(correct: Tensor, lengths: Tensor, threshold: float, lamda: float, variant: str = "llm",
                  sample_mask: Tensor | None = None) -> Tensor:
    """[P] weight per group: 1 if the longest correct answer is longer than the mean wrong one shorter than
    ``threshold`` (``inf``: every wrong one), else ``lamda`` (``variant="vl"``: groups with no correct answer
    keep 1)."""
    if variant not in ("llm", "vl"):
        raise ParamError(f"adora variant={variant!r} is not allowed; allowed: llm, vl")
    mask = torch.ones_like(correct, dtype=torch.bool) if sample_mask is None else sample_mask.bool()
    pos = correct.bool() & mask
    neg = ~correct.bool() & mask & (lengths.float() < threshold)
    lf = lengths.float()
    max_pos = torch.where(pos, lf, torch.full_like(lf, -float("inf"))).amax(dim=1)
    mean_neg = torch.where(neg.any(dim=1), (lf * neg).sum(dim=1) / neg.sum(dim=1).clamp(min=1),
                           torch.full_like(max_pos, -float("inf")))
    good = max_pos > mean_neg
    if variant == "vl":
        good = good | ~pos.any(dim=1)
    return torch.where(good, torch.ones_like(max_pos), torch.full_like(max_pos, lamda))


def _threshold(max_length_threshold: int | None) -> float:
    """The negative set's length bound: ``None`` keeps every wrong answer (the official run's 3900 > 2048)."""
    return float("inf") if max_length_threshold is None else float(max_length_threshold)


@register("adora", ragged=True)
def adora(rewards: Tensor, *, correct: Tensor, lengths: Tensor, sample_mask: Tensor | None = None,
          lamda: float = 0.1, max_length_threshold: int | None = None, variant: str = "llm",
          eps: float = EPS) -> Tensor:
    """GRPO advantage x ``lamda`` in groups whose longest correct answer is not longer than their mean wrong
    answer (:func:`adora_weights`; ``max_length_threshold=None``: every wrong answer, as the official run);
    see the module docstring."""
    w = adora_weights(correct, lengths, _threshold(max_length_threshold), lamda, variant, sample_mask)
    return grpo_advantage(rewards, eps=eps, sample_mask=sample_mask) * w.unsqueeze(1)


@phases.register("adora_stats", at="after_advantages")
class AdoraStats(phases.Phase):
    """Logs how ADORA classified this step's mixed groups (``adora_advantageous_frac``): the mechanism acts only
    where some mixed groups are advantageous and some are not."""

    def __init__(self, trainer: Any, *, lamda: float = 0.1, max_length_threshold: int | None = None,
                 variant: str = "llm"):
        self.lamda, self.variant = lamda, variant
        self.threshold = _threshold(max_length_threshold)

    def run(self, trainer: Any, batch: Any) -> dict[str, float]:
        mask = batch.kept if batch.kept is not None else torch.ones_like(batch.correct, dtype=torch.bool)
        w = adora_weights(batch.correct, batch.lengths, self.threshold, self.lamda, self.variant, mask)
        c = (batch.correct & mask.bool()).sum(dim=1)
        mixed = (c > 0) & (c < mask.sum(dim=1))
        frac = float((w[mixed] == 1.0).float().mean()) if bool(mixed.any()) else float("nan")
        return {"adora_advantageous_frac": frac}
