"""Best-of-N selection without a reward model: self-certainty, Borda voting, majority vote (and the oracle).

Paper: Kang, Zhao & Song (2025), "Scalable Best-of-N Selection for Large Language Models via Self-Certainty",
arXiv 2502.18581 (NeurIPS 2025).  Code followed: backprop07/Self-Certainty @ b17d021e:

* score (``src/confidence_list.py``, ``confidence_logprob_sum``): self-certainty of a response = the mean over
  its tokens of KL(U || p_i), U uniform over the vocabulary, p_i the model's next-token distribution
  (:func:`rlbook.policy.generation.self_certainty_from_logits`, accumulated in the sampler);
* Best-of-N (``src/self_certainty_from_list.py``): the response with the highest score among the first N;
  a response whose answer cannot be extracted gets -1e9 first; ties go to the lowest index (``list.index(max)``);
* Borda voting (``src/voting_from_list.py``): responses ranked by score (descending, stable); rank r (1 = most
  certain) casts ``(N - r + 1) ** p`` votes for its extracted answer, responses without an answer cast none;
  equal answers (exact string equality) pool their votes, credited to the first response with that answer;
  the most-voted answer wins (ties: lowest index).  ``p = 0`` is majority voting (self-consistency).

Differences from the authors' code: the per-token distributions are those that generated each response token,
``p(. | x, y_<i)`` for i = 1..n (the README's formula); the code scores a re-tokenised response in a second
forward pass and averages the distributions shifted by one position (it drops the one that produced the first
token and includes the one after the last token).  We score the generated token ids, not re-tokenised text.
Negative perplexity (a baseline of the paper) is the mean log-prob of the chosen tokens under the sampling
distribution (equal to the model's when sampling at temperature 1).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from rlbook.core.config import TrainConfig
from rlbook.data.tasks import Problem, extract_answer
from rlbook.policy.models import Tokenizer
from rlbook.policy.rollout import generate
from rlbook.training.stages import Stage, StageParams

NO_ANSWER = -1e9  # score given to a response without an extractable answer (the authors' filter)


def sequence_score(token_scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked mean over tokens ``[B, T] -> [B]`` (self-certainty: mean of KL(U || p_i) over the response)."""
    m = mask.float()
    return (token_scores * m).sum(-1) / m.sum(-1).clamp(min=1.0)


def select_max(scores: Sequence[float], answers: Sequence[str | None]) -> int:
    """Index of the highest score, responses without an answer set to -1e9 first; ties: the lowest index."""
    vals = [NO_ANSWER if a is None else float(s) for s, a in zip(scores, answers, strict=True)]
    return vals.index(max(vals))


def borda_select(scores: Sequence[float], answers: Sequence[str | None], power: float) -> int:
    """Borda voting over self-certainty ranks: rank r of N casts ``(N - r + 1) ** power`` votes for its answer;
    votes pool by exact answer and go to the answer's first response; the most-voted wins (ties: lowest index).
    Without any answer, index 0."""
    n = len(scores)
    order = sorted(range(n), key=lambda i: -float(scores[i]))  # stable: equal scores keep index order
    votes: dict[str, float] = {}
    first: dict[str, int] = {}
    for i, a in enumerate(answers):
        if a is not None:
            first.setdefault(a, i)
    for rank, i in enumerate(order, 1):
        if answers[i] is not None:
            votes[answers[i]] = votes.get(answers[i], 0.0) + float(n - rank + 1) ** power  # type: ignore[index]
    if not votes:
        return 0
    best = max(votes.values())
    return min(first[a] for a, v in votes.items() if v == best)


def majority_select(answers: Sequence[str | None]) -> int:
    """Self-consistency: the most frequent answer's first response (Borda with ``power = 0``)."""
    return borda_select([0.0] * len(answers), answers, 0.0)


@dataclass
class Pool:
    """K sampled responses for each of P problems, with what every selector needs (numpy arrays ``[P, K]``)."""

    certainty: np.ndarray  # self-certainty of each response (mean over its tokens)
    neg_perplexity: np.ndarray  # mean log-prob of its tokens
    correct: np.ndarray  # bool: the task's verifier
    answers: list[list[str | None]]  # extracted answers
    lengths: np.ndarray  # tokens through EOS

    @property
    def k(self) -> int:
        return int(self.correct.shape[1])

    def to_dict(self) -> dict[str, Any]:
        return {"certainty": self.certainty.tolist(), "neg_perplexity": self.neg_perplexity.tolist(),
                "correct": self.correct.tolist(), "answers": self.answers, "lengths": self.lengths.tolist()}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Pool:
        return Pool(np.array(d["certainty"], dtype=float), np.array(d["neg_perplexity"], dtype=float),
                    np.array(d["correct"], dtype=bool), d["answers"], np.array(d["lengths"], dtype=float))


