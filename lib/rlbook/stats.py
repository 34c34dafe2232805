"""The statistics behind every claim verdict: calibrated small-n intervals, Holm, power, rliable aggregates.

A claim ("Dr. GRPO's accuracy is at least GRPO's", "BNPO has lower gradient variance") becomes one row of a
claim table.  This module computes that row from the runs and decides its verdict.

Unit of replication
    The **seed** (one training run).  Per seed ``s`` the claim's effect ``d_s`` is computed from that seed's
    data only: the mean over paired units (held-out problems, gradient batches) of method minus baseline,
    paired by ``(seed, unit)`` (:func:`seed_level_effects`), or one scalar per (method, seed) such as a speed
    metric (``unit_col=None`` / :func:`seed_effects_from_wide`).  Without a baseline the method's own values
    are tested (one-sample claims, against 0 or a margin).  Unpaired designs (different seeds per method) are
    not supported: rlbook's sweeps run every method on the same seeds.

Calibrated interval (why not the percentile bootstrap)
    With 2-3 seeds a percentile bootstrap across seeds has the range of the seeds as its "95%" interval and
    covers the mean about half the time.  We use the equal-weight Hartung-Knapp-Sidik-Jonkman t-interval of
    random-effects meta-analysis with the Knapp-Hartung "ad hoc" floor (Roever, Knapp & Friede 2015, "Hartung-
    Knapp-Sidik-Jonkman approach and its modification for random-effects meta-analysis with few studies",
    BMC Med. Res. Methodol. 15:99): with ``S`` seeds, ``s_d^2`` the sample variance of the ``d_s`` and
    ``v_s`` the within-seed variance of ``d_s`` (sample variance of the paired unit differences / ``n_s``)::

        se^2 = max(s_d^2, mean_s v_s) / S,   t = (mean_s d_s - threshold) / se  ~  t_{S-1}

    The t reference with ``S - 1`` degrees of freedom is exact for normal seed effects whatever the split
    of their variance between seeds and problems; the floor only matters when ``s_d^2`` happens to be smaller
    than the problem-level noise alone could produce, and makes the test more conservative (three seeds that
    agree by luck do not give a zero-width interval).  We chose it over a sign-flip (permutation) test across
    seeds because with 3 seeds the smallest sign-flip p-value is 1/8: such a test can never replicate.
    Measured (tests/test_stats.py, 3 seeds, 200 held-out 0/1 problems, between-seed sd 3 points): no true
    effect replicates 0.1% of the time (the floor makes it conservative; exact t without it: 2.5%), while the
    floor raises the 80%-power effect by under 1%.

Directions, margins and verdicts
    ``alpha`` is **one-sided** (default 0.025), so that the reported two-sided interval is the 95% CI and, for
    a single claim, ``replicated`` <=> the 95% CI lies wholly on the claimed side.

    * ``greater``: claimed effect > ``margin`` (default 0); ``less``: effect < ``-margin``;
    * ``not_less`` (non-inferiority): effect > ``-margin``, ``margin > 0`` required and it must exceed one
      run's evaluation standard error (:func:`check_margin`, :func:`eval_standard_error`);
    * ``equivalent`` (parity): ``-margin < effect < margin`` by two one-sided tests (TOST), p = the larger.

    ``p_value`` tests the claimed side, ``p_opposite`` the opposite side (for ``equivalent``: the effect lies
    outside the margins).  Within one notebook both are Holm-adjusted across its claims
    (:func:`assign_verdicts`); then ``replicated`` when ``p_adjusted < alpha``, ``not replicated`` when
    ``p_opposite_adjusted < alpha`` (the interval excludes the claimed region), else ``inconclusive``.
    A claim with fewer than 3 seeds is ``underpowered`` and one whose regime check failed is
    ``untestable in this regime`` (with the failed checks' reasons); both still show effect and interval,
    but they are **not members of the Holm family**: they get no verdict, so they spend no error rate.
    Note that a ``greater`` claim with a true effect of exactly 0 is ``inconclusive``, not ``not replicated``:
    no finite experiment excludes every positive effect.

Minimum detectable effect (``mde``)
    The smallest distance beyond the claim's threshold (for ``equivalent``: the smallest margin a true zero
    effect would be shown inside) that this test detects with 80% power at the Bonferroni level
    ``alpha / k`` (``k`` = Holm family size; Holm rejects at least whatever Bonferroni rejects).  Power is
    computed exactly for the test above, floor included, under normal seed effects: the mean is
    ``N(delta, sigma^2 / S)`` and ``s_d^2 ~ sigma^2 chi2_{S-1} / (S-1)``; we integrate over the chi-square
    on a quantile grid and solve for ``delta`` (:func:`minimum_detectable_effect`).  The design's ``sigma^2``
    (variance of one seed's effect = between-seed + problem-level variance) is estimated from the same
    variance components the two-level bootstrap resamples: ``max(s_d^2 / m, mean v_s)`` with ``m`` the
    median of ``chi2_{S-1}/(S-1)``, so the reported mde is median-unbiased for the design's true mde.  With 3
    seeds that estimate rests on 2 degrees of freedom and is itself very uncertain (10%-90% range 0.13-0.31
    around a true 0.19 in the test design).  With 0/1 outcomes the variance grows with the effect, so an mde
    measured on runs without an effect is a few percent low (0.179 against 0.186 in the test design).
    We do not plug in the two-level bootstrap's variance: resampling at both levels counts the problem-level
    variance twice (Davison & Hinkley 1997, Bootstrap Methods, sect. 3.8) and resampling 3 seeds shrinks the
    between-seed part by (S-1)/S.

Two-level bootstrap (descriptive only)
    :func:`two_level_bootstrap` resamples seeds, then units within each drawn seed, keeping the (seed, unit)
    pairing of the methods (it resamples paired differences).  Its percentile interval is reported as
    ``boot_low`` / ``boot_high`` beside the calibrated interval; it is not a 95% CI at small S.

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

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from rliable import metrics as rly_metrics
from scipy import optimize, stats

from rlbook.config import ParamError

DIRECTIONS = ("greater", "less", "not_less", "equivalent")
MARGIN_DIRECTIONS = ("not_less", "equivalent")
VERDICTS = ("replicated", "not replicated", "inconclusive", "underpowered", "untestable in this regime")
NO_FAMILY = ("underpowered", "untestable in this regime")  # verdicts that do not enter the Holm family
ALPHA = 0.025  # one-sided; the two-sided interval at this alpha is the 95% CI
POWER = 0.8
MIN_SEEDS = 3
CLAIM_COLUMNS = ["claim", "metric", "method", "baseline", "direction", "margin", "effect", "ci_low",
                 "ci_high", "p_value", "p_adjusted", "mde", "n_seeds", "n_units", "verdict", "reason"]
_GRID = 4000  # chi-square quantile grid of the power integral


# ------------------------------------------------------------------------------ seed-level effects


@dataclass(frozen=True)
class SeedEffects:
    """Per seed, the paired unit-level differences (method - baseline; or the method's values without a
    baseline).  A scalar metric has one unit per seed.  ``run_se``: one run's evaluation standard error of the
    baseline's score (mean over seeds of ``sqrt(var(y) / n)``, population variance; NaN for scalar
    metrics)."""

    seeds: tuple[Any, ...]
    units: tuple[np.ndarray, ...]
    run_se: float = math.nan

    @property
    def effects(self) -> np.ndarray:
        """``d_s``: the mean of the seed's units."""
        return np.array([u.mean() for u in self.units])

    @property
    def within_var(self) -> np.ndarray:
        """``v_s``: variance of ``d_s`` from the units (sample variance / n); 0 with one unit."""
        return np.array([u.var(ddof=1) / u.size if u.size > 1 else 0.0 for u in self.units])

    @property
    def n_units(self) -> np.ndarray:
        return np.array([u.size for u in self.units])


