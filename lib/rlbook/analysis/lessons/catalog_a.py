"""Mechanism figures of the A-GRAE, single-stream (SPO), stratified GRPO, ACE and DVAO notebooks: one function per
figure, each drawn from the registered estimator (``estimators.compute``) in well under a second, each returning
the matplotlib ``Figure``."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from rlbook.analysis.lessons import finish
from rlbook.mechanisms import estimators

from .estimators import _per_group, ladder

__all__ = ["a_grae_advantage_vs_success", "spo_tracker_vs_group", "stratified_blend", "ace_penalty_vs_confidence",
           "dvao_weights_vs_variance"]


def a_grae_advantage_vs_success(group_size: int = 8, progress: Sequence[float] = (0.1, 0.5, 0.9)) -> Figure:
    """The advantage of a correct (left) and a wrong (right) sample against its group's success rate, GRPO and
    A-GRAE at several curriculum positions t (``curriculum="step"``), on the ladder batch (batch mean 0.5, so
    every positive advantage is halved)."""
    rewards = ladder(group_size)
    rate = np.arange(group_size + 1) / group_size
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharex=True)
    curves = {"GRPO": estimators.compute("grpo", rewards)}
    for t in progress:
        curves[f"A-GRAE, t = {t:g}"] = estimators.compute("a_grae", rewards, context={"step": t, "total_steps": 1},
                                                          curriculum="step")
    for label, adv in curves.items():
        right, wrong = _per_group(adv, rewards)
        style = {"color": "black", "lw": 2, "ls": "--"} if label == "GRPO" else {"marker": "o"}
        axes[0].plot(rate, right, label=label, **style)
        axes[1].plot(rate, wrong, label=label, **style)
    for ax, who in zip(axes, ("a correct sample", "a wrong sample"), strict=True):
        ax.axhline(0.0, color="grey", lw=0.8)
        ax.set(xlabel=f"group success rate (G = {group_size})", ylabel="advantage", title=f"advantage of {who}")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("A-GRAE: easy groups weigh more early (t small), hard groups later; positives scaled by the batch "
                 "mean", fontsize=10)
    fig.tight_layout()
    return fig


def spo_tracker_vs_group(p: float = 0.3, visits: int = 40, group_size: int = 8, seed: int = 0) -> Figure:
    """Left: a prompt of success probability ``p`` visited ``visits`` times with one sample each; the single-stream
    tracker's value before each visit (no drift: rho = 0.96; drift D = D_half: rho = 0.875) against the mean of a
    fresh GRPO group of ``group_size``.  Right: the share of samples with a non-zero advantage, GRPO groups of
    ``group_size`` against the single-stream estimator, as the success probability varies (200 groups each)."""
    gen = torch.Generator().manual_seed(seed)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for drift, label in ((None, "SPO tracker, no drift (rho 0.96)"), (0.06, "SPO tracker, drift = D_half (rho 0.875)")):
        state, values = estimators.make_state("single_stream"), []
        for _ in range(visits):
            r = (torch.rand(1, 1, generator=gen) < p).float()
            values.append(state.value(0) if len(state) else 0.5)
            ctx = {"state": state, "prompt_ids": torch.tensor([0])}
            if drift is not None:
                ctx["spo_drift"] = torch.tensor([drift])
            estimators.compute("single_stream", r, context=ctx)
        axes[0].plot(range(1, visits + 1), values, label=label)
    groups = (torch.rand(visits, group_size, generator=gen) < p).float().mean(1)
    axes[0].plot(range(1, visits + 1), groups.numpy(), ".", color="grey", label=f"GRPO group mean (G = {group_size})")
    axes[0].axhline(p, color="black", ls=":", lw=1, label=f"true p = {p}")
    axes[0].set(xlabel="visit of the prompt", ylabel="baseline", title="the baseline each method subtracts")
    axes[0].legend(fontsize=7)
    probs = np.linspace(0.02, 0.98, 25)
    shares: dict[str, list[float]] = {"GRPO": [], "single stream": []}
    for q in probs:
        r = (torch.rand(200, group_size, generator=gen) < q).float()
        shares["GRPO"].append(float((estimators.compute("grpo", r).abs() > 1e-8).float().mean()))
        flat = r.reshape(-1, 1)
        adv = estimators.compute("single_stream", flat, context={"state": estimators.make_state("single_stream"),
                                                                 "prompt_ids": torch.arange(len(flat))})
        shares["single stream"].append(float((adv.abs() > 1e-8).float().mean()))
    for label, vals in shares.items():
        axes[1].plot(probs, vals, label=label)
    axes[1].set(xlabel="success probability of every prompt", ylabel="share of samples with A != 0",
                title="samples that carry a learning signal")
    axes[1].legend(fontsize=8)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def stratified_blend(rewards: Sequence[float] = (1, 1, 1, 0, 1, 0, 0, 0),
                     strata: Sequence[float] = (1, 1, 1, 1, 0, 0, 0, 0)) -> Figure:
    """One group whose samples fall in two strata (e.g. answer format kept or not): the advantage of each sample
    as the blend between stratified normalisation (1) and GRPO (0) varies."""
    r = torch.tensor([list(map(float, rewards))])
    ctx = {"reward_parts": torch.stack([r, torch.tensor([list(map(float, strata))])], dim=-1)}
    blends = np.linspace(0.0, 1.0, 21)
    adv = np.stack([estimators.compute("stratified", r, context=ctx, key="part", part=-1, blend=float(b))[0].numpy()
                    for b in blends])
    fig, ax = plt.subplots(figsize=(6.5, 4))
    seen = set()
    for i, (ri, si) in enumerate(zip(rewards, strata, strict=True)):
        label = f"{'correct' if ri else 'wrong'}, stratum {int(si)}"
        ax.plot(blends, adv[:, i], color=f"C{int(si) * 2 + int(ri)}", label=None if label in seen else label,
                ls="-" if ri else "--")
        seen.add(label)
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.set(xlabel="blend (0 = GRPO over the group, 1 = normalised within the stratum only)", ylabel="advantage",
           title=f"rewards {list(map(int, rewards))}, strata {list(map(int, strata))}")
    return finish(fig, ax)


def ace_penalty_vs_confidence(alphas: Sequence[float] = (0.5, 1.0, 2.0), group: Sequence[float] = (1, 0, 0, 0)
                              ) -> Figure:
    """The advantage of a wrong sample (left) and of a correct one (right) against the confidence shift
    c = log pi/pi_ref of that sample, GRPO and ACE at several alphas, in the group ``group``."""
    c = torch.linspace(-4.0, 4.0, 81)
    r = torch.tensor([list(map(float, group))]).expand(len(c), -1)
    wrong_i, right_i = group.index(0), group.index(1)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharex=True)
    for label, name, kw in [("GRPO", "grpo", {})] + [(f"ACE, alpha = {a:g}", "ace", {"alpha": a}) for a in alphas]:
        shift = torch.zeros_like(r)
        shift[:, wrong_i] = c
        shift[:, right_i] = c
        adv = estimators.compute(name, r, context={"seq_log_ratio": shift}, **kw)
        style = {"color": "black", "lw": 2, "ls": "--"} if name == "grpo" else {}
        axes[0].plot(c.numpy(), adv[:, wrong_i].numpy(), label=label, **style)
        axes[1].plot(c.numpy(), adv[:, right_i].numpy(), label=label, **style)
    for ax, who in zip(axes, ("a wrong sample", "a correct sample"), strict=True):
        ax.axvline(0.0, color="grey", ls=":", lw=1)
        ax.set(xlabel="confidence shift c = log pi(y|x) - log pi_ref(y|x)", ylabel="advantage",
               title=f"advantage of {who}")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"ACE in the group {list(map(int, group))}: errors the policy grew confident in are pushed down "
                 "harder", fontsize=10)
    fig.tight_layout()
    return fig


def dvao_weights_vs_variance(group_size: int = 8, correct: int = 4, format_weight: float = 0.5) -> Figure:
    """A group with ``correct`` of ``group_size`` samples correct and k samples in the requested format (k = 0..G,
    the formatted ones alternate between correct and wrong): DVAO's weight on correctness (left) and the largest
    |advantage| (right), DVAO against the fixed-weight advantage sum and GRPO on the summed reward."""
    g = group_size
    corr = torch.tensor([1.0 if i < correct else 0.0 for i in range(g)])
    order = [i for pair in zip(range(correct), range(correct, g), strict=False) for i in pair]
    order += [i for i in range(g) if i not in order]
    omega = torch.tensor([1.0, format_weight])
    ks = np.arange(g + 1)
    weight, biggest = [], {"DVAO (variance weights)": [], "advantage sum (fixed weights)": [], "reward sum (GRPO)": []}
    for k in ks:
        fmt = torch.zeros(g)
        fmt[order[:k]] = 1.0
        parts = torch.stack([corr, fmt], dim=-1).unsqueeze(0)
        total = (parts * omega).sum(-1)
        ctx = {"reward_parts": parts, "part_weights": omega}
        var = parts.var(dim=1, correction=0)[0]
        raw = omega * var
        weight.append(float(raw[0] / raw.sum()))
        biggest["DVAO (variance weights)"].append(float(estimators.compute("dvao", total, context=ctx).abs().max()))
        biggest["advantage sum (fixed weights)"].append(
            float(estimators.compute("dvao", total, context=ctx, weighting="fixed").abs().max()))
        biggest["reward sum (GRPO)"].append(float(estimators.compute("grpo", total).abs().max()))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharex=True)
    axes[0].plot(ks, weight, marker="o", label="DVAO")
    axes[0].axhline(1.0 / (1.0 + format_weight), color="black", ls="--", label="fixed weights")
    axes[0].set(ylabel="weight on correctness", title="combination weight of the correctness channel")
    for label, vals in biggest.items():
        axes[1].plot(ks, vals, marker="o", label=label)
    axes[1].axhline((g - 1) ** 0.5, color="grey", ls=":", label="sqrt(G - 1)")
    axes[1].set(ylabel="max |advantage| in the group", title="advantage magnitude")
    for ax in axes:
        ax.set(xlabel=f"samples in the requested format (of G = {g}; {correct} correct)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
