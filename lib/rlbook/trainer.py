"""The GRPO-style LoRA trainer: one readable loop, each step of the algorithm visible and named.

One ``Trainer.step()`` is:

1. **sample prompts**: P problems from the training split (``rlbook.sampling``);
2. **rollout**: G completions per prompt, batched generation with a KV cache (left-padded prompts);
3. **score**: each reward function of ``cfg.rewards`` (``rlbook.rewards``), weighted into one scalar;
4. **advantages**: ``rlbook.estimators.compute(cfg.estimator, rewards, context)``;
5. **policy update**: ``inner_epochs`` passes of micro-batched forward/backward of the policy loss
   (``rlbook.losses``, PPO clipping with eps_low / eps_high by default) aggregated by ``cfg.aggregation``,
   plus optional KL to the reference (the same model with the LoRA adapter disabled), gradient clipping
   and one AdamW step on the LoRA parameters per epoch.

Old log-probs: the gradient is accumulated over all micro-batches before the single optimizer step
of an epoch, so the parameters do not move during the first epoch; its log-probs (detached) are the
"old" log-probs, and the first epoch's importance ratio is exactly 1.

Position ids: generation with left padding numbers the positions from the first real token
(``cumsum(attention_mask) - 1``); the training forward passes the same position ids, so the
log-prob of a sampled token under the training forward equals the one the sampler used.
Log-probs are those of the sampling distribution, ``log_softmax(logits / temperature)``.
"""

from __future__ import annotations

import contextlib
import csv
import gc
import inspect
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedModel

from rlbook import checkpoint, estimators, losses, rewards, sampling
from rlbook.config import TrainConfig
from rlbook.generation import left_pad, sample_groups
from rlbook.models import Tokenizer, has_adapter, merged_lora, reference_mode, trainable_parameters
from rlbook.tasks import Problem, Task

# Losses whose per-token value is exactly zero when the advantage is zero (and which look at no
# other sample), so samples with A = 0 can be left out of the training pass without changing the
# gradient, provided the aggregation is normalised by the whole batch's counts and there is no KL.
ZERO_ADVANTAGE_SAFE_LOSSES = {"ppo_clip", "gspo", "sapo", "cispo"}


class TrainingError(RuntimeError):
    """Training cannot continue (e.g. too many consecutive non-finite steps)."""


@dataclass
class Rollout:
    """A batch of sampled completions, flattened to B = P * G rows (prompt-major)."""

    input_ids: torch.Tensor  # [B, Lp + Lc]: left-padded prompt, then completion (padded after EOS)
    attention_mask: torch.Tensor  # [B, Lp + Lc]: 1 on real prompt tokens and on completion tokens through EOS
    prompt_len: int  # Lp
    completion_ids: torch.Tensor  # [B, Lc]
    completion_mask: torch.Tensor  # [B, Lc] float: 1 through the first EOS, 0 after it
    texts: list[str]  # decoded completions (special tokens removed)
    entropy: torch.Tensor | None = None  # [B, Lc] entropy of the sampling distribution at each token

    @property
    def lengths(self) -> torch.Tensor:
        return self.completion_mask.sum(-1).long()

    def select(self, rows: list[int]) -> Rollout:
        idx = torch.tensor(rows, device=self.input_ids.device)
        return Rollout(self.input_ids[idx], self.attention_mask[idx], self.prompt_len, self.completion_ids[idx],
                       self.completion_mask[idx], [self.texts[i] for i in rows],
                       None if self.entropy is None else self.entropy[idx])

    @staticmethod
    def cat(parts: list[Rollout], pad_id: int) -> Rollout:
        """Concatenate rollouts: prompts left-padded and completions right-padded to common widths."""
        if len(parts) == 1:
            return parts[0]
        lp = max(r.prompt_len for r in parts)
        lc = max(r.completion_ids.shape[1] for r in parts)

        def pad(x: torch.Tensor, left: int, right: int, value: int) -> torch.Tensor:
            return torch.nn.functional.pad(x, (left, right), value=value)

        ids, att, cids, cmask, ent = [], [], [], [], []
        for r in parts:
            if r.entropy is not None:
                ent.append(pad(r.entropy, 0, lc - r.entropy.shape[1], 0))
            left, right = lp - r.prompt_len, lc - r.completion_ids.shape[1]
            ids.append(torch.cat([pad(r.input_ids[:, : r.prompt_len], left, 0, pad_id),
                                  pad(r.completion_ids, 0, right, pad_id)], dim=1))
            att.append(torch.cat([pad(r.attention_mask[:, : r.prompt_len], left, 0, 0),
                                  pad(r.attention_mask[:, r.prompt_len :], 0, right, 0)], dim=1))
            cids.append(pad(r.completion_ids, 0, right, pad_id))
            cmask.append(pad(r.completion_mask, 0, right, 0))
        return Rollout(torch.cat(ids), torch.cat(att), lp, torch.cat(cids), torch.cat(cmask),
                       [t for r in parts for t in r.texts], torch.cat(ent) if len(ent) == len(parts) else None)