def _run_se(values: Sequence[np.ndarray]) -> float:
    if all(v.size < 2 for v in values):
        return math.nan
    return float(np.mean([math.sqrt(v.var() / v.size) for v in values]))


def _make_effects(seeds: Sequence[Any], units: Sequence[np.ndarray],
                  ref: Sequence[np.ndarray]) -> SeedEffects:
    units = tuple(np.asarray(u, dtype=float).ravel() for u in units)
    if not units or any(u.size == 0 for u in units):
        raise ParamError(f"every seed needs at least one value; got unit counts {[u.size for u in units]}")
    if not all(np.isfinite(u).all() for u in units):
        raise ParamError("values contain NaN or inf; drop or fill them before computing seed effects")
    return SeedEffects(tuple(seeds), units, _run_se([np.asarray(r, dtype=float).ravel() for r in ref]))


def seed_effects_from_arrays(method_values: Any, baseline_values: Any = None,
                             seeds: Sequence[Any] | None = None) -> SeedEffects:
    """From arrays ``[S]`` (one scalar per seed) or ``[S, U]`` (U paired units per seed; the baseline's row
    ``s``, column ``u`` is paired with the method's).  ``baseline_values=None``: one-sample claim."""
    m = np.asarray(method_values, dtype=float)
    m = m[:, None] if m.ndim == 1 else m
    if m.ndim != 2:
        raise ParamError(f"method_values must be [seeds] or [seeds, units], got shape {m.shape}")
    b = None if baseline_values is None else np.asarray(baseline_values, dtype=float).reshape(m.shape[0], -1)
    if b is not None and b.shape != m.shape:
        raise ParamError(f"baseline_values shape {b.shape} differs from method_values shape {m.shape}")
    seeds = list(range(m.shape[0])) if seeds is None else list(seeds)
    if len(seeds) != m.shape[0]:
        raise ParamError(f"{len(seeds)} seeds named for {m.shape[0]} rows of values")
    diffs = m if b is None else m - b
    return _make_effects(seeds, list(diffs), list(m if b is None else b))


