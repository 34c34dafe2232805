"""Mechanism figures of the estimator, loss and pipeline notebooks: one small function per figure, each drawn from
the registered mechanism (``estimators.compute``, ``losses.compute``, ``losses.aggregate``) or the pipeline's own
library function, in well under a second.  Every function returns the matplotlib ``Figure``.

Estimators are evaluated on a *ladder* batch: one group of ``G`` samples for every number of correct samples
``k = 0 .. G`` (:func:`ladder`).  Estimators with batch-level statistics (BNPO's Beta fit, Lite PPO's batch std,
REINFORCE++'s whitening, the batch-mean baseline) therefore see that ladder as their batch; the figures say so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from rlbook.analysis import stats
from rlbook.analysis.lessons import finish
from rlbook.mechanisms import estimators, losses
from rlbook.pipelines import bon, continual, malt, qvalue
from rlbook.policy import generation

__all__ = [
    "ladder",
    "advantage_vs_success",
    "expected_update_vs_success",
    "advantage_vs_wrong_length",
    "token_weight_vs_length",
    "gradient_weight_vs_ratio",
    "iqm_vs_outlier",
    "update_scale_vs_success",
    "malt_value_tree",
    "digi_q_candidates",
    "self_certainty_and_borda",
]


def ladder(group_size: int = 8) -> torch.Tensor:
    """``[G + 1, G]`` binary rewards: group ``k`` has its first ``k`` samples correct (success rate ``k / G``)."""
    g = int(group_size)
    if g < 2:
        raise ValueError(f"group_size={group_size!r} must be >= 2")
    return (torch.arange(g).expand(g + 1, g) < torch.arange(g + 1).unsqueeze(-1)).float()


def _per_group(adv: torch.Tensor, rewards: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """The advantage of a correct and of a wrong sample in each group (NaN where the group has none)."""
    adv = adv.double()
    correct = torch.where(rewards > 0, adv, torch.full_like(adv, float("nan")))
    wrong = torch.where(rewards > 0, torch.full_like(adv, float("nan")), adv)
    return torch.nanmean(correct, dim=1).numpy(), torch.nanmean(wrong, dim=1).numpy()


def _label(name: str, labels: Mapping[str, str] | None) -> str:
    return (labels or {}).get(name, name)


def advantage_vs_success(names: Sequence[str], group_size: int = 8, labels: Mapping[str, str] | None = None,
                         hyper: Mapping[str, Mapping[str, Any]] | None = None, length: int = 10) -> Figure:
    """The advantage a correct (left) and a wrong (right) sample gets against its group's success rate, for each
    registered estimator in ``names`` on the :func:`ladder` batch (every completion ``length`` tokens)."""
    rewards = ladder(group_size)
    ctx = {"lengths": torch.full_like(rewards, float(length))}
    rate = np.arange(group_size + 1) / group_size
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharex=True)
    for name in names:
        adv = estimators.compute(name, rewards, context=ctx, **dict((hyper or {}).get(name, {})))
        if adv.dim() == 3:
            adv = adv.mean(-1)
        right, wrong = _per_group(adv, rewards)
        axes[0].plot(rate, right, marker="o", label=_label(name, labels))
        axes[1].plot(rate, wrong, marker="o", label=_label(name, labels))
    for ax, who in zip(axes, ("a correct sample", "a wrong sample"), strict=True):
        ax.axhline(0.0, color="grey", lw=0.8)
        ax.set(xlabel=f"group success rate (k correct of G = {group_size})", ylabel="advantage",
               title=f"advantage of {who}")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("Advantage against the group's success rate (one batch: a group for every k)", fontsize=10)
    fig.tight_layout()
    return fig


def expected_update_vs_success(names: Sequence[str], group_size: int = 8, labels: Mapping[str, str] | None = None,
                               points: int = 41) -> Figure:
    """The expected per-prompt update E[g_hat] = E[(1/G) sum_j A_j (y_j - p)] on a one-logit Bernoulli bandit, exact
    (a sum over the number k of correct samples, k ~ Binomial(G, p)), for group-local estimators, each curve scaled
    to its maximum and drawn against the exact gradient p (1 - p)."""
    from scipy.stats import binom

    rewards = ladder(group_size)
    k = np.arange(group_size + 1)
    p = np.linspace(0.0, 1.0, points)
    fig, ax = plt.subplots(figsize=(6.5, 4))
    exact = p * (1 - p)
    ax.plot(p, exact / exact.max(), color="black", lw=2, ls="--", label="exact gradient p(1-p)")
    for name in names:
        right, wrong = _per_group(estimators.compute(name, rewards), rewards)
        right, wrong = np.nan_to_num(right), np.nan_to_num(wrong)
        per_k = (k[None, :] * right[None, :] * (1 - p[:, None])
                 - (group_size - k[None, :]) * wrong[None, :] * p[:, None]) / group_size
        upd = (binom.pmf(k[None, :], group_size, p[:, None]) * per_k).sum(-1)
        ax.plot(p, upd / max(np.abs(upd).max(), 1e-12), label=_label(name, labels))
    ax.set(xlabel="prompt success probability p", ylabel="expected update (scaled to its maximum)",
           title=f"Where each estimator puts its weight (G = {group_size}, exact expectation)")
    return finish(fig, ax)


def advantage_vs_wrong_length(names: Sequence[str], right_length: int = 10,
                              wrong_lengths: Sequence[int] = tuple(range(2, 61, 2)),
                              rewards: Sequence[Sequence[float]] = ((1, 1, 0, 0), (1, 0, 0, 0)),
                              labels: Mapping[str, str] | None = None) -> Figure:
    """The advantage of group 0's correct and wrong samples as the wrong completions grow (correct ones stay at
    ``right_length`` tokens): estimators that whiten over the batch's tokens (REINFORCE++) weigh long completions
    more; per-group estimators (GRPO) do not look at lengths."""
    r = torch.tensor(rewards, dtype=torch.float32)
    curves: dict[str, list[tuple[float, float]]] = {n: [] for n in names}
    for wl in wrong_lengths:
        ctx = {"lengths": torch.where(r > 0, torch.tensor(float(right_length)), torch.tensor(float(wl)))}
        for n in names:
            adv = estimators.compute(n, r, context=ctx)
            right, wrong = _per_group(adv, r)
            curves[n].append((right[0], wrong[0]))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharex=True)
    for n, vals in curves.items():
        arr = np.array(vals)
        axes[0].plot(wrong_lengths, arr[:, 0], label=_label(n, labels))
        axes[1].plot(wrong_lengths, arr[:, 1], label=_label(n, labels))
    for ax, who in zip(axes, ("a correct sample", "a wrong sample"), strict=True):
        ax.axvline(right_length, color="grey", ls=":", lw=1)
        ax.axhline(0.0, color="grey", lw=0.8)
        ax.set(xlabel=f"length of the wrong completions (tokens; correct ones: {right_length})", ylabel="advantage",
               title=f"advantage of {who} (group 0)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Rewards {[list(map(int, g)) for g in rewards]}: how completion length moves the advantage",
                 fontsize=10)
    fig.tight_layout()
    return fig


def token_weight_vs_length(modes: Sequence[str], lengths: Sequence[int] = (4, 8, 16, 32),
                           max_tokens: int = 32, labels: Mapping[str, str] | None = None) -> Figure:
    """The weight each registered loss aggregation gives one token (left) and one whole completion (right), for a
    batch of one completion of each length in ``lengths`` with the same advantage: the gradient of
    ``losses.aggregate`` with respect to each token's loss."""
    B, T = len(lengths), max(max(lengths), max_tokens)
    mask = (torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]).float()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for mode in modes:
        x = torch.ones(B, T, requires_grad=True)
        losses.aggregate(x, mask, mode, max_tokens=max_tokens).backward()
        per_token = x.grad[:, 0].numpy()
        axes[0].plot(lengths, per_token, marker="o", label=_label(mode, labels))
        axes[1].plot(lengths, per_token * np.array(lengths), marker="o", label=_label(mode, labels))
    axes[0].set(ylabel="weight of one token", title="per-token weight")
    axes[1].set(ylabel="weight of the whole completion", title="per-completion weight (token weight x length)")
    for ax in axes:
        ax.set(xlabel="completion length (tokens)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Loss aggregation: a batch of {B} completions of lengths {list(lengths)}, max_tokens = {max_tokens}",
                 fontsize=10)
    fig.tight_layout()
    return fig


