"""SPO-tree's rollout tree: each prompt's completions grown as a tree of fixed-length segments, the value of every
node the mean of its children's values, and each segment (edge) trained once with the value difference across it.

Source: Guo et al., "Segment Policy Optimization: Effective Segment-Level Credit Assignment in RL for Large
Language Models" (2025); code: AIFrameResearch/SPO (commit b9fc6a2):

* ``inference_strategies/hybrid_inference_strategy.py::_construct_tree``: from the root (the prompt) each node at
  depth d < ``max_depth`` gets ``branch_factors[d]`` children, samples of at most ``M`` tokens from the node's
  text (the last level, d = max_depth - 1, without a token limit); a child that stopped (``finish_reason !=
  "length"``) is a leaf with the reward of its full text, a truncated one is expanded further; a node reached at
  ``max_depth`` is a leaf scored as it is; an inner node's ``reward`` is ``np.mean`` of its children's;
* ``episode_generators/tree_episode_generator.py::extract_edges_from_tree`` (``adv_method="rloo"``,
  ``only_adv_greater_than_zero=True``, the defaults of ``hybrid_episode_generator.py``): every non-root node is
  one training episode (query = the parent's text, response = the node's segment) with advantage
  ``child.reward - parent.reward`` on each of its tokens; an edge whose advantage (and prover advantage) is 0 is
  dropped;
* ``configs/polIter_rho1bSft2_spo_tree_GSM8K.jsonnet``: ``max_depth`` 3, branch factors 6-6-6, ``M`` 30, on top of
  the SPO-chain config (``trainers/ppo_trainer.py``: advantages whitened over response tokens with p < 0.9,
  ``use_prob_mask``; :func:`rlbook.mechanisms.estimators.process.spo_tree`).

Here the tree holds one group: the trainer samples ``branch_factors[0]`` full completions per prompt
(``train.rollouts_per_prompt``), and each of them is also the first path of every subtree it passes through: a
completion cut into segments of ``segment`` tokens is a sample of the first segment followed by a sample of the
rest given it, so the phase only generates the other ``branch_factors[d] - 1`` children of each inner node,
each with the rest of the generation budget (its first segment is the child, its continuation the first path
below it).  Every completion (leaf path) fills one slot of the group (``train.group_size`` >= the product of
the branch factors); a segment is trained in the row of the completion that generated it only
(``loss_token_mask``), so each edge counts once, as in the code.

Differences: a completion cut by ``max_new_tokens`` is a leaf scored on its text (the code: a node truncated at
the model's context is scored by the reward function, which gives an unfinished answer 0); the code's
on-policy replay buffer (edges kept up to 8 iterations, at most 32 edges per question per iteration) is not
kept: every edge of this step's trees is trained in this step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from rlbook.core.errors import ParamError
from rlbook.mechanisms import phases
from rlbook.policy.rollout import Batch, rollout_from_ids


@dataclass(eq=False)
class Node:
    """A node of a prompt's tree: the segment ``[start, end)`` of the completion ``owner`` generated (the root:
    the prompt alone, depth 0)."""

    depth: int
    owner: int
    start: int
    end: int
    parent: Node | None = None
    children: list[Node] = field(default_factory=list)
    leaf_of: int | None = None  # the completion that ends at this node
    value: float = float("nan")


def grow(parent: Node, sample: int, length: int, segment: int, max_depth: int) -> list[Node]:
    """The nodes completion ``sample`` (``length`` tokens, its first ``parent.depth * segment`` shared with the
    parent's path) adds below ``parent``: one per segment, the last (its leaf) at ``max_depth`` or where it ends."""
    made = []
    d = parent.depth + 1
    while True:
        leaf = d == max_depth or length <= d * segment
        node = Node(d, sample, (d - 1) * segment, length if leaf else d * segment, parent)
        parent.children.append(node)
        made.append(node)
        if leaf:
            node.leaf_of = sample
            return made
        parent, d = node, d + 1


def set_values(node: Node, rewards: list[float]) -> float:
    """V(leaf) = its completion's reward; V(inner node) = the mean of its children's values (``np.mean``)."""
    if node.leaf_of is not None:
        node.value = float(rewards[node.leaf_of])
    else:
        node.value = float(np.mean([set_values(c, rewards) for c in node.children]))
    return node.value


def path(leaf: Node) -> list[Node]:
    """The nodes from depth 1 down to ``leaf``."""
    out = []
    while leaf.parent is not None:
        out.append(leaf)
        leaf = leaf.parent
    return out[::-1]


def row_signals(leaf: Node, width: int) -> tuple[Tensor, Tensor]:
    """For the completion ending at ``leaf``: ``[width]`` values (V(node) at the last token of every segment, NaN
    elsewhere) and ``[width]`` 0/1 ``edges``: 1 on the segments this completion generated whose advantage
    V(node) - V(parent) is not 0 (the edges it trains)."""
    values = torch.full((width,), float("nan"))
    edges = torch.zeros(width)
    for node in path(leaf):
        if node.end <= node.start:  # an empty completion
            continue
        values[node.end - 1] = node.value
        if node.owner == leaf.leaf_of and node.value != node.parent.value:  # type: ignore[union-attr]
            edges[node.start : node.end] = 1.0
    return values, edges


@phases.register("spo_tree", at="before_advantages")
class SPOTree(phases.Phase):
    """Grows each group's completions into SPO-tree's segment tree (see the module docstring); writes
    ``token_values``, ``prompt_values`` (V of the root) and ``tree_edges`` for :func:`rlbook.mechanisms.estimators.process.
    spo_tree`, and leaves every segment a completion did not generate out of the loss (``loss_token_mask``)."""

    def __init__(self, trainer: Any, *, branch_factors: tuple[int, ...] | list[int] = (2, 2, 2), segment: int = 10):
        bf = [int(b) for b in branch_factors]
        if not bf or any(b < 1 for b in bf) or segment < 1:
            raise ParamError(f"spo_tree needs branch_factors >= 1 and segment >= 1; got {branch_factors}, {segment}")
        cfg = trainer.cfg
        if (cfg.rollouts_per_prompt or cfg.group_size) != bf[0] or cfg.group_size < int(np.prod(bf)):
            raise ParamError(f"spo_tree with branch_factors {bf} needs train.rollouts_per_prompt = {bf[0]} and "
                             f"train.group_size >= {int(np.prod(bf))}; got {cfg.rollouts_per_prompt} and {cfg.group_size}")
        self.bf, self.segment = bf, segment

    def run(self, trainer: Any, batch: Batch) -> dict[str, float]:
        D, M = len(self.bf), self.segment
        roll, G = batch.roll, batch.G
        filled = batch.sample_mask if batch.sample_mask is not None else torch.ones(batch.P, G, dtype=torch.bool)
        ids: list[list[int]] = []  # every completion of the step: the sampled ones, then the phase's
        where: list[tuple[int, int | None]] = []  # (prompt, slot or None until filled)
        roots = [Node(0, -1, 0, 0) for _ in range(batch.P)]
        leaves: list[Node] = []
        for j in range(batch.P):
            for g in filled[j].nonzero().flatten().tolist():
                n = int(roll.lengths[j * G + g])
                ids.append(roll.completion_ids[j * G + g, :n].tolist())
                where.append((j, g))
                leaves.append(grow(roots[j], len(ids) - 1, n, M, D)[-1])
        new_rows, finished, generated = [], [], 0
        for depth in range(1, D):
            todo = [(j, node) for j, r in enumerate(roots) for node in _at_depth(r, depth) if node.leaf_of is None]
            k = self.bf[depth] - 1
            if not todo or k < 1:
                continue
            prefixes = [ids[node.owner][: depth * M] for _, node in todo]
            out = trainer.generate([trainer.prompt_ids(batch.problems[j]) + p for (j, _), p in zip(todo, prefixes, strict=True)],
                                   trainer.cfg.max_new_tokens - depth * M, True, trainer.cfg.temperature, group_size=k)
            generated += int(out.lengths.sum())
            for i, (j, node) in enumerate(todo):
                for r in range(i * k, (i + 1) * k):
                    ids.append(prefixes[i] + out.completion_ids[r, : int(out.lengths[r])].tolist())
                    where.append((j, None))
                    new_rows.append(len(ids) - 1)
                    finished.append(bool(out.finished[r]) if out.finished is not None else True)
                    leaves.append(grow(node, len(ids) - 1, len(ids[-1]), M, D)[-1])
        self.fill(trainer, batch, ids, where, new_rows, finished)
        rewards = [float(batch.rewards[j, g]) for j, g in where]  # type: ignore[index]
        for r in roots:
            set_values(r, rewards)
        trainer.add_context(batch)  # the rows changed: token masks, ids and log-probs of the filled slots
        T = batch.roll.completion_ids.shape[1]
        values = torch.full((batch.P, G, T), float("nan"))
        edges = torch.zeros(batch.P, G, T)
        prompt_values = torch.full((batch.P, G), float("nan"))
        for s, leaf in enumerate(leaves):
            j, g = where[s]
            values[j, g], edges[j, g] = row_signals(leaf, T)  # type: ignore[index]
            prompt_values[j, g] = roots[j].value  # type: ignore[index]
        batch.context.update(token_values=values, prompt_values=prompt_values, tree_edges=edges)
        prev = batch.context.get("loss_token_mask")
        tm = edges.view(batch.P * G, T)
        batch.context["loss_token_mask"] = tm if prev is None else tm * prev
        batch.sampling["gen_tokens"] += generated
        batch.sampling["gen_rollouts"] += len(new_rows)
        inner = [n.value for r in roots for d in range(D) for n in _at_depth(r, d) if n.leaf_of is None]
        nodes = [n for r in roots for d in range(1, D + 1) for n in _at_depth(r, d)]
        return {"tree_leaves": len(leaves) / max(batch.P, 1),
                "tree_mixed": float(np.mean([0.0 < v < 1.0 for v in inner])) if inner else float("nan"),
                "tree_edge_frac": float(np.mean([n.value != n.parent.value for n in nodes])),  # type: ignore[union-attr]
                "tree_gen_tokens": float(generated)}

    def fill(self, trainer: Any, batch: Batch, ids: list[list[int]], where: list[tuple[int, int | None]],
             new_rows: list[int], finished: list[bool]) -> None:
        """Score the phase's completions and put them into their groups' free slots (prompt-major)."""
        if not new_rows:
            return
        order = sorted(range(len(new_rows)), key=lambda i: where[new_rows[i]][0])
        rows = [new_rows[i] for i in order]
        counts = [sum(1 for r in rows if where[r][0] == j) for j in range(batch.P)]
        texts = trainer.tok.batch_decode([ids[r] for r in rows], skip_special_tokens=True)
        grown = rollout_from_ids([trainer.prompt_ids(batch.problems[where[r][0]]) for r in rows], [ids[r] for r in rows],
                                 texts, [finished[i] for i in order], trainer.tok.pad_token_id)
        parts, correct = trainer.score(grown, batch.problems, batch.indices, counts)
        free = {j: (~batch.sample_mask[j]).nonzero().flatten().tolist() for j in range(batch.P)}  # type: ignore[index]
        slots = []
        for r in rows:
            j = where[r][0]
            g = free[j].pop(0)
            where[r] = (j, g)
            slots.append((j, g))
        batch.fill(slots, grown, parts, correct, trainer.tok.pad_token_id)
        for (j, g), value in zip(slots, (parts * trainer.reward_weights).sum(-1).tolist(), strict=True):
            batch.rewards[j, g] = value


def _at_depth(node: Node, depth: int) -> list[Node]:
    if node.depth == depth:
        return [node]
    return [n for c in node.children for n in _at_depth(c, depth)]
