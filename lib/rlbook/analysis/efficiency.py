"""Accuracy per token: the efficiency frontier of trained runs, accuracy per 1,000 generated tokens, anytime
accuracy of held-out answers cut at token budgets, and which cached runs another notebook can reuse.

Every number is computed from a :class:`rlbook.analysis.study.StudyResult` (held-out greedy evaluations of each
(method, seed)); intervals are :func:`rlbook.analysis.study.interval` (calibrated t across seeds, floored by the
within-seed variance).  A method is on the frontier when no other method has a higher-or-equal mean accuracy
at a lower-or-equal mean length with one of them strict (seed means; the intervals say how sure that is).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rlbook.analysis import report
from rlbook.analysis.metrics import METRICS, metric_table, outcomes
from rlbook.analysis.study import StudyResult, interval
from rlbook.training import experiments


def accuracy_per_ktokens(res: StudyResult) -> pd.DataFrame:
    """Long table ``method, seed, value``: held-out accuracy per 1,000 generated tokens of each run,
    1000 * (share correct) / (mean completion length)."""
    out = outcomes(res.sweep)
    rows = [{"method": m, "seed": s, "value": 1000.0 * part["correct"].mean() / max(part["length"].mean(), 1e-9)}
            for (m, s), part in out.groupby(["method", "seed"], sort=False)]
    return pd.DataFrame(rows)


def accuracy_per_training_ktokens(res: StudyResult) -> pd.DataFrame:
    """Long table ``method, seed, value``: held-out accuracy per 1,000 tokens generated in training,
    1000 * (share correct) / (the run's training tokens, :data:`rlbook.analysis.study.METRICS` ``train_tokens``): what a
    method's accuracy cost in generation, so methods trained for the same steps compare at equal tokens."""
    acc = outcomes(res.sweep).groupby(["method", "seed"], sort=False)["correct"].mean()
    tokens = METRICS["train_tokens"](res.sweep).set_index(["method", "seed"])["value"]
    rows = [{"method": m, "seed": s, "value": 1000.0 * float(a) / max(float(tokens.loc[(m, s)]), 1e-9)}
            for (m, s), a in acc.items()]
    return pd.DataFrame(rows, columns=["method", "seed", "value"])


def pareto_front(points: Mapping[str, tuple[float, float]]) -> list[str]:
    """Names whose (mean length, accuracy) no other point dominates (length <= and accuracy >=, one strict)."""
    def dominated(a: tuple[float, float]) -> bool:
        return any(b[0] <= a[0] and b[1] >= a[1] and (b[0] < a[0] or b[1] > a[1]) for b in points.values())

    return [name for name, p in points.items() if not dominated(p)]


def frontier_table(res: StudyResult, listed: Sequence[str] = ()) -> pd.DataFrame:
    """Per method: held-out accuracy and mean tokens with their 95% intervals, accuracy per 1,000 tokens with its
    interval, the change in tokens against the base model, the tokens generated in training, and whether the
    method is on the frontier.  ``listed``: every method the frontier should show; those without runs get a row
    of NaN with ``has_runs`` False (never on the frontier), so a missing method is marked, not dropped."""
    acc, length = metric_table(res.sweep, "final_accuracy"), metric_table(res.sweep, "final_length")
    per_k, train = accuracy_per_ktokens(res), METRICS["train_tokens"](res.sweep)
    base_len = float(outcomes(res.sweep, "base")["length"].mean())
    rows = []
    for m in res.methods:
        a, n, k = interval(acc, m), interval(length, m), interval(per_k, m)
        rows.append({"method": m, "accuracy": a["mean"], "acc_low": a["ci_low"], "acc_high": a["ci_high"],
                     "mean_tokens": n["mean"], "tokens_low": n["ci_low"], "tokens_high": n["ci_high"],
                     "tokens_vs_base": n["mean"] / base_len - 1.0, "acc_per_1k_tokens": k["mean"],
                     "per_1k_low": k["ci_low"], "per_1k_high": k["ci_high"],
                     "train_tokens": float(train.loc[train["method"] == m, "value"].mean()),
                     "n_seeds": a["n_seeds"], "has_runs": True})
    rows += [{"method": m, "has_runs": False, "n_seeds": 0} for m in listed if m not in res.methods]
    table = pd.DataFrame(rows).set_index("method")
    ran = table[table["has_runs"]]
    front = pareto_front({m: (r.mean_tokens, r.accuracy) for m, r in ran.iterrows()})
    table["on_frontier"] = [m in front for m in table.index]
    return table


def frontier(res: StudyResult, name: str = "frontier", listed: Sequence[str] = ()) -> pd.DataFrame:
    """For a notebook: the :func:`frontier_table` (``listed`` methods without runs marked), drawn by
    :func:`frontier_plot` (saved as ``figures/<name>.png``)."""
    table = frontier_table(res, listed)
    frontier_plot(res, table, name)
    return table


def finish(res: StudyResult, frontier: pd.DataFrame, **extra: pd.DataFrame) -> Any:
    """A length notebook's conclusion: :meth:`StudyResult.finish` with the family's measured tables
    (``acc_per_1k``: accuracy per 1,000 held-out tokens, ``acc_per_train_1k``: per 1,000 training tokens,
    ``length_change``: held-out length against the base model), the
    notebook's own ``extra`` tables, and the frontier saved in ``results.json``."""
    return res.finish(extra={"acc_per_1k": accuracy_per_ktokens(res), "length_change": length_change(res),
                             "acc_per_train_1k": accuracy_per_training_ktokens(res), **extra},
                      results={"frontier": frontier.reset_index().to_dict("records")})


def frontier_plot(res: StudyResult, table: pd.DataFrame | None = None, name: str = "frontier") -> Any:
    """Accuracy against mean tokens: each method's seed mean with 95% intervals in both directions, single
    seeds faint, the frontier as a staircase, the base model as a star (saved as ``figures/<name>.png``); the
    rows of ``table`` without runs (``has_runs`` False) are named under the axes.
    A t-interval over 3 seeds can leave the possible range; the bars are drawn inside it (accuracy in [0, 1],
    tokens >= 0) and the table keeps the raw interval."""
    import matplotlib.pyplot as plt

    table = frontier_table(res) if table is None else table
    missing = [str(m) for m in table.index[~table["has_runs"]]] if "has_runs" in table else []
    table = table[table["has_runs"]] if "has_runs" in table else table
    fig, ax = plt.subplots(figsize=(7.5, 5.2))
    for m, r in table.iterrows():
        t_lo, a_lo, a_hi = max(r.tokens_low, 0.0), max(r.acc_low, 0.0), min(r.acc_high, 1.0)
        cont = ax.errorbar([r.mean_tokens], [r.accuracy], fmt="o" if r.on_frontier else "s", capsize=3,
                           xerr=[[r.mean_tokens - t_lo], [r.tokens_high - r.mean_tokens]],
                           yerr=[[r.accuracy - a_lo], [a_hi - r.accuracy]], label=str(m))
        runs = res.sweep.final[res.sweep.final["method"] == m]
        ax.scatter(runs["final_response_length"], runs["final_accuracy"], color=cont[0].get_color(), alpha=0.25, s=12)
    front = table[table["on_frontier"]].sort_values("mean_tokens")
    if len(front):
        xs = np.repeat(front["mean_tokens"].to_numpy(), 2)[1:]
        ys = np.repeat(front["accuracy"].to_numpy(), 2)[:-1]
        ax.plot(xs, ys, color="black", lw=1, alpha=0.5, label="frontier")
    base = outcomes(res.sweep, "base")
    ax.scatter([base["length"].mean()], [base["correct"].mean()], marker="*", s=160, color="grey", label="base model")
    ax.set_xlabel("mean tokens per held-out answer")
    ax.set_ylabel("held-out accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))  # outside: never over a point
    if missing:  # listed methods without runs: named under the axes, so the figure says what it lacks
        ax.set_title(f"{len(table)} of {len(table) + len(missing)} methods with runs", fontsize=9)
        fig.subplots_adjust(bottom=0.22)  # room under the axis label for the list
        fig.text(0.01, 0.01, "no runs (make frontier trains them): " + ", ".join(missing), fontsize=6, wrap=True)
    res.run.figure(fig, name)
    return fig


def anytime_accuracy(res: StudyResult, budgets: Sequence[int]) -> pd.DataFrame:
    """Long table ``method, seed, unit, budget, value``: is the held-out answer right when the greedy completion
    is cut after ``budget`` tokens and scored as it stands (no summary is asked for)?  A completion that ended
    within the budget keeps its verdict."""
    from rlbook.data.tasks import make_task
    from rlbook.policy.models import load_tokenizer

    spec = res.specs[0].resolved(0)
    tok, task = load_tokenizer(spec["model"]), make_task(spec["task"])
    rows = []
    for (m, s), ev in res.sweep.evals.items():
        final = ev["final"]
        for u, (text, n, ok) in enumerate(zip(final["completions"], final["lengths"], final["correct"], strict=True)):
            ids = tok(text, add_special_tokens=False)["input_ids"]
            for b in budgets:
                v = ok if n <= b else task.score(task.eval[u], tok.decode(ids[:b], skip_special_tokens=True)) >= 1.0
                rows.append({"method": m, "seed": s, "unit": u, "budget": int(b), "value": float(v)})
    return pd.DataFrame(rows)


def anytime_table(table: pd.DataFrame) -> pd.DataFrame:
    """Mean anytime accuracy per method (rows) and budget (columns), over seeds and problems."""
    return table.groupby(["method", "budget"], sort=False)["value"].mean().unstack("budget")


def cached_methods(methods: Mapping[str, Any], base: Mapping[str, Any], seeds: int,
                   cache: Any) -> dict[str, Any]:
    """The entries of ``methods`` whose runs are already finished in ``cache`` for every seed (trained by the
    method notebooks with the same base config): reused at no cost."""
    out = {}
    for spec, (label, method) in zip(experiments.make_specs(methods, base), methods.items(), strict=True):
        if all(experiments.is_done(Path(cache) / spec.key(s)) for s in range(seeds)):
            out[label] = method
    return out


def method_curves(res: StudyResult, panels: Sequence[tuple[str, str]], name: str = "length_curves") -> Any:
    """Learning curves of the columns in ``panels`` that the runs logged (others are skipped)."""
    have = [(c, t) for c, t in panels if c in res.sweep.metrics.columns and res.sweep.metrics[c].notna().any()]
    fig = report.method_curves(res.sweep.metrics, have, x="step", title=res.study.title or res.study.name)
    res.run.figure(fig, name)
    return fig


def regime_table(res: StudyResult) -> pd.DataFrame:
    """The measured regime: the base model's held-out accuracy and length distribution (tokens), its share of
    truncated answers, and the first training step's sampled accuracy and share of groups with signal."""
    base = outcomes(res.sweep, "base")
    first = res.sweep.metrics[res.sweep.metrics["step"] == res.sweep.metrics["step"].min()]
    q = base["length"].quantile([0.1, 0.5, 0.9])
    row = {"base_accuracy": base["correct"].mean(), "base_mean_tokens": base["length"].mean(),
           "base_std_tokens": base["length"].std(), "base_p10": q[0.1], "base_p50": q[0.5], "base_p90": q[0.9],
           "base_truncated": base["truncated"].mean(), "max_new_tokens": int(res.params["train"]["max_new_tokens"]),
           "first_step_sampled_accuracy": first["accuracy"].mean(),
           "first_step_groups_with_signal": 1.0 - first["zero_adv_group_frac"].mean(),
           "n_problems": len(next(iter(res.sweep.evals.values()))["base"]["correct"])}
    return pd.DataFrame([row]).T.rename(columns={0: "value"})


def completion_metric(res: StudyResult, fn: Any, which: str = "final") -> pd.DataFrame:
    """Long table ``method, seed, unit, value``: ``fn(completion)`` of every held-out answer (e.g. a count of
    reflection words)."""
    rows = [{"method": m, "seed": s, "unit": u, "value": float(fn(text))}
            for (m, s), ev in res.sweep.evals.items() for u, text in enumerate(ev[which]["completions"])]
    return pd.DataFrame(rows)


def length_of(res: StudyResult, correct: bool) -> pd.DataFrame:
    """Long table ``method, seed, value``: mean length of each run's held-out answers that are right
    (``correct=True``) or wrong; NaN for a run with none (the claim then says so)."""
    out = outcomes(res.sweep)
    rows = []
    for (m, s), part in out.groupby(["method", "seed"], sort=False):
        sel = part.loc[part["correct"] == float(correct), "length"]
        rows.append({"method": m, "seed": s, "value": float(sel.mean()) if len(sel) else float("nan")})
    return pd.DataFrame(rows, columns=["method", "seed", "value"])


def anytime_auc(table: pd.DataFrame) -> pd.DataFrame:
    """Long table ``method, seed, unit, value``: the mean over budgets of :func:`anytime_accuracy` (the area
    under the anytime curve with a uniform prior over the budgets)."""
    return table.groupby(["method", "seed", "unit"], sort=False)["value"].mean().reset_index()


def after_answer_share(res: StudyResult) -> pd.DataFrame:
    """Long table ``method, seed, value``: per run, the mean share of characters that follow the first statement
    of the right answer in its correct held-out answers (:func:`rlbook.mechanisms.length.text.first_answer_end`), the
    "external redundancy" DECS and Reconsidering Overthinking penalise."""
    from rlbook.mechanisms.length.text import first_answer_end

    answers = [p.answer for p in _eval_problems(res)]
    rows = []
    for (m, s), ev in res.sweep.evals.items():
        shares = []
        for u, (text, ok) in enumerate(zip(ev["final"]["completions"], ev["final"]["correct"], strict=True)):
            end = first_answer_end(text, answers[u]) if ok and text else None
            if end is not None:
                shares.append((len(text) - end) / len(text))
        rows.append({"method": m, "seed": s, "value": float(np.mean(shares)) if shares else float("nan")})
    return pd.DataFrame(rows, columns=["method", "seed", "value"])


def _eval_problems(res: StudyResult) -> list[Any]:
    from rlbook.data.tasks import make_task

    return make_task(res.specs[0].resolved(0)["task"]).eval


def methods_to_show(run: Any, methods: Mapping[str, Any], reuse: Mapping[str, Any], train_all: bool = False,
                    ) -> dict[str, Any]:
    """``methods`` (trained here if not cached) plus the entries of ``reuse`` already cached by the method
    notebooks (every entry of ``reuse`` when ``train_all``); prints the ones left out."""
    from rlbook.analysis.study import SPEC_KEYS

    if train_all:
        return {**methods, **reuse}
    base = {k: run.params[k] for k in SPEC_KEYS if k in run.params}
    cached = cached_methods(reuse, base, int(run.params["seeds"]), experiments.cache_root(run))
    missing = [m for m in reuse if m not in cached]
    print(f"reused from the cache: {', '.join(cached) or 'none'}")
    if missing:
        print(f"not cached (run their notebooks with the same profile, or set train_all): {', '.join(missing)}")
    return {**methods, **cached}


def length_change(res: StudyResult) -> pd.DataFrame:
    """Long table ``method, seed, unit, value``: each held-out answer's length after training minus the base
    model's answer to the same problem (tokens; negative = shorter than the base model)."""
    final, base = outcomes(res.sweep, "final"), outcomes(res.sweep, "base")
    return final.assign(value=final["length"] - base["length"])[["method", "seed", "unit", "value"]]
