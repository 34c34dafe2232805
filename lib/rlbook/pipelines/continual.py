"""Continual post-training: tasks trained one after another by SFT or by GRPO, and the forgetting it causes.

Paper: Lai, Zhao et al. (2025), "Reinforcement Fine-Tuning Naturally Mitigates Forgetting in Continual
Post-Training", arXiv 2507.05386 (ICML 2026).  Its official code (RFT with EasyR1, SFT with LLaMA-Factory) could
not be read here (the repository's owner is not in the code index), so this module follows the paper's
abstract and the standard continual-learning protocol; every assumption is named below.

Protocol (:func:`run_sequence`): one LoRA policy is trained on task 1, then on task 2, ...; after every stage
every task (and held-out *probe* families never trained on) is evaluated greedily, giving the accuracy matrix
``A[i, j]`` = accuracy on task j after stage i (row 0 = the base model).  Each stage starts from the previous
stage's model with its adapter merged into the weights and a fresh adapter on top, so a stage is a new
fine-tuning run from the last checkpoint (as chaining EasyR1 / LLaMA-Factory runs does) and GRPO's KL
reference (the adapter disabled) is the model the stage started from.  Paradigms (an :class:`Arm` each):

* ``sft``: supervised fine-tuning (:mod:`rlbook.training.finetune`, our own loop: see there why) on ``steps x
  prompts_per_step`` problems of the task, one example each: the gold answer in the requested format
  (``data: gold``) or one correct completion sampled from the current model (``data: rejection``, K samples,
  prompts without a correct one dropped);
* ``grpo``: the GRPO trainer (:class:`rlbook.training.trainer.Trainer`) for ``steps`` steps per task, with the KL
  coefficient of the arm (EasyR1's default ``kl_coef: 1.0e-2``, ``low_var_kl`` = our ``k3``; the paper's
  ablation sets it to 0), optionally with *rollout-based instance filtering* (RIF): before the stage, K
  rollouts of each of ``pool`` training problems under the current model, and only problems whose rollout
  accuracy is strictly between 0 and 1 are trained on (our reading of "focusing on learnable samples"; the
  paper's exact K and bounds could not be read);
* ``multitask``: GRPO on all tasks mixed (one stage, ``len(tasks) x steps`` steps), the reference.

Metrics (:func:`cl_metrics`): average accuracy AA = mean_j A[N, j]; backward transfer BWT = mean_{j<N}
(A[N, j] - A[j, j]) (negative = forgetting); forgetting measure FM (Chaudhry et al. 2018, "Riemannian Walk for
Incremental Learning") = mean_{j<N} (max_{l in j..N-1} A[l, j] - A[N, j]).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from rlbook.core.config import TrainConfig, build
from rlbook.core.errors import ParamError
from rlbook.data.tasks import Problem, Task
from rlbook.policy.generation import prompt_ids
from rlbook.policy.models import Tokenizer, wrap_lora
from rlbook.policy.rollout import generate
from rlbook.training.finetune import Example, completion_ids, gold_text, train_sft
from rlbook.training.stages import Stage, StageParams
from rlbook.training.trainer import Trainer

KINDS = ("sft", "grpo", "multitask")
SFT_DATA = ("gold", "rejection")
STAGE_COLUMNS = ("accuracy", "reward_mean", "zero_adv_group_frac", "kl", "response_length", "step_s")


@dataclass
class Arm:
    """One paradigm of the continual study: how each task stage trains."""

    kind: str = "grpo"
    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig overrides (grpo, multitask; rejection sampling)
    sft: dict[str, Any] = field(default_factory=dict)  # lr, batch_size, epochs, data (gold|rejection), k
    rif: dict[str, Any] | None = None  # {"k": 4, "pool": 48, "low": 0.0, "high": 1.0}: instance filtering

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ParamError(f"arm kind={self.kind!r} is not allowed; allowed: {', '.join(KINDS)}")
        data = self.sft.get("data", "gold")
        if data not in SFT_DATA:
            raise ParamError(f"arm sft.data={data!r} is not allowed; allowed: {', '.join(SFT_DATA)}")
        if self.rif is not None and self.kind != "grpo":
            raise ParamError(f"rollout-based instance filtering applies to GRPO arms, not kind={self.kind!r}")


# ------------------------------------------------------------------------------------------ tasks


class TaskMix:
    """A training task over chosen problems of one or several tasks (multi-task training, RIF's kept subset).

    ``train`` holds the problems re-indexed 0..n-1 (the trainer caches prompts by index), interleaved task by
    task; ``score`` sends each problem to its own task's verifier."""

    def __init__(self, parts: Sequence[tuple[Task, Sequence[Problem]]]):
        if not parts or not any(len(ps) for _, ps in parts):
            raise ParamError("TaskMix needs at least one problem")
        self.spec = parts[0][0].spec
        self.numeric = all(t.numeric for t, _ in parts)
        self.eval: list[Problem] = []
        self.train: list[Problem] = []
        self._owner: list[tuple[Task, Problem]] = []
        for i in range(max(len(ps) for _, ps in parts)):
            for task, ps in parts:
                if i < len(ps):
                    self.train.append(dataclasses.replace(ps[i], index=len(self.train)))
                    self._owner.append((task, ps[i]))

    def score(self, problem: Problem, completion: str) -> float:
        task, original = self._owner[problem.index]
        return task.score(original, completion)


def stage_problems(task: Task, n: int, seed: int) -> list[Problem]:
    """``n`` training problems of ``task`` in a seeded order (cycling when the split is smaller)."""
    order = np.random.default_rng(seed).permutation(len(task.train)).tolist()
    return [task.train[order[i % len(order)]] for i in range(n)]


# ---------------------------------------------------------------------------------- measurements


@torch.no_grad()
def sampled_accuracy(model: Any, tok: Tokenizer, task: Any, problems: Sequence[Problem], k: int,
                     max_new_tokens: int, temperature: float = 1.0) -> tuple[np.ndarray, list[list[str]]]:
    """Rollout accuracy of each problem over ``k`` samples (and the samples), under the current model."""
    cfg = TrainConfig(temperature=temperature)
    roll = generate(model, tok, cfg, [prompt_ids(tok, p.messages) for p in problems], max_new_tokens,
                    do_sample=True, temperature=temperature, group_size=k)
    ok = np.array([task.score(problems[i // k], t) >= 1.0 for i, t in enumerate(roll.texts)]).reshape(-1, k)
    return ok.mean(1), [roll.texts[i * k : (i + 1) * k] for i in range(len(problems))]


def rif_keep(rollout_accuracy: np.ndarray, low: float = 0.0, high: float = 1.0) -> np.ndarray:
    """Rollout-based instance filtering: keep the problems whose rollout accuracy is strictly in (low, high)."""
    acc = np.asarray(rollout_accuracy, dtype=float)
    return (acc > low) & (acc < high)


@torch.no_grad()
def evaluate_tasks(model: Any, tok: Tokenizer, tasks: dict[str, Task], n: int, max_new_tokens: int
                   ) -> dict[str, list[bool]]:
    """Greedy held-out correctness of the first ``n`` eval problems of every task (RNG left untouched)."""
    state = torch.get_rng_state()
    out = {}
    for name, task in tasks.items():
        problems = task.eval[:n]
        roll = generate(model, tok, TrainConfig(), [prompt_ids(tok, p.messages) for p in problems], max_new_tokens,
                        do_sample=False)
        out[name] = [task.score(p, t) >= 1.0 for p, t in zip(problems, roll.texts, strict=True)]
    torch.set_rng_state(state)
    return out


def cl_metrics(acc: np.ndarray) -> dict[str, float]:
    """AA, BWT and FM of an accuracy matrix ``[N + 1, N]`` (row 0 = base model, row i = after stage i)."""
    a = np.asarray(acc, dtype=float)
    n = a.shape[1]
    if a.shape[0] != n + 1:
        raise ValueError(f"accuracy matrix must be [N + 1, N], got {a.shape}")
    aa = float(a[n].mean())
    if n < 2:
        return {"AA": aa, "BWT": float("nan"), "FM": float("nan")}
    bwt = float(np.mean([a[n, j] - a[j + 1, j] for j in range(n - 1)]))
    fm = float(np.mean([a[j + 1 : n, j].max() - a[n, j] for j in range(n - 1)]))
    return {"AA": aa, "BWT": bwt, "FM": fm}


# ---------------------------------------------------------------------------------------- stages


def _stage_metrics(history: list[dict[str, Any]]) -> dict[str, float]:
    """The mean of each of :data:`STAGE_COLUMNS` over a stage's steps (NaN where no step has a finite value)."""
    out = {}
    for c in STAGE_COLUMNS:
        vals = [float(h[c]) for h in history if c in h and np.isfinite(float(h[c]))]
        out[c] = float(np.mean(vals)) if vals else float("nan")
    return out


def grpo_stage(model: Any, tok: Tokenizer, task: Any, cfg: dict[str, Any]) -> dict[str, Any]:
    """``cfg["steps"]`` GRPO steps of the active adapter on ``task``; the stage's mean metrics."""
    trainer = Trainer(model, tok, task, cfg, progress=False)
    hist = trainer.fit()
    return {**_stage_metrics(hist), "steps": len(hist), "seconds": float(sum(h["step_s"] for h in hist))}


def sft_examples(model: Any, tok: Tokenizer, task: Task, problems: Sequence[Problem], arm: Arm,
                 cfg: TrainConfig) -> list[Example]:
    """One SFT example per problem: the gold answer, or the first correct of ``k`` samples (rejection)."""
    if arm.sft.get("data", "gold") == "gold":
        return [Example(prompt_ids(tok, p.messages), completion_ids(tok, gold_text(p.answer, task.spec.answer_format)))
                for p in problems]
    _, samples = sampled_accuracy(model, tok, task, problems, int(arm.sft.get("k", 8)), cfg.max_new_tokens,
                                  cfg.temperature)
    out = []
    for p, texts in zip(problems, samples, strict=True):
        good = [t for t in texts if task.score(p, t) >= 1.0]
        if good:
            out.append(Example(prompt_ids(tok, p.messages), completion_ids(tok, good[0])))
    return out


def sft_stage(model: Any, tok: Tokenizer, task: Task, arm: Arm, cfg: TrainConfig) -> dict[str, Any]:
    """SFT of the active adapter on as many problems as a GRPO stage draws (``steps x prompts_per_step``)."""
    t0 = time.perf_counter()
    problems = stage_problems(task, cfg.steps * cfg.prompts_per_step, cfg.seed)
    examples = sft_examples(model, tok, task, problems, arm, cfg)
    rows = train_sft(model, tok, examples, lr=float(arm.sft.get("lr", 2e-4)),
                     epochs=int(arm.sft.get("epochs", 1)),
                     batch_size=int(arm.sft.get("batch_size", cfg.prompts_per_step)), seed=cfg.seed)
    return {"examples": len(examples), "steps": len(rows), "loss_first": rows[0]["loss"] if rows else float("nan"),
            "loss_last": rows[-1]["loss"] if rows else float("nan"), "skipped": sum(r["skipped"] for r in rows),
            "seconds": time.perf_counter() - t0}


def rif_task(model: Any, tok: Tokenizer, task: Task, rif: dict[str, Any], cfg: TrainConfig) -> tuple[Any, dict]:
    """RIF before a GRPO stage: K rollouts of ``pool`` problems, the learnable ones as the stage's task."""
    t0 = time.perf_counter()
    pool = stage_problems(task, min(int(rif.get("pool", 48)), len(task.train)), cfg.seed + 7)
    acc, _ = sampled_accuracy(model, tok, task, pool, int(rif.get("k", 4)), cfg.max_new_tokens, cfg.temperature)
    keep = rif_keep(acc, float(rif.get("low", 0.0)), float(rif.get("high", 1.0)))
    kept = [p for p, k in zip(pool, keep, strict=True) if k] or pool  # nothing learnable: train on the pool
    info = {"rif_pool": len(pool), "rif_kept": int(keep.sum()), "rif_kept_frac": float(keep.mean()),
            "rif_seconds": time.perf_counter() - t0}
    return TaskMix([(task, kept)]), info


def train_stage(model: Any, tok: Tokenizer, task: Task, arm: Arm, cfg: dict[str, Any]) -> dict[str, Any]:
    """One task stage of ``arm`` on the active adapter."""
    if arm.kind == "sft":
        return sft_stage(model, tok, task, arm, build(TrainConfig, cfg, "train"))
    info: dict[str, Any] = {}
    train_task: Any = task
    if arm.rif is not None:
        train_task, info = rif_task(model, tok, task, arm.rif, build(TrainConfig, cfg, "train"))
    return {**grpo_stage(model, tok, train_task, cfg), **info}


def next_stage_model(model: Any, lora: dict[str, Any], seed: int) -> Any:
    """Merge the adapter into the weights and put a fresh adapter on top: the next stage starts from here and
    its KL reference (adapter disabled) is this model."""
    return wrap_lora(model.merge_and_unload(), lora, seed=seed)


def run_sequence(base_factory: Callable[[], tuple[Any, Tokenizer]], arm: Arm, tasks: dict[str, Task],
                 probes: dict[str, Task], *, lora: dict[str, Any], train: dict[str, Any], seed: int,
                 eval_size: int, eval_max_new_tokens: int) -> dict[str, Any]:
    """Train ``arm`` through ``tasks`` in order (``multitask``: all at once) with ``seed``; after each stage every
    task and probe is evaluated.  Returns ``{"rows": [{"after", "correct": {task: [bool]}}], "stages": [...]}``."""
    base, tok = base_factory()
    model = wrap_lora(base, lora, seed=seed)
    everything = {**tasks, **probes}
    cfg = {**train, **arm.train, "seed": seed}
    stages: list[tuple[str, Any]] = list(tasks.items())
    if arm.kind == "multitask":
        mix = TaskMix([(t, t.train) for t in tasks.values()])
        stages = [("multitask", mix)]
        cfg["steps"] = int(cfg.get("steps", TrainConfig().steps)) * len(tasks)
    rows, infos = [], []
    for i, (name, task) in enumerate(stages):
        if i > 0:
            model = next_stage_model(model, lora, seed * 1000 + i)
        info = train_stage(model, tok, task, arm, {**cfg, "seed": seed * 1000 + i})
        infos.append({"stage": name, "kind": arm.kind, **info})
        rows.append({"after": name, "correct": evaluate_tasks(model, tok, everything, eval_size, eval_max_new_tokens)})
    return {"rows": rows, "stages": infos}


# ------------------------------------------------------------------------------------ the study


def make_tasks(specs: Sequence[dict[str, Any]], common: dict[str, Any]) -> dict[str, Task]:
    """Tasks by name from ``[{name, config, ...}]`` specs on top of ``common`` (sizes, seed, answer format)."""
    from rlbook.data.tasks import make_task

    out: dict[str, Task] = {}
    for spec in specs:
        task = make_task({**common, **spec})
        label = spec.get("label", spec["name"])
        if label in out:
            raise ParamError(f"task label {label!r} appears twice; give one a 'label'")
        out[label] = task  # type: ignore[assignment]
    return out


@dataclass(frozen=True)
class BaseParams(StageParams):
    """What the base model's row reads (the ``continual-base`` stage's key)."""

    model: str
    tasks: list[dict[str, Any]]
    eval_size: int
    eval_max_new_tokens: int
    probes: list[dict[str, Any]] = field(default_factory=list)
    task_common: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class SequenceParams(BaseParams):
    """What one (arm, seed) sequence reads (the ``continual-sequence`` stage's key): the base row's parameters, the
    arm's spec (not its label), the adapter, the training settings and the seed."""

    arm: dict[str, Any]
    lora: dict[str, Any]
    train: dict[str, Any]
    seed: int


def study_stages(params: dict[str, Any]) -> tuple[Stage, dict[tuple[str, int], Stage]]:
    """The base model's stage and one sequence stage per (arm label, seed); every arm is validated here."""
    seqs = {}
    for label, arm_spec in params["arms"].items():
        Arm(**arm_spec)
        for seed in range(int(params["seeds"])):
            seqs[(label, seed)] = Stage("continual-sequence", SequenceParams.from_params(params, arm=arm_spec, seed=seed))
    return Stage("continual-base", BaseParams.from_params(params)), seqs


def _study_tasks(p: BaseParams) -> tuple[dict[str, Task], dict[str, Task]]:
    return make_tasks(p.tasks, dict(p.task_common)), make_tasks(p.probes, dict(p.task_common))


def base_stage(p: BaseParams, folder: Any = None) -> dict[str, Any]:
    """The base model's correctness on every task and probe."""
    from rlbook.policy.models import load_policy

    tasks, probes = _study_tasks(p)
    model, tok = load_policy(p.model, lora=None)
    return {"correct": evaluate_tasks(model, tok, {**tasks, **probes}, p.eval_size, p.eval_max_new_tokens)}


def sequence_stage(p: SequenceParams, folder: Any = None) -> dict[str, Any]:
    """One arm and seed through the task sequence (:func:`run_sequence`)."""
    from rlbook.policy.models import load_policy

    tasks, probes = _study_tasks(p)
    return run_sequence(lambda: load_policy(p.model, lora=None), Arm(**p.arm), tasks, probes, lora=p.lora,
                        train=p.train, seed=p.seed, eval_size=p.eval_size, eval_max_new_tokens=p.eval_max_new_tokens)


def run_study(params: dict[str, Any], root: Any, progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Every (arm, seed) sequence of ``params`` and the base model's row, each a cached stage
    (:func:`study_stages`).  Returns ``{"base": {task: [bool]}, "runs": {(arm, seed): run_sequence output},
    "tasks", "probes"}``."""
    base_st, seqs = study_stages(params)
    tasks, probes = _study_tasks(base_st.params)  # type: ignore[arg-type]
    base = base_st.run(root, base_stage)["correct"]
    out: dict[tuple[str, int], Any] = {}
    for (label, seed), st in seqs.items():
        progress(f"{label}, seed {seed}")
        out[(label, seed)] = st.run(root, sequence_stage)
    return {"base": base, "runs": out, "tasks": list(tasks), "probes": list(probes)}


def accuracy_matrix(result: dict[str, Any], base: dict[str, list[bool]], columns: Sequence[str]) -> np.ndarray:
    """Rows: base, then after each stage; columns: ``columns`` (tasks and probes); accuracy of each cell."""
    rows = [base] + [r["correct"] for r in result["rows"]]
    return np.array([[float(np.mean(r[c])) for c in columns] for r in rows])


def _units(method: str, seed: int, task: str, values: Sequence[float]) -> list[dict[str, Any]]:
    return [{"method": method, "seed": seed, "unit": f"{task}:{u}", "value": float(v)} for u, v in enumerate(values)]


def forgetting_tables(study_out: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Per-problem long tables (``method, seed, unit, value``; unit = task:problem) for the claims:

    * ``final_accuracy``: correctness on every trained task after the last stage (mean = AA);
    * ``backward_transfer``: for every task but the last, final minus right-after-its-own-stage correctness
      (mean = BWT; sequential arms only);
    * ``probe_change``: probe correctness after the sequence minus the base model's;
    * ``stage_gain``: each stage's own task, after minus before the stage (did the stage learn at all?)."""
    base, names, probes = study_out["base"], study_out["tasks"], study_out["probes"]
    out: dict[str, list[dict[str, Any]]] = {"final_accuracy": [], "backward_transfer": [], "probe_change": [],
                                            "stage_gain": []}
    for (arm, seed), res in study_out["runs"].items():
        rows = [r["correct"] for r in res["rows"]]
        final = rows[-1]
        for t in names:
            out["final_accuracy"] += _units(arm, seed, t, final[t])
        for p in probes:
            out["probe_change"] += _units(arm, seed, p, np.subtract(final[p], base[p], dtype=float))
        if len(rows) == len(names):  # sequential: one row per task
            for j, t in enumerate(names):
                before = base[t] if j == 0 else rows[j - 1][t]
                out["stage_gain"] += _units(arm, seed, t, np.subtract(rows[j][t], before, dtype=float))
                if j < len(names) - 1:
                    out["backward_transfer"] += _units(arm, seed, t, np.subtract(final[t], rows[j][t], dtype=float))
    return out


def metrics_table(study_out: dict[str, Any]) -> list[dict[str, Any]]:
    """AA, BWT and FM (:func:`cl_metrics`) of every sequential (arm, seed) on the trained tasks."""
    rows = []
    names = study_out["tasks"]
    for (arm, seed), res in study_out["runs"].items():
        if len(res["rows"]) != len(names):
            continue
        rows.append({"method": arm, "seed": seed, **cl_metrics(accuracy_matrix(res, study_out["base"], names))})
    return rows


def mean_matrices(study_out: dict[str, Any]) -> dict[str, Any]:
    """Per arm, the accuracy matrix averaged over seeds as a DataFrame: rows "base" and "after <stage>",
    columns the tasks then the probes."""
    import pandas as pd

    cols = list(study_out["tasks"]) + list(study_out["probes"])
    by_arm: dict[str, list[np.ndarray]] = {}
    labels: dict[str, list[str]] = {}
    for (arm, _), res in study_out["runs"].items():
        by_arm.setdefault(arm, []).append(accuracy_matrix(res, study_out["base"], cols))
        labels[arm] = ["base"] + [f"after {r['after']}" for r in res["rows"]]
    return {arm: pd.DataFrame(np.mean(ms, axis=0), index=labels[arm], columns=cols) for arm, ms in by_arm.items()}


def stage_table(study_out: dict[str, Any]) -> list[dict[str, Any]]:
    """One record per (arm, seed, stage): what the stage measured (training metrics, RIF's kept share, time)."""
    return [{"arm": arm, "seed": seed, **info} for (arm, seed), res in study_out["runs"].items()
            for info in res["stages"]]


def zero_advantage_table(study_out: dict[str, Any]) -> list[dict[str, Any]]:
    """Per GRPO (arm, seed): the share of sampled groups whose advantages were all zero, averaged over stages
    (rollouts that cost generation but give no gradient)."""
    rows = []
    for (arm, seed), res in study_out["runs"].items():
        vals = [i["zero_adv_group_frac"] for i in res["stages"] if i.get("kind") != "sft"]
        if vals:
            rows.append({"method": arm, "seed": seed, "value": float(np.mean(vals))})
    return rows
