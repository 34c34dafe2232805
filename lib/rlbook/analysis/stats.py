"""The statistics behind every claim verdict: one calibrated, powered test (:func:`compare`), multiplicity,
power planning, rliable aggregates.

A claim ("Dr. GRPO's accuracy is at least GRPO's", "BNPO has a lower gradient variance") becomes one row of a
claim table.  Every row, of every notebook and pipeline, comes from :func:`compare` on a long table
``(seed, unit, method, value)``; units are held-out problems, gradient batches, completions, lines or episodes.

The design: seeds crossed with units
    Every seed of every method is scored on the *same* units (the held-out problems), so a paired difference
    ``d_su = y_su(method) - y_su(baseline)`` has three sources of variance::

        d_su = mu + a_s + b_u + e_su,   var(a) = var_seed, var(b) = var_unit, var(e) = var_resid

    ``a_s``: the seed's training luck; ``b_u``: the method helps on some problems more than on others (shared by
    every seed, because every seed sees the same problems); ``e_su``: the rest (sampling, evaluation).  The
    mean effect has ``var(dbar) = var_seed / S + var_unit / U + var_resid / (S U)``.  A seed-only t test
    (the workbook's earlier test) estimates ``var_seed + (var_unit + var_resid) / U`` from the spread of the
    seed means, which never contains ``var_unit / U``: with many seeds it is anti-conservative (a null effect
    replicated 7-10% of the time at 10-20 seeds when the effect varies by problem).  With 3 seeds it has 2
    degrees of freedom and no power.

Method of moments (Satterthwaite), not REML
    :func:`mean_squares` gives the two-way ANOVA of the ``S x U`` table of differences:
    ``E[ms_seed] = var_resid + U var_seed``, ``E[ms_unit] = var_resid + S var_unit``,
    ``E[ms_resid] = var_resid``.  Hence ``var(dbar) = (ms_seed + ms_unit - ms_resid) / (S U)``; a component
    whose estimate is negative is set to zero (its mean square and the residual's drop out), which only
    ever raises the variance.  The degrees of freedom of that combination are Satterthwaite's
    ``(sum c_i ms_i)^2 / sum (c_i ms_i)^2 / df_i``, floored at the smallest df of the mean squares used (never
    fewer than ``S - 1`` when the seed term is used).  When the seeds agree (``var_seed`` small, the usual
    case with common random numbers and paired arms) the df are large and 3 seeds have power; when the seeds
    disagree the df fall to ``S - 1`` and the interval widens accordingly.  We use the balanced
    method-of-moments form rather than REML through ``statsmodels`` (``MixedLM`` has no crossed random
    effects without a single-group trick and takes seconds per claim; the balanced moments are exact, closed
    form and vectorise over simulations, which the calibration tests need).
    Other designs: one unit per seed (a per-run scalar such as a speed metric): the seed t test, ``df = S - 1``;
    one seed, or ``seed_random=False`` where the seed adds no randomness (a fixed checkpoint, a Best-of-N pool
    from one model): units alone, ``df = U - 1``; an incomplete grid (e.g. the lengths of answers both
    methods got wrong): ``var(dbar_s) / S + var(dbar_u) / U`` (conservative: counts the residual twice).
    Calibration and power are proven by simulation with problems shared by seeds and a problem-by-method
    effect, for 0/1 and continuous outcomes at 3, 10 and 20 seeds (``tests/test_stats.py``).

Scales
    ``scale="log"`` (lengths, token counts, ratios, variances) tests the mean log ratio; the row also carries
    ``ratio = exp(effect)`` and its interval.  ``log1p`` for counts that can be 0.

Directions, margins and verdicts
    ``alpha`` is **one-sided** (default 0.025), so the reported two-sided interval is the 95% CI.

    * ``greater``: claimed effect > ``margin`` (default 0); ``less``: effect < ``-margin``;
    * ``not_less`` (non-inferiority): effect > ``-margin``, ``margin > 0`` required;
    * ``equivalent`` (parity): ``-margin < effect < margin`` by two one-sided tests (TOST), p = the larger.

    Each notebook has one pre-registered **primary** claim, tested alone at ``alpha``.  **Secondary** claims
    are adjusted by Benjamini-Hochberg (across the notebook here; across the whole workbook in the
    scoreboard).  **Checks** (manipulation checks such as "the penalty makes answers shorter", true by
    construction) are shown without a verdict.  ``replicated`` when the (adjusted) p of the claimed side is
    below ``alpha``, ``not replicated`` when the opposite side's is, else ``inconclusive``; fewer than 3 seeds
    give ``underpowered`` and a failed regime check ``untestable in this regime``: both show effect and
    interval but take no verdict and spend no error rate.

Minimum detectable effect (``mde``) and planning
    The smallest true distance beyond the claim's threshold that the test finds with 80% power at ``alpha``,
    from the noncentral t with the row's standard error and df (:func:`mde_from_se`).  :class:`Components`
    holds a claim's variance components (from a run's row, or assumed) and gives the mde of any design
    ``S seeds x U units`` and the cheapest designs that reach a paper's effect (:meth:`Components.plan`),
    which ``rlbook power`` prints before any training.

Multi-task aggregates
    :func:`iqm_table` and :func:`probability_of_improvement` use ``rliable.metrics`` (Agarwal et al. 2021,
    "Deep RL at the Edge of the Statistical Precipice"; google-research/rliable ``metrics.aggregate_iqm``,
    ``metrics.probability_of_improvement``) on score matrices ``[runs (seeds), tasks]``.  Their stratified
    bootstrap (:func:`stratified_bootstrap`) follows ``rliable/library.py`` ``StratifiedBootstrap`` and
    ``StratifiedIndependentBootstrap`` (each cell draws a run index within its own task; for two methods each
    matrix is resampled independently; percentile interval, rliable's default).  Differences: we do not call
    ``rliable.library`` because it cannot run next to pandas 3 (it needs ``arch<8``, whose import fails with
    pandas 3's ``deprecate_kwarg``; arch 8 rejects the ``random_state`` argument rliable passes), and
    rliable draws its indices from the global ``np.random`` state (ignoring ``random_state``) whereas we use
    a seeded ``numpy.random.Generator``, so results are reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from rliable import metrics as rly_metrics
from scipy import stats

from rlbook.core.config import ParamError

DIRECTIONS = ("greater", "less", "not_less", "equivalent")
MARGIN_DIRECTIONS = ("not_less", "equivalent")
SCALES = ("identity", "log", "log1p")
ROLES = ("primary", "secondary", "check")
VERDICTS = ("replicated", "not replicated", "inconclusive", "underpowered", "untestable in this regime", "check")
NO_FAMILY = ("underpowered", "untestable in this regime", "check")  # verdicts outside every family
ALPHA = 0.025  # one-sided; the two-sided interval at this alpha is the 95% CI
POWER = 0.8
MIN_SEEDS = 3
CLAIM_COLUMNS = ["claim", "role", "metric", "method", "baseline", "direction", "margin", "scale", "effect",
                 "ci_low", "ci_high", "p_value", "p_adjusted", "df", "mde", "n_seeds", "n_units", "design",
                 "verdict", "reason"]


# ------------------------------------------------------------------------------ the one test


def _check_direction(direction: str, margin: float) -> None:
    if direction not in DIRECTIONS:
        raise ParamError(f"direction={direction!r} is not allowed; allowed: {', '.join(DIRECTIONS)}")
    if not (isinstance(margin, (int, float)) and math.isfinite(margin) and margin >= 0):
        raise ParamError(f"margin={margin!r} must be a finite number >= 0")
    if direction in MARGIN_DIRECTIONS and margin <= 0:
        raise ParamError(f"direction={direction!r} needs margin > 0, got margin={margin!r}")


def _t_stat(diff: np.ndarray, se: np.ndarray) -> np.ndarray:
    """``diff / se`` with se = 0 mapped to +-inf (or 0 when diff = 0 too)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(se > 0, diff / np.where(se > 0, se, 1.0), np.sign(diff) * np.inf)
    return np.nan_to_num(t, nan=0.0, posinf=np.inf, neginf=-np.inf)


