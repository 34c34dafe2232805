"""rlbook's rewards, estimators, losses and aggregations inside TRL's ``GRPOTrainer`` (accelerate, DeepSpeed).

* :func:`task_dataset` -- an rlbook task as TRL's conversational dataset (``prompt`` messages plus
  ``problem_index`` and ``split`` columns, so a reward function finds the problem again);
* :func:`reward_function` / :func:`reward_functions` -- any registered rlbook reward in TRL's reward-function
  signature ``f(prompts, completions, completion_ids, **dataset_columns) -> list[float]``;
* :class:`RlbookGRPOTrainer` -- ``trl.GRPOTrainer`` with two override points (TRL 1.16,
  ``trl/trainer/grpo_trainer.py``): ``_generate_and_score_completions`` keeps TRL's generation, reference
  pass and reward calls and replaces the advantages it computed inline by those of an rlbook estimator on
  the same rewards (gathered over processes, as TRL does, then sliced back to this process's rows);
  ``_compute_loss`` replaces TRL's policy loss by an rlbook loss reduced by an rlbook aggregation, with
  normalisers chosen so that micro-batches, gradient accumulation and data-parallel averaging add up to the
  loss over the whole batch;
* :func:`grpo_config_kwargs` -- rlbook train settings as ``trl.GRPOConfig`` keyword arguments.

Run a notebook's method on many GPUs with ``accelerate launch script.py`` on the script that
``rlbook export NOTEBOOK --method NAME --to trl`` writes.

Semantics that differ from TRL's own GRPO (all on purpose, so a method means the same as in rlbook):

* advantages: the rlbook estimator replaces TRL's ``scale_rewards`` / ``multi_objective_aggregation``
  (both ignored).  TRL's GRPO divides by ``std + 1e-4``; rlbook's ``grpo`` by ``std + 1e-6`` (both std with
  Bessel's correction).  A reward function that returns ``None`` gives NaN in TRL; here it counts as 0.
* the loss: TRL's ``loss_type`` and ``importance_sampling_level`` are ignored; the clip range is TRL's
  ``epsilon`` / ``epsilon_high`` (passed as ``eps_low`` / ``eps_high`` to losses that take them).  The KL
  term is ``beta * losses.kl(kind=kl_kind)``; ``k3`` is TRL's estimator.  ``rlbook.training.trainer`` normalises
  ``seq_mean_token_sum_norm`` by ``max_new_tokens``; here by ``max_completion_length`` (the same setting).
  TRL's ``use_bias_correction_kl`` (default True) multiplies the KL by the differentiable ratio
  ``exp(logp - old_logp)``, which changes the KL gradient even on-policy; ``rlbook.training.trainer`` does not, so
  :func:`grpo_config_kwargs` turns it off (when it is on, this trainer applies it as TRL does).
* TRL options this trainer refuses (ParamError): ``top_entropy_quantile < 1``, ``off_policy_mask_threshold``,
  ``delta``, an entropy bonus, ``multi_objective_aggregation="normalize_then_sum"``.
* a loss that compares the samples of a group (``group_ids``, e.g. GTPO) sees only the rows of its group that
  fall in the same micro-batch (TRL shuffles the generation batch before splitting it); it is exact when one
  micro-batch holds the whole generation batch.
* rlbook settings without a TRL twin (``filters``, a non-uniform ``sampler``, ``phases``, uneven groups) are
  refused by :func:`grpo_config_kwargs` (:func:`rlbook.application.integrations.carry.plan`), never dropped.
* one rlbook step is one generation batch and ``inner_epochs`` optimizer steps: ``max_steps = steps x
  inner_epochs``, ``eval_steps`` and ``save_steps`` likewise; estimators and rewards get rlbook's step
  (``global_step // inner_epochs``).  Evaluation (``eval_steps``) is rlbook's: greedy pass@1 on the first
  ``eval_size`` held-out problems (:meth:`RlbookGRPOTrainer.evaluate`), and ``gen_token_budget`` stops
  training after the step that crosses it, as ``rlbook.training.trainer.Trainer.fit``.
* a stateful estimator's state (``single_stream``) is saved in each TRL checkpoint
  (``rlbook_estimator_state.pt``) and restored on resume; evaluation works on a copy of it.
"""

from __future__ import annotations

import copy
import inspect
import math
import os
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from rlbook.application.integrations import carry
from rlbook.core.config import KL_KINDS, ParamError
from rlbook.mechanisms import components, estimators, losses, rewards  # noqa: F401  (components registers every family)
from rlbook.mechanisms.losses import AGGREGATIONS

