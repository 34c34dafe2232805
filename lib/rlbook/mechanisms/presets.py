"""Method presets: each paper's trainer settings, quoted with their source (like TRL's paper index).

A preset is a set of :class:`~rlbook.core.config.TrainConfig` overrides on top of a notebook's base ``train``
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

from rlbook.core.errors import ParamError


@dataclass(frozen=True)
class Preset:
    """A method's trainer settings and where they come from."""

    name: str
    paper: str  # full title, authors, year
    source: str  # the section, table or official script the settings are quoted from
    train: dict[str, Any] = field(default_factory=dict)
    notes: str = ""  # differences forced by our scale or setup


_CORRECT = {"name": "correct", "weight": 1.0}

# ------------------------------------------------------------------------- credit assignment, process rewards
_PRIME = "Process Reinforcement through Implicit Rewards (PRIME; Cui et al., 2025)"
_PRIME_SRC = ("verl recipe/prime (run_prime_qwen.sh, prime_trainer.yaml: beta_train 0.05, reward_dpo_coef 5, reward_gt_coef "
              "5, prime_norm batch_norm, update before, accuracy filter 0.2-0.8, grad_clip 10) and PRIME-RL/PRIME "
              "run_prime_main.sh (commit 18ad596)")
_BAND = {"name": "accuracy_band", "kwargs": {"low": 0.2, "high": 0.8}}
_PRIME_PRM = {"beta": 0.05, "update": "before", "grad_clip": 10.0, "lr": 1e-4}
_PRIME_NOTES = ("LoRA PRM (lr 1e-4; the paper full-tunes a 7B PRM at 1e-6); one PRM step per RL step (the run: about "
                "four); K is the notebook's group size (paper 4); the filter draws again up to max_sampling_rounds "
                "(the recipe oversamples 4x); policy lr, batch and KL-free PPO as in the run, scaled by the notebook")


def _prime(estimator_kwargs: dict[str, Any], phases: list[dict[str, Any]]) -> dict[str, Any]:
    return {"estimator": "prime_rloo", "estimator_kwargs": estimator_kwargs, "filters": [_BAND], "phases": phases,
            "loss": "ppo_clip", "eps_low": 0.2, "eps_high": 0.2, "aggregation": "token_mean", "kl_coef": 0.0}


