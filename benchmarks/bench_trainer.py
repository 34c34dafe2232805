"""Side-by-side GRPO benchmark: rlbook's ``Trainer`` against TRL's ``GRPOTrainer``, in one process.

Both sides do the same GRPO work on the same model: the embedded SmolLM2-135M-Instruct with the same
fresh LoRA adapter (``rlbook.policy.models.LoraConfig`` defaults), prompts from the same ``rlbook.data.tasks``
split, P prompts x G samples per step, the same max new tokens and temperature, one generate call
for the whole batch, training in micro-batches of the same size, one inner epoch, no KL (no
reference pass), AdamW at the same learning rate.  Each step is timed from the outside; steps
alternate (TRL, rlbook, TRL, rlbook, ...) after one uncounted warm-up step per side, so drifts of a
shared machine hit both sides alike.

Usage::

    python benchmarks/bench_trainer.py --steps 3 --json bench.json
    python benchmarks/bench_trainer.py --only trl --steps 2          # TRL side alone
    python benchmarks/bench_trainer.py --tiny --steps 1 --prompts 2 --group-size 2 \\
        --max-new-tokens 4 --micro-batch 2                            # a random tiny Llama (seconds)

TRL runs its own ``train()`` loop in a worker thread; a callback parks that thread at every step
boundary until the driver lets it run one more step, so the two trainers never run at the same time.
TRL needs the ``bench`` extra (``pip install -e '.[bench]'``); nothing here reaches the network
(``HF_HUB_OFFLINE=1``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

SIDES = ("trl", "rlbook")


class BenchError(RuntimeError):
    """A side could not be built or run; the message says which and why."""


# --------------------------------------------------------------------------------------------------
# configuration


@dataclass
class BenchConfig:
    """The shared GRPO work, and how the benchmark runs it."""

    steps: int = 3  # measured steps per side (after the warm-up)
    warmup: int = 1  # uncounted steps per side
    prompts: int = 8  # P: prompts per step
    group_size: int = 8  # G: samples per prompt
    max_new_tokens: int = 32
    micro_batch: int = 16  # sequences per forward/backward
    temperature: float = 1.0
    lr: float = 2e-4
    seed: int = 0
    task: str = "chain_sum"
    device: str = "cpu"
    tiny: bool = False  # a random tiny Llama instead of the embedded model (tests)
    only: str = "both"  # both | trl | rlbook
    tolerance: float = 0.25  # allowed relative gap in mean generated tokens per step between sides
    threads: int = 0  # torch intra-op threads (0: torch's default)
    skip_zero_advantage: bool = True  # rlbook's default; False trains zero-advantage samples too

    def __post_init__(self) -> None:
        for name in ("steps", "prompts", "max_new_tokens", "micro_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.warmup < 0:
            raise ValueError(f"--warmup must be >= 0, got {self.warmup}")
        if self.group_size < 2:
            raise ValueError(f"--group-size must be >= 2 (GRPO needs a group), got {self.group_size}")
        if self.batch_size % self.micro_batch:
            raise ValueError(
                f"--micro-batch {self.micro_batch} must divide prompts x group size = {self.batch_size} "
                "(TRL accumulates whole micro-batches)"
            )
        if self.only not in ("both", *SIDES):
            raise ValueError(f"--only must be one of both, trl, rlbook; got {self.only!r}")
        if self.temperature <= 0:
            raise ValueError(f"--temperature must be > 0, got {self.temperature}")

    @property
    def batch_size(self) -> int:
        return self.prompts * self.group_size

    @property
    def grad_accum(self) -> int:
        return self.batch_size // self.micro_batch

    @property
    def sides(self) -> tuple[str, ...]:
        return SIDES if self.only == "both" else (self.only,)


def parse_args(argv: Sequence[str] | None = None) -> tuple[BenchConfig, Path | None]:
    d = BenchConfig()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=d.steps, help="measured steps per side")
    p.add_argument("--warmup", type=int, default=d.warmup, help="uncounted warm-up steps per side")
    p.add_argument("--prompts", type=int, default=d.prompts, help="prompts per step (P)")
    p.add_argument("--group-size", type=int, default=d.group_size, help="samples per prompt (G)")
    p.add_argument("--max-new-tokens", type=int, default=d.max_new_tokens)
    p.add_argument("--micro-batch", type=int, default=d.micro_batch, help="sequences per forward/backward")
    p.add_argument("--temperature", type=float, default=d.temperature)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--task", default=d.task, help="reasoning-gym task name (rlbook.data.tasks)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--tiny", action="store_true", help="random tiny Llama instead of the embedded model")
    p.add_argument("--only", choices=("both", *SIDES), default=d.only, help="run one side only")
    p.add_argument("--tolerance", type=float, default=d.tolerance,
                   help="allowed relative gap in mean generated tokens per step between the sides")
    p.add_argument("--no-skip", dest="skip_zero_advantage", action="store_false",
                   help="rlbook trains zero-advantage samples too (default: skips them, gradient-neutral)")
    p.add_argument("--threads", type=int, default=d.threads, help="torch threads (0: default)")
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    a = p.parse_args(argv)
    device = a.device or _auto_device()
    try:
        cfg = BenchConfig(
            steps=a.steps, warmup=a.warmup, prompts=a.prompts, group_size=a.group_size,
            max_new_tokens=a.max_new_tokens, micro_batch=a.micro_batch, temperature=a.temperature, lr=a.lr,
            seed=a.seed, task=a.task, device=device, tiny=a.tiny, only=a.only, tolerance=a.tolerance,
            threads=a.threads, skip_zero_advantage=a.skip_zero_advantage,
        )
    except ValueError as e:
        p.error(str(e))
    return cfg, a.json


def _auto_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


# --------------------------------------------------------------------------------------------------
# per-step records, memory, the same-work check


@dataclass
class StepRecord:
    """One trainer step seen from outside: wall time, token counts, phase times, memory."""

    side: str
    index: int  # 0-based, warm-up steps included
    warmup: bool
    seconds: float
    gen_seqs: int | None = None
    gen_tokens: int | None = None  # completion tokens through the first EOS
    train_seqs: int | None = None
    train_tokens: int | None = None  # completion tokens that entered the loss
    skipped_seqs: int = 0  # zero-advantage samples left out of the training pass (gradient-neutral)
    skipped_tokens: int = 0
    gen_s: float | None = None
    train_s: float | None = None
    peak_mem_mb: float | None = None  # process RSS (CPU) or allocated CUDA memory, peak during the step
    mem_delta_mb: float | None = None  # that peak minus the value when the step began


class MemoryMonitor:
    """Peak memory during a block: CUDA allocator peak, or process RSS sampled every few ms on CPU.

    Both trainers live in one process, so the absolute numbers include the other side's (idle)
    model; ``delta`` (peak minus the value at the start of the block) is the step's own working set.
    """

    def __init__(self, device: str, interval: float = 0.005):
        self.cuda = device.startswith("cuda")
        self.interval = interval
        self._peak = 0
        self._running = False
        self._thread: threading.Thread | None = None
        self._proc: Any = None
        if not self.cuda:
            try:
                import psutil

                self._proc = psutil.Process()
            except ImportError:  # pragma: no cover - psutil comes with accelerate
                self._proc = None

    def _rss(self) -> int:
        if self._proc is not None:
            return int(self._proc.memory_info().rss)
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def _poll(self) -> None:
        while self._running:
            self._peak = max(self._peak, self._rss())
            time.sleep(self.interval)

    @contextmanager
    def measure(self) -> Iterator[dict[str, float]]:
        out: dict[str, float] = {}
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            start = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            yield out
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated()
        else:
            start = self._rss()
            self._peak = start
            self._running = True
            self._thread = threading.Thread(target=self._poll, daemon=True)
            self._thread.start()
            try:
                yield out
            finally:
                self._running = False
                self._thread.join()
            peak = max(self._peak, self._rss())
        out["peak_mb"] = peak / 2**20
        out["delta_mb"] = (peak - start) / 2**20


def check_same_work(records: Sequence[StepRecord], expected_seqs: int, tolerance: float) -> dict[str, Any]:
    """Do both sides do the same work?  Exact checks per step, a tolerance on sampled lengths.

    Exact, on every step of every side: ``expected_seqs`` (P x G) sequences generated, and every
    generated token either trained once (one inner epoch) or skipped because its sample's advantage
    is zero (rlbook's default: such a sample adds exactly nothing to the gradient, see
    tests/test_trainer.py::test_optimized_training_pass_gives_the_same_loss_and_gradients_as_the_plain_one).  Sampled
    completions differ between the sides, so the mean generated tokens per step may differ; the
    relative gap ``|trl - rlbook| / max(trl, rlbook)`` must be within ``tolerance``.
    """
    problems: list[str] = []
    per_side: dict[str, dict[str, Any]] = {}
    for side in SIDES:
        recs = [r for r in records if r.side == side and not r.warmup]
        if not recs:
            continue
        for r in recs:
            tag = f"{side} step {r.index}"
            if r.gen_tokens is None or r.train_tokens is None:
                problems.append(f"{tag}: token counts not reported")
                continue
            if r.gen_seqs is not None and r.gen_seqs != expected_seqs:
                problems.append(f"{tag}: generated {r.gen_seqs} sequences, expected {expected_seqs}")
            if r.train_seqs is not None and r.train_seqs + r.skipped_seqs != expected_seqs:
                problems.append(f"{tag}: trained {r.train_seqs} + skipped {r.skipped_seqs} sequences, "
                                f"expected {expected_seqs}")
            if r.train_tokens + r.skipped_tokens != r.gen_tokens:
                problems.append(f"{tag}: trained {r.train_tokens} + skipped {r.skipped_tokens} tokens but "
                                f"generated {r.gen_tokens}")
        gen = [r.gen_tokens for r in recs if r.gen_tokens is not None]
        trained = [r.train_tokens for r in recs if r.train_tokens is not None]
        per_side[side] = {
            "gen_tokens_per_step": gen,
            "train_tokens_per_step": trained,
            "mean_gen_tokens_per_step": statistics.fmean(gen) if gen else None,
            "mean_train_tokens_per_step": statistics.fmean(trained) if trained else None,
        }
    gap = None
    means = [per_side.get(s, {}).get("mean_gen_tokens_per_step") for s in SIDES]
    if all(m is not None for m in means):
        a, b = means
        gap = abs(a - b) / max(a, b, 1e-9)
        if gap > tolerance:
            problems.append(
                f"mean generated tokens per step differ by {gap:.0%} (trl {a:.1f}, rlbook {b:.1f}) "
                f"> tolerance {tolerance:.0%}"
            )
    return {"same_work": not problems, "problems": problems, "relative_gap": gap, "tolerance": tolerance,
            "expected_seqs_per_step": expected_seqs, **per_side}


def summarize(records: Sequence[StepRecord], side: str) -> dict[str, Any] | None:
    """Median s/step, generation and training tokens/s (summed over measured steps), peak memory."""
    recs = [r for r in records if r.side == side and not r.warmup]
    if not recs:
        return None

    def rate(tokens: list[int | None], secs: list[float | None]) -> float | None:
        if any(t is None for t in tokens) or any(s is None for s in secs):
            return None
        total = sum(s for s in secs if s is not None)
        return sum(t for t in tokens if t is not None) / total if total > 0 else None

    def peak(vals: list[float | None]) -> float | None:
        known = [v for v in vals if v is not None]
        return max(known) if known else None

    return {
        "steps": len(recs),
        "s_per_step_median": statistics.median(r.seconds for r in recs),
        "s_per_step_all": [r.seconds for r in recs],
        "gen_s_median": _median_or_none([r.gen_s for r in recs]),
        "train_s_median": _median_or_none([r.train_s for r in recs]),
        "gen_tokens_per_s": rate([r.gen_tokens for r in recs], [r.gen_s for r in recs]),
        "train_tokens_per_s": rate([r.train_tokens for r in recs], [r.train_s for r in recs]),
        "mean_gen_tokens_per_step": _mean_or_none([r.gen_tokens for r in recs]),
        "mean_train_tokens_per_step": _mean_or_none([r.train_tokens for r in recs]),
        "peak_mem_mb": peak([r.peak_mem_mb for r in recs]),
        "peak_mem_delta_mb": peak([r.mem_delta_mb for r in recs]),
    }


def _median_or_none(vals: list[float | None]) -> float | None:
    known = [v for v in vals if v is not None]
    return statistics.median(known) if known else None


def _mean_or_none(vals: list[int | None]) -> float | None:
    known = [v for v in vals if v is not None]
    return statistics.fmean(known) if known else None


# --------------------------------------------------------------------------------------------------
# models and task (shared by both sides)


def load_model(cfg: BenchConfig, lora: bool) -> tuple[Any, Any]:
    """(model, tokenizer): the embedded model, or with ``--tiny`` a random tiny Llama on its tokenizer.

    ``lora=True`` attaches rlbook's default LoRA adapter (rlbook side); ``lora=False`` returns the
    plain model, to which TRL attaches the equivalent peft ``LoraConfig`` itself.
    """
    from rlbook.policy import models

    if not cfg.tiny:
        return models.load_policy(models.EMBEDDED, lora=models.LoraConfig() if lora else None,
                                  device=cfg.device, seed=cfg.seed)
    tok = models.load_tokenizer(models.EMBEDDED)
    model = models.tiny_llama(vocab_size=len(tok), hidden=32, layers=2, heads=4, seed=cfg.seed)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.to(cfg.device)
    if lora:
        model = models.wrap_lora(model, models.LoraConfig(), seed=cfg.seed)
    return model, tok


def load_task(cfg: BenchConfig) -> Any:
    """The quickstart's task (params/quickstart.yaml): two-term one-digit sums for chain_sum.

    The model solves these about a quarter of the time, so most groups are mixed and both trainers
    do real learning work (on reasoning-gym's default chain_sum config, up to six 4-digit terms,
    nearly every group is all-wrong and has zero advantage).
    """
    from rlbook.data.tasks import TaskSpec, make_task

    config = QUICKSTART_TASK_CONFIG if cfg.task == "chain_sum" else {}
    return make_task(TaskSpec(name=cfg.task, config=config, seed=cfg.seed, train_size=200 if cfg.tiny else 1000,
                              eval_size=20 if cfg.tiny else 100))


QUICKSTART_TASK_CONFIG = {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1}


def count_trainable(model: Any) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


# --------------------------------------------------------------------------------------------------
# rlbook side


def build_rlbook(cfg: BenchConfig, task: Any) -> tuple[Any, Any]:
    """(rlbook's Trainer with the shared config, its policy model); README.md explains each field."""
    try:
        from rlbook.training.trainer import Trainer
    except ImportError as e:
        raise BenchError(
            f"rlbook side unavailable: cannot import rlbook.training.trainer.Trainer ({e}); run with --only trl"
        ) from e
    from rlbook.core.config import TrainConfig

    model, tok = load_model(cfg, lora=True)
    tcfg = TrainConfig(
        seed=cfg.seed,
        steps=cfg.warmup + cfg.steps,
        prompts_per_step=cfg.prompts,
        group_size=cfg.group_size,
        max_new_tokens=cfg.max_new_tokens,
        temperature=cfg.temperature,
        top_p=1.0,
        lr=cfg.lr,
        weight_decay=0.0,
        betas=(0.9, 0.99),
        max_grad_norm=1.0,
        micro_batch_size=cfg.micro_batch,
        gen_batch_size=cfg.batch_size,  # one generate() call for the whole batch, as TRL does
        inner_epochs=1,
        estimator="grpo",
        loss="ppo_clip",
        eps_low=0.2,
        eps_high=0.2,
        aggregation="seq_mean_token_mean",
        kl_coef=0.0,
        rewards=[{"name": "correct", "weight": 1.0}],
        eval_every=0,
        # Zero-advantage samples add nothing to the gradient; rlbook skips their forward/backward by
        # default (counted as skipped in the work check); --no-skip trains them like TRL does.
        skip_zero_advantage=cfg.skip_zero_advantage,
    )
    return Trainer(model, tok, task, tcfg, metrics_path=None), model


# StepRecord field <- key of rlbook's ``Trainer.step()`` metrics.  Generated sequences are counted by
# wrapping ``Trainer.generate`` (see RlbookSide), not read from the metrics.
_RLBOOK_KEYS: dict[str, str] = {
    "gen_tokens": "gen_tokens",
    "train_tokens": "trained_tokens",
    "train_seqs": "trained_seqs",
    "gen_s": "gen_s",
    "train_s": "train_s",
    "skipped_seqs": "skipped_seqs",
    "skipped_tokens": "skipped_tokens",
}


# ==================================================================================================
# run_rlbook_step: the one place that drives rlbook's Trainer API
def run_rlbook_step(trainer: Any, device: str) -> dict[str, Any]:
    """ONE rlbook step through the public API: ``Trainer.step() -> dict`` (timed from outside).

    Returns the fields of :class:`StepRecord` that the trainer reports (token counts, phase times).
    """
    _sync(device)
    t0 = time.perf_counter()
    metrics = trainer.step()
    _sync(device)
    seconds = time.perf_counter() - t0
    out: dict[str, Any] = {"seconds": seconds}
    for field_name, key in _RLBOOK_KEYS.items():
        val = metrics.get(key)
        val = val.item() if hasattr(val, "item") else val
        out[field_name] = None if val is None else (int(val) if field_name.endswith(("tokens", "seqs")) else float(val))
    missing = [k for f, k in _RLBOOK_KEYS.items() if out[f] is None]
    if missing:
        print(f"[bench] warning: rlbook step metrics lack {missing}; keys: {sorted(metrics)}", file=sys.stderr)
    return out


class RlbookSide:
    name = "rlbook"

    def __init__(self, cfg: BenchConfig, task: Any):
        self.cfg = cfg
        self.trainer, model = build_rlbook(cfg, task)
        self.trainable = count_trainable(model)
        self._gen_seqs = 0
        generate = self.trainer.generate

        def counting_generate(*args: Any, **kwargs: Any) -> Any:  # counts rollout rows independently
            roll = generate(*args, **kwargs)
            self._gen_seqs += int(roll.completion_mask.shape[0])
            return roll

        self.trainer.generate = counting_generate

    def step(self) -> dict[str, Any]:
        self._gen_seqs = 0
        out = run_rlbook_step(self.trainer, self.cfg.device)
        out["gen_seqs"] = self._gen_seqs
        return out

    def close(self) -> None:
        pass


# --------------------------------------------------------------------------------------------------
# TRL side


def trl_config(cfg: BenchConfig, output_dir: str) -> Any:
    """The GRPOConfig equal to rlbook's defaults; README.md explains each choice."""
    from trl import GRPOConfig

    return GRPOConfig(
        output_dir=output_dir,
        # batch: one optimizer step = P prompts x G samples, trained in micro-batches of cfg.micro_batch
        per_device_train_batch_size=cfg.micro_batch,
        gradient_accumulation_steps=cfg.grad_accum,
        generation_batch_size=cfg.batch_size,  # one generate() call per step; steps_per_generation = grad_accum
        num_generations=cfg.group_size,
        max_completion_length=cfg.max_new_tokens,
        temperature=cfg.temperature,
        top_p=1.0,
        top_k=0,
        repetition_penalty=1.0,
        # GRPO objective as rlbook's defaults
        num_iterations=1,  # inner_epochs=1: old log-probs = current (detached), no extra forward pass
        beta=0.0,  # kl_coef=0: no reference model, no reference pass
        epsilon=0.2,  # eps_low; epsilon_high defaults to epsilon (eps_high=0.2)
        loss_type="grpo",  # per-sequence token mean, mean over sequences = seq_mean_token_mean
        scale_rewards="group",  # (r - group mean) / (group std + 1e-4) = rlbook's grpo estimator
        mask_truncated_completions=False,
        # optimizer: AdamW(lr, betas=(0.9, 0.99), wd 0), constant lr, grad-norm clip 1.0
        learning_rate=cfg.lr,
        adam_beta1=0.9,
        adam_beta2=0.99,
        weight_decay=0.0,
        optim="adamw_torch",
        lr_scheduler_type="constant",
        warmup_steps=0,
        max_grad_norm=1.0,
        max_steps=cfg.warmup + cfg.steps,
        seed=cfg.seed,
        # numerics and memory as rlbook: the model's own dtype (fp32 CPU / bf16 GPU), no autocast, no checkpointing
        bf16=False,
        fp16=False,
        activation_checkpointing=False,  # TRL's default (gradient_checkpointing) is True; rlbook does not recompute
        use_cpu=not cfg.device.startswith("cuda"),
        # no eval, logging, saving or hub traffic
        eval_strategy="no",
        save_strategy="no",
        logging_strategy="no",
        report_to="none",
        push_to_hub=False,
        log_completions=False,
        disable_tqdm=True,
        dataloader_num_workers=0,
        remove_unused_columns=False,
    )


class _StepGate:
    """Parks TRL's training thread at step boundaries; the driver releases one step at a time."""

    def __init__(self, device: str):
        self.device = device
        self.go = threading.Event()
        self.done = threading.Event()
        self.stop = False
        self.step_start = 0.0
        self.step_seconds = 0.0

    def wait_for_go(self) -> None:
        self.go.wait()
        self.go.clear()
        _sync(self.device)
        self.step_start = time.perf_counter()

    def finish_step(self) -> None:
        _sync(self.device)
        self.step_seconds = time.perf_counter() - self.step_start
        self.done.set()


def _make_trl_classes() -> tuple[type, type]:
    from transformers import TrainerCallback
    from trl import GRPOTrainer

    class CountingGRPOTrainer(GRPOTrainer):
        """GRPOTrainer that counts generated / trained completion tokens and times generation."""

        bench_device = "cpu"

        def reset_counts(self) -> None:
            self.bench = {"gen_seqs": 0, "gen_tokens": 0, "train_seqs": 0, "train_tokens": 0, "gen_s": 0.0}

        def _generate_and_score_completions(self, inputs: Any) -> dict[str, Any]:
            _sync(self.bench_device)
            t0 = time.perf_counter()
            out = super()._generate_and_score_completions(inputs)
            _sync(self.bench_device)
            self.bench["gen_s"] += time.perf_counter() - t0
            mask = out["completion_mask"]
            self.bench["gen_seqs"] += int(mask.size(0))
            self.bench["gen_tokens"] += int(mask.sum().item())
            return out

        def _compute_loss(self, model: Any, inputs: dict[str, Any]) -> Any:
            mask = inputs["completion_mask"]
            if "tool_mask" in inputs:
                mask = mask * inputs["tool_mask"]
            self.bench["train_seqs"] += int(mask.size(0))
            self.bench["train_tokens"] += int(mask.sum().item())
            return super()._compute_loss(model, inputs)

    class GateCallback(TrainerCallback):
        def __init__(self, gate: _StepGate):
            self.gate = gate

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            self.gate.done.set()  # ready: built and about to take the first step
            self.gate.wait_for_go()
            control.should_training_stop = self.gate.stop
            return control

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            self.gate.finish_step()
            # Parked after every step, the last one too: TRL's loop would otherwise go on working (it
            # ran ~80 more steps' worth of generation and loss on the tiny model) while the other
            # side's step is being timed.  close() releases it with stop=True.
            self.gate.wait_for_go()
            control.should_training_stop = self.gate.stop
            return control

    return CountingGRPOTrainer, GateCallback


def make_trl_dataset(task: Any) -> Any:
    """The task's training prompts as TRL's conversational dataset; ``idx`` finds the problem again."""
    from datasets import Dataset

    return Dataset.from_list([{"prompt": p.messages, "idx": i} for i, p in enumerate(task.train)])


def make_trl_reward(task: Any) -> Callable[..., list[float]]:
    """rlbook's ``correct`` reward (the task's own verifier) in TRL's reward-function signature."""

    def correct(prompts: list[Any], completions: list[Any], idx: list[int], **kwargs: Any) -> list[float]:
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        return [float(task.score(task.train[i], t)) for i, t in zip(idx, texts, strict=True)]

    return correct


def trl_lora_config() -> Any:
    """peft LoraConfig equal to ``rlbook.policy.models.LoraConfig()`` (as ``rlbook.policy.models.wrap_lora`` builds it)."""
    from peft import LoraConfig as PeftLoraConfig
    from rlbook.policy.models import LoraConfig

    d = LoraConfig()
    return PeftLoraConfig(r=d.r, lora_alpha=d.alpha, lora_dropout=d.dropout, target_modules=list(d.target_modules),
                          bias="none", task_type="CAUSAL_LM")


class TrlSide:
    """TRL's GRPOTrainer, its ``train()`` in a worker thread released one step at a time."""

    name = "trl"

    def __init__(self, cfg: BenchConfig, task: Any):
        try:
            import trl
        except ImportError as e:
            raise BenchError(f"TRL side unavailable ({e}): pip install -e '.[bench]' (trl==1.16.0)") from e
        self.cfg = cfg
        self.version = trl.__version__
        trainer_cls, callback_cls = _make_trl_classes()
        model, tok = load_model(cfg, lora=False)
        self._tmp = tempfile.TemporaryDirectory(prefix="bench-trl-")
        self.gate = _StepGate(cfg.device)
        self.trainer = trainer_cls(
            model=model,
            reward_funcs=make_trl_reward(task),
            args=trl_config(cfg, self._tmp.name),
            train_dataset=make_trl_dataset(task),
            processing_class=tok,
            peft_config=trl_lora_config(),
            callbacks=[callback_cls(self.gate)],
        )
        self.trainer.bench_device = cfg.device
        args = self.trainer.args
        assert not args.gradient_checkpointing and not args.bf16 and not args.fp16, "TRL config drifted"
        self.trainable = count_trainable(self.trainer.model)
        self.trainer.reset_counts()
        self.error: BaseException | None = None
        threads = cfg.threads or _torch_threads()
        self.thread = threading.Thread(target=self._train, args=(threads,), name="trl-train", daemon=True)
        self.thread.start()
        self._wait()  # until on_train_begin: optimizer and dataloader built

    def _train(self, threads: int) -> None:
        import torch

        torch.set_num_threads(threads)  # OpenMP settings are per thread
        try:
            self.trainer.train()
        except BaseException as e:  # noqa: BLE001 - handed to the driver thread
            self.error = e
        finally:
            self.gate.done.set()

    def _wait(self) -> None:
        self.gate.done.wait()
        self.gate.done.clear()
        if self.error is not None:
            raise BenchError(f"TRL side failed: {type(self.error).__name__}: {self.error}") from self.error

    def step(self) -> dict[str, Any]:
        if not self.thread.is_alive():
            raise BenchError("TRL side has no steps left (its train() loop ended)")
        self.trainer.reset_counts()
        self.gate.go.set()
        self._wait()
        c = dict(self.trainer.bench)
        seconds = self.gate.step_seconds
        return {"seconds": seconds, **c, "train_s": seconds - c["gen_s"]}

    def close(self) -> None:
        if self.thread.is_alive():
            self.gate.stop = True  # released from its park, the loop ends instead of taking a step
            self.gate.go.set()
            self.thread.join(timeout=60)
        self._tmp.cleanup()


# --------------------------------------------------------------------------------------------------
# driver


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def device_description(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return f"cuda: {torch.cuda.get_device_name(torch.device(device))}"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"cpu: {cpu}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"


def run(cfg: BenchConfig) -> dict[str, Any]:
    """Build the sides once, alternate their steps, and return the results dict (also the JSON)."""
    import torch

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    from rlbook.data import tasks  # noqa: F401 - fail early if rlbook is missing

    task = load_task(cfg)
    sides: list[Any] = []
    errors: dict[str, str] = {}
    trainable: dict[str, int] = {}
    for name in cfg.sides:
        t0 = time.perf_counter()
        try:
            sides.append(TrlSide(cfg, task) if name == "trl" else RlbookSide(cfg, task))
        except BenchError as e:
            errors[name] = str(e)
            print(f"[bench] {e}", file=sys.stderr)
            continue
        print(f"[bench] built {name} in {time.perf_counter() - t0:.1f} s "
              f"({sides[-1].trainable:,} trainable parameters)", flush=True)
        trainable[name] = sides[-1].trainable
    monitor = MemoryMonitor(cfg.device)
    records: list[StepRecord] = []
    try:
        for i in range(cfg.warmup + cfg.steps):
            for side in list(sides):
                try:
                    with monitor.measure() as mem:
                        fields = side.step()
                except Exception as e:  # noqa: BLE001 - one side failing must not lose the other's numbers
                    errors[side.name] = f"{side.name} step {i} failed: {type(e).__name__}: {e}"
                    print(f"[bench] {errors[side.name]}; continuing without it", file=sys.stderr, flush=True)
                    sides.remove(side)
                    side.close()
                    continue
                rec = StepRecord(side=side.name, index=i, warmup=i < cfg.warmup,
                                 peak_mem_mb=mem["peak_mb"], mem_delta_mb=mem["delta_mb"], **fields)
                records.append(rec)
                _print_step(rec)
    finally:
        for side in sides:
            side.close()
    res = build_results(cfg, records, errors, trl_version=_trl_version())
    res["trainable_params"] = trainable
    return res


def _trl_version() -> str | None:
    try:
        import trl

        return trl.__version__
    except ImportError:
        return None


def build_results(cfg: BenchConfig, records: Sequence[StepRecord], errors: dict[str, str],
                  trl_version: str | None = None) -> dict[str, Any]:
    summary = {side: summarize(records, side) for side in SIDES}
    rl = summary["rlbook"]["s_per_step_median"] if summary["rlbook"] else None
    tr = summary["trl"]["s_per_step_median"] if summary["trl"] else None
    ratio = tr / rl if rl and tr else None
    return {
        "rlbook_s_per_step": rl,
        "trl_s_per_step": tr,
        "ratio": ratio,  # TRL / rlbook seconds per step (> 1: rlbook is faster)
        "config": asdict(cfg),
        "device": device_description(cfg.device),
        "trl_version": trl_version,
        "rlbook": summary["rlbook"],
        "trl": summary["trl"],
        "work_check": check_same_work(records, cfg.batch_size, cfg.tolerance),
        "errors": errors,
        "records": [asdict(r) for r in records],
        "date": time.strftime("%Y-%m-%d"),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,  # at the end of the run
    }


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def _print_step(r: StepRecord) -> None:
    print(
        f"[bench] {r.side:6s} step {r.index}{' (warm-up)' if r.warmup else ''}: {r.seconds:.2f} s "
        f"(gen {_fmt(r.gen_s, '.2f')} s, train {_fmt(r.train_s, '.2f')} s), "
        f"generated {_fmt(r.gen_seqs, 'd')} seqs / {_fmt(r.gen_tokens, 'd')} tok, "
        f"trained {_fmt(r.train_seqs, 'd')} seqs / {_fmt(r.train_tokens, 'd')} tok, "
        f"peak {_fmt(r.peak_mem_mb, '.0f')} MB (+{_fmt(r.mem_delta_mb, '.0f')})",
        flush=True,
    )


def print_summary(res: dict[str, Any]) -> None:
    print(f"\n[bench] device: {res['device']}; load average {res['load_average']}")
    hdr = f"{'side':8s}{'s/step':>9s}{'gen tok/s':>11s}{'train tok/s':>13s}{'gen tok/step':>14s}" \
          f"{'train tok/step':>16s}{'peak MB':>9s}{'+step MB':>10s}"
    print(hdr)
    for side in SIDES:
        s = res[side]
        if s is None:
            print(f"{side:8s}  (not run{': ' + res['errors'][side] if side in res['errors'] else ''})")
            continue
        print(f"{side:8s}{s['s_per_step_median']:9.2f}{_fmt(s['gen_tokens_per_s'], '11.1f')}"
              f"{_fmt(s['train_tokens_per_s'], '13.1f')}{_fmt(s['mean_gen_tokens_per_step'], '14.1f')}"
              f"{_fmt(s['mean_train_tokens_per_step'], '16.1f')}{_fmt(s['peak_mem_mb'], '9.0f')}"
              f"{_fmt(s['peak_mem_delta_mb'], '10.0f')}")
    if res["ratio"] is not None:
        print(f"ratio TRL/rlbook s/step: {res['ratio']:.2f}")
    w = res["work_check"]
    print(f"same work: {w['same_work']}" + "".join(f"\n  - {p}" for p in w["problems"]))


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("WANDB_DISABLED", "true")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from rlbook.core import threads

    threads.configure()  # rlbook's thread policy before torch is imported (RLBOOK_THREADS=keep: torch's own)
    cfg, json_path = parse_args(argv)
    res = run(cfg)
    print_summary(res)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(res, indent=2) + "\n")
        print(f"[bench] wrote {json_path}")
    ran = [s for s in cfg.sides if res[s] is not None]
    return 0 if ran and not res["errors"] else (1 if not ran else 2)


if __name__ == "__main__":
    sys.exit(main())
