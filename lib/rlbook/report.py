"""Statistics and figures shared by the notebooks: bootstrap CIs, claim verdicts, learning curves.

Every claim a notebook checks ("method beats baseline", "accuracy at least GRPO's") becomes one row
of a claim table: the effect, its percentile-bootstrap 95% interval across seeds, and a verdict
(:func:`verdict`) that is ``replicated`` only when the whole interval lies on the claimed side.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

Stat = Callable[..., Any]
DIRECTIONS = ("greater", "less", "not_less")
VERDICTS = ("replicated", "not replicated", "inconclusive")
CLAIM_COLUMNS = ["claim", "metric", "method", "baseline", "effect", "ci_low", "ci_high", "verdict", "n"]


def _as_array(values: Iterable[float], name: str = "values") -> np.ndarray:
    x = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=float).ravel()
    if x.size == 0:
        raise ValueError(f"{name} is empty")
    return x


def _stat_rows(stat: Stat, samples: np.ndarray) -> np.ndarray:
    """``stat`` over each row of ``samples`` ([n_boot, n]); vectorised when ``stat`` takes ``axis``."""
    try:
        out = np.asarray(stat(samples, axis=1), dtype=float)
        if out.shape == (samples.shape[0],):
            return out
    except TypeError:
        pass
    return np.array([float(stat(row)) for row in samples])


def _interval(boot: np.ndarray, level: float) -> tuple[float, float]:
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(boot, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def bootstrap_ci(
    values: Iterable[float], stat: Stat = np.mean, n_boot: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """Percentile bootstrap: ``(stat(values), lo, hi)``.  One value gives ``lo = hi = est``."""
    x = _as_array(values)
    est = float(stat(x))
    if x.size == 1:
        return est, est, est
    rng = np.random.default_rng(seed)
    boot = _stat_rows(stat, x[rng.integers(0, x.size, size=(n_boot, x.size))])
    return (est, *_interval(boot, level))


def paired_diff_ci(
    a: Iterable[float],
    b: Iterable[float],
    stat: Stat = np.mean,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Bootstrap of ``stat(a_i - b_i)`` over pairs (e.g. method and baseline run with the same seeds)."""
    xa, xb = _as_array(a, "a"), _as_array(b, "b")
    if xa.shape != xb.shape:
        raise ValueError(f"paired values need equal lengths, got {xa.size} and {xb.size}")
    return bootstrap_ci(xa - xb, stat=stat, n_boot=n_boot, level=level, seed=seed)


