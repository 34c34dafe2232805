"""A study's metrics: the long tables ``method, seed[, unit], value`` that claims are tested on.

:data:`METRICS` names the held-out metrics (per problem: ``final_accuracy``, ``final_length``,
``accuracy_gain`` ...; per run, from the held-out curves: ``eval_auc``, ``eval_drawdown``, ``eval_std``);
``train:<column>:<agg>`` aggregates a training metric over each run's steps (:data:`AGGS`); a measurement the
notebook passes (``extra``) is used as given.  :func:`metric_scale` is the scale a metric declares (``log1p``
for counts).  Claims and verdicts: :mod:`rlbook.analysis.study`; regime checks: :mod:`rlbook.analysis.regimes`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from rlbook.core.errors import ParamError

if TYPE_CHECKING:
    from rlbook.training import experiments

COUNT_METRICS = ("length", "after_answer", "reflections", "repeated_lines", "tokens")
DIFFERENCE_METRICS = ("length_change", "length_wrong_change", "growth")


def metric_scale(metric: str) -> str:
    """The scale a metric declares: ``log1p`` for lengths and other token or line counts (a ratio of two
    methods' counts is what length claims mean; counts can be 0), ``identity`` for accuracies, rates and
    differences (e.g. ``length_change``, a change from the base model, can be negative)."""
    name = metric.lower()
    if any(d in name for d in DIFFERENCE_METRICS):
        return "identity"
    return "log1p" if any(c in name for c in COUNT_METRICS) else "identity"


def outcomes(res: experiments.SweepResult, which: str = "final") -> pd.DataFrame:
    """Per-problem held-out outcomes, one row per (method, seed, problem): correct, length, formatted,
    truncated (``which="base"``: the base model's, the same for every method)."""
    rows = []
    for (method, seed), ev in res.evals.items():
        e = ev[which]
        n = len(e["correct"])
        for unit in range(n):
            rows.append({"method": method, "seed": seed, "unit": unit, "correct": float(e["correct"][unit]),
                         "length": float(e["lengths"][unit]),
                         "formatted": float(e.get("formatted", [math.nan] * n)[unit]),
                         "truncated": float(e.get("truncated", [math.nan] * n)[unit])})
    return pd.DataFrame(rows)


def _held_out(column: str) -> Callable[[experiments.SweepResult], pd.DataFrame]:
    def metric(res: experiments.SweepResult) -> pd.DataFrame:
        return outcomes(res).rename(columns={column: "value"})[["method", "seed", "unit", "value"]]

    return metric


def _length_if_wrong(res: experiments.SweepResult) -> pd.DataFrame:
    """Held-out length of each answer the trained policy got wrong (NaN where it was right): Dr. GRPO's
    length bias of wrong answers.  Paired claims keep the problems both methods got wrong."""
    final = outcomes(res)
    return final.assign(value=final["length"].where(final["correct"] == 0.0))[["method", "seed", "unit", "value"]]


def _length_wrong_change(res: experiments.SweepResult) -> pd.DataFrame:
    """Per held-out problem the trained policy got wrong: its answer's length minus the base model's answer
    length on the same problem (NaN where the trained policy was right)."""
    final, base = outcomes(res, "final"), outcomes(res, "base")
    change = (final["length"] - base["length"]).where(final["correct"] == 0.0)
    return final.assign(value=change)[["method", "seed", "unit", "value"]]


def _train_tokens(res: experiments.SweepResult) -> pd.DataFrame:
    """Long table ``method, seed, value``: the tokens each run generated while training, summed over its steps:
    ``gen_tokens`` (every rollout, the groups a filter dropped and refilled included) plus ``extra_gen_tokens``
    (phases' own generations: answers after prefixes, continuations), as ``Trainer.generated_tokens`` counts."""
    m = res.metrics
    extra = m["extra_gen_tokens"].fillna(0.0) if "extra_gen_tokens" in m else 0.0
    out = m.assign(value=m["gen_tokens"] + extra).groupby(["method", "seed"], sort=False)["value"].sum()
    return out.reset_index().astype({"value": float})


def _accuracy_gain(res: experiments.SweepResult) -> pd.DataFrame:
    final, base = outcomes(res, "final"), outcomes(res, "base")
    return final.assign(value=final["correct"] - base["correct"])[["method", "seed", "unit", "value"]]


def held_out_curves(res: experiments.SweepResult) -> dict[tuple[str, int], np.ndarray]:
    """Each run's held-out accuracy curve on the trainer's fixed evaluation problems (``train.eval_every``,
    ``train.eval_size``): the base model's accuracy on those problems first, then every evaluation."""
    if "eval_accuracy" not in res.metrics or res.metrics["eval_accuracy"].isna().all():
        raise ParamError("held-out curves need train.eval_every > 0 (evaluations during training)")
    out = {}
    for (method, seed), part in res.metrics.groupby(["method", "seed"], sort=False):
        evals = part["eval_accuracy"].dropna().to_numpy()
        n = int(part["eval_n"].dropna().iloc[0])
        base = float(np.mean(res.evals[(method, seed)]["base"]["correct"][:n]))
        out[(method, seed)] = np.concatenate([[base], evals])
    return out


def _curve_metric(stat: Callable[[np.ndarray], float]) -> Callable[[experiments.SweepResult], pd.DataFrame]:
    def metric(res: experiments.SweepResult) -> pd.DataFrame:
        return pd.DataFrame([{"method": m, "seed": s, "value": stat(c)} for (m, s), c in held_out_curves(res).items()])

    return metric


def drawdown(curve: np.ndarray) -> float:
    """The largest fall of a curve below its running maximum (0 for a curve that never falls)."""
    return float((np.maximum.accumulate(curve) - curve).max())


AGGS: dict[str, Callable[[pd.Series], float]] = {
    "mean": lambda s: float(s.mean()), "first": lambda s: float(s.iloc[0]), "last3": lambda s: float(s.iloc[-3:].mean()),
    "max": lambda s: float(s.max()), "min": lambda s: float(s.min()),
    # change over training: mean of the last three steps minus mean of the first three
    "growth": lambda s: float(s.iloc[-3:].mean() - s.iloc[:3].mean()),
}


def _train_metric(res: experiments.SweepResult, column: str, agg: str) -> pd.DataFrame:
    if column not in res.metrics:
        raise ParamError(f"training metric {column!r} is not in the runs' metrics; have: {', '.join(res.metrics)}")
    if agg not in AGGS:
        raise ParamError(f"aggregation {agg!r} is not allowed; allowed: {', '.join(AGGS)}")
    rows = [{"method": m, "seed": s, "value": AGGS[agg](part[column].dropna())}
            for (m, s), part in res.metrics.groupby(["method", "seed"], sort=False) if part[column].notna().any()]
    return pd.DataFrame(rows, columns=["method", "seed", "value"])


METRICS: dict[str, Callable[[experiments.SweepResult], pd.DataFrame]] = {
    "final_accuracy": _held_out("correct"),
    "final_length": _held_out("length"),
    "final_format": _held_out("formatted"),
    "final_truncated": _held_out("truncated"),
    "final_length_wrong": _length_if_wrong,
    "length_wrong_change": _length_wrong_change,
    "accuracy_gain": _accuracy_gain,
    "train_tokens": _train_tokens,
    # held-out curves (train.eval_every): speed and stability on a fixed problem set
    "eval_auc": _curve_metric(lambda c: float(np.mean(c[1:]))),  # mean held-out accuracy over the evaluations
    "eval_drawdown": _curve_metric(drawdown),  # largest fall below the best held-out accuracy so far
    "eval_std": _curve_metric(lambda c: float(np.std(np.diff(c)))),  # spread of the changes between evaluations
}


def metric_table(res: experiments.SweepResult, metric: str, extra: Mapping[str, pd.DataFrame] | None = None) -> pd.DataFrame:
    """The long table ``method, seed[, unit], value`` of ``metric`` (a :data:`METRICS` name, ``train:<col>:<agg>``,
    or a name in ``extra``)."""
    if extra and metric in extra:
        return extra[metric]
    if metric in METRICS:
        return METRICS[metric](res)
    if metric.startswith("train:"):
        _, column, agg = (metric.split(":") + ["mean"])[:3]
        return _train_metric(res, column, agg)
    raise ParamError(f"unknown metric {metric!r}; allowed: {', '.join(METRICS)}, train:<column>:<agg>, "
                     f"or a measurement passed as extra ({', '.join(extra or {}) or 'none given'})")