CREDIT_PRESETS = [
    Preset("prime", _PRIME, _PRIME_SRC,
           _prime({"process_coef": 5.0, "outcome_coef": 5.0}, [{"name": "implicit_prm", "kwargs": _PRIME_PRM}]),
           notes=_PRIME_NOTES),
    Preset("prime_outcome", _PRIME, "PRIME's outcome-only control: the same RLOO, filter, whitening and loss with the "
           "process reward off (reward_dpo_coef 0)", _prime({"process_coef": 0.0, "outcome_coef": 5.0}, [])),
    Preset("implicit_prm", "Free Process Rewards without Process Labels (Yuan et al., 2024)",
           "PRIME-RL/ImplicitPRM (commit c044175) train/tasks/run_ce.sh: CE on outcome labels, beta 0.05, one epoch, "
           "batch 64; then frozen and used as PRIME's process reward",
           _prime({"process_coef": 5.0, "outcome_coef": 5.0},
                  [{"name": "implicit_prm", "kwargs": {**_PRIME_PRM, "update": "none", "warmup_prompts": 16,
                                                       "warmup_epochs": 1, "warmup_rows": 64}}]),
           notes="the PRM is fitted on 16 prompts x G completions of the initial policy (ImplicitPRM: an offline "
                 "dataset of instructions x responses), so the script's one epoch in batches of 64 is ceil(16 G / 64) "
                 "AdamW steps here (G = 4: one; the script's epoch is many steps over its data set); LoRA at lr 1e-4 (paper 5e-7, full fine-tuning)"),
    Preset("oracle_process", "the exact chain_sum process reward (rlbook.mechanisms.process.OracleSteps; no paper)",
           "PRIME's estimator and filter with the oracle's step rewards (+1 right line, -1 wrong line) in place of the "
           "implicit PRM: the upper reference",
           _prime({"process_coef": 5.0, "outcome_coef": 5.0}, [{"name": "oracle_steps"}])),
    Preset("spo_chain", "Segment Policy Optimization: Effective Segment-Level Credit Assignment in RL for Large Language "
           "Models (Guo et al., 2025)",
           "AIFrameResearch/SPO (commit b9fc6a2) configs polIter_qwen05b_spo_chain_gsm8k.jsonnet (4 MC rollouts) and "
           "episode_generators/interval5.jsonnet (cutpoint interval 5), prob threshold 0.9, PPO clip 0.2, token-mean loss",
           {"estimator": "spo_chain", "phases": [{"name": "mc_values", "kwargs": {"cutpoints": "low_prob", "rollouts": 4,
                                                                                  "interval": 5}}],
            "eps_low": 0.2, "eps_high": 0.2, "aggregation": "token_mean"},
           notes="the configs' KL loss 1e-4 and 2 PPO epochs are not set (kl_coef 0, one epoch); MC continuations "
                 "are counted in extra_gen_tokens (compare at equal generated tokens)"),
    Preset("spo_tree", "Segment Policy Optimization: Effective Segment-Level Credit Assignment in RL for Large Language "
           "Models (Guo et al., 2025)",
           "AIFrameResearch/SPO (commit b9fc6a2) configs polIter_rho1bSft2_spo_tree_GSM8K.jsonnet (hybrid episode "
           "generator: max_depth 3, branch factors 6-6-6, M 30 tokens, adv_method rloo, zero-advantage edges dropped) "
           "on the SPO-chain config (prob mask 0.9, whitening, PPO clip 0.2, token-mean loss)",
           {"estimator": "spo_tree", "phases": [{"name": "spo_tree", "kwargs": {"branch_factors": [2, 2, 2],
                                                                                "segment": 10}}],
            "rollouts_per_prompt": 2, "group_size": 8, "eps_low": 0.2, "eps_high": 0.2, "aggregation": "token_mean"},
           notes="scaled to 40-token answers: branch factors 2-2-2 (8 leaves: the notebook's group size) and segments "
                 "of 10 tokens (the code: 6-6-6 and 30 on GSM8K); no replay buffer (the code keeps unused edges up "
                 "to 8 iterations); KL loss 1e-4 and 2 PPO epochs not set, as spo_chain"),
    Preset("tempo", "Exploiting Tree Structure for Credit Assignment in RL Training of LLMs (TEMPO; Tran et al., 2025)",
           "the abstract (no public code): GRPO advantage plus branch-gated TD corrections on the group's prefix tree",
           {"estimator": "tempo", "estimator_kwargs": {"lam": 1.0}}, notes="the TD form and lam = 1 are assumptions"),
    Preset("min_form", "Stop Summation: Min-Form Credit Assignment Is All Process Reward Model Needs for Reasoning "
           "(PURE; Cheng et al., 2025)",
           "CJReinforce/PURE (commit 41f9363) examples/scripts/train_pure.sh: temperature 0.1 soft-min, token "
           "baseline, verifiable reward coef 1, advantages = returns",
           {"estimator": "min_form", "estimator_kwargs": {"temperature": 0.1, "weighting": "min", "baseline": "token",
                                                          "verifiable_coef": 1.0},
            "phases": [{"name": "line_validity"}]},
           notes="the PRM is rlbook.mechanisms.process.LineValidity (each line's arithmetic, +1 / -1), not a learned PRM; the "
                 "script's KL 0.001 in the reward is not added"),
    Preset("sum_form", "PURE (Cheng et al., 2025): the sum-form ablation", "PURE's disable_weighted_reward (r_k = s_k / K)",
           {"estimator": "min_form", "estimator_kwargs": {"weighting": "mean", "baseline": "token", "verifiable_coef": 1.0},
            "phases": [{"name": "line_validity"}]}),
    Preset("clip_delta", "On Designing Effective RL Reward at Training Time for LLM Reasoning (Gao et al., 2024)",
           "Sec. 4 (no public code): Clip (eta) then Delta on per-step PRM rewards, plus the success reward",
           {"estimator": "clip_delta", "estimator_kwargs": {"mode": "clip_delta", "eta": 0.5},
            "phases": [{"name": "line_validity", "kwargs": {"valid": 1.0, "invalid": 0.0, "other": 0.0}}]},
           notes="PRM = line validity scored 1 / 0; leave-one-out baseline instead of the paper's PPO critic"),
    Preset("sum_prm", "Gao et al. (2024): the plain sum of PRM step rewards their refinements start from",
           "clip_delta with mode none", {"estimator": "clip_delta", "estimator_kwargs": {"mode": "none"},
                                         "phases": [{"name": "line_validity",
                                                     "kwargs": {"valid": 1.0, "invalid": 0.0, "other": 0.0}}]}),
    Preset("spae", "Step Potential Advantage Estimation (SPAE; Wu et al., 2026)",
           "cii030/SPAE-RL (commit ed529f8) probe code: Phi = 1.5 Acc Conf + 0.5 Acc - Conf, saturation 0.9; the "
           "advantage is an assumption (training code not released)",
           {"estimator": "spae", "estimator_kwargs": {"tau_sat": 0.9, "rho": 0.5, "xi": 1.0},
            "phases": [{"name": "step_potential", "kwargs": {"probe": "Answer:", "form": "code"}}]}),
    Preset("rewarding_progress", "Rewarding Progress: Scaling Automated Process Verifiers for LLM Reasoning "
           "(Setlur et al., 2024)", "the paper (no public code): Q + alpha A^mu with a Best-of-K prover, K = 4",
           {"estimator": "rewarding_progress", "estimator_kwargs": {"prover_k": 4, "alpha": 1.0},
            "phases": [{"name": "mc_values", "kwargs": {"cutpoints": "step_ends", "rollouts": 4}}]},
           notes="Monte Carlo progress with the current policy at every step end (MC-PAV) instead of a learned "
                 "verifier; continuations counted in extra_gen_tokens"),
    Preset("capo", "CAPO: Towards Enhancing LLM Reasoning through Verifiable Generative Credit Assignment (Xie et al., "
           "2025)", "the paper (code not released): a generative critic lists wrong steps, majority vote, "
           "R_t = r_v W_whole - 1[wrong step] W_process",
           {"estimator": "capo", "estimator_kwargs": {"w_whole": 1.0, "w_process": 0.5},
            "phases": [{"name": "capo_critic", "kwargs": {"critic": "base", "votes": 3, "vote": "majority"}}]},
           notes="the critic is the 135M base model itself (paper: 70B-class general LLMs); critiques counted in "
                 "extra_gen_tokens"),
    Preset("capo_oracle", "CAPO (Xie et al., 2025) with a critic of known accuracy",
           "capo with the noisy oracle critic (each verdict flipped with probability 0.2)",
           {"estimator": "capo", "estimator_kwargs": {"w_whole": 1.0, "w_process": 0.5},
            "phases": [{"name": "capo_critic", "kwargs": {"critic": "noisy_oracle", "votes": 3, "vote": "majority",
                                                          "flip": 0.2}}]}),
]


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
    Preset("canon", "Conditional Advantage Estimation for Reinforcement Learning in Large Reasoning Models (Chen et al., "
                    "2025)",
           "official code github.com/biuboomc/CANON (commit f3ee9fc) scripts/setups.sh: adv_estimator "
           "dr_length_on_mean, _lambda 1.0, alpha 1.0, seq-mean-token-sum over max_length, clip high 0.28, no KL",
           {"estimator": "canon", "estimator_kwargs": {"metric": "length", "inter_weight": 1.0},
            "aggregation": "seq_mean_token_sum_norm", "eps_low": 0.2, "eps_high": 0.28, "kl_coef": 0.0},
           notes="the paper's headline variant splits by token entropy, which estimators do not receive; its "
                 "baseline is Dr. GRPO with the same loss: {preset: canon, estimator: dr_grpo}"),
    Preset("spo", "Single-stream Policy Optimization (Xu & Ding, 2025)",
           "verl recipe spo/train.sh and spo_trainer.yaml (github.com/verl-project/verl-recipe, commit e477def): "
           "one sample per prompt, KL-adaptive value tracker, clip 0.2 / 0.28, dual clip 10, token-mean loss",
           {"estimator": "single_stream", "group_size": 1, "phases": [{"name": "spo_drift"}], "eps_low": 0.2,
            "eps_high": 0.28, "loss_kwargs": {"dual_clip": 10.0}, "aggregation": "token_mean", "kl_coef": 0.0},
           notes="no offline value initialisation; the prioritised prompt sampler is a separate sampler"),
    # ---- estimators of the catalog without a trainer recipe of their own: only the advantage differs from GRPO
    Preset("a_grae", "Unveiling Implicit Advantage Symmetry: Why GRPO Struggles with Exploration and Difficulty "
           "Adaptation (Yu et al., 2026)",
           "github.com/Yu7-code/A-GRAE (commit 53faba8) verl/trainer/ppo/core_algos.py::"
           "compute_grpo_outcome_advantage, the grpo_weight == 2.0 branch (alpha 1 for math)",
           {"estimator": "a_grae", "estimator_kwargs": {"curriculum": "accuracy", "positive_alpha": 1.0}},
           notes="the released trainer never reaches that branch (see estimators.a_grae); the rest of its GRPO run "
                 "(clip, KL, batch) stays the notebook's"),
    Preset("stratified", "Stratified GRPO: Handling Structural Heterogeneity in Reinforcement Learning of LLM Search "
           "Agents (Zhu et al., 2025)", "abstract: SAN within strata of one prompt's trajectories, blended linearly "
           "with the global (GRPO) estimate (no public code; blend 0.5 assumed)",
           {"estimator": "stratified", "estimator_kwargs": {"key": "part", "part": -1, "blend": 0.5}},
           notes="no search tool here: the stratum key is the last reward part (give it weight 0 to stratify without "
                 "shaping the reward, e.g. the answer format)"),
    Preset("ace", "Overconfident Errors Need Stronger Correction: Asymmetric Confidence Penalties for Reinforcement "
           "Learning (Xu et al., 2026)", "arXiv 2602.21420 abstract and summaries: negative GRPO advantages scaled "
           "by 1 + alpha softplus(log pi/pi_ref) (no public code; alpha 1 assumed)",
           {"estimator": "ace", "estimator_kwargs": {"alpha": 1.0}},
           notes="pi_ref is the base model (the LoRA adapter disabled); the paper trains 7-8B models with verl"),
    Preset("dvao", "DVAO: Dynamic Variance-adaptive Advantage Optimization for Multi-reward Reinforcement Learning "
           "(Jiang et al., 2026)", "abstract: per-group weights proportional to each objective's reward variance "
           "(no public code; the form in estimators.dvao is assumed)",
           {"estimator": "dvao", "estimator_kwargs": {"weighting": "variance"}},
           notes="needs several reward parts (train.rewards); the part weights scale the objectives"),
    *CREDIT_PRESETS,
    # ---- choosing what to train on (rlbook.mechanisms.curricula): each preset sets what its paper's comparison changes;
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
           notes="positives = the verifier's correct answers (the code: score > 1.01); negatives = every wrong "
                 "answer, truncated ones included (the run's max_length_threshold 3900 exceeds its 2048-token "
                 "limit, so it drops none; estimator_kwargs max_length_threshold=N keeps only wrong answers "
                 "shorter than N); KL 0.001 is in both arms of its comparison"),
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
    Preset("mhpo", "MHPO: Modulated Hazard-aware Policy Optimization for Stable Reinforcement Learning (Wang et al., "
                   "2026)",
           "no official code; the objective and the Sec. 4.1 defaults as quoted by a third-party verl "
           "re-implementation (github.com/hope586/verl examples/grpo_trainer/run_qwen3-4b_gsm8k_3090_mhpo.sh): "
           "c 1.5, k+ 1.5, lambda+ 1.0, k- 2.0, lambda- 0.8, GRPO advantage, no KL loss",
           {"estimator": "grpo", "loss": "mhpo", "kl_coef": 0.0,
            "loss_kwargs": {"c": 1.5, "k_pos": 1.5, "lambda_pos": 1.0, "k_neg": 2.0, "lambda_neg": 0.8}},
           notes="the re-implementation's script aggregates token-mean and takes 4 mini-batch steps per batch; we "
                 "keep the paper's per-sequence mean and leave the number of passes to the notebook (inner_epochs)"),
    Preset("lp_reg", "Low-probability Tokens Sustain Exploration in Reinforcement Learning with Verifiable Reward "
                     "(Lp-Reg, 2025)",
           "official code github.com/CarlanLark/Lp-Reg (dev copy CarlanLark/Lp-Reg-dev, commit 700298f) "
           "recipe/lp_reg/Qwen3_14b_lp_reg_onpolicy_64gpu.sh: GRPO advantage, min-p proxy 0.02 from the old policy, "
           "lowest 1% of negative tokens, positive side off, ppo_kl_coef 1, low_var_kl, clip 1.0 / 9.0, "
           "token-mean, no KL to the reference, no entropy bonus",
           {"estimator": "lp_reg",
            "estimator_kwargs": {"coef": 1.0, "neg_k_percent": 0.01, "pos_k_percent": 0.0, "kl_cap": 10.0},
            "phases": [{"name": "lp_proxy", "kwargs": {"min_p": 0.02}}],
            "loss": "ppo_clip", "eps_low": 1.0, "eps_high": 9.0, "aggregation": "token_mean", "kl_coef": 0.0},
           notes="the regulariser's gradient is folded into the selected tokens' advantage (exact at ratio 1, the "
                 "script's one update per batch); the 1% is over the step's batch, not each micro-batch"),
    Preset("cispo", "MiniMax-M1 (MiniMax, 2025)", "Sec. 3.1 Eqs. 4-5: clipped detached IS weight, token-level "
           "normalisation", {"estimator": "grpo", "loss": "cispo", "aggregation": "token_mean"}),
    # ------------------------------------------------------------------ efficient reasoning (rlbook.mechanisms.length)
    Preset("length_penalty", "a baseline: GRPO with the plain additive length penalty the efficiency papers compare with",
           "r = correct - 0.5 L / max_new_tokens (rlbook.mechanisms.rewards.length_penalty; the weight 0.5 is ours)",
           {"estimator": "grpo", "rewards": [_CORRECT, {"name": "length_penalty", "weight": 0.5}]}),
    Preset("overlong", "DAPO: An Open-Source LLM Reinforcement Learning System at Scale (Yu et al., 2025)",
           "Eq. 13 soft overlong punishment alone on top of GRPO (the rest of DAPO is the dapo preset)",
           {"estimator": "grpo", "rewards": [_CORRECT, {"name": "overlong", "weight": 1.0}]}),
    Preset("cosine", "Demystifying Long Chain-of-Thought Reasoning in LLMs (Yeo et al., 2025)",
           "github.com/eddycmu/demystify-long-cot (commit e90cf9b) openrlhf/reward/cosine.py and the section 4.2 "
           "cosine script: correct 1..2, wrong -10..0, exceed -10, margin 16",
           {"estimator": "grpo", "rewards": [{"name": "cosine", "weight": 1.0}]},
           notes="the paper trains with PPO and reward normalisation; ours is GRPO on the same reward"),
    Preset("dler", "DLER: Doing Length pEnalty Right (Liu et al., 2025)",
           "github.com/NVlabs/DLER (commit ea7d4f7) dler_slurm.sh: truncation at max_response_length, stop-properly "
           "coef 0.1, reinforce_plus_plus_baseline (batch-wise normalisation), clip 0.2 / 0.28, dual clip 10, "
           "token-mean, dynamic sampling on the score, KL loss 0.0005 (low_var_kl)",
           {"estimator": "reinforce_pp_baseline", "eps_low": 0.2, "eps_high": 0.28, "loss_kwargs": {"dual_clip": 10.0},
            "aggregation": "token_mean", "kl_coef": 0.0005, "kl_kind": "k3",
            "filters": [{"name": "dynamic_sampling", "kwargs": {"metric": "acc"}}],
            "rewards": [_CORRECT, {"name": "dler", "weight": 1.0}]},
           notes="the truncation length is the notebook's max_new_tokens (4000 tokens for 1.5B models whose answers "
                 "are ~4x longer); the code regenerates without a round limit"),
    Preset("dler_da", "DLER: Doing Length pEnalty Right (Liu et al., 2025), Difficulty-Aware DLER",
           "not in the public code: the dler preset with a per-group truncation that tightens with the group's "
           "accuracy (rlbook.mechanisms.length.rewards.dler_da, an assumed rule)",
           {"estimator": "reinforce_pp_baseline", "eps_low": 0.2, "eps_high": 0.28, "loss_kwargs": {"dual_clip": 10.0},
            "aggregation": "token_mean", "kl_coef": 0.0005, "kl_kind": "k3",
            "filters": [{"name": "dynamic_sampling", "kwargs": {"metric": "acc"}}],
            "rewards": [_CORRECT, {"name": "dler_da", "weight": 1.0}]}),
    Preset("hapo", "HAPO: Training Language Models to Reason Concisely via History-Aware Policy Optimization "
           "(Huang, Zhang & Cardie, 2025)",
           "github.com/HCY123902/HAPO (commit c91ae3b) train_grpo.py/.sh: cosine length reward, w_lr 1.0, mode min, "
           "TRL GRPOTrainer defaults of its version (group-normalised advantage, beta 0.04 k3 KL, clip 0.2, "
           "per-sequence token mean)",
           {"estimator": "grpo", "kl_coef": 0.04, "kl_kind": "k3", "aggregation": "seq_mean_token_mean",
            "rewards": [_CORRECT, {"name": "hapo", "weight": 1.0, "kwargs": {"w_lr": 1.0, "kind": "cosine", "mode": "min"}}]},
           notes="the history needs revisits: the script runs 5 epochs over 2000 problems; our notebooks use a small "
                 "training pool"),
    Preset("otc_grpo", "OTC: Optimal Tool Calls via Reinforcement Learning (Wang et al., 2025; arXiv 2504.14870)",
           "Sec. 3.3 (r = alpha r_tool r_phi, OTC-GRPO's r_tool) and Sec. 4.1 (c = the tool-call limit, alpha = 1, the "
           "global approximation of n; 'we re-use the same parameter in Search-R1 and ToRL': Search-R1's train_grpo.sh, "
           "github.com/PeterGriffinJin/Search-R1 commit 2698d69: kl_loss_coef 0.001, low_var_kl (k3), state_masking "
           "(tool tokens out of the loss), n_agent 5, temperature 1, verl's default clip 0.2; the token mean of the "
           "verl version it forks is assumed, its core_algos.py was not in the reference index)",
           {"estimator": "grpo", "kl_coef": 0.001, "kl_kind": "k3", "aggregation": "token_mean",
            "rewards": [{"name": "otc", "weight": 1.0, "kwargs": {"c": 3.0, "alpha": 1.0, "scope": "global"}}]},
           notes="needs a task with a tool (task.tool: calculator, task.max_tool_calls: 3 as ToRL's limit, so c = 3); "
                 "the GRPO baseline is this preset with rewards [correct] (Search-R1 / ToRL: correctness only); "
                 "r_phi is the 0/1 verifier (no format term); LoRA and our learning rate instead of full fine-tuning "
                 "at 1e-6"),
    Preset("kimi_length", "Kimi k1.5: Scaling Reinforcement Learning with LLMs (Kimi Team, 2025)",
           "Sec. 2.3.3 length reward on every group, on top of GRPO (the 'GRPO + length penalty' GRPO-lambda starts from)",
           {"estimator": "grpo", "rewards": [_CORRECT, {"name": "kimi_length", "weight": 1.0}]}),
    Preset("grpo_lambda", "Stable Reinforcement Learning for Efficient Reasoning (Dai, Liu & Si, 2025)",
           "abstract and summaries: top-lambda groups by correctness get the length-penalised reward, the others 0/1 "
           "(no public code; lambda 0.5 and the Kimi length reward assumed)",
           {"estimator": "grpo", "rewards": [_CORRECT, {"name": "grpo_lambda", "weight": 1.0, "kwargs": {"lam": 0.5}}]}),
    Preset("conciseness_rm", "Efficient Reasoning via Reward Model (Wang et al., 2025)",
           "outcome-conditioned conciseness r = c (1 + alpha s) (CRF form assumed: the code is at an anonymous link); "
           "rule scorer instead of the trained conciseness reward model",
           {"estimator": "grpo", "rewards": [_CORRECT, {"name": "conciseness_rm", "weight": 1.0,
                                                         "kwargs": {"alpha": 1.0, "scorer": "rule"}}]}),
    Preset("budget_curriculum", "Train Long, Think Short: Curriculum Learning for Efficient Reasoning (Hammoud et al., "
           "2025)", "B(t) = max(1, B0 gamma^floor(t/T)), B0 = 256; correctness + length + format (weights and the "
           "length term assumed: github.com/hammoudhasan/curriculum_grpo not reachable)",
           {"estimator": "grpo", "rewards": [{"name": "budget_curriculum", "weight": 1.0}]},
           notes="B0, gamma and T are scale: set them in the notebook (B0 = 256 exceeds our generation limit)"),
    Preset("siri", "SIRI: Scaling Iterative Reinforcement Learning with Interleaved Compression (Wen et al., 2025)",
           "model cards THU-KEG/SIRI-*: cosine length scheduler, GRPO with DAPO's clip-higher and no KL; length-capped "
           "0/1 reward (no public training code)",
           {"estimator": "grpo", "eps_low": 0.2, "eps_high": 0.28, "kl_coef": 0.0, "aggregation": "token_mean",
            "rewards": [_CORRECT, {"name": "length_cap", "weight": 1.0}],
            "phases": [{"name": "length_schedule", "kwargs": {"kind": "cosine"}}]},
           notes="the levels and period of the schedule are scale: the notebook sets them"),
    Preset("dot", "Anti-Length Shift: Dynamic Outlier Truncation for Training Efficient Reasoning Models (Wu et al., 2026)",
           "three-sigma truncation of the length tail in fully correct groups (secondary description; no public code)",
           {"estimator": "grpo", "rewards": [_CORRECT, {"name": "dot", "weight": 1.0, "kwargs": {"k": 3.0}}]},
           notes="k = 3 cannot fire in groups smaller than 10 (population std); the auxiliary KL and predictive "
                 "dynamic sampling are not implemented"),
    Preset("decs", "Overthinking Reduction with Decoupled Rewards and Curriculum Data Scheduling (DECS, 2025)",
           "github.com/pixas/DECS (commit 0d12e53) scripts/train/local/train_rl_chunk_local.sh: grpo_proc_length "
           "estimator, length_reward_beta 0.1, kappa schedule (kappa_lr 0.2), clip 0.2, no KL, token-mean",
           {"estimator": "decs", "estimator_kwargs": {"beta": 0.1}, "eps_low": 0.2, "eps_high": 0.2, "kl_coef": 0.0,
            "aggregation": "token_mean", "rewards": [_CORRECT], "phases": [{"name": "answer_marks"}],
            "filters": [{"name": "decs_curriculum"}]},
           notes="a rule judge replaces the LLM judge (DECS_NRP_DETECTOR); the code regenerates up to 10 rounds"),
    Preset("redundancy", "Reconsidering Overthinking: Penalizing Internal and External Redundancy in CoT Reasoning "
           "(Hong et al., 2025)",
           "github.com/HenryZhen97/Reconsidering-Overthinking (commit 1f61c69) compress_reward.py and "
           "scripts/deepscaler/train/deepscaler_1.5b_compress.sh: GRPO, clip 0.2 / 0.28, both penalties",
           {"estimator": "grpo", "eps_low": 0.2, "eps_high": 0.28,
            "rewards": [_CORRECT, {"name": "redundancy", "weight": 1.0,
                                   "kwargs": {"use_external": True, "use_internal": True}}]},
           notes="the script's KL-in-reward (0.001) is not reproduced (the trainer has a KL loss, not a KL reward)"),
    Preset("arlcp", "Stop Unnecessary Reflection: Training LRMs for Efficient Reasoning with Adaptive Reflection and "
           "Length Coordinated Penalty (Yu et al., 2026)",
           "github.com/ZeweiYu1/ARLCP (commit d2c0a53) scripts/run_ARLCP_1.5b.sh: RLOO, ARLCP reward",
           {"estimator": "rloo", "rewards": [_CORRECT, {"name": "arlcp", "weight": 1.0}]},
           notes="the script's KL-in-reward (k1, 0.001) is not reproduced"),
    Preset("vsrm", "Promoting Efficient Reasoning with Verifiable Stepwise Reward (Yue et al., 2025)",
           "stepwise accuracy-gain rewards with REINFORCE++ (no public code; lookahead and splits assumed)",
           {"estimator": "vsrm", "rewards": [_CORRECT], "phases": [{"name": "step_answers"}]}),
    Preset("anytime", "Optimizing Anytime Reasoning via Budget Relative Policy Optimization (Qi et al., 2025)",
           "github.com/sail-sg/AnytimeReasoner (commit 7e3f5bb) brpo.py and README: 4 budgets, uniform prior, BRPO "
           "variance reduction, no KL",
           {"estimator": "brpo", "estimator_kwargs": {"prior": "uniform", "variance_reduction": "brpo"}, "kl_coef": 0.0,
            "rewards": [_CORRECT], "phases": [{"name": "budget_answers", "kwargs": {"n_budgets": 4}}]},
           notes="one greedy answer per budget instead of 4 sampled summaries; summaries are not trained"),
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
