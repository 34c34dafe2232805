"""Training runs as cached artifacts: multi-seed sweeps whose runs are trained once and shared.

A :class:`RunSpec` is everything that determines a training run except its seed: the model, the task,
the LoRA settings, the trainer config and the evaluation settings.  ``spec.key(seed)`` is the sha256 of
the canonical JSON of the *resolved* config (dataclass defaults filled in, ``train.seed = seed``) and of
the training code's version (:func:`rlbook.cache.code_version`: the source of the training path and the
versions of torch, transformers, peft, reasoning-gym); the label is not part of it, so two notebooks that
train the same baseline share one cached run, and a change to the training code is never hidden by a run
made with the old code (``rlbook cache`` lists such stale entries, ``rlbook cache --prune`` deletes them).

Cache layout (``cache_root()``: ``$RLBOOK_RUNS_CACHE``, else ``<outputs>/_cache/runs``)::

    <key>/config.json           the resolved config and code version (what the key hashes), and the first label
    <key>/metrics.csv           the trainer's per-step metrics
    <key>/eval.json             base and final held-out greedy eval: accuracy, lengths, completions
    <key>/adapter.safetensors   the final LoRA weights (peft state dict)
    <key>/DONE                  written last, atomically: only a folder with DONE is a finished run
    base-<hash>/eval.json       the base model's eval, shared by every run of the same model/task/eval

A folder without ``DONE`` (a crash, Ctrl-C) is never read as finished: it resumes from its newest checkpoint
when it has one, else it is wiped and retrained.

In a notebook::

    res = experiments.compare_methods({"GRPO": "grpo", "BNPO": "bnpo"}, base, seeds=3, cache=cache_root(run))
    res.metrics   # per-step metrics, columns method, seed, step, samples, ...
    res.final     # one row per (method, seed): base/final accuracy, response lengths, timing
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

DONE = "DONE"
NOT_IN_KEY = ("checkpoint_every",)  # train settings that do not change a run's result
ModelFactory = Callable[[], tuple[Any, Any]]  # () -> (base model without adapter, tokenizer)

# Method presets live in rlbook.presets (each quoting its paper's settings); re-exported here.
from rlbook.cache import code_version  # noqa: E402
from rlbook.presets import METHODS, method_train  # noqa: E402, F401  (re-exported)

# ---------------------------------------------------------------------------------------- specs


def _canonical(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)


def _sha(data: Any) -> str:
    return hashlib.sha256(_canonical(data).encode()).hexdigest()


@dataclass
class RunSpec:
    """One training configuration (all but the seed).  ``eval_size`` / ``eval_max_new_tokens``: the held-out
    greedy evaluation at the end (default: ``task.eval_size`` problems, the training ``max_new_tokens``)."""

    label: str
    train: dict[str, Any] = field(default_factory=dict)
    task: dict[str, Any] = field(default_factory=dict)
    lora: dict[str, Any] = field(default_factory=lambda: {"r": 16, "alpha": 32})
    model: str = "smollm2-135m-instruct"
    eval_size: int | None = None
    eval_max_new_tokens: int | None = None

    def resolved(self, seed: int) -> dict[str, Any]:
        """The full config of this spec's run with ``seed``: every default filled in (what the key hashes)."""
        from rlbook import components
        from rlbook.config import TrainConfig, build
        from rlbook.models import LoraConfig
        from rlbook.tasks import TaskSpec

        built = build(TrainConfig, {**self.train, "seed": int(seed)}, "train")
        components.check(built)
        train = built.to_dict()
        task = dataclasses.asdict(build(TaskSpec, dict(self.task), "task"))
        lora = dataclasses.asdict(build(LoraConfig, dict(self.lora), "lora"))
        ev = {"size": int(self.eval_size or task["eval_size"]),
              "max_new_tokens": int(self.eval_max_new_tokens or train["max_new_tokens"])}
        return {"model": self.model, "task": task, "lora": lora, "train": train, "eval": ev}

    def key(self, seed: int) -> str:
        """Content address of the run: sha256 of the canonical JSON of :meth:`resolved` and the training code's
        version (:func:`rlbook.cache.code_version`; 24 hex digits), leaving out settings that do not change the
        result (:data:`NOT_IN_KEY`)."""
        cfg = self.resolved(seed)
        cfg["train"] = {k: v for k, v in cfg["train"].items() if k not in NOT_IN_KEY}
        return _sha({**cfg, "code": code_version()})[:24]

    def base_key(self) -> str:
        """Address of the base model's eval (model, task and eval settings, and the code)."""
        r = self.resolved(0)
        return "base-" + _sha({"model": r["model"], "task": r["task"], "eval": r["eval"], "code": code_version()})[:16]


