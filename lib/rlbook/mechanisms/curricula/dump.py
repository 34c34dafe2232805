"""DUMP: a UCB bandit over the distributions (buckets) of the training pool, scored by advantage magnitude.

Source: Wang, Cui, Li, Wan, Zhao, "DUMP: Automated Distribution-Level Curriculum Learning for RL-based LLM
Post-training" (2025, arXiv 2504.09710); code: github.com/ZhentingWang/DUMP (commit 235e85d)
``verl/utils/curriculum_learning.py``:

* ``LearnabilityEstimator.update``: per bucket a window of the last ``window`` (300) per-sample advantages
  (a FIFO over samples) and the cumulative sample count n_j; mu_j = mean |A| over the window;
* ``CurriculumController.compute_sampling_weights``: score_j = mu_j + c sqrt(2 ln(N + 1) / (n_j + 1)),
  N = max(1, sum_j n_j), c = 1; weights = softmax(score / tau), tau = 0.1;
* ``CurriculumSampler.__iter__``: each slot of a batch draws a bucket by the current weights, then a prompt
  of that bucket uniformly, with replacement (``random.Random(seed)``); weights start uniform;
* ``ray_trainer.py``: ``update_weights`` after every step's advantages, per sample A = the mean of its token
  advantages over its response tokens (``advantages[i][response_mask[i]].mean()``; here over
  ``roll.completion_mask``, :func:`rlbook.mechanisms.curricula._util.sample_advantages`), grouped by ``data_source``.

Buckets here are ``Problem.meta`` values (``bucket_key``: ``source``, ``difficulty`` or ``source+difficulty``).
Differences: the code also pushes, at each validation, one pseudo-sample per source whose "advantage" is the
source's mean validation reward into the same window (a different quantity; not done here); its Beta
counters (``alpha += #reward >= 3``) are logged only and not kept; buckets are in sorted order (the code's
``list(set(...))`` order depends on string hashing, which changes which bucket a random draw lands on).
"""

from __future__ import annotations

import math
import random
from collections import deque
from typing import Any

import numpy as np

from rlbook.core.errors import ParamError
from rlbook.mechanisms.curricula._util import sample_advantages
from rlbook.mechanisms.sampling import SAMPLERS, Sampler

BUCKET_KEYS = ("source", "difficulty", "source+difficulty")


def bucket_of(meta: dict[str, Any], key: str) -> str:
    """The bucket label of a problem from its ``meta`` (:data:`BUCKET_KEYS`)."""
    if key not in BUCKET_KEYS:
        raise ParamError(f"dump bucket_key={key!r} is not allowed; allowed: {', '.join(BUCKET_KEYS)}")
    source = str(meta.get("source", "default"))
    diff = meta.get("difficulty") or {}
    level = " ".join(f"{k}={v}" for k, v in sorted(diff.items()) if not isinstance(v, list)) or "-"
    return {"source": source, "difficulty": level, "source+difficulty": f"{source} {level}"}[key]


def ucb_weights(mu: list[float], n: list[int], c: float = 1.0, tau: float = 0.1) -> list[float]:
    """softmax((mu_j + c sqrt(2 ln(N + 1) / (n_j + 1))) / tau) with N = max(1, sum n_j)."""
    total = max(1, sum(n))
    scores = np.array([m + c * math.sqrt(2 * math.log(total + 1) / (k + 1)) for m, k in zip(mu, n, strict=True)])
    e = np.exp((scores - scores.max()) / tau)
    return (e / e.sum()).tolist()


class BucketWindow:
    """One bucket's window of per-sample |A| (``LearnabilityEstimator``) and its cumulative count."""

    def __init__(self, window: int = 300):
        self.values: deque[float] = deque(maxlen=window)
        self.n = 0

    def update(self, advantages: list[float]) -> None:
        self.values.extend(abs(a) for a in advantages)
        self.n += len(advantages)

    @property
    def mu(self) -> float:
        return float(np.mean(self.values)) if self.values else 0.0


@SAMPLERS.register("dump")
class DumpSampler(Sampler):
    """DUMP: bucket by UCB over the buckets' mean |advantage|, then a prompt of the bucket (with replacement)."""

    def __init__(self, n_problems: int, seed: int = 0, *, task: Any = None, bucket_key: str = "source",
                 window: int = 300, c: float = 1.0, tau: float = 0.1):
        if task is None:
            raise ParamError("the dump sampler needs the task (its problems' meta give the buckets)")
        if tau <= 0 or window < 1:
            raise ParamError(f"dump needs tau > 0 and window >= 1; got tau={tau}, window={window}")
        labels = [bucket_of(p.meta, bucket_key) for p in task.train[:n_problems]]
        self.buckets = sorted(set(labels))
        self.members = {b: [i for i, lab in enumerate(labels) if lab == b] for b in self.buckets}
        self.bucket = labels
        self.c, self.tau = c, tau
        self.windows = {b: BucketWindow(window) for b in self.buckets}
        self.weights = [1.0 / len(self.buckets)] * len(self.buckets)
        self.rng = random.Random(seed)

    def next(self, k: int) -> list[int]:
        out = []
        for _ in range(k):
            b = self.rng.choices(self.buckets, weights=self.weights, k=1)[0]
            out.append(self.rng.choice(self.members[b]))
        return out

    def observe_batch(self, batch: Any) -> None:
        """Per-sample advantages (the mean over the response tokens when per token) by bucket, then new weights
        (``update_weights``)."""
        mask3 = batch.roll.completion_mask if batch.advantages.dim() == 3 else None  # only token-level needs it
        adv = sample_advantages(batch.advantages, mask3)
        mask = batch.sample_mask if batch.sample_mask is not None else adv.new_ones(adv.shape, dtype=bool)
        per: dict[str, list[float]] = {}
        for j, idx in enumerate(batch.indices):
            per.setdefault(self.bucket[idx], []).extend(adv[j][mask[j].bool()].tolist())
        for b, values in per.items():
            self.windows[b].update(values)
        self.weights = ucb_weights([self.windows[b].mu for b in self.buckets],
                                   [self.windows[b].n for b in self.buckets], self.c, self.tau)
        w = np.asarray(self.weights)
        batch.metrics.update({"dump_weight_entropy": float(-(w * np.log(np.clip(w, 1e-12, 1))).sum()),
                              **{f"dump_w[{b}]": float(x) for b, x in zip(self.buckets, self.weights, strict=True)}})

    def state_dict(self) -> dict[str, Any]:
        return {"windows": {b: [list(w.values), w.n] for b, w in self.windows.items()},
                "weights": list(self.weights), "rng": self.rng.getstate()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for b, (values, n) in state["windows"].items():
            self.windows[b].values.clear()
            self.windows[b].values.extend(float(v) for v in values)
            self.windows[b].n = int(n)
        self.weights = [float(w) for w in state["weights"]]
        v, internal, gauss = state["rng"]
        self.rng.setstate((int(v), tuple(int(x) for x in internal), gauss))
