"""One non-finite policy for every training loop: skip the step, count it, fail after a stated number in a row.

Every loop that takes optimizer steps (the policy update, the implicit PRM, the T-PPO and Digi-Q critics, SFT,
DPO) closes each step with :meth:`StepGuard.step`: the gradient is clipped to ``max_grad_norm`` (0: no
clipping), and when the loss or the gradient norm is not finite the optimizer step is skipped (the parameters
and the optimizer state stay as they were; the gradient is dropped).  ``skipped`` counts the skipped steps, and
each loop reports it in its metrics; after ``max_bad`` skipped steps **in a row** (:data:`MAX_BAD`: 3, the
trainer's ``train.max_bad_steps``) a :class:`~rlbook.core.errors.TrainingError` names the loop and the step.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch

from rlbook.core.errors import TrainingError

MAX_BAD = 3  # skipped steps in a row before a loop fails (TrainConfig.max_bad_steps has the same default)


@dataclass
class StepGuard:
    """Counts non-finite optimizer steps of one loop: ``bad`` in a row (reset by a good step), ``skipped`` in all."""

    max_bad: int = MAX_BAD
    name: str = "update"  # the loop, named in the message and the error
    hint: str = "lower the learning rate or check the inputs"
    bad: int = 0
    skipped: int = 0
    calls: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.max_bad, bool) or not isinstance(self.max_bad, int) or self.max_bad < 1:
            raise ValueError(f"StepGuard({self.name}): max_bad={self.max_bad!r} must be an integer >= 1")

    def step(self, params: Iterable[torch.nn.Parameter], optimizer: torch.optim.Optimizer, loss: float,
             max_grad_norm: float = 0.0, step: int | None = None) -> tuple[float, bool]:
        """Clip the gradient of ``params``, then ``optimizer.step()`` unless ``loss`` or the gradient norm is not
        finite; the gradient is zeroed either way.  ``step`` (default: the guard's own count) is the step named
        in the messages.  Returns (gradient norm before clipping, skipped)."""
        self.calls += 1
        step = self.calls if step is None else step
        max_norm = max_grad_norm if max_grad_norm > 0 else float("inf")
        grad_norm = float(torch.nn.utils.clip_grad_norm_(list(params), max_norm))
        skipped = not (math.isfinite(float(loss)) and math.isfinite(grad_norm))
        if skipped:
            self.bad += 1
            self.skipped += 1
            print(f"[rlbook] {self.name} step {step}: non-finite loss ({float(loss)}) or gradient norm ({grad_norm}); update "
                  f"skipped ({self.bad} in a row)")
        else:
            optimizer.step()
            self.bad = 0
        optimizer.zero_grad(set_to_none=True)
        if self.bad >= self.max_bad:
            raise TrainingError(f"{self.name}: {self.bad} consecutive steps with a non-finite loss or gradient "
                                f"(last at step {step}); {self.hint}")
        return grad_norm, skipped
