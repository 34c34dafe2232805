"""Notebooks from a study spec: a method notebook is narrative + a :class:`Study` + plots; this module runs
the sweep, measures the claims, checks each mechanism's regime, decides the verdicts and writes the results.

A notebook::

    STUDY = study.Study("bnpo", claims=[
        study.Claim("BNPO's accuracy is at least GRPO's", "final_accuracy", "BNPO", "GRPO", "not_less", margin=0.08,
                    requires=[("baseline_beats_base", {})], paper="no accuracy loss (abstract)"),
    ])
    run = study.start(STUDY, globals())        # the run folder; parameters read from the notebook's namespace
    res = study.sweep(STUDY, run)             # every (method, seed), cached, with held-out per-problem outcomes
    res.curves(); res.accuracy_table()        # figures and tables
    res.finish(extra={...})                   # claim table, verdicts, results.json, the conclusion (Markdown)

Claims are data: a metric (:data:`METRICS`: held-out per-problem metrics, per-run training metrics, or a
measurement the notebook passes as a long table ``method, seed[, unit], value``), a direction (greater, less,
not_less, equivalent), a baseline, a margin, and regime checks (:data:`CHECKS`) that must hold for the
mechanism to act at all; otherwise the verdict is ``untestable in this regime`` with the reason.  Intervals,
primary and secondary verdicts, minimum detectable effects and the ``underpowered`` rule (< 3 seeds) are :mod:`rlbook.stats`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from rlbook import experiments, probe, regimes, report, runs, stats
from rlbook.errors import ParamError

DIRECTIONS = ("greater", "less", "not_less", "equivalent")
DEFAULT_CURVES = (("accuracy", "train accuracy"), ("reward_mean", "train reward"),
                  ("response_length", "response length (tokens)"), ("zero_adv_group_frac", "zero-advantage groups"),
                  ("entropy", "token entropy"), ("eval_accuracy", "held-out accuracy"))
SPEC_KEYS = experiments.SPEC_KEYS


@dataclass
class Claim:
    """One claim of a paper, as data.

    ``metric``: a :data:`METRICS` name (``final_accuracy``, ``final_length``, ``accuracy_gain``, ``eval_auc``,
    ``train:<column>:<mean|last3|first|max|min>``, ...) or the name of a measurement passed to
    :meth:`StudyResult.finish` as a table.  ``requires``: regime checks ``(name, kwargs)`` of :data:`CHECKS`.
    ``paper``: what the paper reports (quoted), shown next to our number; ``paper_effect``: that effect as a
    number on the claim's scale where the paper gives one (the power table compares it with our mde).
    ``primary``: the notebook's one pre-registered headline claim (tested alone at one-sided 0.025);
    ``check``: a manipulation check, true by construction or a precondition (shown, no verdict); otherwise a
    secondary claim (Benjamini-Hochberg).  ``scale``: ``log`` for lengths, token counts, ratios and variances.
    ``seed_random=False`` where the seed adds no randomness (a fixed checkpoint, one model's sample pool).
    """

    text: str
    metric: str
    method: str
    baseline: str | None = None
    direction: str = "greater"
    margin: float = 0.0
    requires: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    paper: str = ""
    primary: bool = False
    check: bool = False
    scale: str | None = None  # None: the metric's declared scale (:func:`metric_scale`)
    seed_random: bool = True
    paper_effect: float | None = None

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ParamError(f"claim {self.text!r}: direction={self.direction!r}; allowed: {', '.join(DIRECTIONS)}")
        if self.scale is None:
            self.scale = metric_scale(self.metric)
        if self.scale not in stats.SCALES:
            raise ParamError(f"claim {self.text!r}: scale={self.scale!r}; allowed: {', '.join(stats.SCALES)}")
        if self.primary and self.check:
            raise ParamError(f"claim {self.text!r}: a manipulation check (check=True) cannot be the primary claim")
        for name, _ in self.requires:
            if name not in CHECKS:
                raise ParamError(f"claim {self.text!r}: unknown regime check {name!r}; allowed: {', '.join(CHECKS)}")

    @property
    def role(self) -> str:
        return "primary" if self.primary else "check" if self.check else "secondary"


COUNT_METRICS = ("length", "after_answer", "reflections", "repeated_lines", "tokens")
DIFFERENCE_METRICS = ("length_change", "length_wrong_change", "growth")


def metric_scale(metric: str) -> str:
    """The scale a metric declares: ``log1p`` for lengths and other token or line counts (a ratio of two
    methods' counts is what length claims mean; counts can be 0), ``identity`` for accuracies, rates and
    differences (e.g. ``length_change``, a change from the base model, can be negative)."""
    name = metric.lower()
    if any(d in name for d in DIFFERENCE_METRICS):
        return "identity"
    return "log1p" if any(c in name for c in COUNT_METRICS) else "identity"


@dataclass
class Study:
    """A notebook's study: its name (= notebook), claims (at most one ``primary``), learning-curve panels and
    title."""

    name: str
    claims: list[Claim] = field(default_factory=list)
    curves: Sequence[tuple[str, str]] = DEFAULT_CURVES
    title: str = ""

    def __post_init__(self) -> None:
        primary = [c.text for c in self.claims if c.primary]
        if len(primary) > 1:
            raise ParamError(f"study {self.name!r} has {len(primary)} primary claims ({primary}); one headline "
                             "claim per notebook: mark the others secondary")
        texts = [c.text for c in self.claims]
        dup = sorted({t for t in texts if texts.count(t) > 1})
        if dup:
            raise ParamError(f"study {self.name!r} repeats claims {dup}")

    @property
    def primary(self) -> Claim | None:
        return next((c for c in self.claims if c.primary), None)


# ------------------------------------------------------------------------------------------- running


def start(study: Study, namespace: dict[str, Any]) -> runs.Run:
    """The notebook's run folder; its parameters are the notebook's variables named in
    ``params/<name>.yaml`` (``defaults``), read from ``namespace`` (pass ``globals()``): the ``profile``
    variable applies when the notebook is run by hand or by papermill directly (:func:`rlbook.runs.from_namespace`)."""
    run = runs.from_namespace(study.name, namespace)
    print("run folder:", run.dir)
    show_power(study, run.params, run.profile)
    return run


def show_power(study: Study, params: Mapping[str, Any], profile: str | None) -> pd.DataFrame:
    """The power table before the sweep (:func:`rlbook.power.power_table`): each claim's paper effect, the
    smallest effect this design detects with 80% power, and the designs that would reach the paper's."""
    from rlbook import power

    table = power.power_table(study, params, profile)
    try:
        from IPython.display import Markdown, display

        display(Markdown("**Power before the sweep** (one-sided 0.025, 80% power; `rlbook power` prints the same)"))
        display(table)
    except ImportError:  # pragma: no cover - IPython is a dependency; plain text otherwise
        print(power.format_table(table))
    return table


def margin_check(claim: Claim, eval_size: int) -> tuple[bool, str] | None:
    """For a non-inferiority or parity claim on a held-out metric: its margin must exceed one run's evaluation
    standard error (at 50% accuracy, the largest), or the claim cannot tell "as good" from noise."""
    if claim.direction not in ("not_less", "equivalent") or not claim.metric.startswith(("final_accuracy", "accuracy_gain")):
        return None
    se = stats.eval_standard_error(0.5, eval_size)
    return claim.margin > se, f"margin {claim.margin:g} vs one run's evaluation standard error {se:.3f} ({eval_size} problems)"


def _eval_size(p: Mapping[str, Any]) -> int:
    return int(p.get("eval_size") or p["task"].get("eval_size", 100))


def sweep(study: Study, run: runs.Run, methods: Mapping[str, Any] | None = None, **overrides: Any) -> StudyResult:
    """Train every (method, seed) of the run's parameters (cached, shared with other notebooks) and read the
    results back.  ``methods`` / ``overrides`` (e.g. ``train={...}``) replace the parameters' for a second
    sweep in the same notebook (an ablation on another reward, say)."""
    p = {**run.params, **overrides}
    base = {k: p[k] for k in SPEC_KEYS if k in p}
    specs = experiments.make_specs(methods if methods is not None else p["methods"], base)
    for c in study.claims:
        ok = margin_check(c, _eval_size(p))
        if ok is not None and not ok[0]:
            print(f"note: claim {c.text!r} will be untestable here: {ok[1]}")
    res = experiments.sweep(specs, p["seeds"], cache=experiments.cache_root(run))
    out = StudyResult(study, run, res, specs, p)
    warning = probe.signal_warning(out.base_accuracy(), p["task"])
    if warning:
        print(report.signal_advice(warning, run.profile))
    if methods is None and not overrides:
        res.metrics.to_csv(run.metrics_path, index=False)
    print(f"{res.trained} runs trained, {res.reused} reused from the cache: {len(specs)} methods x {p['seeds']} seeds")
    return out


# ------------------------------------------------------------------------------------------- metrics


def outcomes(res: experiments.SweepResult, which: str = "final") -> pd.DataFrame:
    """Per-problem held-out outcomes, one row per (method, seed, problem): correct, length, formatted,
    truncated (``which="base"``: the base model's, the same for every method)."""
    rows = []
    for (method, seed), ev in res.evals.items():
        e = ev[which]
        n = len(e["correct"])
        for unit in range(n):
            rows.append({"method": method, "seed": seed, "unit": unit, "correct": float(e["correct"][unit]),
                         "length": float(e["lengths"][unit]),
                         "formatted": float(e.get("formatted", [math.nan] * n)[unit]),
                         "truncated": float(e.get("truncated", [math.nan] * n)[unit])})
    return pd.DataFrame(rows)


def _held_out(column: str) -> Callable[[experiments.SweepResult], pd.DataFrame]:
    def metric(res: experiments.SweepResult) -> pd.DataFrame:
        return outcomes(res).rename(columns={column: "value"})[["method", "seed", "unit", "value"]]

    return metric


def _length_if_wrong(res: experiments.SweepResult) -> pd.DataFrame:
    """Held-out length of each answer the trained policy got wrong (NaN where it was right): Dr. GRPO's
    length bias of wrong answers.  Paired claims keep the problems both methods got wrong."""
    final = outcomes(res)
    return final.assign(value=final["length"].where(final["correct"] == 0.0))[["method", "seed", "unit", "value"]]


def _length_wrong_change(res: experiments.SweepResult) -> pd.DataFrame:
    """Per held-out problem the trained policy got wrong: its answer's length minus the base model's answer
    length on the same problem (NaN where the trained policy was right)."""
    final, base = outcomes(res, "final"), outcomes(res, "base")
    change = (final["length"] - base["length"]).where(final["correct"] == 0.0)
    return final.assign(value=change)[["method", "seed", "unit", "value"]]


def _train_tokens(res: experiments.SweepResult) -> pd.DataFrame:
    """Long table ``method, seed, value``: the tokens each run generated while training, summed over its steps:
    ``gen_tokens`` (every rollout, the groups a filter dropped and refilled included) plus ``extra_gen_tokens``
    (phases' own generations: answers after prefixes, continuations), as ``Trainer.generated_tokens`` counts."""
    m = res.metrics
    extra = m["extra_gen_tokens"].fillna(0.0) if "extra_gen_tokens" in m else 0.0
    out = m.assign(value=m["gen_tokens"] + extra).groupby(["method", "seed"], sort=False)["value"].sum()
    return out.reset_index().astype({"value": float})


def _accuracy_gain(res: experiments.SweepResult) -> pd.DataFrame:
    final, base = outcomes(res, "final"), outcomes(res, "base")
    return final.assign(value=final["correct"] - base["correct"])[["method", "seed", "unit", "value"]]


def held_out_curves(res: experiments.SweepResult) -> dict[tuple[str, int], np.ndarray]:
    """Each run's held-out accuracy curve on the trainer's fixed evaluation problems (``train.eval_every``,
    ``train.eval_size``): the base model's accuracy on those problems first, then every evaluation."""
    if "eval_accuracy" not in res.metrics or res.metrics["eval_accuracy"].isna().all():
        raise ParamError("held-out curves need train.eval_every > 0 (evaluations during training)")
    out = {}
    for (method, seed), part in res.metrics.groupby(["method", "seed"], sort=False):
        evals = part["eval_accuracy"].dropna().to_numpy()
        n = int(part["eval_n"].dropna().iloc[0])
        base = float(np.mean(res.evals[(method, seed)]["base"]["correct"][:n]))
        out[(method, seed)] = np.concatenate([[base], evals])
    return out


def _curve_metric(stat: Callable[[np.ndarray], float]) -> Callable[[experiments.SweepResult], pd.DataFrame]:
    def metric(res: experiments.SweepResult) -> pd.DataFrame:
        return pd.DataFrame([{"method": m, "seed": s, "value": stat(c)} for (m, s), c in held_out_curves(res).items()])

    return metric


def drawdown(curve: np.ndarray) -> float:
    """The largest fall of a curve below its running maximum (0 for a curve that never falls)."""
    return float((np.maximum.accumulate(curve) - curve).max())


AGGS: dict[str, Callable[[pd.Series], float]] = {
    "mean": lambda s: float(s.mean()), "first": lambda s: float(s.iloc[0]), "last3": lambda s: float(s.iloc[-3:].mean()),
    "max": lambda s: float(s.max()), "min": lambda s: float(s.min()),
    # change over training: mean of the last three steps minus mean of the first three
    "growth": lambda s: float(s.iloc[-3:].mean() - s.iloc[:3].mean()),
}


def _train_metric(res: experiments.SweepResult, column: str, agg: str) -> pd.DataFrame:
    if column not in res.metrics:
        raise ParamError(f"training metric {column!r} is not in the runs' metrics; have: {', '.join(res.metrics)}")
    if agg not in AGGS:
        raise ParamError(f"aggregation {agg!r} is not allowed; allowed: {', '.join(AGGS)}")
    rows = [{"method": m, "seed": s, "value": AGGS[agg](part[column].dropna())}
            for (m, s), part in res.metrics.groupby(["method", "seed"], sort=False) if part[column].notna().any()]
    return pd.DataFrame(rows, columns=["method", "seed", "value"])


METRICS: dict[str, Callable[[experiments.SweepResult], pd.DataFrame]] = {
    "final_accuracy": _held_out("correct"),
    "final_length": _held_out("length"),
    "final_format": _held_out("formatted"),
    "final_truncated": _held_out("truncated"),
    "final_length_wrong": _length_if_wrong,
    "length_wrong_change": _length_wrong_change,
    "accuracy_gain": _accuracy_gain,
    "train_tokens": _train_tokens,
    # held-out curves (train.eval_every): speed and stability on a fixed problem set
    "eval_auc": _curve_metric(lambda c: float(np.mean(c[1:]))),  # mean held-out accuracy over the evaluations
    "eval_drawdown": _curve_metric(drawdown),  # largest fall below the best held-out accuracy so far
    "eval_std": _curve_metric(lambda c: float(np.std(np.diff(c)))),  # spread of the changes between evaluations
}


def metric_table(res: experiments.SweepResult, metric: str, extra: Mapping[str, pd.DataFrame] | None = None) -> pd.DataFrame:
    """The long table ``method, seed[, unit], value`` of ``metric`` (a :data:`METRICS` name, ``train:<col>:<agg>``,
    or a name in ``extra``)."""
    if extra and metric in extra:
        return extra[metric]
    if metric in METRICS:
        return METRICS[metric](res)
    if metric.startswith("train:"):
        _, column, agg = (metric.split(":") + ["mean"])[:3]
        return _train_metric(res, column, agg)
    raise ParamError(f"unknown metric {metric!r}; allowed: {', '.join(METRICS)}, train:<column>:<agg>, "
                     f"or a measurement passed as extra ({', '.join(extra or {}) or 'none given'})")


# ------------------------------------------------------------------------------------- regime checks
# fn(result, claim, **kwargs) -> (passed, what was measured): the conditions under which a mechanism can act.


def _runs_of(res: StudyResult, method: str) -> pd.DataFrame:
    m = res.sweep.metrics
    return m[m["method"] == method]


def check_clip_active(res: StudyResult, claim: Claim, method: str | None = None, min_frac: float = 0.005,
                      ) -> tuple[bool, str]:
    """Ratio clipping (or a gate) acts only after the first inner epoch (the first epoch's ratio is exactly 1):
    the clip/gate fraction measured in epochs >= 2 must reach ``min_frac``."""
    runs_ = _runs_of(res, method or claim.method)
    if "clip_frac_late" not in runs_ or runs_["clip_frac_late"].isna().all():
        return False, f"{method or claim.method}: one inner epoch, so the importance ratio is exactly 1 and no clip acts"
    frac = float(runs_["clip_frac_late"].mean())
    return frac >= min_frac, f"{method or claim.method}: clip/gate fraction in epochs >= 2 is {frac:.4f} (needs >= {min_frac})"


def check_truncation_below(res: StudyResult, claim: Claim, max_frac: float = 0.05) -> tuple[bool, str]:
    """Length claims need room to move: the base model's share of truncated held-out answers below ``max_frac``."""
    base = outcomes(res.sweep, "base")
    frac = float(base["truncated"].mean())
    return frac < max_frac, f"base model truncates {frac:.1%} of held-out answers at max_new_tokens (needs < {max_frac:.0%})"


def check_lengths_can_grow(res: StudyResult, claim: Claim, max_share: float = 0.7) -> tuple[bool, str]:
    """A length bias can show only if lengths can grow: base mean length below ``max_share`` of the limit."""
    base = outcomes(res.sweep, "base")
    limit = int(res.params["train"].get("max_new_tokens", 32))
    share = float(base["length"].mean()) / limit
    return share < max_share, f"base mean length is {share:.0%} of max_new_tokens={limit} (needs < {max_share:.0%})"


def check_base_accuracy_between(res: StudyResult, claim: Claim, lo: float = 0.05, hi: float = 0.95) -> tuple[bool, str]:
    acc = float(outcomes(res.sweep, "base")["correct"].mean())
    return lo <= acc <= hi, f"base held-out accuracy {acc:.1%} (the mechanism needs {lo:.0%}-{hi:.0%})"


def check_sampled_accuracy_between(res: StudyResult, claim: Claim, lo: float, hi: float,
                                   method: str | None = None) -> tuple[bool, str]:
    """The training accuracy of the first step (sampled, temperature 1) between ``lo`` and ``hi``."""
    first = _runs_of(res, method or claim.baseline or claim.method).groupby("seed")["accuracy"].first().mean()
    return lo <= first <= hi, f"first-step sampled accuracy {first:.1%} (the mechanism needs {lo:.0%}-{hi:.0%})"


def check_metric_nonzero(res: StudyResult, claim: Claim, column: str, method: str | None = None,
                         min_abs: float = 1e-3) -> tuple[bool, str]:
    """A mechanism that shapes ``column`` must have moved it: its mean over the method's steps is non-zero."""
    runs_ = _runs_of(res, method or claim.method)
    val = float(runs_[column].abs().mean()) if column in runs_ else 0.0
    return val >= min_abs, f"{method or claim.method}: mean |{column}| = {val:.4f} over training (needs >= {min_abs})"


def check_baseline_beats_base(res: StudyResult, claim: Claim, min_gain: float = 0.0) -> tuple[bool, str]:
    """Before a non-inferiority claim: the baseline's estimated gain over the base model (held-out, paired by
    problem) is above ``min_gain``; an estimate, not a significance test (a gate that needs significance on
    its own makes the claim after it untestable at any realistic number of seeds)."""
    gain = METRICS["accuracy_gain"](res.sweep)
    who = claim.baseline or claim.method
    effect = float(gain.loc[gain["method"] == who, "value"].mean())
    return effect > min_gain, f"{who}: estimated gain over the base model {effect:+.3f} (needs > {min_gain:+.3f})"


def check_train_tokens_at_most(res: StudyResult, claim: Claim, max_ratio: float = 1.1, method: str | None = None,
                               baseline: str | None = None) -> tuple[bool, str]:
    """At equal steps, (at most) equal tokens: the method generated at most ``max_ratio`` times the tokens its
    baseline generated in training (:data:`METRICS` ``train_tokens``, mean over seeds), so a comparison at the
    same number of steps does not give the method more generation than the baseline (dynamic sampling's
    refills, VSRM's or AnytimeReasoner's extra answers).  A method that needs more is compared at equal
    tokens only by a run with ``train.gen_token_budget`` at the baseline's count."""
    who, base = method or claim.method, baseline or claim.baseline
    if base is None:
        return False, f"{who}: no baseline to compare training tokens with"
    t = _train_tokens(res.sweep)
    mine, theirs = (float(t.loc[t["method"] == m, "value"].mean()) for m in (who, base))
    ratio = mine / theirs if theirs > 0 else math.inf
    return ratio <= max_ratio, (f"{who} generated {mine:,.0f} training tokens, {base} {theirs:,.0f} "
                                f"(ratio {ratio:.2f}, needs <= {max_ratio:.2f})")


def check_mixed_groups(res: StudyResult, claim: Claim, min_frac: float = 0.1, method: str | None = None,
                       ) -> tuple[bool, str]:
    """Group-relative signal exists: the share of groups with non-zero advantage is at least ``min_frac``."""
    runs_ = _runs_of(res, method or claim.baseline or claim.method)
    frac = 1.0 - float(runs_["zero_adv_group_frac"].mean())
    return frac >= min_frac, f"{frac:.1%} of groups carry a non-zero advantage (needs >= {min_frac:.0%})"


def check_base_answers(res: StudyResult, claim: Claim, fn: Callable[[str], float], min_mean: float,
                       what: str = "") -> tuple[bool, str]:
    """The mechanism needs something in the base model's held-out answers (e.g. reflection words to remove): the
    mean of ``fn(answer)`` over them reaches ``min_mean``."""
    ev = next(iter(res.sweep.evals.values()))["base"]["completions"]
    val = float(np.mean([fn(t) for t in ev])) if ev else 0.0
    name = what or getattr(fn, "__name__", "fn")
    return val >= min_mean, f"base model's answers: mean {name} {val:.3f} (needs >= {min_mean})"


def check_train_metric_between(res: StudyResult, claim: Claim, column: str, lo: float = -math.inf, hi: float = math.inf,
                               method: str | None = None, agg: str = "mean") -> tuple[bool, str]:
    """A training metric of ``method`` (default the claim's), ``agg`` over each run's steps then mean over seeds,
    lies in [lo, hi]: e.g. the line format is followed (``format_share``), a filter keeps groups (``shortfall``), a
    process signal varies (``mc_mixed``), a probe or a PRM is informative (``spae_phi_auc``, ``prm_dpo_acc``)."""
    name = method or claim.method
    runs_ = _runs_of(res, name)
    if column not in runs_ or runs_[column].isna().all():
        return False, f"{name}: training metric {column!r} was not recorded"
    val = float(np.mean([AGGS[agg](part[column].dropna()) for _, part in runs_.groupby("seed")
                         if part[column].notna().any()]))
    return lo <= val <= hi, f"{name}: {column} ({agg} over steps) = {val:.3f} (needs {report.range_text(lo, hi)})"


def check_sampled_truncation_below(res: StudyResult, claim: Claim, max_frac: float = 0.05,
                                   method: str | None = None) -> tuple[bool, str]:
    """Length claims on *sampled* completions (training metrics) need room to move: the share of the first
    step's samples cut at max_new_tokens (mean over seeds) below ``max_frac``."""
    runs_ = _runs_of(res, method or claim.baseline or claim.method)
    if "truncated_frac" not in runs_:
        return False, "the runs did not record truncated_frac"
    frac = float(runs_.groupby("seed")["truncated_frac"].first().mean())
    return frac < max_frac, (f"{frac:.1%} of the first step's samples are cut at max_new_tokens "
                             f"(needs < {max_frac:.0%}): sampled lengths cannot grow")


def check_measured(res: StudyResult, claim: Claim, column: str, lo: float = -math.inf, hi: float = math.inf,
                   table: str | None = None, method: str | None = None) -> tuple[bool, str]:
    """A condition on a measurement passed to :meth:`StudyResult.finish` (``extra``): the mean of ``column``
    over the rows of ``method`` (default the claim's) in table ``table`` (default the claim's metric) lies in
    ``[lo, hi]`` (default: rows exist); e.g. the clip fraction of a loss in its second epoch, or that all-wrong
    groups were found at all."""
    name, who = table or claim.metric, method or claim.method
    df = (res.extra or {}).get(name)
    rows = df[df["method"] == who] if df is not None and "method" in df else None
    if rows is None or rows.empty or column not in rows:
        return False, f"{who}: no rows with {column!r} in the measurement {name!r}"
    val = float(rows[column].mean())
    need = f"needs {report.range_text(lo, hi)}" if math.isfinite(lo) or math.isfinite(hi) else "needs rows"
    return lo <= val <= hi, f"{who}: mean {column} in {name} is {val:.4g} over {len(rows)} rows ({need})"


def check_measured_between(res: Any, claim: Claim, table: str, lo: float = -math.inf, hi: float = math.inf,
                           method: str | None = None) -> tuple[bool, str]:
    """For a pipeline (:class:`rlbook.pipeline.PipelineResult`): the mean of the measured table ``table`` (rows of
    ``method``, default the claim's method; every row when the table has one method) lies in [lo, hi], e.g. a
    base success rate in the mechanism's regime, or a stage that learned before its forgetting is measured."""
    tables = getattr(res, "tables", None) or {}
    if table not in tables:
        raise ParamError(f"regime check measured_between: no table {table!r}; have: {', '.join(tables) or 'none'}")
    t = tables[table]
    name = method or claim.method
    part = t[t["method"] == name] if name in set(t["method"]) else t
    val = float(part["value"].astype(float).mean())
    return lo <= val <= hi, f"{table} ({name}) = {val:.3g} (the mechanism needs {report.range_text(lo, hi)})"


CHECKS: dict[str, Callable[..., tuple[bool, str]]] = {
    "clip_active": check_clip_active, "truncation_below": check_truncation_below,
    "lengths_can_grow": check_lengths_can_grow, "base_accuracy_between": check_base_accuracy_between,
    "sampled_accuracy_between": check_sampled_accuracy_between, "metric_nonzero": check_metric_nonzero,
    "baseline_beats_base": check_baseline_beats_base, "mixed_groups": check_mixed_groups,
    "train_tokens_at_most": check_train_tokens_at_most,
    "base_answers": check_base_answers,
    "train_metric_between": check_train_metric_between,
    "sampled_truncation_below": check_sampled_truncation_below, "measured": check_measured,
    # the curricula family (rlbook.regimes): the base model's per-prompt success spread on the pool, a hard regime
    "success_spread": regimes.check_success_spread, "hard_regime": regimes.check_hard_regime,
    "metric_between": regimes.check_metric_between,
    # regimes matched to mechanisms (rlbook.regimes): clip-higher's band; a sampled-accuracy window over all steps
    "clip_band": regimes.check_clip_band, "sampled_accuracy_all_steps": regimes.check_sampled_accuracy_all_steps,
    "measured_between": check_measured_between,
}


# ------------------------------------------------------------------------------------------ results


def interval(table: pd.DataFrame, method: str, baseline: str | None = None, scale: str = "identity",
             ) -> dict[str, float]:
    """Mean (or paired difference against ``baseline``) of a long metric table with its calibrated 95% interval
    (:func:`rlbook.stats.compare`)."""
    table, why = finite_pairs(table, method, baseline)  # e.g. lengths of wrong answers: NaN where right
    if why:
        return {"mean": math.nan, "ci_low": math.nan, "ci_high": math.nan, "n_seeds": 0}
    r = stats.compare(table, method, baseline, scale=scale)
    return {"mean": r["effect"], "ci_low": r["ci_low"], "ci_high": r["ci_high"], "n_seeds": r["n_seeds"]}


def finite_pairs(table: pd.DataFrame, method: str, baseline: str | None) -> tuple[pd.DataFrame, str]:
    """The rows of ``method`` and ``baseline`` whose (seed, unit) has a finite value for both; a reason when some
    were dropped for NaN (e.g. a zero mean gradient: no reward signal) and none remain."""
    keys = ["seed"] + (["unit"] if "unit" in table.columns else [])
    names = [method] + ([baseline] if baseline else [])
    part = table[table["method"].isin(names)] if "method" in table else table
    missing = [n for n in names if n not in set(part.get("method", []))]
    if missing:  # e.g. a step-level metric that was never defined (no checkable line in any completion)
        filler = pd.DataFrame([{"method": n, "seed": s, "value": 0.0} for n in names for s in sorted(set(part.get("seed", [])) or {0})])
        return filler, f"no values of the metric for {', '.join(missing)} (never measured in these runs)"
    bad = part[~np.isfinite(part["value"].astype(float))]
    if bad.empty:
        return part, ""
    drop = set(map(tuple, bad[keys].to_numpy()))
    kept = part[[tuple(k) not in drop for k in part[keys].to_numpy()]]
    if kept.empty or kept["method"].nunique() < len(names):
        return part.fillna(0.0), (f"no finite values of the metric for {', '.join(sorted(set(bad['method'])))} "
                                  "(e.g. a zero mean gradient: no reward signal)")
    return kept, ""


def claim_row(c: Claim, table: pd.DataFrame, checks: list[tuple[bool, str]]) -> dict[str, Any]:
    """One claim's row (effect, calibrated interval, mde, verdict as a family of one) from its long metric
    table and the outcomes of its regime checks; a notebook's rows get their verdicts together from
    :func:`rlbook.stats.assign_verdicts`."""
    table, why = finite_pairs(table, c.method, c.baseline)
    checks = checks + ([(False, why)] if why else [])
    row = stats.evaluate_claim(c.text, c.metric, table, c.method, c.baseline, direction=c.direction,
                               margin=c.margin, role=c.role, checks=checks, scale=c.scale,
                               seed_random=c.seed_random)
    row["checks"] = "; ".join(f"{'ok' if ok else 'FAILED'}: {why}" for ok, why in checks)
    row["paper"] = c.paper
    row["paper_effect"] = c.paper_effect
    return row


@dataclass
class StudyResult:
    """A study's trained runs and everything computed from them."""

    study: Study
    run: runs.Run
    sweep: experiments.SweepResult
    specs: list[experiments.RunSpec]
    params: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, pd.DataFrame] = field(default_factory=dict)  # measurements given to evaluate/finish

    @property
    def methods(self) -> list[str]:
        return self.sweep.methods

    def describe(self) -> pd.DataFrame:
        """What differs between the methods' trainer settings."""
        return experiments.describe(self.specs)

    def base_accuracy(self) -> float:
        return float(outcomes(self.sweep, "base")["correct"].mean())

    def curves(self, panels: Sequence[tuple[str, str]] | None = None, name: str = "learning_curves",
               x: str = "step") -> Any:
        """Per-step training metrics, mean across seeds with a band, one line per method (saved as a figure)."""
        fig = report.method_curves(self.sweep.metrics, list(panels or self.study.curves), x=x,
                                   title=self.study.title or self.study.name)
        self.run.figure(fig, name)
        return fig

    def accuracy_table(self, metric: str = "final_accuracy", baseline: str | None = None,
                       extra: Mapping[str, pd.DataFrame] | None = None) -> pd.DataFrame:
        """Per method: mean of ``metric`` with its calibrated 95% CI across seeds and, against ``baseline``, the
        paired difference (same seeds, same problems) with its CI."""
        table = metric_table(self.sweep, metric, extra)
        rows = []
        for m in self.methods:
            row = {"method": m, **interval(table, m)}
            if baseline and m != baseline:
                d = interval(table, m, baseline)
                row.update(diff=d["mean"], diff_low=d["ci_low"], diff_high=d["ci_high"])
            rows.append(row)
        return pd.DataFrame(rows).set_index("method")

    def metric_table(self, metric: str) -> pd.DataFrame:
        """The long table ``method, seed[, unit], value`` of a metric of these runs (to pass to another result's
        :meth:`finish` as a measurement, e.g. a second sweep's accuracy)."""
        return metric_table(self.sweep, metric)

    def pareto(self, name: str = "accuracy_vs_length") -> Any:
        """Held-out accuracy against mean response length, seed means with intervals in both directions."""
        fig = report.pareto_plot(self.sweep.final)
        self.run.figure(fig, name)
        return fig

    def evaluate(self, extra: Mapping[str, pd.DataFrame] | None = None) -> list[dict[str, Any]]:
        """Every claim of the study: regime checks, effect, calibrated interval, mde; verdicts (primary alone, secondaries by BH)."""
        self.extra = dict(extra or {})
        rows = []
        for c in self.study.claims:
            checks = [CHECKS[name](self, c, **kw) for name, kw in c.requires]
            margin = margin_check(c, _eval_size(self.params))
            checks += [margin] if margin is not None else []
            rows.append(claim_row(c, metric_table(self.sweep, c.metric, extra), checks))
        self.rows = stats.assign_verdicts(rows)
        return self.rows

    def claim_table(self) -> pd.DataFrame:
        return claim_frame(self.rows)

    def finish(self, extra: Mapping[str, pd.DataFrame] | None = None, results: Mapping[str, Any] | None = None) -> Any:
        """Evaluate the claims, save ``results.json`` (headline numbers, tables, every claim row with its
        ``n_seeds``) and return the conclusion as Markdown, every number computed from the runs."""
        from IPython.display import Markdown

        self.evaluate(extra)
        acc = self.accuracy_table()
        timing = report.timing_table(self.sweep.final)
        out = {"seeds": int(self.params["seeds"]), "steps": int(self.sweep.metrics["step"].max()),
               "base_accuracy": self.base_accuracy(),
               **{f"final_accuracy[{m}]": float(v) for m, v in acc["mean"].items()},
               **{f"seconds_per_step[{m}]": float(v) for m, v in timing["seconds_per_step"].items()},
               "runs_trained": self.sweep.trained, "runs_reused": self.sweep.reused,
               "final_table": acc.reset_index().to_dict("records"), "claims": self.rows, **(results or {})}
        self.run.save_results(out)
        show_claims(self.rows)
        return Markdown(conclusion(self.rows, self))


def _num(x: Any, fmt: str = "+.3g") -> str:
    return format(x, fmt) if isinstance(x, (int, float)) and math.isfinite(x) else "n/a"


def _claim_sentence(r: dict[str, Any]) -> str:
    return report.claim_sentence(r)  # the prose lives in rlbook.report (no nan / inf in it)


CLAIM_COLUMNS = ["claim", "role", "method", "baseline", "metric", "direction", "margin", "effect", "ci_low",
                 "ci_high", "n_seeds", "n_units", "mde", "verdict", "reason", "checks", "paper"]


def claim_frame(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Evaluated claim rows as the table a notebook shows (:data:`CLAIM_COLUMNS`)."""
    return stats.claim_table(rows)[CLAIM_COLUMNS]


def show_claims(rows: Sequence[dict[str, Any]] | pd.DataFrame) -> None:
    """Show the claim table (:func:`rlbook.report.claims_html`: one short line per claim, every field of the row
    in an expandable detail) in the notebook, before the conclusion that ``finish`` returns."""
    from IPython.display import HTML, display

    rows = rows.to_dict("records") if isinstance(rows, pd.DataFrame) else list(rows)
    display(HTML(report.claims_html(rows)))


def conclusion(rows: Sequence[dict[str, Any]], res: StudyResult | None = None) -> str:
    """The closing paragraph: the primary claim's verdict first, then verdict counts and one line per claim
    with its numbers."""
    rows = sorted(rows, key=lambda r: {"primary": 0, "secondary": 1, "check": 2}.get(r.get("role", ""), 1))
    counts = {v: sum(r["verdict"] == v for r in rows) for v in stats.VERDICTS}
    primary = next((r for r in rows if r.get("role") == "primary"), None)
    head = "**Conclusion.** "
    if primary is not None:
        head += f"Primary claim: **{primary['verdict']}**. "
    head += f"Of {len(rows)} rows: " + ", ".join(f"{n} {v}" for v, n in counts.items() if n) + "."
    if res is not None:
        head += (f" Base model: {res.base_accuracy():.1%} held-out accuracy; "
                 f"{report.count(res.params['seeds'], 'seed')} x "
                 f"{report.count(int(res.sweep.metrics['step'].max()), 'step')} per method.")
    tail = ""
    if counts.get("inconclusive"):
        tail = ("\n\n*Inconclusive*: the 95% interval contains both the claimed and the opposite side at this "
                "scale; the smallest detectable effect says how large an effect this design could have shown.")
    return head + "\n\n" + "\n".join(_claim_sentence(r) for r in rows) + tail


# ----------------------------------------------------------------------------------- task suites


def sweep_suite(study: Study, run: runs.Run, tasks: Sequence[str], task_override: Mapping[str, Any] | None = None,
                max_new_tokens: int | None = None) -> SuiteResult:
    """The run's methods on every task of a suite (``rlbook.tasks.PRESETS`` names): one cached sweep per task,
    with the preset's task spec (updated by ``task_override``, e.g. smaller splits) and generation length
    (``max_new_tokens`` replaces it when given)."""
    from rlbook.tasks import preset

    results = {}
    for name in tasks:
        p = preset(name)
        task = {**p["task"], **(task_override or {})}
        train = {**run.params["train"], "max_new_tokens": max_new_tokens or p["max_new_tokens"]}
        print(f"task {name}: {p['about']}")
        results[name] = sweep(study, run, task=task, train=train, eval_size=task["eval_size"])
    return SuiteResult(study, run, results)


@dataclass
class SuiteResult:
    """Methods compared across a suite of tasks: per-task results and rliable aggregates over (seeds, tasks)."""

    study: Study
    run: runs.Run
    results: dict[str, StudyResult]
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def methods(self) -> list[str]:
        return next(iter(self.results.values())).methods

    def long(self, metric: str = "final_accuracy") -> pd.DataFrame:
        """``metric`` on every task, one long table with a ``task`` column; units are ``task:problem``."""
        parts = []
        for task, res in self.results.items():
            t = metric_table(res.sweep, metric).assign(task=task)
            if "unit" in t.columns:
                t["unit"] = task + ":" + t["unit"].astype(str)
            parts.append(t)
        return pd.concat(parts, ignore_index=True)

    def scores(self, metric: str = "final_accuracy") -> dict[str, np.ndarray]:
        """Each method's ``[seeds, tasks]`` matrix of the per-run mean of ``metric``."""
        df = self.long(metric)
        return {m: stats.score_matrix(df, m) for m in self.methods}

    def table(self, metric: str = "final_accuracy") -> pd.DataFrame:
        """Mean of ``metric`` per task and method (columns: tasks, then the mean over tasks)."""
        df = self.long(metric).groupby(["method", "task"], sort=False)["value"].mean().unstack("task")
        df["mean over tasks"] = df.mean(axis=1)
        return df.loc[self.methods]

    def aggregates(self, baseline: str, metric: str = "final_accuracy") -> pd.DataFrame:
        """rliable's interquartile mean over (seeds, tasks) with its stratified-bootstrap interval per method, and
        each method's probability of improvement over ``baseline`` with its interval."""
        scores = self.scores(metric)
        out = stats.iqm_table(scores)
        for m in self.methods:
            if m != baseline:
                poi = stats.probability_of_improvement(scores[m], scores[baseline])
                out.loc[m, ["P(improve)", "P low", "P high"]] = [poi["poi"], poi["ci_low"], poi["ci_high"]]
        return out

    def figure(self, baseline: str, name: str = "suite") -> Any:
        """Accuracy per task and method (bars), the quantity the aggregates summarise."""
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(1.6 * len(self.results) + 3, 3.6))
        self.table().drop(columns="mean over tasks").T.plot.bar(ax=ax, rot=0)
        ax.set_ylabel("held-out accuracy")
        ax.set_title(f"methods across {len(self.results)} tasks (baseline {baseline})")
        self.run.figure(fig, name)
        return fig

    def finish(self, baseline: str, results: Mapping[str, Any] | None = None) -> Any:
        """The study's claims on the pooled suite (units = task:problem, paired by seed), results.json and the
        conclusion."""
        from IPython.display import Markdown

        rows = []
        for c in self.study.claims:
            rows.append({**claim_row(c, self.long(c.metric), []), "metric": c.metric + " (suite)"})
        self.rows = stats.assign_verdicts(rows)
        agg = self.aggregates(baseline)
        self.run.save_results({"tasks": list(self.results), "seeds": int(self.run.params["seeds"]),
                               "iqm": agg.reset_index().to_dict("records"),
                               "accuracy_by_task": self.table().reset_index().to_dict("records"),
                               **{f"iqm[{m}]": float(v) for m, v in agg["iqm"].items()},
                               "claims": self.rows, **(results or {})})
        return Markdown(conclusion(self.rows))