def directional_p(effect: Any, se: Any, df: Any, direction: str, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """One-sided p-values ``(p_claimed_side, p_opposite_side)`` from a t statistic with ``df`` degrees of
    freedom (see the module docstring for the regions of each direction)."""
    effect, se = np.asarray(effect, dtype=float), np.asarray(se, dtype=float)
    if direction == "equivalent":
        t_lo, t_hi = _t_stat(effect + margin, se), _t_stat(effect - margin, se)
        p = np.maximum(stats.t.sf(t_lo, df), stats.t.cdf(t_hi, df))
        return p, np.minimum(stats.t.sf(t_hi, df), stats.t.cdf(t_lo, df))
    threshold = margin if direction == "greater" else -margin
    t = _t_stat(effect - threshold, se)
    upper, lower = stats.t.sf(t, df), stats.t.cdf(t, df)
    return (lower, upper) if direction == "less" else (upper, lower)


def mean_squares(d: Any) -> dict[str, np.ndarray]:
    """The two-way ANOVA of paired differences ``d[..., S, U]`` (seed x unit, one value per cell), vectorised
    over leading axes: the grand mean, ``ms_seed`` (``U sum_s (dbar_s - dbar)^2 / (S - 1)``), ``ms_unit``
    (``S sum_u (dbar_u - dbar)^2 / (U - 1)``) and ``ms_resid`` (interaction residual over ``(S-1)(U-1)``).
    Their expectations are ``var_resid + U var_seed``, ``var_resid + S var_unit`` and ``var_resid``."""
    d = np.asarray(d, dtype=float)
    n_s, n_u = d.shape[-2], d.shape[-1]
    grand = d.mean(axis=(-2, -1))
    seed_m, unit_m = d.mean(axis=-1), d.mean(axis=-2)
    nan = np.full_like(grand, np.nan)
    ms_seed = n_u * ((seed_m - grand[..., None]) ** 2).sum(-1) / (n_s - 1) if n_s > 1 else nan
    ms_unit = n_s * ((unit_m - grand[..., None]) ** 2).sum(-1) / (n_u - 1) if n_u > 1 else nan
    if n_s > 1 and n_u > 1:
        resid = d - seed_m[..., :, None] - unit_m[..., None, :] + grand[..., None, None]
        ms_resid = (resid**2).sum(axis=(-2, -1)) / ((n_s - 1) * (n_u - 1))
    else:
        ms_resid = nan
    return {"mean": grand, "ms_seed": ms_seed, "ms_unit": ms_unit, "ms_resid": ms_resid}


def _satterthwaite(terms: Sequence[tuple[np.ndarray, float]]) -> np.ndarray:
    """Degrees of freedom of ``sum_i m_i`` (each ``m_i`` a signed mean square with ``df_i``):
    ``(sum m_i)^2 / sum m_i^2 / df_i``."""
    total = sum(m for m, _ in terms)
    den = sum(m**2 / df for m, df in terms)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, total**2 / np.where(den > 0, den, 1.0), np.inf)


