"""rlbook.analysis.stats: the one claim test (hand-computed), multiplicity, verdict roles, power, and calibration by
simulation with problems shared by seeds and a problem-by-method effect.

The t-distribution with 2 degrees of freedom has a closed form used in the hand computations below:
P(T_2 > t) = (1 - t / sqrt(2 + t^2)) / 2, and t_{0.975, 2} = 4.302653.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from rlbook.analysis import stats
from rlbook.core.config import ParamError
from scipy import stats as sps

T975_2 = 4.302653


def _p_t2_upper(t: float) -> float:
    return 0.5 * (1.0 - t / math.sqrt(2.0 + t * t))


def _long(d: list[list[float]], base: float = 0.0) -> pd.DataFrame:
    """A long table where ``method`` exceeds ``baseline`` by ``d[s][u]`` in cell (seed s, unit u)."""
    rows = []
    for s, row in enumerate(d):
        for u, x in enumerate(row):
            rows += [{"seed": s, "unit": u, "method": "m", "value": base + x},
                     {"seed": s, "unit": u, "method": "b", "value": base}]
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------ hand-computed tests


def test_crossed_design_with_zero_components_by_hand() -> None:
    # d = [[0.1, 0.3, 0.2], [0.3, 0.1, 0.4]]: grand mean 1.4 / 6 = 0.233333; seed means 0.2, 0.266667;
    # unit means 0.2, 0.2, 0.3.  ms_seed = 3 (0.033333^2 * 2) / 1 = 0.0066667; ms_unit = 2 (0.033333^2 * 2 +
    # 0.066667^2) / 2 = 0.0066667; residuals -0.0667, 0.1333, -0.0667 / 0.0667, -0.1333, 0.0667: SS 0.053333,
    # ms_resid = 0.053333 / 2 = 0.026667.  Both components estimate below zero -> zero: var(mean) =
    # ms_resid / 6 = 0.0044444, se = 0.0666667, df = (S-1)(U-1) = 2, t = 3.5,
    # p = (1 - 3.5 / sqrt(14.25)) / 2 = 0.0364135; CI 0.233333 -+ 4.302653 * 0.0666667.
    row = stats.compare(_long([[0.1, 0.3, 0.2], [0.3, 0.1, 0.4]]), "m", "b")
    assert row["design"] == "crossed" and row["n_seeds"] == 2 and row["n_units"] == 3
    assert row["effect"] == pytest.approx(0.233333, abs=1e-6)
    assert row["se"] == pytest.approx(0.0666667, abs=1e-6) and row["df"] == pytest.approx(2.0)
    assert row["p_value"] == pytest.approx(0.0364135, abs=1e-6)
    assert row["ci_low"] == pytest.approx(0.233333 - T975_2 * 0.0666667, abs=1e-5)
    assert row["var_seed"] == 0.0 and row["var_unit"] == 0.0 and row["var_resid"] == pytest.approx(0.026667, abs=1e-6)


def test_crossed_design_counts_the_problem_by_method_component_by_hand() -> None:
    # d = [[0.1, 0.3, 0.2], [0.5, 0.7, 0.6]]: no interaction (ms_resid = 0); seed means 0.2, 0.6 (grand 0.4):
    # ms_seed = 3 (0.2^2 + 0.2^2) = 0.24; unit means 0.3, 0.5, 0.4: ms_unit = 2 (0.01 + 0.01) / 2 = 0.02.
    # var(mean) = (0.24 + 0.02 - 0) / 6 = 0.0433333 (var_seed / S = 0.08 / 2 plus var_unit / U = 0.01 / 3
    # plus 0); Satterthwaite df = 0.26^2 / (0.24^2 / 1 + 0.02^2 / 2) = 0.0676 / 0.0578 = 1.169550.
    row = stats.compare(_long([[0.1, 0.3, 0.2], [0.5, 0.7, 0.6]]), "m", "b")
    assert row["se"] == pytest.approx(math.sqrt(0.0433333), abs=1e-6)
    assert row["df"] == pytest.approx(1.169550, abs=1e-5)
    assert row["var_seed"] == pytest.approx(0.08) and row["var_unit"] == pytest.approx(0.01)
    assert row["p_value"] == pytest.approx(sps.t.sf(0.4 / math.sqrt(0.0433333), 1.169550), abs=1e-6)


def test_one_value_per_seed_is_the_seed_t_test_by_hand() -> None:
    # d = [0.02, 0.05, 0.08]: mean 0.05, s = 0.03, se = 0.0173205, t = 2.886751,
    # p = (1 - 2.886751 / sqrt(10.33333)) / 2 = 0.0509865 > 0.025: inconclusive
    row = stats.evaluate_claim("c", "m", _long([[0.02], [0.05], [0.08]]), "m", "b", role="primary")
    assert row["design"] == "seeds" and row["df"] == 2
    assert row["p_value"] == pytest.approx(0.0509865, abs=1e-6)
    assert row["ci_low"] == pytest.approx(-0.0245241, abs=1e-6)
    assert row["verdict"] == "inconclusive" and row["ci_level"] == pytest.approx(0.95)


def test_units_alone_where_the_seed_adds_no_randomness_by_hand() -> None:
    # seed_random=False: each unit's difference averaged over seeds: [0.2, 0.2, 0.35] (from seeds
    # [0.1, 0.3, 0.2] and [0.3, 0.1, 0.5]); mean 0.25, sd 0.0866025, se 0.05, df 2, t = 5,
    # p = (1 - 5 / sqrt(27)) / 2 = 0.0188747
    row = stats.compare(_long([[0.1, 0.3, 0.2], [0.3, 0.1, 0.5]]), "m", "b", seed_random=False)
    assert row["design"] == "units" and row["df"] == 2
    assert row["p_value"] == pytest.approx(_p_t2_upper(5.0), abs=1e-7)
    assert row["p_value"] == pytest.approx(0.0188747, abs=1e-6)


@pytest.mark.parametrize(("direction", "margin", "effects", "p_hand"), [
    # mean -0.05, se 0.01 / sqrt(3) = 0.0057735, t = -8.660254: P(T_2 < -8.660254) = (1 - 8.660254 / sqrt(77)) / 2
    ("less", 0.0, [-0.05, -0.04, -0.06], 0.0065357),
    ("greater", 0.0, [-0.05, -0.04, -0.06], 1 - 0.0065357),
    # non-inferiority: mean 0, threshold -0.05: t = 8.660254, same tail
    ("not_less", 0.05, [0.0, 0.01, -0.01], 0.0065357),
    # equivalence (TOST): mean 0, margins +-0.05: both one-sided p = 0.0065357, p = the larger
    ("equivalent", 0.05, [0.0, 0.01, -0.01], 0.0065357),
])
def test_directions_by_hand(direction: str, margin: float, effects: list[float], p_hand: float) -> None:
    row = stats.compare(_long([[e] for e in effects]), "m", "b", direction=direction, margin=margin)
    assert row["p_value"] == pytest.approx(p_hand, abs=1e-6)


def test_log_scale_tests_the_mean_log_ratio_by_hand() -> None:
    # lengths 20 vs 40 on unit 0 and 30 vs 30 on unit 1, one seed each of 3 seeds identical:
    # log ratios [-0.693147, 0]: effect -0.346574, ratio exp(-0.346574) = 0.707107
    df = pd.DataFrame([{"seed": s, "unit": u, "method": m, "value": v} for s in range(3)
                       for u, (a, b) in enumerate([(20, 40), (30, 30)]) for m, v in (("m", a), ("b", b))])
    row = stats.compare(df, "m", "b", direction="less", scale="log")
    assert row["effect"] == pytest.approx(-0.346574, abs=1e-6) and row["ratio"] == pytest.approx(0.707107, abs=1e-6)
    with pytest.raises(ParamError, match="values > 0"):
        stats.compare(df.assign(value=df["value"] - 30), "m", "b", scale="log")
    with pytest.raises(ParamError, match="scale='cube' is not allowed; allowed: identity, log, log1p"):
        stats.compare(df, "m", "b", scale="cube")


def test_incomplete_grid_uses_both_margins_by_hand() -> None:
    # seed 0 has units 0, 1; seed 1 has unit 0 only: d = {(0,0): 0.2, (0,1): 0.4, (1,0): 0.6}.
    # seed means 0.3, 0.6 -> var 0.045 / 2 = 0.0225 (df 1); unit means 0.4, 0.4 -> var 0 (df 1).
    # var(mean of seed means) = 0.0225, se 0.15, effect 0.45, df = 1
    df = _long([[0.2, 0.4], [0.6, 0.0]]).query("not (seed == 1 and unit == 1)")
    row = stats.compare(df, "m", "b")
    assert row["design"] == "incomplete"
    assert row["effect"] == pytest.approx(0.45) and row["se"] == pytest.approx(0.15) and row["df"] == pytest.approx(1.0)


def test_unpaired_and_unknown_methods_raise_naming_them() -> None:
    df = _long([[0.1, 0.2]] * 3)
    with pytest.raises(ParamError, match="method='x' has no rows; available: m, b"):
        stats.compare(df, "x", "b")
    with pytest.raises(ParamError, match=r"not paired: 0 \(seed, unit\) cells only in .m., 1 only in .b."):
        stats.compare(df.drop(index=0), "m", "b")
    with pytest.raises(ParamError, match="direction='up' is not allowed"):
        stats.compare(df, "m", "b", direction="up")
    with pytest.raises(ParamError, match="needs margin > 0"):
        stats.compare(df, "m", "b", direction="not_less")


# ------------------------------------------------------------------------------ multiplicity and roles


def test_benjamini_hochberg_by_hand() -> None:
    # p = [0.01, 0.04, 0.03, 0.2], k = 4: sorted 0.01, 0.03, 0.04, 0.2 times 4/1, 4/2, 4/3, 4/4 =
    # 0.04, 0.06, 0.053333, 0.2; running minimum from the top: 0.04, 0.053333, 0.053333, 0.2
    q = stats.benjamini_hochberg([0.01, 0.04, 0.03, 0.2])
    assert q.tolist() == pytest.approx([0.04, 0.053333, 0.053333, 0.2], abs=1e-6)


def _row(p: float, role: str, verdict: str | None = None) -> dict:
    return {"claim": f"{role} {p}", "p_value": p, "p_opposite": 1 - p, "role": role, "verdict": verdict,
            "reason": ""}


def test_primary_alone_secondaries_by_bh_checks_without_verdict() -> None:
    rows = stats.assign_verdicts([_row(0.02, "primary"), _row(0.01, "secondary"), _row(0.02, "secondary"),
                                  _row(0.3, "secondary"), _row(0.001, "check"),
                                  _row(0.001, "secondary", "untestable in this regime")])
    # primary: 0.02 < 0.025 alone.  Secondaries 0.01, 0.02, 0.3 (k = 3): q = 0.03, 0.03, 0.3 -> none < 0.025
    # (Holm would give 0.03, 0.04 too); the check and the untestable row take no verdict.
    assert [r["verdict"] for r in rows] == ["replicated", "inconclusive", "inconclusive", "inconclusive", "check",
                                            "untestable in this regime"]
    assert rows[1]["p_adjusted"] == pytest.approx(0.03) and rows[0]["p_adjusted"] == 0.02
    assert rows[1]["family_size"] == 3


def test_two_seeds_are_underpowered_but_show_effect_and_interval() -> None:
    row = stats.evaluate_claim("c", "m", _long([[0.1, 0.2, 0.3], [0.2, 0.3, 0.2]]), "m", "b")
    assert row["verdict"] == "underpowered" and math.isfinite(row["ci_low"]) and "2 seed(s) < 3" in row["reason"]


def test_one_training_seed_is_underpowered_however_many_problems() -> None:
    # one seed's 3 problems: the units-alone design estimates the problem noise, not another training run's
    row = stats.evaluate_claim("c", "m", _long([[0.1, 0.2, 0.3]]), "m", "b")
    assert row["design"] == "units" and row["verdict"] == "underpowered" and "1 seed(s) < 3" in row["reason"]
    fixed = stats.evaluate_claim("c", "m", _long([[0.1, 0.2, 0.3]]), "m", "b", seed_random=False)
    assert fixed["verdict"] != "underpowered"


def test_failed_regime_check_is_untestable_with_reason() -> None:
    row = stats.evaluate_claim("c", "m", _long([[0.1]] * 3), "m", "b", checks=[(False, "no clipping happened")])
    assert row["verdict"] == "untestable in this regime" and row["reason"] == "no clipping happened"


def test_margin_must_exceed_one_runs_eval_standard_error() -> None:
    assert stats.eval_standard_error(0.5, 100) == pytest.approx(0.05)
    with pytest.raises(ParamError, match="must exceed one run's evaluation standard error 0.05"):
        stats.check_margin(0.04, 0.05, "c")
    stats.check_margin(0.06, 0.05)


# ------------------------------------------------------------------------------ power


@pytest.mark.parametrize("df", [2.0, 7.5, 40.0])
def test_mde_has_80_percent_power_by_the_noncentral_t(df: float) -> None:
    mde = stats.mde_from_se(0.1, df)
    assert sps.nct.sf(sps.t.ppf(0.975, df), df, mde / 0.1) == pytest.approx(0.8, abs=1e-6)


def test_mde_large_sample_limit_by_hand() -> None:
    # df -> infinity: (z_0.975 + z_0.8) se = (1.959964 + 0.841621) se
    assert stats.mde_from_se(1.0, 1e7) == pytest.approx(2.801585, abs=1e-4)


def test_components_design_by_hand() -> None:
    # var_seed 0.0004, var_unit 0.02, var_resid 0.3 at 3 seeds x 1000 units:
    # var(mean) = 0.0004 / 3 + 0.02 / 1000 + 0.3 / 3000 = 0.000133333 + 0.00002 + 0.0001 = 0.000253333;
    # expected mean squares: seed 0.3 + 1000 * 0.0004 = 0.7 (df 2), unit 0.3 + 3 * 0.02 = 0.36 (df 999),
    # resid 0.3 (df 1998): df = 0.76^2 / (0.49 / 2 + 0.1296 / 999 + 0.09 / 1998) = 0.5776 / 0.245175 = 2.35587
    c = stats.Components(0.0004, 0.02, 0.3)
    se, df = c.design(3, 1000)
    assert se == pytest.approx(math.sqrt(0.000253333), rel=1e-5) and df == pytest.approx(2.35587, rel=1e-4)
    assert c.mde(3, 1000) == pytest.approx(stats.mde_from_se(se, df))
    assert c.plan(c.mde(6, 500) * 1.0001, seeds=(3, 6), units=(200, 500, 1000)) == [(6, 500)]


# ------------------------------------------------------------------------------ rliable aggregates


def _freqs(values: np.ndarray) -> dict[float, float]:
    vals, counts = np.unique(np.round(values, 6), return_counts=True)
    return dict(zip(vals.tolist(), (counts / counts.sum()).tolist(), strict=True))


def test_iqm_by_hand_and_degenerate_interval() -> None:
    # 8 scores 1..8, 25% trimmed on each side (2 values): mean(3, 4, 5, 6) = 4.5.  Every task constant across
    # runs: a stratified resample (runs within each task) is the original matrix, so the interval is a point.
    x = np.array([[1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0]])
    y = np.array([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]])
    table = stats.iqm_table({"x": x, "y": y}, reps=300, seed=0)
    assert table.loc["x", ["iqm", "ci_low", "ci_high"]].tolist() == pytest.approx([2.5, 2.5, 2.5])
    assert table.loc["y", "iqm"] == pytest.approx(4.5)
    assert table.loc["y", "ci_low"] <= 4.5 <= table.loc["y", "ci_high"]


def test_stratified_bootstrap_resamples_runs_within_each_task() -> None:
    # [runs, tasks] = [[0, 10], [1, 12]]: every cell draws a run in its own task, IQM of 4 values = mean of
    # the middle two = (max(task-0 draws) + min(task-1 draws)) / 2: 5 w.p. 1/4 * 3/4, 5.5 w.p. 3/4 * 3/4,
    # 6 w.p. 1/4 * 1/4, 6.5 w.p. 3/4 * 1/4.  (Resampling whole runs instead could never give 6.)
    boot = stats.stratified_bootstrap([np.array([[0.0, 10.0], [1.0, 12.0]])], stats.rly_metrics.aggregate_iqm,
                                      reps=6000, seed=4)
    f = _freqs(boot)
    assert [f[5.0], f[5.5], f[6.0], f[6.5]] == pytest.approx([3 / 16, 9 / 16, 1 / 16, 3 / 16], abs=0.02)


def test_probability_of_improvement_by_hand() -> None:
    # task 0: x runs {1, 3}, y runs {2, 0}: pairs 1>2 no, 1>0 yes, 3>2 yes, 3>0 yes -> 3/4;
    # task 1: identical runs -> 1/2 (rliable's rule); mean over tasks = 0.625
    x = np.array([[1.0, 5.0], [3.0, 5.0]])
    y = np.array([[2.0, 5.0], [0.0, 5.0]])
    out = stats.probability_of_improvement(x, y, reps=200, seed=0)
    assert out["poi"] == pytest.approx(0.625)
    assert 0.0 <= out["ci_low"] <= out["poi"] <= out["ci_high"] <= 1.0
    with pytest.raises(ParamError, match="tasks"):
        stats.probability_of_improvement(x, y[:, :1])


def test_score_matrix_from_long_table() -> None:
    df = pd.DataFrame({"method": ["a"] * 4, "seed": [0, 0, 1, 1], "task": ["t1", "t2", "t1", "t2"],
                       "value": [0.1, 0.2, 0.3, 0.4]})
    assert stats.score_matrix(df, "a").tolist() == [[0.1, 0.2], [0.3, 0.4]]
    with pytest.raises(ParamError, match="lacks 1"):
        stats.score_matrix(df.iloc[:3], "a")



# ------------------------------------------------------------------------------ calibration and power by simulation


def _binary(rng: np.random.Generator, n_exp: int, n_seeds: int, n_units: int, delta: float,
            sd_seed: float = 0.01, sd_unit: float = 0.1, rho: float = 0.6) -> np.ndarray:
    """Paired 0/1 differences ``[n_exp, seeds, problems]`` as real held-out data has them: problem difficulty
    q_u ~ 0.15 + 0.7 Beta(2, 2) shared by seeds and methods; a problem-by-method effect b_u ~ N(0, sd_unit)
    on the method's solve rate (the method helps on some problems and hurts on others, the same for every
    seed); a seed shift N(0, sd_seed); the two arms share their uniform draw w.p. ``rho`` (common random
    numbers); the method adds ``delta``."""
    q = 0.15 + 0.7 * rng.beta(2.0, 2.0, size=(n_exp, 1, n_units))
    b = rng.normal(0.0, sd_unit, size=(n_exp, 1, n_units))
    a = rng.normal(0.0, sd_seed, size=(n_exp, n_seeds, 1))
    u_base = rng.random((n_exp, n_seeds, n_units))
    u_meth = np.where(rng.random(u_base.shape) < rho, u_base, rng.random(u_base.shape))
    return (u_meth < q + b + a + delta).astype(float) - (u_base < q).astype(float)


def _continuous(rng: np.random.Generator, n_exp: int, n_seeds: int, n_units: int, delta: float) -> np.ndarray:
    """Normal differences with all three components: seed sd 0.05, unit-by-method sd 0.3, residual sd 1."""
    return (delta + rng.normal(0, 0.05, (n_exp, n_seeds, 1)) + rng.normal(0, 0.3, (n_exp, 1, n_units))
            + rng.normal(0, 1.0, (n_exp, n_seeds, n_units)))


def _replicated(d: np.ndarray) -> np.ndarray:
    r = stats.crossed_test(d)
    return stats.verdicts_from_p(r["p_value"], r["p_opposite"]) == "replicated"


@pytest.mark.parametrize("n_seeds", [3, 10, 20])
def test_null_with_shared_problems_replicates_at_most_5_percent_binary(n_seeds: int) -> None:
    # 1500 null experiments of n_seeds x 300 problems (the problem-by-method effect is what the old seed-only
    # test never counted: it replicated this null 7-10% of the time at 10-20 seeds).  MC sd of a 2.5% rate: 0.4%
    rng = np.random.default_rng(100 + n_seeds)
    rate = np.mean(np.concatenate([_replicated(_binary(rng, 300, n_seeds, 300, 0.0, sd_unit=0.15))
                                   for _ in range(5)]))
    assert rate <= 0.05, rate


@pytest.mark.parametrize("n_seeds", [3, 10, 20])
def test_null_with_shared_problems_replicates_at_most_5_percent_continuous(n_seeds: int) -> None:
    rng = np.random.default_rng(200 + n_seeds)
    rate = np.mean(np.concatenate([_replicated(_continuous(rng, 400, n_seeds, 200, 0.0)) for _ in range(5)]))
    assert rate <= 0.05, rate


def test_the_old_seed_only_test_fails_this_null_so_the_simulation_can_fail_a_bad_test() -> None:
    rng = np.random.default_rng(7)
    d = _continuous(rng, 2000, 20, 200, 0.0)
    m = d.mean(-1)  # seed means; the seed-only t ignores that every seed shares the problems
    p = sps.t.sf(m.mean(-1) / (m.std(-1, ddof=1) / math.sqrt(20)), 19)
    assert np.mean(p < 0.025) > 0.08


def test_five_point_gain_found_at_least_half_the_time_at_3_seeds_and_1000_problems() -> None:
    rng = np.random.default_rng(300)
    power = np.mean(np.concatenate([_replicated(_binary(rng, 250, 3, 1000, 0.05)) for _ in range(4)]))
    assert power >= 0.5, power


def test_effect_at_the_reported_mde_is_found_80_percent_of_the_time() -> None:
    # continuous outcomes at 6 seeds x 200 units: the design's mde from its true components, then 4000
    # experiments at that effect (MC sd 0.63 points; we accept 80% -+ 3 MC sd)
    comps = stats.Components(0.05**2, 0.3**2, 1.0)
    mde = comps.mde(6, 200)
    rng = np.random.default_rng(400)
    power = np.mean(np.concatenate([_replicated(_continuous(rng, 500, 6, 200, mde)) for _ in range(8)]))
    assert abs(power - 0.8) <= 3 * math.sqrt(0.8 * 0.2 / 4000), (mde, power)


# ------------------------------------------------------------------------------ borrowing the seed term


def test_seed_by_method_mean_square_by_hand() -> None:
    # cell means (methods x seeds): [[1, .5], [.5, .5], [0, .5]]; row means .75 .5 .25, seed means .5 .5, grand .5;
    # interactions +-.25 (methods 0 and 2), 0 (method 1): sum of squares .25 over (3-1)(2-1) = 2 df;
    # on the paired-difference scale 2 U .25 / 2 = .5 with U = 2
    y = np.array([[[1, 1], [1, 0]], [[1, 0], [0, 1]], [[0, 0], [1, 0]]], dtype=float)
    ms, df = stats.seed_by_method_ms(y)
    assert df == 2
    assert ms == pytest.approx(0.5)


def test_two_methods_pool_to_the_pairs_own_seed_mean_square() -> None:
    rng = np.random.default_rng(5)
    y = rng.normal(size=(2, 4, 7))
    ms, df = stats.seed_by_method_ms(y)
    own = stats.mean_squares(y[1] - y[0])["ms_seed"]
    assert df == 3
    assert ms == pytest.approx(float(own))


def test_borrow_pools_the_seed_term_and_names_the_methods() -> None:
    rng = np.random.default_rng(6)
    rows = [{"seed": s, "unit": u, "method": m, "value": float(rng.normal() + (0.3 if m == "A" else 0.0))}
            for m in ("A", "B", "C", "D") for s in range(3) for u in range(20)]
    table = pd.DataFrame(rows)
    own = stats.compare(table, "A", "B")
    pooled = stats.compare(table, "A", "B", borrow=["C", "D"])
    assert pooled["effect"] == pytest.approx(own["effect"])
    assert pooled["design"] == "crossed, pooled seed term"
    assert pooled["borrowed_from"] == "C, D"
    with pytest.raises(ParamError, match="'E'"):
        stats.compare(table, "A", "B", borrow=["E"])
    with pytest.raises(ParamError, match="needs a baseline"):
        stats.compare(table, "A", None, borrow=["C"])


def _methods_binary(rng: np.random.Generator, n_exp: int, n_methods: int, n_seeds: int, n_units: int,
                    delta: float, sd_seed: float, sd_unit: float = 0.1, rho: float = 0.6) -> np.ndarray:
    """0/1 outcomes ``[n_exp, methods, seeds, problems]`` of several methods trained with the same seeds and
    scored on the same problems: shared difficulty, a problem-by-method effect, a seed-by-method effect of sd
    ``sd_seed`` (the same sd for every method: the comparability the notebook declares), common random numbers
    shared with prob. ``rho``; method 1 adds ``delta``."""
    q = 0.15 + 0.7 * rng.beta(2.0, 2.0, size=(n_exp, 1, 1, n_units))
    b = rng.normal(0.0, sd_unit, size=(n_exp, n_methods, 1, n_units))
    a = rng.normal(0.0, sd_seed, size=(n_exp, n_methods, n_seeds, 1))
    shape = (n_exp, n_methods, n_seeds, n_units)
    u0 = rng.random((n_exp, 1, n_seeds, n_units))
    u = np.where(rng.random(shape) < rho, u0, rng.random(shape))
    eff = np.zeros((1, n_methods, 1, 1))
    eff[0, 1] = delta
    return (u < q + b + a + eff).astype(float)


def _replicated_pooled(y: np.ndarray) -> np.ndarray:
    r = stats.crossed_test(y[:, 1] - y[:, 0], seed_ms=stats.seed_by_method_ms(y))
    return stats.verdicts_from_p(r["p_value"], r["p_opposite"]) == "replicated"


@pytest.mark.parametrize(("n_methods", "sd_seed"), [(4, 0.03), (6, 0.05)])
def test_pooled_seed_term_null_replicates_at_most_5_percent_at_3_seeds(n_methods: int, sd_seed: float) -> None:
    # 2000 null experiments, a shared baseline (method 0), seed-dominated noise: the design borrowing is for
    rng = np.random.default_rng(500 + n_methods)
    rate = np.mean(np.concatenate([_replicated_pooled(_methods_binary(rng, 250, n_methods, 3, 200, 0.0, sd_seed))
                                   for _ in range(8)]))
    assert rate <= 0.05, rate


def test_pooled_seed_term_finds_an_8_point_gain_more_often_than_the_pair_alone() -> None:
    # 4 methods x 3 seeds x 200 problems, seed sd 0.03: measured 50% pooled vs 37% unpooled (2000 experiments)
    rng = np.random.default_rng(600)
    ys = [_methods_binary(rng, 250, 4, 3, 200, 0.08, 0.03) for _ in range(4)]
    pooled = np.mean(np.concatenate([_replicated_pooled(y) for y in ys]))
    own = np.mean(np.concatenate([_replicated(y[:, 1] - y[:, 0]) for y in ys]))
    assert pooled >= own + 0.06, (pooled, own)


def test_borrow_falls_back_to_the_pairs_design_with_one_seed() -> None:
    table = pd.DataFrame([{"seed": 0, "unit": u, "method": m, "value": float((u + i) % 2)}
                          for i, m in enumerate("ABC") for u in range(6)])
    row = stats.compare(table, "A", "B", borrow=["C"])
    assert row["design"] == "units" and row["borrow_used"] is False


def test_components_from_a_results_row_with_null_components() -> None:
    """results.json writes a NaN component as null (spo_chain's credit claim: one unit per seed, no residual);
    `rlbook power` and the scoreboard read it back as 0, as they read NaN, instead of failing on float(None)."""
    import json

    row = json.loads('{"var_seed": 0.01, "var_unit": 0.04, "var_resid": null}')
    c = stats.Components.from_row(row)
    assert (c.var_seed, c.var_unit, c.var_resid) == (0.01, 0.04, 0.0)
    assert (stats.Components.from_row({"var_seed": float("nan")}).var_seed, stats.Components.from_row({}).var_unit) == \
        (0.0, 0.0)
