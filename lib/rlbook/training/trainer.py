"""The GRPO-style LoRA trainer: one readable loop, each step of the algorithm visible and named.

:meth:`Trainer.step` reads as the table of contents of the algorithm over a :class:`~rlbook.policy.rollout.Batch`;
its stages, in this order (the same numbers label the code of ``step()``, the section banners below and
``docs/ARCHITECTURE.md``):

1. **collect** (:meth:`Trainer.collect`): draw P problems from the sampler (``rlbook.mechanisms.sampling``),
   roll out G completions each (``rlbook.policy.rollout``), score them with each reward of ``cfg.rewards``
   (``rlbook.mechanisms.rewards``) weighted into one scalar, and apply the filters of ``cfg.filters``
   (``rlbook.mechanisms.filters``), drawing more prompts while groups are dropped;
2. **context on demand** (:meth:`Trainer.add_context`): the cheap entries always; reference log-probs,
   log-ratios, answer ids... only when the chosen estimator, loss, rewards or filters name them (:data:`PROVIDERS`);
3. **phases** hooked ``before_advantages`` (``rlbook.mechanisms.phases``, e.g. a process reward model);
4. **advantages** (:meth:`Trainer.advantages`): ``rlbook.mechanisms.estimators.compute(cfg.estimator, rewards, context)``;
5. **observe**: the sampler sees the outcomes and advantages (curricula, replay);
6. **phases** hooked ``after_advantages`` (e.g. down-sampling);
7. **policy update** (:meth:`Trainer.update`, ``rlbook.training.update``): ``inner_epochs`` passes of the
   clipped policy loss (``rlbook.mechanisms.losses``) with optional KL to the reference (the same model, LoRA
   adapter disabled);
8. **phases** hooked ``after_update``;
9. **log**: the step's metrics row (``rlbook.training.runs.MetricsLog``), with a held-out evaluation every
   ``eval_every``.

Generation and training each run inside an out-of-memory retry (``rlbook.training.oom``) that halves their batch
knob once.  Checkpoints (``rlbook.training.checkpoint``) hold each component's own ``state_dict``.
"""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedModel

from rlbook.core.config import TrainConfig, build
from rlbook.core.errors import TrainingError
from rlbook.core.guard import StepGuard
from rlbook.data.tasks import Problem, Task, extract_answer
from rlbook.mechanisms import estimators, filters, phases, process, rewards, sampling, toolcalls
from rlbook.mechanisms.components import Components
from rlbook.policy.generation import prompt_ids
from rlbook.policy.models import Tokenizer, has_adapter, trainable_parameters
from rlbook.policy.rollout import (
    Batch,
    Rollout,
    eos_ids,
    generate,
    logprobs_no_grad,
    micro_batches,
    pad_groups,
)
from rlbook.training import checkpoint, oom
from rlbook.training.runs import MetricsLog
from rlbook.training.update import UpdateInputs, policy_update

__all__ = ["PROVIDERS", "Trainer", "TrainingError", "seed_everything"]


