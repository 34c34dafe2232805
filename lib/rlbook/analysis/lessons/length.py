"""Lessons of the length family: toy inputs for the worked examples and one figure per notebook.

Every figure calls the registered mechanism (``REWARDS.call``, ``estimators.compute``, ``LOSSES.call``,
``phases.make``) on toy inputs, so what it draws is what the trainer computes.  The length rewards only count,
cut and search words, so the toy inputs are word lists: :class:`WordTokenizer` (one token per word) and
:class:`ToyTask` (the extracted answer must equal the problem's) stand in for the model's tokenizer and the
reasoning-gym verifier.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import SimpleNamespace
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor

import rlbook.mechanisms.length  # noqa: F401  (registers the length family's mechanisms)
from rlbook.data.tasks import Problem, extract_answer
from rlbook.mechanisms import estimators, phases
from rlbook.mechanisms.length.rewards import budget_at, overthinking_penalty
from rlbook.mechanisms.losses import LOSSES
from rlbook.mechanisms.rewards import REWARDS

__all__ = [
    "ToyTask", "WordTokenizer", "arlcp_figure", "budget_figure", "conciseness_figure", "dler_figure", "dot_figure",
    "drpo_figure", "drpo_push", "efficiency_figure", "grpo_lambda_figure", "hapo_figure", "redundancy_figure",
    "reward_of", "siri_figure", "token_advantages_figure", "toy_completion", "toy_problems", "toy_trainer",
]

GREY = "0.45"


class WordTokenizer:
    """A toy tokenizer: one token per whitespace-separated word (``tokenizer(text)["input_ids"]``, ``decode``)."""

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict[str, list[str]]:
        return {"input_ids": text.split()}

    def decode(self, ids: Sequence[str], skip_special_tokens: bool = True) -> str:
        return " ".join(ids)


class ToyTask:
    """A toy verifier: 1.0 when the completion's extracted answer equals the problem's answer."""

    numeric = True

    def score(self, problem: Problem, completion: str) -> float:
        return float(extract_answer(completion, numeric=True) == problem.answer)


def toy_problems(n: int, question: str = "3 + 4 =", answer: str = "7") -> list[Problem]:
    """``n`` copies of one toy problem (a reward receives one problem per completion)."""
    return [Problem(index=0, question=question, answer=answer, messages=[], entry={}) for _ in range(n)]


def toy_completion(n_words: int, answer: str = "7", answer_at: int | None = None, filler: str = "so",
                   insert: Mapping[int, str] | None = None) -> str:
    """A completion of ``n_words`` words: ``filler`` words, "answer: <answer>" ending at word ``answer_at``
    (default: the last two words), and ``insert`` words at given positions (e.g. reflection words)."""
    if n_words < 2:
        raise ValueError(f"toy_completion: n_words={n_words} must be >= 2 (room for 'answer: N')")
    words = [filler] * n_words
    end = n_words if answer_at is None else max(2, min(answer_at, n_words))
    words[end - 2: end] = ["answer:", answer]
    for i, w in (insert or {}).items():
        words[i] = w
    return " ".join(words)


def toy_trainer(max_new_tokens: int) -> Any:
    """What a phase's constructor reads from its trainer, for phases that need nothing else (SIRI's schedule)."""
    return SimpleNamespace(cfg=SimpleNamespace(max_new_tokens=max_new_tokens), step_count=0)


def reward_of(name: str, completions: list[str], correct: Sequence[bool], *, max_new_tokens: int = 128,
              lengths: Sequence[int] | None = None, finished: Sequence[bool] | None = None,
              group_size: int | None = None, **hyper: Any) -> np.ndarray:
    """Registered reward ``name`` on toy completions (lengths: their word counts unless given; finished:
    shorter than ``max_new_tokens``; one group unless ``group_size``), as an array."""
    n = len(completions)
    lens = list(lengths) if lengths is not None else [len(c.split()) for c in completions]
    context = {"task": ToyTask(), "correct": [bool(c) for c in correct], "lengths": lens,
               "finished": list(finished) if finished is not None else [x < max_new_tokens for x in lens],
               "max_new_tokens": max_new_tokens, "group_size": group_size or n, "tokenizer": WordTokenizer(),
               "prompt_ids": [0] * n, "step": 0, "total_steps": 1, "state": REWARDS.make_state(name)}
    context.update(hyper.pop("context", {}))
    return np.asarray(REWARDS.call(name, completions, toy_problems(n), context=context, **hyper), dtype=float)


def _finish(fig: Figure, title: str) -> Figure:
    fig.suptitle(title, fontsize=11)
    for ax in fig.axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _legend(ax: Any, outside: bool = False) -> None:
    if outside:
        ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:
        ax.legend(fontsize=8, frameon=False)


# ------------------------------------------------------------------------------------------------ figures


def efficiency_figure(points: Mapping[str, tuple[float, float]], front: Sequence[str],
                      max_new_tokens: int = 128) -> Figure:
    """Left: toy methods at (mean tokens, accuracy), the frontier ``front`` joined, lines of equal accuracy per
    1,000 tokens.  Right: the reward of a correct answer against its length under the family's registered
    length rewards (the shaping each method adds to correctness)."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    xs = np.linspace(1, max(p[0] for p in points.values()) * 1.15, 50)
    for per_k in (5, 10, 20):
        a.plot(xs, per_k * xs / 1000, ":", color=GREY, lw=0.8)
        a.annotate(f"{per_k} per 1k tokens", (xs[-1], min(1.0, per_k * xs[-1] / 1000)), fontsize=7, color=GREY,
                   ha="right", va="bottom")
    on = sorted((points[m] for m in front), key=lambda p: p[0])
    a.plot([p[0] for p in on], [p[1] for p in on], "-", color="C3", label="frontier")
    for m, (n, acc) in points.items():
        a.plot(n, acc, "o", color="C3" if m in front else GREY)
        a.annotate(m, (n, acc), textcoords="offset points", xytext=(4, 4), fontsize=8)
    a.set(xlabel="mean tokens per answer", ylabel="accuracy", ylim=(0, 1), title="toy methods: the frontier")
    _legend(a)
    lengths = list(range(4, max_new_tokens + 1, 4))
    texts = [toy_completion(n) for n in lengths]
    ok = [True] * len(texts)
    curves = {"GRPO (correct only)": np.ones(len(lengths)),
              "+ 0.5 x length penalty": 1 + 0.5 * reward_of("length_penalty", texts, ok, max_new_tokens=max_new_tokens),
              "+ DAPO overlong": 1 + reward_of("overlong", texts, ok, max_new_tokens=max_new_tokens),
              "CRM (rule scorer)": 1 + reward_of("conciseness_rm", texts, ok, max_new_tokens=max_new_tokens),
              "cosine (Demystifying)": reward_of("cosine", texts, ok, max_new_tokens=max_new_tokens),
              "Kimi length (one group)": 1 + reward_of("kimi_length", texts, ok, max_new_tokens=max_new_tokens)}
    for label, y in curves.items():
        b.plot(lengths, y, label=label)
    b.set(xlabel="length of a correct answer (tokens)", ylabel="reward", ylim=(-0.6, 2.2),
          title=f"a correct answer's reward (limit {max_new_tokens}; cosine: -10 past {max_new_tokens - 16})")
    _legend(b)
    return _finish(fig, "Accuracy per token: what the frontier ranks, and how each reward pays for length")


