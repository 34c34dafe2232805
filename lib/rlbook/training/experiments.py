"""Training runs as cached artifacts: multi-seed sweeps whose runs are trained once and shared.

A :class:`RunSpec` is everything that determines a training run except its seed: the model, the task,
the LoRA settings, the trainer config and the evaluation settings.  ``spec.key(seed)`` is the sha256 of
the canonical JSON of the *resolved* config (dataclass defaults filled in, ``train.seed = seed``) and of
the training code's version (:func:`rlbook.core.cache.code_version`: the source of the training path and the
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

    res = experiments.sweep(experiments.make_specs({"GRPO": "grpo", "BNPO": "bnpo"}, base), 3, cache=cache_root(run))
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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

NOT_IN_KEY = ("checkpoint_every",)  # train settings that do not change a run's result
# the sweep bar counts runs in fractions (a run is done by its step cap or its token budget): two decimals, no "it"
_RUN_BAR = "{l_bar}{bar}| {n:.2f}/{total_fmt} runs [{elapsed}<{remaining}{postfix}]"
ModelFactory = Callable[[], tuple[Any, Any]]  # () -> (base model without adapter, tokenizer)

# Method presets live in rlbook.mechanisms.presets (each quoting its paper's settings); re-exported here.
from rlbook.core.cache import DONE, code_version, is_done, mark_done, write_text_atomic  # noqa: E402, F401  (DONE, is_done re-exported)
from rlbook.mechanisms.presets import METHODS, method_train  # noqa: E402, F401  (re-exported)

# ---------------------------------------------------------------------------------------- specs


def _canonical(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)


def _sha(data: Any) -> str:
    return hashlib.sha256(_canonical(data).encode()).hexdigest()


SPEC_KEYS = ("model", "task", "lora", "train", "eval_size", "eval_max_new_tokens", "warm_start")  # a method table's base


@dataclass(frozen=True)
class RunSpec:
    """One training configuration (all but the seed).  ``eval_size`` / ``eval_max_new_tokens``: the held-out
    greedy evaluation at the end (default: ``task.eval_size`` problems, the training ``max_new_tokens``).
    ``warm_start``: the run starts from the base model after a short SFT on gold answers (:mod:`rlbook.training.warmstart`;
    None or ``steps: 0``: the base model, and then the key is the one a spec without it had).

    A spec is resolved and validated once, when it is made (every default filled in, every mechanism name and
    hyper-parameter checked against its registry, ``train.group_size`` set or checked from the sampler's widest
    group: :func:`rlbook.mechanisms.sampling.group_size`); a bad value is a ``ParamError`` there, before any compute.  Its
    runs read that resolution: :meth:`train_config` is the trainer's config object (checked, not checked again),
    :meth:`resolved` the plain config the cache key hashes.  Make a new spec to change one."""

    label: str
    train: dict[str, Any] = field(default_factory=dict)
    task: dict[str, Any] = field(default_factory=dict)
    lora: dict[str, Any] = field(default_factory=lambda: {"r": 16, "alpha": 32})
    model: str = "smollm2-135m-instruct"
    eval_size: int | None = None
    eval_max_new_tokens: int | None = None
    warm_start: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        from rlbook.core.config import build
        from rlbook.core.errors import ParamError
        from rlbook.data.tasks import TaskSpec
        from rlbook.policy.models import LoraConfig
        from rlbook.training import warmstart

        config = _train_config(self.train)
        task = build(TaskSpec, dict(self.task), "task")
        lora = build(LoraConfig, dict(self.lora), "lora")
        plain = {"model": self.model, "task": dataclasses.asdict(task), "lora": dataclasses.asdict(lora),
                 "train": config.to_dict(),
                 "eval": {"size": int(self.eval_size or task.eval_size),
                          "max_new_tokens": int(self.eval_max_new_tokens or config.max_new_tokens)}}
        warm = warmstart.resolve(self.warm_start)
        if warm is not None:
            if lora.r < 1:
                raise ParamError(f"warm_start needs a LoRA adapter to train and merge: lora.r={lora.r} must be >= 1")
            plain["warm_start"] = warm  # only when set: runs without a warm start keep their keys
        for name, value in (("_config", config), ("_task", task), ("_plain", plain)):
            object.__setattr__(self, name, value)  # not fields: never compared, printed or hashed

    def train_config(self, seed: int) -> Any:
        """The trainer's :class:`~rlbook.core.config.TrainConfig` for ``seed``: a copy of the one built and checked
        when the spec was made (the trainer may change its batch knobs on out-of-memory)."""
        cfg = copy.deepcopy(self._config)  # type: ignore[attr-defined]
        cfg.seed = _seed(seed)
        return cfg

    def task_spec(self) -> Any:
        """The :class:`~rlbook.data.tasks.TaskSpec` built when the spec was made (a copy)."""
        return copy.deepcopy(self._task)  # type: ignore[attr-defined]

    def resolved(self, seed: int) -> dict[str, Any]:
        """The full config of this spec's run with ``seed``: every default filled in (what the key hashes)."""
        out = copy.deepcopy(self._plain)  # type: ignore[attr-defined]
        out["train"]["seed"] = _seed(seed)
        return out

    def key(self, seed: int) -> str:
        """Content address of the run: sha256 of the canonical JSON of :meth:`resolved` and the training code's
        version (:func:`rlbook.core.cache.code_version`; 24 hex digits), leaving out settings that do not change the
        result (:data:`NOT_IN_KEY`)."""
        cfg = self.resolved(seed)
        cfg["train"] = {k: v for k, v in cfg["train"].items() if k not in NOT_IN_KEY}
        return _sha({**cfg, "code": code_version()})[:24]

    def base_key(self) -> str:
        """Address of the base model's eval (model, task and eval settings, and the code)."""
        r = self._plain  # type: ignore[attr-defined]
        warm = {"warm_start": r["warm_start"]} if "warm_start" in r else {}
        return "base-" + _sha({"model": r["model"], "task": r["task"], "eval": r["eval"], **warm,
                               "code": code_version()})[:16]

    def start(self) -> tuple[str, dict[str, Any], dict[str, Any], dict[str, Any] | None]:
        """What a run starts from: model, task, LoRA settings and the resolved warm start (None: the base model)."""
        r = self._plain  # type: ignore[attr-defined]
        return r["model"], r["task"], r["lora"], r.get("warm_start")


