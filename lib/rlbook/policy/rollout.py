"""Rollouts: generation and the log-prob passes over sampled completions, in one module.

* :func:`generate`: ``group_size`` completions per prompt (rows prompt-major) as a :class:`Rollout`; with
  ``cfg.generation_backend == "rlbook"`` each prompt is prefilled once and its KV cache shared by its group
  (:func:`rlbook.policy.generation.sample_groups`; with ``cfg.prefix_cache`` the first tokens all prompts share, such as
  few-shot examples, are encoded once), ``"hf"`` calls ``transformers.generate`` on every row; the LoRA
  delta is merged into the base weights while sampling (exact restore afterwards).  ``noise``: one tuple of
  coordinates per row (the trainer's seed, step, stream, prompt id, sample index) from which the sampling noise is
  derived (common random numbers, :func:`rlbook.policy.generation.noise_keys`; rlbook backend only), else the global RNG.
* :func:`micro_batches`, :func:`slice_rows`: rows cut into micro-batches of similar lengths (whole groups
  when the prompt forward is shared or the loss compares the samples of a group), trimmed of padding.
* :func:`forward_logprobs`: per-token log-probs (and entropies) of a micro-batch under the current policy,
  with each group's prompt encoded once when ``cfg.share_prompt_forward``; :func:`logprobs_no_grad` runs it
  over many rows without a gradient, under the policy or the reference (adapter disabled).

Position ids: generation with left padding numbers the positions from the first real token
(``cumsum(attention_mask) - 1``); the training forward passes the same position ids, so the log-prob of a
sampled token under the training forward equals the one the sampler used.  Log-probs are those of the
sampling distribution, ``log_softmax(logits / temperature)``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import torch

from rlbook.core.config import TrainConfig
from rlbook.policy.generation import left_pad, noise_keys, sample_groups
from rlbook.policy.models import Tokenizer, merged_lora, reference_mode


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
    logp: torch.Tensor | None = None  # [B, Lc] log-prob of each sampled token under the sampling distribution
    finished: torch.Tensor | None = None  # [B] bool: the completion ended with an EOS (else it was truncated)
    # [B, Lc] self-certainty KL(U || p) of the raw next-token distribution at each token (generate(self_certainty=True))
    self_certainty: torch.Tensor | None = None
    # [B, Lc] float: 1 on tokens the policy sampled, 0 on tokens an environment wrote into the completion (a
    # tool's result, rlbook.mechanisms.toolcalls): those are not the policy's actions and get no gradient; None = all sampled
    action_mask: torch.Tensor | None = None

    @property
    def lengths(self) -> torch.Tensor:
        return self.completion_mask.sum(-1).long()

    def select(self, rows: list[int]) -> Rollout:
        idx = torch.tensor(rows, device=self.input_ids.device)
        return Rollout(self.input_ids[idx], self.attention_mask[idx], self.prompt_len, self.completion_ids[idx],
                       self.completion_mask[idx], [self.texts[i] for i in rows],
                       None if self.entropy is None else self.entropy[idx], None if self.logp is None else self.logp[idx],
                       None if self.finished is None else self.finished[idx],
                       None if self.self_certainty is None else self.self_certainty[idx],
                       None if self.action_mask is None else self.action_mask[idx])

    @staticmethod
    def cat(parts: list[Rollout], pad_id: int) -> Rollout:
        """Concatenate rollouts: prompts left-padded and completions right-padded to common widths."""
        if len(parts) == 1:
            return parts[0]
        lp = max(r.prompt_len for r in parts)
        lc = max(r.completion_ids.shape[1] for r in parts)

        def pad(x: torch.Tensor, left: int, right: int, value: int) -> torch.Tensor:
            return torch.nn.functional.pad(x, (left, right), value=value)

        def per_token(name: str) -> torch.Tensor | None:
            xs = [getattr(r, name) for r in parts]
            return None if any(x is None for x in xs) else torch.cat([pad(x, 0, lc - x.shape[1], 0) for x in xs])

        def actions() -> torch.Tensor | None:  # a rollout without an action mask: every token was sampled
            if all(r.action_mask is None for r in parts):
                return None
            return torch.cat([pad(r.action_mask if r.action_mask is not None else torch.ones_like(r.completion_mask),
                                  0, lc - r.completion_ids.shape[1], 0) for r in parts])

        ids, att, cids, cmask = [], [], [], []
        for r in parts:
            left, right = lp - r.prompt_len, lc - r.completion_ids.shape[1]
            ids.append(torch.cat([pad(r.input_ids[:, : r.prompt_len], left, 0, pad_id),
                                  pad(r.completion_ids, 0, right, pad_id)], dim=1))
            att.append(torch.cat([pad(r.attention_mask[:, : r.prompt_len], left, 0, 0),
                                  pad(r.attention_mask[:, r.prompt_len :], 0, right, 0)], dim=1))
            cids.append(pad(r.completion_ids, 0, right, pad_id))
            cmask.append(pad(r.completion_mask, 0, right, 0))
        return Rollout(torch.cat(ids), torch.cat(att), lp, torch.cat(cids), torch.cat(cmask),
                       [t for r in parts for t in r.texts], per_token("entropy"), per_token("logp"),
                       None if any(r.finished is None for r in parts) else torch.cat([r.finished for r in parts]),
                       per_token("self_certainty"), actions())


def rollout_from_ids(prompts: list[list[int]], completions: list[list[int]], texts: list[str],
                     finished: list[bool], pad_id: int, device: Any = "cpu") -> Rollout:
    """A :class:`Rollout` of given completions (token ids through their EOS, e.g. stored earlier or a hint plus
    its continuation) after their prompts: prompts left-padded, completions right-padded, no per-token
    sampling statistics (the training forward computes what it needs)."""
    ids, att = left_pad(prompts, pad_id, torch.device(device))
    lc = max(1, max(len(c) for c in completions))
    comp = torch.full((len(completions), lc), pad_id, dtype=torch.long, device=ids.device)
    cmask = torch.zeros((len(completions), lc), device=ids.device)
    for i, c in enumerate(completions):
        comp[i, : len(c)] = torch.tensor(c, dtype=torch.long)
        cmask[i, : len(c)] = 1.0
    return Rollout(torch.cat([ids, comp], dim=1), torch.cat([att, cmask.long()], dim=1), ids.shape[1], comp, cmask,
                   list(texts), finished=torch.tensor(finished, dtype=torch.bool))


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


def eos_ids(model: Any, tok: Tokenizer) -> list[int]:
    """The tokenizer's EOS id and the generation config's (one or several), sorted."""
    ids = {tok.eos_token_id}
    gen_eos = getattr(model.generation_config, "eos_token_id", None)
    if isinstance(gen_eos, int):
        ids.add(gen_eos)
    elif gen_eos:
        ids.update(gen_eos)
    return sorted(i for i in ids if i is not None)


@torch.no_grad()
def generate(
    model: Any,
    tok: Tokenizer,
    cfg: TrainConfig,
    prompts: list[list[int]],
    max_new_tokens: int,
    do_sample: bool = True,
    temperature: float = 1.0,
    group_size: int = 1,
    self_certainty: bool = False,
    noise: list[tuple[int, ...]] | None = None,
) -> Rollout:
    """``group_size`` completions of each prompt (rows prompt-major), batched, with a KV cache.  With
    ``self_certainty`` (rlbook backend only) each token's self-certainty is kept in ``Rollout.self_certainty``.
    ``noise``: each row's noise coordinates (``len(prompts) * group_size`` tuples, prompt-major): sampled tokens are
    then a function of the coordinates and the policy only (:mod:`rlbook.policy.generation`; the rlbook backend)."""
    pad, eos = tok.pad_token_id, eos_ids(model, tok)
    device = next(model.parameters()).device
    ids, att = left_pad(prompts, pad, device)
    lp = ids.shape[1]
    c = common_prefix(prompts) if cfg.prefix_cache and cfg.generation_backend == "rlbook" else 0
    prefix = torch.tensor(prompts[0][:c], dtype=torch.long, device=device) if c else None
    gen_ids, gen_att = left_pad([p[c:] for p in prompts], pad, device) if c else (ids, att)
    was_training = model.training
    keys = None
    if noise is not None and do_sample:
        if len(noise) != len(prompts) * group_size:
            raise ValueError(f"noise has {len(noise)} rows; expected len(prompts) * group_size = {len(prompts) * group_size}")
        if cfg.generation_backend != "rlbook":
            raise ValueError("noise (common random numbers) needs generation_backend='rlbook'")
        keys = noise_keys(noise)
    model.eval()
    merge = merged_lora(model) if cfg.merge_lora_for_generation else contextlib.nullcontext()
    with merge:
        chunks = _generate_chunks(model, cfg, eos, pad, gen_ids, gen_att, max_new_tokens, do_sample, temperature,
                                  group_size, prefix, self_certainty, keys)
    model.train(was_training)
    comp_ids = torch.cat([c[0] for c in chunks])
    entropy, logp, certainty = (torch.cat([c[k] for c in chunks]) if all(c[k] is not None for c in chunks) else None
                                for k in (1, 2, 3))
    ids = ids.repeat_interleave(group_size, dim=0)
    att = att.repeat_interleave(group_size, dim=0)
    # Trim columns that no row uses (every row finished earlier).
    mask = completion_mask(comp_ids, eos)
    finished = torch.isin(comp_ids, torch.tensor(eos, device=comp_ids.device)).any(-1)
    width = max(1, int(mask.sum(-1).max().item()))
    comp_ids, mask = comp_ids[:, :width], mask[:, :width]
    texts = tok.batch_decode(comp_ids * mask.long() + pad * (1 - mask.long()), skip_special_tokens=True)
    return Rollout(input_ids=torch.cat([ids, comp_ids], dim=1), attention_mask=torch.cat([att, mask.long()], dim=1),
                   prompt_len=lp, completion_ids=comp_ids, completion_mask=mask, texts=texts,
                   entropy=None if entropy is None else entropy[:, :width],
                   logp=None if logp is None else logp[:, :width], finished=finished,
                   self_certainty=None if certainty is None else certainty[:, :width])


def common_prefix(prompts: list[list[int]], min_len: int = 16) -> int:
    """Length of the first tokens every prompt shares (leaving each at least one token of its own); 0 when shorter
    than ``min_len`` (not worth a separate pass)."""
    if len(prompts) < 2:
        return 0
    n = min(len(p) for p in prompts) - 1
    first = prompts[0]
    c = 0
    while c < n and all(p[c] == first[c] for p in prompts):
        c += 1
    return c if c >= min_len else 0


def _generate_chunks(
    model: Any, cfg: TrainConfig, eos: list[int], pad: int, ids: torch.Tensor, att: torch.Tensor,
    max_new_tokens: int, do_sample: bool, temperature: float, group_size: int, prefix: torch.Tensor | None = None,
    self_certainty: bool = False, keys: torch.Tensor | None = None,
) -> list[tuple[torch.Tensor | None, ...]]:
    """Generation over chunks of about ``gen_batch_size`` rows; completions (and, from the rlbook sampler, each
    token's entropy, log-prob and, when asked, self-certainty) padded to ``max_new_tokens``."""
    if self_certainty and cfg.generation_backend != "rlbook":
        raise ValueError("self_certainty needs generation_backend='rlbook' (it is accumulated in rlbook's sampler)")
    per_chunk = max(1, cfg.gen_batch_size // group_size)  # prompts per chunk
    chunks = []
    for s in range(0, ids.shape[0], per_chunk):
        p_ids, p_att = ids[s : s + per_chunk], att[s : s + per_chunk]
        ent = lp = sc = None
        if cfg.generation_backend == "rlbook":
            comp, lp, ent, *rest = sample_groups(model, p_ids, p_att, group_size, max_new_tokens, eos, pad,
                                                 do_sample=do_sample, temperature=temperature, top_p=cfg.top_p,
                                                 return_logprobs=True, prefix_ids=prefix,
                                                 return_self_certainty=self_certainty,
                                                 noise_keys=None if keys is None else
                                                 keys[s * group_size : (s + per_chunk) * group_size])
            sc = rest[0] if rest else None
        else:
            kw: dict[str, Any] = {"do_sample": do_sample}
            if do_sample:
                kw.update(temperature=temperature, top_p=cfg.top_p, top_k=0)
            out = model.generate(input_ids=p_ids.repeat_interleave(group_size, dim=0),
                                 attention_mask=p_att.repeat_interleave(group_size, dim=0),
                                 max_new_tokens=max_new_tokens, pad_token_id=pad, eos_token_id=eos, **kw)
            comp = out[:, ids.shape[1]:]
        if comp.shape[1] < max_new_tokens:  # generation stopped early: pad to a common width
            fill = torch.full((comp.shape[0], max_new_tokens - comp.shape[1]), pad, device=comp.device)
            comp = torch.cat([comp, fill], dim=1)
            ent, lp, sc = (None if x is None else torch.nn.functional.pad(x, (0, max_new_tokens - x.shape[1]))
                           for x in (ent, lp, sc))
        chunks.append((comp, ent, lp, sc))
    return chunks


# ----------------------------------------------------------------------------------- log-prob passes


def micro_batches(rows: list[int], lengths: list[int], cfg: TrainConfig, whole_groups: bool) -> list[list[int]]:
    """Rows sorted by completion length, cut into micro-batches of ``cfg.micro_batch_size`` (similar
    lengths pad less).  With ``whole_groups`` (a shared prompt forward, or a loss that compares the
    samples of a group such as GTPO) each micro-batch holds whole groups, groups of similar length together.
    """
    mb = cfg.micro_batch_size
    if whole_groups:
        G = cfg.group_size
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
    order = sorted(rows, key=lambda i: lengths[i])
    return [order[i : i + mb] for i in range(0, len(order), mb)]


def slice_rows(roll: Rollout, rows: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Input ids, attention mask and completion mask of ``rows``, trimmed of shared padding."""
    idx = torch.tensor(rows, device=roll.input_ids.device)
    ids, att, cmask = roll.input_ids[idx], roll.attention_mask[idx], roll.completion_mask[idx]
    lc = max(1, int(cmask.sum(-1).max().item()))
    lp = roll.prompt_len
    first_real = int((att[:, :lp].cumsum(-1) == 0).sum(-1).min().item())  # shared left padding
    ids = torch.cat([ids[:, first_real:lp], ids[:, lp : lp + lc]], dim=1)
    att = torch.cat([att[:, first_real:lp], att[:, lp : lp + lc]], dim=1)
    return ids, att, cmask[:, :lc], lc


def forward_logprobs(
    model: Any, cfg: TrainConfig, ids: torch.Tensor, att: torch.Tensor, lc: int, rows: list[int],
    with_entropy: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-token log-probs of ``rows``' completions (shared prompt pass when ``cfg.share_prompt_forward``)."""
    if cfg.share_prompt_forward:
        groups = torch.tensor(rows, device=ids.device) // cfg.group_size
        return token_logprobs_shared_prompt(model, ids, att, lc, groups, cfg.temperature, with_entropy)
    return token_logprobs(model, ids, att, lc, cfg.temperature, with_entropy)


@torch.no_grad()
def logprobs_no_grad(model: Any, cfg: TrainConfig, roll: Rollout, rows: list[int], reference: bool,
                     whole_groups: bool) -> dict[int, torch.Tensor]:
    """Per-token log-probs of ``rows`` (row -> [Lc_row]) under the policy, or the reference when ``reference``."""
    out: dict[int, torch.Tensor] = {}
    for mb in micro_batches(rows, roll.lengths.tolist(), cfg, whole_groups):
        ids, att, _, lc = slice_rows(roll, mb)
        with reference_mode(model) if reference else contextlib.nullcontext():
            logp, _ = forward_logprobs(model, cfg, ids, att, lc, mb)
        for j, r in enumerate(mb):
            out[r] = logp[j]
    return out


# ----------------------------------------------------------------------------------------- the batch


@dataclass
class Batch:
    """One step's data, filled phase by phase: prompts, rollout, rewards, context, advantages, metrics.

    Rows are prompt-major: row ``b`` is completion ``b % G`` of prompt ``b // G``.
    """

    indices: list[int]  # [P] dataset index of each prompt in the training split
    problems: list[Any]  # [P] the problems (rlbook.data.tasks.Problem)
    roll: Rollout  # B = P * G sampled completions
    parts: torch.Tensor  # [B, K] each reward function's unweighted score
    rewards: torch.Tensor  # [P, G] the weighted sum of the parts
    correct: torch.Tensor  # [P, G] bool: the task verifier's verdict
    trainable: bool = True  # False when filters kept no group: the update is skipped
    sampling: dict[str, float] = field(default_factory=dict)  # generated tokens, groups, rounds, shortfall
    context: dict[str, Any] = field(default_factory=dict)  # signals computed on demand (rlbook.training.trainer)
    advantages: torch.Tensor | None = None  # [P, G] or [P, G, T]
    metrics: dict[str, Any] = field(default_factory=dict)  # what phases report
    # [P, G] bool: which of a group's G slots hold a sample (uneven groups: a rollout budget per prompt,
    # replayed or hinted samples added); None: every slot (rectangular groups)
    sample_mask: torch.Tensor | None = None
    # [P, G] bool: the samples a phase kept for the advantages and the update (down-sampling, filtering of
    # unreliable rewards); None: every sample.  Metrics describe all samples, the update only these.
    train_mask: torch.Tensor | None = None

    @property
    def P(self) -> int:
        return len(self.indices)

    @property
    def G(self) -> int:
        return self.rewards.shape[1]

    @property
    def lengths(self) -> torch.Tensor:
        """[P, G] completion lengths in tokens (through the first EOS)."""
        return self.roll.lengths.view(self.P, self.G)

    @property
    def valid(self) -> torch.Tensor:
        """[P * G] bool: the rows that hold a sample (all of them for rectangular groups)."""
        if self.sample_mask is None:
            return torch.ones(self.P * self.G, dtype=torch.bool)
        return self.sample_mask.reshape(-1).bool()

    @property
    def kept(self) -> torch.Tensor | None:
        """[P, G] bool: the samples that enter the advantages and the update (None: every slot)."""
        if self.train_mask is None:
            return self.sample_mask
        return self.train_mask if self.sample_mask is None else self.train_mask & self.sample_mask.bool()

    def drop(self, keep: torch.Tensor) -> None:
        """Leave the samples where ``keep`` ([P, G] bool) is False out of the advantages and the update."""
        current = self.kept
        self.train_mask = keep.bool() if current is None else keep.bool() & current.bool()

    def groups(self, keep: list[int]) -> Batch:
        """The batch restricted to the groups (prompts) ``keep``."""
        G = self.G
        rows = [j * G + g for j in keep for g in range(G)]
        return Batch([self.indices[j] for j in keep], [self.problems[j] for j in keep], self.roll.select(rows),
                     self.parts[rows], self.rewards[keep], self.correct[keep],
                     sample_mask=None if self.sample_mask is None else self.sample_mask[keep])

    @staticmethod
    def cat(parts: list[Batch], pad_id: int) -> Batch:
        """Concatenate batches of groups (rollouts padded to common widths)."""
        masks = [b.sample_mask for b in parts]
        mask = None if all(m is None for m in masks) else torch.cat(
            [m if m is not None else torch.ones_like(b.correct, dtype=torch.bool) for m, b in zip(masks, parts, strict=True)])
        return Batch([i for b in parts for i in b.indices], [p for b in parts for p in b.problems],
                     Rollout.cat([b.roll for b in parts], pad_id), torch.cat([b.parts for b in parts]),
                     torch.cat([b.rewards for b in parts]), torch.cat([b.correct for b in parts]), sample_mask=mask)

    def fill(self, slots: list[tuple[int, int]], roll: Rollout, parts: torch.Tensor, correct: list[bool],
             pad_id: int) -> None:
        """Put new samples into empty slots ``(prompt j, slot g)``: row k of ``roll`` (a completion of prompt j,
        e.g. a replayed or a hinted one) with its reward parts ``parts[k]`` and verdict ``correct[k]``; the
        rollout is re-padded to common widths and ``sample_mask`` marks the slots as holding a sample.
        ``rewards`` is recomputed from ``parts`` by the caller (the weights are the trainer's)."""
        if not slots:
            return
        B = self.P * self.G
        merged = Rollout.cat([self.roll, roll], pad_id)
        order = list(range(B))
        for k, (j, g) in enumerate(slots):
            order[j * self.G + g] = B + k
        self.roll = merged.select(order)
        mask = self.sample_mask.clone() if self.sample_mask is not None else torch.ones(self.P, self.G, dtype=torch.bool)
        for k, (j, g) in enumerate(slots):
            self.parts[j * self.G + g] = parts[k]
            self.correct[j, g] = bool(correct[k])
            mask[j, g] = True
        self.sample_mask = mask
        if self.train_mask is not None:
            for j, g in slots:
                self.train_mask[j, g] = True


def pad_groups(roll: Rollout, counts: list[int], width: int, pad_id: int) -> tuple[Rollout, torch.Tensor]:
    """Lay out a rollout of ``sum(counts)`` rows (prompt j's ``counts[j]`` completions, prompt-major) as
    ``len(counts)`` groups of ``width`` slots: slot g < counts[j] holds completion g of prompt j, the others
    are empty rows (the prompt, no completion token: masks 0, text "").  Returns the rollout and the
    ``[P, width]`` bool mask of the filled slots."""
    if any(c < 1 or c > width for c in counts):
        raise ValueError(f"rollouts per prompt must be in 1..{width} (train.group_size); got {counts}")
    starts = [sum(counts[:j]) for j in range(len(counts))]
    src = [starts[j] + min(g, counts[j] - 1) for j in range(len(counts)) for g in range(width)]
    mask = torch.tensor([[g < c for g in range(width)] for c in counts], dtype=torch.bool)
    out = roll.select(src)
    empty = ~mask.reshape(-1).to(out.input_ids.device)
    out.completion_ids[empty] = pad_id
    out.completion_mask[empty] = 0
    out.attention_mask[empty, out.prompt_len:] = 0
    out.input_ids[empty, out.prompt_len:] = pad_id
    for name in ("entropy", "logp"):
        x = getattr(out, name)
        if x is not None:
            x[empty] = 0
    if out.finished is not None:
        out.finished[empty] = True
    out.texts = [t if keep else "" for t, keep in zip(out.texts, (~empty).tolist(), strict=True)]
    return out, mask