def dler_figure(limit: int = 64, max_new_tokens: int = 128, stop_coef: float = 0.1) -> Figure:
    """Reward of an answer against the length it would reach, under DLER's truncation at ``limit`` (a cut
    answer that already stated a correct answer keeps ``stop_coef``), DA-DLER's tighter cut for easier groups,
    the additive length penalty and GRPO; wrong answers earn 0 under DLER."""
    wanted = np.arange(4, max_new_tokens + 1, 2)
    texts = [toy_completion(int(min(n, limit)), answer_at=4) for n in wanted]
    lens, done = [int(min(n, limit)) for n in wanted], [bool(n < limit) for n in wanted]
    ok = [True] * len(texts)
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.plot(wanted, np.ones(len(wanted)), color=GREY, label="GRPO: correct = 1 at any length")
    add = 1 + 0.5 * reward_of("length_penalty", [toy_completion(int(n)) for n in wanted], ok, max_new_tokens=max_new_tokens)
    ax.plot(wanted, add, "--", color=GREY, label="GRPO + 0.5 x additive length penalty")
    dler = 1 + reward_of("dler", texts, ok, lengths=lens, finished=done, stop_coef=stop_coef, max_new_tokens=limit)
    ax.plot(wanted, dler, lw=2.5, color="C0", label=f"DLER: cut at {limit} tokens keeps {stop_coef}")
    for p, style in ((0.5, "-."), (1.0, ":")):
        n_wrong = round(len(texts) * (1 - p) / p)
        group = texts + [toy_completion(4, answer="0")] * n_wrong
        r = reward_of("dler_da", group, ok + [False] * n_wrong, lengths=lens + [4] * n_wrong,
                      finished=done + [True] * n_wrong, max_new_tokens=limit, stop_coef=stop_coef)
        ax.plot(wanted, 1 + r[: len(texts)], style, lw=2, color="C1", label=f"DA-DLER, group {p:.0%} correct")
    ax.axvline(limit, color="C0", lw=0.8, ls=":")
    ax.set(xlabel="tokens the correct answer would take (it states its answer early)",
           ylabel="reward (correctness + term)", ylim=(-0.05, 1.1))
    _legend(ax, outside=True)
    return _finish(fig, "DLER: the length penalty is the truncation itself")


