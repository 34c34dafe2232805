"""Mechanism figures of the MHPO and Lp-Reg notebooks: each drawn from the registered mechanism
(``losses.compute``, ``estimators.compute``, :func:`rlbook.mechanisms.exploration.min_p_proxy_log_ratio`) on a toy batch in
well under a second.  Every function returns the matplotlib ``Figure``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from rlbook.analysis.lessons import finish
from rlbook.mechanisms import estimators, losses
from rlbook.mechanisms.exploration import min_p_proxy_log_ratio

__all__ = ["gradient_weights", "lp_reg_figure", "mhpo_figure"]

MHPO_COMPARED: dict[str, tuple[str, dict[str, Any]]] = {
    "GRPO (hard clip 0.2)": ("ppo_clip", {}),
    "SAPO (soft gate)": ("sapo", {}),
    "MHPO (LFM x hazard)": ("mhpo", {}),
}


def gradient_weights(name: str, ratios: np.ndarray, advantage: float, **hyper: Any) -> np.ndarray:
    """The weight ``w`` of ``A grad log pi`` in loss ``name``'s gradient, per ratio (one token each)."""
    logp = torch.tensor(np.log(ratios), dtype=torch.float64).unsqueeze(-1).requires_grad_(True)
    adv = torch.full((len(ratios),), float(advantage), dtype=torch.float64)
    token_loss, _ = losses.compute(name, logp, torch.zeros_like(logp), adv, torch.ones_like(logp), **hyper)
    (grad,) = torch.autograd.grad(token_loss.sum(), logp)
    return (-grad[:, 0] / adv).numpy()


def mhpo_figure(compared: Mapping[str, tuple[str, dict[str, Any]]] = MHPO_COMPARED,
                ratios: np.ndarray | None = None) -> Figure:
    """The gradient weight per token against its ratio pi / pi_old, for a positive and a negative advantage: GRPO's
    clip cuts it to 0 on one side, SAPO's gate fades it symmetrically, MHPO's weight exp(psi - zeta) sech^2 is
    bounded, smooth and damps shrinking tokens (r < 1) harder than growing ones (the decoupled hazard).  The
    dotted line is MHPO's weight divided by its value at r = 1 (0.265: the hazard at r = 1 is not zero)."""
    r = np.linspace(0.05, 4.0, 400) if ratios is None else np.asarray(ratios, dtype=float)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
    for ax, adv in zip(axes, (1.0, -1.0), strict=True):
        for label, (name, hyper) in compared.items():
            w = gradient_weights(name, r, adv, **hyper)
            ax.plot(r, w, label=label)
            if name == "mhpo":
                ax.plot(r, w / gradient_weights(name, np.ones(1), adv, **hyper)[0], ls=":", color=ax.lines[-1].get_color(),
                        label="MHPO / its weight at r = 1")
        ax.axvline(1.0, color="grey", lw=0.8)
        ax.set(xlabel="ratio pi / pi_old", title=f"A = {adv:+.0f}")
    axes[0].set_ylabel("gradient weight of A grad log pi")
    return finish(fig, *axes)


def lp_reg_figure(probs: Sequence[float] = (0.42, 0.2, 0.12, 0.08, 0.05, 0.04, 0.03, 0.02, 0.01, 0.008, 0.007, 0.005),
                  min_p: float = 0.05) -> Figure:
    """Left: one position's next-token distribution and Lp-Reg's proxy (tokens below ``min_p`` x the top
    probability dropped as noise, the rest renormalised).  Right: the advantage a negative-advantage token gets
    once selected, A' = A + (pi_proxy / pi - 1), against the mass Z the proxy keeps at its position (estimator
    ``lp_reg`` on a toy group): the further the filter cuts, the harder the regulariser pulls the token back up,
    until the KL's clamp (k3 > 10) switches it off."""
    p = torch.tensor(list(probs), dtype=torch.float64)
    p = p / p.sum()
    logits = p.log().expand(len(p), -1)
    d = min_p_proxy_log_ratio(logits, torch.arange(len(p)), min_p=min_p)
    proxy = torch.where(torch.isfinite(d), p * torch.exp(d), torch.zeros_like(p))
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
    x = np.arange(len(p))
    ax.bar(x - 0.2, p.numpy(), 0.4, label="policy pi")
    ax.bar(x + 0.2, proxy.numpy(), 0.4, label=f"proxy (min-p {min_p})")
    ax.axhline(min_p * float(p.max()), color="grey", ls=":", lw=0.8, label="noise threshold")
    ax.set(xlabel="candidate token (sorted)", ylabel="probability", yscale="log",
           title="the proxy drops noise tokens and lifts the rest")
    kept = torch.linspace(0.02, 1.0, 99)
    ratio = -kept.log()  # d = -log Z for a kept token
    context = {"old_logp": torch.full((1, 2, len(kept)), -5.0), "token_mask": torch.ones(1, 2, len(kept)),
               "lp_proxy_log_ratio": torch.stack([torch.zeros_like(ratio), ratio]).unsqueeze(0)}
    adv = estimators.compute("lp_reg", torch.tensor([[1.0, 0.0]]), context=context, neg_k_percent=1.0)
    ax2.plot(kept.numpy(), adv[0, 1].numpy(), label="Lp-Reg A' (wrong answer's token)")
    ax2.plot(kept.numpy(), np.full(len(kept), float(adv[0, 1, -1])), ls="--", label="GRPO A")
    ax2.axhline(0.0, color="grey", lw=0.8)
    ax2.set(xlabel="mass Z the proxy keeps at the token's position", ylabel="advantage",
            title="a selected low-probability token is shielded")
    return finish(fig, ax, ax2)
