"""Tasks: existing splits unchanged, per-problem source/difficulty metadata, composite pools, presets."""

from __future__ import annotations

import pytest
from rlbook.core.config import ParamError
from rlbook.data import tasks
from rlbook.data.tasks import PRESETS, SUITE, make_task, preset, problem_meta

QUICKSTART = {"name": "chain_sum", "config": {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1},
              "train_size": 1000, "eval_size": 100}


def test_existing_splits_are_unchanged() -> None:
    # Pinned from the code before Problem.meta existed (commit 3421196): same problems, same order.
    t = make_task(QUICKSTART)
    assert len(t.eval) == 100 and len(t.train) == 99  # only 199 distinct 2-term 1-digit questions
    assert [p.question[-8:] for p in t.eval[:3]] == [" 1 - 5 =", " 2 - 1 =", " 9 - 7 ="]
    assert [p.question[-8:] for p in t.train[:3]] == [" 1 - 2 =", " 0 - 7 =", " 5 - 5 ="]
    assert [p.answer for p in t.train[:3]] == ["-1", "-7", "0"]
    assert t.train[-1].question.endswith(" 8 + 2 =")
    assert t.eval[0].messages[1]["content"].endswith("1 - 5 = Reply with the answer only.")
    legs = make_task({"name": "leg_counting", "train_size": 20, "eval_size": 5})
    assert [p.answer for p in legs.eval] == ["304", "144", "392", "200", "228"]
    assert [p.answer for p in legs.train[:5]] == ["222", "116", "190", "262", "276"]


def test_meta_records_source_and_item_difficulty() -> None:
    t = make_task({"name": "chain_sum", "config": {"min_terms": 2, "max_terms": 3, "min_digits": 1, "max_digits": 2},
                   "train_size": 50, "eval_size": 10})
    for p in t.train + t.eval:
        md = p.entry["metadata"]
        assert p.meta == {"source": "chain_sum", "source_index": md["source_index"],
                          "difficulty": {"num_terms": md["num_terms"], "num_digits": md["num_digits"]}}
        assert len(p.meta["difficulty"]) == 2 and len(md["expression"].split()) == 2 * md["num_terms"] - 1
    assert {p.meta["difficulty"]["num_digits"] for p in t.train} == {1, 2}


def test_problem_meta_range_and_scalar_difficulty() -> None:
    # leg_counting records num_animals per item but only the range of num_instances.
    entry = {"metadata": {"source_dataset": "leg_counting", "source_index": 3, "num_animals": 5,
                          "difficulty": {"num_animals": (3, 10), "num_instances": (1, 15)}}}
    assert problem_meta(entry, "x") == {"source": "leg_counting", "source_index": 3,
                                        "difficulty": {"num_animals": 5, "num_instances": [1, 15]}}
    entry = {"metadata": {"source_dataset": "gsm_symbolic", "source_index": 0, "difficulty": 1.0}}
    assert problem_meta(entry, "x")["difficulty"] == {"difficulty": 1.0}
    assert problem_meta({}, "fallback") == {"source": "fallback", "source_index": None, "difficulty": {}}


def test_composite_from_plain_mappings_records_each_source() -> None:
    spec = {"name": "composite", "train_size": 120, "eval_size": 20, "config": {"datasets": [
        {"name": "chain_sum", "weight": 3, "config": {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 2}},
        {"name": "products", "weight": 1, "config": {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1}},
    ]}}
    t = make_task(spec)
    sources = {p.meta["source"] for p in t.train}
    assert sources == {"chain_sum", "products"}
    for p in t.train[:40]:
        assert p.meta["source"] == p.entry["metadata"]["source_dataset"]
        assert t.score(p, p.answer) == 1.0  # composite routes scoring to the source dataset
        op = "*" if p.meta["source"] == "products" else None
        if op:
            assert op in p.question


def test_composite_bad_entry_and_bad_config_are_param_errors() -> None:
    bad = {"name": "composite", "config": {"datasets": [{"name": "chain_sum", "wieght": 1}]}}
    with pytest.raises(ParamError, match="must have keys name, weight, config"):
        make_task(bad)
    with pytest.raises(ParamError, match="task.config for 'chain_sum' is invalid"):
        make_task({"name": "chain_sum", "config": {"min_terms": 3, "max_terms": 2}})


