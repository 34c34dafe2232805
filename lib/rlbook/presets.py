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
    # ---- choosing what to train on (rlbook.curricula): each preset sets what its paper's comparison changes;
    # the settings both arms of that comparison share (clip-higher, KL, learning rate...) stay the notebook's
    Preset("knapsack", "Knapsack RL: Unlocking Exploration of LLMs via Optimizing Budget Allocation (Li et al., 2025)",
           "official script github.com/liziniu/KnapsackRL (commit 05eeb92) examples/knapsack_trainer/"
           "run_knapsack_grpo_7b.sh: n = 8, min_n = negative_n = positive_n = 2, max_n = 128, alpha 0.9, "
           "reward_buffer_length 16, min_buffer_length 8, epoch estimation on, adv_clip_value 5.0",
           {"estimator": "grpo", "sampler": "knapsack",
            "sampler_kwargs": {"n": 8, "min_n": 2, "negative_n": 2, "positive_n": 2, "max_n": 128, "alpha": 0.9,
                               "reward_buffer_length": 16, "min_buffer_length": 8},
            "phases": [{"name": "adv_clip", "kwargs": {"value": 5.0}}]},
           notes="train.group_size is the widest group the trainer can hold: set it to prompts_per_step x n (the "
                 "largest budget possible).  Shared by the script's GRPO baseline and not set here: clip 0.2 / "
                 "0.28, dual clip 10, token-mean loss, 8 mini-batch updates per batch.  Success = the verifier"),
    Preset("dump", "DUMP: Automated Distribution-Level Curriculum Learning for RL-based LLM Post-training "
           "(Wang et al., 2025)", "official code github.com/ZhentingWang/DUMP (commit 235e85d) "
           "verl/utils/curriculum_learning.py (window 300, c = 1, softmax temperature 0.1) and "
           "main_grpo_..._combinedkk.sh (enable_curriculum_learning=True, data_source_key=data_source)",
           {"sampler": "dump", "sampler_kwargs": {"bucket_key": "source+difficulty", "window": 300, "c": 1.0,
                                                  "tau": 0.1}},
           notes="buckets are our pool's source x difficulty (the paper's: 12 Knights-and-Knaves sizes); the "
                 "validation-time pseudo-samples of the code are not pushed; KL 0.001 is in both of its arms"),
    Preset("spo_sampling", "Single-stream Policy Optimization (Xu & Ding, 2025): prioritised sampling",
           "verl recipe spo/spo_ray_trainer.py (github.com/verl-project/verl-recipe, commit e477def): weights "
           "sqrt(p_hat (1 - p_hat)) + 0.05 from the KL-adaptive Beta tracker (D_half 0.06, rho in [0.875, 0.96])",
           {"sampler": "spo_sampling", "sampler_kwargs": {"epsilon": 0.05, "d_half": 0.06, "rho_min": 0.875,
                                                          "rho_max": 0.96}, "phases": [{"name": "spo_drift"}]},
           notes="the sampler alone on GRPO (the paper pairs it with its single-stream estimator, preset spo); no "
                 "offline prior (alpha = beta = 0.5 at the start); candidates = the whole pool"),
    Preset("d3s", "Learning More with Less: A Dynamic Dual-Level Down-Sampling Framework for Efficient Policy "
           "Optimization (Wang et al., 2025)", "abstract and third-party notes (no public code): max-variance "
           "rollout subset per group, top |A| x entropy tokens, linear schedule from aggressive to relaxed",
           {"phases": [{"name": "d3s", "kwargs": {"mode": "intra", "n_init": 0.5, "n_final": 1.0, "k_init": 0.2,
                                                  "k_final": 1.0}}]},
           notes="the four schedule constants are assumptions (the paper's are not public)"),
    Preset("pf_ppo", "Policy Filtration for RLHF to Mitigate Noise in Reward Models (Zhang et al., 2025)",
           "Sec. 4 and 5.3: N = 5 responses per prompt ranked by the reward model, best-random (BR) filtering "
           "(the paper's best on HumanEval / LeetCode)",
           {"phases": [{"name": "pf_ppo", "kwargs": {"strategy": "br"}}],
            "rewards": [{"name": "noisy_rm", "weight": 1.0, "kwargs": {"margin": 1.0, "sigma": 1.0}}]},
           notes="the reward model is simulated from the verifier (noisy_rm); the paper trains PPO with a critic, we "
                 "use a group baseline over the kept samples; strategies bw / bon by override"),
    Preset("r3", "R^3: Replay, Reflection, and Ranking Rewards for LLM Reinforcement Learning (Jiang et al., 2026)",
           "Sec. 3.2.1-3.2.4, Eq. 3 (no public code): cross-context replay of k past samples into all-equal groups",
           {"estimator": "r3", "estimator_kwargs": {"alpha": 1.0, "lam": 1e-6},
            "phases": [{"name": "r3_replay", "kwargs": {"k": 1, "keep": 8, "serr": False}}]},
           notes="set train.rollouts_per_prompt = group_size - k (the free slots for replays); k, alpha, lambda and "
                 "the buffer size are not stated in the paper; SERR by override (serr: true); ISR not implemented"),
    Preset("adhint", "ADHint: Adaptive Hints with Difficulty Priors for Reinforcement Learning (Zhang et al., 2025)",
           "method as described (no public code): hint ratio (w_max - w_min) Diff_N + w_min from the naive "
           "rollouts, selective masking of hint tokens in negative-advantage rollouts",
           {"phases": [{"name": "adhint", "kwargs": {"w_min": 0.1, "w_max": 0.9}}, {"name": "adhint_mask"}]},
           notes="set train.rollouts_per_prompt to the naive rollouts (the other slots get hinted ones); CGM and "
                 "AE-RDP not implemented (formulas not public); w_min, w_max assumed"),
    Preset("adora", "ADORA: Training Reasoning Models with Dynamic Advantage Estimation on Reinforcement Learning",
           "official code github.com/ShadeCloak/ADORA (commit c518485) ADORA/ADORA.sh and core_algos.py::"
           "compute_grpo_outcome_advantage_ADORA: lamda 0.1 for groups whose longest correct answer is not longer "
           "than their mean complete wrong answer",
           {"estimator": "adora", "estimator_kwargs": {"lamda": 0.1, "variant": "llm"},
            "phases": [{"name": "adora_stats", "kwargs": {"lamda": 0.1}}]},
           notes="positives = the verifier's correct answers (the code: score > 1.01); complete = shorter than "
                 "max_new_tokens (the code: 3900 tokens); KL 0.001 is in both arms of its comparison"),
    Preset("tppo", "Truncated Proximal Policy Optimization (Fan et al., 2025)",
           "method as described (no public code): Extended GAE on rollouts cut at the window, V(s_L) := V(s_{L-1}), "
           "a value model fitted on finished rollouts with Monte-Carlo returns",
           {"estimator": "tppo_egae", "estimator_kwargs": {"gamma": 1.0, "lam": 0.95},
            "phases": [{"name": "tppo_critic", "kwargs": {"lr": 1e-2, "critic_steps": 20}}]},
           notes="the window is train.max_new_tokens; successive batching (continuing cut rollouts in the next step) "
                 "is not implemented; the critic is a linear head on the policy's hidden state; gamma, lambda "
                 "assumed"),
    Preset("dynamic_sampling", "DAPO (Yu et al., 2025): dynamic sampling alone",
           "verl recipe dapo/dapo_ray_trainer.py: groups whose accuracy has zero spread are dropped and more "
           "prompts drawn", {"filters": [{"name": "dynamic_sampling", "kwargs": {"metric": "acc"}}]},
           notes="the DAPO baseline of the curricula family: only the filter, on plain GRPO (preset dapo has the rest)"),
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
