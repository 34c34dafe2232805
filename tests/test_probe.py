"""The task probe: statistics worked out by hand, generation bookkeeping with scripted models, warnings, CLI."""

from __future__ import annotations

import types

import pytest
import torch
from rlbook.analysis.probe import (
    config_advice,
    format_report,
    generate,
    group_stats,
    length_stats,
    markdown_table,
    probe,
    signal_warning,
    task_from_cli,
)
from rlbook.application import cli
from rlbook.core.config import ParamError
from rlbook.data.tasks import make_task


class BigramLM(torch.nn.Module):
    """Next-token logits that depend on the last input token only: ``table[prev]`` (no real cache)."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table = torch.nn.Parameter(table, requires_grad=False)
        self.generation_config = types.SimpleNamespace(eos_token_id=None)

    def forward(self, input_ids, attention_mask=None, position_ids=None, past_key_values=None, use_cache=True,
                logits_to_keep=1):
        return types.SimpleNamespace(logits=self.table[input_ids[:, -1:]], past_key_values=past_key_values)


def scripted(tok, after_colon: list[str]) -> BigramLM:
    """After the prompt's last token ':' emit one of ``after_colon`` (equally likely), then EOS."""
    V = len(tok)
    table = torch.full((V, V), -1e9)
    colon = tok.convert_tokens_to_ids(":")
    for ch in after_colon:
        i = tok.convert_tokens_to_ids(ch)
        table[colon, i] = 0.0
        table[i, tok.eos_token_id] = 0.0
    table[tok.eos_token_id, tok.eos_token_id] = 0.0
    return BigramLM(table)


SUMS = {"name": "chain_sum", "config": {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1},
        "train_size": 60, "eval_size": 30, "system_prompt": None}


def test_group_stats_by_hand() -> None:
    # Four prompts, G = 4: #correct = 1, 4, 0, 2.
    correct = [1, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 0, 0]
    g = group_stats([bool(c) for c in correct], 4)
    assert g["per_prompt_success"] == [0.25, 1.0, 0.0, 0.5]
    assert g["histogram"] == [1, 1, 1, 0, 1]  # one prompt each with 0, 1, 2 and 4 right
    assert g["mixed_share"] == 0.5 and g["all_wrong_share"] == 0.25 and g["all_correct_share"] == 0.25
    with pytest.raises(ParamError, match="do not split into groups of group_size=3"):
        group_stats([True] * 4, 3)


def test_length_stats_by_hand() -> None:
    s = length_stats([1, 2, 3, 4, 10])
    # Linear interpolation: p10 at rank 0.4 -> 1 + 0.4 * (2 - 1) = 1.4; p90 at rank 3.6 -> 4 + 0.6 * 6 = 7.6.
    # Population std: squared deviations 9 + 4 + 1 + 0 + 36 = 50, / 5 = 10, sqrt = 3.1623.
    assert s == pytest.approx({"mean": 4.0, "std": 10 ** 0.5, "p10": 1.4, "p50": 3.0, "p90": 7.6, "min": 1.0,
                               "max": 10.0})


def test_probe_with_a_model_that_always_says_one_digit(tok) -> None:
    task = make_task(SUMS)
    # The digit that answers the most of the first 20 training prompts (so that the test sees hits).
    d = max("0123456789", key=lambda c: sum(p.answer == c for p in task.train[:20]))
    res = probe(task, scripted(tok, [d]), tok, max_new_tokens=4, n_eval=30, n_prompts=20, group_size=3,
                model_name="bigram")
    hits_eval = sum(p.answer == d for p in task.eval)
    hits_train = sum(p.answer == d for p in task.train[:20])
    assert hits_train > 0
    g, s = res["greedy"], res["sampled"]
    assert g["n"] == 30 and g["accuracy"] == pytest.approx(hits_eval / 30)
    assert g["length"]["mean"] == 2.0 and g["truncation_rate"] == 0.0  # the digit and the EOS
    assert g["format_rate"] == 1.0 and g["extractable_rate"] == 1.0
    assert s["histogram"] == [20 - hits_train, 0, 0, hits_train] and s["mixed_share"] == 0.0
    assert s["per_prompt_success"] == [float(p.answer == d) for p in task.train[:20]]
    assert res["warning"] is not None and "GRPO gets no signal on task 'chain_sum'" in res["warning"]