def _seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        from rlbook.core.errors import ParamError

        raise ParamError(f"seed={seed!r} must be an integer >= 0")
    return int(seed)


def _train_config(train: Mapping[str, Any]) -> Any:
    """``train`` as a checked :class:`~rlbook.core.config.TrainConfig` (seed 0; each run sets its own): built once,
    its mechanisms checked once (:func:`rlbook.mechanisms.components.check`), ``group_size`` set (when None) or checked
    against the widest group the sampler can ask for (:func:`rlbook.mechanisms.sampling.group_size`)."""
    from rlbook.core.config import TrainConfig, build
    from rlbook.core.errors import ParamError
    from rlbook.mechanisms import components, sampling

    values = {k: v for k, v in train.items() if k != "seed"}
    unset = "group_size" in values and values["group_size"] is None
    if unset:
        del values["group_size"]
    cfg = build(TrainConfig, {**values, "seed": 0}, "train")
    components.check(cfg)
    size = sampling.group_size(cfg.sampler, cfg.prompts_per_step, cfg.sampler_kwargs, None if unset else cfg.group_size)
    if size is None:
        raise ParamError(f"train.group_size is unset (null), but sampler {cfg.sampler!r} declares no widest group to "
                         "set it from; give an integer")
    if cfg.rollouts_per_prompt > size:
        raise ParamError(f"train.rollouts_per_prompt={cfg.rollouts_per_prompt} must be <= train.group_size={size} "
                         "(the number of slots of a group)")
    cfg.group_size = size
    return cfg


# ---------------------------------------------------------------------------------------- cache


def cache_root(run: Any = None) -> Path:
    """``$RLBOOK_RUNS_CACHE``; else ``<outputs>/_cache/runs`` next to ``run``'s notebook folder
    (``outputs/<nb>/<id>/`` -> ``outputs/_cache/runs``); else ``<repo>/outputs/_cache/runs``."""
    if os.environ.get("RLBOOK_RUNS_CACHE"):
        return Path(os.environ["RLBOOK_RUNS_CACHE"]).expanduser().resolve()
    if run is not None:
        return Path(getattr(run, "dir", run)).resolve().parent.parent / "_cache" / "runs"
    from rlbook.training.params import find_root

    return find_root() / "outputs" / "_cache" / "runs"


def _write_json(path: Path, data: Any) -> None:
    from rlbook.training.runs import plain

    write_text_atomic(path, json.dumps(plain(data), indent=1))


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


# ---------------------------------------------------------------------------------------- eval