class Trainer:
    """GRPO-style trainer over a LoRA policy; ``step()`` runs one full iteration and returns its metrics."""

    def __init__(self, model: PreTrainedModel, tokenizer: Tokenizer, task: Task,
                 cfg: TrainConfig | dict[str, Any] | None = None, metrics_path: str | Path | None = None,
                 progress: bool = True, checkpoint_dir: str | Path | None = None):
        self.cfg = build(TrainConfig, cfg or {}, "train")
        self.model, self.tok, self.task = model, tokenizer, task
        self.device = next(model.parameters()).device
        self.progress = progress
        self.log = MetricsLog(metrics_path)
        # fit() saves checkpoints here (every cfg.checkpoint_every steps and at the end) and resumes from
        # the newest one it finds (rlbook.training.checkpoint)
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.resumed_from_step = 0
        self.step_count = 0
        self.step_eval: tuple[int, dict[str, Any]] | None = None  # (step, evaluation) of the last eval_every step
        self.eos_ids = eos_ids(model, tokenizer)
        seed_everything(self.cfg.seed)
        self.comp = Components(self.cfg)
        self.sampler = sampling.make(self.cfg.sampler, len(task.train), seed=self.cfg.seed, task=task,
                                     **self.cfg.sampler_kwargs)
        self.params = trainable_parameters(model)
        if not self.params:
            raise TrainingError("the model has no trainable parameters: load it with a LoRA config (lora.r > 0)")
        self.optimizer = torch.optim.AdamW(self.params, lr=self.cfg.lr, weight_decay=self.cfg.weight_decay,
                                           betas=tuple(self.cfg.betas))
        self.guard = StepGuard(self.cfg.max_bad_steps, "policy update", "lower train.lr or check the rewards")
        self.reward_weights = torch.tensor([u.weight for u in self.comp.rewards])
        if self.comp.needs_reference and not has_adapter(model):
            raise TrainingError("KL to the reference (or a mechanism that needs it) requires a LoRA model")
        self.phases = [(p["name"], phases.make(p["name"], self, **p.get("kwargs", {}))) for p in self.cfg.phases]
        self._prompt_cache: dict[int, list[int]] = {}
        self._rollouts_this_step = 0  # roll-outs drawn since this step began (a noise coordinate)

    # ------------------------------------------------------------------------------------ the step
    def step(self) -> dict[str, Any]:
        """One iteration, stages 1-9 of the module docstring: 1 collect, 2 context, 3 phases before_advantages,
        4 advantages, 5 observe, 6 phases after_advantages, 7 policy update, 8 phases after_update, 9 log."""
        cfg, t0 = self.cfg, time.perf_counter()
        self._rollouts_this_step = 0
        batch = self._oom("generation", "gen_batch_size", self.collect, self._generation_snapshot())  # 1
        gen_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        self.add_context(batch)  # 2
        self.run_phases("before_advantages", batch)  # 3
        batch.advantages = self.advantages(batch)  # 4
        self.sampler.observe_batch(batch)  # 5
        self.run_phases("after_advantages", batch)  # 6
        inputs = self.update_inputs(batch)  # 7
        train = self._oom("training", "micro_batch_size", lambda: self.update(inputs), self._training_snapshot())
        self.step_count += 1
        self.run_phases("after_update", batch)  # 8
        m = step_metrics(batch, inputs, train, self.comp, gen_s, time.perf_counter() - t1)  # 9
        m.update(step=self.step_count, step_s=time.perf_counter() - t0)
        if self.tool:  # tool calls per sampled episode (rlbook.mechanisms.toolcalls)
            m["tool_calls"] = float(np.mean([toolcalls.count_calls(t) for t, v in zip(batch.roll.texts, batch.valid.tolist(),
                                                                                      strict=True) if v]))
        m = self.order_metrics(m, batch)
        if cfg.eval_every and self.step_count % cfg.eval_every == 0:
            ev = self.evaluate()
            self.step_eval = (self.step_count, ev)
            m.update({f"eval_{k}": ev[k] for k in ("accuracy", "response_length", "n", f"pass@{cfg.eval_pass_k}") if k in ev})
        self.log.append(m)
        return m

    # -------------------------------------------------- 1. collect: draw, roll out, score, filter
    def collect(self) -> Batch:
        """P groups: draw prompts, roll out, score; with filters, draw again (at most
        ``cfg.max_sampling_rounds`` rounds) while fewer than P groups are kept."""
        cfg, P = self.cfg, self.cfg.prompts_per_step
        kept: list[Batch] = []
        dropped: list[Batch] = []
        rounds = gen_tokens = gen_rollouts = n_correct = 0
        while sum(b.P for b in kept) < P and rounds < (cfg.max_sampling_rounds if self.comp.filters else 1):
            rounds += 1
            indices = self.sampler.next(P - sum(b.P for b in kept))
            batch = self.roll_out(indices)
            gen_tokens += int(batch.roll.lengths.sum())
            gen_rollouts += int(batch.valid.sum())
            n_correct += int(batch.correct.reshape(-1)[batch.valid].sum())
            keep = self.keep_mask(batch)
            kept += [batch.groups([j]) for j in range(batch.P) if keep[j]]
            dropped += [batch.groups([j]) for j in range(batch.P) if not keep[j]]
        n_kept = sum(b.P for b in kept)
        chosen = kept + dropped[: P - n_kept] if cfg.top_up or not self.comp.filters else kept
        out = Batch.cat(chosen or dropped, self.tok.pad_token_id)
        out.trainable = bool(chosen)
        out.sampling = {"gen_tokens": gen_tokens, "gen_rollouts": gen_rollouts, "groups": n_kept + sum(b.P for b in dropped),
                        "dropped": sum(b.P for b in dropped), "rounds": rounds,
                        "shortfall": P - sum(b.P for b in chosen), "sampled_accuracy": n_correct / max(1, gen_rollouts)}
        return out

    def roll_out(self, indices: list[int]) -> Batch:
        """G sampled completions for each of the prompts ``indices``, scored by every reward; with a rollout
        budget per prompt (:meth:`rollout_counts`) prompt j gets ``counts[j]`` of its G slots filled.

        Common random numbers: completion g of training problem i draws its noise from (seed, step, the number
        of earlier roll-outs this step, i, g) (:func:`rlbook.policy.generation.noise_keys`), so two runs of one seed
        (two arms) sample the same tokens while their policies agree, whatever else either drew."""
        cfg, G, limit = self.cfg, self.cfg.group_size, self.generation_limit()
        problems = [self.task.train[i] for i in indices]
        counts = self.rollout_counts(indices)
        stream, self._rollouts_this_step = self._rollouts_this_step, self._rollouts_this_step + 1
        noise = [(cfg.seed, self.step_count, stream, i, g)
                 for i, n in zip(indices, counts or [G] * len(indices), strict=True) for g in range(n)]
        if counts is None:
            roll = self.generate([self.prompt_ids(p) for p in problems], limit, do_sample=True,
                                 temperature=cfg.temperature, group_size=G, noise=noise)
            parts, correct = self.score(roll, problems, indices, [G] * len(indices), limit)
            return Batch(list(indices), problems, roll, parts, (parts * self.reward_weights).sum(-1).view(len(indices), G),
                         torch.tensor(correct).view(len(indices), G))
        roll = self.generate([self.prompt_ids(p) for p, n in zip(problems, counts, strict=True) for _ in range(n)],
                             limit, do_sample=True, temperature=cfg.temperature, group_size=1, noise=noise)
        parts, correct = self.score(roll, problems, indices, counts, limit)
        padded, mask = pad_groups(roll, counts, G, self.tok.pad_token_id)
        full_parts = torch.zeros(len(indices) * G, parts.shape[1])
        full_parts[mask.reshape(-1)] = parts  # the generated rows are prompt-major, as the filled slots
        full_correct = torch.zeros(len(indices), G, dtype=torch.bool)
        full_correct[mask] = torch.tensor(correct, dtype=torch.bool)
        return Batch(list(indices), problems, padded, full_parts, (full_parts * self.reward_weights).sum(-1).view(len(indices), G),
                     full_correct, sample_mask=mask)

    def score(self, roll: Rollout, problems: list[Problem], indices: list[int], counts: list[int],
              limit: int | None = None) -> tuple[torch.Tensor, list[bool]]:
        """Reward parts ``[rows, K]`` and verdicts of a rollout whose rows are ``counts[j]`` completions of
        prompt j in turn, generated with at most ``limit`` new tokens (default: this step's
        :meth:`generation_limit`)."""
        cfg, limit = self.cfg, self.generation_limit() if limit is None else limit
        flat = [p for p, n in zip(problems, counts, strict=True) for _ in range(n)]
        correct = [self.task.score(p, t) >= 1.0 for p, t in zip(flat, roll.texts, strict=True)]
        context = {"task": self.task, "lengths": roll.lengths.tolist(), "correct": correct,
                   "max_new_tokens": limit, "group_size": cfg.group_size, "step": self.step_count,
                   "total_steps": cfg.steps, "tokenizer": self.tok,
                   "prompt_ids": [i for i, n in zip(indices, counts, strict=True) for _ in range(n)],
                   "finished": roll.finished.tolist() if roll.finished is not None else [True] * len(flat)}
        return rewards.score(self.comp.rewards, roll.texts, flat, context), correct

    def rollout_counts(self, indices: list[int]) -> list[int] | None:
        """Completions to generate per prompt: the sampler's budgets (Knapsack RL), else
        ``cfg.rollouts_per_prompt`` when set (the remaining slots are left for phases to fill: replay, hints),
        else None (all G slots, the rectangular default)."""
        budgets, per_prompt = self.sampler.budgets(indices), self.cfg.rollouts_per_prompt or self.cfg.group_size
        if budgets is None and per_prompt == self.cfg.group_size:
            return None
        counts = [int(b) for b in budgets] if budgets is not None else [per_prompt] * len(indices)
        if len(counts) != len(indices) or any(c < 1 or c > self.cfg.group_size for c in counts):
            raise TrainingError(f"rollouts per prompt {counts} must be one per prompt, each in 1..{self.cfg.group_size} "
                                "(train.group_size is the width of a group: raise it to the largest budget)")
        return counts

    def generation_limit(self) -> int:
        """This step's generation limit: ``cfg.max_new_tokens``, or the smallest a phase sets (SIRI's schedule)."""
        limits = [lim for _, p in self.phases if (lim := p.generation_limit(self)) is not None]
        return min([self.cfg.max_new_tokens, *limits])

    def keep_mask(self, batch: Batch) -> list[bool]:
        """A group is kept when every filter of ``cfg.filters`` keeps it."""
        keep = torch.ones(batch.P, dtype=torch.bool)
        if self.comp.filters and batch.sample_mask is not None and not bool(batch.sample_mask.all()):
            raise TrainingError("group filters see rectangular groups only; a rollout budget per prompt "
                                "(sampler budgets, train.rollouts_per_prompt) cannot be combined with train.filters")
        context = {"correct": batch.correct, "lengths": batch.lengths, "reward_parts": batch.parts.view(batch.P, batch.G, -1),
                   "prompt_ids": torch.tensor(batch.indices), "step": self.step_count}
        for use in self.comp.filters:
            keep &= filters.apply(use.name, batch.rewards, {**context, "state": use.state}, **use.kwargs)
        return keep.tolist()

    def generate(self, prompts: list[list[int]], max_new_tokens: int, do_sample: bool = True,
                 temperature: float = 1.0, group_size: int = 1, noise: list[tuple[int, ...]] | None = None) -> Rollout:
        """``group_size`` completions of each prompt (:func:`rlbook.policy.rollout.generate`; ``noise``: each row's
        noise coordinates, else the global RNG)."""
        noise = noise if self.cfg.generation_backend == "rlbook" else None  # "hf" samples from the global RNG
        if self.tool:  # episodes with a tool: its results written into the completions (rlbook.mechanisms.toolcalls)
            return toolcalls.generate(self.model, self.tok, self.cfg, prompts, max_new_tokens, do_sample, temperature,
                                      group_size, noise=noise, max_calls=self.task.spec.max_tool_calls)
        return generate(self.model, self.tok, self.cfg, prompts, max_new_tokens, do_sample, temperature, group_size,
                        noise=noise)

    @property
    def tool(self) -> str:
        """The task's tool (``task.tool``; "" = none)."""
        return getattr(getattr(self.task, "spec", None), "tool", "")

    def prompt_ids(self, problem: Problem, split: str = "train") -> list[int]:
        key = problem.index if split == "train" else -1 - problem.index
        if key not in self._prompt_cache:
            self._prompt_cache[key] = prompt_ids(self.tok, problem.messages)
        return self._prompt_cache[key]

    # ----------------------------------------------------------------------- 2. context on demand
    def add_context(self, batch: Batch) -> None:
        """The estimator's context: the cheap entries always, the costly ones (:data:`PROVIDERS`) only when a
        chosen mechanism names them (or a KL term needs the reference log-probs)."""
        batch.context.update({
            "lengths": batch.lengths.float(), "reward_parts": batch.parts.view(batch.P, batch.G, -1),
            "part_weights": self.reward_weights, "correct": batch.correct, "prompt_ids": torch.tensor(batch.indices),
            "max_new_tokens": self.cfg.max_new_tokens, "step": self.step_count, "total_steps": self.cfg.steps,
            "state": self.comp.estimator.state, "sample_mask": batch.sample_mask,
        })
        wanted = self.comp.needs() | ({"ref_logp"} if self.comp.kl else set())
        for name, provide in PROVIDERS.items():  # in dependency order
            if name in wanted or any(name in DEPENDS.get(w, ()) for w in wanted):
                batch.context[name] = provide(self, batch)

    # ---------------------------------------------- 3, 6, 8. phases (5. observe is the sampler's)
    def run_phases(self, hook: str, batch: Batch) -> None:
        for name, phase in self.phases:
            if phases.hook(name) == hook:
                batch.metrics.update(phase.run(self, batch))

    # ------------------------------------------------------------------------------ 4. advantages
    def advantages(self, batch: Batch) -> torch.Tensor:
        """The estimator's advantages; with uneven groups (or samples a phase dropped) it gets ``sample_mask``
        (the samples kept) and must declare it supports them (``estimators.register(..., ragged=True)``);
        empty or dropped slots get A = 0."""
        kept = batch.kept
        context = {**batch.context, "sample_mask": kept}
        adv = estimators.compute(self.cfg.estimator, batch.rewards, context=context, **self.comp.estimator.kwargs)
        if kept is None:
            return adv
        return adv * kept.view(*kept.shape, *([1] * (adv.dim() - 2))).to(adv.dtype)

    # --------------------------------------------------------------------------- 7. policy update
    def update_inputs(self, batch: Batch) -> UpdateInputs:
        """The rows to train on (zero-advantage rows left out when the loss allows it, empty slots always) and
        their context; a phase's ``batch.context["loss_token_mask"]`` ([B, Lc], 0 = no gradient) and the rollout's
        ``action_mask`` (0 on tokens a tool wrote) narrow the tokens."""
        cfg, B = self.cfg, batch.P * batch.G
        adv = batch.advantages.reshape(B, *batch.advantages.shape[2:]).float()  # type: ignore[union-attr]
        skip_ok = cfg.skip_zero_advantage and cfg.kl_coef == 0 and self.comp.loss.entry.zero_advantage_safe
        nonzero = adv.reshape(B, -1).abs().amax(-1) > 0
        valid = batch.kept.reshape(-1).bool() if batch.kept is not None else batch.valid
        rows = [r for r in range(B) if valid[r] and (nonzero[r] or not skip_ok)] if batch.trainable else []
        flat = {"rewards": batch.rewards.reshape(B), "correct": batch.correct.reshape(B),
                "lengths": batch.roll.lengths}
        row_context = {k: v for k, v in flat.items() if k in self.comp.loss.entry.needs}
        token_mask = batch.context.get("loss_token_mask")
        if batch.roll.action_mask is not None:
            token_mask = batch.roll.action_mask if token_mask is None else token_mask * batch.roll.action_mask
        cmask = batch.roll.completion_mask if token_mask is None else batch.roll.completion_mask * token_mask
        return UpdateInputs(batch.roll, rows, micro_batches(rows, batch.roll.lengths.tolist(), cfg, self.whole_groups),
                            adv, batch.context.get("ref_logp") or {}, row_context, float(cmask.sum()),
                            n_seqs=int(valid.sum()), token_mask=token_mask)

    def update(self, inputs: UpdateInputs) -> dict[str, Any]:
        """The policy update (:func:`rlbook.training.update.policy_update`)."""
        return policy_update(self.model, self.cfg, self.comp, self.params, self.optimizer, self.guard, inputs,
                             self.step_count + 1)

    @property
    def whole_groups(self) -> bool:
        """Micro-batches hold whole groups: the prompt forward is shared, or the loss compares a group's samples."""
        return self.cfg.share_prompt_forward or "group_ids" in self.comp.loss.entry.needs

    # ------------------------------------------------------------------------------------- 9. log
    def order_metrics(self, m: dict[str, Any], batch: Batch) -> dict[str, Any]:
        """Per-reward means, then NaN placeholders for the evaluation columns (same columns on every row)."""
        for k, use in enumerate(self.comp.rewards):
            m[f"reward_{use.name}"] = batch.parts[:, k].mean().item()
        if self.cfg.eval_every:
            m.update({"eval_accuracy": float("nan"), "eval_response_length": float("nan"), "eval_n": float("nan")})
            if self.cfg.eval_pass_k:
                m[f"eval_pass@{self.cfg.eval_pass_k}"] = float("nan")
        return m

    @property
    def history(self) -> list[dict[str, Any]]:
        """Every step's metrics so far."""
        return self.log.rows

    @property
    def metrics_path(self) -> Path | None:
        return self.log.path

    @metrics_path.setter
    def metrics_path(self, path: str | Path | None) -> None:
        self.log.path = Path(path) if path else None

    @property
    def generated_tokens(self) -> int:
        """Every token generated in training so far: rollouts (the groups filters dropped included) and the
        phases' own generations (``extra_gen_tokens``: Monte Carlo continuations, critiques)."""
        def num(v: Any) -> float:
            return float(v) if isinstance(v, (int, float)) and v == v else 0.0

        return int(sum(num(m.get("gen_tokens")) + num(m.get("extra_gen_tokens")) for m in self.history))

    @property
    def bad_steps(self) -> int:
        return self.guard.bad

    @property
    def estimator_state(self) -> Any:
        return self.comp.estimator.state

    # ---------------------------------------------------------------------------------- evaluate
    @torch.no_grad()
    def evaluate(self, n: int | None = None, max_new_tokens: int | None = None) -> dict[str, Any]:
        """Greedy pass@1 on the first ``n`` (default ``cfg.eval_size``) held-out problems, with per-problem detail,
        and sampled pass@k when ``cfg.eval_pass_k`` > 0: the one held-out evaluation (the metrics row every
        ``eval_every`` steps, :func:`rlbook.training.experiments.evaluate` for the sweeps), see :func:`held_out_eval`."""
        return held_out_eval(self, self.task.eval[: n or self.cfg.eval_size], max_new_tokens or self.cfg.max_new_tokens)

    # ------------------------------------------------------------------------------------- loop
    def done_fraction(self) -> float:
        """How much of ``fit()``'s work is done, in [0, 1]: steps over ``cfg.steps``, or generated tokens over
        ``cfg.gen_token_budget`` when that is further along (the budget usually ends a run well before its step cap,
        so a bar counting steps would show a run at 5 of 40 steps as 12% done when it is finished)."""
        frac = self.step_count / self.cfg.steps if self.cfg.steps else 1.0
        if self.cfg.gen_token_budget:
            frac = max(frac, self.generated_tokens / self.cfg.gen_token_budget)
        return min(1.0, frac)

    def fit(self, steps: int | None = None, checkpoint_dir: str | Path | None = None) -> list[dict[str, Any]]:
        """Run ``steps`` (default ``cfg.steps``) steps with a progress bar; returns their metrics.  With
        ``cfg.gen_token_budget`` it stops earlier, before the first step that would start with the budget spent
        (:attr:`generated_tokens`).

        With a checkpoint folder (``checkpoint_dir`` here or in the constructor), a checkpoint is saved every
        ``cfg.checkpoint_every`` steps and at the end, and the first ``fit()`` of a fresh trainer resumes
        from the newest checkpoint there: it restores the adapter, optimizer, RNG and every component's
        state and the metrics so far (``metrics.csv`` is cut back to them), runs only the remaining steps
        and returns the metrics of all of them.
        """
        from rlbook.core.progress import tqdm

        if checkpoint_dir is not None:
            self.checkpoint_dir = Path(checkpoint_dir)
        n = self.cfg.steps if steps is None else steps
        target, first = self.step_count + n, len(self.history)
        if self.checkpoint_dir is not None and self.step_count == 0:
            first = self._resume(first)
        bar = tqdm(range(max(0, target - self.step_count)), desc="GRPO steps", disable=not self.progress,
                   initial=min(self.step_count, target), total=n)
        saved, every = (self.step_count if self.resumed_from_step else -1), self.cfg.checkpoint_every
        for _ in bar:
            if self.cfg.gen_token_budget and self.generated_tokens >= self.cfg.gen_token_budget:
                break  # equal-token comparisons: the step that crossed the budget was the last
            m = self.step()
            if self.checkpoint_dir is not None and every and self.step_count % every == 0:
                checkpoint.save(self, self.checkpoint_dir)
                saved = self.step_count
            shown = self.progress and self.cfg.gen_token_budget  # the token count sums the history: only for a shown bar
            budget = {"tokens": f"{self.generated_tokens}/{self.cfg.gen_token_budget}"} if shown else {}
            bar.set_postfix(reward=f"{m['reward_mean']:.2f}", acc=f"{m['accuracy']:.2f}",
                            len=f"{m['response_length']:.0f}", s=f"{m['step_s']:.1f}", **budget)
        if self.checkpoint_dir is not None and saved != self.step_count and self.step_count > 0:
            checkpoint.save(self, self.checkpoint_dir)
        return self.history[first:]

    def _resume(self, first: int) -> int:
        restored = checkpoint.load(self, self.checkpoint_dir)  # type: ignore[arg-type]
        if restored:
            self.resumed_from_step = restored
            self.log.rewrite()
            print(f"[rlbook] resumed from {checkpoint.latest(self.checkpoint_dir)} at step {restored}")  # type: ignore[arg-type]
            return 0
        if not self.history:  # a fresh start: drop rows an attempt killed before its first checkpoint wrote
            self.log.rewrite()
        return first

    # ------------------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """The trainer's own state for a checkpoint: counters, the effective batch sizes, each component's
        ``state_dict`` (sampler, estimator, rewards, filters, phases) and the metrics so far.  The weights,
        optimizer and RNG states are saved next to it by :func:`rlbook.training.checkpoint.save`."""
        return {"step_count": self.step_count, "bad_steps": self.guard.bad,
                "gen_batch_size": self.cfg.gen_batch_size, "micro_batch_size": self.cfg.micro_batch_size,
                "sampler": self.sampler.state_dict(), "components": self.comp.state_dict(),
                "phases": {f"{i}:{name}": p.state_dict() for i, (name, p) in enumerate(self.phases)},
                "history": [dict(m) for m in self.history], "config": self.cfg.to_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (a warning names config fields that changed)."""
        now = self.cfg.to_dict()
        changed = [k for k, v in (state.get("config") or {}).items()
                   if k not in ("steps", "checkpoint_every", "gen_batch_size", "micro_batch_size", "eval_every")
                   and now.get(k) != v]
        if changed:
            print(f"[rlbook] warning: resuming with changed train config: {', '.join(sorted(changed))}")
        self.step_count, self.guard.bad = int(state["step_count"]), int(state["bad_steps"])
        self.cfg.gen_batch_size = int(state.get("gen_batch_size", self.cfg.gen_batch_size))
        self.cfg.micro_batch_size = int(state.get("micro_batch_size", self.cfg.micro_batch_size))
        self.sampler.load_state_dict(state["sampler"])
        self.comp.load_state_dict(state.get("components") or {})
        for i, (name, phase) in enumerate(self.phases):
            if f"{i}:{name}" in (state.get("phases") or {}):
                phase.load_state_dict(state["phases"][f"{i}:{name}"])
        self.log.rows = [dict(m) for m in state["history"]]

    # ----------------------------------------------------------------------------- out of memory
    def _oom(self, phase: str, knob: str, fn: Callable[[], Any], restore: Callable[[], None]) -> Any:
        return oom.retry(self.cfg, self.step_count + 1, phase, knob, fn, restore)

    def _generation_snapshot(self) -> Callable[[], None]:
        """A closure that puts the sampler, RNG and noise stream back, so a retried generation draws the same
        prompts and samples."""
        sampler, rng, rollouts = self.sampler.state_dict(), checkpoint.rng_state(), self._rollouts_this_step

        def restore() -> None:
            self.sampler.load_state_dict(sampler)
            checkpoint.set_rng_state(rng)
            self._rollouts_this_step = rollouts

        return restore

    def _training_snapshot(self) -> Callable[[], None]:
        """A closure that undoes a partial training pass (gradients; with several inner epochs also the
        parameters and optimizer state, since an earlier epoch may have stepped)."""
        bad, rng = self.guard.bad, torch.get_rng_state()
        saved = None
        if self.cfg.inner_epochs > 1:
            saved = ([p.detach().clone() for p in self.params], copy.deepcopy(self.optimizer.state_dict()))

        def restore() -> None:
            self.optimizer.zero_grad(set_to_none=True)
            self.guard.bad = bad
            torch.set_rng_state(rng)
            if saved is not None:
                with torch.no_grad():
                    for p, v in zip(self.params, saved[0], strict=True):
                        p.copy_(v)
                self.optimizer.load_state_dict(saved[1])

        return restore


