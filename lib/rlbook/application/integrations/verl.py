"""rlbook estimators and losses in verl's own registries, with adapters for verl's tensor layout.

Importing this module registers every rlbook estimator as verl advantage estimator ``rlbook_<name>`` and
every rlbook loss as verl policy loss ``rlbook_<name>`` (prefixed: verl's own ``grpo``, ``rloo``, ``gspo``,
``sapo``, ``cispo`` stay untouched).  When the environment variable ``RLBOOK_VERL_METHOD`` holds a method's
train settings as JSON (what ``rlbook export --to verl`` writes), it also registers ``rlbook_method`` (the
method's estimator and loss with its hyper-parameters).  verl imports the module in every process,
Ray workers included, when it is named in ``VERL_USE_EXTERNAL_MODULES``::

    VERL_USE_EXTERNAL_MODULES=rlbook.application.integrations.verl python -m verl.trainer.main_ppo \\
        algorithm.adv_estimator=rlbook_rloo actor_rollout_ref.actor.policy_loss.loss_mode=rlbook_gspo ...

Layout (verl 0.9.1, ``verl/trainer/ppo/core_algos.py`` and ``ray_trainer.py::compute_advantage``):

* an advantage estimator is called as ``fn(token_level_rewards[bs, T], response_mask[bs, T], index=uid,
  config=AlgoConfig)`` and returns ``(advantages[bs, T], returns[bs, T])``.  The scalar reward of a
  response is ``token_level_rewards.sum(-1)`` (as verl's GRPO), and ``index`` holds one group id per row,
  in any order, groups possibly of unequal size.  The adapter gathers the rows into rlbook's ``[P, G]``
  layout (groups in order of first appearance, rows in batch order), calls
  :func:`rlbook.mechanisms.estimators.compute`, scatters the result back and broadcasts it over the response tokens.
* a policy loss is called as ``fn(old_log_prob, log_prob, advantages, response_mask, loss_agg_mode,
  config=ActorConfig, rollout_is_weights)`` and returns ``(scalar loss, metrics)``.  The adapter calls
  :func:`rlbook.mechanisms.losses.compute` and reduces with :func:`rlbook.mechanisms.losses.aggregate`, mapping verl's
  ``loss_agg_mode`` to rlbook's aggregation and verl's ``config.global_batch_info`` (data-parallel size,
  global token and sequence counts) to ``n_tokens`` / ``n_seqs``, so the loss is the same under FSDP.

What verl's interface cannot give (and so what is refused with a :class:`~rlbook.core.config.ParamError`):

* the reference log-ratio ``seq_log_ratio``: ``compute_advantage`` passes no log-probs, so estimators that
  require it (``ace``, ``arm``) cannot be registered; those with it optional (``canon``, ``single_stream``)
  run without it;
* reward parts: verl passes one summed reward, so ``reward_parts`` is that reward as a single part
  (``bnpo``'s and ``dvao``'s decomposition need several parts and see one); ``correct`` is
  ``reward >= correct_threshold`` (1.0);
* ``step`` / ``total_steps``: not passed; estimators get their defaults (``a_grae``'s ``curriculum="step"``
  would stay at step 0: use its default ``curriculum="accuracy"``);
* losses whose context is required (``gtpo`` needs token ids, group ids and entropies) cannot be registered;
* unequal group sizes: only :data:`GROUP_LOCAL` estimators (each group's advantages depend on that group
  alone) are computed per group size; the others fit batch statistics over a ``[P, G]`` batch and refuse.
* stateful estimators (``single_stream``) keep their state in the adapter, keyed by the ``index`` value.
  Stock verl draws a fresh ``uuid4`` per prompt per step as ``uid``, so no prompt is ever seen again and the
  tracker never learns: such estimators need a recipe whose ``uid`` is a stable prompt key (e.g.
  ``extra_info.index``); the adapter warns when, after two calls, no key has come back.  The state lives in
  the driver process and is not part of verl's checkpoints.
"""

from __future__ import annotations

import inspect
import json
import os
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from rlbook.application.integrations import carry
from rlbook.core.config import ParamError
from rlbook.mechanisms import components, estimators, losses  # noqa: F401  (components registers every family)

try:
    from verl.trainer.ppo import core_algos
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(
        "rlbook.application.integrations.verl needs verl: pip install verl==0.9.1 --no-deps, plus ray, tensordict==0.10.0, "
        "omegaconf, hydra-core and codetiming for its algorithm module"
    ) from e

