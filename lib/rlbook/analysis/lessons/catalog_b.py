"""Mechanism figures of the conditional (HDPO), COPO, CANON, ARM and GTPO notebooks: one function per figure, each
drawn from the registered mechanism (``estimators.compute``, ``losses.compute``) on a toy batch in well under a
second.  Every function returns the matplotlib ``Figure``."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from rlbook.mechanisms import estimators, losses

__all__ = ["conditional_figure", "copo_figure", "canon_figure", "arm_figure", "gtpo_figure"]


def _bars(ax: plt.Axes, x: np.ndarray, series: dict[str, np.ndarray], width: float = 0.8) -> None:
    w = width / len(series)
    for i, (label, y) in enumerate(series.items()):
        ax.bar(x + (i - (len(series) - 1) / 2) * w, y, w, label=label)
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.grid(alpha=0.3, axis="y")


def conditional_figure(lengths: Sequence[float] = (6, 10, 14, 18, 22, 26, 30, 32),
                       correct: Sequence[bool] = (True, True, True, True, True, False, False, False),
                       penalty: float = 0.002, weight: float = 1.0, max_new_tokens: int = 32) -> Figure:
    """One group: the advantage of each sample (sorted by length) under GRPO on correctness, GRPO on correctness
    plus a scalar length penalty ``-penalty * length`` (the coupled reward HDPO argues against) and the
    conditional estimator (accuracy channel + ``weight`` x the length channel z-scored among correct samples)."""
    lens = torch.tensor([list(map(float, lengths))])
    ok = torch.tensor([list(correct)])
    r = ok.float()
    series = {
        "GRPO (correctness)": estimators.compute("grpo", r)[0].numpy(),
        f"GRPO (correctness - {penalty} x length)": estimators.compute("grpo", r - penalty * lens)[0].numpy(),
        f"conditional (weight {weight})": estimators.compute(
            "conditional", r, context={"correct": ok, "lengths": lens}, weight=weight)[0].numpy(),
    }
    fig, ax = plt.subplots(figsize=(9, 3.8))
    x = np.arange(len(lengths))
    _bars(ax, x, series)
    ax.set_xticks(x, [f"{int(n)} tok\n{'right' if c else 'wrong'}" for n, c in zip(lengths, correct, strict=True)])
    ax.set(ylabel="advantage", title="A mild scalar length penalty barely separates the correct answers; the "
                                     "conditional channel does")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def copo_figure(group_size: int = 8, k: float = 5.0, b: float = 1.0) -> Figure:
    """Left: COPO's local weight w = sigmoid(k (H - b)) against the group's answer entropy H (bits).  Right: the
    advantage of a correct and of a wrong sample against the group's success rate, on a batch with one group for
    every number of correct samples (correct samples share one answer, wrong ones all differ), COPO vs GRPO."""
    g = int(group_size)
    rewards = (torch.arange(g).expand(g + 1, g) < torch.arange(g + 1).unsqueeze(-1)).float()
    ids = torch.where(rewards > 0, torch.zeros_like(rewards), 1 + torch.arange(g).expand(g + 1, g).float()).long()
    copo = estimators.compute("copo", rewards, context={"answer_ids": ids}, k=k, b=b)
    grpo = estimators.compute("grpo", rewards)
    rate = np.arange(g + 1) / g
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    h = np.linspace(0.0, np.log2(g), 100)
    axes[0].plot(h, 1.0 / (1.0 + np.exp(-k * (h - b))))
    axes[0].set(xlabel="answer entropy H of the group (bits)", ylabel="weight of the local (group) advantage",
                title=f"w = sigmoid({k:g} (H - {b:g}))")
    for adv, name, style in ((copo, "COPO", "-"), (grpo, "GRPO", "--")):
        for pick, who in ((rewards > 0, "correct"), (rewards == 0, "wrong")):
            vals = torch.where(pick, adv, torch.full_like(adv, float("nan"))).nanmean(dim=1).numpy()
            axes[1].plot(rate, vals, style, marker="o", label=f"{name}, {who} sample")
    axes[1].axhline(0.0, color="grey", lw=0.8)
    axes[1].set(xlabel=f"group success rate (k of G = {g})", ylabel="advantage",
                title="all-right and all-wrong groups get a global signal")
    axes[1].legend(fontsize=8)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def canon_figure(lengths: Sequence[float] = (4, 8, 12, 16, 20, 24, 28, 32)) -> Figure:
    """One group sorted by length, two worlds: the short half is right more often (left) or the long half is
    (right).  CANON pushes whichever half does better without being told the direction; Dr. GRPO sees only the
    rewards."""
    lens = torch.tensor([list(map(float, lengths))])
    worlds = {"short answers do better": [1, 1, 1, 0, 1, 0, 0, 0], "long answers do better": [0, 0, 0, 1, 0, 1, 1, 1]}
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    x = np.arange(len(lengths))
    for ax, (title, r) in zip(axes, worlds.items(), strict=True):
        rewards = torch.tensor([list(map(float, r))])
        _bars(ax, x, {"Dr. GRPO": estimators.compute("dr_grpo", rewards)[0].numpy(),
                      "CANON (length, lambda 1)": estimators.compute("canon", rewards,
                                                                     context={"lengths": lens})[0].numpy()})
        ax.set_xticks(x, [f"{int(n)}\n{'R' if v else 'W'}" for n, v in zip(lengths, r, strict=True)])
        ax.set(xlabel="length (tokens), R = right, W = wrong", title=title)
    axes[0].set_ylabel("advantage")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def arm_figure(alphas: Sequence[float] = (0.5, 1.0), group_size: int = 8) -> Figure:
    """A group with half its answers right: the advantage of each answer against its confidence c(o|q) (per-token
    log-ratio to the reference), ARM for several alpha vs GRPO.  Over-confident right answers get less, unsure
    right answers more; the wrong ones shift the same way."""
    g = int(group_size)
    rewards = (torch.arange(g) % 2 == 0).float().unsqueeze(0)
    conf = torch.linspace(-1.0, 1.0, g).unsqueeze(0)
    ctx = {"seq_log_ratio": conf * 10.0, "lengths": torch.full((1, g), 10.0)}
    fig, ax = plt.subplots(figsize=(7, 4))
    grpo = estimators.compute("grpo", rewards)[0].numpy()
    c = conf[0].numpy()
    right = rewards[0].numpy() > 0
    ax.plot(c[right], grpo[right], "k--", marker="o", label="GRPO, right")
    ax.plot(c[~right], grpo[~right], "k:", marker="x", label="GRPO, wrong")
    for a in alphas:
        adv = estimators.compute("arm", rewards, context=ctx, alpha=a)[0].numpy()
        ax.plot(c[right], adv[right], marker="o", label=f"ARM alpha {a:g}, right")
        ax.plot(c[~right], adv[~right], marker="x", ls=":", label=f"ARM alpha {a:g}, wrong")
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.set(xlabel="answer confidence c(o|q): per-token log pi / pi_ref", ylabel="advantage",
           title="ARM: A + alpha (c(q) - c(o|q)) in groups with some reward")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def gtpo_figure() -> Figure:
    """Token weights (minus the token loss at ratio 1) of a toy group of four completions that share their opening
    and closing tokens: GRPO's ``ppo_clip`` weights every token by A; GTPO doubles the shared tokens of the
    positive completions, zeroes them in the negative ones and divides by the number of conflict tokens."""
    ids = torch.tensor([[1, 2, 3, 9, 7], [1, 2, 4, 9, 7], [1, 5, 6, 9, 7], [1, 2, 8, 8, 7]])
    mask = torch.ones_like(ids, dtype=torch.bool)
    adv = torch.tensor([1.0, -1.0, 1.0, -1.0], dtype=torch.float64)
    logp = torch.full(ids.shape, -1.0, dtype=torch.float64)
    ctx = {"token_ids": ids, "group_ids": torch.zeros(4, dtype=torch.long),
           "entropy": torch.full(ids.shape, 0.1, dtype=torch.float64)}
    gtpo, _ = losses.compute("gtpo", logp, logp, adv, mask, context=ctx)
    grpo, _ = losses.compute("ppo_clip", logp, logp, adv, mask)
    panels = {"GRPO (ppo_clip)": -grpo.numpy(), "GTPO": -gtpo.numpy()}
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    top = max(float(np.abs(p).max()) for p in panels.values())
    for ax, (title, w) in zip(axes, panels.items(), strict=True):
        im = ax.imshow(w, cmap="RdBu", vmin=-top, vmax=top)
        for (i, j), v in np.ndenumerate(w):
            ax.text(j, i, f"{int(ids[i, j])}\n{v:+.2f}", ha="center", va="center", fontsize=7)
        ax.set_yticks(range(4), [f"A = {a:+.0f}" for a in adv.tolist()])
        ax.set(xlabel="position (token id, weight)", title=title)
    fig.colorbar(im, ax=axes, shrink=0.8, label="token weight")
    return fig