def completion_mask(completion_ids: torch.Tensor, eos_ids: list[int]) -> torch.Tensor:
    """1 for every completion token up to and including the first EOS, 0 afterwards (never padding)."""
    is_eos = torch.isin(completion_ids, torch.tensor(eos_ids, device=completion_ids.device))
    # Number of EOS tokens strictly before each position; a token counts while none came before it.
    eos_before = torch.cumsum(is_eos.long(), dim=-1) - is_eos.long()
    return (eos_before == 0).float()


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions as ``generate`` numbers them under left padding: 0 at the first real token."""
    pos = attention_mask.long().cumsum(-1) - 1
    return pos.clamp(min=0)


def token_logprobs(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    n_completion: int,
    temperature: float = 1.0,
    with_entropy: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs of the last ``n_completion`` tokens of each row (and their entropies).

    Logits are computed only at the positions that predict completion tokens (``logits_to_keep``),
    so the vocabulary projection skips the prompt.
    """
    out = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids_from_mask(attention_mask),
        logits_to_keep=n_completion + 1,
        use_cache=False,
    )
    logits = out.logits[:, :-1, :].float() / temperature  # [B, Lc, V] predicting each completion token
    targets = input_ids[:, -n_completion:]
    logp_all = torch.log_softmax(logits, dim=-1)
    logp = logp_all.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    entropy = None
    if with_entropy:
        with torch.no_grad():
            entropy = -(logp_all.exp() * logp_all).sum(-1)
    return logp, entropy