# ------------------------------------------------------------------------------ context providers
def _ref_logp(tr: Trainer, batch: Batch) -> dict[int, torch.Tensor]:
    """Per-token log-probs of every sampled completion under the reference (the adapter disabled)."""
    rows = batch.valid.nonzero().flatten().tolist()
    return tr._oom("the reference pass", "micro_batch_size",
                   lambda: logprobs_no_grad(tr.model, tr.cfg, batch.roll, rows, True, tr.whole_groups), lambda: None)


def _token_logp(tr: Trainer, batch: Batch) -> dict[int, torch.Tensor]:
    """Per-token log-probs of every sampled completion under the current policy, before the update."""
    rows = batch.valid.nonzero().flatten().tolist()
    return tr._oom("the log-prob pass", "micro_batch_size",
                   lambda: logprobs_no_grad(tr.model, tr.cfg, batch.roll, rows, False, tr.whole_groups), lambda: None)


def _seq_log_ratio(tr: Trainer, batch: Batch) -> torch.Tensor:
    """[P, G]: sum over a completion's tokens of log pi_theta - log pi_ref."""
    cur, ref, lengths = batch.context["token_logp"], batch.context["ref_logp"], batch.roll.lengths
    out = torch.zeros(batch.P * batch.G)
    for r in range(out.numel()):
        if r not in cur:  # an empty slot (uneven groups)
            continue
        n = int(lengths[r])
        out[r] = (cur[r][:n] - ref[r][:n]).sum()
    return out.view(batch.P, batch.G)


