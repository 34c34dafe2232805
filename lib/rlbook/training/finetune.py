"""Offline fine-tuning on fixed data: supervised fine-tuning (SFT) and DPO, on whichever LoRA adapter is active.

The pipelines of the anchor papers (RFT vs SFT forgetting, MALT, Digi-Q) train adapters on data they collected
or were given: SFT on gold or self-generated completions, SFT on positive trajectories, DPO on preference pairs,
weighted imitation of Q-ranked actions.  One short loop serves them all:

* an :class:`Example` is a prompt (token ids, as the trainer builds them from chat messages:
  :func:`prompt_ids`), a completion (token ids ending with EOS: :func:`completion_ids`) and a weight;
* :func:`sequence_logprobs` puts examples in the rollout layout (left-padded prompts, right-padded completions)
  and returns each completion token's log-prob under the model (``rlbook.policy.rollout.token_logprobs``: the same
  position ids and log-prob code as the RL trainer, so an SFT stage and a GRPO stage see identical prompts);
* :func:`sft_loss` is the negative log-likelihood of the completion tokens, reduced either per token over the
  batch (``token_mean``: TRL ``SFTTrainer``'s loss on completion tokens) or summed per sequence and averaged
  over the batch with per-example weights (``seq_sum_mean``: Digi-Q's actor loss, ``DigiQTrainer.actor_loss``);
* :func:`dpo_loss` is DPO's sigmoid loss (Rafailov et al. 2023, "Direct Preference Optimization: Your Language
  Model is Secretly a Reward Model", eq. 7; TRL ``DPOTrainer`` ``loss_type="sigmoid"``, label smoothing 0) on
  summed response log-probs, with the reference log-probs computed once, before training (TRL's
  ``precompute_ref_log_probs``), under a frozen copy of the adapter (:func:`rlbook.policy.models.copy_adapter`).

Why our own loop rather than TRL's ``SFTTrainer`` / ``DPOTrainer``: the adapter to train is one of several on
one base (MALT's roles; TRL 1.16's ``DPOTrainer`` without ``ref_model`` hard-codes the adapter name
``default`` and fails on a multi-adapter model), the prompts must be token-identical to the RL trainer's
(chat template applied once, no re-tokenisation of the completion), Digi-Q weights and clamps per example,
and a ``Trainer`` per call costs seconds of set-up on a CPU for stages of a few dozen examples.  The optimizer
(AdamW over :func:`rlbook.policy.models.trainable_parameters`, i.e. the active adapter only), gradient clipping and
the shuffled mini-batch order (a seeded generator) are the usual ones; a step with a non-finite loss or gradient is
skipped and counted (``skipped`` per step), and ``max_bad_steps`` of them in a row fail the stage
(:class:`rlbook.core.guard.StepGuard`, the policy of every training loop).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from rlbook.core.guard import MAX_BAD, StepGuard
from rlbook.policy.generation import left_pad
from rlbook.policy.models import Tokenizer, trainable_parameters
from rlbook.policy.rollout import token_logprobs

REDUCTIONS = ("token_mean", "seq_sum_mean")


@dataclass
class Example:
    """One training example: prompt and completion token ids (the completion ends with EOS) and a weight."""

    prompt: list[int]
    completion: list[int]
    weight: float = 1.0


@dataclass
class Pair:
    """A DPO preference pair: one prompt, a chosen and a rejected completion (token ids, each ending with EOS)."""

    prompt: list[int]
    chosen: list[int]
    rejected: list[int]


def completion_ids(tok: Tokenizer, text: str) -> list[int]:
    """Token ids of a completion ``text`` followed by EOS (what a sampled completion that stopped looks like)."""
    return tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]


def batch_tensors(prompts: Sequence[list[int]], completions: Sequence[list[int]], pad_id: int,
                  device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Input ids ``[B, Lp + Lc]`` (prompts left-padded, completions right-padded), attention mask, completion mask."""
    ids, att = left_pad(list(prompts), pad_id, device)
    lc = max(len(c) for c in completions)
    comp = torch.full((len(completions), lc), pad_id, dtype=torch.long, device=device)
    cmask = torch.zeros((len(completions), lc), dtype=torch.long, device=device)
    for i, c in enumerate(completions):
        comp[i, : len(c)] = torch.tensor(c, dtype=torch.long)
        cmask[i, : len(c)] = 1
    return torch.cat([ids, comp], dim=1), torch.cat([att, cmask], dim=1), cmask.float()


