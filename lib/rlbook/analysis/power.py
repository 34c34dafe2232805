"""Power planning before any training: for each claim of a notebook, the paper's effect, the smallest effect
the chosen profile can detect (mde, 80% power at one-sided 0.025) and the seeds x units that would reach the
paper's effect.

The variance components of a claim (:class:`rlbook.analysis.stats.Components`) come, in this order, from

1. the newest finished run of the notebook under ``outputs/`` with the same profile (its claim rows carry
   ``var_seed``, ``var_unit``, ``var_resid``), else from any profile's run;
2. for held-out accuracy claims (greedy accuracy, or sampled pass@k per problem) without a run: an **assumed** pilot (:data:`PILOT_ACCURACY`), said so in the
   ``source`` column;
3. otherwise none: the mde is shown as unknown until one run (the smoke profile is enough for the
   components' order of magnitude) has been made.

``rlbook power NOTEBOOK --profile P`` prints this table; :func:`rlbook.analysis.study.start` prints it before a sweep.
The notebook's study spec is read by running its ``parameters`` cell and the cell that defines ``STUDY``
(:func:`load_spec`), with :func:`rlbook.analysis.study.start` stopped before it creates a run folder.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from rlbook.analysis import stats
from rlbook.core.errors import ParamError
from rlbook.training import runs

# Assumed components of a paired 0/1 held-out accuracy difference when no run exists yet: residual
# 2 p (1 - p) (1 - rho) at p = 0.3 and a within-problem correlation of the two arms rho = 0.5 (common random
# numbers), a problem-by-method sd of 10 points, a between-seed sd of the difference of 2 points.
PILOT_ACCURACY = stats.Components(var_seed=0.02**2, var_unit=0.1**2, var_resid=0.21,
                                  source="assumed pilot (no run yet): seed sd 0.02, problem sd 0.10, residual 0.21")
ACCURACY_METRICS = ("final_accuracy", "accuracy_gain", "bon", "success", "final_accuracy (two-part reward)")


class _SpecLoaded(Exception):
    """Raised by the stand-in for :func:`rlbook.analysis.study.start` once ``STUDY`` is defined."""


def load_spec(notebook: str, params: Mapping[str, Any], root: Path | None = None) -> Any:
    """The notebook's :class:`rlbook.analysis.study.Study` under ``params`` (None for a notebook without one, such as
    the quickstart): runs only the code cell that constructs ``Study(`` (the parameters cell's names taken from
    ``params``), stopped at :func:`rlbook.analysis.study.start`: no training, no run folder."""
    from rlbook.analysis import study
    from rlbook.core import paths

    root = root or paths.find_root()
    nb = json.loads((root / "notebooks" / f"{notebook}.ipynb").read_text())
    cells = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"
             and not {"parameters", "worked-example", "mechanism-figure"} & set(c.get("metadata", {}).get("tags", []))]
    src = next((c for c in cells if "Study(" in c), None)
    if src is None:
        return None
    namespace: dict[str, Any] = {"__name__": "__spec__", **dict(params), "run_dir": None, "profile": None}
    original = study.start

    def stop(spec: Any, ns: Any) -> Any:
        namespace["STUDY"] = spec
        raise _SpecLoaded

    study.start = stop  # type: ignore[assignment]
    try:
        exec(compile(src, f"{notebook}.ipynb", "exec"), namespace)
    except _SpecLoaded:
        pass
    finally:
        study.start = original  # type: ignore[assignment]
    if not isinstance(namespace.get("STUDY"), study.Study):
        raise ParamError(f"{notebook}: the cell that builds Study(...) must assign it to STUDY")
    return namespace["STUDY"]


def _per_problem_accuracy(metric: str) -> bool:
    """A 0/1-like score per held-out problem: greedy accuracy, or a sampled pass@k (``measure.pass_at_k``,
    metric names ``pass@<k> ...``) measured on the same ``eval_size`` problems."""
    return metric.split(" ")[0] in ACCURACY_METRICS or metric.startswith("pass@")


def _units(metric: str, params: Mapping[str, Any]) -> int | None:
    if metric.startswith("pass@") or metric.split(" ")[0] in ("final_accuracy", "accuracy_gain", "final_length", "final_format",
                                "final_truncated", "final_length_wrong", "length_wrong_change"):
        return int(params.get("eval_size") or params.get("task", {}).get("eval_size", 0)) or None
    return None


PLAN_UNITS = (200, 500, 1000, 2000)


def heldout(params: Mapping[str, Any]) -> dict[str, Any] | None:
    """The profile's held-out set next to what the task allows (issue 21, item 7): ``n`` problems, the task's
    distinct questions (:func:`rlbook.data.tasks.capacity`), ``max`` = those minus the training pool, the ``target``
    (1,000; 500 at 128 tokens or more) and a one-line ``text``; None without a single reasoning-gym task."""
    from rlbook.data import tasks

    task = params.get("task")
    if not isinstance(task, Mapping) or "name" not in task:
        return None
    cap = tasks.capacity(dict(task))
    if cap is None:
        return None
    n = int(params.get("eval_size") or task.get("eval_size", 0))
    tokens = int(params.get("eval_max_new_tokens") or params.get("train", {}).get("max_new_tokens", 0) or 0)
    target = tasks.heldout_target(tokens)
    most = max(1, cap - int(task.get("train_size", 0)))
    aim = min(target, most)
    text = (f"{n} of {cap} distinct questions ({most} with this training pool); target {target}"
            + ("" if n >= aim else f": {aim} possible"))
    return {"n": n, "capacity": cap, "max": most, "target": target, "text": text}


def _measured(notebook: str, profile: str | None, outputs: Path) -> tuple[dict[str, dict[str, Any]], str]:
    found = [r for r in runs.find_runs(outputs, notebook) if r.status == "ok" and r.results.get("claims")]
    same = [r for r in found if r.manifest.get("profile") == profile]
    pick = (same or found or [None])[-1]
    if pick is None:
        return {}, ""
    rows = {r["claim"]: r for r in pick.results["claims"] if isinstance(r, dict) and "var_resid" in r}
    return rows, f"run {pick.dir.name} ({pick.manifest.get('profile') or 'no'} profile)"


def power_table(spec: Any, params: Mapping[str, Any], profile: str | None, outputs: Path | None = None,
                ) -> pd.DataFrame:
    """One row per claim of ``spec``: role, the paper's effect, the profile's design (seeds x units), the mde
    there, the designs that reach the paper's effect, and where the variance components came from."""
    if outputs is None:
        from rlbook.core import paths

        outputs = paths.find_root() / "outputs"
    measured, where = _measured(spec.name, profile, Path(outputs))
    seeds = int(params.get("seeds", 1))
    rows = []
    for c in spec.claims:
        row = measured.get(c.text)
        units = _units(c.metric, params) or (int(row["n_units"]) if row else None)
        if row is not None:
            comps, source = stats.Components.from_row(row), where
        elif _per_problem_accuracy(c.metric) and units:
            comps, source = PILOT_ACCURACY, PILOT_ACCURACY.source
        else:
            comps, source = None, "unknown until a run exists"
        mde, plan = math.nan, ""
        held = heldout(params) if _units(c.metric, params) else None
        if comps is not None and units and seeds * units >= 2:
            mde = comps.mde(seeds, units, direction=c.direction)
            if isinstance(c.paper_effect, (int, float)) and c.paper_effect:
                grid = PLAN_UNITS if held is None else tuple(sorted({u for u in PLAN_UNITS if u <= held["max"]}
                                                                     | {min(held["max"], max(PLAN_UNITS))}))
                designs = comps.plan(abs(float(c.paper_effect)), units=grid, direction=c.direction)
                plan = ", ".join(f"{s} x {u}" for s, u in designs[:3]) or f"none up to 20 x {max(grid)}"
        rows.append({"claim": c.text, "role": c.role,
                     "paper effect": c.paper_effect if c.paper_effect is not None else (c.paper or "-"),
                     "design (seeds x units)": f"{seeds} x {units or '?'}", "mde (80% power)": mde,
                     "80% power at the paper effect": plan or "-", "variance from": source,
                     "held-out": held["text"] if held else "-"})
    return pd.DataFrame(rows)


def format_table(df: pd.DataFrame) -> str:
    """Plain text for the terminal: one block per claim."""
    out = []
    for r in df.to_dict("records"):
        mde = r["mde (80% power)"]
        out.append(f"[{r['role']}] {r['claim']}\n    paper: {r['paper effect']}\n"
                   f"    design {r['design (seeds x units)']}:"
                   f" mde {'unknown' if not math.isfinite(mde) else format(mde, '.3g')}"
                   f"; 80% power at the paper's effect: {r['80% power at the paper effect']}"
                   f"\n    variance from: {r['variance from']}"
                   + (f"\n    held-out: {r['held-out']}" if r.get("held-out", "-") != "-" else ""))
    return "\n".join(out)