def gradient_weight_vs_ratio(specs: Mapping[str, tuple[str, Mapping[str, Any]]],
                             ratios: Sequence[float] | np.ndarray | None = None,
                             title: str = "Gradient weight against the importance ratio") -> Figure:
    """For each ``label: (loss name, hyper-parameters)``: the gradient of the objective (minus the registered loss)
    with respect to a token's log-probability, per unit advantage, against the token's ratio rho = pi / pi_old,
    for A = +1 (left) and A = -1 (right).  The plain policy gradient A grad log pi has weight 1; PPO's unclipped
    surrogate has weight rho; a clipped token has weight 0.  One-token completions, so a sequence ratio is rho."""
    ratios = np.linspace(0.5, 2.0, 301) if ratios is None else ratios
    rho = torch.tensor(np.asarray(ratios, dtype=float), dtype=torch.float64)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for ax, a in zip(axes, (1.0, -1.0), strict=True):
        for label, (name, hyper) in specs.items():
            logp = rho.log().unsqueeze(-1).clone().requires_grad_(True)
            token_loss, _ = losses.compute(name, logp, torch.zeros_like(logp), torch.full((len(rho),), a,
                                           dtype=torch.float64), torch.ones_like(logp), **dict(hyper))
            (grad,) = torch.autograd.grad(token_loss.sum(), logp)
            ax.plot(rho.numpy(), (-grad[:, 0] / a).numpy(), label=label)
        ax.axvline(1.0, color="grey", ls=":", lw=1)
        ax.set(xlabel="ratio rho = pi / pi_old", title=f"A = {a:+g}")
        ax.locator_params(axis="x", nbins=5)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("gradient weight (d objective / d log pi) / A")
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- pipelines (not registry entries)