def evaluate(trainer: Any, n: int, max_new_tokens: int) -> dict[str, Any]:
    """Greedy held-out eval of the first ``n`` problems with per-problem detail (accuracy, mean lengths of all,
    correct and wrong completions; per problem: correct, length, formatted, truncated, completion): the trainer's
    own evaluation, :func:`rlbook.training.trainer.held_out_eval`.  Leaves the RNG untouched."""
    return trainer.evaluate(n, max_new_tokens)


def final_eval(trainer: Any, n: int, max_new_tokens: int) -> dict[str, Any]:
    """:func:`evaluate` after ``fit()``; when the last step already evaluated these ``n`` problems at this length
    (``eval_every`` dividing the steps), that evaluation: greedy decoding of the same weights gives the same
    numbers (ngrpo's cpu runs: four evaluations of 1,000 problems took ~18 of a GRPO run's 22 minutes)."""
    done = trainer.step_eval
    if (done is not None and done[0] == trainer.step_count and n == trainer.cfg.eval_size
            and max_new_tokens == trainer.cfg.max_new_tokens):
        return done[1]
    return evaluate(trainer, n, max_new_tokens)


# ---------------------------------------------------------------------------------------- sweep


def default_model_factory(spec: RunSpec, cache: str | Path | None = None) -> ModelFactory:
    """The base model of ``spec``'s runs: the named model, or with ``spec.warm_start`` that model after its
    warm-start SFT (trained once into ``cache``, :func:`rlbook.training.warmstart.warm_model`)."""
    from rlbook.training.warmstart import warm_model

    model, task, lora, warm = spec.start()
    return lambda: warm_model(model, task, lora, warm, cache if cache is not None else cache_root())[:2]


def _start_key(spec: RunSpec) -> str:
    """The base model a spec's runs wrap their adapter around: the model name, or its warm-start stage's key."""
    from rlbook.training import warmstart

    model, task, lora, warm = spec.start()
    return model if warm is None else f"{model}+{warmstart.stage(model, task, lora, warm).key}"


@contextlib.contextmanager
def _adapter(base: Any, lora: dict[str, Any], seed: int) -> Any:
    """A fresh LoRA adapter on ``base`` for one run; removed again (``unload``) however the run ends."""
    from rlbook.policy.models import wrap_lora

    model = wrap_lora(base, lora, seed=seed)
    try:
        yield model
    finally:
        if model is not base and hasattr(model, "unload"):
            model.unload()


def _train_one(spec: RunSpec, seed: int, folder: Path, base: Any, tok: Any, base_eval: dict[str, Any],
               on_step: Callable[[dict[str, Any], float], None]) -> None:
    """Train one run into ``folder`` and mark it DONE; ``on_step(metrics, done_fraction)`` after every step.

    A folder left without DONE is resumed from its newest checkpoint (``rlbook.training.checkpoint``, written every
    ``train.checkpoint_every`` steps) when it has one, else wiped and trained from scratch.
    """
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    from rlbook.data.tasks import make_task
    from rlbook.training import checkpoint
    from rlbook.training.trainer import Trainer

    cfg = spec.resolved(seed)
    ckpt = folder / "checkpoints"
    if folder.exists() and checkpoint.latest(ckpt) is None:
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _write_json(folder / "config.json", {"label": spec.label, "seed": seed, "code": code_version(), **cfg})
    task = make_task(spec.task_spec())
    with _adapter(base, cfg["lora"], seed) as model:
        trainer = Trainer(model, tok, task, spec.train_config(seed), metrics_path=folder / "metrics.csv",
                          progress=False)
        plain_step = trainer.step

        def step_and_report() -> dict[str, Any]:
            m = plain_step()
            on_step(m, trainer.done_fraction())
            return m

        trainer.step = step_and_report  # type: ignore[method-assign]  # fit() runs the steps, we tick the bar
        trainer.fit(checkpoint_dir=ckpt)
        final = final_eval(trainer, cfg["eval"]["size"], cfg["eval"]["max_new_tokens"])
        state = {k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(model).items()}
        save_file(state, str(folder / "adapter.safetensors"))
    _write_json(folder / "eval.json", {"base": base_eval, "final": final,
                                       "resumed_from_step": trainer.resumed_from_step})
    mark_done(folder)
    shutil.rmtree(ckpt, ignore_errors=True)  # the adapter above is the run's artifact; checkpoints were for resuming


