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

Claims are data: a metric (:data:`rlbook.analysis.metrics.METRICS`: held-out per-problem metrics, per-run
training metrics, or a measurement the notebook passes as a long table ``method, seed[, unit], value``), a
direction (greater, less, not_less, equivalent), a baseline, a margin, and regime checks
(:data:`rlbook.analysis.regimes.CHECKS`) that must hold for the mechanism to act at all; otherwise the
verdict is ``untestable in this regime`` with the reason.  Intervals, primary and secondary verdicts, minimum
detectable effects and the ``underpowered`` rule (< 3 seeds) are :mod:`rlbook.analysis.stats`.  This module
holds the claims, the sweep and the results; the metrics live in :mod:`rlbook.analysis.metrics`, the regime
checks in :mod:`rlbook.analysis.regimes` (their names stay importable from here).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from rlbook.analysis import probe, report, stats
from rlbook.analysis.metrics import (  # noqa: F401  (re-exported: the names notebooks read from study)
    AGGS,
    COUNT_METRICS,
    DIFFERENCE_METRICS,
    METRICS,
    drawdown,
    held_out_curves,
    metric_scale,
    metric_table,
    outcomes,
)
from rlbook.analysis.regimes import CHECKS
from rlbook.core.errors import ParamError
from rlbook.training import experiments, parallel, runs

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
    ``borrow``: other methods scored on the same metric, task, budget, seeds and units that the notebook
    declares comparable; the between-seed variance of the effect is then pooled over all of them
    (:func:`rlbook.analysis.stats.seed_by_method_ms`), which gives 3 seeds more than 2 degrees of freedom.
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
    borrow: tuple[str, ...] = ()  # other methods on this metric declared comparable: the seed term is pooled

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ParamError(f"claim {self.text!r}: direction={self.direction!r}; allowed: {', '.join(DIRECTIONS)}")
        if self.scale is None:
            self.scale = metric_scale(self.metric)
        if self.scale not in stats.SCALES:
            raise ParamError(f"claim {self.text!r}: scale={self.scale!r}; allowed: {', '.join(stats.SCALES)}")
        self.borrow = tuple(self.borrow)
        if self.borrow and (self.baseline is None or not self.seed_random):
            raise ParamError(f"claim {self.text!r}: borrow={self.borrow!r} needs a baseline and seed_random=True")
        if self.primary and self.check:
            raise ParamError(f"claim {self.text!r}: a manipulation check (check=True) cannot be the primary claim")
        for name, _ in self.requires:
            if name not in CHECKS:
                raise ParamError(f"claim {self.text!r}: unknown regime check {name!r}; allowed: {', '.join(CHECKS)}")

    @property
    def role(self) -> str:
        return "primary" if self.primary else "check" if self.check else "secondary"


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
    variable applies when the notebook is run by hand or by papermill directly (:func:`rlbook.training.runs.from_namespace`)."""
    run = runs.from_namespace(study.name, namespace)
    print("run folder:", run.dir)
    show_power(study, run.params, run.profile)
    return run


def show_power(study: Study, params: Mapping[str, Any], profile: str | None) -> pd.DataFrame:
    """The power table before the sweep (:func:`rlbook.analysis.power.power_table`): each claim's paper effect, the
    smallest effect this design detects with 80% power, and the designs that would reach the paper's."""
    from rlbook.analysis import power

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
    cache = experiments.cache_root(run)
    prefilled = parallel.prefill(specs, p["seeds"], cache, parallel.jobs_from_env())  # rlbook run --jobs N
    res = experiments.sweep(specs, p["seeds"], cache=cache)
    if prefilled:  # runs the worker processes trained count as trained here, not as reused from the cache
        res.final["cached"] &= ~res.final["key"].isin(prefilled)
        res.trained = int((~res.final["cached"]).sum())
        res.reused = len(res.final) - res.trained
    out = StudyResult(study, run, res, specs, p)
    warning = probe.signal_warning(out.base_accuracy(), p["task"])
    if warning:
        print(report.signal_advice(warning, run.profile))
    if methods is None and not overrides:
        res.metrics.to_csv(run.metrics_path, index=False)
    print(f"{res.trained} runs trained, {res.reused} reused from the cache: {len(specs)} methods x {p['seeds']} seeds")
    return out


# ------------------------------------------------------------------------------------------ results


def interval(table: pd.DataFrame, method: str, baseline: str | None = None, scale: str = "identity",
             ) -> dict[str, float]:
    """Mean (or paired difference against ``baseline``) of a long metric table with its calibrated 95% interval
    (:func:`rlbook.analysis.stats.compare`)."""
    table, why = finite_pairs(table, method, baseline)  # e.g. lengths of wrong answers: NaN where right
    if why:
        return {"mean": math.nan, "ci_low": math.nan, "ci_high": math.nan, "n_seeds": 0}
    r = stats.compare(table, method, baseline, scale=scale)
    return {"mean": r["effect"], "ci_low": r["ci_low"], "ci_high": r["ci_high"], "n_seeds": r["n_seeds"]}


