"""Text rules the length methods share: where the first correct answer ends, sentences, chunks, reflection
words, a bag-of-words similarity.  Each rule names the public code it follows and how ours differs.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any

# "Stop Unnecessary Reflection" (ARLCP) src/rm.py::count_keywords_counter, in the code's order
REFLECTION_WORDS = ("wait", "alternatively", "hold on", "another thought", "verify", "think again", "but", "however",
                    "alternative", "check", "double-check", "oh", "hmm")
_REFLECTION = re.compile(r"\b(" + "|".join(re.escape(w) for w in REFLECTION_WORDS) + r")\b", re.I)
# DECS src_valid/reward_manager.py::initialize_split_tokens: a chunk starts at each of these words
DECS_SPLIT_WORDS = ("Wait", "But", "Alternatively", "Hmm", "Let", "Therefore")
# VSRM (the paper's step split points; no public code)
VSRM_SPLIT_WORDS = ("However", "Therefore", "So", "But", "Wait")
_ANSWER_STATEMENT = re.compile(r"answer(?: is)?\s*[:=]?\s*\**\s*-?\d", re.I)


def first_answer_end(text: str, answer: str) -> int | None:
    """Character index just after the first place ``text`` states ``answer`` (None if it never does).

    Follows "Reconsidering Overthinking" (github.com/HenryZhen97/Reconsidering-Overthinking,
    ``rllm/rewards/compress_utils/response_utils.py::split_by_keywords``): the answer string, not preceded
    by a digit, an operator, a bracket or punctuation, and ending at a word boundary, searched in the
    lower-cased text; for answers longer than three characters also the ``1,234`` form (the earlier match
    wins); failing both, a plain substring search.  Like the code, an answer restated inside the question
    ("2 + 6 - 5" for answer 6) counts.
    """
    low, ans = text.lower(), answer.strip().lower()
    if not ans:
        return None
    ends = []
    for form in [ans] + ([ans[:-3] + "," + ans[-3:]] if len(ans) > 3 else []):
        m = re.search(r"(?<![\d+\-*/^<>%&|!()\[\],.?])" + re.escape(form) + r"\b", low)
        if m:
            ends.append(m.end())
    if ends:
        return min(ends)
    start = low.find(ans)
    return None if start < 0 else start + len(ans)


def split_sentences(text: str) -> list[str]:
    """Sentences: a split after each ``.``, ``!`` or ``?`` except a decimal point between two digits; LaTeX
    blocks kept whole; empty pieces dropped (Reconsidering Overthinking ``split_sentences``)."""
    latex = re.compile(r"(\$\$.*?\$\$|\$(?!\s)[^$]*?\$|\\\[.*?\\\]|\\\(.*?\\\)|\\begin\{[^{}]+\}.*?\\end\{[^{}]+\})",
                       re.S)
    blocks: list[str] = []

    def hide(m: re.Match[str]) -> str:
        blocks.append(m.group(0))
        return f"\0{len(blocks) - 1}\0"

    hidden = latex.sub(hide, text)
    out, cur = [], []
    for i, ch in enumerate(hidden):
        cur.append(ch)
        decimal = ch == "." and 0 < i < len(hidden) - 1 and hidden[i - 1].isdigit() and hidden[i + 1].isdigit()
        if ch in ".!?" and not decimal:
            out.append("".join(cur))
            cur = []
    out.append("".join(cur))
    restore = re.compile(r"\0(\d+)\0")
    return [restore.sub(lambda m: blocks[int(m.group(1))], s).strip() for s in out if s.strip()]


def bow_cosine(a: str, b: str) -> float:
    """Cosine of lower-cased word-count vectors, clipped to [0, 1] (0 for an empty text).

    Stands in for the code's ``all-MiniLM-L6-v2`` sentence embeddings (a model download, not allowed here).
    """
    ca, cb = Counter(re.findall(r"\w+", a.lower())), Counter(re.findall(r"\w+", b.lower()))
    na = math.sqrt(sum(v * v for v in ca.values()))
    nb = math.sqrt(sum(v * v for v in cb.values()))
    if na == 0 or nb == 0:
        return 0.0
    return min(1.0, max(0.0, sum(ca[w] * cb[w] for w in ca) / (na * nb)))


def internal_redundancy(sentences: list[str], window_ratio: float = 0.1, stride_ratio: float = 0.05) -> float:
    """Internal redundancy degree (IRD): mean similarity of adjacent sliding windows of sentences.

    Reconsidering Overthinking ``get_internal_redundancy_degree``: n sentences (0.0 for one), window
    ``max(1, int(0.1 n))``, stride ``max(1, int(0.05 n))``, windows joined with spaces, IRD = mean over
    adjacent window pairs of their cosine clipped to [0, 1] (0.0 with fewer than two windows).  Similarity:
    :func:`bow_cosine` instead of MiniLM embeddings.
    """
    n = len(sentences)
    if n <= 1:
        return 0.0
    window, stride = max(1, int(window_ratio * n)), max(1, int(stride_ratio * n))
    chunks = [" ".join(sentences[i : i + window]) for i in range(0, n - window + 1, stride)]
    if len(chunks) < 2:
        return 0.0
    sims = [bow_cosine(a, b) for a, b in zip(chunks[:-1], chunks[1:], strict=True)]
    return sum(sims) / len(sims)


def reflection_count(text: str) -> int:
    """Whole-word, case-insensitive matches of ARLCP's reflection keywords (``count_keywords_counter``)."""
    return len(_REFLECTION.findall(text))


def chunk_starts(text: str, words: tuple[str, ...] = DECS_SPLIT_WORDS) -> list[int]:
    """Character starts of the chunks (steps) of a completion: 0, each of ``words`` at a word start (DECS splits
    its outputs at "Wait", "But", "Alternatively", "Hmm", "Let", "Therefore"; VSRM at "However", "Therefore",
    "So", "But", "Wait") and, a difference from both (their long outputs are split by those words alone),
    each new line and each new sentence (after ``.``, ``!``, ``?`` and a space), since our short outputs seldom
    contain the words."""
    split = re.compile(r"(?<![\w])(?:" + "|".join(map(re.escape, words)) + r")\b|(?<=\n)(?=\S)|(?<=[.!?] )(?=\S)")
    starts = {0} | {m.start() for m in split.finditer(text)}
    return sorted(s for s in starts if s < len(text))


def states_final_answer(text: str) -> bool:
    """The completion ends its reasoning with an answer statement ("answer: N", "the answer is N")."""
    return bool(_ANSWER_STATEMENT.search(text))


def token_index_at(offsets: list[tuple[int, int]], char: int) -> int:
    """Index of the first token that ends after character ``char`` (tokens before it cover ``[0, char)``);
    ``len(offsets)`` when every token ends at or before it."""
    for i, (_, end) in enumerate(offsets):
        if end > char:
            return i
    return len(offsets)


def encode(tokenizer: Any, text: str) -> list[int]:
    """Token ids of ``text`` without special tokens."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])