def hapo_figure(history: float = 40.0, w_lr: float = 1.0) -> Figure:
    """HAPO's reward against length for correct and wrong answers, with the prompt's history (shortest earlier
    correct answer) at ``history`` tokens: cosine and linear length rewards."""
    lengths = list(range(2, int(3 * history), 2))
    texts = [toy_completion(n) for n in lengths]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, kind in zip(axes, ("cosine", "linear"), strict=True):
        for correct, color in ((True, "C2"), (False, "C3")):
            state = REWARDS.make_state("hapo")
            state.h[0] = history
            term = reward_of("hapo", texts, [correct] * len(texts), context={"state": state}, kind=kind, w_lr=w_lr)
            ax.plot(lengths, float(correct) + term, color=color, label=f"{'correct' if correct else 'wrong'}: c + r_len")
            ax.axhline(float(correct), color=color, lw=0.8, ls=":", label=f"GRPO, {'correct' if correct else 'wrong'}")
        for m in (1, 2):
            ax.axvline(m * history, color=GREY, lw=0.8, ls="--")
        ax.set(xlabel=f"length L (history h = {history:g}; dashed: h, 2h)", ylabel="reward", title=kind)
        _legend(ax)
    return _finish(fig, "HAPO: beating the prompt's own record pays; a long wrong answer pays least")


def drpo_push(correct: Tensor, lengths: Tensor, group_ids: Tensor, max_length: int, **loss_kwargs: Any) -> Tensor:
    """How hard DRPO's registered loss pushes each completion up (+) or down (-): minus the gradient of the
    summed token loss with respect to the completion's token log-probs, summed over its tokens, times P / B.

    At logp = old_logp the KL trust region is inactive, so a correct answer's push is its weight hat w_i (the
    weights of a group's correct answers sum to 1) and a wrong answer's is -q_j (the softmax over the group's
    wrong answers, summing to -1); a group that is all correct or all wrong gets 0."""
    B, T = len(lengths), int(lengths.max())
    mask = torch.arange(T).unsqueeze(0) < lengths.unsqueeze(1)
    logp = torch.full((B, T), -1.0, requires_grad=True)
    token_loss, _ = LOSSES.call("drpo", logp, logp.detach(), torch.zeros(B), mask,
                                context={"group_ids": group_ids, "correct": correct, "max_new_tokens": max_length},
                                **loss_kwargs)
    token_loss.sum().backward()
    assert logp.grad is not None
    return -(logp.grad * mask).sum(-1) * len(torch.unique(group_ids)) / B