def iqm_vs_outlier(base: Sequence[float] = (0.40, 0.45, 0.50, 0.55),
                   outliers: Sequence[float] = tuple(i / 20 for i in range(21))) -> Figure:
    """rliable's interquartile mean (``stats.iqm_table``) and the plain mean of five runs on one task, four fixed and
    one moved from 0 to 1: the mean follows the outlier, the IQM (mean of the middle half) barely moves."""
    iqm, mean = [], []
    for o in outliers:
        runs = np.array([*base, o], dtype=float)[:, None]
        iqm.append(float(stats.iqm_table({"m": runs}, reps=20)["iqm"].iloc[0]))
        mean.append(float(runs.mean()))
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.plot(outliers, mean, marker="o", label="mean of the 5 runs")
    ax.plot(outliers, iqm, marker="s", label="IQM (rliable)")
    ax.set(xlabel="score of the fifth run", ylabel="aggregate score",
           title=f"IQM vs mean: four runs at {list(base)} and one outlier")
    return finish(fig, ax)


def update_scale_vs_success(group_size: int = 8) -> Figure:
    """The share of a group's samples that move the policy, and the summed |advantage| of GRPO (the RFT arm's
    estimator, ``estimators.compute("grpo")``), against the group's rollout accuracy, next to SFT, which imitates
    every example with weight 1; shaded: the accuracies rollout-based instance filtering keeps
    (``continual.rif_keep``)."""
    rewards = ladder(group_size)
    adv = estimators.compute("grpo", rewards).double()
    rate = np.arange(group_size + 1) / group_size
    keep = continual.rif_keep(rate)
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.plot(rate, adv.abs().sum(1).numpy() / group_size, marker="o", label="GRPO: mean |advantage| in the group")
    ax.plot(rate, np.ones_like(rate), marker="s", label="SFT: weight of each example")
    ax.fill_between(rate, 0, 1.1, where=keep, color="tab:green", alpha=0.12, step="mid", label="kept by RIF")
    ax.set(xlabel=f"rollout accuracy of the problem (k of G = {group_size})", ylabel="update weight",
           title="RFT's update vanishes where the model always or never succeeds")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower center")
    fig.tight_layout()
    return fig


def malt_value_tree(leaf_rewards: np.ndarray, threshold: float = 0.5, rule: str = "binarised") -> Figure:
    """One question's search tree (``[n_g, n_v, n_r]`` leaf rewards): the refinements' rewards, the critiques' values
    and the generations' values from ``malt.tree_values`` (``rule``), each bar green when it is a positive (value >
    threshold)."""
    leaf = np.asarray(leaf_rewards, dtype=float)
    v_val, g_val = malt.tree_values(leaf, rule, threshold)
    g_name = "share of positive critiques" if rule == "binarised" else "mean of the critiques' values"
    levels = [("refinements (reward)", leaf.reshape(-1)), ("critiques (mean of their refinements)", v_val.reshape(-1)),
              (f"generations ({g_name})", g_val.reshape(-1))]
    fig, axes = plt.subplots(3, 1, figsize=(9, 5.5))
    for ax, (name, vals) in zip(axes, levels, strict=True):
        colors = ["tab:green" if v > threshold else "tab:red" for v in vals]
        ax.bar(np.arange(len(vals)), vals, color=colors)
        ax.axhline(threshold, color="grey", ls="--", lw=1)
        ax.set(ylim=(0, 1.05), ylabel="value", title=name)
        ax.set_xticks(np.arange(len(vals)))
        ax.tick_params(axis="x", labelsize=6)
    axes[-1].set_xlabel("node (children of one parent are adjacent); green = positive, red = negative")
    fig.suptitle(f"MALT's value iteration on one tree (threshold {threshold})", fontsize=10)
    fig.tight_layout()
    return fig


