"""False-positive rate and power of rlbook's claim test (rlbook.stats.crossed_test) against the earlier
seed-only t test, by simulation with what real held-out data has: problems shared by every seed, a
problem-by-method effect, a between-seed shift and common random numbers between the two arms.

    python benchmarks/stats_calibration.py [--reps 4000]

Prints, per design, the share of null experiments called ``replicated`` (one-sided 0.025: a calibrated test
gives about 2.5%) and the share of experiments with a 5-point accuracy gain found.  The same generators are
the tests' (tests/test_stats.py), at more repetitions.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
from scipy import stats as sps

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from rlbook import stats  # noqa: E402
from test_stats import _binary, _continuous  # noqa: E402  (the tests' generators, one definition)


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


if __name__ == "__main__":
    main()
