"""MALT: value iteration and pair construction on the hand-worked 3 x 3 x 3 tree, expansion and the chain."""

from __future__ import annotations

import numpy as np
import pytest
from rlbook.data.tasks import make_task
from rlbook.pipelines import malt
from rlbook.policy.models import tiny_llama, wrap_adapters

# leaf rewards g -> v -> r (research notes, section 3.4)
LEAVES = np.array([
    [[1, 1, 0], [1, 0, 0], [1, 1, 1]],
    [[1, 1, 0], [0, 1, 1], [0, 0, 0]],
    [[0, 0, 0], [0, 1, 0], [0, 0, 0]],
], dtype=float)
TASK = {"name": "gcd", "config": {"min_value": 1, "max_value": 20}, "train_size": 8, "eval_size": 4,
        "answer_format": "tag"}


def test_value_iteration_by_hand():
    v, g = malt.tree_values(LEAVES, "mean")
    # verifiers: g1 (2/3, 1/3, 1), g2 (2/3, 2/3, 0), g3 (0, 1/3, 0)
    assert np.allclose(v, [[2 / 3, 1 / 3, 1], [2 / 3, 2 / 3, 0], [0, 1 / 3, 0]])
    # generators, raw means: g1 = 6/9, g2 = 4/9, g3 = 1/9 -> labels (+, -, -)
    assert np.allclose(g, [6 / 9, 4 / 9, 1 / 9]) and (g > 0.5).tolist() == [True, False, False]
    # binarised rule: mean of the critiques' labels: g1 = 2/3, g2 = 2/3, g3 = 0 -> (+, +, -); g2 separates the rules
    _, gb = malt.tree_values(LEAVES, "binarised")
    assert np.allclose(gb, [2 / 3, 2 / 3, 0])
    with pytest.raises(ValueError, match="allowed"):
        malt.tree_values(LEAVES, "max")


def test_sibling_pairs():
    assert malt.sibling_pairs([True, False, True]) == [(0, 1), (2, 1)]
    assert malt.sibling_pairs([True, True]) == [] and malt.sibling_pairs([False]) == []


def _tree(task):
    p = task.train[0]
    g = [f"g{i}" for i in range(3)]
    v = [[f"v{i}{j}" for j in range(3)] for i in range(3)]
    r = [[[f"r{i}{j}{k}" for k in range(3)] for j in range(3)] for i in range(3)]
    return malt.Tree(p, g, v, r, LEAVES)


@pytest.mark.parametrize(("rule", "g_pos", "g_pairs"), [("mean", 1, 2), ("binarised", 2, 2)])
def test_role_data_counts_by_hand(tok, rule, g_pos, g_pairs):
    # positives: G 1 (raw) / 2 (binarised), V 4, R 11 of 27 leaves; pairs: G 2, V 2 + 2 (none under g3), R 10
    task = make_task(TASK)
    data = malt.role_data(tok, [_tree(task)], task.spec.instruction, rule)
    assert len(data["generator"].sft) == g_pos and len(data["generator"].pairs) == g_pairs
    assert len(data["verifier"].sft) == 4 and len(data["verifier"].pairs) == 4
    assert len(data["refiner"].sft) == 11 and len(data["refiner"].pairs) == 10
    # the first refiner pair: under (g1, v1) (texts g0, v00) leaves (1, 1, 0): chosen r000, rejected r002
    first = data["refiner"].pairs[0]
    assert tok.decode(first.chosen[:-1]) == "r000" and tok.decode(first.rejected[:-1]) == "r002"


def test_prompts_carry_the_earlier_roles_outputs():
    task = make_task(TASK)
    p = task.train[0]
    v = malt.verifier_messages(p, " 12 ")[-1]["content"]
    r = malt.refiner_messages(p, "12", "wrong", task.spec.instruction)[-1]["content"]
    assert p.question in v and "Proposed answer: 12" in v
    assert "Initial answer: 12" in r and "Critique: wrong" in r and task.spec.instruction in r


def test_expansion_shapes_and_chain_on_the_tiny_model(tok):
    task = make_task(TASK)
    model = wrap_adapters(tiny_llama(vocab_size=98, seed=0, init_std=0.2), {"r": 4, "alpha": 8}, list(malt.ROLES))
    mnt = {"generator": 4, "verifier": 4, "refiner": 4}
    trees = malt.expand(model, tok, task, task.train[:2], 3, mnt, seed=0)
    assert len(trees) == 2 and trees[0].reward.shape == (3, 3, 3)
    assert len(trees[0].v) == 3 and all(len(x) == 3 for x in trees[0].v) and len(trees[1].r[2][1]) == 3
    out = malt.run_chain(model, tok, task, task.eval[:2], {r: None for r in malt.ROLES}, mnt)
    assert set(out) == set(malt.ROLES) and len(out["refiner"]) == 2
    same = malt.run_chain(model, tok, task, task.eval[:2], {r: r for r in malt.ROLES}, mnt)
    assert same == out  # untrained adapters (B = 0) are the base model in every role


def test_a_tree_without_a_right_leaf_leaves_every_role_without_positives(tok):
    task = make_task(TASK)
    tree = _tree(task)
    tree.reward = np.zeros((3, 3, 3))
    data = malt.role_data(tok, [tree], task.spec.instruction)
    reasons = malt.degenerate(data, ["verifier", "refiner"])
    assert [r.split(":")[0] for r in reasons] == ["generator", "verifier", "refiner", "verifier", "refiner"]
    assert "no positive example" in reasons[0] and "no DPO pair" in reasons[3]
    # the hand-worked tree has positives and pairs for every role: usable
    assert malt.degenerate(malt.role_data(tok, [_tree(task)], task.spec.instruction), ["verifier", "refiner"]) == []
