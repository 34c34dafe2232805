"""Method presets: each paper's trainer settings, quoted with their source (like TRL's paper index).

A preset is a set of :class:`~rlbook.config.TrainConfig` overrides on top of a notebook's base ``train``
config; the algorithms themselves live in the registries (estimators, losses, rewards, filters, samplers).
Only the settings that define the method are set here: model, task, batch size, learning rate and step count
stay the notebook's (they are scale, not method).  Where our scale forces a difference, ``notes`` says so.

    >>> method_train("dapo")["filters"]
    [{'name': 'dynamic_sampling', 'kwargs': {'metric': 'acc'}}]
    >>> method_train({"preset": "dapo", "filters": []})["filters"]      # an ablation: preset + overrides
    []
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rlbook.errors import ParamError


@dataclass(frozen=True)
class Preset:
    """A method's trainer settings and where they come from."""

    name: str
    paper: str  # full title, authors, year
    source: str  # the section, table or official script the settings are quoted from
    train: dict[str, Any] = field(default_factory=dict)
    notes: str = ""  # differences forced by our scale or setup


_CORRECT = {"name": "correct", "weight": 1.0}

PRESETS: dict[str, Preset] = {p.name: p for p in [
    Preset("grpo", "DeepSeekMath: Pushing the Limits of Mathematical Reasoning in Open Language Models (Shao et al., 2024)",
           "Sec. 4.1: group-normalised outcome advantage, PPO clip eps = 0.2, mean over tokens then samples (Eq. 3)",
           {"estimator": "grpo", "loss": "ppo_clip", "aggregation": "seq_mean_token_mean", "eps_low": 0.2,
            "eps_high": 0.2}),
    Preset("reinforce_baseline", "Simple Statistical Gradient-Following Algorithms (Williams, 1992)",
           "REINFORCE with a reinforcement baseline (Eq. 4); the batch-mean reward as baseline",
           {"estimator": "reinforce_baseline"}),
    Preset("rloo", "Back to Basics: Revisiting REINFORCE Style Optimization for Learning from Human Feedback in LLMs "
           "(Ahmadian et al., 2024)", "Eq. 6: leave-one-out baseline over the k samples of a prompt",
           {"estimator": "rloo"}),
    Preset("reinforce_pp", "REINFORCE++: A Simple and Efficient Approach for Aligning Large Language Models (Hu, 2025)",
           "Eqs. 8-10: KL penalty in the token reward, return with gamma 1, global batch normalisation; the "
           "official framework's script (OpenRLHF examples/scripts/train_reinforce_llama_ray_hybrid_engine.sh): "
           "--advantage_estimator reinforce, --init_kl_coef 1e-4 (k1), no KL loss",
           {"estimator": "reinforce_pp_kl", "estimator_kwargs": {"kl_coef": 1e-4}, "kl_coef": 0.0},
           notes="the script's one sample per prompt, lr 5e-7 and PPO clip are scale or not the estimator; our "
                 "whitening uses Bessel's correction (verl) where OpenRLHF uses the population variance"),
    Preset("reinforce_pp_baseline", "REINFORCE++ (Hu, 2025)",
           "the -baseline variant: group-mean subtraction, then global batch whitening",
           {"estimator": "reinforce_pp_baseline"}),
    Preset("bnpo", "BNPO: Beta Normalization Policy Optimization (Xiao et al., 2025)",
           "official script github.com/changyi7231/BNPO (commit a9c51b9) recipe/bnpo/run.sh: clip 0.2 / 0.28, "
           "dual clip 10, loss_agg_mode seq-mean-token-sum, no KL, advantage decomposition off",
           {"estimator": "bnpo", "eps_low": 0.2, "eps_high": 0.28, "loss_kwargs": {"dual_clip": 10.0},
            "aggregation": "seq_mean_token_sum", "kl_coef": 0.0},
           notes="the script's G = 16, 32 prompts and lr 1e-6 are scale, left to the notebook"),
    Preset("dr_grpo", "Understanding R1-Zero-Like Training: A Critical Perspective (Liu et al., 2025)",
           "Sec. 3.2 Dr. GRPO: no std division (Eq. 3), token sums over a constant length normaliser",
           {"estimator": "dr_grpo", "aggregation": "seq_mean_token_sum_norm"}),
    Preset("lite_ppo", "Part I: Tricks or Traps? A Deep Dive into RL for LLM Reasoning (Liu et al., 2025)",
           "Sec. 4.1 Lite PPO: group-mean + batch-std advantage, token-level loss aggregation, vanilla PPO loss",
           {"estimator": "lite_ppo", "aggregation": "token_mean"}),
    Preset("dapo", "DAPO: An Open-Source LLM Reinforcement Learning System at Scale (Yu et al., 2025)",
           "Sec. 3 and the official recipe (verl recipe/dapo): clip-higher eps_low 0.2 / eps_high 0.28, dynamic "
           "sampling on accuracy, token-level loss, soft overlong punishment (Eq. 13)",
           {"estimator": "grpo", "eps_low": 0.2, "eps_high": 0.28, "aggregation": "token_mean",
            "filters": [{"name": "dynamic_sampling", "kwargs": {"metric": "acc"}}],
            "rewards": [_CORRECT, {"name": "overlong", "weight": 1.0}]},
           notes="at the round limit the official code raises an error; we train on the groups kept and report "
                 "the shortfall"),
    Preset("ngrpo", "NGRPO: Negative-enhanced Group Relative Policy Optimization (Nan et al., 2025)",
           "official code github.com/nangongrui-ngr/NGRPO (commit e7a3804) train_scripts/"
           "train_qwen2.5-math-7b_ngrpo.sh and ray_trainer.py: one virtual max-reward sample, clip 0.16 / 0.24, "
           "token-mean loss, only all-correct groups dropped (all-wrong kept), no KL",
           {"estimator": "ngrpo", "eps_low": 0.16, "eps_high": 0.24, "aggregation": "token_mean", "kl_coef": 0.0,
            "filters": [{"name": "drop_all_correct"}]},
           notes="the code regenerates without a round limit and carries the surplus to the next step; we allow "
                 "max_sampling_rounds and report the shortfall.  Its config's entropy bonus 0.001 and its 4 "
                 "mini-batch updates per rollout batch are not reproduced (one optimizer step per batch)"),
    Preset("gtpo", "GTPO: Trajectory-Based Policy Optimization in Large Language Models (Simoni et al., 2025)",
           "official code github.com/winstonsmith1897/GTPO (commit 5d33811) gtpo/gtpo_training.py and config.yaml: "
           "advantage r - group mean (no std), no clipping, no KL, max_grad_norm 0.1, weight decay 0.1",
           {"estimator": "dr_grpo", "loss": "gtpo", "aggregation": "seq_mean_token_mean", "kl_coef": 0.0,
            "max_grad_norm": 0.1, "weight_decay": 0.1},
           notes="its Adam betas (0.999999, 0.999999), cosine schedule and warm-up are not reproduced"),
    Preset("drpo", "DRPO: Efficient Reasoning via Decoupled Reward Policy Optimization (Li et al., 2025)",
           "official code github.com/Optimization-AI/DRPO (commit 405f702) core_algos.py::compute_policy_loss_drpo "
           "and scripts/train/run_drpo_1.5b_8k.sh: tau 10, Lambda 0.1, KL trust region delta 1e-4, beta 1e3",
           {"loss": "drpo", "aggregation": "seq_mean_token_sum", "kl_coef": 0.0,
            "loss_kwargs": {"tau": 10.0, "Lambda": 0.1, "delta": 1e-4, "beta": 1e3, "kl_kind": "k1"}},
           notes="L_max is the trainer's max_new_tokens; the script's 4 mini-batch updates per rollout (where the "
                 "KL trust region acts) correspond to inner_epochs > 1, left to the notebook"),
    Preset("copo", "COPO: Consistency-Aware Policy Optimization (Han et al., 2025)",
           "official code github.com/hijih/copo-code (commit f66883f) run_copo.sh: global/local blend "
           "w = sigmoid(5 (H - 1)), soft-with-zero, clip 0.2, dual clip 3",
           {"estimator": "copo", "estimator_kwargs": {"k": 5.0, "b": 1.0, "blend": "soft_with_zero"},
            "eps_low": 0.2, "eps_high": 0.2, "loss_kwargs": {"dual_clip": 3.0}, "kl_coef": 0.0}),
    Preset("spo", "Single-stream Policy Optimization (Xu & Ding, 2025)",
           "verl recipe spo/train.sh and spo_trainer.yaml (github.com/verl-project/verl-recipe, commit e477def): "
           "one sample per prompt, KL-adaptive value tracker, clip 0.2 / 0.28, dual clip 10, token-mean loss",
           {"estimator": "single_stream", "group_size": 1, "phases": [{"name": "spo_drift"}], "eps_low": 0.2,
            "eps_high": 0.28, "loss_kwargs": {"dual_clip": 10.0}, "aggregation": "token_mean", "kl_coef": 0.0},
           notes="no offline value initialisation; the prioritised prompt sampler is a separate sampler"),
    Preset("gspo", "Group Sequence Policy Optimization (Zheng et al., 2025)",
           "Eq. 5-7: sequence-level length-normalised ratio clipped at 3e-4 / 4e-4", {"estimator": "grpo", "loss": "gspo"}),
    Preset("sapo", "Soft Adaptive Policy Optimization (Gao et al., 2025)",
           "soft gate f(r) = (4/tau) sigmoid(tau (r - 1)), tau_pos 1.0 / tau_neg 1.05", {"estimator": "grpo", "loss": "sapo"}),
    Preset("cispo", "MiniMax-M1 (MiniMax, 2025)", "Sec. 3.1 Eqs. 4-5: clipped detached IS weight, token-level "
           "normalisation", {"estimator": "grpo", "loss": "cispo", "aggregation": "token_mean"}),
]}

# Trainer overrides by preset name (what notebooks and the sweep merge into their base ``train`` config).
METHODS: dict[str, dict[str, Any]] = {name: p.train for name, p in PRESETS.items()}


def method_train(method: str | Mapping[str, Any]) -> dict[str, Any]:
    """Trainer overrides of a method: a preset name, or a mapping with an optional ``preset`` (a name) plus
    overrides, e.g. ``{"preset": "dapo", "filters": []}``."""
    if isinstance(method, str):
        method = {"preset": method}
    out = dict(method)
    preset = out.pop("preset", None)
    if preset is None:
        return copy.deepcopy(out)
    if preset not in PRESETS:
        raise ParamError(f"method preset {preset!r} is unknown; available: {', '.join(sorted(PRESETS))}")
    return {**copy.deepcopy(PRESETS[preset].train), **copy.deepcopy(out)}


def table() -> list[dict[str, str]]:
    """One row per preset: name, paper, source, settings, notes (for the docs and the compare notebook)."""
    return [{"preset": p.name, "paper": p.paper, "source": p.source,
             "settings": ", ".join(f"{k}={v}" for k, v in p.train.items()), "notes": p.notes}
            for p in PRESETS.values()]
