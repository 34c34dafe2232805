"""Typed, documented configuration for training, validated once at the edge (a leaf module).

Every knob is a dataclass field with a default.  ``__post_init__`` checks types and ranges and raises
:class:`ParamError` with a one-line message that names the bad value and the allowed ones.  Names of
mechanisms (estimator, loss, rewards, sampler, filters, phases, aggregation) are checked against their
registries by :func:`rlbook.mechanisms.components.build`, one layer up: this module imports nothing from rlbook
but its errors.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from rlbook.core.errors import ParamError

__all__ = ["KL_KINDS", "MECHANISM_FIELDS", "ParamError", "TrainConfig", "build", "is_checked", "mark_checked"]


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


KL_KINDS = ("k1", "k2", "k3")
# the fields whose values a registry checks (rlbook.mechanisms.components.check); setting one clears the checked mark
MECHANISM_FIELDS = frozenset({"estimator", "estimator_kwargs", "loss", "loss_kwargs", "eps_low", "eps_high",
                              "aggregation", "rewards", "filters", "sampler", "sampler_kwargs", "phases"})
_CHECKED = "_mechanisms_checked"  # an instance attribute, not a field: never in to_dict() or a cache key


def _mechanism_list(key: str, items: Any, allowed_keys: tuple[str, ...]) -> None:
    """``items`` is a list of mappings, each with a ``name`` and only ``allowed_keys``."""
    if not isinstance(items, list):
        raise ParamError(f"{key}={items!r} must be a list of mappings like {{name: ..., kwargs: {{...}}}}")
    for i, r in enumerate(items):
        if not isinstance(r, dict) or "name" not in r:
            raise ParamError(f"{key}[{i}]={r!r} must be a mapping with a 'name'")
        unknown = set(r) - set(allowed_keys)
        if unknown:
            raise ParamError(f"{key}[{i}] has unknown key {sorted(unknown)[0]!r}; allowed: {', '.join(allowed_keys)}")
        if not isinstance(r.get("kwargs", {}), dict):
            raise ParamError(f"{key}[{i}].kwargs={r['kwargs']!r} must be a mapping")


@dataclass
class TrainConfig:
    """Every knob of the GRPO-style LoRA trainer (:mod:`rlbook.training.trainer`)."""

    seed: int = 0
    steps: int = 10
    prompts_per_step: int = 8  # P: prompts sampled per step
    group_size: int = 8  # G: completions per prompt (with uneven groups: the most a group can hold)
    rollouts_per_prompt: int = 0  # completions generated per prompt (0 = group_size; fewer leaves slots for phases)
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
    estimator: str = "grpo"  # rlbook.mechanisms.estimators name
    estimator_kwargs: dict[str, Any] = field(default_factory=dict)
    loss: str = "ppo_clip"  # rlbook.mechanisms.losses name
    loss_kwargs: dict[str, Any] = field(default_factory=dict)
    eps_low: float = 0.2  # PPO clip 1 - eps_low
    eps_high: float = 0.2  # PPO clip 1 + eps_high (DAPO clip-higher: > eps_low)
    aggregation: str = "seq_mean_token_mean"  # rlbook.mechanisms.losses.AGGREGATIONS name
    kl_coef: float = 0.0  # beta of the KL-to-reference loss term (0 = no reference pass)
    kl_kind: str = "k3"  # one of KL_KINDS
    rewards: list[dict[str, Any]] = field(default_factory=lambda: [{"name": "correct", "weight": 1.0}])
    eval_every: int = 0  # held-out eval every N steps (0 = only when called)
    eval_size: int = 100
    eval_pass_k: int = 0  # sampled pass@k during eval (0 = off)
    filters: list[dict[str, Any]] = field(default_factory=list)  # rlbook.mechanisms.filters: which groups enter the update
    max_sampling_rounds: int = 3  # generation rounds per step at most while filters drop groups
    top_up: bool = False  # at the round limit, fill the batch with dropped groups (else train on fewer)
    sampler: str = "uniform"  # rlbook.mechanisms.sampling name (how prompts are drawn for each step)
    sampler_kwargs: dict[str, Any] = field(default_factory=dict)
    phases: list[dict[str, Any]] = field(default_factory=list)  # rlbook.mechanisms.phases: extra stages of a step
    generation_backend: str = "rlbook"  # "rlbook": shared prompt prefill per group; "hf": transformers.generate
    merge_lora_for_generation: bool = True  # generate with W + BA merged (exact restore afterwards)
    share_prompt_forward: bool = True  # training forward encodes each group's prompt once (same result)
    prefix_cache: bool = False  # generation encodes the prompts' common first tokens (few-shot examples) once
    skip_zero_advantage: bool = True  # skip the training forward for samples with A = 0 when nothing needs them
    max_bad_steps: int = 3  # consecutive non-finite steps before the run fails
    checkpoint_every: int = 5  # steps between checkpoints when a checkpoint folder is given (0 = only at the end)
    gen_token_budget: int = 0  # stop training once this many tokens were generated, phases' included (0 = off)

    def __post_init__(self) -> None:
        for key, lo in (("seed", 0), ("steps", 0), ("prompts_per_step", 1), ("group_size", 1), ("max_new_tokens", 1),
                        ("micro_batch_size", 1), ("gen_batch_size", 1), ("inner_epochs", 1), ("eval_every", 0),
                        ("eval_size", 1), ("eval_pass_k", 0), ("max_bad_steps", 1), ("checkpoint_every", 0),
                        ("max_sampling_rounds", 1), ("rollouts_per_prompt", 0), ("gen_token_budget", 0)):
            _range(f"train.{key}", getattr(self, key), lo, kind=int)
        _range("train.temperature", self.temperature, 1e-4)
        _range("train.top_p", self.top_p, 1e-4, 1.0)
        for key in ("lr", "weight_decay", "kl_coef"):
            _range(f"train.{key}", getattr(self, key), 0.0)
        _range("train.eps_low", self.eps_low, 0.0, 1.0)
        _range("train.eps_high", self.eps_high, 0.0)
        _choice("train.kl_kind", self.kl_kind, KL_KINDS)
        _choice("train.generation_backend", self.generation_backend, ("rlbook", "hf"))
        for key in ("estimator_kwargs", "loss_kwargs", "sampler_kwargs"):
            if not isinstance(getattr(self, key), dict):
                raise ParamError(f"train.{key}={getattr(self, key)!r} must be a mapping")
        self.betas = tuple(self.betas)  # type: ignore[assignment]
        if not self.rewards:
            raise ParamError("train.rewards must list at least one reward, e.g. [{name: correct, weight: 1.0}]")
        _mechanism_list("train.rewards", self.rewards, ("name", "weight", "kwargs"))
        for i, r in enumerate(self.rewards):
            _range(f"train.rewards[{i}].weight", r.get("weight", 1.0))
        _mechanism_list("train.filters", self.filters, ("name", "kwargs"))
        _mechanism_list("train.phases", self.phases, ("name", "kwargs"))
        if self.rollouts_per_prompt > self.group_size:
            raise ParamError(f"train.rollouts_per_prompt={self.rollouts_per_prompt} must be <= train.group_size="
                             f"{self.group_size} (the number of slots of a group)")

    def __setattr__(self, name: str, value: Any) -> None:
        if name in MECHANISM_FIELDS:
            self.__dict__.pop(_CHECKED, None)  # a new mechanism name or hyper-parameter is checked again
        object.__setattr__(self, name, value)

    @property
    def batch_size(self) -> int:
        return self.prompts_per_step * self.group_size

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d


def mark_checked(cfg: TrainConfig) -> TrainConfig:
    """Record that ``cfg``'s mechanisms passed :func:`rlbook.mechanisms.components.check` (copies keep the mark; setting a
    field of :data:`MECHANISM_FIELDS` clears it).  Only that check calls this."""
    cfg.__dict__[_CHECKED] = True
    return cfg


def is_checked(cfg: TrainConfig) -> bool:
    """``cfg``'s mechanisms were checked and none was set since (so the trainer does not check them again)."""
    return bool(cfg.__dict__.get(_CHECKED))


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