def test_truncated_completions_are_counted(tok) -> None:
    task = make_task(SUMS)
    comps = generate(scripted(tok, ["7"]), tok, task.eval[:5], max_new_tokens=1)
    assert comps.texts == ["7"] * 5 and comps.lengths == [1] * 5 and comps.truncated == [True] * 5
    comps = generate(scripted(tok, ["7"]), tok, task.eval[:5], max_new_tokens=2, group_size=2, do_sample=True)
    assert comps.texts == ["7"] * 10 and comps.lengths == [2] * 10 and comps.truncated == [False] * 10


def test_sampled_rows_stay_with_their_prompts(tok) -> None:
    # Answers 7 or 8 with probability 1/2 each: only prompts whose answer is 7 or 8 can be right, and
    # each of their samples is right with probability 1/2, so with G = 8 most of them are mixed.
    task = make_task(SUMS)
    res = probe(task, scripted(tok, ["7", "8"]), tok, max_new_tokens=3, n_eval=4, n_prompts=40, group_size=8,
                batch_rows=16, model_name="bigram")
    s = res["sampled"]
    for p, rate in zip(task.train[:40], s["per_prompt_success"], strict=True):
        if p.answer not in ("7", "8"):
            assert rate == 0.0
    hits = [rate for p, rate in zip(task.train[:40], s["per_prompt_success"], strict=True) if p.answer in ("7", "8")]
    assert hits and 0.2 < sum(hits) / len(hits) < 0.8
    assert s["mixed_share"] == pytest.approx(sum(0 < r < 1 for r in s["per_prompt_success"]) / 40)


def test_probe_runs_a_real_model_with_a_kv_cache(tok, tiny_model) -> None:
    task = make_task(SUMS)
    res = probe(task, tiny_model, tok, max_new_tokens=6, n_eval=5, n_prompts=3, group_size=4, model_name="tiny")
    g, s = res["greedy"], res["sampled"]
    assert g["n"] == 5 and sum(s["histogram"]) == 3 and len(s["per_prompt_success"]) == 3
    assert 1 <= g["length"]["min"] <= g["length"]["max"] <= 6
    assert res["seconds"] > 0 and res["task"]["name"] == "chain_sum" and "examples" in g
    assert format_report(res).startswith("task chain_sum")


def test_by_group_splits_a_mixed_pool(tok) -> None:
    spec = {"name": "composite", "train_size": 60, "eval_size": 30, "system_prompt": None, "config": {"datasets": [
        {"name": "chain_sum", "weight": 1, "config": {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 2}},
        {"name": "products", "weight": 1, "config": {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1}},
    ]}}
    task = make_task(spec)
    res = probe(task, scripted(tok, ["7"]), tok, max_new_tokens=3, n_eval=30, n_prompts=10, group_size=2,
                model_name="bigram")
    groups = res["by_group"]["greedy"]
    assert sum(v["n"] for v in groups.values()) == 30
    for label, v in groups.items():
        members = [p for p in task.eval if label.startswith(p.meta["source"])
                   and all(f"{k}={x}" in label for k, x in p.meta["difficulty"].items())]
        assert v["n"] == len(members) and v["mean"] == pytest.approx(sum(p.answer == "7" for p in members) / len(members))


def test_signal_warning_from_accuracy() -> None:
    default_sums = {"name": "chain_sum", "config": {}}  # min/max terms 2/6, digits 1/4
    msg = signal_warning(0.0, default_sums)
    assert msg.startswith("GRPO gets no signal on task 'chain_sum': the base model's greedy held-out accuracy is 0%.")
    assert "-p task.config.max_terms=2 -p task.config.max_digits=1" in msg  # the curriculum's easiest level
    one_digit = {"name": "chain_sum", "config": {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1}}
    msg = signal_warning(1.0, one_digit)
    assert "make it harder, e.g. -p task.config.max_terms=3 -p task.config.max_digits=2" in msg
    assert signal_warning(0.3, one_digit) is None
    with pytest.raises(ParamError, match=r"accuracy=1.5 must lie in \[0, 1\]"):
        signal_warning(1.5, one_digit)


