"""rlbook.report: bootstrap bands, curves, the Pareto view, McNemar and the format split."""

from __future__ import annotations

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


# ---------------------------------------------------------------- multi-seed comparison helpers


def _final() -> pd.DataFrame:
    rows = []
    for seed, (a, b) in enumerate([(0.30, 0.40), (0.50, 0.58), (0.20, 0.31)]):
        rows.append({"method": "base", "seed": seed, "final_accuracy": a, "final_response_length": 10 + seed})
        rows.append({"method": "new", "seed": seed, "final_accuracy": b, "final_response_length": 8 + seed})
    return pd.DataFrame(rows)


def test_method_curves_one_figure_legend_that_covers_no_panel() -> None:
    import matplotlib.pyplot as plt

    fig = report.method_curves(_curves(), [("acc", "accuracy"), ("missing", "skipped")])
    assert len(fig.axes) == 1 and fig.axes[0].get_legend() is None  # the missing column got no panel
    assert sorted(t.get_text() for t in fig.legends[0].get_texts()) == ["dapo", "grpo"]
    assert fig.legends[0].get_bbox_to_anchor().x0 >= fig.bbox.x1 - 1  # anchored at the right edge
    plt.close(fig)


def test_curve_band_bins_x_when_seeds_do_not_share_it() -> None:
    # tokens differ per seed: 100/210/330 and 110/200/320 over [100, 330] in 12 bins of width 19.17
    df = pd.DataFrame({"seed": [0, 0, 0, 1, 1, 1], "tokens": [100, 210, 330, 110, 200, 320],
                       "acc": [0.1, 0.2, 0.3, 0.3, 0.4, 0.5]})
    band = report.curve_band(df, "tokens", "acc")
    assert list(band["n"]) == [2, 2, 2]  # both seeds in every bin
    assert band["mean"].tolist() == pytest.approx([0.2, 0.3, 0.4])
    assert band["tokens"].iloc[0] == pytest.approx(100 + 0.5 * 230 / 12)
    steps = pd.DataFrame({"seed": [0, 0, 0, 1, 1], "step": [1, 2, 3, 1, 2], "acc": [0.1, 0.2, 0.3, 0.3, 0.4]})
    assert report.curve_band(steps, "step", "acc")["step"].tolist() == [1, 2, 3]  # a seed one step short: no bins


def test_plot_curves_never_repeats_a_colour_with_many_methods() -> None:
    import matplotlib.pyplot as plt

    df = pd.DataFrame([{"method": f"m{i}", "seed": 0, "step": s, "acc": i + s} for i in range(13) for s in range(2)])
    fig, ax = plt.subplots()
    report.plot_curves(ax, df, "step", "acc", hue="method")
    assert len({line.get_color() for line in ax.lines}) == 13
    plt.close(fig)


def test_pareto_plot_one_point_per_method() -> None:
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