def _base_eval(spec: RunSpec, root: Path, base: Any, tok: Any, force: bool) -> dict[str, Any]:
    from rlbook.data.tasks import make_task
    from rlbook.training.trainer import Trainer

    folder = root / spec.base_key()
    if is_done(folder) and not force:
        return json.loads((folder / "eval.json").read_text())
    cfg = spec.resolved(0)
    folder.mkdir(parents=True, exist_ok=True)
    with _adapter(base, cfg["lora"], 0) as model:  # a fresh adapter (B = 0) is the base model
        trainer = Trainer(model, tok, make_task(spec.task_spec()), spec.train_config(0), progress=False)
        out = evaluate(trainer, cfg["eval"]["size"], cfg["eval"]["max_new_tokens"])
    _write_json(folder / "config.json", {"label": "base eval", "code": code_version(), **cfg})
    _write_json(folder / "eval.json", out)
    mark_done(folder)
    return json.loads((folder / "eval.json").read_text())


def check_one_start(specs: Sequence[RunSpec]) -> None:
    """One sweep trains from one base model (the model, or its warm start): raise when ``specs`` name several."""
    starts = {_start_key(s) for s in specs}
    if len(starts) > 1:
        raise ValueError(f"one sweep trains from one base model; these specs start from {len(starts)} different "
                         "models or warm starts: sweep them separately")