def seed_by_method_ms(y: Any) -> tuple[np.ndarray, int]:
    """The seed-by-method interaction mean square of a complete grid ``y[..., M, S, U]`` (M methods, every one
    scored by the same S seeds on the same U units), on the scale of a paired difference, with its degrees of
    freedom: ``2 U sum_{m,s} (ybar_ms - ybar_m - ybar_s + ybar)^2 / ((M - 1)(S - 1))``, df ``(M - 1)(S - 1)``.

    With outcome ``y_msu = mu_m + s_s + u_u + (sm)_ms + (um)_mu + (su)_su + e_msu``,
    ``E[.] = 2 (var_e + U var_sm)``, which is exactly ``E[ms_seed]`` of any pair's differences
    (:func:`mean_squares`): the pooled estimate of the seed term of every comparison among these methods, with
    ``(M - 1)(S - 1)`` df instead of one pair's ``S - 1``.  It counts the shared baseline once (the M x S table
    of cell means has that many independent interaction contrasts), so pooling does not double count it, and it
    is orthogonal to every pair's unit and residual mean squares, so Satterthwaite's rule still applies."""
    y = np.asarray(y, dtype=float)
    if y.ndim < 3:
        raise ParamError(f"y must be [..., methods, seeds, units], got shape {y.shape}")
    n_m, n_s, n_u = y.shape[-3:]
    if n_m < 2 or n_s < 2:
        raise ParamError(f"pooling the seed term needs >= 2 methods and >= 2 seeds, got {n_m} x {n_s}")
    cell = y.mean(-1)  # [..., M, S]
    inter = (cell - cell.mean(-1, keepdims=True) - cell.mean(-2, keepdims=True)
             + cell.mean((-2, -1), keepdims=True))
    df = (n_m - 1) * (n_s - 1)
    return 2.0 * n_u * (inter**2).sum((-2, -1)) / df, df


def crossed_test(d: Any, direction: str = "greater", margin: float = 0.0, alpha: float = ALPHA,
                 seed_ms: tuple[Any, int] | None = None) -> dict[str, Any]:
    """The claim test on paired differences ``d[..., S, U]`` of a crossed seed x unit design (every seed
    scored on the same units), vectorised over leading axes.  See the module docstring: method-of-moments
    variance components truncated at zero, the variance of the mean ``var_seed / S + var_unit / U +
    var_resid / (S U)``, Satterthwaite degrees of freedom floored at the smallest df of the mean squares used;
    ``S = 1``: units alone (``df = U - 1``); ``U = 1``: seeds alone (``df = S - 1``).  ``seed_ms = (ms, df)``:
    a pooled seed mean square (:func:`seed_by_method_ms`) used in place of the pair's own."""
    _check_direction(direction, margin)
    d = np.asarray(d, dtype=float)
    if d.ndim < 2:
        raise ParamError(f"d must be [..., seeds, units], got shape {d.shape}")
    n_s, n_u = d.shape[-2], d.shape[-1]
    ms = mean_squares(d)
    est = ms["mean"]
    df_s, df_u, df_e = n_s - 1, n_u - 1, (n_s - 1) * (n_u - 1)
    if seed_ms is not None:
        if n_s < 2 or n_u < 2:
            raise ParamError(f"a pooled seed mean square needs a crossed grid, got {n_s} seeds x {n_u} units")
        ms["ms_seed"], df_s = np.broadcast_to(np.asarray(seed_ms[0], dtype=float), est.shape), int(seed_ms[1])
    if n_s > 1 and n_u > 1:
        a, b, e = ms["ms_seed"], ms["ms_unit"], ms["ms_resid"]
        sa, sb = a > e, b > e  # a component estimated at zero drops its mean square and the residual's
        total = np.where(sa, a, e) + np.where(sb, b, e) - e
        den = (np.where(sa, a**2 / df_s, 0.0) + np.where(sb, b**2 / df_u, 0.0)
               + np.where(sa & sb, e**2 / df_e, np.where(~sa & ~sb, e**2 / df_e, 0.0)))
        with np.errstate(divide="ignore", invalid="ignore"):
            df = np.where(den > 0, total**2 / np.where(den > 0, den, 1.0), np.inf)
        floor = np.where(sa & sb, min(df_s, df_u), np.where(sa, df_s, np.where(sb, df_u, df_e)))
        df = np.maximum(df, floor)
        var_mean = total / (n_s * n_u)
        comps = {"var_seed": np.maximum(0.0, (a - e) / n_u), "var_unit": np.maximum(0.0, (b - e) / n_s),
                 "var_resid": e}
        design = "crossed" if seed_ms is None else "crossed, pooled seed term"
    elif n_s > 1:
        var_mean, df = ms["ms_seed"] / n_s, np.full_like(est, float(df_s))
        comps = {"var_seed": ms["ms_seed"], "var_unit": np.zeros_like(est), "var_resid": np.zeros_like(est)}
        design = "seeds"
    elif n_u > 1:
        var_mean, df = ms["ms_unit"] / n_u, np.full_like(est, float(df_u))
        comps = {"var_seed": np.zeros_like(est), "var_unit": ms["ms_unit"], "var_resid": np.zeros_like(est)}
        design = "units"
    else:
        nan = np.full_like(est, np.nan)
        return {"effect": est, "se": nan, "df": nan, "ci_low": nan, "ci_high": nan, "p_value": nan,
                "p_opposite": nan, "mde": nan, "var_seed": nan, "var_unit": nan, "var_resid": nan,
                "design": "single value", "n_seeds": n_s, "n_units": n_u}
    se = np.sqrt(np.maximum(var_mean, 0.0))
    half = stats.t.ppf(1.0 - alpha, df) * se
    p, p_opp = directional_p(est, se, df, direction, margin)
    return {"effect": est, "se": se, "df": df, "ci_low": est - half, "ci_high": est + half, "p_value": p,
            "p_opposite": p_opp, "mde": mde_from_se(se, df, alpha, POWER, direction), **comps, "design": design,
            "n_seeds": n_s, "n_units": n_u}


def incomplete_test(seed_means: Any, unit_means: Any, direction: str = "greater", margin: float = 0.0,
                    alpha: float = ALPHA) -> dict[str, Any]:
    """The test when the seed x unit grid is incomplete (e.g. lengths of the answers both methods got wrong):
    ``var(dbar_s) / S + var(dbar_u) / U`` with Satterthwaite df.  Each term alone is the variance of the
    mean under one source; together they count the residual twice, so the interval is conservative."""
    _check_direction(direction, margin)
    sm, um = np.asarray(seed_means, dtype=float), np.asarray(unit_means, dtype=float)
    est = float(sm.mean()) if sm.size else math.nan
    terms = []
    if sm.size > 1:
        terms.append((sm.var(ddof=1) / sm.size, sm.size - 1))
    if um.size > 1:
        terms.append((um.var(ddof=1) / um.size, um.size - 1))
    if not terms:
        return crossed_test(np.array([[est]]), direction, margin, alpha) | {"design": "single value"}
    var_mean = sum(v for v, _ in terms)
    df = float(max(_satterthwaite([(np.asarray(v), f) for v, f in terms]), min(f for _, f in terms)))
    se = math.sqrt(var_mean)
    half = float(stats.t.ppf(1.0 - alpha, df)) * se
    p, p_opp = directional_p(est, se, df, direction, margin)
    return {"effect": est, "se": se, "df": df, "ci_low": est - half, "ci_high": est + half, "p_value": float(p),
            "p_opposite": float(p_opp), "mde": float(mde_from_se(se, df, alpha, POWER, direction)),
            "var_seed": float(sm.var(ddof=1)) if sm.size > 1 else 0.0,
            "var_unit": float(um.var(ddof=1)) if um.size > 1 else 0.0, "var_resid": math.nan,
            "design": "incomplete", "n_seeds": int(sm.size), "n_units": int(um.size)}


def _transform(values: pd.Series, scale: str, what: str) -> pd.Series:
    if scale not in SCALES:
        raise ParamError(f"scale={scale!r} is not allowed; allowed: {', '.join(SCALES)}")
    v = values.astype(float)
    if scale == "log":
        if (v <= 0).any():
            raise ParamError(f"scale='log' needs values > 0; {what} has {int((v <= 0).sum())} values <= 0 "
                             f"(min {v.min():g}); use scale='log1p' for counts that can be 0")
        return np.log(v)
    if scale == "log1p":
        if (v < 0).any():
            raise ParamError(f"scale='log1p' needs values >= 0; {what} has {int((v < 0).sum())} negative values")
        return np.log1p(v)
    return v


def paired_differences(table: pd.DataFrame, method: str, baseline: str | None = None, *,
                       scale: str = "identity", seed_random: bool = True) -> pd.Series:
    """``method - baseline`` per ``(seed, unit)`` on the claim's scale (repeated rows of a cell averaged first),
    from a long table with columns ``seed, unit, method, value`` (``unit`` optional: one value per seed).
    ``baseline=None``: the method's own values.  ``seed_random=False``: the seed adds no randomness (a fixed
    checkpoint, a pool from one model), so each unit's differences are averaged over seeds (index: unit)."""
    need = ["seed", "method", "value"]
    missing = [c for c in need if c not in table.columns]
    if missing:
        raise ParamError(f"columns {missing} are missing; the table has {', '.join(map(str, table.columns))}")
    t = table if "unit" in table.columns else table.assign(unit=0)
    if t["value"].isna().any():
        raise ParamError("the table has NaN values; drop the (seed, unit) pairs without a value first")
    names = [method] + ([baseline] if baseline is not None else [])
    avail = list(dict.fromkeys(t["method"]))
    for n in names:
        if n not in avail:
            raise ParamError(f"method={n!r} has no rows; available: {', '.join(map(str, avail))}")
    t = t.assign(value=_transform(t["value"], scale, "the table"))
    cells = t[t["method"].isin(names)].groupby(["method", "seed", "unit"], sort=True)["value"].mean()
    a = cells.loc[method]
    if baseline is None:
        diff = a
    else:
        b = cells.loc[baseline]
        if not a.index.equals(b.index):
            only_a, only_b = len(a.index.difference(b.index)), len(b.index.difference(a.index))
            raise ParamError(f"{method!r} and {baseline!r} are not paired: {only_a} (seed, unit) cells only in "
                             f"{method!r}, {only_b} only in {baseline!r}")
        diff = a - b
    if not seed_random:
        return diff.groupby(level="unit").mean()
    return diff


def compare(table: pd.DataFrame, method: str, baseline: str | None = None, *, direction: str = "greater",
            margin: float = 0.0, alpha: float = ALPHA, scale: str = "identity",
            seed_random: bool = True, borrow: Sequence[str] = ()) -> dict[str, Any]:
    """THE test of every claim: ``method`` against ``baseline`` (or against 0 / the margin without one) on a
    long table ``seed, unit, method, value`` (units: problems, batches, completions, lines, episodes).

    Returns ``effect`` (mean paired difference on ``scale``), the two-sided ``1 - 2 alpha`` interval
    ``ci_low``/``ci_high``, one-sided ``p_value`` (claimed side) and ``p_opposite``, Satterthwaite ``df``,
    ``se``, ``mde`` (the smallest true distance beyond the claim's threshold found with 80% power at
    ``alpha``), the variance components ``var_seed``, ``var_unit``, ``var_resid``, the ``design``
    (crossed, seeds, units, incomplete), ``n_seeds`` and ``n_units``; on a log scale also ``ratio`` and its
    interval (``exp`` of the effect).

    ``borrow``: other methods of the same table declared comparable (same metric, task, budget, seeds and
    units): the seed term is then the seed-by-method mean square pooled over all of them
    (:func:`seed_by_method_ms`, ``(M - 1)(S - 1)`` df instead of ``S - 1``).  It assumes the methods share one
    between-seed variance of their effects; ``benchmarks/stats_calibration.py`` measures what happens when they
    do not."""
    _check_direction(direction, margin)
    if not 0 < alpha < 0.5:
        raise ParamError(f"alpha={alpha!r} must be in (0, 0.5) (one-sided)")
    if borrow and (baseline is None or not seed_random):
        raise ParamError("borrow pools the seed term of paired comparisons: it needs a baseline and "
                         "seed_random=True")
    diff = paired_differences(table, method, baseline, scale=scale, seed_random=seed_random)
    if not seed_random:
        out = crossed_test(diff.to_numpy()[None, :], direction, margin, alpha)
    else:
        grid = diff.unstack("unit")
        crossed = grid.shape[0] > 1 and grid.shape[1] > 1 and bool(grid.notna().all().all())
        pooled = pooled_seed_term(table, [method, baseline, *borrow], grid, scale) if borrow and crossed else None
        if grid.notna().all().all():
            out = crossed_test(grid.to_numpy(), direction, margin, alpha, seed_ms=pooled)
        else:
            seed_means = diff.groupby(level="seed").mean().to_numpy()
            unit_means = diff.groupby(level="unit").mean().to_numpy()
            out = incomplete_test(seed_means, unit_means, direction, margin, alpha)
    row = {k: (v if isinstance(v, str) else (int(v) if k in ("n_seeds", "n_units") else float(v)))
           for k, v in out.items()}
    row.update(method=method, baseline=baseline, direction=direction, margin=float(margin), alpha=alpha,
               scale=scale, n_cells=int(diff.size))
    if borrow:  # pooled only on a complete grid of >= 2 seeds x >= 2 units; else the pair's own design
        row["borrowed_from"] = ", ".join(m for m in dict.fromkeys(borrow) if m not in (method, baseline))
        row["borrow_used"] = row["design"] == "crossed, pooled seed term"
    if scale in ("log", "log1p"):
        row.update(ratio=math.exp(row["effect"]), ratio_low=math.exp(row["ci_low"]) if math.isfinite(row["ci_low"])
                   else math.nan, ratio_high=math.exp(row["ci_high"]) if math.isfinite(row["ci_high"]) else math.nan)
    return row


def pooled_seed_term(table: pd.DataFrame, methods: Sequence[str | None], grid: pd.DataFrame,
                     scale: str) -> tuple[float, int]:
    """The pooled seed mean square (:func:`seed_by_method_ms`) of ``methods`` (``None`` and repeats dropped)
    on the pair's ``grid`` of seeds x units; every method must have a value in every cell."""
    names = list(dict.fromkeys(m for m in methods if m is not None))
    if len(names) < 3:
        raise ParamError(f"borrow needs at least one method besides the pair, got {names}")
    if not grid.notna().all().all():
        raise ParamError("borrow needs a complete seed x unit grid; this pair's is incomplete")
    t = table if "unit" in table.columns else table.assign(unit=0)
    avail = set(t["method"])
    missing = [m for m in names if m not in avail]
    if missing:
        raise ParamError(f"borrow: methods {missing} have no rows; available: {', '.join(map(str, sorted(avail)))}")
    t = t[t["method"].isin(names)]
    cells = t.assign(value=_transform(t["value"], scale, "the table")).groupby(
        ["method", "seed", "unit"], sort=True)["value"].mean()
    y = []
    for m in names:
        part = cells.loc[m].unstack("unit").reindex(index=grid.index, columns=grid.columns)
        if part.isna().any().any():
            raise ParamError(f"borrow: {m!r} lacks {int(part.isna().sum().sum())} of the pair's (seed, unit) cells; "
                             "comparable methods share seeds and units")
        y.append(part.to_numpy())
    ms, df = seed_by_method_ms(np.stack(y))
    return float(ms), df