PREFIX = "rlbook_"
METHOD_NAME = "rlbook_method"
METHOD_ENV = "RLBOOK_VERL_METHOD"
# verl's loss_agg_mode -> rlbook's aggregation (verl's "token-sum" has no rlbook twin)
TO_VERL_AGGREGATION = dict(carry.AGGREGATION_TO_VERL)
AGGREGATIONS = {v: k for k, v in TO_VERL_AGGREGATION.items()}
# Estimators whose advantages for one group depend on that group's rewards alone (tests check this by
# computing each group separately), so a batch with unequal group sizes can be computed size by size.
GROUP_LOCAL = frozenset({"reinforce", "rloo", "grpo", "dr_grpo", "ngrpo"})
# Context verl's compute_advantage cannot provide: an estimator that requires it cannot be registered.
UNAVAILABLE = {
    "seq_log_ratio": "verl's compute_advantage passes no log-probs, so the log-ratio to the reference is unknown",
}


# ---------------------------------------------------------------------------------------------------------
# advantage estimators
# ---------------------------------------------------------------------------------------------------------


def group_rows(index: Sequence[Any] | Any) -> list[list[int]]:
    """Row numbers of each group: groups in order of first appearance, rows in batch order."""
    keys = index.tolist() if hasattr(index, "tolist") else list(index)
    groups: dict[Any, list[int]] = {}
    for row, key in enumerate(keys):
        groups.setdefault(key, []).append(row)
    return list(groups.values())


def _required_context(name: str) -> list[str]:
    params = list(inspect.signature(estimators.get(name)).parameters.values())[1:]
    return [p.name for p in params if p.name in estimators.CONTEXT_NAMES and p.default is inspect.Parameter.empty]


# the context the advantage adapter builds from verl's batch (rlbook_advantage)
VERL_CONTEXT = carry.ESTIMATOR_CONTEXT["verl"]


def _check_estimator(name: str, hyper: dict[str, Any]) -> None:
    blocked = {k: UNAVAILABLE.get(k, "only rlbook's trainer computes it (token-level signals, phases)")
               for k in _required_context(name) if k not in VERL_CONTEXT}
    if blocked:
        why = "; ".join(f"{k}: {v}" for k, v in blocked.items())
        raise ParamError(f"estimator {name!r} cannot run inside verl: it needs {why}")
    unknown = sorted(set(hyper) - set(estimators.hyper_parameters(name)))
    if unknown:
        allowed = ", ".join(estimators.hyper_parameters(name)) or "(none)"
        raise ParamError(f"estimator {name!r} has no hyper-parameter {', '.join(unknown)}; allowed: {allowed}")


def _fit_width(x: Tensor, width: int) -> Tensor:
    """Token-level ``[..., T]`` cut or zero-padded to ``width`` columns."""
    if x.shape[-1] >= width:
        return x[..., :width]
    return torch.nn.functional.pad(x, (0, width - x.shape[-1]))


class _Keys:
    """Stable integer prompt ids for a stateful estimator, keyed by verl's ``index`` values."""

    def __init__(self) -> None:
        self.ids: dict[Any, int] = {}
        self.calls = 0
        self.revisits = 0
        self.warned = False

    def lookup(self, keys: list[Any]) -> list[int]:
        self.calls += 1
        self.revisits += sum(k in self.ids for k in keys)
        if self.calls >= 2 and not self.revisits and not self.warned:
            self.warned = True
            warnings.warn("stateful rlbook estimator inside verl: no group id has come back after two steps; "
                          "verl's default uid is a fresh uuid4 per prompt and step, so the per-prompt state never "
                          "learns.  Use a recipe whose uid is a stable prompt key.", stacklevel=3)
        return [self.ids.setdefault(k, len(self.ids)) for k in keys]


