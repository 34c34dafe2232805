"""Mechanism figures of the curricula family (what to train on): each function draws one picture from the
library's own mechanism (``rlbook.mechanisms.curricula``, ``rlbook.mechanisms.sampling``) in well under a second and returns the
matplotlib Figure.  The notebooks call them in their ``mechanism-figure`` cell; no algorithm lives here."""

from __future__ import annotations

import numpy as np
import torch
from matplotlib.figure import Figure

from rlbook.mechanisms import estimators
from rlbook.mechanisms.curricula import adhint, adora, d3s, dump, knapsack, pf_ppo, spo_sampling, tppo

__all__ = ["adhint_figure", "adora_figure", "d3s_figure", "dump_figure", "family_figure", "knapsack_figure",
           "pf_ppo_figure", "r3_figure", "spo_sampling_figure", "tppo_figure"]

P_GRID = np.linspace(0.0, 1.0, 101)


def _figure(ncols: int = 2, width: float = 10.0, height: float = 3.6) -> tuple[Figure, list]:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=(width, height), squeeze=False)
    return fig, list(axes[0])


def _signal(p: np.ndarray, G: int) -> np.ndarray:
    """P(a group of G samples of a prompt with success rate p is mixed): GRPO's advantage is non-zero only then."""
    return 1.0 - p ** G - (1.0 - p) ** G


def family_figure(G: int = 8) -> Figure:
    """How the family treats a prompt of success rate p: the chance that GRPO's group carries signal, SPO's
    sampling weight and Knapsack RL's rollout budget (both relative to uniform)."""
    fig, (ax, bx) = _figure()
    for g in (4, G, 2 * G):
        ax.plot(P_GRID, _signal(P_GRID, g), label=f"G = {g}")
    ax.set(xlabel="success rate p of the prompt", ylabel="P(group is mixed)",
           title="GRPO: signal only from mixed groups")
    ax.legend(frameon=False)
    w = spo_sampling.spo_weights(P_GRID)
    bx.plot(P_GRID, w / w.mean(), label="SPO sampling weight / uniform")
    grid = np.linspace(0.0, 1.0, 17)
    budgets, _ = knapsack.knapsack_budgets([(True, float(p), 16) for p in grid], n=G)
    bx.plot(grid, np.asarray(budgets) / G, "o-", label=f"Knapsack rollouts / {G}")
    bx.axhline(1.0, color="grey", lw=0.8, ls="--")
    bx.set(xlabel="success rate p of the prompt", ylabel="relative to GRPO (1 = uniform)",
           title="curricula move effort to mixed prompts")
    bx.legend(frameon=False)
    fig.tight_layout()
    return fig


def knapsack_figure(n: int = 8, prompts: int = 17) -> Figure:
    """Knapsack RL: the value v(N, p) of N rollouts on a prompt of success rate p, and the budgets
    :func:`~rlbook.mechanisms.curricula.knapsack.knapsack_budgets` gives a batch of ``prompts`` prompts (total ``prompts * n``)."""
    fig, (ax, bx) = _figure()
    for N in (2, n, 4 * n):
        ax.plot(P_GRID, [knapsack.knapsack_value(N, float(p)) for p in P_GRID], label=f"N = {N}")
    ax.set(xlabel="success rate p", ylabel="v(N, p)", title="value of N rollouts: P(mixed) x p(1-p)^2")
    ax.legend(frameon=False)
    grid = np.linspace(0.0, 1.0, prompts)
    budgets, info = knapsack.knapsack_budgets([(True, float(p), 16) for p in grid], n=n)
    bx.bar(grid, budgets, width=0.8 / (prompts - 1), label="Knapsack RL")
    bx.axhline(n, color="k", ls="--", lw=1, label=f"GRPO: {n} each")
    bx.set(xlabel="estimated success rate p", ylabel="rollouts",
           title=f"budgets of {prompts} prompts, {prompts * n} rollouts in all" + (" (fallback)" if info["fallback"] else ""))
    bx.legend(frameon=False)
    fig.tight_layout()
    return fig


def dump_figure(mu: tuple[float, ...] = (0.0, 0.3, 0.6), steps: int = 40, batch: int = 16, seed: int = 0) -> Figure:
    """DUMP: the UCB weights of buckets whose samples have mean |A| ``mu`` (constant), step by step: each step
    draws ``batch`` samples by the current weights, updates the windows and :func:`~rlbook.mechanisms.curricula.dump.ucb_weights`."""
    rng = np.random.default_rng(seed)
    windows = [dump.BucketWindow() for _ in mu]
    weights = [1.0 / len(mu)] * len(mu)
    history = [weights]
    for _ in range(steps):
        drawn = rng.choice(len(mu), size=batch, p=weights)
        for j, m in enumerate(mu):
            k = int((drawn == j).sum())
            if k:
                windows[j].update([m] * k)
        weights = dump.ucb_weights([w.mu for w in windows], [w.n for w in windows])
        history.append(weights)
    fig, (ax,) = _figure(1, 6.5)
    h = np.asarray(history)
    for j, m in enumerate(mu):
        ax.plot(h[:, j], label=f"bucket with mean |A| = {m}")
    ax.axhline(1 / len(mu), color="grey", ls="--", lw=0.8, label="uniform")
    ax.set(xlabel="step", ylabel="sampling weight", ylim=(0, 1), title="DUMP: softmax(UCB / 0.1) of the buckets")
    ax.legend(frameon=False)
    fig.tight_layout()
    return fig


def spo_sampling_figure() -> Figure:
    """SPO's sampler: the probability of a prompt against its tracked success p_hat (relative to uniform over a pool
    spread evenly in p_hat), and the tracker's forgetting factor rho against the policy drift D."""
    fig, (ax, bx) = _figure()
    w = spo_sampling.spo_weights(P_GRID)
    ax.plot(P_GRID, w / w.mean())
    ax.axhline(1.0, color="grey", ls="--", lw=0.8, label="uniform")
    ax.set(xlabel="tracked success p_hat = alpha / (alpha + beta)", ylabel="P(draw) / uniform",
           title="sqrt(p_hat (1 - p_hat)) + 0.05")
    ax.legend(frameon=False)
    drift = np.linspace(0.0, 0.03, 61)
    rho = [spo_sampling.spo_rho(float(d)) for d in drift]
    bx.plot(drift, rho)
    bx.set(xlabel="policy drift D on the prompt", ylabel="rho", title="alpha <- rho alpha + r: forget faster after drift")
    fig.tight_layout()
    return fig


def d3s_figure(G: int = 8, n_keep: int = 4) -> Figure:
    """D3S: for a group of G binary rewards with k correct, the std of GRPO's advantages over the whole group and
    over the ``n_keep`` samples :func:`~rlbook.mechanisms.curricula.d3s.max_variance_subset` keeps; and the linear schedule."""
    ks = list(range(1, G))
    full, kept = [], []
    for k in ks:
        adv = estimators.compute("grpo", torch.tensor([[1.0] * k + [0.0] * (G - k)]))[0]
        pick = d3s.max_variance_subset(adv.tolist(), n_keep)
        full.append(float(adv.std(correction=0)))
        kept.append(float(adv[pick].std(correction=0)))
    fig, (ax, bx) = _figure()
    ax.plot(ks, full, "o-", label=f"all {G} samples (GRPO)")
    ax.plot(ks, kept, "s-", label=f"the {n_keep} D3S keeps")
    ax.set(xlabel=f"correct samples in the group of {G}", ylabel="std of the advantages",
           title="max-variance subset: the extremes of both signs")
    ax.legend(frameon=False)
    t = np.linspace(0, 1, 11)
    bx.plot(t, [d3s.linear(x, 0.5, 1.0) for x in t], label="share of a group kept n(t)")
    bx.plot(t, [d3s.linear(x, 0.2, 1.0) for x in t], label="share of tokens kept K(t)")
    bx.set(xlabel="training progress t", ylabel="share", ylim=(0, 1.05), title="schedule (assumed constants)")
    bx.legend(frameon=False)
    fig.tight_layout()
    return fig


