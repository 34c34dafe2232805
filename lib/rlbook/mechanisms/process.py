"""Process rewards on steps a program can check: the step layout of a batch, step rewards from the chain_sum
oracle and from a line-validity checker, and the audit of each method's step-level credit against the oracle.

Every step-level mechanism shares one segmentation (:func:`rlbook.mechanisms.steps.segment`: a step is a non-empty line)
mapped onto the completion's tokens by :func:`row_layout`:

* step ``k`` owns the tokens from its line's first token up to the token before the next step's first token,
  so the newline that closes a line belongs to it, and the last step runs through the end of the completion
  (EOS included); tokens before the first line belong to the first step;
* a step's *end* (its reward position, the separator token as in PURE, where PRIME's Q-value of a step is read)
  is its last token;
* a completion with no non-empty line is one step over all its tokens (kind ``"text"``).

Context the estimators can name (``rlbook.mechanisms.estimators.CONTEXT_NAMES``): ``step_index`` ``[P, G, T]`` long (the
step of each completion token, -1 on padding; a trainer provider), and, written by the phases here and in
``rlbook.mechanisms.prm`` / ``rlbook.mechanisms.credit``, ``step_rewards`` ``[P, G, K]`` with ``step_mask`` ``[P, G, K]`` and
``token_rewards`` ``[P, G, T]`` (each step's reward placed on its end token).

Phases (``rlbook.mechanisms.phases``):

* ``oracle_steps``: the exact process reward, +1 for a calc or answer line that is right, -1 for one that is
  wrong (``rlbook.mechanisms.steps.oracle_step_labels``: the i-th calc line must hold the i-th running partial sum; a calc
  line past the last partial sum is wrong, so repeating lines cannot pay), 0 for prose: the upper reference;
* ``line_validity``: an imperfect process reward that checks each line's arithmetic on its own
  (``a op b = c`` with ``c == a op b``), not whether it is the step the problem needs: repeating valid lines
  pays under a sum of step rewards (the reward hacking that Min-Form and Clip/Delta guard against);
* ``credit_audit`` (after the update): how each method's step-level credit (its advantage averaged over a
  step's tokens) ranks oracle-right steps above oracle-wrong ones, plus the line-format regime numbers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from rlbook.core.errors import ParamError
from rlbook.mechanisms import phases, steps
from rlbook.mechanisms.estimators._util import grpo_advantage
from rlbook.policy.rollout import Batch, logprobs_no_grad

LABELS = ("absolute", "prefix")
_CALC = re.compile(r"(-?\d+)\s*([+\-*])\s*(-?\d+)\s*=\s*(-?\d+)")


# ------------------------------------------------------------------------------------------- layout


@dataclass
class StepLayout:
    """The steps of every completion of a batch (rows prompt-major, ``B = P * G``)."""

    index: Tensor  # [B, T] long: step of each completion token, -1 on padding
    ends: list[list[int]]  # per row: the token position of each step's end (its last token)
    steps: list[list[steps.Step]]  # per row: the steps (rlbook.mechanisms.steps.Step), in order
    G: int

    @property
    def K(self) -> int:
        """The largest number of steps in a completion (at least 1)."""
        return max([1, *(len(e) for e in self.ends)])

    def step_mask(self) -> Tensor:
        """``[P, G, K]`` bool: step ``k`` exists in that completion."""
        mask = torch.zeros(len(self.ends), self.K, dtype=torch.bool)
        for b, e in enumerate(self.ends):
            mask[b, : len(e)] = True
        return mask.view(-1, self.G, self.K)

    def place(self, step_values: Tensor) -> Tensor:
        """``[P, G, T]``: each step's value (``step_values`` ``[P, G, K]``) on its end token, 0 elsewhere."""
        flat = step_values.reshape(len(self.ends), -1)
        out = torch.zeros(self.index.shape, dtype=flat.dtype)
        for b, e in enumerate(self.ends):
            for k, t in enumerate(e):
                out[b, t] = flat[b, k]
        return out.view(-1, self.G, self.index.shape[1])


def row_layout(starts: list[int], length: int, width: int) -> tuple[list[int], list[int], list[int]]:
    """Token ownership of one completion: ``starts`` = first token of each step (increasing), ``length`` = the
    completion's tokens (through EOS), ``width`` = the padded width.  Returns (the step of each of the ``width``
    tokens, -1 past ``length``; each kept step's end token; the indices of the kept steps in ``starts``).  The
    first step starts at token 0; a step without a token of its own is merged into the one before it; no step
    at all makes one step over every token."""
    if length <= 0:
        return [-1] * width, [], []
    kept: list[int] = []
    first: list[int] = []
    for i, s in enumerate(starts):
        s = 0 if not kept else s
        if s < length and (not kept or s > kept[-1]):
            kept.append(s)
            first.append(i)
    if not kept:
        kept, first = [0], []
    index = [-1] * width
    ends = []
    for k, s in enumerate(kept):
        stop = kept[k + 1] if k + 1 < len(kept) else length
        index[s:stop] = [k] * (stop - s)
        ends.append(stop - 1)
    return index, ends, first


