"""rlbook.analysis.report: bootstrap bands, curves, the Pareto view, McNemar and the format split."""

from __future__ import annotations

import re

import matplotlib
import numpy as np
import pandas as pd
import pytest
from rlbook.analysis import report

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


ONE_SEED = {"claim": "GRPO raises held-out accuracy", "metric": "accuracy_gain", "method": "GRPO",
            "baseline": "base model", "effect": 0.125, "ci_low": float("nan"), "ci_high": float("nan"),
            "n_seeds": 1, "mde": float("nan"), "p_adjusted": float("nan"), "verdict": "underpowered",
            "reason": "1 seeds < 3: no verdict", "paper": ""}


def test_claim_prose_and_table_never_say_nan_or_inf() -> None:
    html = report.claims_html([ONE_SEED])
    text = report.claim_sentence(ONE_SEED) + html[: html.index("<details>")]  # the details hold the raw row
    assert not re.search(r"\bnan\b|\binf\b|1 seeds", text, re.I)
    assert "no interval with 1 seed" in text and "+0.125" in text


def test_claim_row_details_keep_every_field_and_mark_the_primary_claim() -> None:
    row = {**ONE_SEED, "primary": True, "paper_effect": 0.08, "verdict": "replicated", "n_seeds": 3,
           "ci_low": 0.02, "ci_high": 0.2, "p_adjusted": 0.0123, "mde": 0.05}
    html = report.claims_html([row], caption="the claims")
    assert "<caption>the claims</caption>" in html and "★" in html and "+0.08" in html
    assert "[+0.02, +0.2]" in html and "p (primary, alone) = 0.012" in html
    assert html.count("<dt>") == len(row)  # the full row, as in results.json


def test_short_reason_is_one_short_line() -> None:
    long = {**ONE_SEED, "verdict": "untestable in this regime",
            "reason": "base held-out accuracy 2.0% (the mechanism needs 5%-95%) " + "x" * 200 + "; second check"}
    line = report.short_reason(long)
    assert len(line) <= 110 and "\n" not in line and "second check" not in line


def test_range_text_says_at_least_instead_of_inf() -> None:
    assert report.range_text(0.5, float("inf")) == "at least 0.5"
    assert report.range_text(float("-inf"), 3) == "at most 3"
    assert report.range_text(0.1, 0.9) == "between 0.1 and 0.9"


def test_curves_with_few_points_get_markers() -> None:
    import matplotlib.pyplot as plt

    df = pd.DataFrame([{"method": "GRPO", "seed": 0, "step": s, "acc": 0.1 * s} for s in (1, 2)])
    fig, ax = plt.subplots()
    report.plot_curves(ax, df, "step", "acc", hue="method")
    assert ax.lines[0].get_marker() == "o"
    plt.close(fig)


def test_table_has_a_caption_and_no_rounded_away_p_value() -> None:
    df = pd.DataFrame({"before": [0.5, np.nan], "McNemar p (paired problems)": [0.00042, np.nan]})
    html = report.table(df, "format split").to_html()
    assert "<caption>format split</caption>" in html and "&lt; 0.001" in html and "nan" not in html


def test_smoke_runs_get_no_advice_to_change_the_task() -> None:
    text = "GRPO gets no signal on task 'gcd': greedy accuracy is 0%. Make it easier, e.g. -p task.config.x=1."
    assert "easier" not in report.signal_advice(text, "smoke") and "plumbing test" in report.signal_advice(text, "smoke")
    assert report.signal_advice(text, "cpu") == "warning: " + text


def test_identical_arms_are_said_to_be_identical_not_a_precise_null() -> None:
    # lp_reg's cpu run: the regulariser acted on no token, so Lp-Reg trained exactly as GRPO (common random numbers)
    row = {"claim": "Lp-Reg keeps more token entropy than GRPO", "metric": "train:entropy:last3", "method": "Lp-Reg",
           "baseline": "GRPO", "effect": 0.0, "se": 0.0, "ci_low": 0.0, "ci_high": 0.0, "n_seeds": 3, "mde": 0.0,
           "verdict": "untestable in this regime", "reason": "Lp-Reg: mean |lp_reg_frac| = 0.0000", "primary": True}
    text = report.claim_sentence(row)
    assert "effect 0 (the arms gave identical values), 3 seeds: **untestable in this regime**" in text
    assert "smallest detectable effect" not in text and "[+0" not in text
    moved = report.claim_sentence({**row, "effect": 0.01, "se": 0.02, "ci_low": -0.03, "ci_high": 0.05, "mde": 0.07})
    assert "smallest detectable effect 0.07" in moved and "identical" not in moved
