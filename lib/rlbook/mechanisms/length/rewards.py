"""Length rewards of the efficient-reasoning papers (registered in :data:`rlbook.mechanisms.rewards.REWARDS`).

Convention: where a paper's reward is correctness plus (or times) a length term, the function returns the
*term* r_paper - c (c = 1 for a correct answer, else 0), so a preset lists ``[correct, <term>]`` with weight 1
each and the step's ``reward_<name>`` column shows how much the term moved the reward.  ``cosine`` and
``budget_curriculum`` return the paper's whole reward (they do not decompose into c plus a term); use them
alone.  ``lengths`` count completion tokens through EOS; ``finished`` says the completion ended with EOS
within the generation limit (else it was cut).
"""

from __future__ import annotations

import math
from typing import Any

from rlbook.core.errors import ParamError
from rlbook.data.tasks import Problem, Task, extract_answer
from rlbook.mechanisms.length import text as T
from rlbook.mechanisms.rewards import register


def _groups(n: int, group_size: int) -> list[range]:
    if group_size < 1 or n % group_size:
        raise ParamError(f"{n} completions do not split into groups of group_size={group_size}")
    return [range(i, i + group_size) for i in range(0, n, group_size)]


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


# ----------------------------------------------------------------------------------------------- DLER


@register("dler")
def dler(completions: list[str], problems: list[Problem], *, correct: list[bool], finished: list[bool],
         stop_coef: float = 0.1) -> list[float]:
    """DLER's truncation reward: a correct answer that was cut by the generation limit keeps ``stop_coef``.

    r = c * (s + (1 - s) * stop_coef), s = 1 when the completion ended with EOS; returned as the term
    r - c = -(1 - stop_coef) * c * (1 - s).  The truncation itself is the generation limit (the preset's
    ``max_new_tokens``): what passes the limit is cut and scored as cut, as in the code.
    Source: Liu et al., "DLER: Doing Length pEnalty Right" (2025); code github.com/NVlabs/DLER (commit ea7d4f7)
    ``verl-dler/verl/workers/reward_manager/dapo.py::DAPORewardManager._apply_stop_properly_penalty`` with
    ``stop_properly_penalty.penalty_coef = 0.1`` (recipe/dapo/config/dapo_trainer.yaml), 0/1 correctness
    (``deepscaler_reward_fn``).  Same as the code.
    """
    if not 0.0 <= stop_coef <= 1.0:
        raise ParamError(f"dler: stop_coef={stop_coef!r} must be in [0, 1]")
    return [-(1.0 - stop_coef) * float(c) * (0.0 if s else 1.0) for c, s in zip(correct, finished, strict=True)]


@register("dler_da")
def dler_da(completions: list[str], problems: list[Problem], *, task: Task, correct: list[bool],
            finished: list[bool], lengths: list[int], group_size: int, max_new_tokens: int, tokenizer: Any,
            stop_coef: float = 0.1, gamma: float = 0.5, min_len: int = 8) -> list[float]:
    """Difficulty-Aware DLER (ASSUMED form: no public code): a tighter truncation for easier prompts.

    Group g's truncation length L_g = max(min_len, round(L * (1 - gamma * p_g))), p_g = the group's share
    correct, L = the generation limit.  A completion longer than L_g is scored as if generation had been cut
    there (its first L_g tokens decoded and verified, times ``stop_coef``: DLER's rule for a cut answer);
    the others as :func:`dler`.  Returned as the term r - c.  The paper says only that DA-DLER "adaptively
    tightens truncation on easier questions"; the linear rule, gamma and the prefix scoring are ours.
    Difference from a true per-prompt generation cap: the tokens past L_g are generated and trained on.
    """
    if not 0.0 <= gamma <= 1.0:
        raise ParamError(f"dler_da: gamma={gamma!r} must be in [0, 1]")
    out = dler(completions, problems, correct=correct, finished=finished, stop_coef=stop_coef)
    for grp in _groups(len(completions), group_size):
        p_g = sum(correct[i] for i in grp) / len(grp)
        cap = max(min_len, round(max_new_tokens * (1.0 - gamma * p_g)))
        for i in grp:
            if lengths[i] > cap:
                cut = tokenizer.decode(T.encode(tokenizer, completions[i])[:cap], skip_special_tokens=True)
                out[i] = stop_coef * float(task.score(problems[i], cut) >= 1.0) - float(correct[i])
    return out


# ----------------------------------------------------------------------------------------------- HAPO


