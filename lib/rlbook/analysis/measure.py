"""Mechanistic measurements at fixed checkpoints: the quantities the papers' claims are about.

:func:`gradient_variance` measures what BNPO's theorem (and the variance claims of RLOO, REINFORCE++, GSPO,
SAPO) states: the variance of the policy-gradient estimate each advantage estimator gives, at a fixed policy.
At each checkpoint (the base adapter, and the baseline method's trained adapter of the same seed) it samples
``n_batches`` batches of completions, **shared by every estimator**, and computes one LoRA gradient per
estimator per batch: the policy-gradient at ratio 1, ``g = (1/B) sum_i A_i (1/|y_i|) sum_t grad log pi(y_i,t)``
(GRPO's sequence-mean-of-token-mean aggregation for every estimator, so only the advantage differs).  From the
``N`` gradients of an estimator, with ``gbar`` their mean:

* the **relative variance** ``R = tr(Cov g) / ||E g||^2`` (scale-free: BNPO's 1/pdf weights rescale
  advantages), estimated without the saturation of a plug-in ratio: the trace by the unbiased sample
  covariance ``sum_b ||g_b - gbar||^2 / (N - 1)`` and the squared norm of the mean by the U-statistic over
  pairs of batches ``sum_{b != c} g_b . g_c / (N (N - 1))`` (the plug-in ``||gbar||^2`` adds ``tr(Cov) / N``,
  so the plug-in ratio is ``< N`` whatever the truth: 4.12 vs 3.93 over 6 batches meant 28 vs 22).
  :func:`relative_variance` gives ``R`` and, per batch, the jackknife pseudo-value of ``log R``
  (``N log R - (N - 1) log R_(-b)``): their mean is the bias-corrected ``log R`` and their spread its
  jackknife variance, so they are the units (``value``) of a claim table and :func:`rlbook.analysis.stats.compare`
  tests the log ratio of two estimators' variances, paired by batch;
* ``cos`` per batch: cosine between ``g_b`` and the mean of the *other* batches' gradients (leave-one-out);
* ``rel_err`` per batch: ``||g_b - gbar|| / ||gbar||`` (descriptive).

The other measurements:

* :func:`loss_gradient_variance` (GSPO, SAPO, CISPO: losses, not estimators): the same statistics for each
  method's *loss* gradient at ratio 1 (its first inner epoch, where GSPO's and SAPO's gradients equal GRPO's)
  and in its second inner epoch, after the first epoch's optimizer step, where the clip or gate acts; with
  the clip/gate fraction of each epoch.
* :func:`all_wrong_logprob_change` (NGRPO): on prompts whose G samples were all wrong, the change of the
  log-probability of the reference answer after one update of each method from the same weights.
* :func:`pass_at_k` (A-GRAE, ACE): sampled pass@k of the trained adapters on the held-out problems, per problem.
* :func:`steps_to_target` (speed claims): the step at which a run's held-out curve reaches a share of the
  baseline's gain (censored runs flagged, not averaged).
* :func:`time_to_target` (T-PPO's efficiency): the wall-clock seconds (or generated tokens, or steps) a run spends
  until its held-out curve reaches a share of the baseline's last accuracy (censored runs flagged).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from rlbook.core.errors import ParamError
from rlbook.mechanisms import estimators
from rlbook.policy.rollout import forward_logprobs, slice_rows

EstimatorSpec = str | tuple[str, Mapping[str, Any]]


def _est(spec: EstimatorSpec) -> tuple[str, dict[str, Any]]:
    return (spec, {}) if isinstance(spec, str) else (spec[0], dict(spec[1]))


def estimator_context(trainer: Any, batch: Any, names: Iterable[str]) -> None:
    """The trainer's context for ``batch`` plus the costly entries (reference log-ratios...) that the estimators
    ``names`` ask for and the trainer's own components do not."""
    from rlbook.training.trainer import DEPENDS, PROVIDERS

    trainer.add_context(batch)
    wanted = set().union(*(estimators.ESTIMATORS.entry(n).needs for n in names))
    for key, provide in PROVIDERS.items():  # in dependency order
        if key not in batch.context and (key in wanted or any(key in DEPENDS.get(w, ()) for w in wanted)):
            batch.context[key] = provide(trainer, batch)


def token_advantages(adv: torch.Tensor, rows: int, width: int) -> torch.Tensor:
    """Advantages ``[P, G]`` or ``[P, G, T]`` as ``[rows, width]`` per-token weights."""
    flat = adv.reshape(rows, -1)
    return flat[:, :1].expand(rows, width) if flat.shape[1] == 1 else flat[:, :width]


