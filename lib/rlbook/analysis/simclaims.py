"""The estimator lab's claims: long tables from independent simulation runs, verdicts from :mod:`rlbook.analysis.stats`.

Each claim is measured on ``seeds`` independent simulation runs (the unit of replication, as training runs are
in the language-model notebooks); within a run, Monte-Carlo batches are the paired units (every estimator sees
the same draws).  A table has the columns ``method, seed, unit, value``; :func:`evaluate` turns it into a
claim row with the calibrated t-interval, ``mde`` and the ``underpowered`` rule (< 3 seeds) of
:func:`rlbook.analysis.stats.evaluate_claim`, and :func:`lab_claims` gives the lab's claims their verdicts together (:func:`rlbook.analysis.stats.assign_verdicts`).

NGRPO's claim ("learns from all-wrong groups") needs more than one Bernoulli arm: with one right and one wrong
answer, pushing the sampled wrong answer down *is* pushing the right one up, so NGRPO's update on an all-wrong
group points the right way by construction (a unit test, not a claim).  :class:`Categorical` gives each prompt
``K`` answers, one right and ``K - 1`` wrong with one dominant wrong answer (as a language model has a typical
wrong answer); an all-wrong group then pushes down the wrong answers it *sampled*, and whether the right
answer's probability rises depends on where the freed mass goes.  The measurement is the one the issue asks of
the language-model notebook: the change of log pi(right answer) on the all-wrong prompts after one update.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from rlbook.analysis import simlab, stats
from rlbook.core.errors import ParamError
from rlbook.mechanisms import estimators

# ------------------------------------------------------------------------------ categorical bandit


@dataclass
class Categorical:
    """N prompts, each a softmax policy over K answers (``logits`` [N, K]); answer 0 is right (reward 1)."""

    logits: Tensor

    def __post_init__(self) -> None:
        self.logits = self.logits.to(torch.float64)

    def probs(self) -> Tensor:
        return torch.softmax(self.logits, -1)

    def sample(self, group_size: int, gen: torch.Generator) -> Tensor:
        """[N, G] answer indices."""
        return torch.multinomial(self.probs(), group_size, replacement=True, generator=gen)


def categorical_set(p_range: Sequence[float], n_prompts: int, n_answers: int = 4, decay: float = 0.5) -> Tensor:
    """Logits [N, K]: the right answer's probability evenly spread over ``p_range``; the rest split over the
    K - 1 wrong answers in proportion to 1, decay, decay^2, ... (one dominant wrong answer)."""
    if n_answers < 3:
        raise ParamError(f"n_answers={n_answers!r} must be >= 3 (one right, several wrong answers)")
    if not 0.0 < decay <= 1.0:
        raise ParamError(f"decay={decay!r} must be in (0, 1]")
    p = torch.sigmoid(simlab.prompt_set(p_range, n_prompts))  # checks the range
    w = decay ** torch.arange(n_answers - 1, dtype=torch.float64)
    wrong = (1.0 - p).unsqueeze(-1) * (w / w.sum())
    return torch.cat([p.unsqueeze(-1), wrong], dim=-1).log()


def categorical_context(answers: Tensor) -> dict[str, Any]:
    """The estimator context of a categorical batch: rewards, correctness and answer ids are real; lengths
    (16 tokens each) and the reference log-ratios (0) are placeholders."""
    n, g = answers.shape
    r = (answers == 0).float()
    lengths = torch.full((n, g), 16.0)
    return {"lengths": lengths, "reward_parts": r.unsqueeze(-1), "part_weights": torch.tensor([1.0]),
            "correct": answers == 0, "answer_ids": answers.long(), "prompt_ids": torch.arange(n),
            "seq_log_ratio": torch.zeros(n, g), "token_log_ratio": torch.zeros(n, g, simlab.MAX_NEW_TOKENS),
            "spo_drift": torch.zeros(n), "max_new_tokens": simlab.MAX_NEW_TOKENS, "step": 0, "total_steps": 1}


def right_logp_change(name: str, bandit: Categorical, answers: Tensor, lr: float = 1.0) -> Tensor:
    """[N]: log pi(right answer) after one SGD step on the logits minus before.  The step is ``lr`` times the
    estimator's per-prompt policy gradient (1/G) sum_j A_j (onehot(y_j) - pi) (the score of a softmax)."""
    rewards = (answers == 0).float()
    adv = estimators.compute(name, rewards, context=categorical_context(answers))
    adv = (adv.mean(-1) if adv.dim() == 3 else adv).to(torch.float64)
    pi = bandit.probs()
    score = torch.nn.functional.one_hot(answers, pi.shape[-1]).to(torch.float64) - pi.unsqueeze(1)
    grad = (adv.unsqueeze(-1) * score).mean(1)
    before = torch.log_softmax(bandit.logits, -1)[:, 0]
    return torch.log_softmax(bandit.logits + lr * grad, -1)[:, 0] - before


