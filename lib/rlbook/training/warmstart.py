"""A warm-started policy: a short SFT on gold answers of the training task, cached as a typed stage.

Some regimes cannot be reached from the base model: no task family gives SmolLM2-135M more than about 20%
sampled accuracy, so a training pool never has prompts the policy nearly always solves, and the curricula
that choose between easy and hard prompts (Knapsack RL, DUMP, SPO's sampler) have nothing to choose from.
``warm_start: {steps: N, lr: ..., batch_size: B, seed: S}`` (a notebook parameter, a :class:`WarmStart`)
starts every run of a study from the base model after ``N`` steps of SFT on gold answers:

* data: ``N x B`` problems drawn from the run's task (same families and difficulty, ``task.seed`` replaced by
  ``S``, so they are not the training pool's draw; small families such as one-digit products repeat some
  questions of the pool and the held-out set, as any two draws of them do), one example each: the prompt as the
  trainer builds it and the gold answer in the requested format (:func:`rlbook.training.finetune.gold_text`) + EOS;
* training: one epoch, ``N`` AdamW steps of batch ``B`` on a LoRA adapter of the run's ``lora`` settings
  (:func:`rlbook.training.finetune.train_sft`, completion-token mean NLL);
* use: the adapter is merged into the base weights and every run wraps its own fresh adapter around that
  model (:func:`warm_model`), as :mod:`rlbook.pipelines.continual` chains its stages; the reference policy of a KL term
  (the adapter disabled) is then the warm-started model, the model the run started from.

The stage's key is derived (:class:`rlbook.training.stages.Stage`): the model, the task, the LoRA settings and every field
of :class:`WarmStart`, with the code version; its folder ``warm-start-<key>/`` holds ``adapter.safetensors``
and ``result.json`` (first and last SFT loss, seconds).  ``steps: 0`` or ``warm_start: null`` is the base model
(no stage, and the run keys of a study without a warm start are unchanged).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlbook.core.errors import ParamError
from rlbook.training.stages import Stage, StageParams

ADAPTER = "adapter.safetensors"
POOL_FIELDS = ("seed", "train_size", "eval_size")  # task fields of the training pool, not of the SFT problems


@dataclass(frozen=True)
class WarmStart:
    """How the policy is warm-started (``steps = 0``: the base model)."""

    steps: int = 0  # SFT steps, one batch of fresh gold problems each
    lr: float = 2e-4  # AdamW learning rate of the SFT adapter
    batch_size: int = 8  # problems per SFT step
    seed: int = 1  # task seed of the SFT problems (the training pool's is task.seed) and of the batch order

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "seed"):
            value = getattr(self, name)
            low = 1 if name == "batch_size" else 0
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ParamError(f"warm_start.{name}={value!r} must be an integer >= {low}")
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not self.lr > 0:
            raise ParamError(f"warm_start.lr={self.lr!r} must be a number > 0")
        object.__setattr__(self, "lr", float(self.lr))


def resolve(value: Any) -> dict[str, Any] | None:
    """A ``warm_start`` parameter checked and filled in: None (or ``steps: 0``) for the base model, else every
    field of :class:`WarmStart` (what run keys hash).  A bad key or value is a ``ParamError``."""
    from rlbook.core.config import build

    if value is None:
        return None
    ws = build(WarmStart, dict(value) if isinstance(value, dict) else value, "warm_start")
    return dataclasses.asdict(ws) if ws.steps > 0 else None


def start_of(params: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, Any], dict[str, Any] | None]:
    """``(model, task, lora, warm_start)`` of a notebook's parameters, resolved as a run spec resolves them
    (:class:`rlbook.training.experiments.RunSpec`: the same warm-start stage key): for a measurement of the model a
    study's runs start from (e.g. :func:`rlbook.analysis.regimes.success_histogram`)."""
    from rlbook.core.config import build
    from rlbook.data.tasks import TaskSpec
    from rlbook.policy.models import LoraConfig

    task = dataclasses.asdict(build(TaskSpec, dict(params["task"]), "task"))
    lora = dataclasses.asdict(build(LoraConfig, dict(params.get("lora", {"r": 16, "alpha": 32})), "lora"))
    return str(params.get("model", "smollm2-135m-instruct")), task, lora, resolve(params.get("warm_start"))


@dataclass(frozen=True)
class WarmStartParams(StageParams):
    """Everything the warm-start stage reads (its cache key)."""

    model: str
    task: dict[str, Any]
    lora: dict[str, Any]
    warm_start: dict[str, Any]


def stage(model: str, task: dict[str, Any], lora: dict[str, Any], warm_start: dict[str, Any]) -> Stage:
    """The warm-start stage of a run's model, task (resolved :class:`rlbook.data.tasks.TaskSpec` fields), LoRA
    settings and resolved ``warm_start`` (:func:`resolve`, not None)."""
    drawn = {k: v for k, v in task.items() if k not in POOL_FIELDS}  # the SFT draw replaces these
    return Stage("warm-start", WarmStartParams(model=model, task=drawn, lora=dict(lora), warm_start=dict(warm_start)))


def compute(params: WarmStartParams, folder: Path) -> dict[str, Any]:
    """Train the SFT adapter (module doc) and save it into ``folder``."""
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    from rlbook.data.tasks import make_task
    from rlbook.policy.generation import prompt_ids
    from rlbook.policy.models import load_policy
    from rlbook.training.finetune import Example, completion_ids, gold_text, train_sft

    ws = WarmStart(**params["warm_start"])
    task = make_task({**params["task"], "seed": ws.seed, "train_size": ws.steps * ws.batch_size, "eval_size": 1})
    model, tok = load_policy(params["model"], lora=params["lora"], seed=ws.seed)
    examples = [Example(prompt_ids(tok, p.messages), completion_ids(tok, gold_text(p.answer, task.spec.answer_format)))
                for p in task.train]
    rows = train_sft(model, tok, examples, lr=ws.lr, epochs=1, batch_size=ws.batch_size, seed=ws.seed)
    state = {k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(model).items()}
    save_file(state, str(folder / ADAPTER))
    return {"examples": len(examples), "steps": len(rows), "loss_first": rows[0]["loss"], "loss_last": rows[-1]["loss"],
            "skipped": sum(r["skipped"] for r in rows), "sft_seconds": sum(r["seconds"] for r in rows)}


def warm_model(model: str, task: dict[str, Any], lora: dict[str, Any], warm_start: dict[str, Any] | None,
               cache: str | Path) -> tuple[Any, Any, dict[str, Any] | None]:
    """``(model, tokenizer, stage result)``: the base model when ``warm_start`` is None, else the base model with
    the warm-start adapter (trained once into ``cache``, :func:`compute`) merged into its weights, no adapter
    left on it (each run wraps its own)."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    from rlbook.policy.models import load_policy

    if warm_start is None:
        base, tok = load_policy(model, lora=None)
        return base, tok, None
    if int(lora.get("r", 0)) < 1:
        raise ParamError(f"warm_start needs a LoRA adapter to train and merge (lora.r >= 1); got lora={lora}")
    st = stage(model, task, lora, warm_start)
    result = st.run(cache, compute)
    peft_model, tok = load_policy(model, lora=lora)
    set_peft_model_state_dict(peft_model, load_file(str(st.folder(cache) / ADAPTER)))
    return peft_model.merge_and_unload(), tok, result
