"""Regime checks: the conditions under which a mechanism can act at all, measured on a study's runs.

A claim names the checks it requires (:class:`rlbook.analysis.study.Claim` ``requires``, names in
:data:`CHECKS`); each is ``fn(result, claim, **kwargs) -> (passed, what was measured)`` and a failed one makes
the verdict ``untestable in this regime`` with its text.  The checks read the runs' training metrics, the
held-out outcomes (:mod:`rlbook.analysis.metrics`), the notebook's measured tables, or the base model's
per-prompt success on the training pool.

That last one is the regime a curriculum needs.  Sampling, filtering, replay, hint and rollout-budget methods
change which prompts, samples or tokens GRPO sees.  They can only matter where prompts differ: some always
solved, some never, many in between.  So each notebook of the family reports the base model's success
histogram on its training pool (G samples of each of the first ``n_prompts`` training prompts at the run's
temperature and length, :func:`rlbook.analysis.probe.probe`), split by the pool's source and difficulty, and
its claims require the regime their mechanism acts in: a spread of per-prompt success from near 0 to near 1 for
the samplers that choose between prompts (:func:`check_success_spread`), a share of all-wrong groups for the
methods built for them (:func:`check_all_wrong_share`: NGRPO, R^3, ADHint, DAPO's dynamic sampling), or a hard
regime.

"Base model" is the model a study's runs start from: with a ``warm_start`` parameter, the base model after its
short SFT on gold answers (:mod:`rlbook.training.warmstart`), since no task family gives the 135M model prompts near 1.

The measurement is cached in the run cache (``probe-<hash>/``, keyed by the model, its warm start, task, length,
temperature, sample counts and the code's version, with a ``DONE`` marker like a run), so every notebook on the same pool
reads the same histogram and ``rlbook cache --prune`` treats it like a run.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rlbook.analysis import report
from rlbook.analysis.metrics import AGGS, METRICS, outcomes
from rlbook.core.errors import ParamError

HIST_DEFAULTS = {"n_prompts": 64, "group_size": 8, "seed": 0}


def _key(params: dict[str, Any], n_prompts: int, group_size: int, seed: int) -> str:
    from rlbook.core.cache import code_version
    from rlbook.training.warmstart import start_of

    train = params.get("train", {})
    spec = {"model": params.get("model"), "task": params.get("task"), "max_new_tokens": train.get("max_new_tokens", 32),
            "temperature": train.get("temperature", 1.0), "n_prompts": n_prompts, "group_size": group_size,
            "seed": seed, "code": code_version()}
    _, _, lora, warm = start_of(params)
    if warm is not None:  # only when set: the base model's histograms keep their keys
        spec.update(warm_start=warm, lora=lora)
    return "probe-" + hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]


def success_histogram(params: dict[str, Any], cache: str | Path, n_prompts: int = 64, group_size: int = 8,
                      seed: int = 0) -> dict[str, Any]:
    """The sampled success of the model the runs start from (the base model, or its warm start: module doc) on
    the first ``n_prompts`` training prompts of ``params["task"]`` (``group_size`` samples each): ``per_prompt_success``, ``histogram`` (prompts with j of G correct), the
    mixed / all-wrong / all-correct shares and ``by_group`` (source and difficulty).  Cached (module doc)."""
    folder = Path(cache) / _key(params, n_prompts, group_size, seed)
    if (folder / "DONE").is_file():
        return json.loads((folder / "probe.json").read_text())
    from rlbook.analysis import probe
    from rlbook.core.cache import code_version
    from rlbook.data.tasks import make_task
    from rlbook.training.warmstart import start_of, warm_model

    task = make_task(params["task"])
    model, tok, warm = warm_model(*start_of(params), cache)
    train = params.get("train", {})
    res = probe.probe(task, model, tok, max_new_tokens=int(train.get("max_new_tokens", 32)), n_eval=1,
                      n_prompts=min(n_prompts, len(task.train)), group_size=group_size,
                      temperature=float(train.get("temperature", 1.0)), seed=seed, examples=0)
    out = {"sampled": {k: v for k, v in res["sampled"].items() if k != "completions"},
           "by_group": (res.get("by_group") or {}).get("sampled", {}), "seconds": res["seconds"], "warm_start": warm}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "probe.json").write_text(json.dumps(out, indent=1, default=str))
    (folder / "config.json").write_text(json.dumps({"label": "base success histogram", "code": code_version(),
                                                    "task": params["task"], "model": params.get("model"),
                                                    "warm_start": params.get("warm_start")}, default=str))
    (folder / "DONE").write_text(time.strftime("%Y-%m-%dT%H:%M:%S"))
    return out


def histogram_table(hist: dict[str, Any]) -> pd.DataFrame:
    """Prompts by number of correct samples out of G (the base model's success histogram)."""
    s = hist["sampled"]
    g = int(s["group_size"])
    counts = s["histogram"]
    return pd.DataFrame({"correct of G": [f"{j}/{g}" for j in range(g + 1)], "prompts": counts,
                         "share": np.asarray(counts, dtype=float) / max(sum(counts), 1)}).set_index("correct of G")


def spread(hist: dict[str, Any], low: float = 0.25, high: float = 0.75) -> dict[str, float]:
    """Shares of prompts with success <= ``low`` (near 0), >= ``high`` (near 1), strictly between 0 and 1 (mixed)."""
    p = np.asarray(hist["sampled"]["per_prompt_success"], dtype=float)
    return {"near_0": float(np.mean(p <= low)), "near_1": float(np.mean(p >= high)),
            "mixed": float(np.mean((p > 0) & (p < 1))), "mean": float(p.mean())}


def figure(hist: dict[str, Any], title: str = "base model: per-prompt success") -> Any:
    """Bar chart of :func:`histogram_table`."""
    import matplotlib.pyplot as plt

    table = histogram_table(hist)
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.bar(table.index, table["prompts"], color="tab:blue")
    ax.set_xlabel("correct samples of G")
    ax.set_ylabel("prompts")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def base_histogram(run: Any, n_prompts: int = 64, group_size: int = 8, seed: int = 0) -> pd.DataFrame:
    """For a notebook: the base model's success histogram on the run's training pool (:func:`success_histogram`,
    cached), its figure saved in the run folder, and a table: prompts by correct samples, then the spread and
    the success by source and difficulty."""
    from rlbook.training.experiments import cache_root

    hist = success_histogram(run.params, cache_root(run), n_prompts, group_size, seed)
    run.figure(figure(hist), "base_success_histogram")
    s = spread(hist)
    rows = [{"": f"{k}/{hist['sampled']['group_size']} correct", "value": v}
            for k, v in enumerate(hist["sampled"]["histogram"])]
    names = {"near_0": "share of prompts with success <= 1/4", "near_1": "share of prompts with success >= 3/4",
             "mixed": "share of prompts with mixed groups", "mean": "mean success"}
    rows += [{"": names[k], "value": round(v, 3)} for k, v in s.items()]
    rows += [{"": f"success: {g}", "value": round(float(d["mean"]), 3)} for g, d in sorted(hist["by_group"].items())]
    return pd.DataFrame(rows).set_index("")


def pool_histogram(res: Any, n_prompts: int | None = None, group_size: int | None = None) -> dict[str, Any]:
    """The success histogram a regime check reads: the notebook's ``histogram`` parameters (the one its
    :func:`base_histogram` cell measured and cached), else :data:`HIST_DEFAULTS`; explicit values win."""
    from rlbook.training.experiments import cache_root

    hist = {**HIST_DEFAULTS, **(res.params.get("histogram") or {})}
    return success_histogram(res.params, cache_root(res.run), int(n_prompts or hist["n_prompts"]),
                             int(group_size or hist["group_size"]), int(hist.get("seed", 0)))


def check_success_spread(res: Any, claim: Any, min_mixed: float = 0.25, min_each: float = 0.1,
                         n_prompts: int | None = None, group_size: int | None = None) -> tuple[bool, str]:
    """Regime check: per-prompt success spreads from near 0 to near 1 on the training pool: at least ``min_mixed``
    of the prompts mixed and at least ``min_each`` with success <= 1/4 and >= 3/4 (the model the runs start
    from).  ``min_each=0``: mixed groups only (a method that acts inside groups, not between prompts)."""
    s = spread(pool_histogram(res, n_prompts, group_size))
    ok = s["mixed"] >= min_mixed and s["near_0"] >= min_each and s["near_1"] >= min_each
    ends = f" and >= {min_each:.0%} at each end" if min_each > 0 else ""
    return ok, (f"start per-prompt success: {s['mixed']:.0%} mixed, {s['near_0']:.0%} <= 1/4, {s['near_1']:.0%} >= 3/4 "
                f"(needs >= {min_mixed:.0%} mixed{ends})")


def all_wrong(hist: dict[str, Any]) -> dict[str, float]:
    """Shares of prompts whose G samples are all wrong (``all_wrong``) and with at least one right (``solved``)."""
    p = np.asarray(hist["sampled"]["per_prompt_success"], dtype=float)
    return {"all_wrong": float(np.mean(p == 0)), "solved": float(np.mean(p > 0))}


def check_all_wrong_share(res: Any, claim: Any, min_wrong: float = 0.25, min_solved: float = 0.25,
                          n_prompts: int | None = None, group_size: int | None = None) -> tuple[bool, str]:
    """Regime check for the methods built for all-wrong groups (NGRPO's virtual maximum reward, R^3's replayed
    right answer, ADHint's hinted rollouts, DAPO's dynamic sampling that refills them): at least ``min_wrong``
    of the pool's prompts have all G samples wrong (with 4 prompts a step, 1/4 is one such group per step on
    average) and at least ``min_solved`` have a right one (the right answer is within the policy's reach, so
    there is something to replay, hint towards or learn), under the model the runs start from."""
    s = all_wrong(pool_histogram(res, n_prompts, group_size))
    ok = s["all_wrong"] >= min_wrong and s["solved"] >= min_solved
    return ok, (f"start per-prompt success: {s['all_wrong']:.0%} of prompts all wrong, {s['solved']:.0%} with a right "
                f"sample (needs >= {min_wrong:.0%} all wrong and >= {min_solved:.0%} with a right one)")


def check_hard_regime(res: Any, claim: Any, lo: float = 0.01, hi: float = 0.08,
                      n_prompts: int | None = None, group_size: int | None = None) -> tuple[bool, str]:
    """Regime check for methods that target all-wrong groups: the base model's sampled success on the pool is
    between ``lo`` and ``hi`` (most groups all wrong, a few not)."""
    hist = pool_histogram(res, n_prompts, group_size)
    s = spread(hist)
    wrong = hist["sampled"]["all_wrong_share"]
    return lo <= s["mean"] <= hi, (f"base sampled success {s['mean']:.1%}, {wrong:.0%} of groups all wrong "
                                   f"(the hard regime needs {lo:.0%}-{hi:.0%})")


def column_pairs(res: Any, method: str, columns: dict[str, str]) -> pd.DataFrame:
    """A long table ``method, seed, value`` comparing training metrics of one method's runs: each label of
    ``columns`` becomes a "method" whose value per seed is the mean of its column over training (e.g. the R^2 of
    PF-PPO's kept samples against all its samples)."""
    m = res.sweep.metrics
    runs = m[m["method"] == method]
    rows = [{"method": label, "seed": int(seed), "value": float(part[col].mean())}
            for label, col in columns.items() for seed, part in runs.groupby("seed")]
    return pd.DataFrame(rows)


def spending_table(res: Any) -> pd.DataFrame:
    """Per method (mean over seeds): steps, generated tokens and rollouts at the end, the mean share of
    zero-signal groups over training, and samples trained per generated rollout."""
    m = res.sweep.metrics
    rows = []
    for (method, seed), part in m.groupby(["method", "seed"], sort=False):
        rows.append({"method": method, "seed": seed, "steps": len(part), "tokens": float(part["gen_tokens"].sum()),
                     "rollouts": float(part["gen_rollouts"].sum()),
                     "zero-signal groups": float(part["zero_adv_group_frac"].mean()),
                     "samples trained per rollout": float(part["trained_seqs"].sum() / max(part["gen_rollouts"].sum(), 1))})
    return pd.DataFrame(rows).groupby("method", sort=False).mean(numeric_only=True).drop(columns="seed")


def check_clip_band(res: Any, claim: Any, method: str | None = None, min_frac: float = 0.005) -> tuple[bool, str]:
    """Clip-higher acts on the tokens it un-clips: A > 0 with a ratio in (1 + eps_low, 1 + eps_high] (the loss's
    ``band_frac``, logged as ``clip_band_frac_late`` from the second inner epoch on, where ratios leave 1); its
    mean over the method's steps must reach ``min_frac``."""
    name = method or claim.method
    m = res.sweep.metrics
    runs = m[m["method"] == name]
    col = "clip_band_frac_late"
    if col not in runs or runs[col].isna().all():
        return False, f"{name}: no clip-higher band measured (eps_high <= eps_low, or one inner epoch: ratio exactly 1)"
    frac = float(runs[col].mean())
    return frac >= min_frac, (f"{name}: {frac:.4f} of tokens in clip-higher's band (A > 0, 1+eps_low < ratio <= "
                              f"1+eps_high) in epochs >= 2 (needs >= {min_frac})")


def check_sampled_accuracy_all_steps(res: Any, claim: Any, lo: float, hi: float, method: str | None = None,
                                     ) -> tuple[bool, str]:
    """The sampled (training) accuracy over every step of every seed of ``method`` (default: the claim's
    baseline, else its method) lies in [lo, hi]: the regime the runs trained in, not only their first batch."""
    name = method or claim.baseline or claim.method
    m = res.sweep.metrics
    runs = m[m["method"] == name]
    acc = float(runs["accuracy"].mean()) if "accuracy" in runs and runs["accuracy"].notna().any() else float("nan")
    ok = bool(np.isfinite(acc)) and lo <= acc <= hi
    return ok, (f"{name}: sampled accuracy {acc:.1%} over all {len(runs)} training steps "
                f"(the mechanism needs {lo:.0%}-{hi:.0%})")


# ------------------------------------------------------------------------------------- regime checks
# fn(result, claim, **kwargs) -> (passed, what was measured): the conditions under which a mechanism can act.


def _runs_of(res: Any, method: str) -> pd.DataFrame:
    m = res.sweep.metrics
    return m[m["method"] == method]


def check_clip_active(res: Any, claim: Any, method: str | None = None, min_frac: float = 0.005,
                      ) -> tuple[bool, str]:
    """Ratio clipping (or a gate) acts only after the first inner epoch (the first epoch's ratio is exactly 1):
    the clip/gate fraction measured in epochs >= 2 must reach ``min_frac``."""
    runs_ = _runs_of(res, method or claim.method)
    if "clip_frac_late" not in runs_ or runs_["clip_frac_late"].isna().all():
        return False, f"{method or claim.method}: one inner epoch, so the importance ratio is exactly 1 and no clip acts"
    frac = float(runs_["clip_frac_late"].mean())
    return frac >= min_frac, f"{method or claim.method}: clip/gate fraction in epochs >= 2 is {frac:.4f} (needs >= {min_frac})"


def check_truncation_below(res: Any, claim: Any, max_frac: float = 0.05) -> tuple[bool, str]:
    """Length claims need room to move: the base model's share of truncated held-out answers below ``max_frac``."""
    base = outcomes(res.sweep, "base")
    frac = float(base["truncated"].mean())
    return frac < max_frac, f"base model truncates {frac:.1%} of held-out answers at max_new_tokens (needs < {max_frac:.0%})"


def check_lengths_can_grow(res: Any, claim: Any, max_share: float = 0.7) -> tuple[bool, str]:
    """A length bias can show only if lengths can grow: base mean length below ``max_share`` of the limit."""
    base = outcomes(res.sweep, "base")
    limit = int(res.params["train"].get("max_new_tokens", 32))
    share = float(base["length"].mean()) / limit
    return share < max_share, f"base mean length is {share:.0%} of max_new_tokens={limit} (needs < {max_share:.0%})"


def check_base_accuracy_between(res: Any, claim: Any, lo: float = 0.05, hi: float = 0.95) -> tuple[bool, str]:
    acc = float(outcomes(res.sweep, "base")["correct"].mean())
    return lo <= acc <= hi, f"base held-out accuracy {acc:.1%} (the mechanism needs {lo:.0%}-{hi:.0%})"


def check_sampled_accuracy_between(res: Any, claim: Any, lo: float, hi: float,
                                   method: str | None = None) -> tuple[bool, str]:
    """The training accuracy of the first step (sampled, temperature 1) between ``lo`` and ``hi``."""
    first = _runs_of(res, method or claim.baseline or claim.method).groupby("seed")["accuracy"].first().mean()
    return lo <= first <= hi, f"first-step sampled accuracy {first:.1%} (the mechanism needs {lo:.0%}-{hi:.0%})"


def check_metric_nonzero(res: Any, claim: Any, column: str, method: str | None = None,
                         min_abs: float = 1e-3) -> tuple[bool, str]:
    """A mechanism that shapes ``column`` must have moved it: its mean over the method's steps is non-zero."""
    runs_ = _runs_of(res, method or claim.method)
    val = float(runs_[column].abs().mean()) if column in runs_ else 0.0
    return val >= min_abs, f"{method or claim.method}: mean |{column}| = {val:.4f} over training (needs >= {min_abs})"


def check_runs_differ(res: Any, claim: Any, other: str | None = None, column: str = "reward_mean",
                      method: str | None = None, min_frac: float = 1.0) -> tuple[bool, str]:
    """The mechanism acted: the method's training ``column`` differs at some step from ``other``'s on the same seed.

    For a method that adds one mechanism to another (DA-DLER's tighter cap on top of DLER's), common random numbers
    give both runs of a seed the same prompts and sampling noise, so a mechanism that never fired leaves the two
    runs identical, step for step, and the comparison measures nothing.  Passes when at least ``min_frac`` of the
    seeds both methods ran differ."""
    who, base = method or claim.method, other or claim.baseline
    if base is None:
        return False, f"{who}: no other method to compare its training with"
    mine, theirs = _runs_of(res, who), _runs_of(res, base)
    if column not in mine or column not in theirs:
        return False, f"{who} or {base}: no training column {column!r}"
    joined = mine[["seed", "step", column]].merge(theirs[["seed", "step", column]], on=["seed", "step"])
    if joined.empty:
        return False, f"{who} and {base}: no seed and step that both ran"
    gap = (joined[f"{column}_x"] - joined[f"{column}_y"]).abs().fillna(0.0).groupby(joined["seed"]).max()
    differ = int((gap > 1e-9).sum())
    ok = differ >= min_frac * len(gap)
    return ok, (f"{who}'s training {column} differs from {base}'s on {differ} of {len(gap)} seeds (same prompts and "
                f"noise; needs {min_frac:.0%}){'' if ok else ': where equal, the mechanism never acted'}")


def check_baseline_beats_base(res: Any, claim: Any, min_gain: float = 0.0) -> tuple[bool, str]:
    """Before a non-inferiority claim: the baseline's estimated gain over the base model (held-out, paired by
    problem) is above ``min_gain``; an estimate, not a significance test (a gate that needs significance on
    its own makes the claim after it untestable at any realistic number of seeds)."""
    gain = METRICS["accuracy_gain"](res.sweep)
    who = claim.baseline or claim.method
    effect = float(gain.loc[gain["method"] == who, "value"].mean())
    return effect > min_gain, f"{who}: estimated gain over the base model {effect:+.3f} (needs > {min_gain:+.3f})"


def check_train_tokens_at_most(res: Any, claim: Any, max_ratio: float = 1.1, method: str | None = None,
                               baseline: str | None = None) -> tuple[bool, str]:
    """At equal steps, (at most) equal tokens: the method generated at most ``max_ratio`` times the tokens its
    baseline generated in training (:data:`rlbook.analysis.metrics.METRICS` ``train_tokens``, mean over seeds),
    so a comparison at the same number of steps does not give the method more generation than the baseline
    (dynamic sampling's refills, VSRM's or AnytimeReasoner's extra answers).  A method that needs more is
    compared at equal tokens only by a run with ``train.gen_token_budget`` at the baseline's count."""
    who, base = method or claim.method, baseline or claim.baseline
    if base is None:
        return False, f"{who}: no baseline to compare training tokens with"
    t = METRICS["train_tokens"](res.sweep)
    mine, theirs = (float(t.loc[t["method"] == m, "value"].mean()) for m in (who, base))
    ratio = mine / theirs if theirs > 0 else math.inf
    return ratio <= max_ratio, (f"{who} generated {mine:,.0f} training tokens, {base} {theirs:,.0f} "
                                f"(ratio {ratio:.2f}, needs <= {max_ratio:.2f})")


def check_mixed_groups(res: Any, claim: Any, min_frac: float = 0.1, method: str | None = None,
                       ) -> tuple[bool, str]:
    """Group-relative signal exists: the share of groups with non-zero advantage is at least ``min_frac``."""
    runs_ = _runs_of(res, method or claim.baseline or claim.method)
    frac = 1.0 - float(runs_["zero_adv_group_frac"].mean())
    return frac >= min_frac, f"{frac:.1%} of groups carry a non-zero advantage (needs >= {min_frac:.0%})"


def check_base_answers(res: Any, claim: Any, fn: Callable[[str], float], min_mean: float,
                       what: str = "") -> tuple[bool, str]:
    """The mechanism needs something in the base model's held-out answers (e.g. reflection words to remove): the
    mean of ``fn(answer)`` over them reaches ``min_mean``."""
    ev = next(iter(res.sweep.evals.values()))["base"]["completions"]
    val = float(np.mean([fn(t) for t in ev])) if ev else 0.0
    name = what or getattr(fn, "__name__", "fn")
    return val >= min_mean, f"base model's answers: mean {name} {val:.3f} (needs >= {min_mean})"


def check_train_metric_between(res: Any, claim: Any, column: str, lo: float = -math.inf, hi: float = math.inf,
                               method: str | None = None, agg: str = "mean") -> tuple[bool, str]:
    """A training metric of ``method`` (default the claim's), ``agg`` over each run's steps then mean over seeds,
    lies in [lo, hi]: e.g. the line format is followed (``format_share``), a filter keeps groups (``shortfall``), a
    process signal varies (``mc_mixed``), a probe or a PRM is informative (``spae_phi_auc``, ``prm_dpo_acc``), the
    share of valid Knapsack states, the share of all-equal groups R^3 could fill from its buffer.

    Registered as ``train_metric_between`` and ``metric_between`` (one check under two names).  Seeds weigh
    equally: a seed that logged the column on fewer steps counts as much as the others (the seed is the unit)."""
    name = method or claim.method
    runs_ = _runs_of(res, name)
    if column not in runs_ or runs_[column].isna().all():
        return False, f"{name}: training metric {column!r} was not recorded"
    if agg not in AGGS:
        raise ParamError(f"regime check train_metric_between: agg={agg!r}; allowed: {', '.join(AGGS)}")
    val = float(np.mean([AGGS[agg](part[column].dropna()) for _, part in runs_.groupby("seed")
                         if part[column].notna().any()]))
    return lo <= val <= hi, f"{name}: {column} ({agg} over steps) = {val:.3f} (needs {report.range_text(lo, hi)})"


check_metric_between = check_train_metric_between  # the name the curricula notebooks' claims use


def check_sampled_truncation_below(res: Any, claim: Any, max_frac: float = 0.05,
                                   method: str | None = None) -> tuple[bool, str]:
    """Length claims on *sampled* completions (training metrics) need room to move: the share of the first
    step's samples cut at max_new_tokens (mean over seeds) below ``max_frac``."""
    runs_ = _runs_of(res, method or claim.baseline or claim.method)
    if "truncated_frac" not in runs_:
        return False, "the runs did not record truncated_frac"
    frac = float(runs_.groupby("seed")["truncated_frac"].first().mean())
    return frac < max_frac, (f"{frac:.1%} of the first step's samples are cut at max_new_tokens "
                             f"(needs < {max_frac:.0%}): sampled lengths cannot grow")


def check_measured(res: Any, claim: Any, column: str = "value", lo: float = -math.inf, hi: float = math.inf,
                   table: str | None = None, method: str | None = None) -> tuple[bool, str]:
    """A condition on a measured table: the mean of ``column`` over the rows of ``method`` (default the claim's)
    in table ``table`` (default the claim's metric) lies in ``[lo, hi]`` (default: such rows exist).  The tables
    are a sweep study's measurements (``StudyResult.finish(extra=...)``) or a pipeline's
    (:class:`rlbook.analysis.pipeline.PipelineResult`, ``add``); e.g. the clip fraction of a loss in its second
    epoch, a base success rate in the mechanism's regime, a stage that learned before its forgetting is measured.

    Registered as ``measured`` and ``measured_between`` (one check under two names).  A table that was not
    measured fails the check (the claim is untestable, with the tables that exist named).  A table with no
    ``method`` column, or without rows of the claim's method when ``method`` is not given, is used whole
    (e.g. ``headroom``: one number per seed); a ``method`` given and absent fails the check."""
    name, who = table or claim.metric, method or claim.method
    tables = getattr(res, "tables", None) or getattr(res, "extra", None) or {}
    if name not in tables:  # not measured in this run (e.g. a profile that skips it): untestable, not an error
        return False, f"{who}: no measurement {name!r} (have: {', '.join(tables) or 'none'})"
    df = pd.DataFrame(tables[name])
    has = "method" in df and who in set(df["method"])
    if method is not None and not has:
        return False, f"{who}: no rows of {who!r} in the measurement {name!r}"
    rows = df[df["method"] == who] if has else df
    if rows.empty or column not in rows:
        return False, f"{who}: no rows with {column!r} in the measurement {name!r}"
    val = float(rows[column].astype(float).mean())
    what = f"{name} ({who})" if column == "value" else f"{name} ({who}): mean {column}"
    need = f"needs {report.range_text(lo, hi)}" if math.isfinite(lo) or math.isfinite(hi) else "needs rows"
    return lo <= val <= hi, f"{what} = {val:.3g} over {len(rows)} rows ({need})"


CHECKS: dict[str, Callable[..., tuple[bool, str]]] = {
    "clip_active": check_clip_active, "truncation_below": check_truncation_below,
    "lengths_can_grow": check_lengths_can_grow, "base_accuracy_between": check_base_accuracy_between,
    "sampled_accuracy_between": check_sampled_accuracy_between, "metric_nonzero": check_metric_nonzero,
    "runs_differ": check_runs_differ, "baseline_beats_base": check_baseline_beats_base, "mixed_groups": check_mixed_groups,
    "train_tokens_at_most": check_train_tokens_at_most,
    "base_answers": check_base_answers,
    "train_metric_between": check_train_metric_between, "metric_between": check_train_metric_between,
    "sampled_truncation_below": check_sampled_truncation_below,
    "measured": check_measured, "measured_between": check_measured,
    # the curricula family: the base model's per-prompt success spread on the pool, a hard regime
    "success_spread": check_success_spread, "all_wrong_share": check_all_wrong_share,
    "hard_regime": check_hard_regime,
    # regimes matched to mechanisms: clip-higher's band; a sampled-accuracy window over all steps
    "clip_band": check_clip_band, "sampled_accuracy_all_steps": check_sampled_accuracy_all_steps,
}