def all_wrong_exact(name: str, bandit: Categorical, group_size: int, lr: float = 1.0) -> float:
    """The expected :func:`right_logp_change` over all-wrong groups, exactly: every multiset of G wrong answers
    (counts c over the K - 1 wrong answers; the update depends on the counts only) weighted by its multinomial
    probability G! / prod c_k! prod pi_ik^c_k, summed over prompts and divided by the prompts' total
    probability of an all-wrong group (the expectation of the Monte-Carlo table's per-prompt values)."""
    pi = bandit.probs()
    N, K = pi.shape
    num, den = 0.0, 0.0
    for counts in _compositions(group_size, K - 1):
        answers = torch.tensor([k + 1 for k, c in enumerate(counts) for _ in range(c)]).repeat(N, 1)
        coef = math.factorial(group_size) / math.prod(math.factorial(c) for c in counts)
        w = coef * torch.prod(pi[:, 1:] ** torch.tensor(counts, dtype=torch.float64), dim=-1)
        num += float((w * right_logp_change(name, bandit, answers, lr)).sum())
        den += float(w.sum())
    return num / den


def _compositions(total: int, parts: int) -> list[tuple[int, ...]]:
    """Every tuple of ``parts`` non-negative integers summing to ``total``."""
    if parts == 1:
        return [(total,)]
    return [(first, *rest) for first in range(total + 1) for rest in _compositions(total - first, parts - 1)]


def all_wrong_table(names: Sequence[str], bandit: Categorical, group_size: int, n_batches: int,
                    seeds: Sequence[int], lr: float = 1.0) -> pd.DataFrame:
    """Per (estimator, seed, batch): the mean :func:`right_logp_change` over the batch's all-wrong prompts
    (batches without one are left out, for every estimator alike); ``n_all_wrong`` counts them."""
    rows = []
    for seed in seeds:
        gen = torch.Generator().manual_seed(int(seed))
        for b in range(n_batches):
            answers = bandit.sample(group_size, gen)
            wrong = (answers != 0).all(-1)
            if not bool(wrong.any()):
                continue
            for name in names:
                delta = right_logp_change(name, bandit, answers, lr)[wrong]
                rows.append({"method": name, "seed": int(seed), "unit": b, "value": float(delta.mean()),
                             "n_all_wrong": int(wrong.sum())})
    return pd.DataFrame(rows, columns=["method", "seed", "unit", "value", "n_all_wrong"])


# ------------------------------------------------------------------------------ tables


def variance_table(names: Sequence[str], bandit: simlab.Bandit, group_size: int, n_batches: int,
                   seeds: Sequence[int]) -> pd.DataFrame:
    """Per (estimator, seed, batch): ||g_b - gbar||^2 / ||gbar||^2 with gbar the run's mean estimate (scale-free:
    an estimator is not credited for shrinking its advantages)."""
    rows = []
    for seed in seeds:
        batches = simlab.sample_batches(bandit, group_size, n_batches, int(seed))
        for name in names:
            for b, v in enumerate(simlab.per_batch_rel_variance(simlab.mc_estimates(name, batches))):
                rows.append({"method": name, "seed": int(seed), "unit": b, "value": float(v)})
    return pd.DataFrame(rows)


def medium_contrast(estimates: np.ndarray, p: np.ndarray, medium: tuple[float, float] = (0.35, 0.65),
                    extreme: float = 0.15) -> np.ndarray:
    """Per batch: (mean update on medium prompts - mean update on extreme prompts) / mean update overall."""
    med = (p >= medium[0]) & (p <= medium[1])
    ext = (p <= extreme) | (p >= 1 - extreme)
    overall = estimates.mean(1)
    return (estimates[:, med].mean(1) - estimates[:, ext].mean(1)) / np.where(overall != 0, overall, np.nan)