def unpaired_diff_ci(
    a: Iterable[float],
    b: Iterable[float],
    stat: Stat = np.mean,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Bootstrap of ``stat(a) - stat(b)``, resampling the two groups independently."""
    xa, xb = _as_array(a, "a"), _as_array(b, "b")
    est = float(stat(xa)) - float(stat(xb))
    if xa.size == 1 and xb.size == 1:
        return est, est, est
    rng = np.random.default_rng(seed)
    boot_a = _stat_rows(stat, xa[rng.integers(0, xa.size, size=(n_boot, xa.size))])
    boot_b = _stat_rows(stat, xb[rng.integers(0, xb.size, size=(n_boot, xb.size))])
    return (est, *_interval(boot_a - boot_b, level))


def verdict(lo: float, hi: float, direction: str = "greater", margin: float = 0.0) -> str:
    """``replicated`` / ``not replicated`` / ``inconclusive`` from an effect's interval ``[lo, hi]``.

    * ``greater``: the effect is above ``margin`` (lo > margin), refuted when hi < margin.
    * ``less``: the effect is below ``-margin`` (hi < -margin), refuted when lo > -margin.
    * ``not_less`` (non-inferiority, "at least the baseline's"): lo > -margin, refuted when hi < -margin.
    """
    if direction == "greater":
        yes, no = lo > margin, hi < margin
    elif direction == "less":
        yes, no = hi < -margin, lo > -margin
    elif direction == "not_less":
        yes, no = lo > -margin, hi < -margin
    else:
        raise ValueError(f"direction={direction!r} is not allowed; allowed: {', '.join(DIRECTIONS)}")
    return "replicated" if yes else "not replicated" if no else "inconclusive"


def claim(
    claim: str,
    metric: str,
    baseline: str | None,
    method_values: Sequence[float],
    baseline_values: Sequence[float] | None = None,
    direction: str = "greater",
    paired: bool = True,
    margin: float = 0.0,
    method: str | None = None,
    **ci_kwargs: Any,
) -> dict[str, Any]:
    """One row of a claim table.

    ``baseline_values=None`` means ``method_values`` are already effects (compared with 0).
    ``paired=True`` pairs the i-th method value with the i-th baseline value (same seed).
    Extra keyword arguments (``n_boot``, ``level``, ``seed``, ``stat``) go to the bootstrap.
    """
    if baseline_values is None:
        est, lo, hi = bootstrap_ci(method_values, **ci_kwargs)
    elif paired:
        est, lo, hi = paired_diff_ci(method_values, baseline_values, **ci_kwargs)
    else:
        est, lo, hi = unpaired_diff_ci(method_values, baseline_values, **ci_kwargs)
    return {
        "claim": claim,
        "metric": metric,
        "method": method,
        "baseline": baseline,
        "effect": est,
        "ci_low": lo,
        "ci_high": hi,
        "verdict": verdict(lo, hi, direction, margin),
        "n": len(method_values),
    }


def claim_table(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Claim rows (from :func:`claim`) as a DataFrame with the standard columns first."""
    df = pd.DataFrame(list(rows))
    if df.empty:
        return pd.DataFrame(columns=CLAIM_COLUMNS)
    extra = [c for c in df.columns if c not in CLAIM_COLUMNS]
    return df.reindex(columns=CLAIM_COLUMNS + extra)


def verdict_counts(rows: Iterable[dict[str, Any]]) -> dict[str, int]:
    """How many claims got each verdict (zero counts included)."""
    counts = dict.fromkeys(VERDICTS, 0)
    for row in rows:
        counts[row["verdict"]] = counts.get(row["verdict"], 0) + 1
    return counts


def _band(values: pd.Series, n_boot: int, level: float, seed: int) -> pd.Series:
    est, lo, hi = bootstrap_ci(values.dropna().to_numpy(), n_boot=n_boot, level=level, seed=seed)
    return pd.Series({"mean": est, "lo": lo, "hi": hi, "n": int(values.notna().sum())})


def curve_band(
    df: pd.DataFrame,
    x: str,
    y: str,
    group: str | None = None,
    seed_col: str | None = "seed",
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Mean of ``y`` across seeds at each ``x`` (per ``group``), with a bootstrap band.

    Rows repeated within one seed at the same ``x`` are averaged first, so the band is across seeds.
    Returns columns ``[group], x, mean, lo, hi, n``.
    """
    keys = ([group] if group else []) + [x]
    data = df[df[y].notna()]
    if seed_col and seed_col in data.columns:
        data = data.groupby(keys + [seed_col], as_index=False, sort=False)[y].mean()
    out = data.groupby(keys, sort=True)[y].apply(lambda v: _band(v, n_boot, level, seed)).unstack()
    out = out.reset_index()
    out["n"] = out["n"].astype(int)
    return out


def plot_curves(
    ax: Any, df: pd.DataFrame, x: str, y: str, hue: str | None = None, seed_col: str = "seed"
) -> Any:
    """Mean line and 95% bootstrap band across seeds, one per ``hue`` value; returns ``ax``."""
    band = curve_band(df, x, y, group=hue, seed_col=seed_col)
    groups = band.groupby(hue, sort=False) if hue else [(None, band)]
    for name, part in groups:
        (line,) = ax.plot(part[x], part["mean"], label=None if name is None else str(name))
        ax.fill_between(part[x], part["lo"], part["hi"], color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    if hue:
        ax.legend(title=hue)
    return ax


def _first_reaching(part: pd.DataFrame, x: str, y: str, target: float) -> float:
    curve = part.groupby(x, sort=True)[y].mean()
    hit = curve[curve >= target]
    return float(hit.index[0]) if len(hit) else float("nan")


def samples_to_target(
    df: pd.DataFrame, x: str, y: str, target: float, by: str | list[str] | None = None
) -> float | pd.Series:
    """The first ``x`` (e.g. samples seen) at which the mean ``y`` reaches ``target``; NaN if never.

    With ``by`` (e.g. ``"method"`` or ``["method", "seed"]``) returns a Series, one value per group.
    """
    if by is None:
        return _first_reaching(df, x, y, target)
    return pd.Series({name: _first_reaching(part, x, y, target) for name, part in df.groupby(by, sort=True)})


TRAINING_PANELS = (
    ("reward_mean", "reward (mean)"),
    ("accuracy", "train accuracy"),
    ("response_length", "response length (tokens)"),
    ("zero_adv_group_frac", "share of zero-advantage groups"),
    ("entropy", "token entropy"),
    ("step_s", "seconds per step"),
)


def training_dashboard(history: pd.DataFrame | Sequence[dict[str, Any]], title: str = "") -> Any:
    """One figure with the per-step training metrics of a run (reward, accuracy, length, ...)."""
    import matplotlib.pyplot as plt

    df = pd.DataFrame(history)
    panels = [(k, label) for k, label in TRAINING_PANELS if k in df]
    fig, axes = plt.subplots(2, (len(panels) + 1) // 2, figsize=(4 * ((len(panels) + 1) // 2), 6), squeeze=False)
    for ax, (key, label) in zip(axes.flat, panels, strict=False):
        ax.plot(df["step"], df[key], marker="o", markersize=3)
        if "eval_accuracy" in df and key == "accuracy":
            ev = df.dropna(subset=["eval_accuracy"])
            ax.plot(ev["step"], ev["eval_accuracy"], marker="s", label="held-out (greedy)")
            ax.legend()
        ax.set_title(label)
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def side_by_side(questions: Sequence[str], answers: Sequence[str], **columns: Sequence[Any]) -> pd.DataFrame:
    """A table of questions, reference answers and one column per named list of completions/scores."""
    data: dict[str, Sequence[Any]] = {"question": list(questions), "answer": list(answers)}
    for name, values in columns.items():
        data[name] = list(values)[: len(questions)]
    return pd.DataFrame(data)


# ---------------------------------------------------------------- multi-seed method comparisons
# (inputs: ``rlbook.experiments.SweepResult.metrics`` / ``.final``, one row per step / per (method, seed))


def final_table(
    final: pd.DataFrame,
    metric: str = "final_accuracy",
    baseline: str | None = None,
    method_col: str = "method",
    seed_col: str = "seed",
    **ci_kwargs: Any,
) -> pd.DataFrame:
    """Per method: mean of ``metric`` across seeds with its bootstrap CI, and the paired difference
    against ``baseline`` (same seeds) with its CI.  Columns ``mean, ci_low, ci_high, n`` and, with a
    baseline, ``diff, diff_low, diff_high``; indexed by method in order of appearance."""
    rows = []
    wide = final.pivot(index=seed_col, columns=method_col, values=metric)
    for method in dict.fromkeys(final[method_col]):
        vals = wide[method].dropna()
        est, lo, hi = bootstrap_ci(vals.to_numpy(), **ci_kwargs) if len(vals) else (np.nan,) * 3
        row: dict[str, Any] = {"method": method, "mean": est, "ci_low": lo, "ci_high": hi, "n": len(vals)}
        if baseline is not None:
            pair = wide[[method, baseline]].dropna()
            if method == baseline or pair.empty:
                d = (0.0, 0.0, 0.0) if method == baseline else (np.nan,) * 3
            else:
                d = paired_diff_ci(pair[method].to_numpy(), pair[baseline].to_numpy(), **ci_kwargs)
            row.update(diff=d[0], diff_low=d[1], diff_high=d[2])
        rows.append(row)
    return pd.DataFrame(rows).set_index("method")


def claim_vs(
    claim_text: str,
    metric: str,
    wide: pd.DataFrame,
    method: str,
    baseline: str | None,
    direction: str = "greater",
    margin: float = 0.0,
    min_seeds: int = 2,
    **ci_kwargs: Any,
) -> dict[str, Any]:
    """A :func:`claim` row from a per-seed table (index seed, one column per method): ``method`` minus
    ``baseline`` paired by seed (seeds where either is NaN are left out), or ``method`` against 0 when
    ``baseline`` is None.  Fewer than ``min_seeds`` pairs give ``inconclusive`` whatever the effect."""
    cols = [method] + ([baseline] if baseline else [])
    pair = wide[cols].dropna()
    if pair.empty:
        return {"claim": claim_text, "metric": metric, "method": method, "baseline": baseline, "effect": np.nan,
                "ci_low": np.nan, "ci_high": np.nan, "verdict": "inconclusive", "n": 0}
    base_vals = pair[baseline].to_numpy() if baseline else None
    row = claim(claim_text, metric, baseline, pair[method].to_numpy(), base_vals, direction=direction,
                margin=margin, method=method, **ci_kwargs)
    if row["n"] < min_seeds:  # one seed has a zero-width interval: no verdict from it
        row["verdict"] = "inconclusive"
    return row


def method_curves(
    metrics: pd.DataFrame,
    panels: Sequence[tuple[str, str]],
    x: str = "step",
    hue: str = "method",
    title: str = "",
    ncols: int = 3,
) -> Any:
    """One panel per ``(column, label)``: mean across seeds with a 95% bootstrap band, one line per method.
    Columns missing from ``metrics`` (or all NaN) are skipped."""
    import matplotlib.pyplot as plt

    panels = [(c, lab) for c, lab in panels if c in metrics and metrics[c].notna().any()]
    ncols = max(1, min(ncols, len(panels)))
    nrows = max(1, -(-len(panels) // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.3 * nrows), squeeze=False)
    for ax, (col, label) in zip(axes.flat, panels, strict=False):
        plot_curves(ax, metrics, x, col, hue=hue)
        ax.set_title(label)
        ax.set_ylabel(label)
        if ax is not axes.flat[0] and ax.get_legend():
            ax.get_legend().remove()
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def pareto_plot(
    final: pd.DataFrame,
    x: str = "final_response_length",
    y: str = "final_accuracy",
    method_col: str = "method",
    ax: Any = None,
    xlabel: str = "mean response length (tokens)",
    ylabel: str = "held-out accuracy",
) -> Any:
    """Accuracy against mean response length, one point per method at the seed means, with 95% bootstrap
    CI crosses in both directions and the single seeds as faint dots (the Pareto view of length methods)."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 4.2))
    for method, part in final.groupby(method_col, sort=False):
        xs, ys = part[x].dropna().to_numpy(), part[y].dropna().to_numpy()
        if not len(xs) or not len(ys):
            continue
        mx, xlo, xhi = bootstrap_ci(xs)
        my, ylo, yhi = bootstrap_ci(ys)
        cont = ax.errorbar([mx], [my], xerr=[[mx - xlo], [xhi - mx]], yerr=[[my - ylo], [yhi - my]], fmt="o",
                           capsize=4, label=str(method))
        ax.scatter(part[x], part[y], color=cont[0].get_color(), alpha=0.3, s=14)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return ax.figure


def samples_to_target_table(
    metrics: pd.DataFrame,
    target: float,
    y: str = "accuracy",
    x: str = "samples",
    method_col: str = "method",
    seed_col: str = "seed",
    smooth: int = 3,
) -> pd.DataFrame:
    """Samples (completions generated) until the ``smooth``-step running mean of ``y`` first reaches
    ``target``, per seed; per method the mean over the seeds that reached it with its bootstrap CI and
    the share of seeds that reached it (``reached``).  Seeds that never reach it are not averaged in."""
    rows = []
    for method, part in metrics.groupby(method_col, sort=False):
        hits = []
        n_seeds = 0
        for _, run in part.groupby(seed_col, sort=True):
            n_seeds += 1
            run = run.sort_values(x)
            curve = run[y].rolling(smooth, min_periods=1).mean()
            hit = run.loc[curve >= target, x]
            if len(hit):
                hits.append(float(hit.iloc[0]))
        est, lo, hi = bootstrap_ci(hits) if hits else (np.nan,) * 3
        rows.append({"method": method, "samples_to_target": est, "ci_low": lo, "ci_high": hi,
                     "reached": len(hits) / max(n_seeds, 1), "target": target})
    return pd.DataFrame(rows).set_index("method")


def timing_table(final: pd.DataFrame, method_col: str = "method") -> pd.DataFrame:
    """Per method: mean seconds per training step and per run, and completions sampled per run."""
    cols = [c for c in ("seconds_per_step", "train_seconds", "samples") if c in final]
    return final.groupby(method_col, sort=False)[cols].mean()


def format_claim(row: dict[str, Any], scale: float = 1.0, unit: str = "") -> str:
    """One sentence for a claim row: the effect with its CI and the verdict."""
    if row.get("n", 0) == 0 or not np.isfinite(row.get("effect", np.nan)):
        return f"{row['claim']}: no data (inconclusive)."
    vs = f" vs {row['baseline']}" if row.get("baseline") else ""
    return (f"{row['claim']} ({row.get('method') or ''}{vs}, {row['metric']}): effect "
            f"{row['effect'] * scale:+.3g}{unit} [95% CI {row['ci_low'] * scale:+.3g}, {row['ci_high'] * scale:+.3g}], "
            f"n = {row['n']} seeds: **{row['verdict']}**.")


def conclusion(rows: Sequence[dict[str, Any]], scale_by_metric: dict[str, float] | None = None) -> str:
    """A paragraph from claim rows: how many replicated, then one sentence per claim; says plainly when
    nothing replicated and that a few seeds at this scale give wide intervals."""
    scale_by_metric = scale_by_metric or {}
    counts = verdict_counts(rows)
    n = len(rows)
    head = (f"Of {n} claims, {counts['replicated']} replicated, {counts['not replicated']} did not and "
            f"{counts['inconclusive']} were inconclusive at this scale.")
    if counts["replicated"] == 0:
        head += " None of the claims is supported by these runs."
    body = " ".join(format_claim(r, scale_by_metric.get(r["metric"], 1.0)) for r in rows)
    tail = (" Inconclusive means the 95% interval across seeds straddles the claim's threshold (or fewer than "
            "two seeds were run): more seeds or steps (the `gpu` profile) would be needed to decide.") \
        if counts["inconclusive"] else ""
    return f"{head} {body}{tail}"


def mcnemar_p(before: Sequence[bool], after: Sequence[bool]) -> float:
    """Exact two-sided McNemar test of paired 0/1 outcomes (the same problems before and after): a binomial
    test of the discordant pairs (McNemar 1947; ``scipy.stats.binomtest``).  1.0 when no pair changed."""
    from scipy.stats import binomtest

    b = sum(1 for x, y in zip(before, after, strict=True) if x and not y)
    c = sum(1 for x, y in zip(before, after, strict=True) if y and not x)
    return float(binomtest(c, b + c, 0.5).pvalue) if b + c else 1.0


def format_split(before: dict[str, Any], after: dict[str, Any]) -> pd.DataFrame:
    """Split a change of held-out accuracy into answer-format learning and getting the answer right: the share of
    answers in the requested format, accuracy among well-formatted answers, and accuracy overall, before and
    after (``rlbook.experiments.evaluate`` outputs on the same problems), with an exact McNemar p-value over the
    paired problems for the two 0/1 rates (this one run's problems: not a replication across seeds)."""
    fb, fa = np.asarray(before["formatted"], bool), np.asarray(after["formatted"], bool)
    cb, ca = np.asarray(before["correct"], bool), np.asarray(after["correct"], bool)

    def among(c: np.ndarray, f: np.ndarray) -> float:
        return float(c[f].mean()) if f.any() else float("nan")

    rows = [
        {"quantity": "answer in the requested format", "before": fb.mean(), "after": fa.mean(),
         "McNemar p (paired problems)": mcnemar_p(fb, fa)},
        {"quantity": "accuracy among well-formatted answers", "before": among(cb, fb), "after": among(ca, fa),
         "McNemar p (paired problems)": float("nan")},
        {"quantity": "accuracy overall", "before": cb.mean(), "after": ca.mean(),
         "McNemar p (paired problems)": mcnemar_p(cb, ca)},
    ]
    out = pd.DataFrame(rows).set_index("quantity")
    out.insert(2, "change", out["after"] - out["before"])
    return out


def quickstart_summary(before: dict[str, Any], after: dict[str, Any], split: pd.DataFrame, hist: pd.DataFrame,
                       claim_row: dict[str, Any]) -> Any:
    """The quickstart's closing paragraph, every number from the run (IPython Markdown)."""
    from IPython.display import Markdown

    delta = after["accuracy"] - before["accuracy"]
    direction = "rose" if delta > 0 else ("fell" if delta < 0 else "did not change")
    fmt, acc = split.loc["answer in the requested format"], split.loc["accuracy among well-formatted answers"]
    p = split.loc["accuracy overall", "McNemar p (paired problems)"]
    return Markdown(
        f"**Result.** After {len(hist)} GRPO steps ({float(hist['step_s'].sum()) / 60:.1f} min of training, "
        f"{float(hist['step_s'].mean()):.1f} s per step), held-out greedy accuracy on {after['n']} problems "
        f"**{direction} from {before['accuracy']:.1%} to {after['accuracy']:.1%}** ({delta * 100:+.1f} points; exact "
        f"McNemar p = {p:.2g} over this run's paired problems). Of that, the share of answers given in the requested "
        f"format went from {fmt['before']:.1%} to {fmt['after']:.1%}, and accuracy among well-formatted answers from "
        f"{acc['before']:.1%} to {acc['after']:.1%}: the first is learning the format, the second getting the sum "
        f"right. Mean response length went from {before['response_length']:.1f} to {after['response_length']:.1f} "
        f"tokens. Verdict: **{claim_row['verdict']}** ({claim_row['reason']}): the method notebooks repeat such runs "
        f"over seeds before they call a claim replicated.")