def layout(tok: Any, texts: list[str], completion_ids: Tensor, lengths: Tensor, G: int) -> StepLayout:
    """The :class:`StepLayout` of completions ``texts`` (token ids ``completion_ids`` ``[B, T]``)."""
    B, T = completion_ids.shape
    index = torch.full((B, T), -1, dtype=torch.long)
    all_ends, all_steps = [], []
    for b in range(B):
        n = int(lengths[b])
        offsets = steps.token_offsets(tok, completion_ids[b, :n].tolist())
        found = [s for s in steps.segment(texts[b], offsets) if s.token_start is not None]
        idx, ends, kept = row_layout([s.token_start for s in found], n, T)  # type: ignore[misc]
        row_steps = [found[i] for i in kept] or [steps.Step(text=texts[b].strip(), start=0, end=len(texts[b]),
                                                            kind="text", value=None)]
        index[b] = torch.tensor(idx, dtype=torch.long)
        all_ends.append(ends)
        all_steps.append(row_steps[: len(ends)])
    return StepLayout(index, all_ends, all_steps, G)


def batch_layout(trainer: Any, batch: Batch) -> StepLayout:
    """The batch's :class:`StepLayout`, computed once per step and kept in ``batch.context``."""
    if "step_layout" not in batch.context:
        roll = batch.roll
        batch.context["step_layout"] = layout(trainer.tok, roll.texts, roll.completion_ids, roll.lengths, batch.G)
    return batch.context["step_layout"]


def old_logp(trainer: Any, batch: Batch) -> Tensor:
    """Provider ``old_logp``: ``[P, G, T]``, the log-prob of each sampled token under the sampling distribution (the
    sampler's own, or one policy pass without a gradient when the backend did not return them); 0 on padding."""
    roll = batch.roll
    if roll.logp is not None:
        return (roll.logp * roll.completion_mask).view(batch.P, batch.G, -1)
    rows = list(range(batch.P * batch.G))
    got = logprobs_no_grad(trainer.model, trainer.cfg, roll, rows, False, trainer.whole_groups)
    out = torch.zeros(roll.completion_mask.shape)
    for r, lp in got.items():
        out[r, : lp.numel()] = lp.float().cpu()
    return (out * roll.completion_mask).view(batch.P, batch.G, -1)


def step_index(trainer: Any, batch: Batch) -> Tensor:
    """Provider ``step_index``: ``[P, G, T]`` long, the step of each completion token (-1 on padding)."""
    lay = batch_layout(trainer, batch)
    return lay.index.view(batch.P, batch.G, -1)


# ----------------------------------------------------------------------------------- oracle labels


