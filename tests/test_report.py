"""Statistics in rlbook.report: bootstrap coverage, verdicts, paired vs unpaired, curves."""

from __future__ import annotations

import math

import matplotlib
import numpy as np
import pandas as pd
import pytest
from rlbook import report

matplotlib.use("Agg")


def test_bootstrap_single_value_has_zero_width() -> None:
    assert report.bootstrap_ci([0.7]) == (0.7, 0.7, 0.7)


def test_bootstrap_is_deterministic_and_ordered() -> None:
    vals = [0.1, 0.4, 0.35, 0.8, 0.5]
    est, lo, hi = report.bootstrap_ci(vals, seed=3)
    assert report.bootstrap_ci(vals, seed=3) == (est, lo, hi)
    assert lo <= est <= hi
    assert est == pytest.approx(np.mean(vals))


def test_bootstrap_accepts_stat_without_axis() -> None:
    est, lo, hi = report.bootstrap_ci([1, 2, 3, 10], stat=lambda v: float(np.median(v)), n_boot=200)
    assert est == 2.5 and lo <= est <= hi


def test_bootstrap_empty_raises() -> None:
    with pytest.raises(ValueError, match="empty"):
        report.bootstrap_ci([])


def test_bootstrap_ci_covers_true_mean_at_about_nominal_rate() -> None:
    rng = np.random.default_rng(123)
    reps, hits = 300, 0
    for i in range(reps):
        sample = rng.normal(loc=1.0, scale=2.0, size=30)
        _, lo, hi = report.bootstrap_ci(sample, n_boot=500, seed=i)
        hits += lo <= 1.0 <= hi
    # percentile bootstrap under-covers slightly at n=30; 300 reps give a binomial sd of ~1.3%
    assert 0.88 <= hits / reps <= 0.99


def test_narrower_level_gives_narrower_interval() -> None:
    vals = np.random.default_rng(0).normal(size=20)
    _, lo95, hi95 = report.bootstrap_ci(vals, level=0.95)
    _, lo50, hi50 = report.bootstrap_ci(vals, level=0.5)
    assert hi50 - lo50 < hi95 - lo95


@pytest.mark.parametrize(
    ("lo", "hi", "direction", "margin", "expected"),
    [
        (0.1, 0.3, "greater", 0.0, "replicated"),
        (-0.3, -0.1, "greater", 0.0, "not replicated"),
        (-0.1, 0.3, "greater", 0.0, "inconclusive"),
        (0.02, 0.3, "greater", 0.05, "inconclusive"),
        (-0.3, -0.1, "less", 0.0, "replicated"),
        (0.1, 0.3, "less", 0.0, "not replicated"),
        (-0.1, 0.1, "less", 0.0, "inconclusive"),
        (-0.01, 0.05, "not_less", 0.02, "replicated"),
        (-0.2, -0.05, "not_less", 0.02, "not replicated"),
        (-0.05, 0.05, "not_less", 0.02, "inconclusive"),
        (0.01, 0.05, "not_less", 0.0, "replicated"),
    ],
)
def test_verdict(lo: float, hi: float, direction: str, margin: float, expected: str) -> None:
    assert report.verdict(lo, hi, direction, margin) == expected


def test_verdict_rejects_unknown_direction() -> None:
    with pytest.raises(ValueError, match="allowed: greater, less, not_less"):
        report.verdict(0, 1, "bigger")


def test_paired_ci_is_narrower_than_unpaired_with_shared_seed_noise() -> None:
    rng = np.random.default_rng(7)
    seed_effect = rng.normal(scale=1.0, size=8)  # large per-seed variation shared by both arms
    base = 0.5 + seed_effect + rng.normal(scale=0.02, size=8)
    meth = 0.6 + seed_effect + rng.normal(scale=0.02, size=8)
    p_est, p_lo, p_hi = report.paired_diff_ci(meth, base)
    u_est, u_lo, u_hi = report.unpaired_diff_ci(meth, base)
    assert p_est == pytest.approx(u_est)
    assert p_hi - p_lo < (u_hi - u_lo) / 5
    assert report.verdict(p_lo, p_hi, "greater") == "replicated"
    assert report.verdict(u_lo, u_hi, "greater") == "inconclusive"


def test_paired_requires_equal_lengths() -> None:
    with pytest.raises(ValueError, match="equal lengths"):
        report.paired_diff_ci([1, 2, 3], [1, 2])


def test_claim_rows_and_table() -> None:
    rows = [
        report.claim(
            "DAPO beats GRPO", "accuracy", "grpo", [0.5, 0.6, 0.55], [0.4, 0.45, 0.42], method="dapo"
        ),
        report.claim(
            "length shrinks", "length", None, [-3.0, -2.5, -4.0], direction="less", method="dr_grpo"
        ),
        report.claim(
            "no worse",
            "accuracy",
            "grpo",
            [0.5, 0.1, 0.9],
            [0.2, 0.8, 0.4],
            direction="not_less",
            paired=False,
        ),
    ]
    assert set(rows[0]) == set(report.CLAIM_COLUMNS)
    assert rows[0]["verdict"] == "replicated" and rows[0]["n"] == 3
    assert rows[0]["effect"] == pytest.approx(np.mean([0.1, 0.15, 0.13]))
    assert rows[1]["verdict"] == "replicated" and rows[1]["baseline"] is None
    assert rows[2]["verdict"] == "inconclusive" and rows[2]["method"] is None
    table = report.claim_table(rows)
    assert list(table.columns) == report.CLAIM_COLUMNS and len(table) == 3
    assert report.verdict_counts(rows) == {"replicated": 2, "not replicated": 0, "inconclusive": 1}
    assert list(report.claim_table([]).columns) == report.CLAIM_COLUMNS


