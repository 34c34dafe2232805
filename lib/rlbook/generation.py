"""Group sampling with a shared prompt prefill: each prompt is encoded once, its KV cache repeated G times.

``transformers.generate`` on ``P * G`` rows prefills every prompt G times; at our scale the prefill
is about half of the generation FLOPs.  :func:`sample_groups` prefills the P distinct prompts,
repeats the KV cache G times (``DynamicCache.batch_repeat_interleave``) and decodes all rows
together; rows that have produced an EOS leave the batch (and the cache) as they finish, so the
decode steps late in a rollout only compute the rows still running.  Positions follow ``generate``'s convention
under left padding (``cumsum(attention_mask) - 1``), so the trainer's forward pass reproduces the
sampler's log-probs.  Sampling is temperature + nucleus (top-p), the same distribution that
``generate(do_sample=True, temperature=T, top_p=p, top_k=0)`` draws from; greedy when
``do_sample=False``.

Optionally the loop also returns each token's *self-certainty* (Kang, Zhao & Song 2025, "Scalable Best-of-N
Selection for Large Language Models via Self-Certainty", arXiv 2502.18581): KL(U || p) of the model's raw
next-token distribution p = softmax(z) (temperature 1) from the uniform U over the V vocabulary entries,
``-log V - (1/V) sum_j log p_j``, computed from the logits already at hand as ``logsumexp(z) - mean(z) - log V``
(the same number; :func:`self_certainty_from_logits`), so Best-of-N selection needs no second forward pass.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from transformers import DynamicCache


def prompt_ids(tok: Any, messages: list[dict[str, str]]) -> list[int]:
    """Token ids of chat ``messages`` with the generation prompt, no extra special tokens: the one place a
    prompt is tokenized (trainer, probe, SFT/DPO examples, agents, MALT, Digi-Q, Best-of-N)."""
    text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return tok(text, add_special_tokens=False)["input_ids"]


def left_pad(prompts: list[list[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and attention mask of ``prompts`` left-padded to a common length."""
    lp = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), lp), pad_id, dtype=torch.long)
    att = torch.zeros((len(prompts), lp), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, lp - len(p) :] = torch.tensor(p, dtype=torch.long)
        att[i, lp - len(p) :] = 1
    return ids.to(device), att.to(device)


def _pick(logits: torch.Tensor, do_sample: bool, temperature: float, top_p: float) -> torch.Tensor:
    if not do_sample:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        # Keep the smallest set whose mass reaches top_p (the token that crosses it included).
        drop = sorted_p.cumsum(-1) - sorted_p > top_p
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
    return torch.multinomial(probs, 1).squeeze(-1)


