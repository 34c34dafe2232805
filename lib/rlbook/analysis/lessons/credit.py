"""Mechanism figures of the credit-assignment family (advantages inside a completion): each function draws one
picture from the library's own estimators (``rlbook.mechanisms.estimators.process``) and probes (``rlbook.mechanisms.credit``) in well
under a second and returns the matplotlib Figure.  Most take the worked example's toy batch (``rewards`` ``[P, G]``
and its token context) so the picture shows the numbers the reader just checked by hand."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor

from rlbook.mechanisms import estimators
from rlbook.mechanisms.estimators import process

__all__ = ["capo_figure", "clip_delta_figure", "family_figure", "implicit_prm_figure", "min_form_figure",
           "prime_figure", "rewarding_progress_figure", "spae_figure", "spo_chain_figure", "tempo_figure"]

FAMILY = ("grpo", "prime_rloo", "tempo", "min_form", "clip_delta", "spae", "capo", "spo_chain", "rewarding_progress")


def _figure(ncols: int = 1, width: float = 6.5, height: float = 3.6) -> tuple[Figure, list]:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=(width, height), squeeze=False)
    return fig, list(axes[0])


def _length(context: Mapping[str, Any], row: tuple[int, int]) -> int:
    return int(context["token_mask"][row].sum())


def _bars(ax: Any, columns: Mapping[str, Tensor], n: int) -> None:
    """Grouped bars, one group per token of the first ``n`` positions, one bar per column."""
    width = 0.8 / len(columns)
    t = np.arange(n)
    for i, (name, values) in enumerate(columns.items()):
        ax.bar(t + (i - (len(columns) - 1) / 2) * width, values[:n].detach().double().numpy(), width=width, label=name)
    ax.axhline(0.0, color="k", lw=0.6)
    ax.set_xticks(t)
    ax.set_xlabel("token t of the completion")


def _steps(ax: Any, context: Mapping[str, Any], row: tuple[int, int], n: int) -> None:
    """Shade every other step (line) of the completion so the reader sees which tokens share a step."""
    idx = context["step_index"][row][:n]
    for k in range(int(idx.max()) + 1):
        where = (idx == k).nonzero().flatten()
        if k % 2 == 0 and len(where):
            ax.axvspan(float(where[0]) - 0.5, float(where[-1]) + 0.5, color="grey", alpha=0.12, lw=0)


def prime_figure(rewards: Tensor, context: Mapping[str, Any], row: tuple[int, int] = (0, 0)) -> Figure:
    """PRIME on one completion: the implicit PRM's token rewards, and ``prime_rloo``'s token advantages (process +
    outcome, returns-to-go, whitened) against outcome-only RLOO (``process_coef=0``) and GRPO."""
    n = _length(context, row)
    prime = estimators.compute("prime_rloo", rewards, context=dict(context))[row]
    rloo = estimators.compute("prime_rloo", rewards, context=dict(context), process_coef=0.0)[row]
    grpo = estimators.compute("grpo", rewards)[row].expand(n)
    fig, (ax, bx) = _figure(2, 11.0)
    _bars(ax, {"token reward beta log(pi_phi / pi_ref)": context["token_rewards"][row]}, n)
    ax.set(ylabel="process reward", title=f"implicit PRM on completion {row} (outcome {float(rewards[row]):g})")
    ax.legend(frameon=False, fontsize=8)
    _bars(bx, {"PRIME": prime, "RLOO (outcome only)": rloo, "GRPO": grpo}, n)
    bx.set(ylabel="advantage", title="advantages per token")
    bx.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def implicit_prm_figure(token_rewards: Tensor, correct: Tensor, token_mask: Tensor) -> Figure:
    """The implicit PRM's Q-values Q_t = sum_{s <= t} beta log(pi_phi / pi_ref) along each completion
    (:func:`rlbook.mechanisms.estimators.process.reverse_cumsum` read backwards), coloured by the verifier's verdict."""
    q = (token_rewards * token_mask).flip(-1)
    q = (process.reverse_cumsum(q) * token_mask.flip(-1)).flip(-1)  # running sum from the first token
    fig, (ax,) = _figure()
    for j in range(q.shape[0]):
        for g in range(q.shape[1]):
            n = int(token_mask[j, g].sum())
            ok = bool(correct[j, g])
            ax.plot(range(1, n + 1), q[j, g, :n].numpy(), "o-", color="tab:green" if ok else "tab:red",
                    label="correct" if ok else "wrong")
    handles, labels = ax.get_legend_handles_labels()
    keep = dict(zip(labels, handles, strict=True))
    ax.legend(keep.values(), keep.keys(), frameon=False)
    ax.axhline(0.0, color="k", lw=0.6)
    ax.set(xlabel="token t", ylabel="Q_t", title="implicit PRM: partial sums of beta log(pi_phi / pi_ref)")
    fig.tight_layout()
    return fig