# ---------------------------------------------------------------------------------------- cache


def cache_root(run: Any = None) -> Path:
    """``$RLBOOK_RUNS_CACHE``; else ``<outputs>/_cache/runs`` next to ``run``'s notebook folder
    (``outputs/<nb>/<id>/`` -> ``outputs/_cache/runs``); else ``<repo>/outputs/_cache/runs``."""
    if os.environ.get("RLBOOK_RUNS_CACHE"):
        return Path(os.environ["RLBOOK_RUNS_CACHE"]).expanduser().resolve()
    if run is not None:
        return Path(getattr(run, "dir", run)).resolve().parent.parent / "_cache" / "runs"
    from rlbook.params import find_root

    return find_root() / "outputs" / "_cache" / "runs"


def is_done(folder: Path) -> bool:
    """A cached run is finished only when its ``DONE`` marker exists (written last)."""
    return (Path(folder) / DONE).is_file()


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _write_json(path: Path, data: Any) -> None:
    from rlbook.runs import plain

    _write_text_atomic(path, json.dumps(plain(data), indent=1))


# ---------------------------------------------------------------------------------------- results


@dataclass
class SweepResult:
    """What :func:`sweep` returns.

    * ``metrics``: per-step trainer metrics of every run, with columns ``method``, ``seed``, ``step``,
      ``samples`` (cumulative completions generated) and ``key``;
    * ``final``: one row per (method, seed): ``base_accuracy``, ``final_accuracy``, ``accuracy_gain``,
      ``final_response_length``, ``final_length_correct`` / ``final_length_wrong``, ``train_seconds``,
      ``seconds_per_step``, ``key``, ``cached``;
    * ``evals``: ``{(method, seed): eval.json}`` (completions included); ``folders``: ``{(method, seed): Path}``.
    """

    metrics: pd.DataFrame
    final: pd.DataFrame
    evals: dict[tuple[str, int], dict[str, Any]]
    folders: dict[tuple[str, int], Path]
    trained: int = 0
    reused: int = 0

    @property
    def methods(self) -> list[str]:
        return list(dict.fromkeys(self.final["method"]))

    def per_seed(self, metric: str, agg: str | Callable[[pd.Series], float] = "mean",
                 last: int | None = None) -> pd.DataFrame:
        """One value per (method, seed) of a per-step ``metric`` (``agg`` over steps, or over the ``last`` steps);
        a wide table, one column per method, indexed by seed (NaN-safe)."""
        df = self.metrics if last is None else self.metrics[self.metrics["step"] > self.metrics["step"].max() - last]
        out = df.groupby(["method", "seed"], sort=False)[metric].agg(agg).unstack("method")
        return out[[m for m in self.methods if m in out.columns]]

    def final_wide(self, metric: str = "final_accuracy") -> pd.DataFrame:
        """``final[metric]`` as a table indexed by seed with one column per method."""
        out = self.final.pivot(index="seed", columns="method", values=metric)
        return out[[m for m in self.methods if m in out.columns]]


# ---------------------------------------------------------------------------------------- eval


def evaluate(trainer: Any, n: int, max_new_tokens: int) -> dict[str, Any]:
    """Greedy held-out eval of the first ``n`` problems with per-problem detail (accuracy, mean lengths of all,
    correct and wrong completions; per problem: correct, length, formatted, truncated, completion): the trainer's
    own evaluation, :func:`rlbook.trainer.held_out_eval`.  Leaves the RNG untouched."""
    return trainer.evaluate(n, max_new_tokens)


# ---------------------------------------------------------------------------------------- sweep


def default_model_factory(spec: RunSpec) -> ModelFactory:
    from rlbook.models import load_policy

    return lambda: load_policy(spec.model, lora=None)


@contextlib.contextmanager
def _adapter(base: Any, lora: dict[str, Any], seed: int) -> Any:
    """A fresh LoRA adapter on ``base`` for one run; removed again (``unload``) however the run ends."""
    from rlbook.models import wrap_lora

    model = wrap_lora(base, lora, seed=seed)
    try:
        yield model
    finally:
        if model is not base and hasattr(model, "unload"):
            model.unload()


def _train_one(spec: RunSpec, seed: int, folder: Path, base: Any, tok: Any, base_eval: dict[str, Any],
               on_step: Callable[[dict[str, Any]], None]) -> None:
    """Train one run into ``folder`` and mark it DONE.

    A folder left without DONE is resumed from its newest checkpoint (``rlbook.checkpoint``, written every
    ``train.checkpoint_every`` steps) when it has one, else wiped and trained from scratch.
    """
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    from rlbook import checkpoint
    from rlbook.tasks import make_task
    from rlbook.trainer import Trainer

    cfg = spec.resolved(seed)
    ckpt = folder / "checkpoints"
    if folder.exists() and checkpoint.latest(ckpt) is None:
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _write_json(folder / "config.json", {"label": spec.label, "seed": seed, "code": code_version(), **cfg})
    task = make_task(cfg["task"])
    with _adapter(base, cfg["lora"], seed) as model:
        trainer = Trainer(model, tok, task, cfg["train"], metrics_path=folder / "metrics.csv", progress=False)
        plain_step = trainer.step

        def step_and_report() -> dict[str, Any]:
            m = plain_step()
            on_step(m)
            return m

        trainer.step = step_and_report  # type: ignore[method-assign]  # fit() runs the steps, we tick the bar
        trainer.fit(checkpoint_dir=ckpt)
        final = evaluate(trainer, cfg["eval"]["size"], cfg["eval"]["max_new_tokens"])
        state = {k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(model).items()}
        save_file(state, str(folder / "adapter.safetensors"))
    _write_json(folder / "eval.json", {"base": base_eval, "final": final,
                                       "resumed_from_step": trainer.resumed_from_step})
    _write_text_atomic(folder / DONE, time.strftime("%Y-%m-%dT%H:%M:%S"))
    shutil.rmtree(ckpt, ignore_errors=True)  # the adapter above is the run's artifact; checkpoints were for resuming


def _base_eval(spec: RunSpec, root: Path, base: Any, tok: Any, force: bool) -> dict[str, Any]:
    from rlbook.tasks import make_task
    from rlbook.trainer import Trainer

    folder = root / spec.base_key()
    if is_done(folder) and not force:
        return json.loads((folder / "eval.json").read_text())
    cfg = spec.resolved(0)
    folder.mkdir(parents=True, exist_ok=True)
    with _adapter(base, cfg["lora"], 0) as model:  # a fresh adapter (B = 0) is the base model
        trainer = Trainer(model, tok, make_task(cfg["task"]), cfg["train"], progress=False)
        out = evaluate(trainer, cfg["eval"]["size"], cfg["eval"]["max_new_tokens"])
    _write_json(folder / "config.json", {"label": "base eval", "code": code_version(), **cfg})
    _write_json(folder / "eval.json", out)
    _write_text_atomic(folder / DONE, time.strftime("%Y-%m-%dT%H:%M:%S"))
    return json.loads((folder / "eval.json").read_text())