def r3_figure(G: int = 8) -> Figure:
    """R^3: an all-wrong group of G - k own samples with k replayed past successes; the ``r3`` estimator's advantages
    of a wrong and a replayed sample against k (GRPO on the own samples alone: 0 for all)."""
    ks = list(range(1, G // 2 + 1))
    wrong, right = [], []
    for k in ks:
        rewards = torch.tensor([[0.0] * (G - k) + [1.0] * k])
        replayed = torch.tensor([[False] * (G - k) + [True] * k])
        adv = estimators.compute("r3", rewards, context={"replayed": replayed})[0]
        wrong.append(float(adv[0]))
        right.append(float(adv[-1]))
    fig, (ax,) = _figure(1, 6.5)
    ax.plot(ks, right, "o-", label="replayed correct sample")
    ax.plot(ks, wrong, "s-", label="each own wrong sample")
    ax.axhline(0.0, color="k", ls="--", lw=1, label="GRPO (all wrong: no signal)")
    ax.set(xlabel=f"replayed successes k in a group of {G}", ylabel="advantage", title="R^3: replay makes a signal")
    ax.legend(frameon=False)
    fig.tight_layout()
    return fig


def adhint_figure(solution_tokens: int = 12) -> Figure:
    """ADHint: the hint ratio :func:`~rlbook.mechanisms.curricula.adhint.hint_ratio` against the naive rollouts' success, and the
    hint length (:func:`~rlbook.mechanisms.curricula.adhint.hint_ids`) on a solution of ``solution_tokens`` tokens."""
    success = np.linspace(0, 1, 9)
    ratio = [adhint.hint_ratio(float(s)) for s in success]
    hint_len = [len(adhint.hint_ids(list(range(solution_tokens)), r)) for r in ratio]
    fig, (ax, bx) = _figure()
    ax.plot(success, ratio, "o-")
    ax.set(xlabel="naive rollouts' success", ylabel="hint ratio w", ylim=(0, 1), title="w = 0.8 (1 - success) + 0.1")
    bx.bar(success, hint_len, width=0.09)
    bx.set(xlabel="naive rollouts' success", ylabel="hint tokens", title=f"prefix of a {solution_tokens}-token solution")
    fig.tight_layout()
    return fig


def pf_ppo_figure(n: int = 3000, group: int = 5, seed: int = 0) -> Figure:
    """PF-PPO on the simulated reward model :func:`~rlbook.mechanisms.curricula.pf_ppo.noisy_rm`: the share of correct answers
    among samples of each score (extremes reliable, the middle not), and which ranks each strategy keeps."""
    correct = (np.random.default_rng(seed).random(n) < 0.5).tolist()
    scores = np.asarray(pf_ppo.noisy_rm([""] * n, [None] * n, correct=correct,  # type: ignore[list-item]
                                        prompt_ids=[i // group for i in range(n)], step=0))
    bins = np.linspace(-1, 1, 11)
    where = np.clip(np.digitize(scores, bins) - 1, 0, len(bins) - 2)
    c = np.asarray(correct, dtype=float)
    share = [c[where == b].mean() if (where == b).any() else np.nan for b in range(len(bins) - 1)]
    fig, (ax, bx) = _figure()
    ax.plot((bins[:-1] + bins[1:]) / 2, share, "o-")
    ax.set(xlabel="reward-model score s", ylabel="share correct", ylim=(0, 1), title="noisy_rm: reliable at the extremes")
    ranks = np.arange(group)
    for off, strategy in enumerate(("bon", "br", "bw", "all")):
        kept = np.zeros(group)
        for j in range(200):
            for i in pf_ppo.pf_select(list(-ranks.astype(float)), strategy, np.random.default_rng(j)):
                kept[i] += 1 / 200
        bx.bar(ranks + 1 + (off - 1.5) * 0.2, kept, width=0.2, label=strategy)
    bx.set(xlabel=f"rank by score in a group of {group} (1 = best)", ylabel="P(kept)", ylim=(0, 1.3),
           title="which ranks each strategy keeps")
    bx.legend(frameon=False, ncol=4, loc="upper center")
    fig.tight_layout()
    return fig


def adora_figure(lamda: float = 0.1, max_len: int = 40) -> Figure:
    """ADORA's group weight (:func:`~rlbook.mechanisms.curricula.adora.adora_weights`) for a group of one correct answer of length
    x and one complete wrong answer of length y: 1 where x > y, ``lamda`` elsewhere."""
    lens = torch.arange(1, max_len + 1, dtype=torch.float32)
    x, y = torch.meshgrid(lens, lens, indexing="xy")
    lengths = torch.stack([x.reshape(-1), y.reshape(-1)], dim=1)
    correct = torch.tensor([[True, False]]).expand(lengths.shape[0], 2)
    w = adora.adora_weights(correct, lengths, float(max_len + 1), lamda).view(max_len, max_len)
    fig, (ax,) = _figure(1, 5.2, 4.2)
    im = ax.imshow(w.numpy(), origin="lower", extent=(1, max_len, 1, max_len), cmap="viridis", vmin=0, vmax=1)
    ax.set(xlabel="longest correct answer (tokens)", ylabel="mean complete wrong answer (tokens)",
           title=f"ADORA weight: 1 (yellow) or lambda = {lamda}")
    fig.colorbar(im, ax=ax, shrink=0.8)
    fig.tight_layout()
    return fig


def tppo_figure(T: int = 10, lam: float = 0.95) -> Figure:
    """T-PPO's extended GAE (:func:`~rlbook.mechanisms.curricula.tppo.egae`, unwhitened) on a finished rollout (reward 1) and one
    cut at the window, both with values rising from 0.3 to 0.7; GRPO gives every token of a rollout one value."""
    values = torch.linspace(0.3, 0.7, T).repeat(2, 1)
    adv = tppo.egae(torch.tensor([1.0, 0.0]), values, torch.tensor([T, T]), torch.tensor([True, False]), lam=lam)
    fig, (ax,) = _figure(1, 6.5)
    t = np.arange(T)
    ax.bar(t - 0.2, adv[0].numpy(), width=0.4, label="finished, reward 1")
    ax.bar(t + 0.2, adv[1].numpy(), width=0.4, label="cut at the window (no reward)")
    ax.plot(t, values[0].numpy(), "k.-", lw=1, label="V(s_t)")
    ax.set(xlabel="token t", ylabel="advantage", title=f"EGAE (gamma = 1, lambda = {lam}): cut rollouts bootstrap V")
    ax.legend(frameon=False)
    fig.tight_layout()
    return fig
