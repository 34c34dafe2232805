"""rlbook's mechanisms inside the distributed engines: TRL (accelerate, DeepSpeed) and verl (Ray, FSDP, vLLM).

rlbook does not grow its own distributed trainer.  It carries its registered estimators, losses,
aggregations and rewards into the engines that already run on many GPUs:

* :mod:`rlbook.application.integrations.trl` -- rlbook rewards as TRL reward functions, the task as a TRL dataset, and
  ``RlbookGRPOTrainer``, a ``trl.GRPOTrainer`` whose advantages come from an rlbook estimator and whose
  policy loss is an rlbook loss and aggregation (``accelerate launch`` runs it on many GPUs).
* :mod:`rlbook.application.integrations.verl` -- adapters that register rlbook estimators and losses in verl's own
  registries (``register_adv_est``, ``register_policy_loss``) so that a verl recipe can name them.

Neither engine is imported here: each submodule imports its engine and fails with an install hint.
``rlbook export NOTEBOOK --method NAME --to trl|verl`` (:mod:`rlbook.application.export`) writes a ready-to-edit script
or config for either engine; docs/SCALE_OUT.md walks through it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def method_train(method: str | Mapping[str, Any]) -> dict[str, Any]:
    """The trainer settings of a method preset (:func:`rlbook.mechanisms.presets.method_train`)."""
    from rlbook.mechanisms.presets import method_train as resolve

    return resolve(method)


def method_names() -> list[str]:
    """Names of the method presets (for messages)."""
    from rlbook.mechanisms.presets import PRESETS

    return sorted(PRESETS)
