"""Estimators with memory across steps: the single-stream (SPO) per-prompt value tracker."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from rlbook.config import ParamError

from ._registry import register
from ._util import EPS, to_unit


class ValueTracker:
    """Per-prompt Beta tracker: alpha, beta and the last seen per-token log-ratio, keyed by prompt id.

    Plain python floats inside; ``state_dict`` gives plain tensors (float64, so a round trip is exact).
    """

    def __init__(self) -> None:
        self.table: dict[int, tuple[float, float, float]] = {}

    def __len__(self) -> int:
        return len(self.table)

    def value(self, pid: int) -> float | None:
        """Current success estimate alpha / (alpha + beta), ``None`` for an unseen prompt."""
        if pid not in self.table:
            return None
        a, b, _ = self.table[pid]
        return a / (a + b)

    def state_dict(self) -> dict[str, Any]:
        ids = sorted(self.table)
        rows = [self.table[i] for i in ids]
        col = lambda j: torch.tensor([r[j] for r in rows], dtype=torch.float64)  # noqa: E731
        return {
            "prompt_ids": torch.tensor(ids, dtype=torch.long),
            "alpha": col(0),
            "beta": col(1),
            "last_log_ratio": col(2),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        ids = state["prompt_ids"].tolist()
        a, b, c = (state[k].tolist() for k in ("alpha", "beta", "last_log_ratio"))
        self.table = {int(i): (float(x), float(y), float(z)) for i, x, y, z in zip(ids, a, b, c, strict=True)}


@register("single_stream", stateful=True, state_factory=ValueTracker)
def single_stream(
    rewards: Tensor,
    *,
    state: ValueTracker,
    prompt_ids: Tensor,
    seq_log_ratio: Tensor | None = None,
    lengths: Tensor | None = None,
    d_half: float = 0.06,
    rho_min: float = 0.5,
    rho_max: float = 0.96,
    init_value: float = 0.5,
    min_value: float = 0.0,
    max_value: float = 1.0,
    center: bool = True,
    eps: float = EPS,
) -> Tensor:
    """SPO: A = r - v̂(x) from a persistent per-prompt Beta tracker, then normalised over the batch.

    v̂(x) = alpha / (alpha + beta) read *before* this step's update (rewards mapped to [0, 1] by
    min/max).  A new prompt starts at alpha = N0 v0, beta = N0 (1 - v0), N0 = 1 / (1 - rho_min),
    v0 = ``init_value``.  After reading, each prompt's tracker is updated with all G of its rewards:
    alpha <- rho alpha + sum r, beta <- rho beta + sum (1 - r), with the KL-adaptive forgetting factor
    rho = clip(2 ** (-D / d_half), rho_min, rho_max), D = |c_now - c_last|, c = mean per-token
    log-ratio to the reference of this prompt's completions (rho = rho_max on a first visit or with no
    log-ratio).  Advantages are then whitened over the whole batch (``center=False``: divided by the
    batch std only).  Calling this mutates ``state``: call it once per training step.
    Source: Xu & Ding, "Single-stream Policy Optimization" (2025), arXiv 2509.13232, Sec. 3 (KL-adaptive
    value tracker, global advantage normalisation); verl recipe ``recipe/spo``; defaults d_half = 0.06,
    rho in [0.5, 0.96] and N0 = 1/(1 - rho_min) from the public re-implementation in MiniMind
    ``trainer/train_spo.py::AutoAdaptiveValueTracker``.  Differences: the paper measures D as the KL
    between the current policy and the one that last saw the prompt and initialises v̂ from offline
    rollouts; we have only the log-ratio to the reference, so D is the change of that log-ratio since
    the prompt's last visit, and v̂ starts at ``init_value``.  Prioritised prompt sampling is a sampler
    concern (``rlbook.sampling``), not part of this estimator.
    """
    if not 0.0 < rho_min <= rho_max <= 1.0:
        raise ParamError(f"need 0 < rho_min <= rho_max <= 1; got rho_min={rho_min!r}, rho_max={rho_max!r}")
    if state is None or not isinstance(state, ValueTracker):
        raise ParamError("single_stream needs context 'state' from estimators.make_state('single_stream')")
    r = to_unit(rewards, min_value, max_value)
    if seq_log_ratio is not None:
        per_tok = seq_log_ratio.float() / (lengths.float().clamp(min=1.0) if lengths is not None else 1.0)
        conf = per_tok.mean(dim=1).tolist()
    else:
        conf = [None] * r.shape[0]
    n0 = 1.0 / (1.0 - rho_min) if rho_min < 1.0 else 1.0
    baselines = []
    for row, pid in enumerate(prompt_ids.tolist()):
        pid = int(pid)
        if pid not in state.table:
            state.table[pid] = (n0 * init_value, n0 * (1.0 - init_value), float("nan"))
        a, b, last = state.table[pid]
        baselines.append(a / (a + b))
        c = conf[row]
        if c is None or last != last:  # first visit (nan) or no log-ratio
            rho = rho_max
        else:
            rho = min(max(2.0 ** (-abs(c - last) / d_half), rho_min), rho_max)
        s = float(r[row].sum())
        state.table[pid] = (rho * a + s, rho * b + (r.shape[1] - s), last if c is None else float(c))
    base = torch.tensor(baselines, dtype=r.dtype, device=r.device).unsqueeze(1)
    adv = r - base
    mean = adv.mean() if center else 0.0
    std = adv.std(correction=1) if adv.numel() > 1 else torch.zeros((), device=adv.device)
    return (adv - mean) / (std + eps)
