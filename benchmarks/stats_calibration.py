"""False-positive rate and power of rlbook's claim test (rlbook.analysis.stats.crossed_test) against the earlier
seed-only t test, by simulation with what real held-out data has: problems shared by every seed, a
problem-by-method effect, a between-seed shift and common random numbers between the two arms.

    python benchmarks/stats_calibration.py [--reps 4000]

Prints, per design, the share of null experiments called ``replicated`` (one-sided 0.025: a calibrated test
gives about 2.5%) and the share of experiments with a 5-point accuracy gain found.  The same generators are
the tests' (tests/test_stats.py), at more repetitions.

The second table is the borrowed seed term (``compare(..., borrow=[...])``): M methods trained with the same 3
seeds and scored on the same 200 problems, method 1 against method 0, the seed-by-method mean square pooled
over all M (:func:`rlbook.analysis.stats.seed_by_method_ms`) or the pair's own.  "hetero x3": method 1's seed sd is three
times the others' (the comparability the notebook declared is false); "x1/3": a third.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
from scipy import stats as sps

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from rlbook.analysis import stats  # noqa: E402
from test_stats import _binary, _continuous, _methods_binary  # noqa: E402  (the tests' generators, one definition)


def seed_only(d: np.ndarray) -> np.ndarray:
    """The earlier test: t across seed means, floored by the within-seed variance, S - 1 df."""
    m = d.mean(-1)
    n_s = d.shape[-2]
    within = (d.var(-1, ddof=1) / d.shape[-1]).mean(-1)
    se = np.sqrt(np.maximum(m.var(-1, ddof=1), within) / n_s)
    return sps.t.sf(m.mean(-1) / se, n_s - 1) < 0.025


def crossed(d: np.ndarray) -> np.ndarray:
    r = stats.crossed_test(d)
    return stats.verdicts_from_p(r["p_value"], r["p_opposite"]) == "replicated"


def rate(gen, reps: int, chunk: int = 250) -> tuple[float, float]:
    new, old = [], []
    for _ in range(math.ceil(reps / chunk)):
        d = gen(chunk)
        new.append(crossed(d))
        old.append(seed_only(d))
    return float(np.mean(np.concatenate(new))), float(np.mean(np.concatenate(old)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=4000)
    args = ap.parse_args()
    rng = np.random.default_rng(2026)
    print(f"{'design':58s} {'crossed test':>12s} {'seed-only t':>12s}")
    for s in (3, 10, 20):
        for name, gen in (
            (f"null, 0/1, {s} seeds x 300 problems, problem sd 0.15", lambda n, s=s: _binary(rng, n, s, 300, 0.0, sd_unit=0.15)),
            (f"null, continuous, {s} seeds x 200 units", lambda n, s=s: _continuous(rng, n, s, 200, 0.0)),
        ):
            new, old = rate(gen, args.reps)
            print(f"{name:58s} {new:12.2%} {old:12.2%}")
    for s, u in ((3, 1000), (3, 200), (6, 1000)):
        new, old = rate(lambda n, s=s, u=u: _binary(rng, n, s, u, 0.05), args.reps)
        print(f"{f'+5 points, 0/1, {s} seeds x {u} problems (power)':58s} {new:12.2%} {old:12.2%}")
    borrow_table(args.reps, rng)


def borrowed(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d = y[:, 1] - y[:, 0]
    r = stats.crossed_test(d, seed_ms=stats.seed_by_method_ms(y))
    return stats.verdicts_from_p(r["p_value"], r["p_opposite"]) == "replicated", crossed(d)


def hetero(rng: np.random.Generator, n: int, m: int, delta: float, sd: float, factor: float) -> np.ndarray:
    """Like ``_methods_binary`` but method 1's seed-by-method sd is ``factor`` times the others'."""
    y = _methods_binary(rng, n, m, 3, 200, delta, sd)
    z = _methods_binary(rng, n, m, 3, 200, delta, sd * factor)
    y[:, 1] = z[:, 1]
    return y


def borrow_table(reps: int, rng: np.random.Generator) -> None:
    print(f"\n{'design (3 seeds x 200 problems)':58s} {'pooled':>12s} {'pair alone':>12s}")
    cases = [(f"null, {m} methods, seed sd {sd}", lambda n, m=m, sd=sd: _methods_binary(rng, n, m, 3, 200, 0.0, sd))
             for m, sd in ((4, 0.01), (4, 0.03), (6, 0.05))]
    cases += [(f"null, 4 methods, seed sd 0.03, hetero x{f:g}", lambda n, f=f: hetero(rng, n, 4, 0.0, 0.03, f))
              for f in (3.0, 1 / 3)]
    cases += [(f"+8 points, {m} methods, seed sd {sd} (power)",
               lambda n, m=m, sd=sd: _methods_binary(rng, n, m, 3, 200, 0.08, sd)) for m, sd in ((4, 0.03), (6, 0.05))]
    for name, gen in cases:
        a, b = [], []
        for _ in range(math.ceil(reps / 250)):
            x, y = borrowed(gen(250))
            a.append(x)
            b.append(y)
        print(f"{name:58s} {np.mean(np.concatenate(a)):12.2%} {np.mean(np.concatenate(b)):12.2%}")


if __name__ == "__main__":
    main()