try:
    from accelerate.utils import gather_object
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer
    from trl.trainer.utils import use_adapter
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError("rlbook.application.integrations.trl needs TRL: pip install -e '.[bench]' -c constraints/trl.txt") from e


# ---------------------------------------------------------------------------------------------------------
# dataset and rewards
# ---------------------------------------------------------------------------------------------------------


def task_dataset(task: Any, split: str = "train") -> Any:
    """The task's problems as a TRL conversational dataset: ``prompt``, ``problem_index``, ``split``, ``answer``."""
    from datasets import Dataset

    if split not in ("train", "eval"):
        raise ParamError(f"split={split!r} is not allowed; allowed: train, eval")
    problems = task.train if split == "train" else task.eval
    return Dataset.from_list([
        {"prompt": p.messages, "problem_index": p.index, "split": split, "answer": p.answer} for p in problems
    ])


def completion_text(completion: Any) -> str:
    """The text of a TRL completion (a string, or conversational ``[{"role": "assistant", "content": ...}]``)."""
    if isinstance(completion, str):
        return completion
    return "".join(m.get("content", "") for m in completion if isinstance(m, Mapping))


def reward_function(name: str, task: Any, *, max_new_tokens: int | None = None, group_size: int | None = None,
                    tokenizer: Any = None, inner_epochs: int = 1, **kwargs: Any) -> Callable[..., list[float]]:
    """rlbook reward ``name`` as a TRL reward function (``__name__`` is ``name``, TRL logs it under that).

    The dataset must carry ``problem_index`` and ``split`` (:func:`task_dataset`).  The reward gets the context
    its signature names, as in rlbook's trainer: ``task``, ``lengths`` (the number of completion tokens TRL
    passes, through the first EOS), ``correct`` (the task's verifier), ``max_new_tokens`` (pass
    ``GRPOConfig.max_completion_length``), ``prompt_ids``, ``group_size`` (pass ``GRPOConfig.num_generations``),
    ``tokenizer`` and ``finished`` (the completion ends with the tokenizer's EOS; without a tokenizer: it is
    shorter than ``max_new_tokens``), ``step`` / ``total_steps`` (rlbook's steps: TRL's ``trainer_state``
    counts optimizer steps, ``inner_epochs`` per generation) and, for a stateful reward, its own ``state``
    object (kept by this function across calls).
    """
    entry = rewards.REWARDS.entry(name)
    rewards.REWARDS.check_hyper(name, kwargs)
    for key, value, what in (("max_new_tokens", max_new_tokens, "GRPOConfig.max_completion_length"),
                             ("group_size", group_size, "GRPOConfig.num_generations"),
                             ("tokenizer", tokenizer, "the processing class")):
        if key in entry.needs and value is None:
            raise ParamError(f"reward {name!r} needs {key} ({what})")
    state = rewards.REWARDS.make_state(name)

    def reward(
        prompts: list[Any],
        completions: list[Any],
        completion_ids: list[list[int]] | None = None,
        problem_index: list[int] | None = None,
        split: list[str] | None = None,
        **_: Any,
    ) -> list[float]:
        if problem_index is None:
            raise ParamError(f"reward {name!r}: the dataset needs a problem_index column "
                             "(build it with rlbook.application.integrations.trl.task_dataset)")
        splits = split or ["train"] * len(problem_index)
        problems = [(task.train if s == "train" else task.eval)[i] for i, s in zip(problem_index, splits, strict=True)]
        if "lengths" in entry.needs and completion_ids is None:
            raise ParamError(f"reward {name!r} needs completion lengths; TRL passes completion_ids")
        texts = [completion_text(c) for c in completions]
        context = {"task": task, "max_new_tokens": max_new_tokens, "prompt_ids": list(problem_index), "state": state,
                   "lengths": None if completion_ids is None else [len(ids) for ids in completion_ids],
                   "correct": [task.score(p, t) >= 1.0 for p, t in zip(problems, texts, strict=True)],
                   "group_size": group_size, "tokenizer": tokenizer,
                   "finished": None if completion_ids is None else _finished(completion_ids, tokenizer, max_new_tokens)}
        trainer_state = _.get("trainer_state")
        if trainer_state is not None:
            context.update(step=int(trainer_state.global_step) // inner_epochs,
                           total_steps=max(1, int(trainer_state.max_steps) // inner_epochs))
        return [float(v) for v in rewards.REWARDS.call(name, texts, problems, context=context, **kwargs)]

    reward.__rlbook_stateful__ = state is not None  # type: ignore[attr-defined]
    reward.__name__ = name
    reward.__qualname__ = name
    return reward


def _finished(completion_ids: list[list[int]], tokenizer: Any, max_new_tokens: int | None) -> list[bool]:
    """Each completion ended with EOS (TRL's completion ids run through the first EOS); without a tokenizer, a
    completion shorter than ``max_new_tokens`` counts as finished."""
    eos = getattr(tokenizer, "eos_token_id", None)
    if eos is not None:
        return [bool(ids) and ids[-1] == eos for ids in completion_ids]
    return [max_new_tokens is None or len(ids) < max_new_tokens for ids in completion_ids]


def reward_functions(spec: list[Mapping[str, Any]], task: Any, max_new_tokens: int, group_size: int | None = None,
                     tokenizer: Any = None, inner_epochs: int = 1) -> tuple[list[Callable], list[float]]:
    """``train.rewards`` (``[{name, weight, kwargs}]``) as TRL reward functions and their ``reward_weights``."""
    funcs = [reward_function(r["name"], task, max_new_tokens=max_new_tokens, group_size=group_size,
                             tokenizer=tokenizer, inner_epochs=inner_epochs, **dict(r.get("kwargs") or {}))
             for r in spec]
    return funcs, [float(r.get("weight", 1.0)) for r in spec]


# ---------------------------------------------------------------------------------------------------------
# GRPOConfig from rlbook train settings
# ---------------------------------------------------------------------------------------------------------


# the estimator context RlbookGRPOTrainer builds from TRL's batch (rlbook_advantages)
TRL_CONTEXT = carry.ESTIMATOR_CONTEXT["trl"]


def _micro_batch(batch: int, wanted: int) -> int:
    """The largest divisor of ``batch`` that is at most ``wanted`` (TRL splits a batch into equal micro-batches)."""
    return max(d for d in range(1, min(batch, wanted) + 1) if batch % d == 0)


def grpo_config_kwargs(train: Mapping[str, Any], num_processes: int = 1) -> dict[str, Any]:
    """``GRPOConfig`` kwargs for rlbook train settings (``TrainConfig`` fields); a ParamError naming every
    mechanism TRL cannot carry (:func:`rlbook.application.integrations.carry.plan`), so nothing is silently dropped.

    One optimizer step is ``prompts_per_step x group_size`` samples over all ``num_processes`` processes, as
    one rlbook step: each process trains ``batch / num_processes`` of them in equal micro-batches of at most
    ``micro_batch_size`` (gradient accumulation over the rest).  TRL's ``generation_batch_size`` is global, so
    one generation feeds ``inner_epochs`` optimizer steps (``num_iterations``): TRL counts optimizer steps, so
    ``max_steps``, ``eval_steps`` and ``save_steps`` are rlbook's steps x ``inner_epochs`` and the number of
    generation batches is rlbook's ``steps``.  The rlbook-specific settings (estimator, loss, aggregation,
    kl_kind, gen_token_budget, eval_size) go to :class:`RlbookGRPOTrainer`, see :func:`trainer_kwargs`.
    """
    from rlbook.core.config import TrainConfig, build

    cfg = build(TrainConfig, dict(train), "train")
    carry.plan(cfg.to_dict(), "trl").require()
    batch = cfg.prompts_per_step * cfg.group_size
    if num_processes < 1 or batch % num_processes:
        raise ParamError(f"prompts_per_step x group_size = {batch} samples cannot be split over {num_processes} "
                         "processes; make it a multiple of the number of processes")
    micro = _micro_batch(batch // num_processes, cfg.micro_batch_size)
    mu = cfg.inner_epochs
    kwargs = {
        "num_generations": cfg.group_size,
        "generation_batch_size": batch,
        "per_device_train_batch_size": micro,
        "gradient_accumulation_steps": batch // num_processes // micro,
        "max_completion_length": cfg.max_new_tokens,
        "temperature": cfg.temperature,
        "top_p": cfg.top_p,
        "top_k": 0,
        "num_iterations": mu,
        "beta": cfg.kl_coef,
        "epsilon": cfg.eps_low,
        "epsilon_high": cfg.eps_high,
        "learning_rate": cfg.lr,
        "weight_decay": cfg.weight_decay,
        "adam_beta1": float(cfg.betas[0]),
        "adam_beta2": float(cfg.betas[1]),
        "max_grad_norm": cfg.max_grad_norm,
        "lr_scheduler_type": "constant",
        "warmup_steps": 0,
        "max_steps": cfg.steps * mu,  # TRL counts optimizer steps: inner_epochs of them per generation batch
        "seed": cfg.seed,
        "mask_truncated_completions": False,
        "use_bias_correction_kl": False,  # rlbook's KL term is plain beta * k3 (see the module doc)
        # rlbook's held-out evaluation every eval_every steps (RlbookGRPOTrainer.evaluate: greedy pass@1)
        "eval_strategy": "steps" if cfg.eval_every else "no",
        "eval_steps": cfg.eval_every * mu if cfg.eval_every else None,
        "num_generations_eval": 1,
        "per_device_eval_batch_size": 1,
        # checkpoints every checkpoint_every steps (0: rlbook saves only at the end; the script saves the model)
        "save_strategy": "steps" if cfg.checkpoint_every else "no",
        "save_steps": cfg.checkpoint_every * mu if cfg.checkpoint_every else 500,
    }
    return kwargs


def trainer_kwargs(train: Mapping[str, Any]) -> dict[str, Any]:
    """The :class:`RlbookGRPOTrainer` keyword arguments of rlbook train settings."""
    keys = ("estimator", "estimator_kwargs", "loss", "loss_kwargs", "aggregation", "kl_kind", "gen_token_budget",
            "eval_size")
    from rlbook.core.config import TrainConfig, build

    cfg = build(TrainConfig, dict(train), "train")
    return {k: getattr(cfg, k) for k in keys}


# ---------------------------------------------------------------------------------------------------------
# the trainer
# ---------------------------------------------------------------------------------------------------------


def _fit_width(x: Tensor, width: int) -> Tensor:
    if x.shape[-1] >= width:
        return x[..., :width]
    return torch.nn.functional.pad(x, (0, width - x.shape[-1]))


def _refuse_unsupported(args: Any) -> None:
    """ParamError for TRL loss options this trainer does not implement (it replaces TRL's loss)."""
    bad = []
    if getattr(args, "top_entropy_quantile", 1.0) < 1.0:
        bad.append(f"top_entropy_quantile={args.top_entropy_quantile}")
    for key in ("off_policy_mask_threshold", "delta"):
        if getattr(args, key, None) is not None:
            bad.append(f"{key}={getattr(args, key)}")
    if getattr(args, "entropy_coef", 0.0) or getattr(args, "use_adaptive_entropy", False):
        bad.append(f"entropy_coef={getattr(args, 'entropy_coef', 0.0)}")
    if getattr(args, "multi_objective_aggregation", "sum_then_normalize") != "sum_then_normalize":
        bad.append(f"multi_objective_aggregation={args.multi_objective_aggregation!r}")
    if bad:
        raise ParamError(f"RlbookGRPOTrainer replaces TRL's advantages and loss and does not support {', '.join(bad)}; "
                         "leave them at TRL's defaults")


class RlbookGRPOTrainer(GRPOTrainer):
    """``trl.GRPOTrainer`` whose advantages come from an rlbook estimator and whose loss is an rlbook loss.

    ``estimator`` / ``estimator_kwargs``: any :func:`rlbook.mechanisms.estimators.available` name and its hyper-parameters;
    ``loss`` / ``loss_kwargs``: any :func:`rlbook.mechanisms.losses.available` name; ``aggregation``: one of
    ``rlbook.mechanisms.losses.AGGREGATIONS``; ``kl_kind``: the KL estimator used when ``args.beta > 0``.  Everything else
    (generation, vLLM, accelerate / DeepSpeed / FSDP, logging, checkpoints) is TRL's.  The estimator's context is
    built as ``rlbook.training.trainer.Trainer`` builds it: rewards ``[P, G]`` from the weighted reward functions,
    ``reward_parts`` their unweighted scores, ``correct`` the ``correct`` reward >= 1 (else the reward >= 1),
    ``prompt_ids`` the dataset's ``problem_index``, ``lengths`` completion tokens through EOS,
    ``seq_log_ratio`` (only for estimators that take it) the summed log-ratio to the reference policy,
    ``step`` / ``total_steps`` rlbook's steps (one per generation batch).  The loss gets ``correct`` and
    ``max_new_tokens`` too (DRPO).  ``gen_token_budget`` > 0 stops training after the step whose generation
    crossed it (:class:`TokenBudget`); ``task`` enables :meth:`evaluate` (rlbook's greedy pass@1 on the first
    ``eval_size`` problems of the eval dataset).
    """

    def __init__(
        self,
        model: Any,
        reward_funcs: Any = None,
        args: GRPOConfig | None = None,
        *,
        estimator: str = "grpo",
        estimator_kwargs: Mapping[str, Any] | None = None,
        loss: str = "ppo_clip",
        loss_kwargs: Mapping[str, Any] | None = None,
        aggregation: str = "seq_mean_token_mean",
        kl_kind: str = "k3",
        gen_token_budget: int = 0,
        eval_size: int | None = None,
        task: Any = None,
        **kwargs: Any,
    ):
        self.rlbook_estimator = estimator
        self.rlbook_task = task
        self.rlbook_eval_size = eval_size
        self.rlbook_gen_tokens = 0
        self.rlbook_estimator_kwargs = dict(estimator_kwargs or {})
        self.rlbook_loss = loss
        self.rlbook_aggregation = aggregation
        self.rlbook_kl_kind = kl_kind
        self._check_rlbook_settings(dict(loss_kwargs or {}))
        if args is not None:
            _refuse_unsupported(args)
        super().__init__(model, reward_funcs, args, **kwargs)
        _refuse_unsupported(self.args)
        stateful = [getattr(f, "__name__", "?") for f in self.reward_funcs if getattr(f, "__rlbook_stateful__", False)]
        if stateful and self.accelerator.num_processes > 1:
            raise ParamError(f"reward(s) {', '.join(stateful)} keep state across steps inside one process; TRL scores "
                             f"each process's completions separately, so run them on one process (not "
                             f"{self.accelerator.num_processes})")
        if gen_token_budget:
            self.add_callback(TokenBudget(self, gen_token_budget))
        hyper = {"eps_low": self.epsilon_low, "eps_high": self.epsilon_high, **dict(loss_kwargs or {})}
        accepted = losses.hyper_parameters(loss)
        self._rlbook_loss_hyper = {k: v for k, v in hyper.items() if k in accepted}
        self.rlbook_state = estimators.make_state(estimator)
        self._rlbook_parts: Tensor | None = None

    def _check_rlbook_settings(self, loss_kwargs: dict[str, Any]) -> None:
        for key, value, allowed in (("estimator", self.rlbook_estimator, estimators.available()),
                                    ("loss", self.rlbook_loss, losses.available()),
                                    ("aggregation", self.rlbook_aggregation, AGGREGATIONS.available()),
                                    ("kl_kind", self.rlbook_kl_kind, list(KL_KINDS))):
            if value not in allowed:
                raise ParamError(f"{key}={value!r} is not allowed; allowed: {', '.join(allowed)}")
        missing = sorted(estimators.ESTIMATORS.entry(self.rlbook_estimator).required - TRL_CONTEXT)
        if missing:
            raise ParamError(f"estimator {self.rlbook_estimator!r} needs {', '.join(missing)}, which only rlbook's "
                             f"trainer computes (token-level signals, phases); under TRL an estimator gets: "
                             f"{', '.join(sorted(TRL_CONTEXT))}")
        unknown = sorted(set(self.rlbook_estimator_kwargs) - set(estimators.hyper_parameters(self.rlbook_estimator)))
        unknown += sorted(set(loss_kwargs) - set(losses.hyper_parameters(self.rlbook_loss)))
        if unknown:
            raise ParamError(f"unknown hyper-parameter(s) {', '.join(unknown)} for estimator "
                             f"{self.rlbook_estimator!r} / loss {self.rlbook_loss!r}")

    # ------------------------------------------------------------------------------------- advantages
    def _calculate_rewards(self, inputs: Any, prompts: Any, completions: Any, completion_ids_list: Any) -> Tensor:
        parts = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._rlbook_parts = parts  # [N, K] over all processes, unweighted, NaN where a function returned None
        return parts

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        out = super()._generate_and_score_completions(inputs)
        mode = "train" if self.model.training else "eval"
        group = self.num_generations if mode == "train" else self.num_generations_eval
        adv = self.rlbook_advantages(inputs, out, group)
        rows = out["completion_mask"].shape[0]
        start = self.accelerator.process_index * rows
        local = adv[start : start + rows]
        if local.dim() == 2:
            local = _fit_width(local, out["completion_mask"].shape[1])
        out["advantages"] = local.to(out["advantages"].device, out["advantages"].dtype)
        out["rlbook_group_ids"] = torch.arange(start, start + rows, device=local.device) // group
        out["rlbook_correct"] = self._rlbook_correct[start : start + rows].to(local.device)
        if mode == "train":  # completion tokens generated over all processes (rlbook's gen_tokens)
            self.rlbook_gen_tokens += int(self.accelerator.gather(self._loss_mask(out).sum()).sum())
        logged = self._logs["advantages"]
        for _ in range(min(adv.shape[0], len(logged))):  # TRL logged its own advantages: log ours instead
            logged.pop()
        logged.extend(adv.reshape(adv.shape[0], -1).mean(-1).tolist())
        return out

    def _loss_mask(self, out: Mapping[str, Any]) -> Tensor:
        mask = out["completion_mask"]
        return mask * out["tool_mask"] if "tool_mask" in out else mask

    def rlbook_advantages(self, inputs: list[dict[str, Any]], out: Mapping[str, Any], group: int) -> Tensor:
        """Advantages of every row of the generation batch over all processes, ``[N]`` (or ``[N, T]``)."""
        if self._rlbook_parts is None:
            raise RuntimeError("rewards were not computed before the advantages")
        parts = torch.nan_to_num(self._rlbook_parts.float(), nan=0.0)
        n = parts.shape[0]
        P = n // group
        weights = self.reward_weights.to(parts.device).float()
        reward = (parts * weights).sum(-1).view(P, group)
        lengths = self.accelerator.gather(self._loss_mask(out).sum(1).float()).to(parts.device).view(P, group)
        names = list(self.reward_func_names)
        correct = parts[:, names.index("correct")] >= 1.0 if "correct" in names else reward.reshape(-1) >= 1.0
        self._rlbook_correct = correct
        context: dict[str, Any] = {
            "lengths": lengths,
            "reward_parts": parts.view(P, group, -1),
            "part_weights": weights,
            "correct": correct.view(P, group),
            "prompt_ids": self._prompt_ids(inputs, group, P, parts.device),
            "max_new_tokens": self.max_completion_length,
            "step": self.rlbook_step(),
            "total_steps": max(1, int(self.state.max_steps or 1) // self.num_iterations),
            # evaluation must not move a stateful estimator's memory (rlbook's trainer computes none there)
            "state": self.rlbook_state if self.model.training else copy.deepcopy(self.rlbook_state),
        }
        wanted = inspect.signature(estimators.get(self.rlbook_estimator)).parameters.get("seq_log_ratio")
        if wanted is not None:
            ratio = self._seq_log_ratio(out, required=wanted.default is inspect.Parameter.empty)
            if ratio is not None:
                context["seq_log_ratio"] = ratio.to(parts.device).view(P, group)
        adv = estimators.compute(self.rlbook_estimator, reward, context=context, **self.rlbook_estimator_kwargs)
        return adv.reshape(n, *adv.shape[2:])

    def rlbook_step(self) -> int:
        """rlbook's step: the number of generation batches trained so far (TRL counts optimizer steps)."""
        return int(self.state.global_step) // self.num_iterations

    def _prompt_ids(self, inputs: list[dict[str, Any]], group: int, P: int, device: torch.device) -> Tensor:
        ids = gather_object([x.get("problem_index") for x in inputs])
        if any(i is None for i in ids):
            if self.rlbook_state is not None:
                raise ParamError(f"estimator {self.rlbook_estimator!r} keeps per-prompt state: the dataset needs a "
                                 "problem_index column (rlbook.application.integrations.trl.task_dataset)")
            return torch.arange(P, device=device)
        return torch.tensor([int(ids[g * group]) for g in range(P)], device=device)

    def _seq_log_ratio(self, out: Mapping[str, Any], required: bool) -> Tensor | None:
        """Sum over completion tokens of log pi_theta - log pi_ref, gathered over processes, ``[N]``.

        ``None`` when there is no reference policy (no PEFT adapter, ``beta == 0``) and the estimator can do
        without it; a ParamError when it cannot.
        """
        ids = torch.cat([out["prompt_ids"], out["completion_ids"]], dim=1)
        att = torch.cat([out["prompt_mask"], out["completion_mask"]], dim=1)
        width = out["completion_ids"].shape[1]
        size = self.args.per_device_train_batch_size
        with torch.no_grad():
            cur = out.get("old_per_token_logps")
            if cur is None:
                cur = self._get_per_token_logps_and_entropies(self.model, ids, att, width, batch_size=size)[0]
            ref = out.get("ref_per_token_logps")
            if ref is None:
                ref = self._reference_logps(ids, att, width, size, required)
            if ref is None:
                return None
        mask = self._loss_mask(out).to(cur.dtype)
        return self.accelerator.gather(((cur - ref) * mask).sum(1))

    def _reference_logps(self, ids: Tensor, att: Tensor, width: int, size: int, required: bool) -> Tensor | None:
        if getattr(self, "ref_model", None) is not None:
            return self._get_per_token_logps_and_entropies(self.ref_model, ids, att, width, batch_size=size)[0]
        unwrapped = self.accelerator.unwrap_model(self.model)
        if not hasattr(unwrapped, "peft_config"):
            if not required:
                return None
            raise ParamError(f"estimator {self.rlbook_estimator!r} needs the reference policy: train a PEFT adapter "
                             "(the reference is the adapter disabled) or set GRPOConfig(beta > 0)")
        with use_adapter(unwrapped, adapter_name="ref" if "ref" in unwrapped.peft_config else None):
            return self._get_per_token_logps_and_entropies(self.model, ids, att, width, batch_size=size)[0]

    # ----------------------------------------------------------------------------------- checkpoints
    STATE_FILE = "rlbook_estimator_state.pt"

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        """TRL's checkpoint plus a stateful estimator's state (as TRL saves its entropy controller's)."""
        super()._save_checkpoint(model, trial)
        if self.rlbook_state is not None and self.args.should_save:
            from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

            folder = os.path.join(self._get_output_dir(trial=trial), f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
            torch.save(self.rlbook_state.state_dict(), os.path.join(folder, self.STATE_FILE))

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        super()._load_optimizer_and_scheduler(checkpoint)
        path = os.path.join(checkpoint, self.STATE_FILE) if checkpoint is not None else None
        if self.rlbook_state is not None and path is not None and os.path.exists(path):
            self.rlbook_state.load_state_dict(torch.load(path, weights_only=True))

    # ------------------------------------------------------------------------------------------ loss
    def _normalisers(self, inputs: Mapping[str, Any], mask: Tensor, mode: str) -> tuple[float | None, Any]:
        """Whole-step ``n_seqs`` / ``n_tokens`` per process, so micro-batch losses add up (TRL's own scaling)."""
        if mode != "train":
            return None, None
        accum = self.current_gradient_accumulation_steps
        n_seqs = float(mask.shape[0] * accum)
        tokens = inputs["num_items_in_batch"].float() / self.accelerator.num_processes
        return n_seqs, tokens * accum / self.args.steps_per_generation

    def _compute_loss(self, model: Any, inputs: dict[str, Any]) -> Tensor:
        ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1)
        att = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
        width = inputs["completion_ids"].shape[1]
        mask = self._loss_mask(inputs)
        logp, entropy, aux_loss = self._get_per_token_logps_and_entropies(
            model, ids, att, width, compute_entropy=True, compute_aux_loss=self.aux_loss_enabled)
        old = inputs.get("old_per_token_logps")
        old = logp.detach() if old is None else old
        ref = inputs.get("ref_per_token_logps")
        fmask = mask.to(logp.dtype)
        context = {"entropy": entropy, "token_ids": inputs["completion_ids"], "group_ids": inputs.get("rlbook_group_ids"),
                   "ref_logp": ref, "correct": inputs.get("rlbook_correct"), "max_new_tokens": self.max_completion_length}
        context = {k: v for k, v in context.items() if k in losses.context_names(self.rlbook_loss)}
        token_loss, info = losses.compute(self.rlbook_loss, logp, old, inputs["advantages"], fmask,
                                          context={k: v for k, v in context.items() if v is not None},
                                          **self._rlbook_loss_hyper)
        if "importance_sampling_ratio" in inputs:  # TRL's vLLM sampling correction, as TRL applies it
            token_loss = token_loss * inputs["importance_sampling_ratio"]
        kl = None
        if self.beta != 0.0:
            kl = losses.kl(logp, ref, kind=self.rlbook_kl_kind, mask=fmask)
            if self.args.use_bias_correction_kl:  # TRL's DeepSeek-V3.2 correction, as TRL applies it
                kl = kl * torch.exp((logp - old).clamp(-20.0, 20.0))
            token_loss = token_loss + self.beta * kl
        mode = "train" if self.model.training else "eval"
        n_seqs, n_tokens = self._normalisers(inputs, mask, mode)
        loss = losses.aggregate(token_loss, fmask, self.rlbook_aggregation, max_tokens=self.max_completion_length,
                                n_seqs=n_seqs, n_tokens=n_tokens)  # type: ignore[arg-type]
        if self.aux_loss_enabled:
            accum = self.current_gradient_accumulation_steps if mode == "train" else 1.0
            loss = loss + self.router_aux_loss_coef * aux_loss / accum
        self._log_rlbook(mode, info, entropy, kl, fmask)
        return loss

    def _log_rlbook(self, mode: str, info: dict[str, Tensor], entropy: Tensor, kl: Tensor | None, mask: Tensor) -> None:
        def global_mean(x: Tensor) -> float:
            totals = self.accelerator.reduce(torch.stack([(x * mask).sum(), mask.sum()]).detach(), reduction="sum")
            return float(totals[0] / totals[1].clamp(min=1.0))

        self._metrics[mode]["entropy"].append(global_mean(entropy))
        if kl is not None:
            self._metrics[mode]["kl"].append(global_mean(kl))
        for key, value in info.items():
            v = self.accelerator.gather(value.detach().float().reshape(1)).nanmean().item()
            if math.isfinite(v):
                self._metrics[mode][f"rlbook/{key}"].append(v)

    # ------------------------------------------------------------------------------------ evaluation
    def evaluate(self, eval_dataset: Any = None, ignore_keys: Any = None, metric_key_prefix: str = "eval") -> dict[str, float]:
        """rlbook's held-out evaluation (``rlbook.training.trainer.Trainer.evaluate``): greedy pass@1 and mean completion
        length on the first ``eval_size`` problems of the eval dataset, at ``max_completion_length`` tokens.
        TRL calls it every ``eval_steps`` (its own ``eval_strategy``); each process scores a share of the
        problems and the results are gathered."""
        data = eval_dataset if eval_dataset is not None else self.eval_dataset
        if data is None or self.rlbook_task is None:
            raise ParamError("RlbookGRPOTrainer.evaluate needs the task (task=...) and an eval dataset "
                             "(rlbook.application.integrations.trl.task_dataset(task, 'eval'))")
        from rlbook.policy.generation import left_pad, prompt_ids

        rows = list(data)[: self.rlbook_eval_size or len(data)]
        mine = rows[self.accelerator.process_index :: self.accelerator.num_processes]
        tok = self.processing_class
        model = self.accelerator.unwrap_model(self.model)
        was_training = model.training
        model.eval()
        results: list[tuple[bool, int]] = []
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        size = max(1, self.args.per_device_train_batch_size)
        with torch.no_grad():
            for i in range(0, len(mine), size):
                chunk = mine[i : i + size]
                ids, att = left_pad([prompt_ids(tok, r["prompt"]) for r in chunk], pad, self.accelerator.device)
                out = model.generate(input_ids=ids, attention_mask=att, do_sample=False,
                                     max_new_tokens=self.max_completion_length, pad_token_id=pad)
                for r, seq in zip(chunk, out[:, ids.shape[1] :].tolist(), strict=True):
                    n = _through_eos(seq, model.generation_config.eos_token_id, tok.eos_token_id)
                    text = tok.decode(seq[:n], skip_special_tokens=True)
                    problems = self.rlbook_task.train if r["split"] == "train" else self.rlbook_task.eval
                    results.append((self.rlbook_task.score(problems[r["problem_index"]], text) >= 1.0, n))
        everything = gather_object(results)
        metrics = {f"{metric_key_prefix}_accuracy": sum(c for c, _ in everything) / max(len(everything), 1),
                   f"{metric_key_prefix}_response_length": sum(n for _, n in everything) / max(len(everything), 1),
                   f"{metric_key_prefix}_n": float(len(everything))}
        self.log(metrics)  # in eval mode: TRL's log adds no training metrics to these
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        model.train(was_training)
        return metrics


def _through_eos(ids: list[int], *eos: Any) -> int:
    """Number of completion tokens through the first end token (rlbook counts the EOS, as TRL's mask does)."""
    ends: set[int] = set()
    for e in eos:
        ends.update(e if isinstance(e, (list, tuple)) else [] if e is None else [e])
    for i, t in enumerate(ids):
        if t in ends:
            return i + 1
    return len(ids)


class TokenBudget(TrainerCallback):
    """``train.gen_token_budget``: stop after the step whose generation brought the completion tokens generated
    (over all processes) to the budget, as ``rlbook.training.trainer.Trainer.fit`` (the step that crosses it is the last).
    Checked at the end of each rlbook step (every ``num_iterations`` optimizer steps)."""

    def __init__(self, trainer: RlbookGRPOTrainer, budget: int):
        self.trainer, self.budget = trainer, int(budget)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if state.global_step % self.trainer.num_iterations == 0 and self.trainer.rlbook_gen_tokens >= self.budget:
            control.should_training_stop = True
        return control