@torch.no_grad()
def sample_pool(model: Any, tok: Tokenizer, task: Any, problems: Sequence[Problem], k: int, max_new_tokens: int,
                temperature: float = 1.0, top_p: float = 1.0, seed: int = 0, gen_batch_size: int = 64) -> Pool:
    """``k`` sampled responses per problem (one shared prompt prefill per problem), scored on the fly."""
    from rlbook.policy.generation import prompt_ids

    torch.manual_seed(seed)
    cfg = TrainConfig(temperature=temperature, top_p=top_p, gen_batch_size=gen_batch_size)
    prompts = [prompt_ids(tok, p.messages) for p in problems]
    roll = generate(model, tok, cfg, prompts, max_new_tokens, do_sample=True, temperature=temperature,
                    group_size=k, self_certainty=True)
    mask = roll.completion_mask
    cert = sequence_score(roll.self_certainty, mask).view(len(problems), k)  # type: ignore[arg-type]
    nppl = sequence_score(roll.logp, mask).view(len(problems), k)  # type: ignore[arg-type]
    flat = [p for p in problems for _ in range(k)]
    correct = [task.score(p, t) >= 1.0 for p, t in zip(flat, roll.texts, strict=True)]
    answers = [extract_answer(t, numeric=task.numeric) for t in roll.texts]
    answers = [a.strip() if a is not None and a.strip() else None for a in answers]
    return Pool(cert.numpy(), nppl.numpy(), np.array(correct).reshape(len(problems), k),
                [answers[i * k : (i + 1) * k] for i in range(len(problems))],
                roll.lengths.float().view(len(problems), k).numpy())


def degenerate(pool: Pool, tol: float = 1e-9) -> list[str]:
    """Why a seed's pool is unusable for the selectors (empty: usable): no response has an extractable answer
    (every vote is empty, every pick falls back to the first response), or self-certainty is the same for every
    response (self-certainty Best-of-N picks by index)."""
    out = []
    if not any(a is not None for row in pool.answers for a in row):
        out.append("no response has an extractable answer (every selector picks the first response)")
    if pool.certainty.size > 1 and float(np.ptp(pool.certainty)) <= tol:
        out.append("self-certainty is the same for every response (its Best-of-N picks by index)")
    return out


Selector = Callable[[Pool, int, np.ndarray], float]  # (pool, problem, sample indices) -> 1.0 / 0.0 (or expected)


def _chosen(pool: Pool, j: int, idx: np.ndarray, pick: int) -> float:
    return float(pool.correct[j, idx[pick]])


SELECTORS: dict[str, Selector] = {
    # expected accuracy of a uniformly random pick among the N (= mean accuracy of one sample)
    "random": lambda pool, j, idx: float(pool.correct[j, idx].mean()),
    "self-certainty": lambda pool, j, idx: _chosen(pool, j, idx, select_max(
        pool.certainty[j, idx], [pool.answers[j][i] for i in idx])),
    "negative perplexity": lambda pool, j, idx: _chosen(pool, j, idx, select_max(
        pool.neg_perplexity[j, idx], [pool.answers[j][i] for i in idx])),
    "majority vote": lambda pool, j, idx: _chosen(pool, j, idx, majority_select([pool.answers[j][i] for i in idx])),
    "oracle": lambda pool, j, idx: float(pool.correct[j, idx].any()),
}


def borda_selector(power: float) -> Selector:
    """Borda voting over self-certainty ranks with exponent ``power`` as a selector."""
    return lambda pool, j, idx: _chosen(pool, j, idx, borda_select(
        pool.certainty[j, idx], [pool.answers[j][i] for i in idx], power))


def subsets(k: int, n: int, draws: int, rng: np.random.Generator) -> list[np.ndarray]:
    """The first ``n`` samples (the authors' BoN@N) plus ``draws - 1`` random n-subsets of the ``k`` samples."""
    out = [np.arange(n)]
    out += [np.sort(rng.choice(k, size=n, replace=False)) for _ in range(draws - 1)]
    return out if n < k else out[:1]


