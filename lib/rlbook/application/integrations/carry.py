"""What TRL and verl carry of a method, decided from the registries before anything is written (no engine imported).

:func:`plan` walks every mechanism of a method's train settings (estimator, loss, aggregation, KL, each reward,
filter, sampler and phase, and the trainer settings that change what is trained: inner epochs, rollouts per
prompt, the generated-token budget, evaluation, checkpoints) and says, for one engine, how the engine carries
it or why it cannot.  ``rlbook export`` refuses (exit code 2) when anything is refused, so an export never
trains something other than the notebook's method; docs/SCALE_OUT.md's table is :func:`table` over every
notebook method.

The context each engine's adapters build is listed here once (:data:`ESTIMATOR_CONTEXT`, :data:`LOSS_CONTEXT`,
:data:`REWARD_CONTEXT`); :mod:`rlbook.application.integrations.trl` and :mod:`rlbook.application.integrations.verl` use the same sets.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rlbook.core.config import ParamError, TrainConfig, build

ENGINES = ("trl", "verl")

# The estimator context each adapter builds (RlbookGRPOTrainer.rlbook_advantages; verl's estimator_adapter).
ESTIMATOR_CONTEXT = {
    "trl": frozenset({"lengths", "reward_parts", "part_weights", "correct", "prompt_ids", "max_new_tokens", "step",
                      "total_steps", "state", "seq_log_ratio"}),
    "verl": frozenset({"lengths", "reward_parts", "part_weights", "correct", "prompt_ids", "max_new_tokens", "state"}),
}
# The loss context each adapter passes (RlbookGRPOTrainer._compute_loss; verl's loss_adapter passes none).
LOSS_CONTEXT = {
    "trl": frozenset({"entropy", "token_ids", "group_ids", "ref_logp", "correct", "max_new_tokens"}),
    "verl": frozenset(),
}
# The reward context: TRL's reward functions get all of it; verl's compute_score (reward.py) gets one response
# and its problem, so only the task and the verifier's verdict.
REWARD_CONTEXT = {
    "trl": frozenset({"task", "lengths", "correct", "max_new_tokens", "group_size", "prompt_ids", "step", "total_steps",
                      "state", "finished", "tokenizer"}),
    "verl": frozenset({"task", "correct"}),
}
# Context that rlbook's own trainer fills only through a phase, a non-uniform sampler or uneven groups (all
# refused below), so a method without them does not get it in rlbook either.
PHASE_CONTEXT = frozenset({"sample_mask", "spo_drift", "replayed", "token_rewards"})
# Phases that measure and never change training: the export leaves them out (their metrics are not logged).
MEASUREMENT_PHASES = {"credit_audit": "measures the step's credit assignment against the oracle; never changes it"}
WHY_CONTEXT = {
    "seq_log_ratio": "verl's compute_advantage passes no log-probs, so the log-ratio to the reference is unknown",
    "step": "verl's compute_advantage does not pass the training step",
    "total_steps": "verl's compute_advantage does not pass the number of steps",
    "lengths": "verl's compute_score gets one response string, not its length in tokens",
    "max_new_tokens": "verl's compute_score does not get the generation limit",
    "group_size": "verl's compute_score scores one response at a time, not its group",
    "finished": "verl's compute_score does not know whether the response ended with EOS",
    "tokenizer": "verl's compute_score gets no tokenizer",
    "prompt_ids": "verl's compute_score does not get a stable prompt id",
    "state": "verl's compute_score runs in several reward workers, which cannot share a reward's state",
    "group_ids": "verl's policy-loss interface passes log-probs, advantages and a mask only, no group ids",
    "correct": "verl's policy-loss interface passes no verifier verdicts",
    "entropy": "verl's policy-loss interface passes no entropies",
    "token_ids": "verl's policy-loss interface passes no token ids",
    "ref_logp": "verl's policy-loss interface passes no reference log-probs",
}
KL_TO_VERL = {"k1": "kl", "k2": "mse", "k3": "low_var_kl"}  # rlbook kl_kind -> verl kl_loss_type
AGGREGATION_TO_VERL = {  # rlbook aggregation -> verl loss_agg_mode (rlbook.application.integrations.verl has the inverse)
    "token_mean": "token-mean",
    "seq_mean_token_mean": "seq-mean-token-mean",
    "seq_mean_token_sum_norm": "seq-mean-token-sum-norm",
    "seq_mean_token_sum": "seq-mean-token-sum",
}


@dataclass(frozen=True)
class Item:
    """One mechanism or setting and how the engine carries it (or why it cannot)."""

    mechanism: str
    how: str


@dataclass
class Plan:
    """What one engine carries of a method; ``refused`` empty means the export is faithful."""

    engine: str
    carried: list[Item] = field(default_factory=list)
    refused: list[Item] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # carried, with a difference the engine cannot avoid

    def require(self, what: str = "the method") -> None:
        """ParamError naming every refused mechanism and why (the export's exit code 2)."""
        if self.refused:
            why = "; ".join(f"{r.mechanism}: {r.how}" for r in self.refused)
            raise ParamError(f"{self.engine} cannot carry {what} faithfully, so nothing was written: {why}")


def _entry(kind: str, name: str) -> Any:
    from rlbook.mechanisms import components  # noqa: F401  (registers every family)
    from rlbook.mechanisms.estimators import ESTIMATORS
    from rlbook.mechanisms.filters import FILTERS
    from rlbook.mechanisms.losses import LOSSES
    from rlbook.mechanisms.phases import PHASES
    from rlbook.mechanisms.rewards import REWARDS
    from rlbook.mechanisms.sampling import SAMPLERS

    registry = {"estimator": ESTIMATORS, "loss": LOSSES, "reward": REWARDS, "filter": FILTERS, "phase": PHASES,
                "sampler": SAMPLERS}[kind]
    return registry.entry(name)


def _only_correct(cfg: TrainConfig) -> bool:
    return [(r["name"], float(r.get("weight", 1.0))) for r in cfg.rewards] == [("correct", 1.0)]


def _missing(entry: Any, have: frozenset[str]) -> list[str]:
    """Context the mechanism names that the engine does not build (phase-only context counts when required)."""
    return [k for k in entry.needs if k not in have and (k not in PHASE_CONTEXT or k in entry.required)]


def _why(names: list[str], engine: str) -> str:
    if engine == "verl":
        return "; ".join(f"{k} ({WHY_CONTEXT.get(k, 'only rlbook trainer computes it')})" for k in names)
    return (f"{', '.join(names)}, which only rlbook's trainer computes (token-level signals, phases); TRL's batch "
            "gives the rest")


def _estimator(cfg: TrainConfig, engine: str, plan: Plan) -> None:
    name = cfg.estimator
    entry = _entry("estimator", name)
    what = f"estimator {name}"
    missing = _missing(entry, ESTIMATOR_CONTEXT[engine])
    if missing:
        plan.refused.append(Item(what, f"needs {_why(missing, engine)}"))
        return
    if engine == "trl":
        if "correct" in entry.needs and "correct" not in [r["name"] for r in cfg.rewards]:
            plan.refused.append(Item(what, "reads the verifier's verdicts; under TRL they come from the 'correct' "
                                           "reward function, which train.rewards does not list"))
            return
        plan.carried.append(Item(what, "RlbookGRPOTrainer: rlbook's estimator on TRL's rewards [P, G]"))
        return
    if entry.stateful:
        plan.refused.append(Item(what, "keeps per-prompt state keyed by verl's uid, which stock verl draws fresh "
                                       "(uuid4) for every prompt and step, so the state would never learn"))
        return
    if {"reward_parts", "part_weights"} & set(entry.needs) and len(cfg.rewards) > 1:
        plan.refused.append(Item(what, "reads the reward's parts, but verl passes one summed reward"))
        return
    if "correct" in entry.needs and not _only_correct(cfg):
        plan.refused.append(Item(what, "reads the verifier's verdicts; verl gives reward >= 1, which is the verdict "
                                       "only when the reward is 'correct' alone (weight 1)"))
        return
    plan.carried.append(Item(what, "algorithm.adv_estimator=rlbook_method (verl's register_adv_est)"))


def _loss(cfg: TrainConfig, engine: str, plan: Plan) -> None:
    entry = _entry("loss", cfg.loss)
    what = f"loss {cfg.loss}"
    missing = [k for k in entry.needs if k not in LOSS_CONTEXT[engine]]
    if missing:
        plan.refused.append(Item(what, f"needs {_why(missing, engine)}"))
        return
    if engine == "verl":
        plan.carried.append(Item(what, "actor.policy_loss.loss_mode=rlbook_method (verl's register_policy_loss)"))
        return
    if "correct" in entry.needs and "correct" not in [r["name"] for r in cfg.rewards]:
        plan.refused.append(Item(what, "reads the verifier's verdicts; under TRL they come from the 'correct' reward "
                                       "function, which train.rewards does not list"))
        return
    if "group_ids" in entry.needs and cfg.micro_batch_size < cfg.batch_size:
        plan.refused.append(Item(what, f"compares the samples of a group inside a micro-batch, and TRL shuffles "
                                       f"the generation batch before cutting micro-batches; export with -p "
                                       f"train.micro_batch_size={cfg.batch_size} (one micro-batch, the same loss)"))
        return
    plan.carried.append(Item(what, "RlbookGRPOTrainer._compute_loss: rlbook's loss"))


def _rewards(cfg: TrainConfig, engine: str, plan: Plan) -> None:
    for r in cfg.rewards:
        name = r["name"]
        entry = _entry("reward", name)
        what = f"reward {name}"
        if engine == "trl":
            how = "a TRL reward function (rlbook.application.integrations.trl.reward_function)"
            if entry.stateful:
                how += "; its state lives in the process, so the script refuses more than one process"
            plan.carried.append(Item(what, how))
            continue
        if name == "overlong":
            plan.carried.append(Item(what, "verl's DAPO reward manager, overlong_buffer_cfg (the same Eq. 13)"))
            continue
        missing = [k for k in entry.needs if k not in REWARD_CONTEXT["verl"]]
        if missing:
            plan.refused.append(Item(what, f"needs {_why(missing, engine)}"))
            continue
        plan.carried.append(Item(what, "reward.py (verl's custom_reward_function compute_score)"))


def _filters(cfg: TrainConfig, engine: str, plan: Plan) -> None:
    for f in cfg.filters:
        what = f"filter {f['name']}"
        _entry("filter", f["name"])
        if engine == "verl" and f["name"] == "dynamic_sampling":
            metric = (f.get("kwargs") or {}).get("metric", "acc")
            plan.carried.append(Item(what, f"algorithm.filter_groups (metric {metric})"))
            plan.notes.append(f"filter {f['name']}: verl's replay buffer refills until the batch is full; rlbook stops "
                              f"after train.max_sampling_rounds={cfg.max_sampling_rounds} rounds and "
                              f"{'tops the batch up' if cfg.top_up else 'trains on the groups it kept'}")
            continue
        why = ("TRL's GRPOTrainer trains every generated group; it has no group filter" if engine == "trl"
               else "verl's only group filter is algorithm.filter_groups, DAPO's dynamic sampling")
        plan.refused.append(Item(what, why))


def _settings(cfg: TrainConfig, engine: str, plan: Plan) -> None:
    if cfg.sampler != "uniform":
        _entry("sampler", cfg.sampler)
        plan.refused.append(Item(f"sampler {cfg.sampler}", f"{engine} draws prompts uniformly; rlbook's curriculum "
                                                            "samplers run only in rlbook's trainer"))
    for ph in cfg.phases:
        name = ph["name"]
        _entry("phase", name)
        if name in MEASUREMENT_PHASES:
            plan.notes.append(f"phase {name} {MEASUREMENT_PHASES[name]}: left out, training unchanged")
            continue
        plan.refused.append(Item(f"phase {name}", f"a stage of rlbook's own step; {engine}'s trainer has no hook "
                                                  "for it"))
    if cfg.rollouts_per_prompt not in (0, cfg.group_size):
        plan.refused.append(Item(f"train.rollouts_per_prompt={cfg.rollouts_per_prompt}",
                                 f"uneven groups (fewer rollouts than group_size={cfg.group_size}); {engine} "
                                 "generates full groups"))
    if cfg.eval_pass_k:
        plan.refused.append(Item(f"train.eval_pass_k={cfg.eval_pass_k}", f"{engine}'s evaluation computes greedy "
                                 "accuracy only here; export with -p train.eval_pass_k=0"))
    if cfg.gen_token_budget:
        if engine == "trl":
            plan.carried.append(Item(f"train.gen_token_budget={cfg.gen_token_budget}",
                                     "a TrainerCallback stops after the step that crosses the budget, as rlbook"))
        else:
            plan.refused.append(Item(f"train.gen_token_budget={cfg.gen_token_budget}",
                                     "verl stops after trainer.total_training_steps only; export with -p "
                                     "train.gen_token_budget=0 to stop after train.steps"))
    if engine == "trl":
        plan.carried.append(Item(f"train.inner_epochs={cfg.inner_epochs}",
                                 f"num_iterations={cfg.inner_epochs}, max_steps = steps x inner_epochs = "
                                 f"{cfg.steps * cfg.inner_epochs} (one generation per {cfg.inner_epochs} optimizer steps)"))
        plan.carried.append(Item(f"train.eval_every={cfg.eval_every}, eval_size={cfg.eval_size}",
                                 "eval_strategy=steps, eval_steps = eval_every x inner_epochs: greedy pass@1 on the "
                                 "first eval_size held-out problems, as rlbook" if cfg.eval_every else
                                 "no evaluation during training, as rlbook"))
        plan.carried.append(Item(f"train.checkpoint_every={cfg.checkpoint_every}",
                                 "save_steps = checkpoint_every x inner_epochs (TRL checkpoints)" if cfg.checkpoint_every
                                 else "one checkpoint at the end"))
    else:
        plan.carried.append(Item(f"train.inner_epochs={cfg.inner_epochs}", "actor.ppo_epochs"))
        plan.carried.append(Item(f"train.eval_every={cfg.eval_every}, eval_size={cfg.eval_size}",
                                 "trainer.test_freq on val.parquet (the first eval_size held-out problems), greedy "
                                 "(rollout.val_kwargs do_sample false)" if cfg.eval_every else
                                 "trainer.test_freq=-1: no evaluation during training, as rlbook"))
        plan.carried.append(Item(f"train.checkpoint_every={cfg.checkpoint_every}",
                                 "trainer.save_freq" if cfg.checkpoint_every else
                                 "trainer.save_freq = steps (one checkpoint at the end)"))


def plan(train: Mapping[str, Any], engine: str) -> Plan:
    """What ``engine`` carries of the method ``train`` (rlbook train settings), mechanism by mechanism."""
    if engine not in ENGINES:
        raise ParamError(f"engine={engine!r} is not allowed; allowed: {', '.join(ENGINES)}")
    cfg = build(TrainConfig, dict(train), "train")
    out = Plan(engine)
    _estimator(cfg, engine, out)
    _loss(cfg, engine, out)
    out.carried.append(Item(f"aggregation {cfg.aggregation}",
                            "RlbookGRPOTrainer: rlbook's aggregation with whole-step normalisers" if engine == "trl"
                            else f"actor.loss_agg_mode={AGGREGATION_TO_VERL[cfg.aggregation]}"))
    if cfg.kl_coef > 0:
        out.carried.append(Item(f"KL {cfg.kl_kind} x {cfg.kl_coef}", "beta, rlbook's losses.kl" if engine == "trl" else
                                f"actor.kl_loss_type={KL_TO_VERL[cfg.kl_kind]}, kl_loss_coef"))
        if engine == "verl" and cfg.kl_kind == "k3":
            out.notes.append("KL k3: verl's low_var_kl clamps the estimate to [-10, 10]; rlbook caps the log-ratio at 20")
    _rewards(cfg, engine, out)
    _filters(cfg, engine, out)
    _settings(cfg, engine, out)
    return out


def summary(p: Plan) -> str:
    """One table cell: ``carried`` or ``refused: <mechanisms>``."""
    if p.refused:
        return "refused: " + ", ".join(r.mechanism for r in p.refused)
    return "carried" + (" (see notes)" if p.notes else "")