def digi_q_candidates(q: torch.Tensor, v: torch.Tensor, valid: torch.Tensor, threshold: float) -> Figure:
    """For each state, the advantage max(Q1, Q2) - max(V1, V2) of each candidate (``qvalue.best_of_n``'s input),
    the chosen candidate outlined, and whether the state is imitated (A* > threshold)."""
    best, weight, a_star = qvalue.best_of_n(q, v, valid, threshold)
    adv = torch.where(valid, q.max(0).values - v.max(0).values.unsqueeze(-1), torch.zeros_like(q[0]))
    n_states, n = adv.shape
    fig, axes = plt.subplots(1, n_states, figsize=(3.2 * n_states, 3.6), sharey=True, squeeze=False)
    for s, ax in enumerate(axes[0]):
        colors = ["lightgrey" if not bool(valid[s, j]) else "tab:blue" for j in range(n)]
        bars = ax.bar(np.arange(n), adv[s].numpy(), color=colors)
        bars[int(best[s])].set_edgecolor("black")
        bars[int(best[s])].set_linewidth(2.5)
        ax.axhline(threshold, color="tab:red", ls="--", lw=1)
        ax.axhline(0.0, color="grey", lw=0.8)
        verdict = "imitated" if float(weight[s]) > 0 else "skipped"
        ax.set(title=f"state {s}: A* = {float(a_star[s]):.2f}, {verdict}", xlabel="candidate action")
        ax.grid(alpha=0.3, axis="y")
    axes[0][0].set_ylabel("advantage max Q - max V")
    fig.suptitle(f"Best-of-N extraction (outlined: argmax; grey: invalid; red: threshold {threshold})", fontsize=10)
    fig.tight_layout()
    return fig


def self_certainty_and_borda(vocab: int = 50, seed: int = 0,
                             answers: Sequence[str] = ("B", "B", "C", "D", "A", "A", "A", "A")) -> Figure:
    """Left: self-certainty KL(U || p) (``generation.self_certainty_from_logits``) and the entropy of one random
    next-token distribution sharpened or flattened by a temperature.  Right: N responses in self-certainty order
    (rank 1 = most certain) with ``answers``; each answer's Borda votes, the sum of (N - r + 1)^p over its ranks,
    against the power p, and the answer ``bon.borda_select`` picks (p = 0: majority voting)."""
    z = torch.randn(vocab, generator=torch.Generator().manual_seed(seed)) * 2.0
    temps = np.geomspace(0.1, 10.0, 41)
    sc = [float(generation.self_certainty_from_logits(z / t)) for t in temps]
    ent = [float(-(torch.softmax(z / t, -1) * torch.log_softmax(z / t, -1)).sum()) for t in temps]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    axes[0].plot(temps, sc, label="self-certainty KL(U || p)")
    axes[0].plot(temps, ent, label="entropy H(p)")
    axes[0].axhline(np.log(vocab), color="grey", ls=":", lw=1, label=f"log V (V = {vocab})")
    axes[0].set(xscale="log", xlabel="temperature applied to the logits", ylabel="nats",
                title="a peaked distribution is certain, a flat one is not")
    n = len(answers)
    scores = [float(n - i) for i in range(n)]  # response i has rank i + 1
    powers = np.linspace(0.0, 3.0, 61)
    for a in dict.fromkeys(answers):
        ranks = [i + 1 for i, x in enumerate(answers) if x == a]
        axes[1].plot(powers, [sum(float(n - r + 1) ** pw for r in ranks) for pw in powers],
                     label=f"answer {a} (ranks {ranks})")
    picked = [answers[bon.borda_select(scores, list(answers), float(pw))] for pw in powers]
    switch = [pw for pw, a, b in zip(powers[1:], picked[:-1], picked[1:], strict=True) if a != b]
    for pw in switch:
        axes[1].axvline(pw, color="black", ls="--", lw=1)
    axes[1].set(yscale="log", xlabel="Borda power p", ylabel="votes",
                title=f"borda_select picks {picked[0]} at p = 0, {picked[-1]} at p = {powers[-1]:g}")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
