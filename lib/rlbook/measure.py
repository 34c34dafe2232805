"""Mechanistic measurements at fixed checkpoints: the quantities the papers' claims are about.

:func:`gradient_variance` measures what BNPO's theorem (and the variance claims of RLOO, REINFORCE++, GSPO,
SAPO) states: the variance of the policy-gradient estimate each advantage estimator gives, at a fixed policy.
At each checkpoint (the base adapter, and the baseline method's trained adapter of the same seed) it samples
``n_batches`` batches of completions, **shared by every estimator**, and computes one LoRA gradient per
estimator per batch: the policy-gradient at ratio 1, ``g = (1/B) sum_i A_i (1/|y_i|) sum_t grad log pi(y_i,t)``
(GRPO's sequence-mean-of-token-mean aggregation for every estimator, so only the advantage differs).  From the
``N`` gradients of an estimator, with ``gbar`` their mean:

* ``rel_var`` per batch: ``||g_b - gbar||^2 / ||gbar||^2``; its mean is the trace of the covariance over the
  squared norm of the mean, a scale-free relative variance (BNPO's 1/pdf weights rescale advantages);
* ``cos`` per batch: cosine between ``g_b`` and the mean of the *other* batches' gradients (leave-one-out);
* ``rel_err`` per batch: ``||g_b - gbar|| / ||gbar||``.

Batches are the units of the claim tables (paired across estimators: the same completions), seeds the
replications (each seed its own batches and trained checkpoint), so :mod:`rlbook.stats` applies unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch

from rlbook import estimators
from rlbook.rollout import forward_logprobs, slice_rows

EstimatorSpec = str | tuple[str, Mapping[str, Any]]


def _est(spec: EstimatorSpec) -> tuple[str, dict[str, Any]]:
    return (spec, {}) if isinstance(spec, str) else (spec[0], dict(spec[1]))


def batch_gradients(trainer: Any, indices: list[int], ests: Mapping[str, EstimatorSpec]) -> dict[str, torch.Tensor]:
    """One batch of G completions for each prompt of ``indices``; the flattened LoRA gradient of every
    estimator's policy gradient on it (one forward pass, one backward per estimator)."""
    batch = trainer.roll_out(indices)
    trainer.add_context(batch)
    rows = list(range(batch.P * batch.G))
    ids, att, cmask, lc = slice_rows(batch.roll, rows)
    trainer.model.train()
    logp, _ = forward_logprobs(trainer.model, trainer.cfg, ids, att, lc, rows)
    seq = (logp * cmask).sum(-1) / cmask.sum(-1).clamp(min=1)  # mean log-prob of each completion
    out = {}
    for label, spec in ests.items():
        name, kw = _est(spec)
        adv = estimators.compute(name, batch.rewards, context=batch.context, **kw).reshape(len(rows), -1)[:, 0]
        grads = torch.autograd.grad(-(adv.to(seq.device) * seq).mean(), trainer.params, retain_graph=True,
                                    allow_unused=True)
        out[label] = torch.cat([(g if g is not None else torch.zeros_like(p)).flatten()
                                for g, p in zip(grads, trainer.params, strict=True)]).detach().double().cpu()
    return out


def per_batch_stats(grads: torch.Tensor) -> pd.DataFrame:
    """``rel_var``, ``rel_err`` and leave-one-out ``cos`` of each of ``N`` gradients ``[N, D]``."""
    n = grads.shape[0]
    mean = grads.mean(0)
    norm2 = float(mean.pow(2).sum()) or float("nan")
    dev2 = (grads - mean).pow(2).sum(-1)
    loo = (grads.sum(0, keepdim=True) - grads) / max(n - 1, 1)
    cos = torch.nn.functional.cosine_similarity(grads, loo, dim=-1)
    return pd.DataFrame({"rel_var": (dev2 / norm2).numpy(), "rel_err": (dev2.sqrt() / norm2 ** 0.5).numpy(),
                         "cos": cos.numpy()})


def checkpoint_rows(trainer: Any, ests: Mapping[str, EstimatorSpec], n_batches: int, prompts: int,
                    seed: int, checkpoint: str) -> list[dict[str, Any]]:
    """The per-batch statistics of every estimator at the trainer's current adapter."""
    rng = np.random.default_rng([seed, len(checkpoint)])
    torch.manual_seed(int(rng.integers(2**31)))
    grads: dict[str, list[torch.Tensor]] = {label: [] for label in ests}
    for _ in range(n_batches):
        indices = [int(i) for i in rng.choice(len(trainer.task.train), size=prompts, replace=False)]
        for label, g in batch_gradients(trainer, indices, ests).items():
            grads[label].append(g)
    rows = []
    for label, gs in grads.items():
        for b, r in per_batch_stats(torch.stack(gs)).iterrows():
            rows.append({"method": label, "seed": seed, "checkpoint": checkpoint, "unit": f"{checkpoint}:{b}",
                         **r.to_dict()})
    return rows


def gradient_variance(result: Any, ests: Mapping[str, EstimatorSpec], checkpoint_method: str, n_batches: int = 8,
                      prompts: int = 4, progress: bool = True) -> pd.DataFrame:
    """Gradient statistics of every estimator at two fixed checkpoints per seed of a study: the base adapter and
    ``checkpoint_method``'s trained adapter of that seed.  A long table with columns ``method`` (the estimator's
    label), ``seed``, ``checkpoint``, ``unit``, ``rel_var``, ``rel_err``, ``cos`` and ``value`` (= ``rel_var``)."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file
    from tqdm.auto import tqdm

    from rlbook.experiments import _adapter, default_model_factory
    from rlbook.tasks import make_task
    from rlbook.trainer import Trainer

    spec = next(s for s in result.specs if s.label == checkpoint_method)
    base, tok = default_model_factory(spec)()
    rows: list[dict[str, Any]] = []
    seeds = sorted({s for (_, s) in result.sweep.folders})
    for seed in tqdm(seeds, desc="gradient variance", disable=not progress):
        cfg = spec.resolved(seed)
        with _adapter(base, cfg["lora"], seed) as model:
            trainer = Trainer(model, tok, make_task(cfg["task"]), cfg["train"], progress=False)
            rows += checkpoint_rows(trainer, ests, n_batches, prompts, seed, "base")
            weights = load_file(str(result.sweep.folders[(checkpoint_method, seed)] / "adapter.safetensors"))
            set_peft_model_state_dict(model, weights)
            rows += checkpoint_rows(trainer, ests, n_batches, prompts, seed, "trained")
    df = pd.DataFrame(rows)
    df["value"] = df["rel_var"]
    return df


def variance_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per estimator and checkpoint: mean relative variance, relative error and leave-one-out cosine."""
    return df.groupby(["checkpoint", "method"], sort=False)[["rel_var", "rel_err", "cos"]].mean()
