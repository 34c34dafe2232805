"""Phases of the length family (registered in :data:`rlbook.mechanisms.phases.PHASES`): a scheduled generation limit
(SIRI), DECS's redundancy marks and data schedule, answers at truncation budgets (AnytimeReasoner) and at
step boundaries (VSRM).  The last two generate short greedy answers from prefixes of the sampled completions
(:func:`answers_after_prefixes`), so they cost extra generation; each reports its cost in the step metrics.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from rlbook.core.errors import ParamError
from rlbook.mechanisms import phases
from rlbook.mechanisms.length import text as T
from rlbook.mechanisms.steps import token_offsets
from rlbook.policy.rollout import Batch

CUE = "\nThe final answer is"  # appended to a cut completion to ask for its answer


def answers_after_prefixes(trainer: Any, batch: Batch, items: list[tuple[int, int]], cue: str = CUE,
                           max_tokens: int = 8) -> list[float]:
    """For each ``(row, cut)``: the prompt, the row's first ``cut`` completion tokens and ``cue``, answered
    greedily in at most ``max_tokens`` tokens; 1.0 when ``cue + answer`` verifies, else 0.0.  The answers' tokens
    are added to the step's ``extra_gen_tokens`` (``Trainer.generated_tokens``, ``train.gen_token_budget``)."""
    if not items:
        return []
    G = batch.G
    cue_ids = T.encode(trainer.tok, cue)
    prompts = [trainer.prompt_ids(batch.problems[row // G]) + batch.roll.completion_ids[row, :cut].tolist() + cue_ids
               for row, cut in items]
    roll = trainer.generate(prompts, max_tokens, do_sample=False)
    # the step's extra generation (rlbook.mechanisms.credit.add_generated's count): equal-token comparisons include it
    batch.sampling["extra_gen_tokens"] = batch.sampling.get("extra_gen_tokens", 0) + int(roll.lengths.sum())
    return [float(trainer.task.score(batch.problems[row // G], cue + text) >= 1.0)
            for (row, _), text in zip(items, roll.texts, strict=True)]


def _text_end(batch: Batch, row: int) -> int:
    """Tokens of the row's completion before its EOS (all of them when it was cut)."""
    n = int(batch.roll.lengths[row])
    done = batch.roll.finished is not None and bool(batch.roll.finished[row])
    return n - 1 if done else n


# ------------------------------------------------------------------------------------------------- SIRI


def schedule_limit(step: int, kind: str, high: int, low: int, period: int, start: str = "compress") -> int:
    """SIRI's rollout length limit at ``step`` (ASSUMED shapes; no public training code).

    ``cosine``: low + (high - low) (1 + cos(2 pi t / period)) / 2, starting at ``high`` (``start="expand"``) or
    half a period later, at ``low`` (``start="compress"``); ``stair``: ``low`` for the first half of each
    period and ``high`` for the second (``compress`` first), or the other way round.
    """
    if kind not in ("cosine", "stair") or start not in ("compress", "expand") or period < 2 or not 0 < low <= high:
        raise ParamError(f"length_schedule: kind={kind!r} (cosine, stair), start={start!r} (compress, expand), "
                         f"period={period} (>= 2), low={low}, high={high} (0 < low <= high)")
    shift = period / 2 if start == "compress" else 0.0
    if kind == "cosine":
        return round(low + (high - low) * (1 + math.cos(2 * math.pi * (step + shift) / period)) / 2)
    first_half = (step % period) < period / 2
    return low if first_half == (start == "compress") else high


@phases.register("length_schedule", at="after_update")
class LengthSchedule(phases.Phase):
    """SIRI: the generation limit alternates between compression (``low``) and expansion (``high``) phases.

    The trainer asks :meth:`generation_limit` before each rollout (``Trainer.generation_limit``); ``high``
    defaults to ``train.max_new_tokens``.  Reports ``gen_limit``, the limit the step just ran with.
    Source: Wen et al., "SIRI: Scaling Iterative Reinforcement Learning with Interleaved Compression" (2025):
    a cosine length scheduler (model cards THU-KEG/SIRI-*); period and levels here are scale choices.
    """

    def __init__(self, trainer: Any, *, kind: str = "cosine", low: int = 64, high: int | None = None,
                 period: int = 8, start: str = "compress"):
        self.kind, self.low, self.period, self.start = kind, int(low), int(period), start
        self.high = int(high if high is not None else trainer.cfg.max_new_tokens)
        if self.high > trainer.cfg.max_new_tokens:
            raise ParamError(f"length_schedule: high={self.high} exceeds train.max_new_tokens={trainer.cfg.max_new_tokens}")
        schedule_limit(0, kind, self.high, self.low, self.period, start)  # validates

    def limit(self, step: int) -> int:
        return schedule_limit(step, self.kind, self.high, self.low, self.period, self.start)

    def generation_limit(self, trainer: Any) -> int:
        return self.limit(trainer.step_count)

    def run(self, trainer: Any, batch: Batch) -> dict[str, float]:
        return {"gen_limit": float(self.limit(trainer.step_count - 1))}


# --------------------------------------------------------------------------------------- AnytimeReasoner


@phases.register("budget_answers", at="before_advantages")
class BudgetAnswers(phases.Phase):
    """AnytimeReasoner's dense rewards: the score of the answer each completion gives when cut at every budget.

    Budgets b_1 < ... < b_S (default: S = ``n_budgets`` equal steps up to ``train.max_new_tokens``).  A
    completion that ended (EOS) within b_s has already answered: its own verdict is the score.  Otherwise its
    first min(b_s, L) tokens, followed by ``cue``, are answered greedily (``answer_tokens`` at most) and that
    answer is verified.  Writes ``budget_scores`` ``[P, G, S]`` and ``budget_ends`` ``[S]`` for the ``brpo``
    estimator; reports the training accuracy at each budget and the extra answers generated.
    Source: Qi et al. (2025), code ``brpo.py::sample_partial_cot`` (the thinking cut at each budget, then
    "...</think>\\n\\n**Final Answer**" and ``n_summary`` sampled summaries).  Differences: one greedy answer
    per cut (the main results sample 4), our cue instead of ``</think>`` + "**Final Answer**", and a finished
    completion's own verdict instead of a fresh summary after its whole thinking.
    """

    def __init__(self, trainer: Any, *, budgets: list[int] | None = None, n_budgets: int = 4, cue: str = CUE,
                 answer_tokens: int = 8):
        mnt = trainer.cfg.max_new_tokens
        self.ends = sorted(int(b) for b in budgets) if budgets else [round(mnt * s / n_budgets) for s in
                                                                    range(1, n_budgets + 1)]
        if not self.ends or self.ends[0] < 1 or self.ends[-1] > mnt or len(set(self.ends)) != len(self.ends):
            raise ParamError(f"budget_answers: budgets={self.ends} must be distinct, >= 1 and <= max_new_tokens={mnt}")
        self.cue, self.answer_tokens = cue, int(answer_tokens)

    def run(self, trainer: Any, batch: Batch) -> dict[str, float]:
        P, G, S = batch.P, batch.G, len(self.ends)
        scores = torch.zeros(P * G, S)
        items, where = [], []
        for row in range(P * G):
            n, cut = int(batch.roll.lengths[row]), _text_end(batch, row)
            for s, b in enumerate(self.ends):
                if cut < n and n <= b:  # ended with EOS within the budget: its own answer
                    scores[row, s] = float(batch.correct.view(-1)[row])
                else:
                    items.append((row, min(b, cut)))
                    where.append((row, s))
        for (row, s), v in zip(where, answers_after_prefixes(trainer, batch, items, self.cue, self.answer_tokens),
                               strict=True):
            scores[row, s] = v
        batch.context["budget_scores"] = scores.view(P, G, S)
        batch.context["budget_ends"] = torch.tensor(self.ends)
        out = {f"acc@{b}": float(scores[:, s].mean()) for s, b in enumerate(self.ends)}
        out["budget_answers_generated"] = float(len(items))
        return out


# ----------------------------------------------------------------------------------------------- VSRM


def lookahead_rewards(gains: list[float], gamma: float = 0.7, window: int = 3) -> list[float]:
    """VSRM's step rewards from accuracy gains: r_k = d_k when d_k != 0, else gamma^j d_{k+j} for the first
    j in 1..window with d_{k+j} != 0 (0 when none).  ASSUMED form (the paper's lookahead, reconstructed)."""
    out = []
    for k, d in enumerate(gains):
        r = d
        if d == 0:
            for j in range(1, window + 1):
                if k + j < len(gains) and gains[k + j] != 0:
                    r = gamma**j * gains[k + j]
                    break
        out.append(r)
    return out


def step_cuts(text: str, offsets: list[tuple[int, int]], n_tokens: int, min_gap: int, max_steps: int) -> list[int]:
    """Token positions that end the first ``max_steps`` steps: the starts of the later chunks
    (:func:`rlbook.mechanisms.length.text.chunk_starts` with VSRM's words), at least ``min_gap`` tokens apart and before
    the last token."""
    cuts: list[int] = []
    for start in T.chunk_starts(text, T.VSRM_SPLIT_WORDS)[1:]:
        t = T.token_index_at(offsets, start)
        if (t - (cuts[-1] if cuts else 0)) >= min_gap and t < n_tokens:
            cuts.append(t)
        if len(cuts) == max_steps:
            break
    return cuts


@phases.register("step_answers", at="before_advantages")
class StepAnswers(phases.Phase):
    """VSRM's verifiable stepwise rewards: the accuracy of the answer given after each step, and its gain.

    Each completion is cut into steps (:func:`step_cuts`); after step k its prefix plus ``cue`` is answered
    greedily and verified (acc_k; acc_0 from the prompt alone, once per prompt); the gain d_k = acc_k -
    acc_{k-1} becomes the step reward r_k (:func:`lookahead_rewards`) on the last token of step k.  Writes
    ``token_rewards`` ``[P, G, T]`` for the ``vsrm`` estimator.  ASSUMED (no public code; the paper's
    summaries): one greedy answer per prefix (the paper samples several), the lookahead's gamma and window,
    and our split rule.  Reports the steps per completion, the share of steps with a negative or zero gain,
    and the extra answers generated.
    """

    def __init__(self, trainer: Any, *, max_steps: int = 3, min_gap: int = 6, gamma: float = 0.7, window: int = 3,
                 cue: str = CUE, answer_tokens: int = 8):
        self.max_steps, self.min_gap, self.gamma, self.window = int(max_steps), int(min_gap), float(gamma), int(window)
        self.cue, self.answer_tokens = cue, int(answer_tokens)

    def run(self, trainer: Any, batch: Batch) -> dict[str, float]:
        P, G = batch.P, batch.G
        width = batch.roll.completion_ids.shape[1]
        cuts = {}
        for row in range(P * G):
            n = _text_end(batch, row)
            ids = batch.roll.completion_ids[row, :n].tolist()
            cuts[row] = step_cuts(batch.roll.texts[row], token_offsets(trainer.tok, ids), n, self.min_gap, self.max_steps)
        items = [(j * G, 0) for j in range(P)] + [(row, t) for row in range(P * G) for t in cuts[row]]
        acc = iter(answers_after_prefixes(trainer, batch, items, self.cue, self.answer_tokens))
        acc0 = [next(acc) for _ in range(P)]
        rewards = torch.zeros(P * G, width)
        gains_all: list[float] = []
        for row in range(P * G):
            accs = [acc0[row // G]] + [next(acc) for _ in cuts[row]]
            gains = [b - a for a, b in zip(accs[:-1], accs[1:], strict=True)]
            gains_all += gains
            for t, r in zip(cuts[row], lookahead_rewards(gains, self.gamma, self.window), strict=True):
                rewards[row, t - 1] += r
        batch.context["token_rewards"] = rewards.view(P, G, width)
        n = max(len(gains_all), 1)
        return {"vsrm_steps": len(gains_all) / (P * G), "vsrm_negative_gain_frac": sum(g < 0 for g in gains_all) / n,
                "vsrm_zero_gain_frac": sum(g == 0 for g in gains_all) / n, "vsrm_answers_generated": float(len(items))}
