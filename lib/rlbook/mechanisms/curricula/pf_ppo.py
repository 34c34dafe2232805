"""Policy Filtration (PF-PPO): train only on the samples whose reward-model score is reliable, and a simulated
noisy reward model to give our exact verifier the paper's premise.

Source: Zhang, Shen, Zhao, Zhang, Xu, Dou, Bian, "Policy Filtration for RLHF to Mitigate Noise in Reward Models"
(ICML 2025; v1 "Policy Filtration in RLHF to Fine-Tune LLM for Code Generation", arXiv 2409.06957), Sec. 4:
per prompt N responses are ranked by the reward model's score and the filtered policy keeps response i with
weight w_i: best-of-N w = (1, 0, ..., 0); best-random (BR) w = (1/2, 1/(2(N-1)), ..., 1/(2(N-1))); best-worst
(BW) w = (1/2, 0, ..., 0, 1/2); "PF-PPO selects 2 out of the N = 5 responses (on average)": BW keeps the best
and the worst, BR the best and one other drawn uniformly (our reading of "2 on average"), BoN the best.  The
kept responses are trained on as if sampled (Algorithm 2).  The paper's code (github.com/DtYXs/verl, branch
pf-ppo) is not indexed; verl upstream ``core_algos.compute_pf_ppo_reweight_data`` implements a different,
batch-level resampling (``pow``: weights |score|^k, multinomial with replacement) used only with a critic; not
followed here.

Differences: the paper trains PPO with a critic on the kept samples; we use a group baseline over the kept
samples of each group (``grpo`` with ``sample_mask``: BR/BW give two samples, A = +-0.7071 when their scores
differ; BoN a group of one, A = its score as verl's convention gives).  Ties in the ranking: stable by index.
The reward model is simulated (:func:`noisy_rm`): the verifier stays the held-out metric.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from rlbook.core.errors import ParamError
from rlbook.data.tasks import Problem
from rlbook.mechanisms import phases, rewards

STRATEGIES = ("bon", "br", "bw", "all")


@rewards.register("noisy_rm")
def noisy_rm(completions: list[str], problems: list[Problem], *, correct: list[bool], prompt_ids: list[int],
             step: int, margin: float = 1.0, sigma: float = 1.0, noise_seed: int = 0) -> list[float]:
    """A simulated reward model: s = tanh(margin (2c - 1) + sigma eps), c the verifier's verdict, eps ~ N(0, 1)
    from a generator seeded by (noise_seed, step, prompt, position in its group), so a resumed run draws the
    same noise.  With Gaussian noise P(correct | margin(2c-1) + sigma eps = z) = sigmoid(2 margin z / sigma^2):
    extreme scores are reliable, middle ones are not (the premise of PF-PPO)."""
    if sigma < 0:
        raise ParamError(f"noisy_rm sigma={sigma!r} must be >= 0")
    seen: dict[int, int] = {}
    out = []
    for c, pid in zip(correct, prompt_ids, strict=True):
        pos = seen.get(int(pid), 0)
        seen[int(pid)] = pos + 1
        eps = np.random.default_rng([int(noise_seed), int(step), int(pid), pos]).standard_normal()
        out.append(math.tanh(margin * (2.0 * float(c) - 1.0) + sigma * float(eps)))
    return out


def pf_select(scores: list[float], strategy: str, rng: np.random.Generator | None = None) -> list[int]:
    """Indices kept among one group's ``scores``: ``bon`` the best, ``bw`` the best and the worst, ``br`` the best
    and one other uniformly at random (``rng``), ``all`` every one.  Ranking stable by index."""
    if strategy not in STRATEGIES:
        raise ParamError(f"pf_ppo strategy={strategy!r} is not allowed; allowed: {', '.join(STRATEGIES)}")
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    if strategy == "all" or len(scores) <= 1:
        return list(range(len(scores)))
    if strategy == "bon":
        return [order[0]]
    if strategy == "bw":
        return sorted([order[0], order[-1]])
    other = order[1:][int((rng or np.random.default_rng(0)).integers(len(order) - 1))]
    return sorted([order[0], other])


def r_squared(x: torch.Tensor, y: torch.Tensor) -> float:
    """Squared Pearson correlation of two flat tensors (NaN when either is constant)."""
    x, y = x.double(), y.double()
    if x.numel() < 2 or float(x.std()) == 0 or float(y.std()) == 0:
        return float("nan")
    return float(torch.corrcoef(torch.stack([x, y]))[0, 1] ** 2)


@phases.register("pf_ppo", at="before_advantages")
class PolicyFiltration(phases.Phase):
    """Keep, per group, the samples :func:`pf_select` picks by reward (the advantages and the update see only
    those); logs the R^2 between reward and verifier on all samples and on the kept ones."""

    def __init__(self, trainer: Any, *, strategy: str = "br", seed: int = 0):
        pf_select([0.0, 1.0], strategy)  # a bad strategy fails at construction
        self.strategy, self.seed = strategy, seed

    def run(self, trainer: Any, batch: Any) -> dict[str, float]:
        mask = batch.kept if batch.kept is not None else torch.ones_like(batch.correct, dtype=torch.bool)
        keep = torch.zeros_like(mask, dtype=torch.bool)
        for j, pid in enumerate(batch.indices):
            slots = mask[j].nonzero().flatten().tolist()
            rng = np.random.default_rng([self.seed, trainer.step_count, int(pid)])
            for i in pf_select([float(batch.rewards[j, g]) for g in slots], self.strategy, rng):
                keep[j, slots[i]] = True
        batch.drop(keep)
        r, c = batch.rewards.reshape(-1), batch.correct.reshape(-1).float()
        m, k = mask.reshape(-1).bool(), keep.reshape(-1)
        return {"pf_r2_all": r_squared(r[m], c[m]), "pf_r2_kept": r_squared(r[k], c[k]),
                "pf_kept_accuracy": float(c[k].mean()) if bool(k.any()) else float("nan")}