def finite_pairs(table: pd.DataFrame, method: str, baseline: str | None,
                 also: Sequence[str] = ()) -> tuple[pd.DataFrame, str]:
    """The rows of ``method`` and ``baseline`` (and of the methods ``also``) whose (seed, unit) has a finite value
    for all of them; a reason when some were dropped for NaN (e.g. a zero mean gradient: no reward signal) and
    none remain."""
    keys = ["seed"] + (["unit"] if "unit" in table.columns else [])
    names = list(dict.fromkeys([method] + ([baseline] if baseline else []) + list(also)))
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
    :func:`rlbook.analysis.stats.assign_verdicts`."""
    table, why = finite_pairs(table, c.method, c.baseline, c.borrow)
    checks = checks + ([(False, why)] if why else [])
    row = stats.evaluate_claim(c.text, c.metric, table, c.method, c.baseline, direction=c.direction,
                               margin=c.margin, role=c.role, checks=checks, scale=c.scale,
                               seed_random=c.seed_random, borrow=() if why else c.borrow)
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
    return report.claim_sentence(r)  # the prose lives in rlbook.analysis.report (no nan / inf in it)


CLAIM_COLUMNS = ["claim", "role", "method", "baseline", "metric", "direction", "margin", "effect", "ci_low",
                 "ci_high", "n_seeds", "n_units", "mde", "verdict", "reason", "checks", "paper"]


def claim_frame(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Evaluated claim rows as the table a notebook shows (:data:`CLAIM_COLUMNS`)."""
    return stats.claim_table(rows)[CLAIM_COLUMNS]


def show_claims(rows: Sequence[dict[str, Any]] | pd.DataFrame) -> None:
    """Show the claim table (:func:`rlbook.analysis.report.claims_html`: one short line per claim, every field of the row
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
        budget = (res.params.get("train") or {}).get("gen_token_budget")
        head += (f" {start_text(res.params)}: {res.base_accuracy():.1%} held-out accuracy; "
                 f"{steps_text(res.sweep.metrics, res.params['seeds'], budget)}.")
    tail = ""
    if counts.get("inconclusive"):
        tail = ("\n\n*Inconclusive*: the 95% interval contains both the claimed and the opposite side at this "
                "scale; the smallest detectable effect says how large an effect this design could have shown.")
    if primary is not None and primary["verdict"] == "inconclusive":
        tail += "\n\n" + settling_design(primary)
    return head + "\n\n" + "\n".join(_claim_sentence(r) for r in rows) + tail


def start_text(params: Mapping[str, Any]) -> str:
    """What every method started from, as the conclusion names it: ``"Base model"``, or, with a ``warm_start`` stage
    of some steps, ``"Start model (the base after a 32-step SFT warm start)"`` (curricula's accuracy at step 0 is the
    warm start's, not the base model's)."""
    warm = params.get("warm_start")
    steps = warm.get("steps", 0) if isinstance(warm, Mapping) else 0
    return f"Start model (the base after a {steps}-step SFT warm start)" if steps else "Base model"


def steps_text(metrics: pd.DataFrame, seeds: Any, budget: Any = None) -> str:
    """How long the runs trained: ``"3 seeds x 8 steps per method"``, or, when runs stopped at different steps (a
    token budget ends each run on its own), the steps per run of each method: ``"3 seeds; steps per run: GRPO 5,
    SPO-chain 2-4 (each run stops at 3,000 generated tokens)"``."""
    per_run = metrics.groupby(["method", "seed"], sort=False)["step"].max()
    lo, hi = int(per_run.min()), int(per_run.max())
    if lo == hi:
        return f"{report.count(seeds, 'seed')} x {report.count(hi, 'step')} per method"
    ranges = per_run.groupby(level="method", sort=False).agg(["min", "max"])
    parts = [f"{m} {int(a)}" if a == b else f"{m} {int(a)}-{int(b)}" for m, (a, b) in ranges.iterrows()]
    why = f" (each run stops at {int(budget):,} generated tokens)" if isinstance(budget, int) and budget > 0 else ""
    return f"{report.count(seeds, 'seed')}; steps per run: {', '.join(parts)}{why}"


def settling_design(row: Mapping[str, Any]) -> str:
    """For an inconclusive claim: its mde next to the paper's effect (or, without one, the effect measured here)
    and the cheapest seeds x units that would detect that effect with 80% power, from the row's own variance
    components (:meth:`rlbook.analysis.stats.Components.plan`)."""
    comps = stats.Components.from_row(row)
    paper = row.get("paper_effect")
    target = abs(float(paper)) if isinstance(paper, (int, float)) and paper else abs(float(row["effect"]))
    what = "the paper's effect" if isinstance(paper, (int, float)) and paper else "the effect measured here"
    mde = row.get("mde", math.nan)
    if not (target > 0 and math.isfinite(target)):
        return "The primary claim is inconclusive and its effect is zero here: no design is planned."
    units_only = row.get("design") == "units"  # the seed adds no randomness: more units, not more seeds
    designs = comps.plan(target, seeds=(1,) if units_only else (3, 4, 6, 8, 10, 20),
                         direction=row.get("direction", "greater"))
    plan = (" or ".join(f"{u} units" if units_only else f"{s} seeds x {u} units" for s, u in designs[:2])
            if designs else f"no design up to {'' if units_only else '20 seeds x '}2000 units")
    here = (report.count(int(row["n_units"]), "unit") if units_only
            else f"{report.count(int(row['n_seeds']), 'seed')} x {report.count(int(row['n_units']), 'unit')}")
    return (f"The primary claim is inconclusive: this design ({here}) "
            f"detects {mde:.3g} with 80% power, against {what} of {target:.3g}. From this run's variance "
            f"components, 80% power at that effect needs {plan}.")


# ----------------------------------------------------------------------------------- task suites


def sweep_suite(study: Study, run: runs.Run, tasks: Sequence[str], task_override: Mapping[str, Any] | None = None,
                max_new_tokens: int | None = None) -> SuiteResult:
    """The run's methods on every task of a suite (``rlbook.data.tasks.PRESETS`` names): one cached sweep per task,
    with the preset's task spec (updated by ``task_override``, e.g. smaller splits) and generation length
    (``max_new_tokens`` replaces it when given)."""
    from rlbook.data.tasks import preset

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