def _token_log_ratio(tr: Trainer, batch: Batch) -> torch.Tensor:
    """[P, G, T]: per completion token log pi_theta - log pi_ref (0 beyond each length; T = the rollout's
    completion width).  Logs its mean over completion tokens as ``token_kl`` (the k1 KL to the reference)."""
    cur, ref, lengths = batch.context["token_logp"], batch.context["ref_logp"], batch.roll.lengths
    out = torch.zeros(batch.P * batch.G, batch.roll.completion_mask.shape[1])
    for r in range(out.shape[0]):
        n = int(lengths[r])
        out[r, :n] = (cur[r][:n] - ref[r][:n]).float().cpu()
    batch.metrics["token_kl"] = float(out.sum() / lengths.sum().clamp(min=1))
    return out.view(batch.P, batch.G, -1)


def _answer_ids(tr: Trainer, batch: Batch) -> torch.Tensor:
    """[P, G] long: equal ids for equal extracted answers within a group; a missing answer gets its own id."""
    out = torch.zeros(batch.P, batch.G, dtype=torch.long)
    for j in range(batch.P):
        seen: dict[str, int] = {}
        for g in range(batch.G):
            ans = extract_answer(batch.roll.texts[j * batch.G + g], numeric=tr.task.numeric)
            key = f"\0{g}" if ans is None else ans.strip()
            out[j, g] = seen.setdefault(key, len(seen))
    return out