def seed_effects_from_wide(wide: pd.DataFrame, method: str, baseline: str | None = None) -> SeedEffects:
    """From a per-seed table (index seed, one column per method, e.g. ``SweepResult.final`` pivoted by seed and method): one
    scalar per (method, seed), paired by seed; seeds where either value is NaN are left out."""
    cols = [method] + ([baseline] if baseline else [])
    missing = [c for c in cols if c not in wide.columns]
    if missing:
        available = ", ".join(map(str, wide.columns))
        raise ParamError(f"methods {missing} not in the table; available: {available}")
    pair = wide[cols].dropna()
    base = pair[baseline].to_numpy() if baseline else None
    return seed_effects_from_arrays(pair[method].to_numpy(), base, seeds=list(pair.index))


def _cell_means(df: pd.DataFrame, name: str, keys: list[str], method_col: str, value: str) -> pd.Series:
    part = df[df[method_col] == name]
    if part.empty:
        raise ParamError(f"{method_col}={name!r} has no rows; available: "
                         f"{', '.join(map(str, dict.fromkeys(df[method_col])))}")
    if part[value].isna().any():
        raise ParamError(f"{method_col}={name!r} has NaN in column {value!r}")
    return part.groupby(keys, sort=True)[value].mean()


def seed_level_effects(df: pd.DataFrame, method: str, baseline: str | None = None, *, value: str = "value",
                       method_col: str = "method", seed_col: str = "seed",
                       unit_col: str | None = "unit") -> SeedEffects:
    """Seed effects from a long table with columns ``method, seed, unit, value`` (e.g. one row per run and
    held-out problem, value = 0/1 correct).  Method and baseline are paired by ``(seed, unit)``; both must
    have exactly the same pairs.  Repeated rows of one (method, seed, unit) are averaged first.
    ``unit_col=None``: one value per (method, seed) (a scalar metric)."""
    keys = [seed_col] + ([unit_col] if unit_col else [])
    missing = [c for c in keys + [method_col, value] if c not in df.columns]
    if missing:
        raise ParamError(f"columns {missing} are missing; the table has {', '.join(map(str, df.columns))}")
    a = _cell_means(df, method, keys, method_col, value)
    b = _cell_means(df, baseline, keys, method_col, value) if baseline is not None else None
    if b is not None and not a.index.equals(b.index):
        only_a, only_b = len(a.index.difference(b.index)), len(b.index.difference(a.index))
        raise ParamError(f"{method!r} and {baseline!r} are not paired: {only_a} {keys} keys only in "
                         f"{method!r}, {only_b} only in {baseline!r}")
    diff = a if b is None else a - b
    ref = a if b is None else b
    seeds = list(dict.fromkeys(diff.index.get_level_values(0)))
    level = diff.index.get_level_values(0)
    units = [diff[level == s].to_numpy() for s in seeds]
    return _make_effects(seeds, units, [ref[level == s].to_numpy() for s in seeds])