def test_presets_build_and_suite_is_made_of_presets() -> None:
    assert len(SUITE) >= 4 and set(SUITE) <= set(PRESETS)
    for name in PRESETS:
        p = preset(name)
        assert set(p) >= {"task", "max_new_tokens", "about"}
        t = make_task(p["task"])
        assert len(t.train) >= 50 and len(t.eval) >= 40
    # The sizes the presets' descriptions state.
    assert [len(make_task(preset(n)["task"]).train) for n in ("sums-1digit", "products-1digit", "gcd-20")] == [99, 54, 228]
    gcd = make_task(preset("gcd-20")["task"])
    assert 0.45 < sum(p.answer == "1" for p in gcd.eval) / len(gcd.eval) < 0.55
    p = preset(SUITE[0])
    p["task"]["config"]["mutated"] = 1  # a copy: the registry stays as it was
    assert "mutated" not in PRESETS[SUITE[0]]["task"]["config"]
    with pytest.raises(ParamError, match="unknown preset 'nope'; available: "):
        preset("nope")


def test_capacity_counts_distinct_questions_by_hand():
    # a + b or a - b with one-digit terms: 10 x 10 x 2 = 200 questions; a * b with one-digit factors: 10 x 10 = 100
    sums = {"name": "chain_sum", "config": {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1}}
    products = {"name": "products", "config": {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1}}
    assert tasks.capacity(sums) == 200
    assert tasks.capacity(products) == 100
    assert tasks.capacity({"name": "hub:gsm8k"}) is None



def test_a_held_out_set_the_task_cannot_give_fails_at_the_edge_naming_the_largest_allowed():
    # one-digit a + b or a - b has 200 distinct questions (10 x 10 x 2): 199 held out leave one for training,
    # 200 leave none.  plan() (rlbook check / run) says so before a run folder or a model exists.
    from rlbook.training.experiments import plan

    sums = {"name": "chain_sum", "config": {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1}}
    tasks.check_split({**sums, "eval_size": 199})
    with pytest.raises(ParamError, match=r"only 200 distinct questions; task.eval_size=200 must be smaller "
                                         r"\(at most 199\)"):
        tasks.check_split({**sums, "eval_size": 200})
    params = {"model": "tiny-random", "task": {**sums, "eval_size": 50}, "train": {"steps": 1},
              "methods": {"GRPO": "grpo"}}
    assert [s.label for s in plan(params)["methods"]] == ["GRPO"]
    with pytest.raises(ParamError, match=r"only 200 distinct"):
        plan({**params, "task": {**sums, "eval_size": 250}})
    with pytest.raises(ParamError, match=r"method 'GRPO': eval_size=60 is more than the task's held-out set "
                                         r"\(task.eval_size=50\)"):
        plan({**params, "eval_size": 60})

def test_heldout_target_is_1000_or_500_for_long_answers():
    assert tasks.heldout_target(32) == 1000
    assert tasks.heldout_target(128) == 500


def test_a_pool_too_small_for_the_held_out_set_is_drawn_larger_and_old_splits_stay():
    # gcd up to 20 has 399 distinct questions; 390 held out and 9 for training: the first pool (9 + 2 x 390 + 200
    # = 989 draws) holds fewer than 391 distinct questions, which used to fail; the task draws a larger pool
    # instead.  Splits whose first pool suffices are unchanged (test_existing_splits_are_unchanged pins them).
    import reasoning_gym

    first = reasoning_gym.create_dataset("gcd", size=9 + 2 * 390 + 200, seed=0, min_value=1, max_value=20)
    assert len({e["question"] for e in first}) <= 390
    task = make_task({"name": "gcd", "config": {"min_value": 1, "max_value": 20}, "train_size": 9, "eval_size": 390})
    assert len(task.eval) == 390 and len(task.train) == 9
    assert not {p.question for p in task.eval} & {p.question for p in task.train}