def bon_curve(pool: Pool, ns: Sequence[int], selectors: dict[str, Selector], draws: int = 1,
              seed: int = 0) -> list[dict[str, Any]]:
    """For every N and selector, each problem's accuracy (averaged over ``draws`` N-subsets of the pool):
    records ``selector, n, unit, value``."""
    rng = np.random.default_rng(seed)
    rows = []
    for n in ns:
        if not 1 <= n <= pool.k:
            raise ValueError(f"N={n} must be between 1 and the pool's {pool.k} samples")
        for j in range(pool.correct.shape[0]):
            picks = subsets(pool.k, n, draws, rng)
            for name, sel in selectors.items():
                rows.append({"selector": name, "n": n, "unit": j,
                             "value": float(np.mean([sel(pool, j, idx) for idx in picks]))})
    return rows


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for binary ``labels`` (Mann-Whitney U / (n1 n0), ties 1/2);
    NaN when one class is empty."""
    s, y = np.asarray(scores, dtype=float).ravel(), np.asarray(labels, dtype=bool).ravel()
    pos, neg = s[y], s[~y]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


# ------------------------------------------------------------------------------------ the study


@dataclass(frozen=True)
class PoolParams(StageParams):
    """What one seed's pool reads: its cache key (:class:`rlbook.training.stages.Stage`)."""

    model: str
    task: dict[str, Any]
    n_max: int
    max_new_tokens: int
    temperature: float
    top_p: float
    problems: int
    seed: int


def study_stages(params: dict[str, Any]) -> list[Stage]:
    """One ``bon-pool`` stage per seed."""
    return [Stage("bon-pool", PoolParams.from_params(params, seed=s)) for s in range(int(params["seeds"]))]


def pool_stage(p: PoolParams, folder: Any = None) -> dict[str, Any]:
    """Sample the pool of one seed."""
    from rlbook.data.tasks import make_task
    from rlbook.policy.models import load_policy

    task = make_task(p.task)
    model, tok = load_policy(p.model, lora=None)
    return sample_pool(model, tok, task, task.eval[: int(p.problems)], int(p.n_max), int(p.max_new_tokens),
                       float(p.temperature), float(p.top_p), seed=p.seed).to_dict()


def run_study(params: dict[str, Any], root: Any, progress: Callable[[str], None] = print) -> dict[int, Pool]:
    """One pool of ``n_max`` samples per held-out problem for every seed, each a cached stage (:func:`study_stages`)."""
    out: dict[int, Pool] = {}
    for st in study_stages(params):
        progress(f"pool, seed {st.params.seed}")
        out[st.params.seed] = Pool.from_dict(st.run(root, pool_stage))
    return out


def selectors(powers: Sequence[float]) -> dict[str, Selector]:
    """The registered selectors and one Borda selector per exponent in ``powers``."""
    return {**SELECTORS, **{f"Borda p={p:g}": borda_selector(p) for p in powers}}


def tables(pools: dict[int, Pool], ns: Sequence[int], powers: Sequence[float], draws: int
           ) -> dict[str, list[dict[str, Any]]]:
    """Long tables: ``bon`` (``method`` = "<selector>@N", per problem) for the claims and curves; ``headroom``
    (per problem: pass@N_max minus the mean accuracy of one sample, the room a selector has); ``auroc`` (per
    seed: how well self-certainty separates correct from wrong responses of the same problems, pooled)."""
    sels = selectors(powers)
    bon, head, roc = [], [], []
    for seed, pool in pools.items():
        for r in bon_curve(pool, ns, sels, draws, seed):
            bon.append({"method": f"{r['selector']}@{r['n']}", "selector": r["selector"], "N": r["n"], "seed": seed,
                        "unit": r["unit"], "value": r["value"]})
        head += [{"method": "pool", "seed": seed, "unit": j,
                  "value": float(pool.correct[j].any()) - float(pool.correct[j].mean())}
                 for j in range(pool.correct.shape[0])]
        centred = pool.certainty - pool.certainty.mean(1, keepdims=True)  # within-problem comparison
        roc.append({"method": "self-certainty", "seed": seed, "value": auroc(centred, pool.correct)})
    return {"bon": bon, "headroom": head, "auroc": roc}
