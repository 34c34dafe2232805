"""Single-stream Policy Optimization's prioritised prompt sampling, with its KL-adaptive value tracker.

Source: Xu & Ding, "Single-stream Policy Optimization" (2025, arXiv 2509.13232); code: verl recipe
github.com/verl-project/verl-recipe (commit e477def) ``spo/spo_ray_trainer.py::RayPPOTrainer.fit``: each
step takes the dataloader's candidate batch, p_hat = alpha / (alpha + beta) per prompt, weight
w = sqrt(p_hat (1 - p_hat)) + 0.05 (``EXPLORATION_EPSILON``), and draws ``train_batch_size`` prompts with
``numpy.random.choice(M, size, replace=size > M, p=w / sum w)``; after the step every sampled prompt's tracker
is updated, alpha <- rho alpha + r, beta <- rho beta + (1 - r), rho = clip(2^(-D / D_half), 0.875, 0.96) with
D the policy's drift on the prompt's earlier response (``_get_spo_rho``; the ``spo_drift`` phase measures it).

Differences: the candidate batch is the next ``candidates`` prompts of a shuffled epoch (all prompts when
``candidates`` is 0); no offline prior (the recipe's ``offline_values`` come from 8 base-model samples per
prompt: here every prompt starts at alpha = beta = 0.5, the recipe's prior without offline values); success
is the task verifier's verdict; with G > 1 samples per prompt (the sampler used with GRPO) all G verdicts
enter the update; the update happens when the batch's advantages are known (before the policy step), so D
is the one the ``spo_drift`` phase measured before this step's update (0 without that phase: rho = 0.96).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rlbook.core.errors import ParamError
from rlbook.mechanisms.sampling import SAMPLERS, Sampler


def spo_weights(p_hat: np.ndarray, epsilon: float = 0.05) -> np.ndarray:
    """Sampling probabilities w / sum w, w = sqrt(p_hat (1 - p_hat)) + epsilon (uniform if sum w = 0)."""
    w = np.sqrt(p_hat * (1.0 - p_hat)) + epsilon
    total = float(w.sum())
    return w / total if total > 0 else np.full(len(w), 1.0 / len(w))


def spo_rho(drift: float, d_half: float = 0.06, rho_min: float = 0.875, rho_max: float = 0.96) -> float:
    """rho = clip(2^(-D / D_half), rho_min, rho_max)."""
    return min(max(2.0 ** (-drift / d_half), rho_min), rho_max)


@SAMPLERS.register("spo_sampling")
class SPOSampler(Sampler):
    """Prompts drawn with probability proportional to sqrt(p_hat (1 - p_hat)) + 0.05 from a per-prompt Beta
    tracker (the prompts whose outcome is most uncertain first)."""

    def __init__(self, n_problems: int, seed: int = 0, *, epsilon: float = 0.05, candidates: int = 0,
                 d_half: float = 0.06, rho_min: float = 0.875, rho_max: float = 0.96, prior_alpha: float = 0.5,
                 prior_beta: float = 0.5):
        if not 0.0 < rho_min <= rho_max <= 1.0 or epsilon < 0 or candidates < 0:
            raise ParamError(f"spo_sampling needs 0 < rho_min <= rho_max <= 1, epsilon >= 0, candidates >= 0; got "
                             f"rho_min={rho_min}, rho_max={rho_max}, epsilon={epsilon}, candidates={candidates}")
        self.n, self.eps, self.candidates = n_problems, epsilon, candidates
        self.d_half, self.rho_min, self.rho_max = d_half, rho_min, rho_max
        self.alpha = np.full(n_problems, float(prior_alpha))
        self.beta = np.full(n_problems, float(prior_beta))
        self.rng = np.random.default_rng(seed)
        self.order, self.cursor = self.rng.permutation(n_problems), 0

    def _candidates(self) -> np.ndarray:
        if self.candidates == 0 or self.candidates >= self.n:
            return np.arange(self.n)
        if self.cursor + self.candidates > self.n:
            self.order, self.cursor = self.rng.permutation(self.n), 0
        out = self.order[self.cursor : self.cursor + self.candidates]
        self.cursor += self.candidates
        return out

    def next(self, k: int) -> list[int]:
        cand = self._candidates()
        probs = spo_weights(self.alpha[cand] / (self.alpha[cand] + self.beta[cand]), self.eps)
        pick = self.rng.choice(len(cand), size=k, replace=k > len(cand), p=probs)
        return [int(cand[i]) for i in pick]

    def observe_batch(self, batch: Any) -> None:
        drift = batch.context.get("spo_drift")
        mask = batch.sample_mask if batch.sample_mask is not None else batch.correct.new_ones(batch.correct.shape)
        for j, idx in enumerate(batch.indices):
            d = float(drift[j]) if drift is not None and drift[j] == drift[j] else 0.0
            rho = spo_rho(d, self.d_half, self.rho_min, self.rho_max)
            r = batch.correct[j][mask[j].bool()].float()
            self.alpha[idx] = rho * self.alpha[idx] + float(r.sum())
            self.beta[idx] = rho * self.beta[idx] + float((1 - r).sum())
        p = self.alpha[batch.indices] / (self.alpha[batch.indices] + self.beta[batch.indices])
        batch.metrics["spo_p_hat_mid_frac"] = float(np.mean((p > 0.2) & (p < 0.8)))

    def state_dict(self) -> dict[str, Any]:
        return {"alpha": self.alpha.tolist(), "beta": self.beta.tolist(), "rng": self.rng.bit_generator.state,
                "order": self.order.tolist(), "cursor": self.cursor}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.alpha, self.beta = np.asarray(state["alpha"], dtype=float), np.asarray(state["beta"], dtype=float)
        self.rng.bit_generator.state = state["rng"]
        self.order, self.cursor = np.asarray(state["order"]), int(state["cursor"])
