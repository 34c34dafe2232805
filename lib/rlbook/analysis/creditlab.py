"""Measurements the credit-assignment notebooks share: curves against generated tokens, training-metric tables for
claims, the implicit PRM against the oracle over training, and each method's step-level credit against the oracle
paired with outcome-only credit on the same lines (:func:`credit_vs_outcome`).

Every token a method generated counts (``gen_tokens``: rollouts, the groups a filter dropped included;
``extra_gen_tokens``: Monte Carlo continuations, critiques, a PRM's warm-up rollouts), so methods that pay for
their process signal with generation are compared at equal cost (``TrainConfig.gen_token_budget``).  The
step-level numbers come from the ``credit_audit`` phase (``rlbook.mechanisms.process``) and the PRM phase (``rlbook.mechanisms.prm``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from rlbook.analysis import metrics, report, study

CREDIT_COLUMNS = (("credit_auc", "credit AUC (all calc lines)"),
                  ("outcome_credit_auc", "outcome-only credit AUC (same lines)"),
                  ("credit_pair_acc", "credit order inside completions"),
                  ("process_auc", "process reward AUC"), ("format_share", "line format share"),
                  ("calc_lines", "calc lines per completion"), ("repeated_lines", "repeated lines per completion"))


def with_tokens(metrics: pd.DataFrame) -> pd.DataFrame:
    """``metrics`` with ``tokens``: cumulative generated tokens of each (method, seed), phases' included."""
    df = metrics.copy()
    extra = df["extra_gen_tokens"].fillna(0.0) if "extra_gen_tokens" in df else 0.0
    df["step_tokens"] = df["gen_tokens"].fillna(0.0) + extra
    df["tokens"] = df.groupby(["method", "seed"], sort=False)["step_tokens"].cumsum()
    if "accuracy" in df:  # without a filter every sampled completion is trained on: the two are the same
        df["sampled_accuracy"] = df["sampled_accuracy"].fillna(df["accuracy"]) if "sampled_accuracy" in df \
            else df["accuracy"]
    return df


def on_token_grid(metrics: pd.DataFrame, columns: Sequence[str], points: int = 8) -> pd.DataFrame:
    """Each (method, seed)'s ``columns`` linearly interpolated at ``points`` shared token counts (from the fewest to
    the most tokens any run reached; NaN beyond a run's own range), so that curves of runs whose steps cost
    different numbers of tokens can be averaged."""
    df = with_tokens(metrics)
    grid = np.linspace(float(df["tokens"].min()), float(df["tokens"].max()), points)
    rows = []
    for (method, seed), part in df.groupby(["method", "seed"], sort=False):
        out = {"method": method, "seed": seed}
        vals = {}
        for col in columns:
            have = part.dropna(subset=[col]) if col in part else part.iloc[:0]
            x, y = have["tokens"].to_numpy(float), have[col].to_numpy(float) if len(have) else np.zeros(0)
            vals[col] = (np.interp(grid, x, y, left=np.nan, right=np.nan) if len(x) > 1
                         else np.where(np.isclose(grid, x[0]), y[0], np.nan) if len(x) == 1 else np.full(points, np.nan))
        for i, g in enumerate(grid):
            rows.append({**out, "tokens": float(g), **{c: float(vals[c][i]) for c in columns}})
    return pd.DataFrame(rows)


# every credit notebook's panels against generated tokens; a notebook adds its mechanism's own signal
TOKEN_PANELS = (("sampled_accuracy", "accuracy of every sampled completion"),
                ("credit_pair_acc", "credit order inside completions"), ("response_length", "response length"))


def tokens_figure(res: study.StudyResult, panels: Sequence[tuple[str, str]] = (), name: str = "curves_vs_tokens",
                  points: int = 8) -> Any:
    """:data:`TOKEN_PANELS` and ``panels`` (a mechanism's own signals) against cumulative generated tokens (mean
    across seeds, band), saved; a panel whose metric no run logged is left out."""
    metrics = with_tokens(res.sweep.metrics).drop(columns=["tokens", "step_tokens"])
    panels = [(c, lab) for c, lab in [*TOKEN_PANELS, *panels] if c in metrics]
    grid = on_token_grid(metrics, [c for c, _ in panels], points)
    fig = report.method_curves(grid, panels, x="tokens", title=f"{res.study.title or res.study.name}: per generated token")
    res.run.figure(fig, name)
    return fig


def train_table(res: study.StudyResult, column: str, agg: str = "mean", minus: float = 0.0,
                methods: Sequence[str] | None = None) -> pd.DataFrame:
    """A claim table ``method, seed, value``: a training metric aggregated over each run's steps (``agg``: mean,
    last3, first, max, min; NaN steps skipped) minus ``minus`` (e.g. 0.5 for an AUC against chance)."""
    m = res.sweep.metrics
    if column not in m:
        return pd.DataFrame(columns=["method", "seed", "value"])
    rows = [{"method": meth, "seed": s, "value": metrics.AGGS[agg](part[column].dropna()) - minus}
            for (meth, s), part in m.groupby(["method", "seed"], sort=False)
            if (methods is None or meth in methods) and part[column].notna().any()]
    return pd.DataFrame(rows)