def pending(specs: Sequence[RunSpec], seeds: int | Iterable[int], root: Path) -> list[tuple[RunSpec, int]]:
    """The (spec, seed) pairs of a sweep that are not finished in the cache at ``root``, in the sweep's order."""
    return [(s, sd) for s in specs for sd in _seeds(seeds) if not is_done(root / s.key(sd))]


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
    (unloaded after the run, so nothing leaks between runs).  The progress bar counts the runs still to train,
    each advanced by its trainer's :meth:`~rlbook.training.trainer.Trainer.done_fraction` (steps, or generated
    tokens under ``gen_token_budget``), so its time-left estimate is the sweep's training time (held-out
    evaluations are not in it).  ``force=True`` retrains everything.
    """
    from rlbook.core.progress import tqdm

    labels = [s.label for s in specs]
    if len(set(labels)) != len(labels):
        raise ValueError(f"method labels must be unique, got {labels}")
    root = Path(cache) if cache is not None else cache_root()
    root.mkdir(parents=True, exist_ok=True)
    if model_factory is None:
        check_one_start(specs)
    pairs = [(spec, seed) for spec in specs for seed in _seeds(seeds)]
    todo = pairs if force else pending(specs, seeds, root)
    base_keys = {s.base_key() for s in specs}
    need_model = bool(todo) or force or any(not is_done(root / k) for k in base_keys)
    base = tok = None
    if need_model:
        base, tok = (model_factory or default_model_factory(specs[0], root))()
    base_evals: dict[str, dict[str, Any]] = {}
    for spec in specs:
        if spec.base_key() not in base_evals:
            base_evals[spec.base_key()] = _base_eval(spec, root, base, tok, force) if need_model else \
                json.loads((root / spec.base_key() / "eval.json").read_text())
    bar = tqdm(total=len(todo), desc=f"sweep: {len(todo)} to train, {len(pairs) - len(todo)} cached",
               unit="run", disable=not progress or not todo, bar_format=_RUN_BAR)
    trained: set[str] = set()
    try:
        for i, (spec, seed) in enumerate(todo, 1):
            bar.set_description(f"run {i}/{len(todo)}: {spec.label} seed {seed}")

            def on_step(m: dict[str, Any], done: float, i: int = i) -> None:
                bar.update(i - 1 + done - bar.n)
                bar.set_postfix(step=m["step"], acc=f"{m['accuracy']:.2f}", len=f"{m['response_length']:.0f}",
                                s=f"{m['step_s']:.1f}")

            _train_one(spec, seed, root / spec.key(seed), base, tok, base_evals[spec.base_key()], on_step)
            bar.update(i - bar.n)
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


def make_specs(methods: Mapping[str, str | Mapping[str, Any]] | Sequence[str], base: Mapping[str, Any],
               name: str = "methods") -> list[RunSpec]:
    """RunSpecs from ``{label: method}`` (a METHODS name or overrides with ``preset``) or a list of names,
    on top of ``base`` = ``{"model", "task", "lora", "train", "eval_size"?, "eval_max_new_tokens"?}``.  Phases
    listed in ``base["train"]`` (a measurement such as ``credit_audit``) run in every method, after the method's
    own phases.  A method whose sampler declares the widest group it can ask for (Knapsack RL's rollout
    budgets) and that sets no ``group_size`` itself gets that width, not the base's ``group_size``.  Each spec is
    validated as it is made; a bad one is a ``ParamError`` naming ``name[label]``."""
    from rlbook.core.errors import ParamError
    from rlbook.mechanisms import sampling

    if isinstance(methods, str) or not isinstance(methods, (Mapping, list, tuple)):
        raise ParamError(f"{name}={methods!r} must map labels to methods (a preset name or a mapping of settings)")
    if not isinstance(methods, Mapping):
        methods = {str(m): m for m in methods}
    specs = []
    for label, method in methods.items():
        try:
            if not isinstance(method, (str, Mapping)):
                raise ParamError(f"{method!r} must be a preset name or a mapping like {{preset: grpo, ...}}")
            overrides = method_train(method)
            train = {**copy.deepcopy(dict(base.get("train", {}))), **overrides}
            if "phases" in overrides and base.get("train", {}).get("phases"):  # the method's phases, then the base's
                train["phases"] = list(overrides["phases"]) + copy.deepcopy(list(base["train"]["phases"]))
            train.pop("seed", None)
            if "group_size" not in overrides and sampling.declares_width(train.get("sampler", "uniform")):
                train["group_size"] = None  # the plan sets it from the sampler
            specs.append(RunSpec(label=str(label), train=train, task=dict(base.get("task", {})),
                                 lora=dict(base.get("lora", {"r": 16, "alpha": 32})),
                                 model=base.get("model", "smollm2-135m-instruct"),
                                 eval_size=base.get("eval_size"), eval_max_new_tokens=base.get("eval_max_new_tokens"),
                                 warm_start=base.get("warm_start")))
        except ParamError as e:
            raise ParamError(f"{name}[{str(label)!r}]: {e}") from e
    return specs


def is_method_table(key: str) -> bool:
    """A notebook parameter that lists methods to train: ``methods`` or ``<something>_methods``."""
    return key == "methods" or key.endswith("_methods")


def plan(params: Mapping[str, Any]) -> dict[str, list[RunSpec]]:
    """The run plan of a notebook's resolved parameters (:func:`rlbook.training.params.resolve`): every method table
    (:func:`is_method_table`) made into validated RunSpecs on the base of :data:`SPEC_KEYS`, so a bad preset,
    mechanism, hyper-parameter, group width or held-out size the task cannot give fails here, before a run folder
    or a model exists.  ``rlbook run`` and ``rlbook check`` call it; the notebook's sweep makes the same specs from
    the same parameters."""
    from rlbook.core.errors import ParamError
    from rlbook.data.tasks import check_split

    base = {k: params[k] for k in SPEC_KEYS if k in params}
    tables = {key: make_specs(value, base, name=key) for key, value in params.items() if is_method_table(key)}
    checked: set[str] = set()
    for specs in tables.values():
        for s in specs:
            task = s.task_spec()
            if (key := repr(dataclasses.asdict(task))) not in checked:
                checked.add(key)
                check_split(task)
            if (n := s.resolved(0)["eval"]["size"]) > task.eval_size:
                raise ParamError(f"method {s.label!r}: eval_size={n} is more than the task's held-out set "
                                 f"(task.eval_size={task.eval_size}); it can be at most that")
    return tables


DESCRIBE_KEYS = ("estimator", "loss", "aggregation", "eps_low", "eps_high", "filters", "inner_epochs",
                 "estimator_kwargs", "loss_kwargs", "rewards", "sampler", "sampler_kwargs", "group_size",
                 "rollouts_per_prompt", "phases")


def describe(specs: Sequence[RunSpec], keys: Sequence[str] | None = None) -> pd.DataFrame:
    """A table of what differs between the methods' trainer settings (one row per method): every setting of the
    resolved ``train`` config whose value is not the same for all methods (sampler, group size and phases
    included; the seed left out), :data:`DESCRIBE_KEYS` first; when nothing differs, those keys."""
    rows = []
    for s in specs:
        t = s.resolved(0)["train"]
        names = list(keys) if keys is not None else [*DESCRIBE_KEYS, *(k for k in t if k not in DESCRIBE_KEYS)]
        rows.append({"method": s.label, **{k: t[k] if not isinstance(t[k], (dict, list, tuple)) else _canonical(t[k])
                                           for k in names if k in t and k != "seed"}})
    df = pd.DataFrame(rows).set_index("method")
    varying = [c for c in df.columns if df[c].astype(str).nunique() > 1]
    fallback = [c for c in (keys or DESCRIBE_KEYS) if c in df.columns]
    return df[varying] if varying else df[fallback]
