"""The regime a curriculum needs, measured: the base model's per-prompt success on the training pool.

Sampling, filtering, replay, hint and rollout-budget methods change which prompts, samples or tokens GRPO sees.
They can only matter where prompts differ: some always solved, some never, many in between.  So each notebook
of the family reports the base model's success histogram on its training pool (G samples of each of the
first ``n_prompts`` training prompts at the run's temperature and length, :func:`rlbook.analysis.probe.probe`), split by
the pool's source and difficulty, and its claims require (:data:`rlbook.analysis.study.CHECKS`) the regime their
mechanism acts in: a spread of per-prompt success from near 0 to near 1 for the samplers that choose between
prompts (:func:`check_success_spread`), a share of all-wrong groups for the methods built for them
(:func:`check_all_wrong_share`: NGRPO, R^3, ADHint, DAPO's dynamic sampling), or a hard regime.

"Base model" is the model a study's runs start from: with a ``warm_start`` parameter, the base model after its
short SFT on gold answers (:mod:`rlbook.training.warmstart`), since no task family gives the 135M model prompts near 1.

The measurement is cached in the run cache (``probe-<hash>/``, keyed by the model, its warm start, task, length,
temperature, sample counts and the code's version, with a ``DONE`` marker like a run), so every notebook on the same pool
reads the same histogram and ``rlbook cache --prune`` treats it like a run.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rlbook.analysis import report

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


def check_metric_between(res: Any, claim: Any, column: str, lo: float, hi: float, method: str | None = None,
                         ) -> tuple[bool, str]:
    """A training metric's mean over a method's steps lies in [lo, hi] (e.g. the share of valid Knapsack states,
    the share of all-equal groups that R^3 could fill from its buffer)."""
    m = res.sweep.metrics
    runs = m[m["method"] == (method or claim.method)]
    val = float(runs[column].mean()) if column in runs and runs[column].notna().any() else float("nan")
    ok = bool(np.isfinite(val)) and lo <= val <= hi
    return ok, f"{method or claim.method}: mean {column} = {val:.3f} over training (needs {report.range_text(lo, hi)})"


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