def _token_mask(tr: Trainer, batch: Batch) -> torch.Tensor:
    """[P, G, T] float: 1 on each completion's tokens through EOS."""
    return batch.roll.completion_mask.view(batch.P, batch.G, -1).float()


def _completion_ids(tr: Trainer, batch: Batch) -> torch.Tensor:
    """[P, G, T] long: the sampled token ids."""
    return batch.roll.completion_ids.view(batch.P, batch.G, -1)


# name -> provider, in dependency order; DEPENDS lists what each needs computed first
PROVIDERS: dict[str, Callable[[Trainer, Batch], Any]] = {
    "ref_logp": _ref_logp, "token_logp": _token_logp, "seq_log_ratio": _seq_log_ratio,
    "token_log_ratio": _token_log_ratio, "answer_ids": _answer_ids,
    "token_mask": _token_mask, "completion_ids": _completion_ids, "old_logp": process.old_logp,
    "step_index": process.step_index,
}
DEPENDS: dict[str, tuple[str, ...]] = {"seq_log_ratio": ("ref_logp", "token_logp"),
                                       "token_log_ratio": ("ref_logp", "token_logp")}


def step_metrics(batch: Batch, inp: UpdateInputs, train: dict[str, Any], comp: Components, gen_s: float,
                 train_s: float) -> dict[str, Any]:
    """The step's metrics row (``metrics.csv``): rewards, accuracy, lengths, advantages, timing, update."""
    P, G, v = batch.P, batch.G, batch.valid  # v: the rows that hold a sample (all, for rectangular groups)
    lengths, correct, r = batch.roll.lengths[v], batch.correct.view(-1)[v], batch.rewards.view(-1)[v]
    adv_all = batch.advantages.reshape(P * G, -1).float()  # type: ignore[union-attr]
    adv, s = adv_all[v], batch.sampling
    m: dict[str, Any] = {
        "step": 0, "reward_mean": r.mean().item(), "reward_std": r.std().item() if r.numel() > 1 else 0.0,
        "accuracy": correct.float().mean().item(), "response_length": lengths.float().mean().item(),
        # mean length of the correct / wrong completions (NaN when there are none): Dr. GRPO's length bias
        "length_correct": lengths[correct].float().mean().item() if bool(correct.any()) else float("nan"),
        "length_wrong": lengths[~correct].float().mean().item() if bool((~correct).any()) else float("nan"),
        "zero_adv_group_frac": (adv_all.view(P, -1).abs().amax(-1) < 1e-8).float().mean().item(),
        # share of the samples with a non-zero advantage (Knapsack RL's "effective gradient ratio")
        "nonzero_adv_frac": (adv.abs().amax(-1) > 1e-8).float().mean().item() if len(adv) else 0.0,
        "adv_std": adv.std().item() if adv.numel() > 1 else 0.0,
        "gen_s": gen_s, "gen_tokens": s["gen_tokens"], "gen_tok_s": s["gen_tokens"] / gen_s if gen_s > 0 else float("nan"),
        "train_s": train_s, "trained_seqs": len(inp.rows), "skipped_seqs": len(r) - len(inp.rows),
        "skipped_tokens": int(lengths.sum()) - int(batch.roll.lengths[inp.rows].sum()) if inp.rows else int(lengths.sum()),
        "sampled_groups": s["groups"], "dropped_groups": s["dropped"], "gen_rollouts": s["gen_rollouts"],
    }
    if batch.roll.finished is not None:  # share of completions cut at max_new_tokens (no EOS)
        m["truncated_frac"] = 1.0 - batch.roll.finished[v].float().mean().item()
    if comp.filters:
        # accuracy of every completion sampled this step, the dropped groups' included (``accuracy``: the kept ones)
        m.update(sampling_rounds=s["rounds"], shortfall=s["shortfall"], sampled_accuracy=s["sampled_accuracy"])
    if "extra_gen_tokens" in s:  # tokens phases generated (Monte Carlo continuations, critiques, ...)
        m["extra_gen_tokens"] = s["extra_gen_tokens"]
    m.update({"step_s": 0.0, **train})
    m["train_tok_s"] = m["trained_tokens"] / train_s if train_s > 0 else float("nan")
    if batch.roll.entropy is not None:  # entropy of every sampled token (not only of the trained ones)
        mask = batch.roll.completion_mask
        m["entropy"] = float((batch.roll.entropy * mask).sum() / mask.sum().clamp(min=1))
    m.update(batch.metrics)
    return m