def sequence_logprobs(model: Any, prompts: Sequence[list[int]], completions: Sequence[list[int]],
                      pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token log-probs ``[B, Lc]`` of each completion given its prompt (gradient kept) and the completion mask."""
    device = next(model.parameters()).device
    ids, att, cmask = batch_tensors(prompts, completions, pad_id, device)
    logp, _ = token_logprobs(model, ids, att, cmask.shape[1])
    return logp * cmask, cmask


def sft_loss(token_logp: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor | None = None,
             reduction: str = "token_mean", prob_clamp: tuple[float, float] | None = None) -> torch.Tensor:
    """Negative log-likelihood of the masked completion tokens.

    ``token_mean``: ``-sum_{b,t} w_b m_bt log p_bt / sum_{b,t} m_bt`` (TRL SFT, completion-only loss, w = 1).
    ``seq_sum_mean``: ``-(1/B) sum_b w_b sum_t m_bt log p_bt`` (Digi-Q ``actor_loss``: the mean over the batch
    includes zero-weight rows).  ``prob_clamp=(lo, hi)``: ``log clamp(p, lo, hi)`` per token (Digi-Q clamps
    to (0.001, 0.99), so tokens already above 0.99 stop pulling).
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction={reduction!r}; allowed: {', '.join(REDUCTIONS)}")
    if prob_clamp is not None:
        token_logp = torch.log(token_logp.exp().clamp(*prob_clamp))
    w = torch.ones(mask.shape[0], device=mask.device) if weights is None else weights.to(mask.device).float()
    per_seq = (token_logp * mask).sum(-1)
    if reduction == "token_mean":
        return -(w * per_seq).sum() / mask.sum().clamp(min=1.0)
    return -(w * per_seq).mean()


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float = 0.1) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """DPO's loss per pair ``[B]`` on summed response log-probs (Rafailov et al. 2023, eq. 7):
    ``-log sigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r)))``; ``info``: the implicit rewards
    ``beta * (pi - ref)`` of chosen and rejected, their margin and the pair accuracy (margin > 0), as TRL logs."""
    chosen = beta * (policy_chosen - ref_chosen)
    rejected = beta * (policy_rejected - ref_rejected)
    loss = -torch.nn.functional.logsigmoid(chosen - rejected)
    info = {"reward_chosen": chosen.detach().mean(), "reward_rejected": rejected.detach().mean(),
            "margin": (chosen - rejected).detach().mean(), "accuracy": (chosen > rejected).float().mean()}
    return loss, info


def subsample(items: Sequence[Any], k: int, seed: int) -> list[Any]:
    """At most ``k`` of ``items``: a seeded random subset, kept in the original order."""
    if len(items) <= k:
        return list(items)
    import numpy as np

    keep = sorted(np.random.default_rng(seed).choice(len(items), size=k, replace=False).tolist())
    return [items[i] for i in keep]


def _batches(n: int, batch_size: int, epochs: int, seed: int) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(epochs):
        order = torch.randperm(n, generator=g).tolist()
        out += [order[i : i + batch_size] for i in range(0, n, batch_size)]
    return out


def _optimizer(model: Any, lr: float) -> tuple[list[torch.nn.Parameter], torch.optim.Optimizer]:
    params = trainable_parameters(model)
    if not params:
        raise ValueError("the model has no trainable parameters: activate a LoRA adapter first")
    return params, torch.optim.AdamW(params, lr=lr, weight_decay=0.0, betas=(0.9, 0.99))


def _step(guard: StepGuard, params: list[torch.nn.Parameter], opt: torch.optim.Optimizer, loss: torch.Tensor,
          max_grad_norm: float, step: int) -> tuple[float, bool]:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    return guard.step(params, opt, float(loss.detach()), max_grad_norm, step)