def _curves() -> pd.DataFrame:
    rows = []
    for method, slope in [("grpo", 0.1), ("dapo", 0.2)]:
        for seed in range(3):
            for step in range(5):
                rows.append({"method": method, "seed": seed, "step": step, "acc": slope * step + 0.01 * seed})
    return pd.DataFrame(rows)


def test_curve_band_per_group_and_x() -> None:
    band = report.curve_band(_curves(), "step", "acc", "method")
    assert list(band.columns) == ["method", "step", "mean", "lo", "hi", "n"]
    assert len(band) == 10
    row = band[(band.method == "dapo") & (band.step == 2)].iloc[0]
    assert row["mean"] == pytest.approx(0.41)
    assert row["lo"] <= row["mean"] <= row["hi"] and row["n"] == 3


def test_curve_band_averages_within_seed_first() -> None:
    df = pd.concat([_curves(), _curves()])  # every (method, seed, step) twice
    band = report.curve_band(df, "step", "acc", "method")
    assert (band["n"] == 3).all()


def test_plot_curves_draws_line_and_band_per_method() -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    report.plot_curves(ax, _curves(), "step", "acc", hue="method")
    assert len(ax.lines) == 2 and len(ax.collections) == 2
    assert sorted(t.get_text() for t in ax.get_legend().get_texts()) == ["dapo", "grpo"]
    plt.close(fig)


def test_samples_to_target() -> None:
    df = _curves()
    assert report.samples_to_target(df[df.method == "dapo"], "step", "acc", 0.45) == 3  # mean 0.61 at step 3
    per = report.samples_to_target(df, "step", "acc", 0.45, by="method")
    assert math.isnan(per["grpo"]) and per["dapo"] == 3


# ---------------------------------------------------------------- multi-seed comparison helpers


def _final() -> pd.DataFrame:
    rows = []
    for seed, (a, b) in enumerate([(0.30, 0.40), (0.50, 0.58), (0.20, 0.31)]):
        rows.append({"method": "base", "seed": seed, "final_accuracy": a, "final_response_length": 10 + seed})
        rows.append({"method": "new", "seed": seed, "final_accuracy": b, "final_response_length": 8 + seed})
    return pd.DataFrame(rows)


def test_final_table_pairs_by_seed() -> None:
    tab = report.final_table(_final(), baseline="base")
    assert list(tab.index) == ["base", "new"]
    assert tab.loc["new", "diff"] == pytest.approx(np.mean([0.10, 0.08, 0.11]))
    # paired: every seed improves by 8-11 points, so the interval excludes zero although the means' CIs overlap
    assert tab.loc["new", "diff_low"] > 0.07 and tab.loc["new", "ci_low"] < tab.loc["base", "ci_high"]
    assert tab.loc["base", "diff"] == 0.0 and tab.loc["new", "n"] == 3


def test_claim_vs_needs_two_seeds_for_a_verdict() -> None:
    wide = pd.DataFrame({"base": [0.1, 0.2], "new": [0.5, 0.6]}, index=[0, 1])
    assert report.claim_vs("new beats base", "acc", wide, "new", "base")["verdict"] == "replicated"
    assert report.claim_vs("new beats base", "acc", wide.iloc[:1], "new", "base")["verdict"] == "inconclusive"
    empty = report.claim_vs("x", "acc", wide.assign(new=np.nan), "new", "base")
    assert empty["n"] == 0 and empty["verdict"] == "inconclusive"
    assert "no data" in report.conclusion([empty])


def test_samples_to_target_and_pareto() -> None:
    steps = pd.DataFrame([{"method": m, "seed": s, "samples": 10 * k, "accuracy": k * (0.2 if m == "fast" else 0.05)}
                          for m in ("fast", "slow") for s in (0, 1) for k in range(1, 6)])
    tab = report.samples_to_target_table(steps, target=0.4, smooth=1)
    assert tab.loc["fast", "samples_to_target"] == 20 and tab.loc["fast", "reached"] == 1.0
    assert np.isnan(tab.loc["slow", "samples_to_target"]) and tab.loc["slow", "reached"] == 0.0
    fig = report.pareto_plot(_final())
    assert len(fig.axes[0].get_legend().get_texts()) == 2


def test_mcnemar_counts_only_the_discordant_pairs_and_format_split_by_hand():
    # discordant: 0 -> 1 twice, 1 -> 0 never: binomial(2 of 2, p = 0.5) two-sided = 2 * 0.25 = 0.5
    assert report.mcnemar_p([0, 0, 1, 1], [1, 1, 1, 1]) == pytest.approx(0.5)
    assert report.mcnemar_p([1, 0], [1, 0]) == 1.0
    before = {"formatted": [0, 0, 1, 1], "correct": [0, 0, 1, 0]}
    after = {"formatted": [1, 1, 1, 1], "correct": [1, 0, 1, 0]}
    t = report.format_split(before, after)
    assert t.loc["answer in the requested format", "change"] == pytest.approx(0.5)
    # among well-formatted: before 1 of 2 (0.5), after 2 of 4 (0.5)
    assert t.loc["accuracy among well-formatted answers", "before"] == pytest.approx(0.5)
    assert t.loc["accuracy among well-formatted answers", "after"] == pytest.approx(0.5)
    assert t.loc["accuracy overall", "after"] == pytest.approx(0.5)
