"""Step segmentation and the chain_sum oracle process reward, on hand-written completions."""

from __future__ import annotations

import pytest
from rlbook.core.config import ParamError
from rlbook.data.tasks import Problem, problem_meta
from rlbook.mechanisms.steps import (
    INSTRUCTION,
    oracle_step_labels,
    partial_sums,
    prefix_labels,
    segment,
    step_stats,
    token_offsets,
)


def chain_problem(expression: str, answer: int) -> Problem:
    entry = {"question": f"State the final answer to the following arithmetic problem: {expression} =",
             "answer": str(answer),
             "metadata": {"source_dataset": "chain_sum", "source_index": 0, "expression": expression,
                          "num_terms": len(expression.split()) // 2 + 1, "num_digits": 1,
                          "difficulty": {"num_terms": (3, 4), "num_digits": (1, 1)}}}
    return Problem(index=0, question=entry["question"], answer=str(answer), entry=entry,
                   messages=[{"role": "user", "content": f"{entry['question']} {INSTRUCTION}"}],
                   meta=problem_meta(entry, "chain_sum"))


# 4 - 1 - 7 + 9: running totals 4, 3, -4, 5 (4-1=3, 3-7=-4, -4+9=5).
P = chain_problem("4 - 1 - 7 + 9", 5)


def test_partial_sums_by_hand() -> None:
    assert partial_sums("4 - 1 - 7 + 9") == [4, 3, -4, 5]
    assert partial_sums("12 + 30") == [12, 42]
    with pytest.raises(ParamError, match="not terms joined"):
        partial_sums("3 * 4")


def test_segment_spans_kinds_values() -> None:
    text = "4 - 1 = 3\n\n  3 - 7 = -4.\nSo far so good\nAnswer: 5"
    steps = segment(text)
    assert [s.text for s in steps] == ["4 - 1 = 3", "3 - 7 = -4.", "So far so good", "Answer: 5"]
    assert [s.kind for s in steps] == ["calc", "calc", "text", "answer"]
    assert [s.value for s in steps] == [3, -4, None, 5]
    # Spans index the original text: line 2 starts after "4 - 1 = 3\n\n  " = 9 + 2 + 2 = 13 chars.
    assert (steps[1].start, steps[1].end) == (13, 24)
    for s in steps:
        assert text[s.start : s.end] == s.text


def test_segment_value_is_after_last_equals_and_handles_commas() -> None:
    (step,) = segment("1,200 + 34 = 1,234")
    assert step.kind == "calc" and step.value == 1234
    (step,) = segment("2 + 2 = 3 + 1 = 4")
    assert step.value == 4
    (step,) = segment("x = ?")  # '=' but no number after it: not a calc step
    assert step.kind == "text"
    assert segment("") == [] and segment("\n \n") == []


def test_oracle_labels_all_right() -> None:
    text = "4 - 1 = 3\n3 - 7 = -4\n-4 + 9 = 5\nAnswer: 5"
    assert oracle_step_labels(P, text) == [True, True, True, True]


def test_oracle_labels_one_wrong_step_and_wrong_answer() -> None:
    # Step 2 claims 3 - 7 = 4 (should be -4); step 3 then continues from the wrong total: 4 + 9 = 13
    # (the 3rd running total is 5), and the answer 13 is not 5.
    text = "4 - 1 = 3\n3 - 7 = 4\n4 + 9 = 13\nAnswer: 13"
    assert oracle_step_labels(P, text) == [True, False, False, False]
    assert prefix_labels([True, False, True, True]) == [True, False, False, False]


def test_oracle_positional_text_steps_and_extra_steps() -> None:
    # A text line claims nothing (True); a line that jumps two terms at once is no running total
    # (its value 5 is compared with the 1st running total, 3); a 4th calc step has no expected value.
    text = "Let me add.\n4 - 1 - 7 + 9 = 5\n5 = 5\n5 = 5\n5 = 5\nAnswer: 5"
    assert oracle_step_labels(P, text) == [True, False, False, True, False, True]


def test_oracle_rejects_unsupported_source() -> None:
    entry = {"question": "q", "answer": "1", "metadata": {"source_dataset": "gsm_symbolic", "difficulty": 1.0}}
    p = Problem(index=0, question="q", answer="1", messages=[], entry=entry, meta=problem_meta(entry, "gsm_symbolic"))
    with pytest.raises(ParamError, match="no step oracle for source 'gsm_symbolic'; supported: chain_sum"):
        oracle_step_labels(p, "1 + 1 = 2")


def test_step_stats_by_hand() -> None:
    completions = [
        "4 - 1 = 3\n3 - 7 = -4\n-4 + 9 = 5\nAnswer: 5",  # 3 calc steps, all right
        "4 - 1 = 3\n3 - 7 = 4",  # 2 calc steps, 1 right
        "The answer is 5.",  # no calc step
    ]
    stats = step_stats([P, P, P], completions)
    assert stats["format_share"] == pytest.approx(2 / 3)  # two completions with >= 2 calc steps
    assert stats["step_accuracy"] == pytest.approx(4 / 5)  # 3 + 1 right of 3 + 2 calc steps
    assert stats["calc_steps_per_completion"] == pytest.approx(5 / 3)
    assert stats["all_steps_right"] == pytest.approx(1 / 3)


def test_token_offsets_char_tokenizer(tok) -> None:
    ids = tok("4 - 1 = 3", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    # One character per token in the test tokenizer; the EOS decodes to nothing: span (9, 9).
    assert token_offsets(tok, ids) == [(i, i + 1) for i in range(9)] + [(9, 9)]


def test_segment_token_spans_cover_overlapping_tokens() -> None:
    text = "4 - 1 = 3\n3 - 7 = -4"
    # Four tokens: "4 - 1" [0,5), " = 3" [5,9), "\n3" [9,11), " - 7 = -4" [11,20).  Line 2 is [10,20):
    # it overlaps token 2 (which starts with the newline) and token 3.
    offsets = [(0, 5), (5, 9), (9, 11), (11, 20)]
    first, second = segment(text, offsets)
    assert (first.token_start, first.token_end) == (0, 2)
    assert (second.start, second.end) == (10, 20)
    assert (second.token_start, second.token_end) == (2, 4)
    assert segment(text)[0].token_start is None
