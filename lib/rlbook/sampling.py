"""How each step draws its prompts from the training split (a registry; curricula add to it).

``sampler = make(name, n_problems, seed, **kwargs)``; ``sampler.next(k) -> list[int]`` returns the
indices of the next ``k`` prompts.  Samplers keep their cursor and RNG in ``state_dict()`` so a
resumed run draws exactly the prompts the uninterrupted run would have drawn.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rlbook.config import ParamError


class EpochSampler:
    """Uniform without replacement: a fresh seeded permutation of the train split each epoch."""

    def __init__(self, n_problems: int, seed: int = 0):
        self.n = n_problems
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(self.n)
        self.cursor = 0
        self.epoch = 0

    def next(self, k: int) -> list[int]:
        out: list[int] = []
        while len(out) < k:
            if self.cursor >= self.n:
                self.order = self.rng.permutation(self.n)
                self.cursor = 0
                self.epoch += 1
            take = min(k - len(out), self.n - self.cursor)
            out.extend(int(i) for i in self.order[self.cursor : self.cursor + take])
            self.cursor += take
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"order": self.order.tolist(), "cursor": self.cursor, "epoch": self.epoch, "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.order = np.asarray(state["order"])
        self.cursor = int(state["cursor"])
        self.epoch = int(state["epoch"])
        self.rng.bit_generator.state = state["rng"]


_REGISTRY: dict[str, type] = {"uniform": EpochSampler}


def available() -> list[str]:
    return sorted(_REGISTRY)


def make(name: str, n_problems: int, seed: int = 0, **kwargs: Any) -> EpochSampler:
    if name not in _REGISTRY:
        raise ParamError(f"sampler {name!r} is unknown; available: {', '.join(available())}")
    return _REGISTRY[name](n_problems, seed=seed, **kwargs)
