"""Shared fixtures: a character-level tokenizer with a chat template and a tiny random Llama."""

from __future__ import annotations

import string

import pytest
import torch
from hypothesis import settings
from rlbook.models import tiny_llama
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

# Property tests draw the same examples on every run, so CI cannot fail by the luck of a draw.
settings.register_profile("rlbook", derandomize=True, deadline=None)
settings.load_profile("rlbook")

SPECIALS = ["<unk>", "<bos>", "<eos>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<bos>{{ m['role'] }}:{{ m['content'] }}<eos>{% endfor %}"
    "{% if add_generation_prompt %}<bos>assistant:{% endif %}"
)


def char_tokenizer() -> PreTrainedTokenizerFast:
    """One token per printable character; ids 0-2 are <unk>, <bos>, <eos> (pad = eos, as in SmolLM2)."""
    vocab = {t: i for i, t in enumerate(SPECIALS + list(string.printable[:95]))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", bos_token="<bos>", eos_token="<eos>", pad_token="<eos>"
    )
    fast.add_special_tokens({"additional_special_tokens": []})
    fast.chat_template = CHAT_TEMPLATE
    fast.padding_side = "left"
    from tokenizers import decoders

    fast.backend_tokenizer.decoder = decoders.Fuse()
    return fast


@pytest.fixture
def tok() -> PreTrainedTokenizerFast:
    return char_tokenizer()


@pytest.fixture
def tiny_model():
    torch.manual_seed(0)
    return tiny_llama(vocab_size=len(SPECIALS) + 95, hidden=32, layers=2, heads=4)


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    yield


class Factory:
    """Counts model loads; the sweep must load once per sweep and only when something must be trained."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self):
        self.calls += 1
        torch.manual_seed(0)
        return tiny_llama(vocab_size=len(SPECIALS) + 95, hidden=16, layers=1, heads=2), char_tokenizer()


@pytest.fixture
def count_trainers(monkeypatch):
    """Counts Trainer constructions (base evals included)."""
    from rlbook import trainer as trainer_mod

    made = []
    original = trainer_mod.Trainer.__init__

    def counting(self, *a, **k):
        made.append(1)
        original(self, *a, **k)

    monkeypatch.setattr(trainer_mod.Trainer, "__init__", counting)
    return made