EVAL_STREAM = 1 << 40  # the noise stream of evaluation's samples (a roll-out count never reaches it)


def held_out_eval(tr: Trainer, problems: list[Problem], max_new_tokens: int) -> dict[str, Any]:
    """Greedy held-out evaluation of ``problems`` (the one implementation: :meth:`Trainer.evaluate`,
    :func:`rlbook.training.experiments.evaluate`): accuracy and mean length (tokens, through EOS) of all, correct and wrong
    completions; per problem: correct, length, answer in the requested format, truncated (no EOS within
    ``max_new_tokens``), the completion; sampled pass@k when ``cfg.eval_pass_k`` > 0.  Leaves the RNG untouched.

    Cheap at 1,000 problems: the prompts are generated in chunks of ``cfg.gen_batch_size`` sorted by length
    (little left padding), each row leaves the batch at its EOS (:func:`rlbook.policy.generation.sample_groups`), and the
    prompts' tokens are cached.  A row stops at EOS only: the checker reads the whole reply (the last ``<answer>``
    tag, else the last "answer: X", else the last number), so an earlier stop could change a verdict or a length.
    Pass@k samples with common random numbers (seed, step, :data:`EVAL_STREAM`, problem, sample)."""
    from rlbook.data.tasks import is_well_formatted

    rng = torch.get_rng_state()
    prompts = [tr.prompt_ids(p, "eval") for p in problems]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    roll = tr.generate([prompts[i] for i in order], max_new_tokens, do_sample=False)
    roll = roll.select(sorted(range(len(order)), key=lambda k: order[k]))  # back to the problems' order
    correct = [tr.task.score(p, t) >= 1.0 for p, t in zip(problems, roll.texts, strict=True)]
    lengths = roll.lengths.tolist()

    def mean_len(keep: bool) -> float:
        sel = [n for n, c in zip(lengths, correct, strict=True) if c == keep]
        return float(np.mean(sel)) if sel else float("nan")

    out: dict[str, Any] = {
        "accuracy": float(np.mean(correct)), "response_length": float(np.mean(lengths)),
        "length_correct": mean_len(True), "length_wrong": mean_len(False), "n": len(problems),
        "correct": correct, "lengths": lengths,
        "formatted": [is_well_formatted(t, tr.task.spec.answer_format) for t in roll.texts],  # the requested form
        "truncated": (~roll.finished).tolist() if roll.finished is not None else [False] * len(lengths),
        "completions": roll.texts,
    }
    if tr.cfg.eval_pass_k > 0:
        k = tr.cfg.eval_pass_k
        noise = [(tr.cfg.seed, tr.step_count, EVAL_STREAM, p.index, g) for p in problems for g in range(k)]
        sampled = tr.generate(prompts, max_new_tokens, do_sample=True, temperature=tr.cfg.temperature, group_size=k,
                              noise=noise)
        hits = [tr.task.score(problems[i // k], t) >= 1.0 for i, t in enumerate(sampled.texts)]
        out[f"pass@{k}"] = float(np.mean([any(hits[i * k : (i + 1) * k]) for i in range(len(problems))]))
    torch.set_rng_state(rng)
    return out


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
