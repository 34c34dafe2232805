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
"""

from __future__ import annotations

import torch
from transformers import DynamicCache


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
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Completions ``[P * G, Lc]`` (prompt-major rows), padded with ``pad_id`` after each row's EOS.

    With ``return_logprobs`` also the log-prob of each chosen token under ``softmax(logits / T)``,
    as computed by the forward pass that sampled it (what the trainer's forward must reproduce), and
    the entropy of that sampling distribution at each position.

    ``prompt_ids`` / ``prompt_mask`` are the P distinct prompts, left-padded.  ``Lc`` is at most
    ``max_new_tokens``; decoding stops as soon as every row has emitted an EOS.  ``prefix_ids`` ``[c]``: tokens every
    prompt starts with (few-shot examples), encoded once and shared through the KV cache; ``prompt_ids`` are then
    the rest of each prompt (the padding sits between the two, which the positions skip: the same logits).
    """
    P, lp = prompt_ids.shape
    device = prompt_ids.device
    eos = torch.tensor(eos_ids, device=device)
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
    mask = prompt_mask.repeat_interleave(group_size, dim=0)
    next_pos = mask.sum(-1, keepdim=True)  # position of the first completion token
    B = P * group_size
    tokens = torch.full((B, max_new_tokens), pad_id, dtype=torch.long, device=device)
    logps = torch.zeros((B, max_new_tokens), device=device)
    entropies = torch.zeros((B, max_new_tokens), device=device)
    active = torch.arange(B, device=device)  # rows still decoding; finished rows leave the batch
    finished_since_compaction = torch.zeros(B, dtype=torch.bool, device=device)
    width = 0
    for t in range(max_new_tokens):
        tok = _pick(logits, do_sample, temperature, top_p)
        tok = torch.where(finished_since_compaction, torch.full_like(tok, pad_id), tok)
        tokens[active, t] = tok
        width = t + 1
        if return_logprobs:
            logp_all = torch.log_softmax(logits.float() / temperature, -1)
            logps[active, t] = logp_all.gather(-1, tok[:, None]).squeeze(-1)
            entropies[active, t] = -(logp_all.exp() * logp_all).sum(-1)
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
    tokens, logps, entropies = tokens[:, :width], logps[:, :width], entropies[:, :width]
    if return_logprobs:
        return tokens, logps, entropies
    return tokens