def _seeds(seeds: int | Iterable[int]) -> list[int]:
    return list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]


def sweep(
    specs: Sequence[RunSpec],
    seeds: int | Iterable[int],
    cache: str | Path | None = None,
    model_factory: ModelFactory | None = None,
    force: bool = False,
    progress: bool = True,
) -> SweepResult:
    """Run every (spec, seed) once; reuse finished runs from the cache.

    ``seeds``: a count (seeds 0..n-1) or a list.  ``model_factory() -> (base model, tokenizer)`` is called
    once, only when something must be trained, and each run wraps a fresh LoRA adapter around that base
    (unloaded after the run, so nothing leaks between runs).  The progress bar counts training steps of
    the runs still to train, so its time-left estimate is the sweep's.  ``force=True`` retrains everything.
    """
    from tqdm.auto import tqdm

    labels = [s.label for s in specs]
    if len(set(labels)) != len(labels):
        raise ValueError(f"method labels must be unique, got {labels}")
    root = Path(cache) if cache is not None else cache_root()
    root.mkdir(parents=True, exist_ok=True)
    pairs = [(spec, seed) for spec in specs for seed in _seeds(seeds)]
    todo = [(s, sd) for s, sd in pairs if force or not is_done(root / s.key(sd))]
    base_keys = {s.base_key() for s in specs}
    need_model = bool(todo) or force or any(not is_done(root / k) for k in base_keys)
    base = tok = None
    if need_model:
        base, tok = (model_factory or default_model_factory(specs[0]))()
    base_evals: dict[str, dict[str, Any]] = {}
    for spec in specs:
        if spec.base_key() not in base_evals:
            base_evals[spec.base_key()] = _base_eval(spec, root, base, tok, force) if need_model else \
                json.loads((root / spec.base_key() / "eval.json").read_text())
    total = sum(s.resolved(sd)["train"]["steps"] for s, sd in todo)
    bar = tqdm(total=total, desc=f"sweep: {len(todo)} to train, {len(pairs) - len(todo)} cached",
               unit="step", disable=not progress or total == 0)
    trained: set[str] = set()
    try:
        for i, (spec, seed) in enumerate(todo, 1):
            bar.set_description(f"run {i}/{len(todo)}: {spec.label} seed {seed}")

            def on_step(m: dict[str, Any]) -> None:
                bar.update(1)
                bar.set_postfix(acc=f"{m['accuracy']:.2f}", len=f"{m['response_length']:.0f}", s=f"{m['step_s']:.1f}")

            _train_one(spec, seed, root / spec.key(seed), base, tok, base_evals[spec.base_key()], on_step)
            trained.add(spec.key(seed))
    finally:
        bar.close()
    return collect(specs, seeds, root, trained=trained)


