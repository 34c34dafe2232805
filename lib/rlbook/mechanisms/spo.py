"""Single-stream Policy Optimization's drift measurement, as a phase of the step.

SPO's value tracker forgets faster when the policy has moved on a prompt: rho = clip(2^(-D / D_half), ...),
with D the policy's drift measured on the prompt's *earlier response* (``rlbook.mechanisms.estimators.single_stream``).
:class:`SPODrift` keeps, per prompt, the last sampled response and the log-probs it was sampled with; when
the prompt comes back it scores that response under the current policy and hands
``D = mean_t |log pi_now(y_t) - log pi_then(y_t)|`` to the estimator as context ``spo_drift`` ([P], NaN on a
first visit).

Source: Xu & Ding, "Single-stream Policy Optimization" (2025, arXiv 2509.13232); code: verl recipe
``spo/spo_ray_trainer.py::_get_spo_rho`` (github.com/verl-project/verl-recipe, commit e477def), which stores
each prompt's response with its log-probs and recomputes them at the next visit.  Difference: the recipe
stores the log-probs computed after that visit's policy update; we store the sampling log-probs (before the
update), so D also contains that one update.  The response stored is the group's first (the recipe has G = 1).
"""

from __future__ import annotations

from typing import Any

import torch

from rlbook.mechanisms import phases
from rlbook.policy.generation import left_pad
from rlbook.policy.rollout import Batch, logprobs_no_grad, token_logprobs


@phases.register("spo_drift", at="before_advantages")
class SPODrift(phases.Phase):
    """Measures SPO's drift D on each prompt's stored earlier response (context ``spo_drift``)."""

    def __init__(self, trainer: Any):
        self.stored: dict[int, tuple[list[int], list[float]]] = {}  # prompt -> (completion ids, log-probs then)

    def run(self, trainer: Any, batch: Batch) -> dict[str, float]:
        drift = self.measure(trainer, batch)
        batch.context["spo_drift"] = drift
        self.store(trainer, batch)
        seen = drift[~drift.isnan()]
        return {"spo_drift": float(seen.mean()) if seen.numel() else float("nan")}

    @torch.no_grad()
    def measure(self, trainer: Any, batch: Batch) -> torch.Tensor:
        drift = torch.full((batch.P,), float("nan"))
        rows = [(j, pid) for j, pid in enumerate(batch.indices) if pid in self.stored]
        if not rows:
            return drift
        prompts = [trainer.prompt_ids(batch.problems[j]) for j, _ in rows]
        comps = [self.stored[pid][0] for _, pid in rows]
        p_ids, p_att = left_pad(prompts, trainer.tok.pad_token_id, trainer.device)
        width = max(len(c) for c in comps)
        c_ids = torch.full((len(rows), width), trainer.tok.pad_token_id, dtype=torch.long)
        c_att = torch.zeros((len(rows), width), dtype=torch.long)
        for i, c in enumerate(comps):
            c_ids[i, : len(c)] = torch.tensor(c)
            c_att[i, : len(c)] = 1
        ids = torch.cat([p_ids, c_ids.to(trainer.device)], dim=1)
        att = torch.cat([p_att, c_att.to(trainer.device)], dim=1)
        now, _ = token_logprobs(trainer.model, ids, att, width, trainer.cfg.temperature)
        for i, (j, pid) in enumerate(rows):
            then = torch.tensor(self.stored[pid][1])
            drift[j] = (now[i, : len(then)].cpu() - then).abs().mean()
        return drift

    def store(self, trainer: Any, batch: Batch) -> None:
        rows = [j * batch.G for j in range(batch.P)]  # each group's first response
        roll = batch.roll
        logp = roll.logp if roll.logp is not None else None
        if logp is None:  # the "hf" backend does not return sampling log-probs: one forward pass instead
            got = logprobs_no_grad(trainer.model, trainer.cfg, roll, rows, False, trainer.whole_groups)
        for j, r in zip(range(batch.P), rows, strict=True):
            n = int(roll.lengths[r])
            lp = logp[r, :n] if logp is not None else got[r][:n]
            self.stored[batch.indices[j]] = (roll.completion_ids[r, :n].tolist(), lp.float().cpu().tolist())

    def state_dict(self) -> dict[str, Any]:
        return {"stored": {int(k): [list(v[0]), list(v[1])] for k, v in self.stored.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stored = {int(k): (list(v[0]), [float(x) for x in v[1]]) for k, v in state["stored"].items()}