def family_figure(rewards: Tensor, context: Mapping[str, Any], row: tuple[int, int] = (0, 0),
                  names: tuple[str, ...] = FAMILY) -> Figure:
    """Every estimator of the family on one completion of the same batch: token advantages as a heat map (rows:
    estimators, columns: tokens), steps separated by vertical lines."""
    n = _length(context, row)
    rows = [estimators.compute(name, rewards, context=dict(context))[row] for name in names]
    grid = torch.stack([r.expand(n) if r.dim() == 0 else r[:n] for r in rows]).double().numpy()
    fig, (ax,) = _figure(1, 8.0, 0.45 * len(names) + 1.4)
    lim = float(np.abs(grid).max()) or 1.0
    im = ax.imshow(grid, cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
    ax.set_yticks(range(len(names)), names)
    ax.set_xticks(range(n))
    idx = context["step_index"][row][:n]
    for t in range(1, n):
        if int(idx[t]) != int(idx[t - 1]):
            ax.axvline(t - 0.5, color="k", lw=0.8)
    ax.set(xlabel="token t (vertical lines: step boundaries)",
           title=f"token advantages of completion {row} (outcome {float(rewards[row]):g})")
    fig.colorbar(im, ax=ax, shrink=0.8)
    fig.tight_layout()
    return fig


def spo_chain_figure(rewards: Tensor, context: Mapping[str, Any], row: tuple[int, int] = (0, 0)) -> Figure:
    """SPO-chain on one completion: the sampling probability of each token, the Monte Carlo values at the cutpoints
    and the chain advantages (before whitening) against GRPO's."""
    n = _length(context, row)
    adv = estimators.compute("spo_chain", rewards, context=dict(context), whiten=False)[row]
    probs = context["old_logp"][row][:n].exp()
    values = context["token_values"][row][:n]
    fig, (ax, bx) = _figure(2, 11.0)
    t = np.arange(n)
    ax.bar(t, probs.numpy(), color=["tab:orange" if p < 0.9 else "tab:grey" for p in probs.tolist()])
    ax.axhline(0.9, color="k", ls="--", lw=0.8, label="0.9: tokens above get A = 0")
    cut = ~torch.isnan(values)
    ax.plot(t[cut.numpy()], values[cut].numpy(), "kD", label="MC value after the token")
    ax.set(xlabel="token t", ylabel="probability / value", ylim=(0, 1.05), title="sampled-token probability, cutpoints")
    ax.legend(frameon=False, fontsize=8)
    _bars(bx, {"SPO-chain (unwhitened)": adv, "GRPO": estimators.compute("grpo", rewards)[row].expand(n)}, n)
    bx.set(ylabel="advantage", title="value difference across each segment")
    bx.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def tempo_figure(rewards: Tensor, context: Mapping[str, Any], prompt: int = 0) -> Figure:
    """TEMPO on one group: each completion's token advantages as a heat map, its token ids written in the cells
    (shared prefixes share ids; the TD correction sits where the prefix tree branches)."""
    adv = estimators.compute("tempo", rewards, context=dict(context))[prompt].double()
    ids = context["completion_ids"][prompt]
    mask = context["token_mask"][prompt]
    n = int(mask.sum(-1).max())
    fig, (ax,) = _figure(1, 7.5, 0.6 * adv.shape[0] + 1.6)
    lim = float(adv.abs().max()) or 1.0
    shown = np.where(mask[:, :n].numpy() > 0, adv[:, :n].numpy(), np.nan)
    im = ax.imshow(shown, cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
    for g in range(adv.shape[0]):
        for t in range(int(mask[g].sum())):
            dark = abs(float(adv[g, t])) > 0.6 * lim
            ax.text(t, g, str(int(ids[g, t])), ha="center", va="center", fontsize=9, color="w" if dark else "k")
    ax.set_xticks(range(n))
    grpo = estimators.compute("grpo", rewards)[prompt]
    ax.set_yticks(range(adv.shape[0]), [f"r={float(r):g}, GRPO {float(a):+.2f}" for r, a in zip(rewards[prompt], grpo,
                                                                                               strict=True)])
    ax.set(xlabel="token t (numbers: token ids)", title="TEMPO: GRPO's advantage + TD at the branching tokens")
    fig.colorbar(im, ax=ax, shrink=0.8)
    fig.tight_layout()
    return fig


def min_form_figure(max_steps: int = 8, good: float = 0.9, bad: float = -0.6, temperature: float = 0.1) -> Figure:
    """PURE: the return of a completion of K steps scored ``good`` plus one ``bad`` step, against K, with sum-form credit
    (the plain sum of step scores) and the min-form transform :func:`~rlbook.mechanisms.estimators.process.pure_step_rewards`."""
    ks = list(range(1, max_steps + 1))
    out: dict[str, list[float]] = {"sum-form (sum of s_k)": [], "min-form (softmax(-s/T) weights)": [],
                                   "mean (sum-form ablation, / K)": []}
    for k in ks:
        s = torch.tensor([[[good] * k + [bad]]])
        m = torch.ones_like(s, dtype=torch.bool)
        out["sum-form (sum of s_k)"].append(float(s.sum()))
        out["min-form (softmax(-s/T) weights)"].append(float(process.pure_step_rewards(s, m, temperature, "min").sum()))
        out["mean (sum-form ablation, / K)"].append(float(process.pure_step_rewards(s, m, temperature, "mean").sum()))
    fig, (ax,) = _figure()
    for name, ys in out.items():
        ax.plot(ks, ys, "o-", label=name)
    ax.axhline(bad, color="grey", ls="--", lw=0.8, label=f"the worst step's score {bad:g}")
    ax.set(xlabel=f"good steps (score {good:g}) before one bad step", ylabel="return of the completion",
           title="repeating good steps pays under sum-form only")
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def spae_figure(rewards: Tensor, context: Mapping[str, Any], row: tuple[int, int] = (0, 0)) -> Figure:
    """SPAE on one completion: its step potential Phi_k (context ``step_values``; the probe's
    :func:`rlbook.mechanisms.credit.potential` of Acc and Conf) and the token advantages against GRPO's."""
    n = _length(context, row)
    K = int(context["step_mask"][row].sum())
    phi = context["step_values"][row][:K]
    adv = estimators.compute("spae", rewards, context=dict(context))[row]
    fig, (ax, bx) = _figure(2, 11.0)
    ax.plot(range(1, K + 1), phi.numpy(), "o-")
    ax.axhline(0.9, color="k", ls="--", lw=0.8, label="saturation tau_sat = 0.9")
    ax.set(xlabel="step k", ylabel="Phi_k", title="step potential Phi = 1.5 Acc Conf + 0.5 Acc - Conf")
    ax.legend(frameon=False, fontsize=8)
    _steps(bx, context, row, n)
    _bars(bx, {"SPAE": adv, "GRPO": estimators.compute("grpo", rewards)[row].expand(n)}, n)
    bx.set(ylabel="advantage", title="w_k a_i + xi dPhi_k on each step's tokens (shaded: steps)")
    bx.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def rewarding_progress_figure(rewards: Tensor, context: Mapping[str, Any], row: tuple[int, int] = (0, 0)) -> Figure:
    """Rewarding Progress on one completion: token advantages with the policy as its own prover (K = 1) and a
    Best-of-4 prover (K = 4), against the centred outcome alone (Dr. GRPO's R - mean)."""
    n = _length(context, row)
    cols = {f"prover Best-of-{k}": estimators.compute("rewarding_progress", rewards, context=dict(context),
                                                      prover_k=k)[row] for k in (1, 4)}
    cols["outcome only (R - mean)"] = estimators.compute("dr_grpo", rewards)[row].expand(n)
    fig, (ax,) = _figure(1, 7.5)
    _steps(ax, context, row, n)
    _bars(ax, cols, n)
    ax.set(ylabel="advantage", title="outcome + progress of each step (shaded: steps)")
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def clip_delta_figure(max_steps: int = 8, score: float = 0.8, eta: float = 0.5) -> Figure:
    """Clip / Delta: the process return of a completion of K steps that all score ``score``, against K, for each
    mode of :func:`~rlbook.mechanisms.estimators.process.clip_delta_transform` (``none`` is the plain sum)."""
    ks = list(range(1, max_steps + 1))
    fig, (ax,) = _figure()
    for mode in ("none", "clip", "delta", "clip_delta"):
        ys = []
        for k in ks:
            s = torch.full((1, 1, k), score)
            ys.append(float(process.clip_delta_transform(s, torch.ones_like(s, dtype=torch.bool), mode, eta).sum()))
        ax.plot(ks, ys, "o-", label=mode)
    ax.set(xlabel=f"steps, each scored p = {score:g} by the PRM", ylabel="sum of step rewards",
           title=f"repeating steps pays only without Clip / Delta (eta = {eta:g})")
    ax.legend(frameon=False)
    fig.tight_layout()
    return fig


def capo_figure(rewards: Tensor, context: Mapping[str, Any], rows: tuple[tuple[int, int], ...] = ((0, 0), (0, 1)),
                ) -> Figure:
    """CAPO on two completions: GRPO's outcome advantage minus ``w_process`` on the tokens of the steps the critic
    flags (``step_rewards`` = minus the vote)."""
    adv = estimators.compute("capo", rewards, context=dict(context))
    grpo = estimators.compute("grpo", rewards)
    fig, axes = _figure(len(rows), 5.5 * len(rows))
    for ax, row in zip(axes, rows, strict=True):
        n = _length(context, row)
        _steps(ax, context, row, n)
        _bars(ax, {"CAPO": adv[row], "GRPO": grpo[row].expand(n)}, n)
        flagged = [k + 1 for k, v in enumerate(context["step_rewards"][row].tolist()) if v < 0]
        ax.set(ylabel="advantage", title=f"completion {row}: outcome {float(rewards[row]):g}, flagged steps {flagged}")
        ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig
