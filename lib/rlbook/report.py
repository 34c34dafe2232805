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