def train_sft(model: Any, tok: Tokenizer, examples: Sequence[Example], *, lr: float, epochs: int = 1,
              batch_size: int = 8, seed: int = 0, reduction: str = "token_mean",
              prob_clamp: tuple[float, float] | None = None, max_grad_norm: float = 1.0,
              max_bad_steps: int = MAX_BAD) -> list[dict[str, float]]:
    """SFT of the active adapter on ``examples``: shuffled mini-batches, one AdamW step each; per-step metrics
    (``skipped``: 1 when the step was skipped as non-finite, :class:`rlbook.core.guard.StepGuard`)."""
    if not examples:
        return []
    params, opt = _optimizer(model, lr)
    guard = StepGuard(max_bad_steps, "sft")
    model.train()
    rows = []
    for step, idx in enumerate(_batches(len(examples), batch_size, epochs, seed), 1):
        t0 = time.perf_counter()
        ex = [examples[i] for i in idx]
        logp, mask = sequence_logprobs(model, [e.prompt for e in ex], [e.completion for e in ex], tok.pad_token_id)
        w = torch.tensor([e.weight for e in ex])
        loss = sft_loss(logp, mask, w, reduction, prob_clamp)
        norm, skipped = _step(guard, params, opt, loss, max_grad_norm, step)
        rows.append({"step": step, "loss": float(loss.detach()), "grad_norm": norm, "tokens": float(mask.sum()),
                     "skipped": int(skipped), "seconds": time.perf_counter() - t0})
    model.eval()
    return rows


@torch.no_grad()
def summed_logprobs(model: Any, tok: Tokenizer, prompts: Sequence[list[int]], completions: Sequence[list[int]],
                    batch_size: int = 16) -> torch.Tensor:
    """Sum of each completion's token log-probs ``[N]`` (no gradient), in batches."""
    out = []
    for s in range(0, len(prompts), batch_size):
        logp, mask = sequence_logprobs(model, prompts[s : s + batch_size], completions[s : s + batch_size],
                                       tok.pad_token_id)
        out.append((logp * mask).sum(-1))
    return torch.cat(out) if out else torch.zeros(0)


def train_dpo(model: Any, tok: Tokenizer, pairs: Sequence[Pair], ref_chosen: torch.Tensor,
              ref_rejected: torch.Tensor, *, beta: float = 0.1, lr: float, epochs: int = 1, batch_size: int = 8,
              seed: int = 0, max_grad_norm: float = 1.0, max_bad_steps: int = MAX_BAD) -> list[dict[str, float]]:
    """DPO of the active adapter on ``pairs`` against precomputed reference sums ``ref_chosen`` / ``ref_rejected``
    (``[len(pairs)]``, from :func:`summed_logprobs` under the frozen reference adapter); per-step metrics, with
    ``skipped`` as in :func:`train_sft`."""
    if not pairs:
        return []
    params, opt = _optimizer(model, lr)
    guard = StepGuard(max_bad_steps, "dpo")
    model.train()
    rows = []
    for step, idx in enumerate(_batches(len(pairs), batch_size, epochs, seed), 1):
        t0 = time.perf_counter()
        ps = [pairs[i] for i in idx]
        logp, mask = sequence_logprobs(model, [p.prompt for p in ps] * 2, [p.chosen for p in ps] +
                                       [p.rejected for p in ps], tok.pad_token_id)
        sums = (logp * mask).sum(-1)
        n = len(ps)
        loss, info = dpo_loss(sums[:n], sums[n:], ref_chosen[idx], ref_rejected[idx], beta)
        norm, skipped = _step(guard, params, opt, loss.mean(), max_grad_norm, step)
        rows.append({"step": step, "loss": float(loss.mean().detach()), "grad_norm": norm, "skipped": int(skipped),
                     **{k: float(v) for k, v in info.items()}, "seconds": time.perf_counter() - t0})
    model.eval()
    return rows


def gold_text(answer: str, answer_format: str) -> str:
    """The reference answer written as the prompt asks ("plain": alone; "tag": inside <answer> tags): the SFT
    target of the continual study's gold arm and of the warm start."""
    return f"<answer>{answer}</answer>" if answer_format == "tag" else answer
