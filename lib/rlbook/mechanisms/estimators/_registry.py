"""The estimator registry (a :class:`rlbook.core.registry.Registry`) and the strict ``compute`` dispatcher."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor

from rlbook.core.errors import ParamError
from rlbook.core.registry import Registry

# What the trainer can hand an estimator; each entry is passed only when the estimator's signature names
# it, and the costly ones (``seq_log_ratio``: a reference pass) are computed only then.
CONTEXT_NAMES = frozenset(
    {
        "lengths",  # [P, G] completion lengths in tokens (through the first EOS)
        "reward_parts",  # [P, G, K] each reward function's unweighted score
        "part_weights",  # [K] their weights
        "correct",  # [P, G] bool: the task verifier's verdict
        "answer_ids",  # [P, G] long: equal ids = equal extracted answers within a group
        "prompt_ids",  # [P] long: dataset index of each prompt
        "seq_log_ratio",  # [P, G] sum over completion tokens of log pi_theta - log pi_ref
        "token_log_ratio",  # [P, G, T] per completion token log pi_theta - log pi_ref (0 beyond the length)
        "spo_drift",  # [P] policy drift on each prompt's previous response (phase rlbook.mechanisms.spo.SPODrift)
        # token- and step-level signals (rlbook.mechanisms.process, rlbook.mechanisms.prm, rlbook.mechanisms.credit; estimators/process.py)
        "token_mask",  # [P, G, T] float: 1 on completion tokens through EOS
        "completion_ids",  # [P, G, T] long: the sampled token ids
        "old_logp",  # [P, G, T] log-prob of each sampled token under the sampling distribution
        "step_index",  # [P, G, T] long: the step (line) of each token, -1 on padding
        "token_rewards",  # [P, G, T] process reward per token (a process-reward phase)
        "step_rewards",  # [P, G, K] process reward per step (a process-reward phase)
        "step_mask",  # [P, G, K] bool: step k exists
        "step_values",  # [P, G, K] a value of the state after each step (SPAE's potential)
        "token_values",  # [P, G, T] Monte Carlo value after token t, NaN where none was estimated
        "prompt_values",  # [P, G] Monte Carlo value of the prompt alone, NaN when not estimated
        "tree_edges",  # [P, G, T] 1 on the tree segments a completion trains (phase rlbook.mechanisms.spo_tree.SPOTree)
        "redundant_span",  # [P, G, 2] token span after the first correct answer (phase rlbook.mechanisms.length answer_marks)
        "budget_scores",  # [P, G, S] answer scores at truncation budgets (phase rlbook.mechanisms.length budget_answers)
        "budget_ends",  # [S] the budgets in tokens (phase rlbook.mechanisms.length budget_answers)
        "max_new_tokens",
        "step",
        "total_steps",
        "state",  # the estimator's own state object (stateful estimators)
        "sample_mask",  # [P, G] bool: which slots hold a sample (uneven groups; given only then)
        "replayed",  # [P, G] bool: slots holding a replayed past sample (phase rlbook.mechanisms.curricula.r3_replay)
        "values",  # [P, G, T] a value model's V(s_t) per sampled token (phase rlbook.mechanisms.curricula.tppo_critic)
        "finished",  # [P, G] bool: the completion ended with EOS (else truncated at max_new_tokens)
        "lp_proxy_log_ratio",  # [P, G, T] log pi_proxy - log pi per sampled token (phase rlbook.mechanisms.exploration.lp_proxy)
    }
)

ESTIMATORS = Registry("estimator", leading=("rewards",), context=CONTEXT_NAMES)
# context that exists only for real completions (tokens, steps): estimators naming it are token-level
TOKEN_CONTEXT = frozenset({"token_mask", "completion_ids", "old_logp", "step_index", "token_rewards", "step_rewards",
                           "step_mask", "step_values", "token_values", "prompt_values", "tree_edges",
                           "redundant_span", "budget_scores", "budget_ends", "values", "lp_proxy_log_ratio"})
Estimator = Callable[..., Tensor]


def register(
    name: str,
    *,
    stateful: bool = False,
    state_factory: Callable[[], Any] | None = None,
    needs: tuple[str, ...] = (),
    ragged: bool = False,
) -> Callable[[Estimator], Estimator]:
    """Register an estimator under ``name``; a stateful one names a factory for its state object.  An estimator
    that names token-level context (:data:`TOKEN_CONTEXT`) returns ``[P, G, T]`` advantages (trait ``token_level``).
    ``ragged=True``: it supports uneven groups (its signature names ``sample_mask`` and every group statistic
    reduces over the filled slots only)."""
    if stateful and state_factory is None:
        raise ValueError(f"stateful estimator {name!r} needs a state_factory")

    def deco(fn: Estimator) -> Estimator:
        import inspect

        named = set(inspect.signature(fn).parameters) | set(needs)
        return ESTIMATORS.register(name, state=state_factory, needs=needs, ragged=ragged,
                                   token_level=bool(named & TOKEN_CONTEXT))(fn)

    return deco


def token_level(name: str) -> bool:
    """Whether estimator ``name`` works on the completions' tokens (and returns ``[P, G, T]``)."""
    return bool(ESTIMATORS.entry(name).traits.get("token_level", False))


def ragged_ones() -> list[str]:
    """The estimators that support uneven groups (``sample_mask``)."""
    return [n for n in ESTIMATORS.available() if ESTIMATORS.entry(n).traits.get("ragged")]


available = ESTIMATORS.available
get = ESTIMATORS.get
make_state = ESTIMATORS.make_state
hyper_parameters = ESTIMATORS.hyper_parameters


def compute(name: str, rewards: Tensor, context: dict[str, Any] | None = None, **hyper: Any) -> Tensor:
    """Advantages ``[P, G]`` (or ``[P, G, T]``; float32) of estimator ``name``.

    Each context entry is passed only if the function's signature names it; hyper-parameters are
    passed strictly (an unknown one is a ``ParamError`` listing the allowed ones).
    """
    if rewards.dim() != 2:
        raise ParamError(f"rewards must be [P, G]; got shape {tuple(rewards.shape)}")
    mask = (context or {}).get("sample_mask")
    if mask is not None and not bool(mask.all()) and not ESTIMATORS.entry(name).traits.get("ragged"):
        raise ParamError(f"estimator {name!r} does not support uneven groups (a sample_mask with empty slots: "
                         f"rollout budgets, replayed or dropped samples); those that do: {', '.join(ragged_ones())}")
    out = ESTIMATORS.call(name, rewards.float(), context=context, **hyper)
    if out.shape[:2] != rewards.shape:
        raise RuntimeError(f"estimator {name!r} returned shape {tuple(out.shape)} for rewards {tuple(rewards.shape)}")
    return out.float()