# ------------------------------------------------------------------------------ calibrated test


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


def directional_p(effect: Any, se: Any, df: int, direction: str,
                  margin: float) -> tuple[np.ndarray, np.ndarray]:
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


def seed_t_test(effects: Any, within_var: Any, direction: str = "greater", margin: float = 0.0,
                alpha: float = ALPHA) -> dict[str, np.ndarray]:
    """The calibrated test on seed effects ``[..., S]`` (vectorised over leading axes): the mean effect, the
    floored standard error ``sqrt(max(s_d^2, mean v_s) / S)``, the two-sided ``1 - 2 alpha`` t-interval with
    ``S - 1`` degrees of freedom and the one-sided p-values.  One seed gives NaN for all but the effect."""
    _check_direction(direction, margin)
    d, v = np.asarray(effects, dtype=float), np.asarray(within_var, dtype=float)
    n = d.shape[-1]
    est = d.mean(axis=-1)
    if n < 2:
        nan = np.full_like(est, np.nan)
        return {"effect": est, "se": nan, "df": 0, "ci_low": nan, "ci_high": nan, "p_value": nan,
                "p_opposite": nan, "sd_seeds": nan, "within_var": v.mean(axis=-1)}
    s2, vbar = d.var(axis=-1, ddof=1), v.mean(axis=-1)
    se = np.sqrt(np.maximum(s2, vbar) / n)
    half = stats.t.ppf(1.0 - alpha, n - 1) * se
    p, p_opp = directional_p(est, se, n - 1, direction, margin)
    return {"effect": est, "se": se, "df": n - 1, "ci_low": est - half, "ci_high": est + half, "p_value": p,
            "p_opposite": p_opp, "sd_seeds": np.sqrt(s2), "within_var": vbar}


def holm(p_values: Any) -> np.ndarray:
    """Holm (1979) step-down adjusted p-values along the last axis: sort ascending, multiply the i-th
    smallest (0-based) by ``k - i``, take the running maximum, cap at 1."""
    p = np.asarray(p_values, dtype=float)
    if p.shape[-1] == 0:
        return p.copy()
    order = np.argsort(p, axis=-1, kind="stable")
    k = p.shape[-1]
    ranked = np.take_along_axis(p, order, axis=-1) * (k - np.arange(k))
    adjusted = np.minimum(1.0, np.maximum.accumulate(ranked, axis=-1))
    out = np.empty_like(adjusted)
    np.put_along_axis(out, order, adjusted, axis=-1)
    return out


def verdicts_from_p(p_adjusted: Any, p_opposite_adjusted: Any, alpha: float = ALPHA) -> np.ndarray:
    """``replicated`` / ``not replicated`` / ``inconclusive`` from Holm-adjusted one-sided p-values."""
    pa, po = np.asarray(p_adjusted, dtype=float), np.asarray(p_opposite_adjusted, dtype=float)
    return np.where(pa < alpha, "replicated", np.where(po < alpha, "not replicated", "inconclusive"))


# ------------------------------------------------------------------------------ power


@functools.lru_cache(maxsize=64)
def _chi2_grid(df: int) -> np.ndarray:
    """``chi2_df / df`` at the mid-quantiles of a grid: expectations over it are midpoint-rule integrals."""
    w = stats.chi2.ppf((np.arange(_GRID) + 0.5) / _GRID, df) / df
    w.setflags(write=False)
    return w