def estimator_adapter(name: str, correct_threshold: float = 1.0, **hyper: Any) -> Callable[..., tuple[Tensor, Tensor]]:
    """rlbook estimator ``name`` (with ``hyper``) as a verl advantage estimator function (see the module doc)."""
    _check_estimator(name, hyper)
    state = estimators.make_state(name)
    keys = _Keys() if state is not None else None

    def rlbook_advantage(
        token_level_rewards: Tensor, response_mask: Tensor, index: Any = None, config: Any = None, **_: Any
    ) -> tuple[Tensor, Tensor]:
        if index is None:
            raise ParamError(f"estimator {name!r} needs verl's group index (non_tensor_batch['uid']); none was given")
        scores = token_level_rewards.sum(-1).float()
        lengths = response_mask.sum(-1).float()
        width = response_mask.shape[-1]
        by_size: dict[int, list[list[int]]] = {}
        for g in group_rows(index):
            by_size.setdefault(len(g), []).append(g)
        if len(by_size) > 1 and name not in GROUP_LOCAL:
            raise ParamError(f"estimator {name!r} fits batch statistics over equal-size groups, but verl's batch has "
                             f"groups of sizes {sorted(by_size)}; estimators that allow unequal groups: "
                             f"{', '.join(sorted(GROUP_LOCAL))}")
        out = torch.zeros(scores.shape[0], width, dtype=torch.float32, device=scores.device)
        keys_in = index.tolist() if hasattr(index, "tolist") else list(index)
        for groups in by_size.values():
            rows = torch.tensor(groups, device=scores.device)  # [P, G]
            reward = scores[rows]
            ids = keys.lookup([keys_in[g[0]] for g in groups]) if keys is not None else range(len(groups))
            context: dict[str, Any] = {
                "lengths": lengths[rows],
                "reward_parts": reward.unsqueeze(-1),
                "part_weights": torch.ones(1, device=scores.device),
                "correct": reward >= correct_threshold,
                "prompt_ids": torch.tensor(list(ids), device=scores.device),
                "max_new_tokens": width,
                "state": state,
            }
            adv = estimators.compute(name, reward, context=context, **hyper)
            flat = adv.reshape(rows.numel(), *adv.shape[2:])
            out[rows.reshape(-1)] = _fit_width(flat, width) if flat.dim() == 2 else flat.unsqueeze(-1).expand(-1, width)
        adv_tokens = (out * response_mask).to(token_level_rewards.dtype)
        return adv_tokens, adv_tokens

    rlbook_advantage.__rlbook__ = ("estimator", name, json.dumps(hyper, sort_keys=True))  # type: ignore[attr-defined]
    rlbook_advantage.__name__ = f"rlbook_{name}_advantage"
    return rlbook_advantage


# ---------------------------------------------------------------------------------------------------------
# policy losses
# ---------------------------------------------------------------------------------------------------------


def _get(config: Any, key: str, default: Any = None) -> Any:
    if config is None:
        return default
    if hasattr(config, "get"):
        return config.get(key, default)
    return getattr(config, key, default)


def _check_loss(name: str, hyper: dict[str, Any]) -> None:
    fn = losses.get(name)
    params = inspect.signature(fn).parameters
    required = [k for k in losses.context_names(name) if params[k].default is inspect.Parameter.empty]
    if required:
        raise ParamError(f"loss {name!r} cannot run inside verl: it needs context {', '.join(required)}, which "
                         "verl's policy-loss interface (log-probs, advantages, mask) does not pass")
    unknown = sorted(set(hyper) - set(losses.hyper_parameters(name)))
    if unknown:
        allowed = ", ".join(losses.hyper_parameters(name)) or "(none)"
        raise ParamError(f"loss {name!r} has no hyper-parameter {', '.join(unknown)}; allowed: {allowed}")


def aggregation_for(loss_agg_mode: str) -> str:
    """rlbook aggregation of verl's ``loss_agg_mode`` (ParamError for verl modes rlbook does not have)."""
    if loss_agg_mode not in AGGREGATIONS:
        raise ParamError(f"loss_agg_mode={loss_agg_mode!r} has no rlbook aggregation; allowed: {', '.join(AGGREGATIONS)}")
    return AGGREGATIONS[loss_agg_mode]


def _clip_hyper(name: str, hyper: dict[str, Any], config: Any) -> dict[str, Any]:
    """``eps_low`` / ``eps_high`` from verl's ``clip_ratio_low`` / ``clip_ratio_high`` unless bound at registration."""
    out = dict(hyper)
    params = losses.hyper_parameters(name)
    base = _get(config, "clip_ratio")
    for ours, theirs in (("eps_low", "clip_ratio_low"), ("eps_high", "clip_ratio_high")):
        value = _get(config, theirs)
        value = base if value is None else value
        if ours in params and ours not in out and value is not None:
            out[ours] = float(value)
    return out