def drpo_figure(max_length: int = 128, lambdas: Sequence[float] = (0.1, 0.3, 1.0)) -> Figure:
    """A group of 8 correct answers of growing length and one wrong one.  Left: DRPO's weight of each correct
    answer (registered loss, for several Lambda).  Right: GRPO's advantages with the additive length penalty:
    long correct answers get a negative advantage, which DRPO never gives."""
    correct_lengths = torch.tensor([12, 24, 36, 48, 64, 80, 96, 120])
    lengths = torch.cat([correct_lengths, torch.tensor([60])])
    correct = torch.cat([torch.ones(8, dtype=torch.bool), torch.zeros(1, dtype=torch.bool)])
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for lam in lambdas:
        push = drpo_push(correct, lengths, torch.zeros(len(lengths), dtype=torch.long), max_length, Lambda=lam)
        a.plot(correct_lengths, push[:8], "o-", label=f"Lambda = {lam:g}")
    a.axhline(0, color="k", lw=0.8)
    a.set(xlabel="length of the correct answer", ylabel="DRPO weight (sums to 1 over the correct)",
          title="DRPO: correct answers only re-weighted")
    _legend(a)
    rewards = correct.float() - 0.5 * lengths.float() / max_length
    adv = estimators.compute("grpo", rewards.view(1, -1)).view(-1)
    b.plot(correct_lengths, adv[:8], "o-", color="C2", label="correct answers")
    b.plot(lengths[8:], adv[8:], "x", color="C3", markersize=9, label="the wrong answer")
    b.axhline(0, color="k", lw=0.8)
    b.set(xlabel="length", ylabel="GRPO advantage", title="GRPO + 0.5 x additive length penalty")
    _legend(b)
    return _finish(fig, "DRPO decouples length from correctness: no correct answer is pushed down")


def grpo_lambda_figure(lams: Sequence[float] = (0.25, 0.5, 1.0), group_size: int = 4) -> Figure:
    """Left: the Kimi length term within one group (correct and wrong answers of growing length).  Right: a
    batch of groups by share correct, and which of them GRPO-lambda gives the length term for each lambda."""
    lengths = list(range(10, 130, 10))
    texts = [toy_completion(n) for n in lengths]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [1.2, 1]})
    for correct, color in ((True, "C2"), (False, "C3")):
        term = reward_of("kimi_length", texts, [correct] * len(texts))
        a.plot(lengths, term, "o-", color=color, label=f"{'correct' if correct else 'wrong'} answers")
    a.axhline(0, color="k", lw=0.8)
    a.set(xlabel="length (one group of 12 answers)", ylabel="length term", title="Kimi k1.5 length term")
    _legend(a)
    n_correct = [0, 1, 2, 3, 4, 1, 3, 2]  # of group_size, one group each
    correct = [i < k for k in n_correct for i in range(group_size)]
    batch_lengths = [20 + 20 * i for _ in n_correct for i in range(group_size)]
    batch = [toy_completion(n) for n in batch_lengths]
    grid = np.array([[float(np.any(g != 0)) for g in reward_of(
        "grpo_lambda", batch, correct, lengths=batch_lengths, group_size=group_size, lam=lam).reshape(-1, group_size)]
        for lam in lams])
    b.imshow(grid, cmap="Blues", vmin=0, vmax=1.5, aspect="auto")
    b.set_xticks(range(len(n_correct)), [f"{k}/{group_size}" for k in n_correct])
    b.set_yticks(range(len(lams)), [f"lambda = {lam:g}" for lam in lams])
    for (i, j), v in np.ndenumerate(grid):
        b.text(j, i, "term" if v else "0/1", ha="center", va="center", fontsize=8)
    b.set(xlabel="group (share correct), batch order", title="GRPO-lambda: which groups get the term")
    fig = _finish(fig, "GRPO-lambda: the length penalty only where the group is mostly right")
    b.grid(False)
    return fig


def conciseness_figure(max_new_tokens: int = 128, alpha: float = 1.0) -> Figure:
    """Reward against length for correct and wrong answers: the outcome-conditioned conciseness reward
    (a wrong answer earns nothing for being short) against the additive length penalty (it does)."""
    lengths = list(range(4, max_new_tokens + 1, 4))
    texts = [toy_completion(n) for n in lengths]
    fig, ax = plt.subplots(figsize=(7.5, 4))
    for correct, color in ((True, "C2"), (False, "C3")):
        c = float(correct)
        flags = [correct] * len(texts)
        crm = c + reward_of("conciseness_rm", texts, flags, max_new_tokens=max_new_tokens, alpha=alpha)
        add = c + 0.5 * reward_of("length_penalty", texts, flags, max_new_tokens=max_new_tokens)
        word = "correct" if correct else "wrong"
        ax.plot(lengths, crm, color=color, lw=2.5, label=f"CRM c (1 + alpha s), {word}")
        ax.plot(lengths, add, "--", color=color, label=f"additive c - 0.5 L / L_max, {word}")
    ax.set(xlabel="length L (tokens)", ylabel="reward", title=f"alpha = {alpha:g}, L_max = {max_new_tokens}")
    _legend(ax)
    return _finish(fig, "Conciseness conditioned on the outcome: short wrong answers are not paid")