def token_logprobs_shared_prompt(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    n_completion: int,
    groups: torch.Tensor,
    temperature: float = 1.0,
    with_entropy: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`token_logprobs` with the prompt encoded once per group (rows of a group share it).

    The prompt's KV cache is computed once for each distinct ``groups`` value and indexed out to
    the group's rows (differentiably: the gradient of every completion flows back into the one
    prompt pass); the completions then attend to it.  Same result as :func:`token_logprobs` within
    float tolerance, with the prompt's forward and backward done once per group instead of G times.
    """
    lp = input_ids.shape[1] - n_completion
    uniq, inverse = torch.unique(groups, return_inverse=True)
    first = torch.stack([(groups == u).nonzero()[0, 0] for u in uniq])
    p_ids, p_att = input_ids[first, :lp], attention_mask[first, :lp]
    out = model(input_ids=p_ids, attention_mask=p_att, position_ids=position_ids_from_mask(p_att),
                use_cache=True, logits_to_keep=1)
    logits = out.logits[:, -1:].index_select(0, inverse)  # predicts the first completion token
    if n_completion > 1:
        cache = out.past_key_values
        cache.batch_select_indices(inverse)
        att = attention_mask[:, : lp + n_completion - 1]
        out_c = model(input_ids=input_ids[:, lp : lp + n_completion - 1], attention_mask=att,
                      position_ids=position_ids_from_mask(att)[:, lp:], past_key_values=cache, use_cache=True)
        logits = torch.cat([logits, out_c.logits], dim=1)
    logp_all = torch.log_softmax(logits.float() / temperature, dim=-1)
    logp = logp_all.gather(-1, input_ids[:, lp:].unsqueeze(-1)).squeeze(-1)
    entropy = None
    if with_entropy:
        with torch.no_grad():
            entropy = -(logp_all.exp() * logp_all).sum(-1)
    return logp, entropy


class Trainer:
    """GRPO-style trainer over a LoRA policy; ``step()`` runs one full iteration and returns its metrics."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: Tokenizer,
        task: Task,
        cfg: TrainConfig | dict[str, Any] | None = None,
        metrics_path: str | Path | None = None,
        progress: bool = True,
        checkpoint_dir: str | Path | None = None,
    ):
        from rlbook.config import build

        self.cfg = build(TrainConfig, cfg or {}, "train")
        self.model = model
        self.tok = tokenizer
        self.task = task
        self.device = next(model.parameters()).device
        self.progress = progress
        self.metrics_path = Path(metrics_path) if metrics_path else None
        # fit() saves checkpoints here (every cfg.checkpoint_every steps and at the end) and resumes
        # from the newest one it finds (rlbook.checkpoint)
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.resumed_from_step = 0
        self.history: list[dict[str, Any]] = []
        self.step_count = 0
        self.bad_steps = 0
        self.eos_ids = self._eos_ids()
        seed_everything(self.cfg.seed)
        self.sampler = sampling.make(self.cfg.sampler, len(task.train), seed=self.cfg.seed, **self.cfg.sampler_kwargs)
        self.estimator_state = estimators.make_state(self.cfg.estimator)
        self.reward_fns = [(r["name"], float(r.get("weight", 1.0)), rewards.get(r["name"]), r.get("kwargs", {}))
                           for r in self.cfg.rewards]
        self.params = trainable_parameters(model)
        if not self.params:
            raise TrainingError("the model has no trainable parameters: load it with a LoRA config (lora.r > 0)")
        self.optimizer = torch.optim.AdamW(
            self.params, lr=self.cfg.lr, weight_decay=self.cfg.weight_decay, betas=tuple(self.cfg.betas)
        )
        # What the estimator, the loss and each reward accept: looked up once, not on the hot path.
        self.estimator_wants_log_ratio = "seq_log_ratio" in inspect.signature(estimators.get(self.cfg.estimator)).parameters
        loss_params = inspect.signature(losses.get(self.cfg.loss)).parameters
        hyper = {"eps_low": self.cfg.eps_low, "eps_high": self.cfg.eps_high, **self.cfg.loss_kwargs}
        self.loss_hyper = {k: v for k, v in hyper.items() if k in loss_params or k in self.cfg.loss_kwargs}
        self.loss_context = set(losses.context_names(self.cfg.loss))
        self.reward_weights = torch.tensor([w for _, w, _, _ in self.reward_fns])
        self.reward_accepts = {name: set(inspect.signature(fn).parameters) for name, _, fn, _ in self.reward_fns}
        self.needs_ref = self.cfg.kl_coef > 0 or self.estimator_wants_log_ratio
        if self.needs_ref and not has_adapter(model):
            raise TrainingError("KL to the reference (or an estimator that needs it) requires a LoRA model")
        self._prompt_cache: dict[int, list[int]] = {}

    # ----------------------------------------------------------------------------------- helpers
    def _eos_ids(self) -> list[int]:
        ids = {self.tok.eos_token_id}
        gen_eos = getattr(self.model.generation_config, "eos_token_id", None)
        if isinstance(gen_eos, int):
            ids.add(gen_eos)
        elif gen_eos:
            ids.update(gen_eos)
        return sorted(i for i in ids if i is not None)

    def prompt_ids(self, problem: Problem, split: str = "train") -> list[int]:
        key = problem.index if split == "train" else -1 - problem.index
        if key not in self._prompt_cache:
            text = self.tok.apply_chat_template(problem.messages, add_generation_prompt=True, tokenize=False)
            self._prompt_cache[key] = self.tok(text, add_special_tokens=False)["input_ids"]
        return self._prompt_cache[key]

    # ----------------------------------------------------------------------------------- rollout
    @torch.no_grad()
    def generate(
        self,
        prompts: list[list[int]],
        max_new_tokens: int,
        do_sample: bool = True,
        temperature: float = 1.0,
        group_size: int = 1,
    ) -> Rollout:
        """``group_size`` completions of each prompt (rows prompt-major), batched, with a KV cache.

        With ``cfg.generation_backend == "rlbook"`` each prompt is prefilled once and its cache shared
        by its group (:mod:`rlbook.generation`); ``"hf"`` calls ``transformers.generate`` on every row.
        """
        pad = self.tok.pad_token_id
        ids, att = left_pad(prompts, pad, self.device)
        lp = ids.shape[1]
        was_training = self.model.training
        self.model.eval()
        merge = merged_lora(self.model) if self.cfg.merge_lora_for_generation else contextlib.nullcontext()
        with merge:
            chunks = self._generate_chunks(ids, att, lp, max_new_tokens, do_sample, temperature, group_size)
        self.model.train(was_training)
        comp_ids = torch.cat([c for c, _ in chunks])
        entropy = torch.cat([e for _, e in chunks]) if all(e is not None for _, e in chunks) else None
        ids = ids.repeat_interleave(group_size, dim=0)
        att = att.repeat_interleave(group_size, dim=0)
        # Trim columns that no row uses (every row finished earlier).
        mask = completion_mask(comp_ids, self.eos_ids)
        width = max(1, int(mask.sum(-1).max().item()))
        comp_ids, mask = comp_ids[:, :width], mask[:, :width]
        texts = self.tok.batch_decode(comp_ids * mask.long() + pad * (1 - mask.long()), skip_special_tokens=True)
        return Rollout(
            input_ids=torch.cat([ids, comp_ids], dim=1),
            attention_mask=torch.cat([att, mask.long()], dim=1),
            prompt_len=lp,
            completion_ids=comp_ids,
            completion_mask=mask,
            texts=texts,
            entropy=None if entropy is None else entropy[:, :width],
        )

    def _generate_chunks(
        self, ids: torch.Tensor, att: torch.Tensor, lp: int, max_new_tokens: int, do_sample: bool,
        temperature: float, group_size: int,
    ) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """Generation over chunks of about ``gen_batch_size`` rows; completions padded to ``max_new_tokens``."""
        pad = self.tok.pad_token_id
        per_chunk = max(1, self.cfg.gen_batch_size // group_size)  # prompts per chunk
        chunks = []
        for s in range(0, ids.shape[0], per_chunk):
            p_ids, p_att = ids[s : s + per_chunk], att[s : s + per_chunk]
            ent = None
            if self.cfg.generation_backend == "rlbook":
                comp, _, ent = sample_groups(self.model, p_ids, p_att, group_size, max_new_tokens, self.eos_ids, pad,
                                             do_sample=do_sample, temperature=temperature, top_p=self.cfg.top_p,
                                             return_logprobs=True)
            else:
                kw: dict[str, Any] = {"do_sample": do_sample}
                if do_sample:
                    kw.update(temperature=temperature, top_p=self.cfg.top_p, top_k=0)
                out = self.model.generate(
                    input_ids=p_ids.repeat_interleave(group_size, dim=0),
                    attention_mask=p_att.repeat_interleave(group_size, dim=0),
                    max_new_tokens=max_new_tokens, pad_token_id=pad, eos_token_id=self.eos_ids, **kw,
                )
                comp = out[:, lp:]
            if comp.shape[1] < max_new_tokens:  # generation stopped early: pad to a common width
                fill = torch.full((comp.shape[0], max_new_tokens - comp.shape[1]), pad, device=comp.device)
                comp = torch.cat([comp, fill], dim=1)
                if ent is not None:
                    ent = torch.nn.functional.pad(ent, (0, max_new_tokens - ent.shape[1]))
            chunks.append((comp, ent))
        return chunks

    # ------------------------------------------------------------------------------------- score
    def score(self, texts: list[str], problems: list[Problem], lengths: list[int]) -> torch.Tensor:
        """Reward parts ``[B, K]``, one column per reward function (unweighted)."""
        cols = []
        for name, _, fn, kwargs in self.reward_fns:
            extra = {"lengths": lengths, "max_new_tokens": self.cfg.max_new_tokens}
            extra = {k: v for k, v in extra.items() if k in self.reward_accepts[name]}
            vals = fn(texts, problems, task=self.task, **extra, **kwargs)
            if len(vals) != len(texts):
                raise TrainingError(f"reward {name!r} returned {len(vals)} values for {len(texts)} completions")
            cols.append(torch.tensor(vals, dtype=torch.float32))
        return torch.stack(cols, dim=-1)

    # ----------------------------------------------------------------------------- log-probs
    def _micro_batches(self, rows: list[int], roll: Rollout) -> list[list[int]]:
        """Rows sorted by completion length, cut into micro-batches (similar lengths pad less).

        A loss that compares the samples of a group (``group_ids`` in its signature, e.g. GTPO) gets
        whole groups in each micro-batch instead.
        """
        mb = self.cfg.micro_batch_size
        if self.cfg.share_prompt_forward or "group_ids" in self.loss_context:
            # whole groups per micro-batch (groups of similar length together)
            G = self.cfg.group_size
            lengths = roll.lengths.tolist()
            by_group: dict[int, list[int]] = {}
            for r in sorted(rows):
                by_group.setdefault(r // G, []).append(r)
            groups = sorted(by_group.values(), key=lambda g: max(lengths[r] for r in g))
            batches: list[list[int]] = []
            for g in groups:
                if batches and len(batches[-1]) + len(g) <= max(mb, G):
                    batches[-1].extend(g)
                else:
                    batches.append(list(g))
            return batches
        lengths = roll.lengths.tolist()
        order = sorted(rows, key=lambda i: lengths[i])
        return [order[i : i + mb] for i in range(0, len(order), mb)]

    def _slice(self, roll: Rollout, rows: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        """Input ids, attention mask and completion mask of ``rows``, trimmed of shared padding."""
        idx = torch.tensor(rows, device=roll.input_ids.device)
        ids, att, cmask = roll.input_ids[idx], roll.attention_mask[idx], roll.completion_mask[idx]
        lc = max(1, int(cmask.sum(-1).max().item()))
        lp = roll.prompt_len
        first_real = int((att[:, :lp].cumsum(-1) == 0).sum(-1).min().item())  # shared left padding
        ids = torch.cat([ids[:, first_real:lp], ids[:, lp : lp + lc]], dim=1)
        att = torch.cat([att[:, first_real:lp], att[:, lp : lp + lc]], dim=1)
        return ids, att, cmask[:, :lc], lc

    def _forward_logprobs(
        self, ids: torch.Tensor, att: torch.Tensor, lc: int, rows: list[int], with_entropy: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per-token log-probs of ``rows``' completions (shared prompt pass when ``cfg.share_prompt_forward``)."""
        if self.cfg.share_prompt_forward:
            groups = torch.tensor(rows, device=ids.device) // self.cfg.group_size
            return token_logprobs_shared_prompt(self.model, ids, att, lc, groups, self.cfg.temperature, with_entropy)
        return token_logprobs(self.model, ids, att, lc, self.cfg.temperature, with_entropy)

    @torch.no_grad()
    def _logprobs_no_grad(self, roll: Rollout, rows: list[int], reference: bool) -> dict[int, torch.Tensor]:
        out: dict[int, torch.Tensor] = {}
        for mb in self._micro_batches(rows, roll):
            ids, att, _, lc = self._slice(roll, mb)
            if reference:
                with reference_mode(self.model):
                    logp, _ = self._forward_logprobs(ids, att, lc, mb)
            else:
                logp, _ = self._forward_logprobs(ids, att, lc, mb)
            for j, r in enumerate(mb):
                out[r] = logp[j]
        return out

    def _sample_groups(self, P: int, G: int) -> tuple[list[int], Rollout, torch.Tensor, dict[str, int]]:
        """Draw P prompts, generate G completions each and score them.

        With ``cfg.dynamic_sampling`` (DAPO, "Dynamic Sampling"), groups whose rewards are all equal
        are dropped and more prompts are drawn until P informative groups are collected or
        ``cfg.dynamic_sampling_max_rounds`` rounds have run; the batch is then topped up with the
        dropped groups so that it always holds P groups.
        """
        cfg = self.cfg
        kept: list[tuple[int, Rollout, torch.Tensor]] = []  # (prompt index, its G rows, its reward parts)
        dropped: list[tuple[int, Rollout, torch.Tensor]] = []
        rounds, gen_tokens = 0, 0
        while len(kept) < P and rounds < (cfg.dynamic_sampling_max_rounds if cfg.dynamic_sampling else 1):
            rounds += 1
            indices = self.sampler.next(P if rounds == 1 else P - len(kept))
            problems = [self.task.train[i] for i in indices]
            prompts = [self.prompt_ids(p) for p in problems]
            roll = self.generate(prompts, cfg.max_new_tokens, do_sample=True, temperature=cfg.temperature,
                                 group_size=G)
            gen_tokens += int(roll.lengths.sum())
            parts = self.score(roll.texts, [p for p in problems for _ in range(G)], roll.lengths.tolist())
            reward = (parts * self.reward_weights).sum(-1).view(len(indices), G)
            for j, idx in enumerate(indices):
                group = (idx, roll.select(list(range(j * G, (j + 1) * G))), parts[j * G : (j + 1) * G])
                informative = bool(reward[j].max() > reward[j].min())
                (kept if informative or not cfg.dynamic_sampling else dropped).append(group)
        chosen = (kept + dropped)[:P]
        stats = {"gen_tokens": gen_tokens, "groups": len(kept) + len(dropped), "dropped": len(dropped),
                 "rounds": rounds}
        return ([g[0] for g in chosen], Rollout.cat([g[1] for g in chosen], self.tok.pad_token_id),
                torch.cat([g[2] for g in chosen]), stats)

    # -------------------------------------------------------------------------------------- step
    def step(self) -> dict[str, Any]:
        """One iteration: sample prompts, rollout, score, advantages, policy update. Returns metrics."""
        cfg = self.cfg
        P, G = cfg.prompts_per_step, cfg.group_size
        t_start = time.perf_counter()

        # 1-3. sample prompts, rollout G completions each, score them (refilled under dynamic sampling)
        t0 = time.perf_counter()
        indices, roll, parts, sampled = self._oom_retry(
            "generation", "gen_batch_size", lambda: self._sample_groups(P, G), self._generation_snapshot()
        )
        gen_s = time.perf_counter() - t0
        problems = [self.task.train[i] for i in indices]
        flat_problems = [p for p in problems for _ in range(G)]
        lengths = roll.lengths
        n_gen_tokens = sampled["gen_tokens"]
        weights = self.reward_weights
        reward = (parts * weights).sum(-1).view(P, G)
        correct_col = [k for k, (name, *_rest) in enumerate(self.reward_fns) if name == "correct"]
        correct = (parts[:, correct_col[0]] >= 1.0) if correct_col else torch.tensor(
            [self.task.score(p, t) >= 1.0 for p, t in zip(flat_problems, roll.texts, strict=True)])

        # 4. advantages (reference pass first when the KL term or the estimator needs it)
        t1 = time.perf_counter()
        all_rows = list(range(P * G))
        ref_logp = self._oom_retry(
            "the reference pass", "micro_batch_size", lambda: self._logprobs_no_grad(roll, all_rows, reference=True)
        ) if self.needs_ref else {}
        seq_log_ratio = torch.zeros(P, G)
        if self.needs_ref and self.estimator_wants_log_ratio:
            cur = self._oom_retry(
                "the log-prob pass", "micro_batch_size", lambda: self._logprobs_no_grad(roll, all_rows, reference=False)
            )
            for r in all_rows:
                n = int(lengths[r])
                seq_log_ratio.view(-1)[r] = (cur[r][:n] - ref_logp[r][:n]).sum()
        context = {
            "lengths": lengths.view(P, G).float(),
            "reward_parts": parts.view(P, G, -1),
            "part_weights": weights,
            "correct": correct.view(P, G),
            "prompt_ids": torch.tensor(indices),
            "seq_log_ratio": seq_log_ratio,
            "max_new_tokens": cfg.max_new_tokens,
            "step": self.step_count,
            "total_steps": cfg.steps,
            "state": self.estimator_state,
        }
        adv = estimators.compute(cfg.estimator, reward, context=context, **cfg.estimator_kwargs)
        adv_flat = adv.reshape(P * G, *adv.shape[2:]).float()
        zero_groups = (adv.reshape(P, G, -1).abs().amax(dim=(1, 2)) < 1e-8).float().mean().item()

        # 5. policy update
        skip_ok = cfg.skip_zero_advantage and cfg.kl_coef == 0 and cfg.loss in ZERO_ADVANTAGE_SAFE_LOSSES
        nonzero = adv_flat.reshape(P * G, -1).abs().amax(-1) > 0
        rows = [r for r in all_rows if nonzero[r]] if skip_ok else all_rows
        n_tokens_total = float(roll.completion_mask.sum())
        train_metrics = self._oom_retry(
            "training", "micro_batch_size", lambda: self._update(roll, rows, adv_flat, ref_logp, n_tokens_total),
            self._training_snapshot(),
        )
        train_s = time.perf_counter() - t1

        self.step_count += 1
        r_flat = reward.view(-1)
        m: dict[str, Any] = {
            "step": self.step_count,
            "reward_mean": r_flat.mean().item(),
            "reward_std": r_flat.std().item() if r_flat.numel() > 1 else 0.0,
            "accuracy": correct.float().mean().item(),
            "response_length": lengths.float().mean().item(),
            # mean length of the correct / wrong completions (NaN when there are none): Dr. GRPO's length bias
            "length_correct": lengths[correct].float().mean().item() if bool(correct.any()) else float("nan"),
            "length_wrong": lengths[~correct].float().mean().item() if bool((~correct).any()) else float("nan"),
            "zero_adv_group_frac": zero_groups,
            "adv_std": adv_flat.std().item() if adv_flat.numel() > 1 else 0.0,
            "gen_s": gen_s,
            "gen_tokens": n_gen_tokens,
            "gen_tok_s": n_gen_tokens / gen_s if gen_s > 0 else float("nan"),
            "train_s": train_s,
            "trained_seqs": len(rows),
            "skipped_seqs": P * G - len(rows),  # zero-advantage samples left out of the training pass
            "skipped_tokens": int(lengths.sum()) - int(lengths[rows].sum()) if rows else int(lengths.sum()),
            "sampled_groups": sampled["groups"],
            "dropped_groups": sampled["dropped"],
            "step_s": time.perf_counter() - t_start,
            **train_metrics,
        }
        m["train_tok_s"] = m["trained_tokens"] / train_s if train_s > 0 else float("nan")
        if roll.entropy is not None:  # entropy of every sampled token (not only of the trained ones)
            m["entropy"] = float((roll.entropy * roll.completion_mask).sum() / roll.completion_mask.sum().clamp(min=1))
        for k, (name, *_rest) in enumerate(self.reward_fns):
            m[f"reward_{name}"] = parts[:, k].mean().item()
        if cfg.eval_every:  # same columns on every row of metrics.csv; NaN between evaluations
            m.update({"eval_accuracy": float("nan"), "eval_response_length": float("nan"), "eval_n": float("nan")})
            if cfg.eval_pass_k:
                m[f"eval_pass@{cfg.eval_pass_k}"] = float("nan")
        if cfg.eval_every and self.step_count % cfg.eval_every == 0:
            m.update({f"eval_{k}": v for k, v in self.evaluate().items() if not isinstance(v, list)})
        self._record(m)
        return m

    def _update(
        self, roll: Rollout, rows: list[int], adv: torch.Tensor, ref_logp: dict[int, torch.Tensor], n_tokens: float
    ) -> dict[str, Any]:
        """``inner_epochs`` passes of micro-batched loss.backward(), each closed by one optimizer step."""
        cfg = self.cfg
        B = roll.input_ids.shape[0]
        sums = {"loss": 0.0, "clip_frac": 0.0, "entropy": 0.0, "kl": 0.0, "grad_norm": 0.0}
        trained_tokens = 0
        skipped = 0
        old_logp: dict[int, torch.Tensor] = {}
        if not rows:  # every group has zero advantage: nothing to learn from this batch
            return {"loss": 0.0, "clip_frac": 0.0, "entropy": float("nan"), "kl": float("nan"),
                    "grad_norm": 0.0, "trained_tokens": 0, "skipped_step": 0}
        self.model.train()
        batches = self._micro_batches(rows, roll)
        group_ids = torch.arange(B, device=self.device) // cfg.group_size
        entropy_every_epoch = "entropy" in self.loss_context
        for epoch in range(cfg.inner_epochs):
            ent_sum, kl_sum, clip_sum, tok_count = 0.0, 0.0, 0.0, 0.0
            loss_total = 0.0
            for mb in batches:
                ids, att, cmask, lc = self._slice(roll, mb)
                # Entropy over the full vocabulary costs a pass over [mb, T, V]: only when the loss uses it
                # or the sampler did not already measure it.
                need_entropy = entropy_every_epoch or (epoch == 0 and roll.entropy is None)
                logp, entropy = self._forward_logprobs(ids, att, lc, mb, with_entropy=need_entropy)
                if epoch == 0:
                    for j, r in enumerate(mb):
                        old_logp[r] = logp[j].detach()
                old = torch.stack([old_logp[r][:lc] for r in mb])
                a = adv[mb].to(self.device)
                if a.dim() == 2:
                    a = a[:, :lc]
                ref = torch.stack([ref_logp[r][:lc] for r in mb]) if ref_logp else None
                context = {
                    "entropy": entropy if entropy is not None else torch.zeros_like(logp),
                    "token_ids": ids[:, -lc:],
                    "group_ids": group_ids[mb],
                    "ref_logp": ref,
                }
                token_loss, info = losses.compute(cfg.loss, logp, old, a, cmask, context=context, **self.loss_hyper)
                if cfg.kl_coef > 0 and ref is not None:
                    kl_tok = losses.kl(logp, ref, kind=cfg.kl_kind, mask=cmask)
                    token_loss = token_loss + cfg.kl_coef * kl_tok
                    kl_sum += float((kl_tok.detach() * cmask).sum())
                loss = losses.aggregate(
                    token_loss, cmask, cfg.aggregation, max_tokens=cfg.max_new_tokens, n_seqs=B, n_tokens=n_tokens
                )
                loss.backward()
                loss_total += float(loss.detach())
                n_tok = float(cmask.sum())
                tok_count += n_tok
                clip_sum += float(info.get("clip_frac", torch.tensor(0.0))) * n_tok
                if entropy is not None:
                    ent_sum += float((entropy * cmask).sum())
            # optimizer step (skipped when the loss or gradient is not finite)
            max_norm = cfg.max_grad_norm if cfg.max_grad_norm > 0 else float("inf")
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, max_norm))
            if math.isfinite(loss_total) and math.isfinite(grad_norm):
                self.optimizer.step()
                self.bad_steps = 0
            else:
                skipped = 1
                self.bad_steps += 1
                print(f"[rlbook] step {self.step_count + 1}: non-finite loss ({loss_total}) or gradient norm "
                      f"({grad_norm}); update skipped ({self.bad_steps} in a row)")
            self.optimizer.zero_grad(set_to_none=True)
            if self.bad_steps >= cfg.max_bad_steps:
                raise TrainingError(
                    f"{self.bad_steps} consecutive steps with a non-finite loss or gradient (last at step "
                    f"{self.step_count + 1}); lower train.lr or check the rewards"
                )
            trained_tokens += int(tok_count)
            sums["loss"] += loss_total / cfg.inner_epochs
            sums["clip_frac"] += clip_sum / max(tok_count, 1.0) / cfg.inner_epochs
            sums["grad_norm"] += grad_norm / cfg.inner_epochs
            if epoch == 0:
                sums["entropy"] = ent_sum / max(tok_count, 1.0)
                sums["kl"] = kl_sum / max(tok_count, 1.0) if cfg.kl_coef > 0 else float("nan")
        return {**sums, "trained_tokens": trained_tokens, "skipped_step": skipped}

    # ---------------------------------------------------------------------------------- evaluate
    @torch.no_grad()
    def evaluate(self, n: int | None = None, max_new_tokens: int | None = None) -> dict[str, Any]:
        """Greedy pass@1 on the held-out split (and sampled pass@k when ``cfg.eval_pass_k`` > 0)."""
        problems = self.task.eval[: n or self.cfg.eval_size]
        mnt = max_new_tokens or self.cfg.max_new_tokens
        rng_state = torch.get_rng_state()  # evaluation must not move the training RNG
        roll = self.generate([self.prompt_ids(p, "eval") for p in problems], mnt, do_sample=False)
        scores = [self.task.score(p, t) for p, t in zip(problems, roll.texts, strict=True)]
        out: dict[str, Any] = {
            "accuracy": float(np.mean([s >= 1.0 for s in scores])),
            "response_length": float(roll.lengths.float().mean()),
            "n": len(problems),
            "completions": roll.texts,
        }
        if self.cfg.eval_pass_k > 0:
            k = self.cfg.eval_pass_k
            prompts = [self.prompt_ids(p, "eval") for p in problems]
            sampled = self.generate(prompts, mnt, do_sample=True, temperature=self.cfg.temperature, group_size=k)
            hits = [self.task.score(problems[i // k], t) >= 1.0 for i, t in enumerate(sampled.texts)]
            out[f"pass@{k}"] = float(np.mean([any(hits[i * k : (i + 1) * k]) for i in range(len(problems))]))
        torch.set_rng_state(rng_state)
        return out

    # ------------------------------------------------------------------------------------- loop
    def fit(self, steps: int | None = None, checkpoint_dir: str | Path | None = None) -> list[dict[str, Any]]:
        """Run ``steps`` (default ``cfg.steps``) steps with a progress bar; returns their metrics.

        With a checkpoint folder (``checkpoint_dir`` here or in the constructor), a checkpoint is
        saved every ``cfg.checkpoint_every`` steps and at the end, and the first ``fit()`` of a fresh
        trainer resumes from the newest checkpoint there: it restores the adapter, optimizer, RNG,
        sampler and estimator state and the metrics so far (``metrics.csv`` is cut back to them),
        runs only the remaining steps and returns the metrics of all of them.
        """
        from tqdm.auto import tqdm

        if checkpoint_dir is not None:
            self.checkpoint_dir = Path(checkpoint_dir)
        n = self.cfg.steps if steps is None else steps
        target = self.step_count + n
        first = len(self.history)
        if self.checkpoint_dir is not None and self.step_count == 0:
            restored = checkpoint.load(self, self.checkpoint_dir)
            if restored:
                self.resumed_from_step = restored
                first = 0
                self._rewrite_metrics()
                print(f"[rlbook] resumed from {checkpoint.latest(self.checkpoint_dir)} at step {restored}")
            elif not self.history:  # a fresh start: drop rows an attempt killed before its first checkpoint wrote
                self._rewrite_metrics()
        bar = tqdm(range(max(0, target - self.step_count)), desc="GRPO steps", disable=not self.progress,
                   initial=min(self.step_count, target), total=n)
        saved = self.step_count if self.resumed_from_step else -1
        every = self.cfg.checkpoint_every
        for _ in bar:
            m = self.step()
            if self.checkpoint_dir is not None and every and self.step_count % every == 0:
                checkpoint.save(self, self.checkpoint_dir)
                saved = self.step_count
            bar.set_postfix(reward=f"{m['reward_mean']:.2f}", acc=f"{m['accuracy']:.2f}",
                            len=f"{m['response_length']:.0f}", s=f"{m['step_s']:.1f}")
        if self.checkpoint_dir is not None and saved != self.step_count and self.step_count > 0:
            checkpoint.save(self, self.checkpoint_dir)
        return self.history[first:]

    def _record(self, m: dict[str, Any]) -> None:
        self.history.append(m)
        if self.metrics_path is None:
            return
        self.metrics_path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.metrics_path.exists()
        fields = list(m)
        if not new:
            with open(self.metrics_path) as f:
                fields = next(csv.reader(f), fields)
        with open(self.metrics_path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow(m)

    # ------------------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """The trainer's own state for a checkpoint: counters, the effective batch sizes, the
        sampler (data cursor), estimator and reward state and the metrics so far.  The weights,
        optimizer and RNG states are saved next to it by :func:`rlbook.checkpoint.save`."""
        return {
            "step_count": self.step_count,
            "bad_steps": self.bad_steps,
            "gen_batch_size": self.cfg.gen_batch_size,
            "micro_batch_size": self.cfg.micro_batch_size,
            "sampler": self.sampler.state_dict(),
            "estimator": self.estimator_state.state_dict() if self.estimator_state is not None else None,
            "rewards": {name: fn.state_dict() for name, _, fn, _ in self.reward_fns if hasattr(fn, "state_dict")},
            "history": [dict(m) for m in self.history],
            "config": self.cfg.to_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (a warning names config fields that changed)."""
        now = self.cfg.to_dict()
        changed = [k for k, v in (state.get("config") or {}).items()
                   if k not in ("steps", "checkpoint_every", "gen_batch_size", "micro_batch_size", "eval_every")
                   and now.get(k) != v]
        if changed:
            print(f"[rlbook] warning: resuming with changed train config: {', '.join(sorted(changed))}")
        self.step_count = int(state["step_count"])
        self.bad_steps = int(state["bad_steps"])
        self.cfg.gen_batch_size = int(state.get("gen_batch_size", self.cfg.gen_batch_size))
        self.cfg.micro_batch_size = int(state.get("micro_batch_size", self.cfg.micro_batch_size))
        self.sampler.load_state_dict(state["sampler"])
        if self.estimator_state is not None and state.get("estimator") is not None:
            self.estimator_state.load_state_dict(state["estimator"])
        for name, _, fn, _ in self.reward_fns:
            if name in (state.get("rewards") or {}) and hasattr(fn, "load_state_dict"):
                fn.load_state_dict(state["rewards"][name])
        self.history = [dict(m) for m in state["history"]]

    def _rewrite_metrics(self) -> None:
        """Rewrite ``metrics.csv`` from ``history`` (after a resume: no rows past the checkpoint)."""
        if self.metrics_path is None:
            return
        if not self.history:
            self.metrics_path.unlink(missing_ok=True)
            return
        self.metrics_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.metrics_path.with_name(f".{self.metrics_path.name}.{os.getpid()}.tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(self.history[0]), extrasaction="ignore")
            w.writeheader()
            w.writerows(self.history)
        os.replace(tmp, self.metrics_path)

    # ------------------------------------------------------------------------- out of memory
    def _generation_snapshot(self) -> Any:
        """A closure that puts the sampler and RNG back where they were, so a retried generation
        draws the same prompts."""
        sampler, rng = self.sampler.state_dict(), checkpoint.rng_state()

        def restore() -> None:
            self.sampler.load_state_dict(sampler)
            checkpoint.set_rng_state(rng)

        return restore

    def _training_snapshot(self) -> Any:
        """A closure that undoes a partial training pass (gradients; with several inner epochs also
        the parameters and optimizer state, since an earlier epoch may have stepped)."""
        import copy

        bad, rng = self.bad_steps, torch.get_rng_state()
        saved = None
        if self.cfg.inner_epochs > 1:
            saved = ([p.detach().clone() for p in self.params], copy.deepcopy(self.optimizer.state_dict()))

        def restore() -> None:
            self.optimizer.zero_grad(set_to_none=True)
            self.bad_steps = bad
            torch.set_rng_state(rng)
            if saved is not None:
                with torch.no_grad():
                    for p, v in zip(self.params, saved[0], strict=True):
                        p.copy_(v)
                self.optimizer.load_state_dict(saved[1])

        return restore

    def _oom_retry(self, phase: str, knob: str, fn: Any, restore: Any = None) -> Any:
        """``fn()``; on out-of-memory, halve ``cfg.<knob>`` once and retry the whole phase, then fail."""
        try:
            return fn()
        except Exception as e:
            if not is_oom(e):
                raise
            before = getattr(self.cfg, knob)
            after = max(1, before // 2)
            free_memory()
            if restore is not None:
                restore()
            if after == before:
                raise TrainingError(
                    f"out of memory during {phase} at step {self.step_count + 1} with train.{knob}=1; "
                    "lower train.max_new_tokens, train.prompts_per_step or train.group_size"
                ) from e
            print(f"[rlbook] step {self.step_count + 1}: out of memory during {phase} with train.{knob}={before}; "
                  f"retrying with train.{knob}={after}")
            setattr(self.cfg, knob, after)
        try:
            return fn()
        except Exception as e:
            if not is_oom(e):
                raise
            free_memory()
            raise TrainingError(
                f"out of memory during {phase} at step {self.step_count + 1}: tried train.{knob}={before}, "
                f"then {after}; lower train.{knob} (or max_new_tokens, prompts_per_step, group_size)"
            ) from e


def is_oom(e: BaseException) -> bool:
    """True for a CUDA / MPS / CPU allocator out-of-memory error."""
    return isinstance(e, torch.OutOfMemoryError) or (isinstance(e, RuntimeError) and "out of memory" in str(e).lower())


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
