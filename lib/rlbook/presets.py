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
           "Sec. 3: global batch advantage normalisation", {"estimator": "reinforce_pp"}),
    Preset("reinforce_pp_baseline", "REINFORCE++ (Hu, 2025)",
           "the -baseline variant: group-mean subtraction, then global batch whitening",
           {"estimator": "reinforce_pp_baseline"}),
    Preset("bnpo", "BNPO: Beta Normalization Policy Optimization (Xiao et al., 2025)",
           "Beta-normalised advantage; official code github.com/changyi7231/BNPO",
           {"estimator": "bnpo"}),
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
           "official script (github.com/nangongrui-ngr/NGRPO): virtual max-reward sample, asymmetric clipping "
           "0.16 / 0.24", {"estimator": "ngrpo", "eps_low": 0.16, "eps_high": 0.24}),
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