def medium_table(bandit: simlab.Bandit, group_size: int, n_batches: int, seeds: Sequence[int]) -> pd.DataFrame:
    """GRPO's medium-vs-extreme contrast per (seed, batch) (method ``grpo``), and the same minus the exact
    gradient's own contrast (method ``grpo - exact``)."""
    p = bandit.probs().numpy()
    exact = float(medium_contrast(bandit.true_gradient().numpy()[None, :], p)[0])
    rows = []
    for seed in seeds:
        c = medium_contrast(simlab.mc_estimates("grpo", simlab.sample_batches(bandit, group_size, n_batches,
                                                                                int(seed))).estimates, p)
        for b, v in enumerate(c):
            if np.isfinite(v):
                rows += [{"method": "grpo", "seed": int(seed), "unit": b, "value": float(v)},
                         {"method": "grpo - exact", "seed": int(seed), "unit": b, "value": float(v - exact)}]
    return pd.DataFrame(rows)


def medium_exact(bandit: simlab.Bandit, group_size: int) -> dict[str, float]:
    """:func:`medium_contrast` of GRPO's *expected* update (:func:`rlbook.analysis.simlab.grpo_expected_update`, exact) and
    of the exact gradient p (1 - p), and their difference: the analytic values of the lab's medium-difficulty rows."""
    p = bandit.probs().numpy()
    grpo = float(medium_contrast(simlab.grpo_expected_update(p, group_size)[None, :], p)[0])
    exact = float(medium_contrast(bandit.true_gradient().numpy()[None, :], p)[0])
    return {"grpo": grpo, "exact": exact, "grpo - exact": grpo - exact}


def exact_row(text: str, metric: str, value: float, method: str, baseline: str | None = None,
              paper: str = "") -> dict[str, Any]:
    """A claim row for an analytic fact computed exactly on the bandit: shown as a manipulation check (role
    ``check``, no verdict, no test), its interval the value itself."""
    return {"claim": text, "metric": metric, "role": "check", "primary": False, "method": method,
            "baseline": baseline, "direction": "greater", "margin": 0.0, "scale": "identity", "effect": value,
            "ci_low": value, "ci_high": value, "p_value": math.nan, "p_opposite": math.nan, "df": math.nan,
            "mde": math.nan, "n_seeds": 0, "n_units": 0, "design": "exact", "verdict": "check",
            "reason": "computed exactly on the bandit (closed form), not estimated: no test", "paper": paper}