def collect(specs: Sequence[RunSpec], seeds: int | Iterable[int], cache: str | Path,
            trained: Iterable[str] = ()) -> SweepResult:
    """Read finished runs back from the cache (raises if one is not DONE)."""
    root, trained = Path(cache), set(trained)
    frames, rows, evals, folders = [], [], {}, {}
    for spec in specs:
        for seed in _seeds(seeds):
            folder = root / spec.key(seed)
            if not is_done(folder):
                raise FileNotFoundError(f"{spec.label} seed {seed}: {folder} is not a finished run")
            cfg = spec.resolved(seed)["train"]
            m = pd.read_csv(folder / "metrics.csv")
            samples = m["sampled_groups"] if "sampled_groups" in m else cfg["prompts_per_step"]
            m.insert(0, "seed", seed)
            m.insert(0, "method", spec.label)
            # completions generated so far (uneven groups: what was generated, not slots), and their tokens
            m["samples"] = m["gen_rollouts"].cumsum() if "gen_rollouts" in m else (samples * cfg["group_size"]).cumsum()
            m["tokens"] = m["gen_tokens"].cumsum()
            m["key"] = folder.name
            if "adv_std" in m:
                m["adv_var"] = m["adv_std"] ** 2
            frames.append(m)
            ev = json.loads((folder / "eval.json").read_text())
            b, f = ev["base"], ev["final"]
            rows.append({
                "method": spec.label, "seed": seed,
                "base_accuracy": b["accuracy"], "final_accuracy": f["accuracy"],
                "accuracy_gain": f["accuracy"] - b["accuracy"],
                "base_response_length": b["response_length"], "final_response_length": f["response_length"],
                "final_length_correct": f.get("length_correct"), "final_length_wrong": f.get("length_wrong"),
                "train_seconds": float(m["step_s"].sum()), "seconds_per_step": float(m["step_s"].mean()),
                "steps": len(m), "samples": float(m["samples"].iloc[-1]) if len(m) else 0.0,
                "key": folder.name, "cached": folder.name not in trained,
            })
            evals[(spec.label, seed)] = ev
            folders[(spec.label, seed)] = folder
    final = pd.DataFrame(rows)
    metrics = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    n_new = int((~final["cached"]).sum()) if len(final) else 0
    return SweepResult(metrics, final, evals, folders, trained=n_new, reused=len(final) - n_new)


# ---------------------------------------------------------------------------------------- the helper notebooks use


def make_specs(methods: Mapping[str, str | Mapping[str, Any]] | Sequence[str], base: Mapping[str, Any]) -> list[RunSpec]:
    """RunSpecs from ``{label: method}`` (a METHODS name or overrides with ``preset``) or a list of names,
    on top of ``base`` = ``{"model", "task", "lora", "train", "eval_size"?, "eval_max_new_tokens"?}``.  Phases
    listed in ``base["train"]`` (a measurement such as ``credit_audit``) run in every method, after the method's
    own phases."""
    if not isinstance(methods, Mapping):
        methods = {name: name for name in methods}
    specs = []
    for label, method in methods.items():
        overrides = method_train(method)
        train = {**copy.deepcopy(dict(base.get("train", {}))), **overrides}
        if "phases" in overrides and base.get("train", {}).get("phases"):  # the method's phases, then the base's
            train["phases"] = list(overrides["phases"]) + copy.deepcopy(list(base["train"]["phases"]))
        train.pop("seed", None)
        specs.append(RunSpec(label=str(label), train=train, task=dict(base.get("task", {})),
                             lora=dict(base.get("lora", {"r": 16, "alpha": 32})),
                             model=base.get("model", "smollm2-135m-instruct"),
                             eval_size=base.get("eval_size"), eval_max_new_tokens=base.get("eval_max_new_tokens")))
    return specs


def compare_methods(
    methods: Mapping[str, str | Mapping[str, Any]] | Sequence[str],
    base: Mapping[str, Any],
    seeds: int | Iterable[int],
    cache: str | Path | None = None,
    **sweep_kwargs: Any,
) -> SweepResult:
    """:func:`make_specs` + :func:`sweep`: the one call a method notebook makes."""
    return sweep(make_specs(methods, base), seeds, cache=cache, **sweep_kwargs)


def describe(specs: Sequence[RunSpec], keys: Sequence[str] = ("estimator", "loss", "aggregation", "eps_low",
             "eps_high", "filters", "inner_epochs", "estimator_kwargs", "loss_kwargs", "rewards")) -> pd.DataFrame:
    """A table of what differs between the methods' trainer settings (one row per method)."""
    rows = []
    for s in specs:
        t = s.resolved(0)["train"]
        rows.append({"method": s.label, **{k: t[k] if not isinstance(t[k], (dict, list)) else _canonical(t[k])
                                           for k in keys}})
    df = pd.DataFrame(rows).set_index("method")
    varying = [c for c in df.columns if df[c].nunique() > 1]
    return df[varying] if varying else df
