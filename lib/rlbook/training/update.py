"""The policy update: ``inner_epochs`` passes of micro-batched ``loss.backward()``, each closed by one
optimizer step on the LoRA parameters.

Per micro-batch: the policy's per-token log-probs (with a gradient), the old log-probs (the first epoch's,
detached: the parameters do not move during the first epoch because the gradient is accumulated over all
micro-batches before the single optimizer step, so its importance ratio is exactly 1), the loss
(``rlbook.mechanisms.losses``) with the context it names, plus ``kl_coef`` times the KL to the reference, aggregated
by ``cfg.aggregation`` with the whole batch's sequence and token counts (so micro-batch losses sum to the
full-batch loss).  Non-finite steps follow the one policy of every loop (:class:`rlbook.core.guard.StepGuard`): the
optimizer step is skipped when the loss or the gradient norm is not finite (``skipped_step`` in the metrics), and
after ``cfg.max_bad_steps`` such steps in a row training stops with a :class:`~rlbook.core.errors.TrainingError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from rlbook.core.config import TrainConfig
from rlbook.core.guard import StepGuard
from rlbook.mechanisms import losses
from rlbook.mechanisms.components import Components
from rlbook.policy.rollout import Rollout, forward_logprobs, slice_rows

EMPTY = {"loss": 0.0, "clip_frac": 0.0, "entropy": float("nan"), "kl": float("nan"), "grad_norm": 0.0,
         "trained_tokens": 0, "skipped_step": 0}  # an update with no row to train on


@dataclass
class UpdateInputs:
    """What the update needs from a step's batch (rows are indices into the flattened ``[B]`` rollout)."""

    roll: Rollout
    rows: list[int]  # rows that enter the training pass (zero-advantage rows may be left out)
    batches: list[list[int]]  # ``rows`` cut into micro-batches
    advantages: torch.Tensor  # [B] or [B, T]
    ref_logp: dict[int, torch.Tensor]  # row -> reference log-probs (empty without a reference pass)
    row_context: dict[str, torch.Tensor]  # per-row loss context ([B] or [B, T]), sliced per micro-batch
    n_tokens: float  # unmasked completion tokens of the whole batch
    old_logp: dict[int, torch.Tensor] = field(default_factory=dict)
    n_seqs: int | None = None  # samples of the whole batch (None: every row; fewer with uneven groups)
    token_mask: torch.Tensor | None = None  # [B, Lc]: 0 on tokens a phase leaves out of the loss (None: all)


def _loss_context(inp: UpdateInputs, mb: list[int], ids: torch.Tensor, lc: int, entropy: torch.Tensor | None,
                  ref: torch.Tensor | None, logp: torch.Tensor, G: int, max_new_tokens: int) -> dict[str, Any]:
    idx = torch.tensor(mb, device=logp.device)
    ctx: dict[str, Any] = {
        "entropy": entropy if entropy is not None else torch.zeros_like(logp),
        "token_ids": ids[:, -lc:],
        "group_ids": idx // G,
        "ref_logp": ref,
        "max_new_tokens": max_new_tokens,
    }
    for key, value in inp.row_context.items():
        v = value.to(logp.device).index_select(0, idx)
        ctx[key] = v[:, :lc] if key in losses.TOKEN_CONTEXT else v
    return ctx


def _rows_at_width(per_row: dict[int, torch.Tensor], mb: list[int], lc: int) -> torch.Tensor:
    """``[len(mb), lc]``: each row's per-token values cut or zero-padded to the micro-batch's width ``lc``.  The
    reference pass covers every valid row while the update may leave zero-advantage rows out, so its micro-batches
    differ and it stored each row at its own micro-batch's width (at least the row's length); the padded positions
    lie beyond the row's completion and are masked out of the loss."""
    return torch.stack([torch.nn.functional.pad(per_row[r][:lc], (0, lc - min(lc, per_row[r].shape[0])))
                        for r in mb])


