"""Shared fixtures: a character-level tokenizer with a chat template and a tiny random Llama."""
# ruff: noqa: E402  (the thread policy must be set before torch is imported)

from __future__ import annotations

from rlbook.core import threads

threads.configure()  # OMP_WAIT_POLICY=PASSIVE before torch is imported (rlbook.core.threads); tests pin 1 thread below

import pytest
import torch
from hypothesis import settings
from rlbook.policy.models import CHAT_TEMPLATE, SPECIALS, char_tokenizer, tiny_llama  # noqa: F401  (re-exported to tests)
from transformers import PreTrainedTokenizerFast

# Property tests draw the same examples on every run, so CI cannot fail by the luck of a draw.
settings.register_profile("rlbook", derandomize=True, deadline=None)
settings.load_profile("rlbook")

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
    from rlbook.training import trainer as trainer_mod

    made = []
    original = trainer_mod.Trainer.__init__

    def counting(self, *a, **k):
        made.append(1)
        original(self, *a, **k)

    monkeypatch.setattr(trainer_mod.Trainer, "__init__", counting)
    return made