def test_signal_warning_from_a_probe() -> None:
    hard = {"greedy": {"accuracy": 0.02}, "max_new_tokens": 32,
            "sampled": {"mixed_share": 0.05, "all_wrong_share": 0.95, "all_correct_share": 0.0, "n_prompts": 20,
                        "group_size": 8, "truncation_rate": 0.5, "extractable_rate": 0.3}}
    msg = signal_warning(hard, {"name": "leg_counting"})
    assert "only 5% of 20 prompts give a mixed group of 8 samples (95% all wrong, 0% all right" in msg
    assert "-p train.max_new_tokens=64" in msg and "answer_format=tag" in msg
    assert "-p task.config.max_animals=1 -p task.config.min_animals=1 -p task.config.max_instances=2" in msg
    easy = {"greedy": {"accuracy": 1.0},
            "sampled": {"mixed_share": 0.0, "all_wrong_share": 0.0, "all_correct_share": 1.0, "n_prompts": 8,
                        "group_size": 4}}
    assert "make it harder" in signal_warning(easy, "chain_sum")
    # Greedy 0% but a fifth of the groups mixed: sampling gives GRPO signal, so no warning.
    some = {"greedy": {"accuracy": 0.0}, "sampled": {**hard["sampled"], "mixed_share": 0.2}}
    assert signal_warning(some, "chain_sum") is None


def test_config_advice_edges() -> None:
    assert config_advice("gsm_symbolic", {}, "easier") == []  # no reasoning-gym curriculum
    assert config_advice("chain_sum", {"max_terms": 2, "max_digits": 1}, "easier") == []  # already easiest
    with pytest.raises(ParamError, match="direction='down' is not allowed; allowed: easier, harder"):
        config_advice("chain_sum", {}, "down")


def test_task_from_cli_overrides() -> None:
    spec, mnt = task_from_cli("chain_sum", ["task.config.max_terms=3", "config.min_digits=2", "answer_format=tag",
                                            "max_new_tokens=64"])
    assert spec == {"name": "chain_sum", "train_size": 1000, "eval_size": 100, "answer_format": "tag",
                    "config": {"max_terms": 3, "min_digits": 2}}
    assert mnt == 64
    spec, mnt = task_from_cli("sums-1digit", [])
    assert spec["config"]["max_digits"] == 1 and mnt == 32
    with pytest.raises(ParamError, match="unknown task 'nope'; presets: "):
        task_from_cli("nope", [])
    with pytest.raises(ParamError, match="max_new_tokens=0 must be an integer >= 1"):
        task_from_cli("chain_sum", ["max_new_tokens=0"])


def test_cli_lists_tasks_and_rejects_bad_probe(capsys) -> None:
    assert cli.main(["tasks"]) == 0
    out = capsys.readouterr().out
    assert "sums-1digit" in out and "leg_counting" in out and "reasoning-gym tasks (" in out
    assert cli.main(["tasks", "--probe", "nope"]) == 2
    assert "unknown task 'nope'" in capsys.readouterr().err
    assert cli.main(["tasks", "-p", "config.max_terms=2"]) == 2


def test_markdown_table_row() -> None:
    stats = {"accuracy": 0.25, "format_rate": 0.5, "extractable_rate": 1.0, "truncation_rate": 0.0,
             "length": {"mean": 10.0, "std": 1.0, "p10": 8.0, "p50": 10.0, "p90": 12.0, "min": 7.0, "max": 14.0}}
    res = {"preset": "x", "task": {"name": "chain_sum", "config": {"max_terms": 2}, "answer_format": "plain",
                                   "instruction": "Reply with the answer only."},
           "max_new_tokens": 32, "date": "2025-01-02T03:04:05+00:00", "seconds": 12.3,
           "greedy": {"n": 100, **stats},
           "sampled": {**stats, "accuracy": 0.125, "mixed_share": 0.375, "n_prompts": 32, "group_size": 8, "temperature": 1.0,
                       "histogram": [20, 12, 0, 0, 0, 0, 0, 0, 0]}}
    row = markdown_table([res]).splitlines()[2]
    assert row.startswith("| x | chain_sum(max_terms=2), plain, 32 tok | 100 | 25% | 12% | 38% of 32x8 | 0:20 1:12 ")
    assert "| 10 (8/10/12, 14) |" in row and row.endswith("| 2025-01-02 | 12 |")


def test_probe_keeps_the_callers_rng_and_takes_a_preset(tok, tiny_model) -> None:
    torch.manual_seed(123)
    before = torch.get_rng_state()
    res = probe("sums-reasoning", tiny_model, tok, n_eval=2, n_prompts=1, group_size=2, model_name="tiny")
    assert torch.equal(torch.get_rng_state(), before)
    assert res["max_new_tokens"] == 128 and res["task"]["instruction"].startswith("Solve it step by step")
    with pytest.raises(ParamError, match="probe group_size=0 must be an integer >= 1"):
        probe("sums-1digit", tiny_model, tok, group_size=0)
