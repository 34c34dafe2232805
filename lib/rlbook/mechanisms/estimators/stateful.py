"""Estimators with memory across steps: the single-stream (SPO) per-prompt value tracker."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from rlbook.core.config import ParamError

from ._registry import register
from ._util import to_unit


class ValueTracker:
    """Per-prompt Beta tracker: alpha and beta keyed by prompt id (plain python floats).

    ``state_dict`` gives plain float64 tensors, so a round trip is exact; ``load_state_dict`` ignores keys
    it does not know (older checkpoints also stored a ``last_log_ratio``).
    """

    def __init__(self) -> None:
        self.table: dict[int, tuple[float, float]] = {}

    def __len__(self) -> int:
        return len(self.table)

    def value(self, pid: int) -> float | None:
        """Current success estimate alpha / (alpha + beta), ``None`` for an unseen prompt."""
        if pid not in self.table:
            return None
        a, b = self.table[pid]
        return a / (a + b)

    def state_dict(self) -> dict[str, Any]:
        ids = sorted(self.table)
        return {
            "prompt_ids": torch.tensor(ids, dtype=torch.long),
            "alpha": torch.tensor([self.table[i][0] for i in ids], dtype=torch.float64),
            "beta": torch.tensor([self.table[i][1] for i in ids], dtype=torch.float64),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        ids, a, b = (state[k].tolist() for k in ("prompt_ids", "alpha", "beta"))
        self.table = {int(i): (float(x), float(y)) for i, x, y in zip(ids, a, b, strict=True)}


def _drift(spo_drift: Tensor | None, n: int) -> list[float]:
    """Per-prompt D (0 where not measured: first visit, NaN, or no ``spo_drift`` given)."""
    if spo_drift is None:
        return [0.0] * n
    d = spo_drift.float()
    d = d.mean(dim=1) if d.dim() == 2 else d
    if d.shape != (n,):
        raise ParamError(f"spo_drift must be [P] or [P, G] with P={n}; got shape {tuple(spo_drift.shape)}")
    return [x if x == x else 0.0 for x in d.tolist()]


@register("single_stream", stateful=True, state_factory=ValueTracker)
def single_stream(
    rewards: Tensor,
    *,
    state: ValueTracker,
    prompt_ids: Tensor,
    spo_drift: Tensor | None = None,
    d_half: float = 0.06,
    rho_min: float = 0.875,
    rho_max: float = 0.96,
    prior_alpha: float = 0.5,
    prior_beta: float = 0.5,
    min_value: float = 0.0,
    max_value: float = 1.0,
    eps: float = 1e-8,
) -> Tensor:
    """SPO: A = r - p_hat(x) from a persistent per-prompt Beta tracker, then whitened over the batch.

    p_hat = alpha / (alpha + beta) read *before* this step's update; a new prompt starts at the prior
    alpha = beta = 0.5 (p_hat = 0.5).  A = (r - p_hat), then (A - mean) / (std + 1e-8) over the batch
    (unbiased std).  Each prompt's tracker is then updated with its G rewards (rewards mapped to [0, 1] by
    the declared bounds; outside them is a ``ParamError``): alpha <- rho alpha + sum r,
    beta <- rho beta + sum (1 - r), rho = clip(2^(-D / d_half), rho_min, rho_max), where D is the policy's
    drift on the prompt's *previous response*: mean over that response's tokens of |log pi_now - log pi_then|
    (``spo_drift``, [P]; the trainer measures it).  Where D is not measured (first visit, NaN, no
    ``spo_drift``) D = 0 and rho = rho_max, as in the recipe's first visit.  Calling this mutates ``state``:
    once per training step.

    Source: Xu & Ding, "Single-stream Policy Optimization" (2025, arXiv 2509.13232); code: verl recipe
    github.com/verl-project/verl-recipe (commit e477def) ``spo/spo_ray_trainer.py``: ``RayPPOTrainer.fit``
    (prior 0.5 / 0.5 when ``offline_N = 0``, A = r - p_hat whitened, alpha/beta update) and ``_get_spo_rho``
    (D on the stored earlier response, D_half 0.06, rho clipped to [``rho.clip_lower`` = 0.875, 0.96];
    ``spo/config/spo_trainer.yaml``).  Differences: the recipe updates the tracker after the policy step and
    measures D with the post-update policy against the log-probs it stored after the previous visit's
    update; here the update happens when advantages are computed, so D (measured then) lags one policy
    update.  The recipe has G = 1; with G > 1 all G rewards enter the update.  No offline value
    initialisation (the recipe's ``offline_values``); a prompt twice in one batch is updated twice in turn.
    Prioritised prompt sampling (weights sqrt(p_hat (1 - p_hat)) + 0.05) is a sampler concern.
    """
    if not 0.0 < rho_min <= rho_max <= 1.0:
        raise ParamError(f"need 0 < rho_min <= rho_max <= 1; got rho_min={rho_min!r}, rho_max={rho_max!r}")
    if state is None or not isinstance(state, ValueTracker):
        raise ParamError("single_stream needs context 'state' from estimators.make_state('single_stream')")
    r = to_unit(rewards, min_value, max_value)
    drift = _drift(spo_drift, r.shape[0])
    baselines = []
    for row, pid in enumerate(prompt_ids.tolist()):
        a, b = state.table.get(int(pid), (prior_alpha, prior_beta))
        baselines.append(a / (a + b))
        rho = min(max(2.0 ** (-drift[row] / d_half), rho_min), rho_max)
        s = float(r[row].sum())
        state.table[int(pid)] = (rho * a + s, rho * b + (r.shape[1] - s))
    adv = r - torch.tensor(baselines, dtype=r.dtype, device=r.device).unsqueeze(1)
    if adv.numel() < 2:
        return torch.zeros_like(adv)
    return (adv - adv.mean()) / (adv.std(correction=1) + eps)
