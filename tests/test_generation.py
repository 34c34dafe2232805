"""The shared-prefill sampler: exact agreement with transformers.generate, also when rows finish early."""

from __future__ import annotations

import torch
from rlbook.policy.generation import left_pad, sample_groups
from rlbook.policy.models import tiny_llama

EOS = 2


def _model_that_stops_after_some_tokens():
    """A tiny Llama whose EOS logit jumps after certain tokens, so rows finish at different steps."""
    model = tiny_llama(vocab_size=98, seed=0, init_std=0.2).eval()

    def hook(module, args, kwargs, out):
        last = kwargs["input_ids"][:, -1]
        out.logits[:, -1, EOS] += 100.0 * ((last % 11) == 4).float()
        return out

    model.register_forward_hook(hook, with_kwargs=True)
    return model


def _prompts(tok):
    return [tok(f"<bos>user:{a} + {b} = ?<eos><bos>assistant:", add_special_tokens=False)["input_ids"]
            for a in range(4) for b in range(3)]


def test_rows_finishing_early_leave_the_batch_without_changing_greedy_output(tok):
    model = _model_that_stops_after_some_tokens()
    ids, att = left_pad(_prompts(tok), EOS, torch.device("cpu"))
    ours = sample_groups(model, ids, att, 2, 12, [EOS], EOS, do_sample=False)
    theirs = model.generate(input_ids=ids.repeat_interleave(2, 0), attention_mask=att.repeat_interleave(2, 0),
                            max_new_tokens=12, do_sample=False, pad_token_id=EOS, eos_token_id=[EOS])
    theirs = theirs[:, ids.shape[1]:]
    first_eos = [row.index(EOS) if EOS in row else None for row in ours.tolist()]
    assert len({f for f in first_eos if f is not None}) >= 2 and None in first_eos  # mixed lengths: compaction ran
    assert ours.shape == theirs.shape and torch.equal(ours, theirs)


def test_tokens_after_eos_are_padding_and_logprobs_are_finite(tok):
    model = _model_that_stops_after_some_tokens()
    ids, att = left_pad(_prompts(tok), EOS, torch.device("cpu"))
    torch.manual_seed(0)
    comp, logp, ent = sample_groups(model, ids, att, 3, 12, [EOS], EOS, temperature=0.8, return_logprobs=True)
    assert comp.shape == logp.shape == ent.shape and comp.shape[0] == 36
    for row in comp.tolist():
        if EOS in row:
            assert all(t == EOS for t in row[row.index(EOS):])
    assert torch.isfinite(logp).all() and (ent >= 0).all()