def oracle_labels(batch: Batch, lay: StepLayout, which: str = "absolute") -> list[list[bool | None]]:
    """Per row and step of ``lay``: the oracle verdict of a calc or answer line (None for prose).

    ``absolute``: the line's value is the right running partial sum (``rlbook.mechanisms.steps.oracle_step_labels``);
    ``prefix``: it and every checkable line before it are right."""
    if which not in LABELS:
        raise ParamError(f"labels={which!r} is not allowed; allowed: {', '.join(LABELS)}")
    out = []
    for b, row_steps in enumerate(lay.steps):
        problem = batch.problems[b // lay.G]
        text = batch.roll.texts[b]
        by_span = {(s.start, s.end): lab for s, lab in zip(steps.segment(text), steps.oracle_step_labels(problem, text),
                                                             strict=True)}
        labels: list[bool | None] = []
        ok = True
        for s in row_steps:
            if s.kind == "text":
                labels.append(None)
                continue
            lab = bool(by_span.get((s.start, s.end), False))
            ok = ok and lab
            labels.append(ok if which == "prefix" else lab)
        out.append(labels)
    return out


def has_oracle(batch: Batch) -> bool:
    """The batch's problems come from a source with a step oracle (``rlbook.mechanisms.steps.SUPPORTED``)."""
    return all((p.meta or {}).get("source") in steps.SUPPORTED for p in batch.problems)


def auc(scores: list[float] | np.ndarray, labels: list[bool] | np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for ``labels`` (Mann-Whitney, ties count one half); NaN when one
    class is missing.  Example: scores [0.9, 0.1, 0.5], labels [T, F, F] -> 1.0; scores [1, 1], labels [T, F]
    -> 0.5."""
    s, y = np.asarray(scores, dtype=float), np.asarray(labels, dtype=bool)
    pos, neg = s[y], s[~y]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))


def pair_accuracy(credit: list[list[float]], labels: list[list[bool | None]]) -> float:
    """Within each completion, over pairs (oracle-right step, oracle-wrong step): the share in which the right
    step gets more credit (ties one half); NaN without such a pair.  Outcome-only credit (the same advantage on
    every token of a completion) scores exactly 0.5: credit assignment inside a completion starts above it."""
    wins, n = 0.0, 0
    for c_row, l_row in zip(credit, labels, strict=True):
        right = [c for c, lab in zip(c_row, l_row, strict=True) if lab is True]
        wrong = [c for c, lab in zip(c_row, l_row, strict=True) if lab is False]
        for r in right:
            for w in wrong:
                wins += 1.0 if r > w else 0.5 if r == w else 0.0
                n += 1
    return wins / n if n else float("nan")


def step_credit(advantages: Tensor, lay: StepLayout) -> list[list[float]]:
    """Per row and step: the mean advantage over the step's tokens (a ``[P, G]`` advantage is the same on all)."""
    B = len(lay.ends)
    adv = advantages.reshape(B, -1).float()
    out = []
    for b in range(B):
        row = []
        for k in range(len(lay.ends[b])):
            if adv.shape[1] == 1:
                row.append(float(adv[b, 0]))
            else:
                sel = lay.index[b, : adv.shape[1]] == k
                row.append(float(adv[b, : sel.numel()][sel].mean()) if bool(sel.any()) else 0.0)
        out.append(row)
    return out


# ------------------------------------------------------------------------------------ step rewards


def write_step_rewards(batch: Batch, lay: StepLayout, values: list[list[float]]) -> Tensor:
    """Store per-step rewards: ``step_rewards`` / ``step_mask`` ``[P, G, K]`` and ``token_rewards`` ``[P, G, T]``
    (each on its step's end token) in ``batch.context``; returns ``step_rewards``."""
    flat = torch.zeros(len(lay.ends), lay.K)
    for b, row in enumerate(values):
        flat[b, : len(row)] = torch.tensor(row, dtype=torch.float32)
    sr = flat.view(batch.P, batch.G, lay.K)
    batch.context.update(step_rewards=sr, step_mask=lay.step_mask(), token_rewards=lay.place(sr))
    return sr


def line_is_valid(text: str) -> bool | None:
    """Whether a line ``a op b = c`` holds (``c == a op b``); None for a line without such a claim."""
    m = _CALC.search(text)
    if m is None:
        return None
    a, op, b, c = int(m.group(1)), m.group(2), int(m.group(3)), int(m.group(4))
    return c == (a + b if op == "+" else a - b if op == "-" else a * b)


@phases.register("oracle_steps", at="before_advantages")
class OracleSteps(phases.Phase):
    """The exact process reward on chain_sum: ``right`` for a right calc or answer line, ``wrong`` for a wrong one,
    ``other`` for prose (``labels``: ``absolute`` or ``prefix``, see :func:`oracle_labels`).  Our design (no paper
    has an exact step oracle); the upper reference for every learned or estimated process reward."""

    def __init__(self, trainer: Any, *, right: float = 1.0, wrong: float = -1.0, other: float = 0.0,
                 labels: str = "absolute"):
        if labels not in LABELS:
            raise ParamError(f"oracle_steps: labels={labels!r} is not allowed; allowed: {', '.join(LABELS)}")
        self.right, self.wrong, self.other, self.labels = right, wrong, other, labels

    def run(self, trainer: Any, batch: Batch) -> dict[str, float]:
        lay = batch_layout(trainer, batch)
        labels = oracle_labels(batch, lay, self.labels)
        values = [[self.other if lab is None else self.right if lab else self.wrong for lab in row] for row in labels]
        write_step_rewards(batch, lay, values)
        checked = [lab for row in labels for lab in row if lab is not None]
        return {"oracle_step_acc": float(np.mean(checked)) if checked else float("nan")}


@phases.register("line_validity", at="before_advantages")
class LineValidity(phases.Phase):
    """An imperfect, hackable process reward: ``valid`` for a line ``a op b = c`` whose arithmetic holds, ``invalid``
    for one whose does not, ``other`` for any other line.  It judges each line alone (is the arithmetic right?),
    not whether the line is the step the problem needs, like a step verifier that never sees the whole
    solution: a completion that repeats valid lines collects more reward under a sum over steps."""

    def __init__(self, trainer: Any, *, valid: float = 1.0, invalid: float = -1.0, other: float = 0.0):
        self.valid, self.invalid, self.other = valid, invalid, other

    def run(self, trainer: Any, batch: Batch) -> dict[str, float]:
        lay = batch_layout(trainer, batch)
        verdicts = [[line_is_valid(s.text) for s in row] for row in lay.steps]
        values = [[self.other if v is None else self.valid if v else self.invalid for v in row] for row in verdicts]
        write_step_rewards(batch, lay, values)
        flat = [v for row in verdicts for v in row if v is not None]
        return {"valid_line_share": float(np.mean(flat)) if flat else float("nan"),
                "valid_lines": float(np.mean([sum(v is True for v in row) for row in verdicts]))}


# ------------------------------------------------------------------------------------------- audit


def format_stats(lay: StepLayout) -> dict[str, float]:
    """Regime numbers of the line format: share of completions with >= 2 calc lines, calc lines per completion,
    repeated identical lines per completion."""
    calc = [sum(s.kind == "calc" for s in row) for row in lay.steps]
    repeats = [len(row) - len({s.text for s in row}) for row in lay.steps]
    return {"format_share": float(np.mean([c >= 2 for c in calc])), "calc_lines": float(np.mean(calc)),
            "repeated_lines": float(np.mean(repeats))}


def outcome_credit(batch: Batch) -> Tensor:
    """Outcome-only credit of each completion, ``[P, G]``: GRPO's advantage of its reward (group mean and std over
    the filled slots), the same on every line of the completion.  The paired reference of :func:`audit`."""
    return grpo_advantage(batch.rewards.float(), sample_mask=batch.sample_mask)


def audit(batch: Batch, lay: StepLayout, advantages: Tensor, which: str = "absolute") -> dict[str, float]:
    """Step-level credit against the oracle on the calc lines of a batch: ``credit_auc`` (AUC of the step credit
    for right vs wrong lines over the batch), ``outcome_credit_auc`` (the same AUC, on the same lines, of
    outcome-only credit, :func:`outcome_credit`: the reference a method's credit is paired with; it is not a
    constant, since completions with a right outcome hold more right lines), ``credit_pair_acc``
    (:func:`pair_accuracy`, inside completions: outcome-only credit scores exactly 0.5 there, so it is a
    description, not a comparison), ``process_auc`` (AUC of ``step_rewards`` when a process reward wrote them),
    and :func:`format_stats`."""
    labels = oracle_labels(batch, lay, which)
    calc = [[lab if s.kind == "calc" else None for s, lab in zip(row, lab_row, strict=True)]
            for row, lab_row in zip(lay.steps, labels, strict=True)]
    credit = step_credit(advantages, lay)
    outcome = step_credit(outcome_credit(batch), lay)
    flat = [(c, o, lab) for c_row, o_row, l_row in zip(credit, outcome, calc, strict=True)
            for c, o, lab in zip(c_row, o_row, l_row, strict=True) if lab is not None]
    right = [lab for *_, lab in flat]
    out = {"credit_auc": auc([c for c, *_ in flat], right) if flat else float("nan"),
           "outcome_credit_auc": auc([o for _, o, _ in flat], right) if flat else float("nan"),
           "credit_pair_acc": pair_accuracy(credit, calc), "oracle_step_share": float(np.mean(right))
           if flat else float("nan"), **format_stats(lay)}
    sr = batch.context.get("step_rewards")
    if sr is not None:
        rows = sr.reshape(len(lay.ends), -1)
        pr = [(float(rows[b, k]), lab) for b, l_row in enumerate(calc) for k, lab in enumerate(l_row) if lab is not None]
        out["process_auc"] = auc([p for p, _ in pr], [lab for _, lab in pr]) if pr else float("nan")
    return out


@phases.register("credit_audit", at="after_update")
class CreditAudit(phases.Phase):
    """Measures (never changes) the step's credit assignment against the chain_sum oracle: :func:`audit`."""

    def __init__(self, trainer: Any, *, labels: str = "absolute"):
        if labels not in LABELS:
            raise ParamError(f"credit_audit: labels={labels!r} is not allowed; allowed: {', '.join(LABELS)}")
        self.labels = labels

    def run(self, trainer: Any, batch: Batch) -> dict[str, float]:
        if batch.advantages is None or not has_oracle(batch):
            return {}
        return audit(batch, batch_layout(trainer, batch), batch.advantages, self.labels)