def self_certainty_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Per-position self-certainty KL(U || softmax(logits)) in nats, over the last dimension (V entries).

    ``KL(U || p) = sum_j (1/V) log((1/V) / p_j) = -log V - mean_j log p_j`` and ``log p_j = z_j - logsumexp(z)``,
    so it equals ``logsumexp(z) - mean(z) - log V``: >= 0, 0 for a uniform distribution, larger = more confident.
    Source: backprop07/Self-Certainty ``src/confidence_list.py`` (``confidence_logprob_sum``), README formula.
    """
    z = logits.float()
    return torch.logsumexp(z, dim=-1) - z.mean(-1) - math.log(z.shape[-1])


def _record(logits: torch.Tensor, tok: torch.Tensor, active: torch.Tensor, t: int, temperature: float,
            logps: torch.Tensor | None, entropies: torch.Tensor, certainty: torch.Tensor | None) -> None:
    """Write position ``t`` of the active rows: the chosen token's log-prob and the entropy under
    ``softmax(logits / T)`` (when ``logps`` is given), and the self-certainty of the raw logits (when asked)."""
    if logps is not None:
        logp_all = torch.log_softmax(logits.float() / temperature, -1)
        logps[active, t] = logp_all.gather(-1, tok[:, None]).squeeze(-1)
        entropies[active, t] = -(logp_all.exp() * logp_all).sum(-1)
    if certainty is not None:
        certainty[active, t] = self_certainty_from_logits(logits)


@torch.no_grad()
def _prefill(model: torch.nn.Module, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, group_size: int,
             prefix_ids: torch.Tensor | None) -> tuple[DynamicCache, torch.Tensor, torch.Tensor]:
    """One forward pass over the P prompts (after the shared ``prefix_ids``, encoded once): the KV cache and the
    last logits, each repeated ``group_size`` times (prompt-major), and the attention mask of the G * P rows."""
    (P, lp), device = prompt_ids.shape, prompt_ids.device
    cache = DynamicCache()
    if prefix_ids is not None and prefix_ids.numel() > 0:
        pre = model(input_ids=prefix_ids.view(1, -1), use_cache=True, past_key_values=cache, logits_to_keep=1)
        cache = pre.past_key_values
        cache.batch_repeat_interleave(P)
        prompt_mask = torch.cat([torch.ones((P, prefix_ids.numel()), dtype=prompt_mask.dtype, device=device),
                                 prompt_mask], dim=1)
    pos = (prompt_mask.cumsum(-1) - 1).clamp(min=0)[:, prompt_mask.shape[1] - lp :]
    out = model(input_ids=prompt_ids, attention_mask=prompt_mask, position_ids=pos, past_key_values=cache,
                use_cache=True, logits_to_keep=1)
    cache = out.past_key_values
    logits = out.logits[:, -1]
    if group_size > 1:
        cache.batch_repeat_interleave(group_size)
        logits = logits.repeat_interleave(group_size, dim=0)
    return cache, logits, prompt_mask.repeat_interleave(group_size, dim=0)


@torch.no_grad()
def sample_groups(
    model: torch.nn.Module,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    group_size: int,
    max_new_tokens: int,
    eos_ids: list[int],
    pad_id: int,
    do_sample: bool = True,
    temperature: float = 1.0,
    top_p: float = 1.0,
    return_logprobs: bool = False,
    prefix_ids: torch.Tensor | None = None,
    return_self_certainty: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """Completions ``[P * G, Lc]`` (prompt-major rows), padded with ``pad_id`` after each row's EOS.

    With ``return_logprobs`` also the log-prob of each chosen token under ``softmax(logits / T)``,
    as computed by the forward pass that sampled it (what the trainer's forward must reproduce), and
    the entropy of that sampling distribution at each position; ``return_self_certainty`` appends each token's
    self-certainty (:func:`self_certainty_from_logits` of the raw logits that produced it).

    ``prompt_ids`` / ``prompt_mask`` are the P distinct prompts, left-padded.  ``Lc`` is at most
    ``max_new_tokens``; decoding stops as soon as every row has emitted an EOS.  ``prefix_ids`` ``[c]``: tokens every
    prompt starts with (few-shot examples), encoded once and shared through the KV cache; ``prompt_ids`` are then
    the rest of each prompt (the padding sits between the two, which the positions skip: the same logits).
    """
    P, device = prompt_ids.shape[0], prompt_ids.device
    eos = torch.tensor(eos_ids, device=device)
    cache, logits, mask = _prefill(model, prompt_ids, prompt_mask, group_size, prefix_ids)
    next_pos = mask.sum(-1, keepdim=True)  # position of the first completion token
    B = P * group_size
    tokens = torch.full((B, max_new_tokens), pad_id, dtype=torch.long, device=device)
    logps = torch.zeros((B, max_new_tokens), device=device)
    entropies = torch.zeros((B, max_new_tokens), device=device)
    certainty = torch.zeros((B, max_new_tokens), device=device) if return_self_certainty else None
    active = torch.arange(B, device=device)  # rows still decoding; finished rows leave the batch
    finished_since_compaction = torch.zeros(B, dtype=torch.bool, device=device)
    width = 0
    for t in range(max_new_tokens):
        tok = _pick(logits, do_sample, temperature, top_p)
        tok = torch.where(finished_since_compaction, torch.full_like(tok, pad_id), tok)
        tokens[active, t] = tok
        width = t + 1
        _record(logits, tok, active, t, temperature, logps if return_logprobs else None, entropies, certainty)
        finished_since_compaction = finished_since_compaction | torch.isin(tok, eos)
        if bool(finished_since_compaction.all()) or t == max_new_tokens - 1:
            break
        # Drop finished rows from the batch (and the KV cache) once enough of them have piled up.
        if int(finished_since_compaction.sum()) >= max(1, active.numel() // 10):
            keep = (~finished_since_compaction).nonzero().squeeze(-1)
            cache.batch_select_indices(keep)
            active, mask, next_pos, tok = active[keep], mask[keep], next_pos[keep], tok[keep]
            finished_since_compaction = finished_since_compaction[keep]
        mask = torch.cat([mask, torch.ones((mask.shape[0], 1), dtype=mask.dtype, device=device)], dim=1)
        out = model(input_ids=tok[:, None], attention_mask=mask, position_ids=next_pos + t, past_key_values=cache,
                    use_cache=True, logits_to_keep=1)
        cache = out.past_key_values
        logits = out.logits[:, -1]
    out = (tokens, *((logps, entropies) if return_logprobs else ()), *(() if certainty is None else (certainty,)))
    return tuple(x[:, :width] for x in out) if len(out) > 1 else tokens[:, :width]