# ------------------------------------------------------------------------------ power


def mde_from_se(se: Any, df: Any, alpha: float = ALPHA, power: float = POWER,
                direction: str = "greater") -> np.ndarray:
    """Smallest true distance beyond the threshold that a t test with standard error ``se`` and ``df`` degrees
    of freedom detects with probability ``power`` at one-sided ``alpha``: ``se * ncp`` where the noncentral t
    with that ``ncp`` exceeds ``t_{1-alpha, df}`` with probability ``power`` (vectorised bisection on ncp).
    For ``equivalent``: the smallest margin within which a true zero effect is shown,
    ``se (t_{1-alpha} + t_{(1+power)/2})``."""
    se_a, df_a = np.broadcast_arrays(np.asarray(se, dtype=float), np.asarray(df, dtype=float))
    ok = np.isfinite(se_a) & (df_a > 0)
    f = np.where(ok, np.minimum(np.where(ok, df_a, 1.0), 1e6), 1.0)
    crit = stats.t.ppf(1.0 - alpha, f)
    if direction == "equivalent":
        ncp = crit + stats.t.ppf((1.0 + power) / 2.0, f)
    else:
        lo, hi = np.zeros_like(f), crit + 20.0
        for _ in range(60):  # power is increasing in ncp; 60 halvings of [0, crit + 20] reach 1e-16
            mid = (lo + hi) / 2.0
            below = stats.nct.sf(crit, f, mid) < power
            lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
        ncp = (lo + hi) / 2.0
    out = np.where(ok, se_a * ncp, np.nan)
    return out if out.shape else out[()]


@dataclass(frozen=True)
class Components:
    """Variance components of one claim's paired differences: ``var_seed`` (between seeds), ``var_unit`` (the
    unit-by-method interaction: the effect varies by problem) and ``var_resid``; ``source`` says where they
    came from (a run's claim row, a pilot, an assumption)."""

    var_seed: float
    var_unit: float
    var_resid: float
    source: str = ""

    @classmethod
    def from_row(cls, row: Mapping[str, Any], source: str = "") -> Components:
        """From a claim row (``results.json``): a missing or non-finite component is 0 (``results.json`` writes NaN
        as null, e.g. ``var_resid`` of a design with one unit per seed)."""
        raw = [row.get(k) for k in ("var_seed", "var_unit", "var_resid")]
        vals = [float(v) if isinstance(v, (int, float)) and math.isfinite(v) else 0.0 for v in raw]
        return cls(*vals, source=source)

    def design(self, n_seeds: int, n_units: int) -> tuple[float, float]:
        """``(se, df)`` of the mean effect at ``n_seeds x n_units``: the expected mean squares put through the
        same rule as :func:`crossed_test` (a zero component drops its mean square and the residual's) and
        Satterthwaite's df."""
        if n_seeds < 1 or n_units < 1 or n_seeds * n_units < 2:
            raise ParamError(f"a design needs >= 2 cells, got {n_seeds} seeds x {n_units} units")
        var = self.var_seed / n_seeds + self.var_unit / n_units + self.var_resid / (n_seeds * n_units)
        df_s, df_u, df_e = n_seeds - 1, n_units - 1, (n_seeds - 1) * (n_units - 1)
        e_s, e_u, e = (self.var_resid + n_units * self.var_seed, self.var_resid + n_seeds * self.var_unit,
                       self.var_resid)
        if n_seeds == 1 or n_units == 1:
            df = float(df_u if n_seeds == 1 else df_s)
        else:
            sa, sb = self.var_seed > 0, self.var_unit > 0
            terms = ([(e_s, df_s)] if sa else []) + ([(e_u, df_u)] if sb else [])
            terms += [(-e, df_e)] if sa and sb else [(e, df_e)] if not (sa or sb) else []
            df = float(_satterthwaite([(np.asarray(m), f) for m, f in terms]))
            floor = min((f for m, f in terms if m > 0), default=math.inf)  # all components zero: no noise
            df = max(df, floor) if math.isfinite(df) else 1e6
        return math.sqrt(max(var, 0.0)), df

    def mde(self, n_seeds: int, n_units: int, alpha: float = ALPHA, power: float = POWER,
            direction: str = "greater") -> float:
        se, df = self.design(n_seeds, n_units)
        return float(mde_from_se(se, df, alpha, power, direction))

    def plan(self, effect: float, seeds: Sequence[int] = (3, 4, 6, 8, 10, 20),
             units: Sequence[int] = (200, 500, 1000, 2000), alpha: float = ALPHA, power: float = POWER,
             direction: str = "greater") -> list[tuple[int, int]]:
        """The cheapest designs (fewest seeds, then fewest units) among ``seeds x units`` whose mde is at most
        ``effect``: for each seed count the smallest unit count that suffices."""
        out = []
        for s in seeds:
            for u in units:
                if self.mde(s, u, alpha, power, direction) <= abs(effect):
                    out.append((s, u))
                    break
        return out


# ------------------------------------------------------------------------------ multiplicity and verdicts


