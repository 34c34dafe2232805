"""The problem record and the answer patterns that every task source shares: reasoning-gym tasks
(:mod:`rlbook.data.tasks`) and hub / local data sets (:mod:`rlbook.data.hub`).  Both import them from here, so neither
imports the other's private names (``rlbook.data.tasks`` dispatches to ``rlbook.data.hub``, never the reverse)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

ANSWER_TAG = re.compile(r"<answer>\s*(.*?)\s*</answer>", re.S | re.I)  # the tag the prompts ask the answer in
NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


@dataclass
class Problem:
    """One question with its reference answer, the chat messages to prompt with, and its index."""

    index: int
    question: str
    answer: str
    messages: list[dict[str, str]]
    entry: dict[str, Any]  # the reasoning-gym entry (for score_answer)
    meta: dict[str, Any] = field(default_factory=dict)  # {"source", "source_index", "difficulty"}: problem_meta()
