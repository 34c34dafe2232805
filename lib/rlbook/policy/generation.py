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

**Common random numbers.**  With ``noise_keys`` (one key per row, :func:`noise_keys` of coordinates such as
(seed, step, prompt, sample)) the token at position t is ``argmax_v p_v / E_v``, where p is the filtered, tempered
distribution and ``E_v ~ Exp(1)`` is counter-based noise, a hash of (row key, t, v) (:func:`exponential_noise`).
This exponential race is the Gumbel-max trick (``argmax log p_v - log E_v``): an exact sample of p (torch's own
``multinomial`` for one draw uses the same race on noise from its global generator).  The noise depends on the
coordinates only, so two runs that share a seed (two arms of a comparison) draw the same tokens wherever their
policies give the same distribution, and mostly the same tokens where the distributions are close, whatever
else either run drew; chunking and the order of the rows do not matter.  Without keys the global RNG is used.

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


_M32 = 0xFFFFFFFF
_C1, _C2 = 0x7FEB352D, 0x846CA68B - (1 << 32)  # lowbias32's multipliers (the second as a signed int32)


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """Chris Wellons' ``lowbias32`` integer hash, in place on an int32 tensor (multiplication wraps modulo 2^32;
    a logical right shift is the arithmetic one masked).  A bijection of 32-bit words with full avalanche."""
    x.bitwise_xor_(x.bitwise_right_shift(16).bitwise_and_(0xFFFF)).mul_(_C1)
    x.bitwise_xor_(x.bitwise_right_shift(15).bitwise_and_(0x1FFFF)).mul_(_C2)
    return x.bitwise_xor_(x.bitwise_right_shift(16).bitwise_and_(0xFFFF))


def _mix_int(x: int) -> int:
    """:func:`_mix32` of one non-negative Python integer below 2^32 (the same function, on plain ints)."""
    x ^= x >> 16
    x = (x * 0x7FEB352D) & _M32
    x ^= x >> 15
    x = (x * 0x846CA68B) & _M32
    return x ^ (x >> 16)


def noise_keys(coords: list[tuple[int, ...]] | torch.Tensor) -> torch.Tensor:
    """``[B, 2]`` int32 keys of the rows' sampling noise, from one tuple of non-negative integer coordinates per
    row (the trainer's: seed, step, stream, prompt id, sample index): two 32-bit hashes folded over the
    coordinates with different starting words, so rows whose coordinates differ anywhere get unrelated noise."""
    rows = coords.tolist() if isinstance(coords, torch.Tensor) else coords
    out = []
    for row in rows:
        keys = []
        for start in (0x243F6A88, 0x85A308D3):  # two words of pi's fraction: two independent streams
            k = start
            for c in row:
                c = int(c)
                if c < 0:
                    raise ValueError(f"noise coordinates must be non-negative integers; got {row}")
                while True:  # fold every 32-bit word of c, so large coordinates are not truncated
                    k = _mix_int(k ^ (c & _M32))
                    c >>= 32
                    if c == 0:
                        break
            keys.append(k - (1 << 32) if k >= 1 << 31 else k)
        out.append(keys)
    return torch.tensor(out, dtype=torch.int32).view(-1, 2)


def exponential_noise(keys: torch.Tensor, position: int, vocab: int) -> torch.Tensor:
    """``[B, vocab]`` i.i.d. Exp(1) noise, a pure function of (row key, ``position``, vocabulary index).

    Each element's 32-bit word is ``mix(mix(k1(t) ^ v) ^ k2(t))`` with the row's two keys first mixed with the
    position t (two rounds, so two rows share no permuted copy of their noise unless both of their 32-bit keys
    agree); its top 24 bits give u in (0, 1) and E = -log u."""
    t = _mix_int(position & _M32)
    t = t - (1 << 32) if t >= 1 << 31 else t
    k = keys.to(torch.int32).clone()
    k.bitwise_xor_(t)
    _mix32(k)
    h = torch.arange(vocab, dtype=torch.int32, device=keys.device).unsqueeze(0).bitwise_xor(k[:, :1])
    _mix32(h)
    _mix32(h.bitwise_xor_(k[:, 1:]))
    u = h.bitwise_right_shift_(8).bitwise_and_(0xFFFFFF).float().add_(0.5).mul_(1.0 / (1 << 24))
    return u.log_().neg_()


def sampling_probs(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """``softmax(logits / T)`` restricted to the nucleus: the smallest set of tokens whose mass reaches
    ``top_p`` (the token that crosses it included), not renormalised (a sampler only needs proportions)."""
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        drop = sorted_p.cumsum(-1) - sorted_p > top_p
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
    return probs


def _pick(logits: torch.Tensor, do_sample: bool, temperature: float, top_p: float,
          keys: torch.Tensor | None = None, position: int = 0) -> torch.Tensor:
    """The next token of each row: greedy, or a sample of :func:`sampling_probs` (the exponential race on the
    rows' counter-based noise when ``keys`` are given, else ``torch.multinomial`` on the global RNG)."""
    if not do_sample:
        return logits.argmax(-1)
    probs = sampling_probs(logits, temperature, top_p)
    if keys is None:
        return torch.multinomial(probs, 1).squeeze(-1)
    return probs.div_(exponential_noise(keys, position, probs.shape[-1])).argmax(-1)


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
    noise_keys: torch.Tensor | None = None,
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
    ``noise_keys`` ``[P * G, 2]``: each row's sampling-noise key (:func:`noise_keys`; common random numbers), else
    the global RNG.
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
    keys = None if noise_keys is None else noise_keys.to(device)
    if keys is not None and keys.shape != (B, 2):
        raise ValueError(f"noise_keys must be [P * G, 2] = [{B}, 2] (one key per row); got {list(keys.shape)}")
    finished_since_compaction = torch.zeros(B, dtype=torch.bool, device=device)
    width = 0
    for t in range(max_new_tokens):
        tok = _pick(logits, do_sample, temperature, top_p, keys, t)
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
            keys = None if keys is None else keys[keep]
            finished_since_compaction = finished_since_compaction[keep]
        mask = torch.cat([mask, torch.ones((mask.shape[0], 1), dtype=mask.dtype, device=device)], dim=1)
        out = model(input_ids=tok[:, None], attention_mask=mask, position_ids=next_pos + t, past_key_values=cache,
                    use_cache=True, logits_to_keep=1)
        cache = out.past_key_values
        logits = out.logits[:, -1]
    out = (tokens, *((logps, entropies) if return_logprobs else ()), *(() if certainty is None else (certainty,)))
    return tuple(x[:, :width] for x in out) if len(out) > 1 else tokens[:, :width]