def benjamini_hochberg(p_values: Any) -> np.ndarray:
    """Benjamini-Hochberg (1995) adjusted p-values (q-values) along the last axis: the i-th smallest
    (1-based rank i of k) times ``k / i``, then the running minimum from the largest down, capped at 1."""
    p = np.asarray(p_values, dtype=float)
    k = p.shape[-1]
    if k == 0:
        return p.copy()
    order = np.argsort(p, axis=-1, kind="stable")
    ranked = np.take_along_axis(p, order, axis=-1) * k / np.arange(1, k + 1)
    adjusted = np.minimum(1.0, np.minimum.accumulate(ranked[..., ::-1], axis=-1)[..., ::-1])
    out = np.empty_like(adjusted)
    np.put_along_axis(out, order, adjusted, axis=-1)
    return out


def verdicts_from_p(p: Any, p_opposite: Any, alpha: float = ALPHA) -> np.ndarray:
    """``replicated`` / ``not replicated`` / ``inconclusive`` from (adjusted) one-sided p-values."""
    pa, po = np.asarray(p, dtype=float), np.asarray(p_opposite, dtype=float)
    return np.where(pa < alpha, "replicated", np.where(po < alpha, "not replicated", "inconclusive"))


def assign_verdicts(rows: Sequence[dict[str, Any]], alpha: float = ALPHA) -> list[dict[str, Any]]:
    """Verdicts for the claims of one notebook.  The ``primary`` claim is tested alone at ``alpha``;
    ``secondary`` claims by Benjamini-Hochberg across this notebook's secondaries (the workbook scoreboard
    redoes BH across every notebook); ``check`` rows (manipulation checks) and rows already ``underpowered`` /
    ``untestable`` get no verdict and stay out of every family."""
    out = [dict(r) for r in rows]
    for r in out:
        r.setdefault("role", "secondary")
        if r["role"] == "check":
            r.update(verdict="check", p_adjusted=math.nan, p_opposite_adjusted=math.nan)
    family = [r for r in out if r["role"] == "secondary" and r["verdict"] not in NO_FAMILY]
    q, q_opp = benjamini_hochberg([r["p_value"] for r in family]), benjamini_hochberg([r["p_opposite"] for r in family])
    for r, qa, qo in zip(family, q, q_opp, strict=True):
        v = str(verdicts_from_p(qa, qo, alpha))
        r.update(p_adjusted=float(qa), p_opposite_adjusted=float(qo), verdict=v, family_size=len(family))
        r["reason"] = _reason(r, f"BH-adjusted over {len(family)} secondary claims", alpha)
    for r in out:
        if r["role"] == "primary" and r["verdict"] not in NO_FAMILY:
            v = str(verdicts_from_p(r["p_value"], r["p_opposite"], alpha))
            r.update(p_adjusted=r["p_value"], p_opposite_adjusted=r["p_opposite"], verdict=v, family_size=1)
            r["reason"] = _reason(r, "primary claim, tested alone", alpha)
        elif r["verdict"] in NO_FAMILY:
            r.update(p_adjusted=math.nan, p_opposite_adjusted=math.nan)
    return out


def _reason(row: Mapping[str, Any], family: str, alpha: float) -> str:
    if row["verdict"] == "not replicated":
        return f"opposite side p = {row['p_opposite_adjusted']:.2g} < {alpha:g} ({family})"
    if row["verdict"] == "replicated":
        return f"p = {row['p_adjusted']:.2g} < {alpha:g} ({family})"
    return (f"p = {row['p_adjusted']:.2g}, opposite side {row['p_opposite_adjusted']:.2g}, both >= {alpha:g} "
            f"({family})")


# ------------------------------------------------------------------------------ margins


def eval_standard_error(accuracy: float, n_problems: int) -> float:
    """One run's evaluation standard error of an accuracy on ``n_problems``: ``sqrt(p (1 - p) / n)``."""
    if not 0.0 <= accuracy <= 1.0 or n_problems < 1:
        raise ParamError(f"need 0 <= accuracy <= 1 and n_problems >= 1, got {accuracy!r}, {n_problems!r}")
    return math.sqrt(accuracy * (1.0 - accuracy) / n_problems)


def check_margin(margin: float, run_se: float, claim: str = "") -> None:
    """A non-inferiority / equivalence margin must exceed one run's evaluation standard error ``run_se``
    (else noise of a single eval exceeds the margin); raises :class:`ParamError` naming both."""
    if math.isfinite(run_se) and not margin > run_se:
        where = f" for claim {claim!r}" if claim else ""
        raise ParamError(f"margin={margin:.4g}{where} must exceed one run's evaluation standard error "
                         f"{run_se:.4g} (sqrt(p(1-p)/n)); widen the margin or evaluate on more problems")


# ------------------------------------------------------------------------------ claim rows