def _power(delta: float, n: int, sigma: float, within_var: float, crit: float, w: np.ndarray,
           equivalent: bool) -> float:
    se = np.sqrt(np.maximum(sigma**2 * w, within_var) / n)
    sd_mean = sigma / math.sqrt(n)
    room = delta - crit * se
    if equivalent:  # TOST at a true effect of 0: |mean| < margin - crit * se
        inside = stats.norm.cdf(room / sd_mean) - stats.norm.cdf(-room / sd_mean)
        return float(np.mean(np.where(room > 0, inside, 0.0)))
    return float(np.mean(stats.norm.cdf(room / sd_mean)))


def minimum_detectable_effect(n_seeds: int, sd_seeds: float, within_var: float = 0.0, alpha: float = ALPHA,
                              power: float = POWER, direction: str = "greater") -> float:
    """Smallest true distance beyond the claim's threshold that :func:`seed_t_test` detects with probability
    ``power`` at one-sided level ``alpha`` (``equivalent``: the smallest margin a true zero effect is shown
    within).  ``sd_seeds``: sd of one seed's effect (between-seed and problem-level variance together);
    ``within_var``: the mean within-seed variance of a seed effect (the floor).  NaN with < 2 seeds."""
    if direction not in DIRECTIONS:
        raise ParamError(f"direction={direction!r} is not allowed; allowed: {', '.join(DIRECTIONS)}")
    if not 0 < alpha < 0.5 or not 0 < power < 1:
        raise ParamError(f"need 0 < alpha < 0.5 and 0 < power < 1, got alpha={alpha!r}, power={power!r}")
    if n_seeds < 2 or not math.isfinite(sd_seeds):
        return math.nan
    sigma = math.sqrt(max(sd_seeds**2, within_var))
    if sigma == 0:
        return 0.0
    crit, w = float(stats.t.ppf(1.0 - alpha, n_seeds - 1)), _chi2_grid(n_seeds - 1)
    eq = direction == "equivalent"

    def gap(delta: float) -> float:
        return _power(delta, n_seeds, sigma, within_var, crit, w, eq) - power

    hi = sigma
    while gap(hi) < 0:
        hi *= 2.0
    return float(optimize.brentq(gap, 0.0, hi, xtol=1e-10 * sigma))


def design_sd(sd_seeds: float, within_var: float, n_seeds: int) -> float:
    """Median-unbiased estimate of the sd of one seed's effect for the power calculation:
    ``sqrt(max(s_d^2 / m, mean v_s))``, ``m`` the median of ``chi2_{S-1} / (S-1)``."""
    if n_seeds < 2 or not math.isfinite(sd_seeds):
        return math.nan
    m = stats.chi2.median(n_seeds - 1) / (n_seeds - 1)
    return math.sqrt(max(sd_seeds**2 / m, within_var))


# ------------------------------------------------------------------------------ two-level bootstrap


def two_level_bootstrap(units: Sequence[Any], n_boot: int = 2000, seed: int = 0) -> np.ndarray:
    """``n_boot`` replicates of the mean effect: draw ``S`` seeds with replacement, then, independently for
    each drawn seed, its units with replacement; a replicate is the mean over drawn seeds of the mean of
    their drawn units.  ``units[s]`` holds seed ``s``'s paired differences, so the (seed, unit) pairing of
    method and baseline is kept."""
    arrays = [np.asarray(u, dtype=float).ravel() for u in units]
    if not arrays or any(a.size == 0 for a in arrays) or n_boot < 1:
        raise ParamError(f"need >= 1 seed with >= 1 unit each and n_boot >= 1, got {len(arrays)} seeds, "
                         f"n_boot={n_boot}")
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(arrays), size=(n_boot, len(arrays)))
    total = np.zeros(n_boot)
    for s, a in enumerate(arrays):
        rows = np.nonzero(pick == s)[0]  # one entry per (replicate, slot) that drew seed s
        means = a[rng.integers(0, a.size, size=(rows.size, a.size))].mean(axis=1)
        np.add.at(total, rows, means)
    return total / len(arrays)


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


def _family_reason(row: dict[str, Any], k: int, alpha: float) -> str:
    side = {"replicated": "claimed side", "not replicated": "opposite side"}.get(row["verdict"])
    p = row["p_adjusted"] if row["verdict"] != "not replicated" else row["p_opposite_adjusted"]
    opposite = row["p_opposite_adjusted"]
    tail = f"{side} significant" if side else f"neither side significant (opposite side {opposite:.3g})"
    return f"Holm-adjusted one-sided p = {p:.3g} vs alpha {alpha:g} (family of {k}); {tail}"