def loss_adapter(name: str, **hyper: Any) -> Callable[..., tuple[Tensor, dict[str, Any]]]:
    """rlbook loss ``name`` (with ``hyper``) as a verl policy-loss function (see the module doc)."""
    _check_loss(name, hyper)

    def rlbook_policy_loss(
        old_log_prob: Tensor,
        log_prob: Tensor,
        advantages: Tensor,
        response_mask: Tensor,
        loss_agg_mode: str = "token-mean",
        config: Any = None,
        rollout_is_weights: Tensor | None = None,
    ) -> tuple[Tensor, dict[str, Any]]:
        mode = aggregation_for(loss_agg_mode)
        mask = response_mask.to(log_prob.dtype)
        token_loss, info = losses.compute(name, log_prob, old_log_prob, advantages, mask, context={},
                                          **_clip_hyper(name, hyper, config))
        if rollout_is_weights is not None:
            token_loss = token_loss * rollout_is_weights
        batch = dict(_get(config, "global_batch_info") or {})
        dp = float(batch.get("dp_size") or 1)
        n_tokens = None if batch.get("batch_num_tokens") is None else float(batch["batch_num_tokens"]) / dp
        n_seqs = None if batch.get("global_batch_size") is None else float(batch["global_batch_size"]) / dp
        scale = batch.get("loss_scale_factor") or _get(config, "loss_scale_factor") or mask.shape[-1]
        loss = losses.aggregate(token_loss, mask, mode, max_tokens=int(scale), n_seqs=n_seqs, n_tokens=n_tokens)  # type: ignore[arg-type]
        log_ratio = torch.where(mask.bool(), log_prob - old_log_prob, torch.zeros_like(log_prob)).detach()
        metrics: dict[str, Any] = {
            "actor/pg_clipfrac": float(info.get("clip_frac", torch.tensor(0.0))),
            "actor/ppo_kl": float(losses.masked_mean(-log_ratio, mask)),
        }
        metrics.update({f"actor/rlbook/{k}": float(v) for k, v in info.items() if k != "clip_frac"})
        return loss, metrics

    rlbook_policy_loss.__rlbook__ = ("loss", name, json.dumps(hyper, sort_keys=True))  # type: ignore[attr-defined]
    rlbook_policy_loss.__name__ = f"rlbook_{name}_policy_loss"
    return rlbook_policy_loss


# ---------------------------------------------------------------------------------------------------------
# registration
# ---------------------------------------------------------------------------------------------------------


def _claim(registry: dict[str, Any], verl_name: str, kind: str) -> None:
    """Free ``verl_name`` if an earlier rlbook registration holds it; refuse to replace verl's own."""
    held = registry.get(verl_name)
    if held is None:
        return
    if not hasattr(held, "__rlbook__"):
        raise ParamError(f"verl already has its own {kind} {verl_name!r}; pick another name (rlbook uses the "
                         f"prefix {PREFIX!r})")
    del registry[verl_name]


def register_estimator(name: str, verl_name: str | None = None, **hyper: Any) -> str:
    """Register rlbook estimator ``name`` in verl (``algorithm.adv_estimator=<verl_name>``); returns the name."""
    verl_name = verl_name or PREFIX + name
    fn = estimator_adapter(name, **hyper)
    _claim(core_algos.ADV_ESTIMATOR_REGISTRY, verl_name, "advantage estimator")
    core_algos.register_adv_est(verl_name)(fn)
    return verl_name


def register_loss(name: str, verl_name: str | None = None, **hyper: Any) -> str:
    """Register rlbook loss ``name`` in verl (``actor.policy_loss.loss_mode=<verl_name>``); returns the name."""
    verl_name = verl_name or PREFIX + name
    fn = loss_adapter(name, **hyper)
    _claim(core_algos.POLICY_LOSS_REGISTRY, verl_name, "policy loss")
    core_algos.register_policy_loss(verl_name)(fn)
    return verl_name


def register_all() -> dict[str, Any]:
    """Register every rlbook estimator and loss that verl's interface can feed, with rlbook's defaults.

    Returns ``{"estimators": [verl names], "losses": [verl names], "skipped": {rlbook name: reason}}``.
    """
    done: dict[str, Any] = {"estimators": [], "losses": [], "skipped": {}}
    for name in estimators.available():
        try:
            done["estimators"].append(register_estimator(name))
        except ParamError as e:
            done["skipped"][name] = str(e)
    for name in losses.available():
        try:
            done["losses"].append(register_loss(name))
        except ParamError as e:
            done["skipped"][f"loss {name}"] = str(e)
    return done


def register_method(train: dict[str, Any], name: str = METHOD_NAME) -> tuple[str, str]:
    """Register a method's estimator and loss (with their ``*_kwargs``) under ``name`` for both registries.

    ``train`` holds rlbook train settings (``estimator``, ``estimator_kwargs``, ``loss``, ``loss_kwargs``);
    the clip range, aggregation and KL settings belong in verl's own config (``rlbook export`` writes them).
    """
    est = register_estimator(train.get("estimator", "grpo"), name, **dict(train.get("estimator_kwargs") or {}))
    loss = register_loss(train.get("loss", "ppo_clip"), name, **dict(train.get("loss_kwargs") or {}))
    return est, loss


def _register_from_environment() -> None:
    register_all()
    text = os.environ.get(METHOD_ENV)
    if text:
        try:
            train = json.loads(text)
        except json.JSONDecodeError as e:
            raise ParamError(f"{METHOD_ENV} must hold the method's train settings as JSON: {e}") from e
        register_method(train)


_register_from_environment()