class LengthHistory:
    """HAPO's per-prompt history: the shortest (mode ``min``) or mean (``mean``) length of earlier correct
    answers, by dataset index (the code's ``lens_dict`` / ``count_dict``); checkpointed with the trainer."""

    def __init__(self) -> None:
        self.h: dict[int, float] = {}
        self.n: dict[int, int] = {}

    def update(self, pid: int, correct_lengths: list[int], mode: str) -> None:
        if not correct_lengths:
            return
        if mode == "min":
            self.h[pid] = float(min([*correct_lengths, self.h.get(pid, math.inf)]))
        else:  # running mean over every correct length seen (the code's count-weighted update)
            old = self.n.get(pid, 0)
            mean = sum(correct_lengths) / len(correct_lengths)
            ratio = len(correct_lengths) / (old + len(correct_lengths))
            self.h[pid] = mean if old == 0 else ratio * mean + (1 - ratio) * self.h[pid]
        self.n[pid] = self.n.get(pid, 0) + len(correct_lengths)

    def state_dict(self) -> dict[str, Any]:
        return {"h": {int(k): float(v) for k, v in self.h.items()}, "n": {int(k): int(v) for k, v in self.n.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.h = {int(k): float(v) for k, v in state["h"].items()}
        self.n = {int(k): int(v) for k, v in state["n"].items()}


def hapo_length_reward(length: int, is_correct: bool, history: float | None, kind: str = "cosine",
                       tolerance: float = 0.1) -> float:
    """HAPO's length reward of one completion against its prompt's history h (0 without history).

    cosine: x = cos(pi/2 * L/h) if L < 2h else -1; correct: max(-0.7, x); wrong: min(0, x).
    linear: correct: 1 - L/h if L < h, 0 if L < (1 + tol) h, else max(-0.7, -(L - (1 + tol) h)/h);
    wrong: 0 if L < (1 + tol) h, else max(-1, -(L - (1 + tol) h)/h).
    Source: HAPO ``utils.py::compute_len_reward`` / ``compute_len_reward_linear`` (github.com/HCY123902/HAPO,
    commit c91ae3b).
    """
    if history is None or history <= 0:
        return 0.0
    if kind == "cosine":
        x = math.cos(length / history * math.pi / 2) if length < 2 * history else -1.0
        return max(-0.7, x) if is_correct else min(0.0, x)
    over = -(length - (1 + tolerance) * history) / history
    if is_correct:
        return 1.0 - length / history if length < history else 0.0 if length < (1 + tolerance) * history else max(-0.7, over)
    return 0.0 if length < (1 + tolerance) * history else max(-1.0, over)


@register("hapo", state=LengthHistory)
def hapo(completions: list[str], problems: list[Problem], *, correct: list[bool], lengths: list[int],
         prompt_ids: list[int], state: LengthHistory, w_lr: float = 1.0, kind: str = "cosine",
         mode: str = "min") -> list[float]:
    """HAPO's history-aware length reward: w_lr * r_len(L, h_prompt), added to correctness.

    Every completion of the batch is scored against the history *before* the batch; then each prompt with a
    correct completion updates its history (mode ``min``: h <- min(h, shortest correct length); ``mean``: the
    count-weighted running mean).  The combined reward c + w_lr * r_len keeps every correct answer above every
    wrong one for w_lr <= 1 (correct >= 1 - 0.7, wrong <= 0).
    Source: Huang, Zhang & Cardie, "HAPO: Training Language Models to Reason Concisely via History-Aware
    Policy Optimization" (2025); code github.com/HCY123902/HAPO (commit c91ae3b) ``grpo_trainer.py::
    combined_reward_func`` and ``HistroyTracker``, defaults of ``train_grpo.py`` (w_lr 1.0, cosine, min,
    repetition reward off).  Differences: L counts the sampled tokens through EOS (the code re-tokenizes the
    text without special tokens: one token fewer on a finished answer); one process (no all-gather of
    histories).
    """
    if kind not in ("cosine", "linear") or mode not in ("min", "mean"):
        raise ParamError(f"hapo: kind={kind!r} (cosine, linear), mode={mode!r} (min, mean)")
    out = [w_lr * hapo_length_reward(n, c, state.h.get(pid), kind)
           for n, c, pid in zip(lengths, correct, prompt_ids, strict=True)]
    seen: dict[int, list[int]] = {}
    for n, c, pid in zip(lengths, correct, prompt_ids, strict=True):
        seen.setdefault(pid, [])
        if c:
            seen[pid].append(n)
    for pid, lens in seen.items():
        state.update(pid, lens, mode)
    return out


# ------------------------------------------------------------------------------------ Kimi and GRPO-lambda


def kimi_terms(lengths: list[int], correct: list[bool]) -> list[float]:
    """Kimi k1.5's length reward within one group: lambda_i = 0.5 - (L_i - L_min) / (L_max - L_min); a correct
    answer gets lambda_i, a wrong one min(0, lambda_i); 0 for everyone when all lengths are equal.
    Source: Kimi Team, "Kimi k1.5: Scaling Reinforcement Learning with LLMs" (2025), Sec. 2.3.3."""
    lo, hi = min(lengths), max(lengths)
    if hi == lo:
        return [0.0] * len(lengths)
    lam = [0.5 - (n - lo) / (hi - lo) for n in lengths]
    return [x if c else min(0.0, x) for x, c in zip(lam, correct, strict=True)]


@register("kimi_length")
def kimi_length(completions: list[str], problems: list[Problem], *, correct: list[bool], lengths: list[int],
                group_size: int) -> list[float]:
    """The Kimi k1.5 group length reward on every group (:func:`kimi_terms`): the "GRPO + length penalty"
    that GRPO-lambda and other efficiency papers start from, added to correctness."""
    out: list[float] = []
    for grp in _groups(len(completions), group_size):
        out += kimi_terms([lengths[i] for i in grp], [correct[i] for i in grp])
    return out


@register("grpo_lambda")
def grpo_lambda(completions: list[str], problems: list[Problem], *, correct: list[bool], lengths: list[int],
                group_size: int, lam: float = 0.5) -> list[float]:
    """GRPO-lambda: the length-penalised reward only for the top-lambda groups of the batch by correctness,
    the plain 0/1 reward for the others.

    Groups are ranked by their share correct p_g (ties: batch order); the first ceil(lam * P) get the Kimi
    length term (:func:`kimi_terms`), the others 0.  ASSUMED (no public code; the paper's text beyond the
    abstract was not reachable): the Kimi form of the length penalty, lam = 0.5 by default, ties in batch
    order, and that a group with no correct answer never gets the term even when selected.
    Source: Dai, Liu & Si, "Stable Reinforcement Learning for Efficient Reasoning" (2025): switch between a
    length-penalised and a 0/1 reward by group correctness ("top-lambda selection", per the paper's summaries).
    """
    if not 0.0 < lam <= 1.0:
        raise ParamError(f"grpo_lambda: lam={lam!r} must be in (0, 1]")
    groups = _groups(len(completions), group_size)
    acc = [sum(correct[i] for i in g) / len(g) for g in groups]
    chosen = sorted(range(len(groups)), key=lambda j: -acc[j])[: math.ceil(lam * len(groups))]
    out = [0.0] * len(completions)
    for j in chosen:
        if acc[j] > 0:
            for i, v in zip(groups[j], kimi_terms([lengths[i] for i in groups[j]], [correct[i] for i in groups[j]]),
                            strict=True):
                out[i] = v
    return out


# ----------------------------------------------------------------------------------- conciseness reward


@register("conciseness_rm")
def conciseness_rm(completions: list[str], problems: list[Problem], *, correct: list[bool], lengths: list[int],
                   max_new_tokens: int, alpha: float = 1.0, scorer: str = "rule") -> list[float]:
    """Outcome-conditioned conciseness: r = c * (1 + alpha * s), s in [0, 1] the conciseness score.

    Returned as the term alpha * c * s: a wrong answer gets nothing for being short (the contrast with an
    additive length penalty, which pays short wrong answers).  Scorer ``rule``: s = 1 - min(L, L_max) / L_max
    (L_max = the generation limit); ``redundancy``: s = 1 - (tokens after the first statement of the answer)
    / L, estimated from characters.  ASSUMED: the paper trains an LLM conciseness reward model (CRM) and
    combines it through a "conciseness reward function" (CRF) whose form was not reachable (its code is at an
    anonymous link); at our scale the scorer is a rule, not a trained model.
    Source: Wang et al., "Efficient Reasoning via Reward Model" (2025).
    """
    if scorer not in ("rule", "redundancy"):
        raise ParamError(f"conciseness_rm: scorer={scorer!r} is not allowed; allowed: rule, redundancy")
    out = []
    for text, p, c, n in zip(completions, problems, correct, lengths, strict=True):
        if scorer == "rule":
            s = 1.0 - min(n, max_new_tokens) / max_new_tokens
        else:
            end = T.first_answer_end(text, p.answer)
            s = 1.0 if end is None or not text else end / len(text)
        out.append(alpha * float(c) * s)
    return out


# ------------------------------------------------------------------------------------ budget curriculum


def budget_at(step: int, b0: int, gamma: float = 0.5, interval: int = 10, b_min: int = 1, schedule: str = "exp",
              b_final: int | None = None, total_steps: int | None = None) -> int:
    """Train Long, Think Short's token budget at ``step``.

    ``exp``: B(t) = max(b_min, floor(b0 * gamma^floor(t / interval))) (the paper's schedule, b_min = 1 there);
    ``linear`` (ASSUMED form): from b0 down to b_final in equal drops every ``interval`` steps over
    ``total_steps``.
    """
    if schedule == "exp":
        return max(b_min, int(b0 * gamma ** (step // interval)))
    if schedule == "linear":
        if b_final is None or not total_steps:
            raise ParamError("budget_at: schedule='linear' needs b_final and total_steps")
        frac = min(1.0, (step // interval) * interval / max(total_steps - interval, 1))
        return max(b_min, round(b0 - (b0 - b_final) * frac))
    raise ParamError(f"budget_at: schedule={schedule!r} is not allowed; allowed: exp, linear")


@register("budget_curriculum")
def budget_curriculum(completions: list[str], problems: list[Problem], *, correct: list[bool], lengths: list[int],
                      step: int, total_steps: int, b0: int = 256, gamma: float = 0.5, interval: int = 10,
                      b_min: int = 1, schedule: str = "exp", b_final: int | None = None, w_correct: float = 1.0,
                      w_length: float = 0.5, w_format: float = 0.2, gate_on_correct: bool = False) -> list[float]:
    """Train Long, Think Short: correctness + length efficiency against a shrinking budget + format (whole reward).

    r = w_c * c + w_len * l + w_fmt * f, with B = :func:`budget_at` (step), l = 1 if L <= B else
    max(0, 1 - (L - B) / B), f = 1 when the completion states its final answer ("answer: N", "the answer is N").
    ASSUMED (the code, github.com/hammoudhasan/curriculum_grpo, is not reachable here): the shape of l, the
    weights, and f (the paper rewards <think>/<answer> tags; our tasks ask for no tags).  The schedule B(t) =
    max(1, B0 gamma^floor(t/T)) with B0 = 256 is the paper's.  The budget acts in the reward only;
    generation keeps its limit ("train long").
    Source: Hammoud et al., "Train Long, Think Short: Curriculum Learning for Efficient Reasoning" (2025).
    """
    budget = budget_at(step, b0, gamma, interval, b_min, schedule, b_final, total_steps)
    out = []
    for text, c, n in zip(completions, correct, lengths, strict=True):
        ell = 1.0 if n <= budget else max(0.0, 1.0 - (n - budget) / budget)
        if gate_on_correct and not c:
            ell = 0.0
        out.append(w_correct * float(c) + w_length * ell + w_format * float(T.states_final_answer(text)))
    return out


# ----------------------------------------------------------------------------------------------- DOT


@register("dot")
def dot(completions: list[str], problems: list[Problem], *, correct: list[bool], lengths: list[int],
        group_size: int, k: float = 3.0) -> list[float]:
    """Dynamic Outlier Truncation: in a group where every answer is correct, an answer longer than
    mu + k * sigma of the group's lengths (population std) is treated as truncated (reward 0).

    Returned as the term (-1 for such an outlier, else 0).  With the population std one of n lengths can be
    at most sqrt(n - 1) sigma above the mean, so k = 3 (the three-sigma rule) never fires for groups of fewer
    than 10; choose k below sqrt(G - 1).  ASSUMED (no public code; the threshold rule is from a secondary
    description): the reward-side action (the paper "suppresses redundant tokens") and the population std;
    its auxiliary KL and predictive dynamic sampling are not implemented.
    Source: Wu et al., "Anti-Length Shift: Dynamic Outlier Truncation for Training Efficient Reasoning
    Models" (2026).
    """
    out = [0.0] * len(completions)
    for grp in _groups(len(completions), group_size):
        if not all(correct[i] for i in grp):
            continue
        ls = [lengths[i] for i in grp]
        mu = sum(ls) / len(ls)
        sigma = math.sqrt(sum((x - mu) ** 2 for x in ls) / len(ls))
        for i in grp:
            if sigma > 0 and lengths[i] > mu + k * sigma:
                out[i] = -1.0
    return out


# ---------------------------------------------------------------------------------------------- ARLCP


def _mean_std(xs: list[float]) -> tuple[float, float]:
    """Mean and sample std (n - 1) of xs; (0, 1) for none, (x, 1) for one (the code's fallbacks)."""
    if not xs:
        return 0.0, 1.0
    mu = sum(xs) / len(xs)
    if len(xs) < 2:
        return mu, 1.0
    return mu, math.sqrt(sum((x - mu) ** 2 for x in xs) / (len(xs) - 1))


@register("arlcp")
def arlcp(completions: list[str], problems: list[Problem], *, correct: list[bool], lengths: list[int],
          group_size: int, thresholds: tuple[int, int] | list[int] = (40, 80),
          w1_levels: tuple[float, float, float] | list[float] = (0.05, 0.1, 0.15), w_total: float = 0.2,
          eps: float = 1e-6) -> list[float]:
    """ARLCP's adaptive reflection penalty and length-coordinated penalty (correct answers only).

    k = reflection keywords in the completion (:func:`rlbook.mechanisms.length.text.reflection_count`); over the correct
    answers of the group: mean and sample std of k and of L (std 1 with fewer than two, mean 0 with none).
    Correct: r = 1 - w1 * sigmoid((k - mu_k) / (sd_k + eps)) - w2 * sigmoid((L - mu_L) / (sd_L + eps)), with
    w1 = 0.05 / 0.1 / 0.15 when k <= 40 / <= 80 / above (the "complexity" level) and w2 = 0.2 - w1; wrong: 0.
    Returned as the term r - c.  Source: Yu et al., "Stop Unnecessary Reflection: Training LRMs for Efficient
    Reasoning with Adaptive Reflection and Length Coordinated Penalty" (2026); code github.com/ZeweiYu1/ARLCP
    (commit d2c0a53) ``src/rm.py::arlcp_rm``, statistics in ``verl/workers/reward_manager/naive.py``.
    Differences: correctness is our verifier's (the code also requires exactly one ``</think>``); the
    thresholds are hyper-parameters (the paper's 40/80 keywords never occur in 128 tokens).
    """
    lo, hi = thresholds
    out = [0.0] * len(completions)
    for grp in _groups(len(completions), group_size):
        ks = {i: T.reflection_count(completions[i]) for i in grp}
        mu_k, sd_k = _mean_std([ks[i] for i in grp if correct[i]])
        mu_l, sd_l = _mean_std([lengths[i] for i in grp if correct[i]])
        for i in grp:
            if not correct[i]:
                continue
            w1 = w1_levels[0] if ks[i] <= lo else w1_levels[1] if ks[i] <= hi else w1_levels[2]
            w2 = w_total - w1
            out[i] = -w1 * _sigmoid((ks[i] - mu_k) / (sd_k + eps)) - w2 * _sigmoid((lengths[i] - mu_l) / (sd_l + eps))
    return out


# ----------------------------------------------------------------------------------- Reconsidering Overthinking


def overthinking_penalty(ird: float, k: float = 20.0, center: float = 0.3) -> float:
    """S(x) = [sigmoid(k (1 - x - c)) - sigmoid(-k c)] / [sigmoid(k (1 - c)) - sigmoid(-k c)]: 1 at x = 0,
    0 at x = 1 (Reconsidering Overthinking ``compress_reward.py::penalty_sigmoid``)."""
    s = _sigmoid(k * (1 - ird - center))
    s_min, s_max = _sigmoid(k * (0 - center)), _sigmoid(k * (1 - center))
    return (s - s_min) / (s_max - s_min)


def redundancy_degrees(text: str, answer: str, tokenizer: Any) -> tuple[float, float] | None:
    """(ERD, IRD) of a correct completion whose stated answer is ``answer``; None when the first correct
    solution (FCS) or the text after it is empty (the code then scores the answer as wrong).

    ERD = round(#tokens(after the FCS) / #tokens(completion), 2); IRD =
    :func:`rlbook.mechanisms.length.text.internal_redundancy` of the FCS's sentences."""
    end = T.first_answer_end(text, answer)
    if end is None or end == 0 or end >= len(text):
        return None
    fcs, aft = text[:end], text[end:]
    erd = round(len(T.encode(tokenizer, aft)) / max(1, len(T.encode(tokenizer, text))), 2)
    return erd, T.internal_redundancy(T.split_sentences(fcs))


@register("redundancy")
def redundancy(completions: list[str], problems: list[Problem], *, task: Task, correct: list[bool],
               tokenizer: Any, use_external: bool = True, use_internal: bool = True,
               strict_fcs: bool = True) -> list[float]:
    """Reconsidering Overthinking's dual penalty: external redundancy (text after the first correct solution)
    and internal redundancy (similar adjacent steps inside it), correct answers only.

    ERD, IRD as :func:`redundancy_degrees`; r_ext = 1 - ERD, r_int = S(IRD) (:func:`overthinking_penalty`);
    correct: 0.5 (r_int + r_ext) with both, r_ext or r_int with one, 1 with none; wrong: 0.  With
    ``strict_fcs`` (the code), a correct answer whose FCS or remainder is empty scores 0.  Returned as r - c.
    Source: Hong et al., "Reconsidering Overthinking: Penalizing Internal and External Redundancy in CoT
    Reasoning" (2025); code github.com/HenryZhen97/Reconsidering-Overthinking (commit 1f61c69)
    ``rllm/rewards/compress_reward.py::compress_compute_score``.  Differences: the whole completion is the
    chain of thought (our tasks have no ``</think>``); sentence similarity is a bag-of-words cosine, not
    all-MiniLM-L6-v2 embeddings; the answer located is our extracted answer.
    """
    out = []
    for text, p, c in zip(completions, problems, correct, strict=True):
        if not c:
            out.append(0.0)
            continue
        stated = extract_answer(text, numeric=task.numeric) or p.answer
        deg = redundancy_degrees(text, stated, tokenizer)
        if deg is None:
            out.append(-1.0 if strict_fcs else 0.0)
            continue
        r_ext, r_int = 1.0 - deg[0], overthinking_penalty(deg[1])
        r = 0.5 * (r_int + r_ext) if use_external and use_internal else r_ext if use_external else \
            r_int if use_internal else 1.0
        out.append(r - 1.0)
    return out


# ------------------------------------------------------------------------------------ cosine (Demystifying)


@register("cosine")
def cosine(completions: list[str], problems: list[Problem], *, correct: list[bool], lengths: list[int],
           max_new_tokens: int, min_correct: float = 1.0, max_correct: float = 2.0, min_wrong: float = -10.0,
           max_wrong: float = 0.0, exceed: float = -10.0, margin: int = 16) -> list[float]:
    """The cosine-scaled length reward of "Demystifying Long Chain-of-Thought Reasoning in LLMs" (whole reward).

    L_max = the generation limit.  L + margin >= L_max: r = ``exceed``.  Correct: r = min_c + (max_c - min_c)
    (1 + cos(pi L / L_max)) / 2 (shorter is better); wrong: r = max_w + (min_w - max_w) (1 + cos(pi L / L_max))
    / 2 (longer wrong answers are penalised less).
    Source: Yeo et al. (2025); code github.com/eddycmu/demystify-long-cot (commit e90cf9b)
    ``openrlhf/openrlhf/reward/cosine.py::CosineScaledSparseReward``, margin ``reward/common.py::
    MAX_LEN_MARGIN = 16``; defaults from the paper's run (section 4.2 cosine script: correct 1..2, wrong
    -10..0, exceed -10).  The repetition penalty (off by default in the code) is not implemented.  At our
    L_max = 128 the 16-token margin is 12.5% of the budget.
    """
    out = []
    for c, n in zip(correct, lengths, strict=True):
        if n + margin >= max_new_tokens:
            out.append(exceed)
            continue
        cos = 1.0 + math.cos(math.pi * n / max_new_tokens)
        out.append(min_correct + 0.5 * (max_correct - min_correct) * cos if c
                   else max_wrong + 0.5 * (min_wrong - max_wrong) * cos)
    return out


# ----------------------------------------------------------------------------------------------- SIRI


@register("length_cap")
def length_cap(completions: list[str], problems: list[Problem], *, correct: list[bool],
               finished: list[bool]) -> list[float]:
    """SIRI's length-capping reward: an answer cut by the (scheduled) generation limit earns nothing.

    r = c if the completion ended with EOS within the limit, else 0; returned as the term r - c.  The limit
    itself is scheduled by the phase ``length_schedule`` (compression and expansion phases).
    Source: Wen et al., "SIRI: Scaling Iterative Reinforcement Learning with Interleaved Compression" (2025):
    maximise E[R(y) | |y| <= L_t], R = 1 iff the final answer is correct (no training code is public).
    """
    return [-float(c) * (0.0 if s else 1.0) for c, s in zip(correct, finished, strict=True)]