def evaluate_claim(claim: str, metric: str, table: pd.DataFrame, method: str, baseline: str | None = None, *,
                   direction: str = "greater", margin: float = 0.0, role: str = "secondary",
                   checks: Sequence[tuple[bool, str]] = (), alpha: float = ALPHA, scale: str = "identity",
                   seed_random: bool = True, borrow: Sequence[str] = ()) -> dict[str, Any]:
    """One claim row: :func:`compare` on the long table plus the claim's text, metric, role and regime checks
    (any failed check gives ``untestable in this regime`` with its reason).  With ``seed_random`` fewer than
    3 seeds give ``underpowered``.  The verdict here treats the row as a family of one; pass all rows of a
    notebook through :func:`assign_verdicts`."""
    if role not in ROLES:
        raise ParamError(f"role={role!r} is not allowed; allowed: {', '.join(ROLES)}")
    row: dict[str, Any] = {"claim": claim, "metric": metric, "role": role, "primary": role == "primary",
                           **compare(table, method, baseline, direction=direction, margin=margin, alpha=alpha,
                                     scale=scale, seed_random=seed_random, borrow=borrow),
                           "ci_level": 1.0 - 2.0 * alpha, "verdict": None, "reason": ""}
    failed = [reason for passed, reason in checks if not passed]
    if failed:
        row.update(verdict="untestable in this regime", reason="; ".join(failed))
    elif seed_random and row["n_seeds"] < MIN_SEEDS:  # one seed's units say nothing of another training run
        row.update(verdict="underpowered", reason=f"{row['n_seeds']} seed(s) < {MIN_SEEDS}: no verdict")
    return assign_verdicts([row], alpha)[0]


def claim_table(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Claim rows as a DataFrame, the standard columns first."""
    df = pd.DataFrame(list(rows))
    if df.empty:
        return pd.DataFrame(columns=CLAIM_COLUMNS)
    extra = [c for c in df.columns if c not in CLAIM_COLUMNS]
    return df.reindex(columns=CLAIM_COLUMNS + extra)


# ------------------------------------------------------------------------------ rliable aggregates


def _score_matrix(scores: Any, name: str) -> np.ndarray:
    x = np.asarray(scores, dtype=float)
    if x.ndim != 2 or 0 in x.shape or not np.isfinite(x).all():
        raise ParamError(f"{name} must be a finite [runs, tasks] matrix, got shape {x.shape}")
    return x


def stratified_bootstrap(matrices: Sequence[Any], stat: Callable[..., float], reps: int = 2000,
                         seed: int = 0) -> np.ndarray:
    """``reps`` values of ``stat(*resampled)``; in each ``[runs, tasks]`` matrix every cell draws a run
    within its own task column (rliable ``StratifiedBootstrap``), each matrix independently (rliable
    ``StratifiedIndependentBootstrap``)."""
    xs = [_score_matrix(m, f"matrices[{i}]") for i, m in enumerate(matrices)]
    rng = np.random.default_rng(seed)
    idx = [rng.integers(0, x.shape[0], size=(reps, *x.shape)) for x in xs]
    cols = [np.arange(x.shape[1]) for x in xs]
    return np.array([stat(*(x[i[r], c] for x, i, c in zip(xs, idx, cols, strict=True))) for r in range(reps)])


def _percentile(boot: np.ndarray, level: float) -> tuple[float, float]:
    lo, hi = np.quantile(boot, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return float(lo), float(hi)


def iqm_table(scores: Mapping[str, Any], reps: int = 2000, level: float = 0.95,
              seed: int = 0) -> pd.DataFrame:
    """Interquartile mean (rliable ``aggregate_iqm``: the 25%-trimmed mean over all runs and tasks) of each
    method's ``[runs, tasks]`` score matrix, with a stratified-bootstrap percentile interval."""
    rows = []
    for name, m in scores.items():
        x = _score_matrix(m, f"scores[{name!r}]")
        boot = stratified_bootstrap([x], rly_metrics.aggregate_iqm, reps, seed)
        lo, hi = _percentile(boot, level)
        rows.append({"method": name, "iqm": float(rly_metrics.aggregate_iqm(x)), "ci_low": lo, "ci_high": hi,
                     "n_runs": x.shape[0], "n_tasks": x.shape[1]})
    return pd.DataFrame(rows).set_index("method")


def probability_of_improvement(scores_x: Any, scores_y: Any, reps: int = 2000, level: float = 0.95,
                               seed: int = 0) -> dict[str, float]:
    """P(X > Y) averaged over tasks (rliable ``probability_of_improvement``: per task the Mann-Whitney U of
    X's runs against Y's over n_x n_y, ties 1/2) with a stratified, independent-samples bootstrap interval."""
    x, y = _score_matrix(scores_x, "scores_x"), _score_matrix(scores_y, "scores_y")
    if x.shape[1] != y.shape[1]:
        raise ParamError(f"scores_x has {x.shape[1]} tasks, scores_y {y.shape[1]}; they must match")
    boot = stratified_bootstrap([x, y], rly_metrics.probability_of_improvement, reps, seed)
    lo, hi = _percentile(boot, level)
    return {"poi": float(rly_metrics.probability_of_improvement(x, y)), "ci_low": lo, "ci_high": hi}


def score_matrix(df: pd.DataFrame, method: str, value: str = "value", method_col: str = "method",
                 seed_col: str = "seed", task_col: str = "task") -> np.ndarray:
    """One method's ``[runs (seeds), tasks]`` matrix from a long table (repeated cells averaged); every
    (seed, task) cell must be present."""
    part = df[df[method_col] == method]
    if part.empty:
        raise ParamError(f"{method_col}={method!r} has no rows; available: "
                         f"{', '.join(map(str, dict.fromkeys(df[method_col])))}")
    wide = part.groupby([seed_col, task_col], sort=True)[value].mean().unstack(task_col)
    if wide.isna().any().any():
        raise ParamError(f"{method!r} lacks {int(wide.isna().sum().sum())} (seed, task) cells")
    return wide.to_numpy()