def auc_table(curves: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """Per (estimator, training seed): the mean expected reward over the training steps (area under the curve
    divided by the steps; the starting point, equal for all, left out)."""
    return pd.DataFrame([{"method": name, "seed": s, "value": float(c[s, 1:].mean())}
                         for name, c in curves.items() for s in range(c.shape[0])])


def stratified_cosines(bandit: simlab.Bandit, group_size: int, n_batches: int, seed: int = 0) -> dict[str, float]:
    """Mean per-batch cosine to the exact gradient on the stratified bandit (GRPO, SAN, blended)."""
    batches = simlab.sample_batches(bandit, group_size, n_batches, seed)
    g = bandit.true_gradient()
    out = {"grpo": simlab.mc_estimates("grpo", batches)}
    out["stratified (SAN)"] = simlab.mc_estimates("stratified", batches, key="part", blend=1.0)
    out["stratified (blend 0.5)"] = simlab.mc_estimates("stratified", batches, key="part", blend=0.5)
    return {k: float(simlab.per_batch_cos(v, g).mean()) for k, v in out.items()}


# ------------------------------------------------------------------------------ claims


def evaluate(text: str, metric: str, table: pd.DataFrame, method: str, baseline: str | None = None,
             direction: str = "greater", margin: float = 0.0, paper: str = "",
             checks: Sequence[tuple[bool, str]] = ()) -> dict[str, Any]:
    """One claim row from a long table (a family of one; :func:`lab_claims` assigns the verdicts across the lab)."""
    names = [method] + ([baseline] if baseline else [])
    if table.empty or not set(names) <= set(table["method"]):
        row = {"claim": text, "metric": metric, "method": method, "baseline": baseline, "direction": direction,
               "margin": margin, "effect": math.nan, "ci_low": math.nan, "ci_high": math.nan, "p_value": math.nan,
               "p_opposite": math.nan, "n_seeds": 0, "n_units": 0, "sd_seeds": math.nan, "within_var": 0.0,
               "verdict": "untestable in this regime", "reason": "nothing was measured (no rows)"}
        return {**row, "paper": paper}
    row = stats.evaluate_claim(text, metric, table[table["method"].isin(names)], method, baseline,
                               direction=direction, margin=margin, checks=checks)
    row["paper"] = paper
    return row


def lab_claims(n_prompts: int, prompt_sets: Mapping[str, Sequence[float]], group_size: int, n_batches: int,
               seeds: Sequence[int], n_answers: int = 4, curves: Mapping[str, Mapping[str, np.ndarray]] | None = None,
               ) -> tuple[list[dict[str, Any]], dict[str, pd.DataFrame]]:
    """Every claim row of the lab (verdicts assigned together) and the tables they were computed from.

    Needs prompt sets named ``mixed`` and ``hard``.  ``curves`` (set -> estimator -> [seeds, steps + 1]) adds the
    training claim NGRPO > GRPO on the hard set when both were trained.
    """
    for key in ("mixed", "hard"):
        if key not in prompt_sets:
            raise ParamError(f"prompt_sets needs a {key!r} set for the claims; has {', '.join(prompt_sets)}")
    mixed = simlab.Bandit(simlab.prompt_set(prompt_sets["mixed"], n_prompts))
    hard = Categorical(categorical_set(prompt_sets["hard"], n_prompts, n_answers))
    tables = {"rel_variance": variance_table(["bnpo", "grpo", "reinforce_baseline"], mixed, group_size, n_batches,
                                             seeds),
              "all_wrong_logp_change": all_wrong_table(["ngrpo", "grpo"], hard, group_size, n_batches, seeds),
              "medium_contrast": medium_table(mixed, group_size, n_batches, seeds)}
    g = f"G={group_size}"
    rows = [evaluate(f"BNPO's gradient has a lower relative variance than {b}", f"relative variance ({g}, mixed)",
                     tables["rel_variance"], "bnpo", b, "less",
                     paper="'more precise and lower-variance gradient estimation' (BNPO abstract)")
            for b in ("grpo", "reinforce_baseline")]
    # analytic facts of the bandits: exact values (manipulation checks), not Monte-Carlo t-tests
    wrong = {name: all_wrong_exact(name, hard, group_size) for name in ("ngrpo", "grpo")}
    medium = medium_exact(mixed, group_size)
    tables["exact"] = pd.DataFrame([{"quantity": f"all-wrong change of log pi(right), {k}", "value": v}
                                    for k, v in wrong.items()]
                                   + [{"quantity": f"medium contrast, {k}", "value": v} for k, v in medium.items()])
    rows.append(exact_row("NGRPO's update on an all-wrong group raises log pi(right answer); GRPO's is zero",
                          f"expected change of log pi(right) after one step over all-wrong groups ({g}, {n_answers} "
                          "answers; exact)", wrong["ngrpo"] - wrong["grpo"], "ngrpo", "grpo",
                          paper="'convert homogeneous errors into robust learning signals' (NGRPO abstract)"))
    rows.append(exact_row("GRPO emphasises medium-difficulty prompts",
                          f"(medium - extreme) / mean of GRPO's expected update ({g}, exact)", medium["grpo"], "grpo",
                          paper="implicit advantage symmetry: GRPO up-weights medium-difficulty prompts"))
    rows.append(exact_row("GRPO's medium-difficulty emphasis compared with the exact policy gradient's (positive: "
                          "sharper; negative: flatter, std normalisation lifts near-0 and near-1 prompts)",
                          f"GRPO's contrast minus the exact gradient's ({g}, exact)", medium["grpo - exact"],
                          "grpo - exact"))
    hard_curves = (curves or {}).get("hard", {})
    if "ngrpo" in hard_curves and "grpo" in hard_curves:
        tables["train_auc"] = auc_table({k: hard_curves[k] for k in ("ngrpo", "grpo")})
        rows.append(evaluate("NGRPO trains faster than GRPO from a hard start", "mean expected reward over training "
                             "(hard set, Bernoulli bandit)", tables["train_auc"], "ngrpo", "grpo", "greater",
                             paper="NGRPO outperforms GRPO (MATH500, AMC23, AIME2025)"))
    return stats.assign_verdicts(rows), tables