def micro_batch_loss(model: Any, cfg: TrainConfig, comp: Components, inp: UpdateInputs, mb: list[int],
                     epoch: int) -> dict[str, float]:
    """Forward, loss and ``backward()`` of one micro-batch; returns its sums for the step's metrics."""
    B = inp.n_seqs if inp.n_seqs is not None else inp.roll.input_ids.shape[0]
    ids, att, cmask, lc = slice_rows(inp.roll, mb)
    if inp.token_mask is not None:
        cmask = cmask * inp.token_mask[torch.tensor(mb)][:, :lc].to(cmask)
    # Entropy over the vocabulary costs a pass over [mb, T, V]: only when the loss uses it or the sampler
    # did not already measure it.
    need_entropy = "entropy" in comp.loss.entry.needs or (epoch == 0 and inp.roll.entropy is None)
    logp, entropy = forward_logprobs(model, cfg, ids, att, lc, mb, with_entropy=need_entropy)
    if epoch == 0:
        for j, r in enumerate(mb):
            inp.old_logp[r] = logp[j].detach()
    old = torch.stack([inp.old_logp[r][:lc] for r in mb])  # stored by this same micro-batch: already lc wide
    a = inp.advantages[mb].to(logp.device)
    a = a[:, :lc] if a.dim() == 2 else a
    ref = _rows_at_width(inp.ref_logp, mb, lc) if inp.ref_logp else None
    context = _loss_context(inp, mb, ids, lc, entropy, ref, logp, cfg.group_size, cfg.max_new_tokens)
    token_loss, info = losses.compute(cfg.loss, logp, old, a, cmask, context=context, **comp.loss.kwargs)
    kl_sum = 0.0
    if cfg.kl_coef > 0 and ref is not None:
        kl_tok = losses.kl(logp, ref, kind=cfg.kl_kind, mask=cmask)
        token_loss = token_loss + cfg.kl_coef * kl_tok
        kl_sum = float((kl_tok.detach() * cmask).sum())
    loss = losses.aggregate(token_loss, cmask, cfg.aggregation, max_tokens=cfg.max_new_tokens, n_seqs=B,
                            n_tokens=inp.n_tokens)
    loss.backward()
    n_tok = float(cmask.sum())
    return {"loss": float(loss.detach()), "tokens": n_tok, "kl": kl_sum,
            "clip": float(info.get("clip_frac", torch.tensor(0.0))) * n_tok,
            **({"band": float(info["band_frac"]) * n_tok} if "band_frac" in info else {}),
            "entropy": float((entropy * cmask).sum()) if entropy is not None else 0.0}


def policy_update(model: Any, cfg: TrainConfig, comp: Components, params: list[torch.nn.Parameter],
                  optimizer: torch.optim.Optimizer, guard: StepGuard, inp: UpdateInputs,
                  step: int) -> dict[str, Any]:
    """``cfg.inner_epochs`` passes over ``inp``'s micro-batches, one optimizer step each; returns metrics."""
    if not inp.rows:  # every group has zero advantage: nothing to learn from this batch
        return {**EMPTY, **({"clip_frac_late": 0.0} if cfg.inner_epochs > 1 else {})}
    model.train()
    sums = {"loss": 0.0, "clip_frac": 0.0, "entropy": 0.0, "kl": 0.0, "grad_norm": 0.0}
    late: list[float] = []  # clip (or gate) fraction of epochs >= 2, where the ratio can leave 1
    band: list[float] = []  # clip-higher's band (losses.ppo_clip band_frac) in epochs >= 2
    trained_tokens, skipped = 0, 0
    for epoch in range(cfg.inner_epochs):
        parts = [micro_batch_loss(model, cfg, comp, inp, mb, epoch) for mb in inp.batches]
        tot = {k: sum(p[k] for p in parts) for k in ("loss", "tokens", "kl", "clip", "entropy")}
        grad_norm, bad = guard.step(params, optimizer, tot["loss"], cfg.max_grad_norm, step)
        skipped = skipped or int(bad)
        trained_tokens += int(tot["tokens"])
        sums["loss"] += tot["loss"] / cfg.inner_epochs
        sums["clip_frac"] += tot["clip"] / max(tot["tokens"], 1.0) / cfg.inner_epochs
        sums["grad_norm"] += grad_norm / cfg.inner_epochs
        if epoch > 0:
            late.append(tot["clip"] / max(tot["tokens"], 1.0))
            if any("band" in p for p in parts):
                band.append(sum(p.get("band", 0.0) for p in parts) / max(tot["tokens"], 1.0))
        if epoch == 0:
            sums["entropy"] = tot["entropy"] / max(tot["tokens"], 1.0)
            sums["kl"] = tot["kl"] / max(tot["tokens"], 1.0) if cfg.kl_coef > 0 else float("nan")
    out = {**sums, "trained_tokens": trained_tokens, "skipped_step": skipped}
    if cfg.inner_epochs > 1:
        out["clip_frac_late"] = sum(late) / len(late)
    if band:
        out["clip_band_frac_late"] = sum(band) / len(band)
    return out