def _row_mde(row: dict[str, Any], alpha: float) -> float:
    sd = design_sd(row["sd_seeds"], row["within_var"], row["n_seeds"])
    return minimum_detectable_effect(row["n_seeds"], sd, row["within_var"], alpha, POWER, row["direction"])


def assign_verdicts(rows: Sequence[dict[str, Any]], alpha: float = ALPHA) -> list[dict[str, Any]]:
    """Verdicts for the claims of one notebook: Holm over the claims that have >= 3 seeds and passed their
    regime checks (``underpowered`` / ``untestable`` rows stay out of the family and keep their verdict);
    ``mde`` at the Bonferroni level ``alpha / k``.  Returns new row dicts in the same order."""
    out = [dict(r) for r in rows]
    family = [r for r in out if r["verdict"] not in NO_FAMILY]
    k = len(family)
    p_adj = holm([r["p_value"] for r in family])
    p_opp_adj = holm([r["p_opposite"] for r in family])
    verdicts = verdicts_from_p(p_adj, p_opp_adj, alpha)
    for r, pa, po, v in zip(family, p_adj, p_opp_adj, verdicts, strict=True):
        r.update(p_adjusted=float(pa), p_opposite_adjusted=float(po), verdict=str(v), family_size=k)
        r["reason"] = _family_reason(r, k, alpha)
    for r in out:
        if r["verdict"] in NO_FAMILY:
            r.update(p_adjusted=math.nan, p_opposite_adjusted=math.nan, family_size=k)
        r["mde"] = _row_mde(r, alpha / max(k, 1))
    return out


def evaluate_claim(claim: str, metric: str, effects: SeedEffects, *, method: str | None = None,
                   baseline: str | None = None, direction: str = "greater", margin: float = 0.0,
                   checks: Sequence[tuple[bool, str]] = (), alpha: float = ALPHA, n_boot: int = 2000,
                   boot_seed: int = 0) -> dict[str, Any]:
    """One claim row, with its verdict as a family of one (pass all rows of a notebook through
    :func:`assign_verdicts` for Holm).  ``checks``: the claim's regime conditions as ``(passed, reason)``;
    any failure gives ``untestable in this regime``.  Non-inferiority / equivalence margins are checked
    against one run's evaluation standard error (:func:`check_margin`) when ``effects`` has unit-level data
    (for a scalar metric ``run_se`` is NaN: check its margin yourself).  ``n_boot=0`` skips the descriptive
    two-level bootstrap (``boot_low`` / ``boot_high`` NaN)."""
    _check_direction(direction, margin)
    failed = [reason for passed, reason in checks if not passed]
    if direction in MARGIN_DIRECTIONS and not failed:  # an untestable claim needs no valid margin
        check_margin(margin, effects.run_se, claim)
    test = seed_t_test(effects.effects, effects.within_var, direction, margin, alpha)
    boot = two_level_bootstrap(effects.units, n_boot, boot_seed) if n_boot else np.array([math.nan])
    boot_low, boot_high = np.quantile(boot, [alpha, 1.0 - alpha])
    row: dict[str, Any] = {"claim": claim, "metric": metric, "method": method, "baseline": baseline,
                           "direction": direction, "margin": float(margin), "n_seeds": len(effects.units),
                           "n_units": int(effects.n_units.sum()), "ci_level": 1.0 - 2.0 * alpha,
                           "boot_low": float(boot_low), "boot_high": float(boot_high),
                           "run_se": effects.run_se, "verdict": None, "reason": ""}
    row.update({key: (float(val) if key != "df" else int(val)) for key, val in test.items()})
    if failed:
        row.update(verdict="untestable in this regime", reason="; ".join(failed))
    elif row["n_seeds"] < MIN_SEEDS:
        row.update(verdict="underpowered", reason=f"{row['n_seeds']} seeds < {MIN_SEEDS}: no verdict")
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