def batch_gradients(trainer: Any, indices: list[int], ests: Mapping[str, EstimatorSpec]) -> dict[str, torch.Tensor]:
    """One batch of G completions for each prompt of ``indices``; the flattened LoRA gradient of every
    estimator's policy gradient on it (one forward pass, one backward per estimator).  Token-level advantages
    ``[P, G, T]`` weigh each token: ``g = (1/B) sum_i (1/|y_i|) sum_t A_i,t grad log pi(y_i,t)``."""
    batch = trainer.roll_out(indices)
    estimator_context(trainer, batch, [_est(spec)[0] for spec in ests.values()])
    rows = list(range(batch.P * batch.G))
    ids, att, cmask, lc = slice_rows(batch.roll, rows)
    trainer.model.train()
    logp, _ = forward_logprobs(trainer.model, trainer.cfg, ids, att, lc, rows)
    n_tok = cmask.sum(-1).clamp(min=1)
    out = {}
    for label, spec in ests.items():
        name, kw = _est(spec)
        adv = estimators.compute(name, batch.rewards, context=batch.context, **kw)
        a = token_advantages(adv, len(rows), lc).to(logp.device)
        objective = ((a * logp * cmask).sum(-1) / n_tok).mean()
        grads = torch.autograd.grad(-objective, trainer.params, retain_graph=True, allow_unused=True)
        out[label] = _flat(grads, trainer.params)
    return out