def budget_figure(b0: int = 128, gamma: float = 0.5, interval: int = 2, b_min: int = 32, steps: int = 6,
                  fixed: int = 32) -> Figure:
    """Left: the token budget per training step (the curriculum against a fixed budget), from
    :func:`budget_at`, the function the reward calls.  Right: the registered reward of a correct answer that
    states its answer, against its length, at several steps."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    t = list(range(steps))
    a.step(t, [budget_at(s, b0, gamma, interval, b_min) for s in t], where="post", lw=2, label="curriculum")
    a.step(t, [budget_at(s, fixed, 1.0, interval, fixed) for s in t], where="post", ls="--", label="fixed budget")
    a.set(xlabel="training step", ylabel="token budget B(t)", ylim=(0, b0 * 1.1),
          title=f"B(t) = max({b_min}, B0 gamma^floor(t/{interval})), B0 = {b0}")
    _legend(a)
    lengths = list(range(4, 2 * b0 + 1, 4))
    texts = [toy_completion(n) for n in lengths]
    for s in range(0, steps, interval):
        r = reward_of("budget_curriculum", texts, [True] * len(texts), max_new_tokens=2 * b0,
                      context={"step": s, "total_steps": steps}, b0=b0, gamma=gamma, interval=interval, b_min=b_min)
        b.plot(lengths, r, label=f"step {s}: budget {budget_at(s, b0, gamma, interval, b_min)}")
    b.set(xlabel="length of a correct answer", ylabel="reward (correct + length + format)",
          title="the same answer earns less as the budget shrinks")
    _legend(b)
    return _finish(fig, "Train Long, Think Short: a budget that shrinks in the reward, not in generation")


def token_advantages_figure(panels: Mapping[str, Tensor], lengths: Sequence[int],
                            marks: Mapping[int, Sequence[int]] | None = None, title: str = "") -> Figure:
    """Token advantages ``[N, T]`` (one row per completion) as heat maps side by side, blank past each length
    (values printed when T <= 16); ``marks`` draws ticks at given token positions of given rows (span starts, budget ends, step ends)."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 0.5 * len(lengths) + 2), squeeze=False,
                             layout="constrained")
    vmax = max(float(v.abs().max()) for v in panels.values()) or 1.0
    image = None
    for ax, (name, adv) in zip(axes[0], panels.items(), strict=True):
        x = adv.detach().float().numpy().copy()
        for i, n in enumerate(lengths):
            x[i, int(n):] = np.nan
        image = ax.imshow(x, cmap="coolwarm", vmin=-vmax, vmax=vmax, aspect="auto", interpolation="nearest")
        if x.shape[1] <= 16:  # small enough to print every token's advantage
            for (i, t), v in np.ndenumerate(x):
                if not np.isnan(v):
                    ax.text(t, i, f"{v:.2f}", ha="center", va="center", fontsize=6.5)
        for row, cols in (marks or {}).items():
            ax.plot([c - 0.5 for c in cols], [row] * len(cols), "|", color="k", markersize=14, mew=2)
        ax.set(title=name, xlabel="token position", ylabel="completion")
        ax.set_yticks(range(len(lengths)))
    fig.colorbar(image, ax=list(axes[0]), label="advantage", shrink=0.9)
    fig.suptitle(title, fontsize=11)
    return fig


def dot_figure(k_values: Sequence[float] = (2.0, 3.0), others: Sequence[int] = (20, 22, 24, 26, 28, 30, 32)) -> Figure:
    """Reward of one answer in an all-correct group against its length (the group's other answers at
    ``others`` tokens), for several k: DOT scores the outlier as truncated (0).  With the population std one
    of G lengths is at most sqrt(G - 1) std above the mean, so k = 3 never fires in a group of 8."""
    lengths = list(range(20, 241, 4))
    fig, ax = plt.subplots(figsize=(7.5, 4))
    for k in k_values:
        r = [1 + reward_of("dot", [toy_completion(n) for n in (*others, n)], [True] * (len(others) + 1), k=k)[-1]
             for n in lengths]
        ax.plot(lengths, r, lw=2, label=f"k = {k:g}")
    ax.axhline(1.0, color=GREY, ls=":", label="GRPO (all correct: no signal)")
    ax.set(xlabel=f"length of the 8th answer (the others: {min(others)}-{max(others)} tokens)", ylabel="its reward",
           ylim=(-0.05, 1.1), title="an all-correct group of 8")
    _legend(ax)
    return _finish(fig, "DOT: only the extreme tail of an all-correct group is truncated")


