"""Studies whose runs are pipelines rather than trainer sweeps: cached stages, claims on measured tables.

The anchor papers (RFT vs SFT forgetting, MALT, Digi-Q, self-certainty Best-of-N) are sequences of stages:
collect data, label it, train one or several adapters, evaluate.  Two pieces make them notebooks like the others:

* :func:`rlbook.training.stages.stage`: one expensive stage as a cached artifact, content-addressed like a training run
  (:mod:`rlbook.training.experiments`): the key is the sha256 of the stage's name, its config and the training code's
  version (:func:`rlbook.core.cache.code_version`); the folder ``<cache root>/<name>-<key>/`` holds ``config.json``,
  ``result.json`` and whatever files the stage wrote, and ``DONE`` written last.  A folder without ``DONE`` is
  wiped and recomputed; ``rlbook cache`` lists (and ``--prune`` deletes) stale stage folders like stale runs.
* :class:`PipelineResult`: the claims of a :class:`rlbook.analysis.study.Study` evaluated on long tables the notebook
  measured (``method, seed[, unit], value``), with the same regime checks, calibrated intervals, verdicts (primary
  alone, secondaries by BH), ``underpowered`` rule and Markdown conclusion as a trainer sweep (:mod:`rlbook.analysis.study`).
* **Degenerate stages are loud.**  A seed's stage that produced nothing usable (no example kept, no positive, a
  constant critic) says so in its result, ``result["degenerate"]``: a list of reasons (empty or absent: usable).
  :meth:`PipelineResult.note_degenerate` reads them from the seeds' results, prints a visible warning in the
  notebook (and raises :class:`DegenerateStageWarning`), and every claim row whose table holds such a seed carries
  the reasons in its ``degenerate`` field, shown next to its verdict and saved in ``results.json``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rlbook.analysis import regimes, stats, study
from rlbook.core.errors import ParamError
from rlbook.training import experiments, runs


def cache_root(run: Any = None) -> Path:
    """Where stages are cached: the run cache (:func:`rlbook.training.experiments.cache_root`), next to trained runs."""
    root = experiments.cache_root(run)
    root.mkdir(parents=True, exist_ok=True)
    return root


def long_table(records: list[dict[str, Any]]) -> pd.DataFrame:
    """A measured table from records with ``method``, ``seed``, optional ``unit`` and ``value``."""
    df = pd.DataFrame(records)
    missing = {"method", "seed", "value"} - set(df.columns)
    if missing:
        raise ParamError(f"a measured table needs columns method, seed, value; missing {sorted(missing)}")
    return df


def _run_se_check(c: study.Claim, table: pd.DataFrame) -> tuple[bool, str] | None:
    """A non-inferiority / parity margin must exceed one run's standard error of the method's mean (the
    largest over seeds), else "as good" cannot be told from noise (:func:`rlbook.analysis.stats.check_margin`)."""
    if c.direction not in ("not_less", "equivalent") or "unit" not in table.columns:
        return None
    part = table[table["method"] == c.method]
    se = max(float(g["value"].astype(float).std(ddof=1) / np.sqrt(max(len(g), 1)))
             for _, g in part.groupby("seed")) if len(part) > 1 else float("inf")
    ok = bool(np.isfinite(se) and c.margin > se)
    return ok, f"margin {c.margin:g} vs one run's standard error {se:.3f}"


class DegenerateStageWarning(UserWarning):
    """A pipeline stage of one seed produced nothing usable (its reasons are in the message)."""


def degenerate_seeds(seed_results: Mapping[Any, Mapping[str, Any]]) -> dict[Any, list[str]]:
    """``{seed: reasons}`` for the seeds whose stage result lists reasons under ``"degenerate"`` (a string is one
    reason); seeds without any are left out."""
    out = {}
    for seed, res in seed_results.items():
        reasons = res.get("degenerate") or []
        reasons = [reasons] if isinstance(reasons, str) else [str(r) for r in reasons]
        if reasons:
            out[seed] = reasons
    return out


def degenerate_note(degenerate: Mapping[Any, list[str]], seeds: Any) -> str:
    """The note a claim row carries: the degenerate seeds among ``seeds`` with their reasons ("" when none)."""
    present = {str(s) for s in seeds}
    return "; ".join(f"seed {s}: {', '.join(r)}" for s, r in degenerate.items() if str(s) in present)


@dataclass
class PipelineResult:
    """A pipeline study's measured tables and the claims evaluated on them."""

    study: study.Study
    run: runs.Run
    params: dict[str, Any]
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    degenerate: dict[Any, list[str]] = field(default_factory=dict)  # seed -> reasons (:meth:`note_degenerate`)

    def note_degenerate(self, seed_results: Mapping[Any, Mapping[str, Any]], stage: str = "") -> dict[Any, list[str]]:
        """Record the degenerate seeds of ``seed_results`` (``{seed: stage result}``, :func:`degenerate_seeds`)
        and warn in the notebook, one visible line per seed; returns them.  Claim rows on tables that hold such
        a seed carry the reasons (``degenerate``)."""
        found = degenerate_seeds(seed_results)
        for seed, reasons in found.items():
            tagged = [f"{stage}: {r}" if stage else r for r in reasons]
            self.degenerate.setdefault(seed, []).extend(t for t in tagged if t not in self.degenerate.get(seed, []))
            msg = f"degenerate stage, seed {seed}: {'; '.join(tagged)}"
            print(f"WARNING: {msg}. Claims on this seed's rows say so.")
            warnings.warn(msg, DegenerateStageWarning, stacklevel=2)
        return found

    def add(self, name: str, table: pd.DataFrame | list[dict[str, Any]]) -> pd.DataFrame:
        """Register a measured table (a DataFrame or records) under ``name``; saved as ``tables/<name>.csv``."""
        df = table if isinstance(table, pd.DataFrame) else long_table(table)
        self.tables[name] = df
        (self.run.dir / "tables").mkdir(exist_ok=True)
        df.to_csv(self.run.dir / "tables" / f"{name}.csv", index=False)
        return df

    def summary(self, name: str, baseline: str | None = None) -> pd.DataFrame:
        """Per method of table ``name``: the mean with its calibrated 95% interval across seeds and, against
        ``baseline``, the paired difference with its interval (:func:`rlbook.analysis.study.interval`)."""
        t = self.tables[name]
        rows = []
        for m in dict.fromkeys(t["method"]):
            row = {"method": m, **study.interval(t, m)}
            if baseline and m != baseline and baseline in set(t["method"]):
                d = study.interval(t, m, baseline)
                row.update(diff=d["mean"], diff_low=d["ci_low"], diff_high=d["ci_high"])
            rows.append(row)
        return pd.DataFrame(rows).set_index("method")

    def evaluate(self) -> list[dict[str, Any]]:
        """Every claim: regime checks, effect, calibrated interval, mde; verdicts (primary alone, secondaries by BH)."""
        rows = []
        for c in self.study.claims:
            if c.metric not in self.tables:
                raise ParamError(f"claim {c.text!r}: no measured table {c.metric!r}; have: {', '.join(self.tables)}")
            checks = [regimes.CHECKS[name](self, c, **kw) for name, kw in c.requires]
            margin = _run_se_check(c, self.tables[c.metric])
            checks += [margin] if margin is not None else []
            row = study.claim_row(c, self.tables[c.metric], checks)
            row["degenerate"] = degenerate_note(self.degenerate, set(self.tables[c.metric]["seed"]))
            rows.append(row)
        self.rows = stats.assign_verdicts(rows)
        return self.rows

    def claim_table(self) -> pd.DataFrame:
        return study.claim_frame(self.rows)

    def finish(self, results: Mapping[str, Any] | None = None) -> Any:
        """Evaluate the claims, save ``results.json`` (headline numbers, every claim row) and return the
        conclusion as Markdown, every number computed from the runs."""
        from IPython.display import Markdown

        self.evaluate()
        out = {"seeds": int(self.params.get("seeds", 0)), "claims": self.rows,
               "tables": sorted(self.tables), "degenerate": {str(k): v for k, v in self.degenerate.items()},
               **(results or {})}
        self.run.save_results(out)
        study.show_claims(self.rows)
        return Markdown(study.conclusion(self.rows))