def _flat(grads: Sequence[torch.Tensor | None], params: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.cat([(g if g is not None else torch.zeros_like(p)).flatten()
                      for g, p in zip(grads, params, strict=True)]).detach().float().cpu()


def gram(grads: torch.Tensor, chunk_bytes: int = 2**26) -> torch.Tensor:
    """``G[a, b] = g_a . g_b`` in float64 for gradients ``[N, D]``, summed over column blocks of at most
    ``chunk_bytes`` of float64, so that no ``[N, D]`` copy is made: at the cpu profile's 120 batches x 4.9M LoRA
    parameters a float64 copy is 4.7 GB per estimator, and bnpo's kernel was killed for memory (21.8 GB) making
    such copies.  Every statistic below is a function of ``G``."""
    n, d = grads.shape
    step = max(1, chunk_bytes // (8 * max(n, 1)))
    out = torch.zeros((n, n), dtype=torch.float64)
    for c in range(0, d, step):
        x = grads[:, c:c + step].double()
        out += x @ x.T
    return out


def relative_variance(grads: torch.Tensor) -> dict[str, Any]:
    """``R = tr(Cov) / ||mean||^2`` of ``N >= 3`` gradients ``[N, D]`` with the unbiased trace and the U-statistic
    for the squared norm of the mean, and the jackknife pseudo-values of ``log R`` (one per batch, NaN where a
    leave-one-out squared norm is not positive).  ``log_r``, ``log_r_se``: the jackknife estimate and its
    standard error."""
    return _relative_variance(gram(grads))


def _relative_variance(g: torch.Tensor) -> dict[str, Any]:
    """:func:`relative_variance` from the Gram matrix ``g`` (``[N, N]``, float64)."""
    n = g.shape[0]
    if n < 3:
        raise ParamError(f"the relative variance needs >= 3 gradients (batches), got {n}")
    sq = g.diagonal().clone()  # ||g_b||^2
    cross = g.sum(1)  # g_b . sum
    q, t2 = sq.sum(), g.sum()  # sum ||g_b||^2, ||sum||^2

    def ratio(m: int, qq: torch.Tensor, tt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tr = (qq - tt / m) / (m - 1)
        mu2 = (tt - qq) / (m * (m - 1))
        return tr / torch.where(mu2 > 0, mu2, torch.ones_like(mu2)), mu2  # NaN-safe; callers keep mu2 > 0 only

    r_t, mu2_t = ratio(n, q, t2)
    r, mu2 = float(r_t), float(mu2_t)
    q_i = q - sq
    t2_i = t2 - 2.0 * cross + sq  # ||sum - g_b||^2
    r_i, mu2_i = ratio(n - 1, q_i, t2_i)
    ok = (mu2_i > 0) & (r_i > 0)
    log_ri = torch.where(ok, torch.log(torch.where(ok, r_i, torch.ones_like(r_i))), torch.full_like(r_i, math.nan))
    log_r = math.log(r) if (mu2 > 0 and r > 0) else math.nan
    pseudo = n * log_r - (n - 1) * log_ri
    finite = pseudo[torch.isfinite(pseudo)]
    se = float(finite.std() / math.sqrt(finite.numel())) if finite.numel() > 1 else math.nan
    return {"rel_var": float(r) if mu2 > 0 else math.nan, "log_r": float(finite.mean()) if finite.numel() else math.nan,
            "log_r_se": se, "pseudo": pseudo.numpy()}


def per_batch_stats(grads: torch.Tensor) -> pd.DataFrame:
    """Per batch of ``N`` gradients ``[N, D]``: the jackknife pseudo-value of ``log R`` (``value``, see
    :func:`relative_variance`), ``rel_err`` and the leave-one-out ``cos``; the whole set's ``rel_var``."""
    g = gram(grads)
    n = g.shape[0]
    sq, cross, t2 = g.diagonal(), g.sum(1), g.sum()
    norm2 = float(t2) / n**2 or float("nan")  # ||mean||^2
    dev2 = (sq - 2.0 * cross / n + t2 / n**2).clamp(min=0.0)  # ||g_b - mean||^2
    loo2 = (t2 - 2.0 * cross + sq).clamp(min=0.0)  # ||sum - g_b||^2 (the leave-one-out mean times n - 1)
    cos = (cross - sq) / (sq * loo2).sqrt().clamp(min=1e-12)
    rv = _relative_variance(g)
    return pd.DataFrame({"value": rv["pseudo"], "rel_var": rv["rel_var"],
                         "rel_err": (dev2.sqrt() / norm2 ** 0.5).numpy(), "cos": cos.numpy()})


def checkpoint_rows(trainer: Any, ests: Mapping[str, EstimatorSpec], n_batches: int, prompts: int,
                    seed: int, checkpoint: str) -> list[dict[str, Any]]:
    """The per-batch statistics of every estimator at the trainer's current adapter."""
    rng = np.random.default_rng([seed, len(checkpoint)])
    torch.manual_seed(int(rng.integers(2**31)))
    from tqdm.auto import tqdm

    grads: dict[str, torch.Tensor] = {}  # [n_batches, D] per estimator, filled in place (no stacked copy)
    for b in tqdm(range(n_batches), desc=f"{checkpoint} checkpoint, seed {seed}: batches", leave=False):
        indices = [int(i) for i in rng.choice(len(trainer.task.train), size=prompts, replace=False)]
        for label, g in batch_gradients(trainer, indices, ests).items():
            grads.setdefault(label, torch.empty((n_batches, g.numel()), dtype=g.dtype))[b] = g
    rows = []
    for label, gs in grads.items():
        for b, r in per_batch_stats(gs).iterrows():
            rows.append({"method": label, "seed": seed, "checkpoint": checkpoint, "unit": f"{checkpoint}:{b}",
                         **r.to_dict()})
    return rows


def gradient_variance(result: Any, ests: Mapping[str, EstimatorSpec], checkpoint_method: str, n_batches: int = 8,
                      prompts: int = 4, checkpoints: Sequence[str] = ("base", "trained"), seeds: int | None = None,
                      progress: bool = True) -> pd.DataFrame:
    """Gradient statistics of every estimator at two fixed checkpoints per seed of a study: the base adapter and
    ``checkpoint_method``'s trained adapter of that seed.  A long table with columns ``method`` (the estimator's
    label), ``seed``, ``checkpoint``, ``unit`` (the batch), ``value`` (the batch's jackknife pseudo-value of
    ``log R``), ``rel_var`` (``R`` of the whole set of batches), ``rel_err`` and ``cos``.  Claims compare
    ``value`` (the log relative variance) paired by batch.  Cost: one generation of ``prompts x group_size``
    completions per batch plus one backward per estimator; ``n_batches >= 100`` gives ``log R`` a jackknife
    standard error of about 0.1.  ``checkpoints``: ``base`` and/or ``trained``; ``seeds``: use only the study's
    first ``seeds`` seeds (at the base checkpoint the seed adds no randomness but its batches)."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    from rlbook.core.progress import tqdm
    from rlbook.data.tasks import make_task
    from rlbook.training.experiments import _adapter, cache_root, default_model_factory
    from rlbook.training.trainer import Trainer

    spec = next(s for s in result.specs if s.label == checkpoint_method)
    base, tok = default_model_factory(spec, cache_root(result.run))()
    rows: list[dict[str, Any]] = []
    bad = [c for c in checkpoints if c not in ("base", "trained")]
    if bad or not checkpoints:
        raise ParamError(f"checkpoints {list(checkpoints)} not allowed; allowed: base, trained (one or both)")
    chosen = sorted({s for (_, s) in result.sweep.folders})[:seeds]
    for seed in tqdm(chosen, desc="gradient variance", disable=not progress):
        cfg = spec.resolved(seed)
        with _adapter(base, cfg["lora"], seed) as model:
            trainer = Trainer(model, tok, make_task(spec.task_spec()), spec.train_config(seed), progress=False)
            if "base" in checkpoints:
                rows += checkpoint_rows(trainer, ests, n_batches, prompts, seed, "base")
            if "trained" in checkpoints:
                weights = load_file(str(result.sweep.folders[(checkpoint_method, seed)] / "adapter.safetensors"))
                set_peft_model_state_dict(model, weights)
                rows += checkpoint_rows(trainer, ests, n_batches, prompts, seed, "trained")
    return pd.DataFrame(rows)


def study_estimators(result: Any, labels: Sequence[str] | None = None) -> dict[str, EstimatorSpec]:
    """``{method label: (estimator, estimator_kwargs)}`` of the study's methods (all, or ``labels``), as their
    runs were trained: the input of :func:`gradient_variance`."""
    specs = [s for s in result.specs if labels is None or s.label in labels]
    return {s.label: (s.train.get("estimator", "grpo"), dict(s.train.get("estimator_kwargs", {}))) for s in specs}


def variance_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per estimator and checkpoint: the relative variance ``R`` (unbiased trace over the U-statistic squared norm
    of the mean), the jackknife ``log R`` with its 95% interval, the relative error and the leave-one-out cosine."""
    g = df.groupby(["checkpoint", "method"], sort=False)
    out = g[["rel_var", "rel_err", "cos"]].mean()
    log_r = g["value"].mean()
    se = g["value"].std() / np.sqrt(g["value"].count())
    return out.assign(log_r=log_r, log_r_low=log_r - 1.96 * se, log_r_high=log_r + 1.96 * se)


# ------------------------------------------------------------------------ shared by the measurements below


def _load_trained(model: Any, result: Any, method: str, seed: int) -> None:
    """Put ``method``'s trained adapter of ``seed`` (from the study's run cache) into ``model``."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(model, load_file(str(result.sweep.folders[(method, seed)] / "adapter.safetensors")))


@contextlib.contextmanager
def _seed_trainers(result: Any, labels: Sequence[str], seed: int, base: Any, tok: Any) -> Iterator[
        tuple[Any, dict[str, Any]]]:
    """A fresh adapter of ``seed`` on ``base`` and one trainer per method label (each with its own config,
    all on the same model)."""
    from rlbook.data.tasks import make_task
    from rlbook.training.experiments import _adapter
    from rlbook.training.trainer import Trainer

    specs = {s.label: s for s in result.specs}
    missing = [m for m in labels if m not in specs]
    if missing:
        raise ParamError(f"methods {missing} are not in the study; have: {', '.join(specs)}")
    cfg = specs[labels[0]].resolved(seed)
    with _adapter(base, cfg["lora"], seed) as model:
        task = make_task(specs[labels[0]].task_spec())
        yield model, {m: Trainer(model, tok, task, specs[m].train_config(seed), progress=False) for m in labels}


def _fresh_optimizer(tr: Any) -> torch.optim.Optimizer:
    """AdamW with the trainer's settings and no state: one step moves each LoRA weight by about ``lr``."""
    return torch.optim.AdamW(tr.params, lr=tr.cfg.lr, weight_decay=tr.cfg.weight_decay, betas=tuple(tr.cfg.betas))


def _snapshot(params: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    return [p.detach().clone() for p in params]


def _restore(params: Sequence[torch.nn.Parameter], saved: Sequence[torch.Tensor]) -> None:
    with torch.no_grad():
        for p, v in zip(params, saved, strict=True):
            p.copy_(v)
            p.grad = None


def _method_inputs(tr: Any, batch: Any) -> Any:
    """``batch`` as method ``tr`` trains on it: its filters keep groups (no refill), its context and its
    estimator's advantages; returns the trainer's :class:`~rlbook.training.update.UpdateInputs` (None: nothing kept)."""
    keep = [j for j, k in enumerate(tr.keep_mask(batch)) if k]
    if not keep:
        return None
    sub = batch if len(keep) == batch.P else batch.groups(keep)
    tr.add_context(sub)
    sub.advantages = estimators.compute(tr.cfg.estimator, sub.rewards, context=sub.context,
                                        **tr.comp.estimator.kwargs)
    inputs = tr.update_inputs(sub)
    return inputs if inputs.rows else None


def _seeds(result: Any) -> list[int]:
    return sorted({s for (_, s) in result.sweep.folders})


# ------------------------------------------------------------------------ losses' gradients (GSPO, SAPO, CISPO)


def _epoch_gradient(tr: Any, inputs: Any, epoch: int) -> tuple[torch.Tensor, float]:
    """The loss's full-batch LoRA gradient in inner epoch ``epoch`` (0: records the old log-probs, ratio 1)
    and its clip/gate fraction over the trained tokens."""
    from rlbook.training.update import micro_batch_loss

    tr.model.train()
    tr.optimizer.zero_grad(set_to_none=True)
    parts = [micro_batch_loss(tr.model, tr.cfg, tr.comp, inputs, mb, epoch) for mb in inputs.batches]
    grad = _flat([p.grad for p in tr.params], tr.params)
    clip = sum(p["clip"] for p in parts) / max(sum(p["tokens"] for p in parts), 1.0)
    tr.optimizer.zero_grad(set_to_none=True)
    return grad, float(clip)


def two_epoch_gradients(tr: Any, batch: Any) -> tuple[torch.Tensor, torch.Tensor, float, float]:
    """Method ``tr``'s gradient on ``batch`` at ratio 1 (its first inner epoch), then, after the one optimizer
    step that epoch closes with (a fresh AdamW with the trainer's settings, its gradient clipping), the second
    epoch's gradient, where ratios have left 1 and the loss's clip or gate acts; with both clip fractions.
    The parameters are restored afterwards.  Zero gradients when the method trains on no row of the batch."""
    inputs = _method_inputs(tr, batch)
    if inputs is None:
        zero = _flat([None] * len(tr.params), tr.params)
        return zero, zero, 0.0, 0.0
    saved = _snapshot(tr.params)
    g1, clip1 = _epoch_gradient(tr, inputs, 0)
    opt = _fresh_optimizer(tr)
    for p, g in zip(tr.params, _unflat(g1, tr.params), strict=True):
        p.grad = g
    if tr.cfg.max_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_(tr.params, tr.cfg.max_grad_norm)
    opt.step()
    g2, clip2 = _epoch_gradient(tr, inputs, 1)
    _restore(tr.params, saved)
    return g1, g2, clip1, clip2


def _unflat(flat: torch.Tensor, params: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    out, i = [], 0
    for p in params:
        out.append(flat[i:i + p.numel()].view_as(p).to(p.dtype).to(p.device))
        i += p.numel()
    return out


def loss_checkpoint_rows(trainers: Mapping[str, Any], n_batches: int, prompts: int, seed: int,
                         checkpoint: str) -> list[dict[str, Any]]:
    """Per method and epoch (``ratio 1``, ``epoch 2``): per-batch gradient statistics at the current adapter,
    every method on the same batches of completions."""
    first = next(iter(trainers.values()))
    rng = np.random.default_rng([seed, len(checkpoint), 7])
    torch.manual_seed(int(rng.integers(2**31)))
    grads: dict[tuple[str, str], list[torch.Tensor]] = {}
    clips: dict[tuple[str, str], list[float]] = {}
    for _ in range(n_batches):
        indices = [int(i) for i in rng.choice(len(first.task.train), size=prompts, replace=False)]
        batch = first.roll_out(indices)
        for label, tr in trainers.items():
            g1, g2, c1, c2 = two_epoch_gradients(tr, batch)
            for epoch, g, c in (("ratio 1", g1, c1), ("epoch 2", g2, c2)):
                grads.setdefault((label, epoch), []).append(g)
                clips.setdefault((label, epoch), []).append(c)
    rows = []
    for (label, epoch), gs in grads.items():
        for b, r in per_batch_stats(torch.stack(gs)).iterrows():
            rows.append({"method": label, "seed": seed, "checkpoint": checkpoint, "epoch": epoch,
                         "unit": f"{checkpoint}:{b}", "clip_frac": clips[(label, epoch)][b], **r.to_dict()})
    return rows


def loss_gradient_variance(result: Any, methods: Sequence[str], checkpoint_method: str, n_batches: int = 6,
                           prompts: int = 4, checkpoints: Sequence[str] = ("base", "trained"),
                           progress: bool = True) -> pd.DataFrame:
    """The gradient variance of each method's *loss* (GSPO's sequence clip, SAPO's soft gate, CISPO's IS clip,
    GRPO's token clip): at each checkpoint (the base adapter; ``checkpoint_method``'s trained adapter of the
    seed), ``n_batches`` batches of completions shared by every method; per method and batch the LoRA gradient
    of its first inner epoch (ratio 1: GSPO's and SAPO's equal GRPO's there) and of its second epoch, after the
    first epoch's optimizer step (:func:`two_epoch_gradients`), where the clip or gate acts.  A long table:
    ``method, seed, checkpoint, epoch, unit, clip_frac, rel_var, rel_err, cos, value`` (the batch's jackknife
    pseudo-value of ``log R``, :func:`relative_variance`); claims
    use the ``epoch 2`` rows (``table[table.epoch == "epoch 2"]``)."""
    from rlbook.core.progress import tqdm
    from rlbook.training.experiments import cache_root, default_model_factory

    labels = list(dict.fromkeys([checkpoint_method, *methods]))
    spec = next(s for s in result.specs if s.label == checkpoint_method)
    base, tok = default_model_factory(spec, cache_root(result.run))()
    rows: list[dict[str, Any]] = []
    for seed in tqdm(_seeds(result), desc="loss gradients", disable=not progress):
        with _seed_trainers(result, labels, seed, base, tok) as (model, trainers):
            chosen = {m: trainers[m] for m in methods}
            for ckpt in checkpoints:
                if ckpt == "trained":
                    _load_trained(model, result, checkpoint_method, seed)
                elif ckpt != "base":
                    raise ParamError(f"checkpoint {ckpt!r} is not allowed; allowed: base, trained")
                rows += loss_checkpoint_rows(chosen, n_batches, prompts, seed, ckpt)
    return pd.DataFrame(rows)


def loss_variance_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per checkpoint, epoch and method: mean relative variance, relative error, cosine and clip fraction."""
    return df.groupby(["checkpoint", "epoch", "method"], sort=False)[["rel_var", "rel_err", "cos", "clip_frac"]].mean()


# ------------------------------------------------------------------------ NGRPO: learning from all-wrong groups


def gold_completion(task: Any, problem: Any) -> str:
    """The reference answer written as the task asks for it (the answer alone, or inside <answer> tags)."""
    return f"<answer>{problem.answer}</answer>" if task.spec.answer_format == "tag" else str(problem.answer)


@torch.no_grad()
def gold_logprob(tr: Any, problems: Sequence[Any]) -> torch.Tensor:
    """[len(problems)]: log pi(reference answer + EOS | prompt) under the current policy, summed over tokens."""
    eos = tr.tok.eos_token_id if tr.tok.eos_token_id in tr.eos_ids else tr.eos_ids[0]
    tr.model.eval()
    out = []
    for p in problems:
        prompt = tr.prompt_ids(p)
        answer = tr.tok(gold_completion(tr.task, p), add_special_tokens=False)["input_ids"] + [eos]
        ids = torch.tensor([prompt + answer], device=tr.device)
        logits = tr.model(input_ids=ids).logits[0, len(prompt) - 1:-1].float()
        target = torch.tensor(answer, device=logits.device)
        out.append(torch.log_softmax(logits / tr.cfg.temperature, -1).gather(-1, target[:, None]).sum())
    return torch.stack(out).cpu()


def one_update(tr: Any, batch: Any) -> bool:
    """One training update of method ``tr`` on ``batch`` (its filters, estimator, loss, ``inner_epochs``) with a
    fresh optimizer; False when the method keeps no row to train on."""
    from rlbook.training.update import StepGuard, policy_update

    inputs = _method_inputs(tr, batch)
    if inputs is None:
        return False
    policy_update(tr.model, tr.cfg, tr.comp, tr.params, _fresh_optimizer(tr), StepGuard(tr.cfg.max_bad_steps),
                  inputs, 1)
    return True


def all_wrong_rows(trainers: Mapping[str, Any], n_batches: int, prompts: int, seed: int) -> list[dict[str, Any]]:
    """Per batch (shared by every method) and prompt whose G samples were all wrong: the change of log pi of
    the reference answer after each method's one update from the same adapter."""
    first = next(iter(trainers.values()))
    rng = np.random.default_rng([seed, 11])
    torch.manual_seed(int(rng.integers(2**31)))
    rows = []
    for b in range(n_batches):
        indices = [int(i) for i in rng.choice(len(first.task.train), size=prompts, replace=False)]
        batch = first.roll_out(indices)
        wrong = [j for j in range(batch.P) if not bool(batch.correct[j].any())]
        if not wrong:
            continue
        problems = [batch.problems[j] for j in wrong]
        before = gold_logprob(first, problems)
        for label, tr in trainers.items():
            saved = _snapshot(tr.params)
            one_update(tr, batch)
            delta = gold_logprob(tr, problems) - before
            _restore(tr.params, saved)
            rows += [{"method": label, "seed": seed, "unit": f"{b}:{j}", "value": float(d), "before": float(v)}
                     for j, d, v in zip(wrong, delta, before, strict=True)]
    return rows


def all_wrong_logprob_change(result: Any, methods: Sequence[str], n_batches: int = 4, prompts: int = 8,
                             checkpoint: str = "base", checkpoint_method: str | None = None,
                             progress: bool = True) -> pd.DataFrame:
    """NGRPO's claim, measured: on the prompts whose group was all wrong, how one update of each method changes
    the log-probability of the reference answer.  Per seed, at the base adapter (or ``checkpoint_method``'s
    trained one with ``checkpoint="trained"``), ``n_batches`` batches of ``prompts`` x G completions shared by
    every method; each method makes its one update from the same weights (then they are restored).  A long
    table ``method, seed, unit (batch:prompt), value (change of log pi), before``; GRPO's all-wrong groups
    have zero advantage, so any change under GRPO comes from the batch's other groups."""
    from rlbook.core.progress import tqdm
    from rlbook.training.experiments import cache_root, default_model_factory

    spec = next(s for s in result.specs if s.label == methods[0])
    base, tok = default_model_factory(spec, cache_root(result.run))()
    rows: list[dict[str, Any]] = []
    for seed in tqdm(_seeds(result), desc="all-wrong groups", disable=not progress):
        with _seed_trainers(result, list(methods), seed, base, tok) as (model, trainers):
            if checkpoint == "trained":
                _load_trained(model, result, checkpoint_method or methods[0], seed)
            elif checkpoint != "base":
                raise ParamError(f"checkpoint={checkpoint!r} is not allowed; allowed: base, trained")
            rows += all_wrong_rows(trainers, n_batches, prompts, seed)
    return pd.DataFrame(rows, columns=["method", "seed", "unit", "value", "before"])


# ------------------------------------------------------------------------ held-out curves: speed as steps to a target


def _first_reach(result: Any, baseline: str, frac: float,
                 target_of: Callable[[np.ndarray, float], float]) -> Iterator[dict[str, Any]]:
    """Per run: its held-out curve (:func:`rlbook.analysis.metrics.held_out_curves`), the target that
    ``target_of(baseline's curve of the same seed, frac)`` gives, the run's metrics sorted by step, and the row of
    the first evaluation that reaches the target (None: never, the run is censored)."""
    from rlbook.analysis.metrics import held_out_curves

    if not 0.0 < frac <= 1.0:
        raise ParamError(f"frac={frac!r} must be in (0, 1]")
    curves, m = held_out_curves(result.sweep), result.sweep.metrics
    for (method, seed), curve in curves.items():
        if (baseline, seed) not in curves:
            raise ParamError(f"baseline {baseline!r} has no run of seed {seed}; runs: {sorted(curves)}")
        target = float(target_of(curves[(baseline, seed)], frac))
        run = m[(m["method"] == method) & (m["seed"] == seed)].sort_values("step")
        evals = run.dropna(subset=["eval_accuracy"])
        hit = np.nonzero(curve[1:] >= target - 1e-12)[0]
        yield {"method": method, "seed": seed, "curve": curve, "target": target, "run": run,
               "hit": evals.iloc[int(hit[0])] if hit.size else None}


def steps_to_target(result: Any, baseline: str, frac: float = 0.5) -> pd.DataFrame:
    """Speed as papers state it ("reaches X's accuracy in half the steps"): per run, the first evaluation step
    (``train.eval_every``) at which its held-out curve (:func:`rlbook.analysis.metrics.held_out_curves`) reaches the target
    ``base + frac * (baseline's last - base)`` of the same seed.  A run that never does gets NaN and
    ``reached = False``: it is censored at its last step, so say so rather than average it.  Columns ``method,
    seed, target, value (step), samples (completions drawn by then), reached``."""
    rows = []
    for r in _first_reach(result, baseline, frac, lambda ref, f: ref[0] + f * (ref[-1] - ref[0])):
        row = r["hit"]
        rows.append({"method": r["method"], "seed": r["seed"], "target": r["target"],
                     "value": float(row["step"]) if row is not None else math.nan,
                     "samples": float(row["samples"]) if row is not None and "samples" in row else math.nan,
                     "reached": row is not None})
    return pd.DataFrame(rows)


COSTS = {"seconds": "step_s", "tokens": "gen_tokens", "steps": None}


def time_to_target(result: Any, baseline: str, frac: float = 0.9, cost: str = "seconds") -> pd.DataFrame:
    """Training efficiency as T-PPO states it ("up to 2.5x more efficient"): per run, the training cost spent
    until its held-out curve (:func:`rlbook.analysis.metrics.held_out_curves`, ``train.eval_every``) first reaches
    the target ``frac x`` the baseline's last held-out accuracy of the same seed.  ``cost``: ``seconds``
    (wall-clock of the training steps, ``step_s`` summed through that step: rollouts, phases such as T-PPO's
    critic and the update; the evaluations themselves are not counted), ``tokens`` (generated, phases'
    included) or ``steps``.

    Columns ``method, seed, target, base (the curve's start), value (the cost; NaN when never reached), step,
    reached, target_above_base`` (1.0 / 0.0).  A run that never reaches the target is censored: its cost is
    unknown, not its total, so a claim needs ``reached`` for both methods (check ``measured``); a target at or
    below the start (``target_above_base = 0``) measures nothing.  On a log scale (costs are ratios)."""
    if cost not in COSTS:
        raise ParamError(f"cost={cost!r} is not allowed; allowed: {', '.join(COSTS)}")
    rows = []
    for r in _first_reach(result, baseline, frac, lambda ref, f: f * ref[-1]):
        reached = r["hit"] is not None
        step = float(r["hit"]["step"]) if reached else math.nan
        spent = r["run"][r["run"]["step"] <= step]
        value = math.nan if not reached else step if COSTS[cost] is None else float(spent[COSTS[cost]].sum())
        rows.append({"method": r["method"], "seed": r["seed"], "target": r["target"], "base": float(r["curve"][0]),
                     "value": value, "step": step, "reached": float(reached),
                     "target_above_base": float(r["target"] > r["curve"][0])})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------ sampled pass@k on the held-out problems


def pass_at_k_estimate(n: int, c: int, k: int) -> float:
    """The unbiased pass@k of one problem from ``n`` samples of which ``c`` are correct (Chen et al., 2021,
    "Evaluating Large Language Models Trained on Code", Eq. 1): ``1 - C(n - c, k) / C(n, k)``."""
    if not 1 <= k <= n or not 0 <= c <= n:
        raise ParamError(f"pass@k needs 1 <= k <= n and 0 <= c <= n; got n={n!r}, c={c!r}, k={k!r}")
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def pass_at_k(result: Any, methods: Sequence[str], ks: Sequence[int] = (1, 8), n: int = 8,
              problems: int | None = None, temperature: float = 1.0, progress: bool = True) -> pd.DataFrame:
    """Sampled pass@k of each method's trained adapters on the held-out problems (the claims of A-GRAE, ACE,
    ARM: exploration shows at large k, not in greedy pass@1).  Per seed and method: ``n`` samples at
    ``temperature`` of each of the first ``problems`` held-out problems (default the study's ``eval_size``,
    the units of the final-accuracy claims), scored by the task's verifier, and per problem the unbiased
    :func:`pass_at_k_estimate` for every k in ``ks``.  Rows with ``method="base"``: the base model (each seed's
    fresh adapter, which starts as the base model).  Every method of a seed samples with the same torch seed.  A
    long table ``method, seed, unit (problem), k, value``; a claim takes the rows of one k."""
    from tqdm.auto import tqdm

    from rlbook.training.experiments import cache_root, default_model_factory

    bad = [k for k in ks if not 1 <= int(k) <= n]
    if bad:
        raise ParamError(f"ks {list(bad)} must lie in 1..n={n}")
    spec = next(s for s in result.specs if s.label == methods[0])
    base, tok = default_model_factory(spec, cache_root(result.run))()
    count = int(problems or result.params.get("eval_size") or spec.task_spec().eval_size)
    rows: list[dict[str, Any]] = []
    for seed in tqdm(_seeds(result), desc="pass@k", disable=not progress):
        with _seed_trainers(result, list(methods), seed, base, tok) as (model, trainers):
            tr = trainers[methods[0]]
            probs = tr.task.eval[:count]
            prompts = [tr.prompt_ids(p, "eval") for p in probs]
            for label in ["base", *methods]:
                if label != "base":
                    _load_trained(model, result, label, seed)
                torch.manual_seed(seed)  # the same sampling noise for every method of a seed
                roll = tr.generate(prompts, tr.cfg.max_new_tokens, do_sample=True, temperature=temperature,
                                   group_size=n)
                hits = [tr.task.score(probs[i // n], t) >= 1.0 for i, t in enumerate(roll.texts)]
                for j in range(len(probs)):
                    c = int(sum(hits[j * n:(j + 1) * n]))
                    rows += [{"method": label, "seed": seed, "unit": j, "k": int(k),
                              "value": pass_at_k_estimate(n, c, int(k))} for k in ks]
    return pd.DataFrame(rows, columns=["method", "seed", "unit", "k", "value"])