OUTCOME_CREDIT = " (outcome-only credit)"


def outcome_label(method: str) -> str:
    """The name, in :func:`credit_vs_outcome`'s table, of outcome-only credit on ``method``'s own lines."""
    return method + OUTCOME_CREDIT


def credit_vs_outcome(res: study.StudyResult, methods: Sequence[str] | None = None) -> pd.DataFrame:
    """A claim table ``method, seed, unit, value`` pairing each method's credit with outcome-only credit on the
    same lines: per audited batch (``unit`` = ``"<seed>:<step>"``: the calc lines of one training step's
    completions), ``value`` is the AUC against the oracle's line labels of the method's step credit
    (``credit_auc``, rows ``method``) and of outcome-only credit, GRPO's advantage of each completion's reward
    spread over its lines, on those same lines (``outcome_credit_auc``, rows :func:`outcome_label`), both from the
    ``credit_audit`` phase (:func:`rlbook.mechanisms.process.audit`).

    So "X's credit is closer to the oracle's than outcome-only credit" is a paired difference per batch of lines,
    not a comparison with a constant (``credit_pair_acc`` of outcome-only credit is 0.5 by construction).  Units
    are nested in seeds (a step of one seed is not a step of another): :func:`rlbook.analysis.stats.compare` uses its
    incomplete-grid test.  A batch without a right and a wrong calc line has no AUC and is left out."""
    m = res.sweep.metrics
    if "credit_auc" not in m or "outcome_credit_auc" not in m:
        return pd.DataFrame(columns=["method", "seed", "unit", "value"])
    rows = []
    for (meth, seed), part in m.groupby(["method", "seed"], sort=False):
        if methods is not None and meth not in methods:
            continue
        for _, r in part.iterrows():
            if not (np.isfinite(r["credit_auc"]) and np.isfinite(r["outcome_credit_auc"])):
                continue
            unit = f"{seed}:{int(r['step'])}"
            rows.append({"method": meth, "seed": seed, "unit": unit, "value": float(r["credit_auc"])})
            rows.append({"method": outcome_label(meth), "seed": seed, "unit": unit,
                         "value": float(r["outcome_credit_auc"])})
    return pd.DataFrame(rows, columns=["method", "seed", "unit", "value"])


def prm_figure(res: study.StudyResult, methods: Sequence[str] | None = None, name: str = "prm_vs_oracle") -> Any:
    """The implicit PRM against the oracle over training: step AUC of its step rewards for oracle-right vs
    oracle-wrong lines (on each step's fresh rollouts, before the PRM trains on them), its pairwise accuracy
    within groups (PRIME's dpo_acc), and its CE loss; mean across seeds with bands."""
    m = res.sweep.metrics
    if methods is not None:
        m = m[m["method"].isin(methods)]
    panels = [("prm_step_auc", "PRM step AUC vs the oracle"), ("prm_dpo_acc", "PRM pairwise accuracy (dpo_acc)"),
              ("prm_loss", "PRM CE loss")]
    fig = report.method_curves(m, panels, x="step", title="implicit PRM against the oracle process reward")
    for ax in fig.axes[:2]:
        ax.axhline(0.5, color="grey", linestyle=":", linewidth=1)
    res.run.figure(fig, name)
    return fig


def credit_table(res: study.StudyResult) -> pd.DataFrame:
    """Per method: runs' steps and generated tokens (phases' share), and the step-level credit against the oracle
    (mean over steps, then over seeds, with the calibrated 95% interval across seeds)."""
    df = with_tokens(res.sweep.metrics)
    df["extra"] = df["extra_gen_tokens"].fillna(0.0) if "extra_gen_tokens" in df else 0.0
    per_run = df.groupby(["method", "seed"], sort=False).agg(steps=("step", "max"), tokens=("tokens", "max"),
                                                              extra=("extra", "sum"))
    out = per_run.groupby("method", sort=False).mean()
    out["extra_share"] = out["extra"] / out["tokens"]
    out = out.drop(columns=["extra"])
    for col, _ in CREDIT_COLUMNS:
        table = train_table(res, col)
        if table.empty:
            continue
        for meth in out.index:
            if meth in set(table["method"]):
                iv = study.interval(table, meth)
                out.loc[meth, col] = iv["mean"]
                if col in ("credit_auc", "outcome_credit_auc", "credit_pair_acc", "process_auc"):
                    out.loc[meth, f"{col}_ci"] = f"[{iv['ci_low']:.3f}, {iv['ci_high']:.3f}]"
    return out.reindex(res.methods)