# ------------------------------------------------------------------------------------------ figures


def bar_plot(summary: pd.DataFrame, ylabel: str, title: str = "") -> Any:
    """Means with their calibrated 95% intervals (a :meth:`PipelineResult.summary` table), one bar per method."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.2 + 1.3 * len(summary), 3.4))
    x = np.arange(len(summary))
    err = np.vstack([summary["mean"] - summary["ci_low"], summary["ci_high"] - summary["mean"]])
    ax.bar(x, summary["mean"], yerr=np.nan_to_num(err), capsize=4, color="#4c72b0")
    ax.set_xticks(x, [str(m) for m in summary.index], rotation=20, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def seed_curves(table: pd.DataFrame, x: str, hue: str, ylabel: str, title: str = "") -> Any:
    """``value`` against ``x`` (mean over units per seed, then a band across seeds), one line per ``hue``."""
    from rlbook.analysis import report

    per_seed = table.groupby([hue, "seed", x], sort=False)["value"].mean().reset_index()
    fig = report.method_curves(per_seed.rename(columns={hue: "method"}), [("value", ylabel)], x=x, title=title)
    return fig


def heatmaps(frames: Mapping[str, pd.DataFrame], title: str = "") -> Any:
    """One annotated heatmap per table (e.g. an accuracy matrix per training paradigm), a common colour scale."""
    import matplotlib.pyplot as plt

    n = len(frames)
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n, 3.2), squeeze=False)
    for ax, (name, df) in zip(axes.flat, frames.items(), strict=True):
        ax.imshow(df.to_numpy(), vmin=0.0, vmax=1.0, cmap="viridis")
        ax.set_xticks(range(df.shape[1]), df.columns, rotation=30, ha="right")
        ax.set_yticks(range(df.shape[0]), df.index)
        for (i, j), v in np.ndenumerate(df.to_numpy()):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", color="white" if v < 0.6 else "black", fontsize=8)
        ax.set_title(name)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