def arlcp_figure(lengths: Sequence[int] = (20, 40, 60), thresholds: Sequence[int] = (2, 4)) -> Figure:
    """ARLCP's reward of a correct answer against its number of reflection words, for three lengths, in a group
    of correct answers (reflection counts 0-3, 40 tokens): both penalties are z-scores within the group's correct
    answers, and the reflection weight w1 steps up at the complexity ``thresholds``."""
    peers = [toy_completion(40, insert={i: "wait" for i in range(k)}) for k in range(4)]
    fig, ax = plt.subplots(figsize=(7.5, 4))
    for n in lengths:
        ks = list(range(0, min(n - 2, 8) + 1))
        r = [1 + reward_of("arlcp", [*peers, toy_completion(n, insert={i: "wait" for i in range(k)})], [True] * 5,
                           thresholds=list(thresholds))[-1] for k in ks]
        ax.plot(ks, r, "o-", label=f"{n} tokens")
    for t in thresholds:
        ax.axvline(t + 0.5, color=GREY, lw=0.8, ls="--")
    ax.set(xlabel=f"reflection words in the answer (dashed: levels {thresholds[0]} / {thresholds[1]})",
           ylabel="reward of the correct answer", title="peers: 40 tokens, 0-3 reflection words")
    _legend(ax)
    return _finish(fig, "ARLCP: fewer reflections and fewer tokens than the group's other correct answers pay")


def redundancy_figure(before: int = 12, after: Sequence[int] = tuple(range(0, 49, 4))) -> Figure:
    """Left: the registered reward of a correct answer against the words written after its first correct
    solution (external redundancy, ERD), external-only and both penalties.  Right: the internal-redundancy
    score S(IRD) (:func:`overthinking_penalty`) against IRD."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    body = " ".join(f"step {i} adds one." for i in range(before // 4)) + " so answer: 7"
    texts = [body + "".join(" then we check it again." for _ in range(m // 5)) for m in after]
    erd = [1 - len(body.split()) / len(t.split()) for t in texts]
    for label, ext, inter in (("external only", True, False), ("both (mean)", True, True)):
        r = 1 + reward_of("redundancy", texts, [True] * len(texts), use_external=ext, use_internal=inter)
        a.plot(erd, r, "o-", label=label)
    a.set(xlabel="ERD: share of tokens after the first correct solution", ylabel="reward of the correct answer",
          title="external redundancy (ERD = 0 scores 0, as in the code)", ylim=(-0.05, 1.05))
    _legend(a)
    x = np.linspace(0, 1, 101)
    b.plot(x, [overthinking_penalty(v) for v in x], color="C1")
    b.set(xlabel="IRD: mean similarity of adjacent windows of sentences", ylabel="S(IRD)",
          title="internal redundancy (k = 20, c = 0.3)")
    return _finish(fig, "Reconsidering Overthinking: pay for what is not repeated")


def siri_figure(low: int = 64, high: int = 128, period: int = 5, steps: int = 6) -> Figure:
    """SIRI's generation limit per step from the registered ``length_schedule`` phase: the notebook's schedule
    (cosine, ``steps`` steps) and the shapes over three periods."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    trainer = toy_trainer(high)
    mine = phases.make("length_schedule", trainer, kind="cosine", low=low, high=high, period=period)
    a.plot(range(steps), [mine.limit(s) for s in range(steps)], "o-", lw=2)
    a.set(xlabel="training step", ylabel="generation limit (tokens)", ylim=(0, high * 1.1),
          title=f"this notebook: cosine, period {period}, {low}-{high}")
    t = list(range(3 * period * 2))
    for kind, start in (("cosine", "compress"), ("stair", "compress"), ("cosine", "expand")):
        p = phases.make("length_schedule", trainer, kind=kind, low=low, high=high, period=2 * period, start=start)
        b.plot(t, [p.limit(s) for s in t], label=f"{kind}, starts to {start}")
    b.set(xlabel="training step", ylabel="generation limit (tokens)", ylim=(0, high * 1.1),
          title=f"schedules over three periods of {2 * period}")
    _legend(b)
    return _finish(fig, "SIRI: compression and expansion phases of the rollout limit")
