"""Typed, documented configuration for training, validated once at the edge.

Every knob is a dataclass field with a default.  ``__post_init__`` checks ranges and names and
raises :class:`ParamError` with a one-line message that names the bad value and the allowed ones.
``SECTIONS`` maps a top-level params key (in ``params/*.yaml``) to the dataclass that validates it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


class ParamError(ValueError):
    """A bad parameter: the message names the key, the bad value and what is allowed."""


def _choice(key: str, value: Any, allowed: list[str] | tuple[str, ...]) -> None:
    if value not in allowed:
        raise ParamError(f"{key}={value!r} is not allowed; allowed: {', '.join(map(str, allowed))}")


def _range(key: str, value: Any, lo: float | None = None, hi: float | None = None, kind: type = float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int):
        raise ParamError(f"{key}={value!r} must be {'a number' if kind is float else 'an integer'}")
    if lo is not None and value < lo:
        raise ParamError(f"{key}={value!r} must be >= {lo}")
    if hi is not None and value > hi:
        raise ParamError(f"{key}={value!r} must be <= {hi}")


AGGREGATIONS = ("seq_mean_token_mean", "token_mean", "seq_mean_token_sum_norm", "seq_mean_token_sum")
KL_KINDS = ("k1", "k2", "k3")


@dataclass
class RewardSpec:
    """One reward function and its weight in the scalar reward."""

    name: str = "correct"
    weight: float = 1.0
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainConfig:
    """Every knob of the GRPO-style LoRA trainer (:mod:`rlbook.trainer`)."""

    seed: int = 0
    steps: int = 10
    prompts_per_step: int = 8  # P: prompts sampled per step
    group_size: int = 8  # G: completions per prompt
    max_new_tokens: int = 32
    temperature: float = 1.0
    top_p: float = 1.0
    lr: float = 2e-4  # AdamW on the LoRA parameters
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.99)
    max_grad_norm: float = 1.0  # gradient clipping (<= 0 turns it off)
    micro_batch_size: int = 16  # sequences per forward/backward in the training pass
    gen_batch_size: int = 64  # sequences per generate() call
    inner_epochs: int = 1  # mu: passes over each batch with stored old log-probs
    estimator: str = "grpo"  # rlbook.estimators name
    estimator_kwargs: dict[str, Any] = field(default_factory=dict)
    loss: str = "ppo_clip"  # rlbook.losses name
    loss_kwargs: dict[str, Any] = field(default_factory=dict)
    eps_low: float = 0.2  # PPO clip 1 - eps_low
    eps_high: float = 0.2  # PPO clip 1 + eps_high (DAPO clip-higher: > eps_low)
    aggregation: str = "seq_mean_token_mean"  # one of AGGREGATIONS
    kl_coef: float = 0.0  # beta of the KL-to-reference loss term (0 = no reference pass)
    kl_kind: str = "k3"  # one of KL_KINDS
    rewards: list[dict[str, Any]] = field(default_factory=lambda: [{"name": "correct", "weight": 1.0}])
    eval_every: int = 0  # held-out eval every N steps (0 = only when called)
    eval_size: int = 100
    eval_pass_k: int = 0  # sampled pass@k during eval (0 = off)
    dynamic_sampling: bool = False  # DAPO: drop groups whose rewards are all equal and draw more prompts
    dynamic_sampling_max_rounds: int = 3  # generation rounds per step at most, under dynamic sampling
    sampler: str = "uniform"  # rlbook.sampling name (how prompts are drawn for each step)
    sampler_kwargs: dict[str, Any] = field(default_factory=dict)
    generation_backend: str = "rlbook"  # "rlbook": shared prompt prefill per group; "hf": transformers.generate
    merge_lora_for_generation: bool = True
    share_prompt_forward: bool = True  # training forward encodes each group's prompt once (same result)  # generate with W + BA merged (exact restore afterwards)
    skip_zero_advantage: bool = True  # skip the training forward for samples with A = 0 when nothing needs them
    max_bad_steps: int = 3  # consecutive non-finite steps before the run fails
    checkpoint_every: int = 5  # steps between checkpoints when a checkpoint folder is given (0 = only at the end)

    def __post_init__(self) -> None:
        _range("train.seed", self.seed, 0, kind=int)
        _range("train.steps", self.steps, 0, kind=int)
        _range("train.prompts_per_step", self.prompts_per_step, 1, kind=int)
        _range("train.group_size", self.group_size, 1, kind=int)
        _range("train.max_new_tokens", self.max_new_tokens, 1, kind=int)
        _range("train.temperature", self.temperature, 1e-4)
        _range("train.top_p", self.top_p, 1e-4, 1.0)
        _range("train.lr", self.lr, 0.0)
        _range("train.weight_decay", self.weight_decay, 0.0)
        _range("train.micro_batch_size", self.micro_batch_size, 1, kind=int)
        _range("train.gen_batch_size", self.gen_batch_size, 1, kind=int)
        _range("train.inner_epochs", self.inner_epochs, 1, kind=int)
        _range("train.eps_low", self.eps_low, 0.0, 1.0)
        _range("train.eps_high", self.eps_high, 0.0)
        _range("train.kl_coef", self.kl_coef, 0.0)
        _range("train.eval_every", self.eval_every, 0, kind=int)
        _range("train.eval_size", self.eval_size, 1, kind=int)
        _range("train.eval_pass_k", self.eval_pass_k, 0, kind=int)
        _range("train.max_bad_steps", self.max_bad_steps, 1, kind=int)
        _range("train.checkpoint_every", self.checkpoint_every, 0, kind=int)
        _range("train.dynamic_sampling_max_rounds", self.dynamic_sampling_max_rounds, 1, kind=int)
        _choice("train.aggregation", self.aggregation, AGGREGATIONS)
        _choice("train.kl_kind", self.kl_kind, KL_KINDS)
        _choice("train.generation_backend", self.generation_backend, ("rlbook", "hf"))
        self.betas = tuple(self.betas)  # type: ignore[assignment]
        from rlbook import estimators, losses, rewards, sampling

        _choice("train.estimator", self.estimator, estimators.available())
        _choice("train.loss", self.loss, losses.available())
        _choice("train.sampler", self.sampler, sampling.available())
        if not self.rewards:
            raise ParamError("train.rewards must list at least one reward, e.g. [{name: correct, weight: 1.0}]")
        for i, r in enumerate(self.rewards):
            if not isinstance(r, dict) or "name" not in r:
                raise ParamError(f"train.rewards[{i}]={r!r} must be a mapping with a 'name'")
            unknown = set(r) - {"name", "weight", "kwargs"}
            if unknown:
                raise ParamError(f"train.rewards[{i}] has unknown key {sorted(unknown)[0]!r}; allowed: name, weight, kwargs")
            _choice(f"train.rewards[{i}].name", r["name"], rewards.available())
            _range(f"train.rewards[{i}].weight", r.get("weight", 1.0))

    @property
    def batch_size(self) -> int:
        return self.prompts_per_step * self.group_size

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d


def build(cls: type, value: Any, section: str) -> Any:
    """Construct dataclass ``cls`` from a params mapping, with one-line errors for unknown keys."""
    if isinstance(value, cls):
        return value
    if not isinstance(value, dict):
        raise ParamError(f"{section}={value!r} must be a mapping")
    names = [f.name for f in dataclasses.fields(cls)]
    for key in value:
        if key not in names:
            raise ParamError(f"unknown key {section}.{key}; allowed: {', '.join(names)}")
    try:
        return cls(**value)
    except ParamError:
        raise
    except (TypeError, ValueError) as e:
        raise ParamError(f"{section}: {e}") from e


def sections() -> dict[str, type]:
    """Top-level params keys that a dataclass validates (used by :mod:`rlbook.params`)."""
    from rlbook.models import LoraConfig
    from rlbook.tasks import TaskSpec

    return {"train": TrainConfig, "lora": LoraConfig, "task": TaskSpec}
