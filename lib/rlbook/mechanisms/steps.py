"""Completions as steps a program can check one by one: segmentation and an exact oracle process reward.

Process-reward methods (Lightman et al. 2023, "Let's Verify Step by Step"; Wang et al. 2024,
"Math-Shepherd") score each step of a solution instead of only its final answer.  On ``chain_sum``
every step can be checked exactly: asked for one running partial sum per line (:data:`INSTRUCTION`),
with the worked example of :data:`SYSTEM_PROMPT` as the system prompt (preset ``sums-steps``), a
completion for ``4 - 1 - 7 =`` should read::

    4 - 1 = 3
    3 - 7 = -4
    Answer: -4

and the i-th computed value must equal the sum of the first ``i + 2`` signed terms.

:func:`segment` is the one segmentation every step-level method shares: a step is one non-empty
line, with its character span in the completion and, given per-token character offsets
(:func:`token_offsets`), its token span.  Each step has a ``kind``:

* ``"calc"``: the line contains ``=``; its ``value`` is the first number after the last ``=``;
* ``"answer"``: no ``=`` but an answer statement (``Answer: N`` or ``<answer>N</answer>``); ``value`` = N;
* ``"text"``: anything else (``value`` None).

:func:`oracle_step_labels` labels every step.  Calc steps are matched by position: the i-th calc step
is right iff its value equals the i-th running partial sum (so a line that combines several terms
at once is wrong by this oracle, being no running partial sum).  An answer step is right iff its
value equals the final result.  A text step makes no checkable claim and is labelled True (so a
completion of prose alone is all True: combine with the outcome reward, or use :func:`prefix_labels`).
Supported sources: ``chain_sum`` (the expression in the entry's metadata, ``+``/``-`` only); any other
source is a ``ParamError``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from rlbook.core.config import ParamError
from rlbook.data.tasks import STEP_INSTRUCTION, STEP_SYSTEM_PROMPT, Problem

INSTRUCTION = STEP_INSTRUCTION  # appended to each chain_sum question (preset "sums-steps")
SYSTEM_PROMPT = STEP_SYSTEM_PROMPT  # a worked example; without it the embedded model ignores the format
SUPPORTED = ("chain_sum",)
_NUM = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?")
_ANSWER = re.compile(r"(?:<answer>\s*|answer(?: is)?\s*[:=]?\s*)(-?\d+(?:,\d{3})*(?:\.\d+)?)", re.I)


@dataclass
class Step:
    """One line of a completion: its text, character span ``[start, end)``, token span, kind and value."""

    text: str
    start: int
    end: int
    kind: str  # "calc" | "answer" | "text"
    value: float | None
    token_start: int | None = None  # first token overlapping the line (None without offsets)
    token_end: int | None = None  # one past the last token overlapping the line


def _number(text: str) -> float | None:
    m = _NUM.search(text)
    return None if m is None else float(m.group().replace(",", ""))


def _classify(line: str) -> tuple[str, float | None]:
    if "=" in line:
        value = _number(line.rsplit("=", 1)[1])
        if value is not None:
            return "calc", value
    m = _ANSWER.search(line)
    if m is not None:
        return "answer", float(m.group(1).replace(",", ""))
    return "text", None


def segment(completion: str, offsets: list[tuple[int, int]] | None = None) -> list[Step]:
    """The non-empty lines of ``completion`` as steps (see the module docstring).

    ``offsets``: character span ``(start, end)`` in ``completion`` of each completion token
    (:func:`token_offsets`); a step's token span covers every token that overlaps its characters.
    """
    steps = []
    for m in re.finditer(r"[^\n]+", completion):
        line = m.group()
        lead = len(line) - len(line.lstrip())
        body = line.strip()
        if not body:
            continue
        start = m.start() + lead
        kind, value = _classify(body)
        step = Step(text=body, start=start, end=start + len(body), kind=kind, value=value)
        if offsets is not None:
            hits = [i for i, (a, b) in enumerate(offsets) if a < step.end and b > step.start]
            if hits:
                step.token_start, step.token_end = hits[0], hits[-1] + 1
        steps.append(step)
    return steps


def token_offsets(tok: Any, ids: list[int]) -> list[tuple[int, int]]:
    """Character span of each token id in ``tok.decode(ids, skip_special_tokens=True)``.

    Decodes every prefix, so the spans agree with the text the reward functions see (a special token
    spans no characters); quadratic in ``len(ids)``, fine for completions of a few hundred tokens.
    """
    spans, prev = [], 0
    for i in range(len(ids)):
        n = len(tok.decode(ids[: i + 1], skip_special_tokens=True))
        spans.append((prev, max(prev, n)))
        prev = max(prev, n)
    return spans


def partial_sums(expression: str) -> list[float]:
    """Running totals of a ``+``/``-`` expression: ``"4 - 1 - 7"`` -> ``[4, 3, -4]``."""
    tokens = expression.split()
    if not tokens or len(tokens) % 2 == 0 or any(op not in "+-" for op in tokens[1::2]):
        raise ParamError(f"expression {expression!r} is not terms joined by + and -")
    total = float(tokens[0])
    sums = [total]
    for op, term in zip(tokens[1::2], tokens[2::2], strict=True):
        total = total + float(term) if op == "+" else total - float(term)
        sums.append(total)
    return sums


def expected_partials(problem: Problem) -> list[float]:
    """The running partial sums a step-by-step solution must write, after the first term."""
    source = (problem.meta or {}).get("source") or problem.entry.get("metadata", {}).get("source_dataset")
    if source not in SUPPORTED:
        raise ParamError(f"no step oracle for source {source!r}; supported: {', '.join(SUPPORTED)}")
    return partial_sums(problem.entry["metadata"]["expression"])[1:]


def oracle_step_labels(problem: Problem, completion: str) -> list[bool]:
    """One label per :func:`segment` step: is this step's claim right given the problem's terms?"""
    partials = expected_partials(problem)
    final = float(problem.answer)
    labels, i = [], 0
    for step in segment(completion):
        if step.kind == "calc":
            labels.append(i < len(partials) and step.value == partials[i])
            i += 1
        elif step.kind == "answer":
            labels.append(step.value == final)
        else:
            labels.append(True)
    return labels


def prefix_labels(labels: list[bool]) -> list[bool]:
    """A step is on track iff it and every step before it is right (cumulative AND)."""
    out, ok = [], True
    for label in labels:
        ok = ok and label
        out.append(ok)
    return out


def step_stats(problems: list[Problem], completions: list[str]) -> dict[str, float]:
    """How well completions follow the one-partial-sum-per-line format, and how often their steps are right.

    ``format_share``: completions with >= 2 calc steps; ``step_accuracy``: share of calc steps whose
    value is the right partial sum; ``all_steps_right``: completions with >= 2 calc steps, all right.
    """
    n_fmt = n_steps = n_right = n_all = 0
    for p, c in zip(problems, completions, strict=True):
        steps = segment(c)
        labels = oracle_step_labels(p, c)
        calc = [lab for s, lab in zip(steps, labels, strict=True) if s.kind == "calc"]
        n_steps += len(calc)
        n_right += sum(calc)
        if len(calc) >= 2:
            n_fmt += 1
            n_all += all(calc)
    n = max(1, len(completions))
    return {"format_share": n_fmt / n, "step_accuracy": n_right / n_steps if n_steps else 0.0,
            "calc_steps_per_completion": n_steps / n, "all_steps_right": n_all / n}
