"""Figures and descriptive tables shared by the notebooks: bootstrap bands, learning curves, dashboards.

Nothing here decides a claim.  Verdicts come from one place, :mod:`rlbook.analysis.stats` (one crossed seed x unit test,
the primary claim alone and the secondaries by Benjamini-Hochberg, ``underpowered`` below 3
seeds), through :class:`rlbook.analysis.study.Study`; the percentile bootstrap here only draws the bands and crosses
that show a spread.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

Stat = Callable[..., Any]


def _as_array(values: Iterable[float], name: str = "values") -> np.ndarray:
    x = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=float).ravel()
    if x.size == 0:
        raise ValueError(f"{name} is empty")
    return x


def _stat_rows(stat: Stat, samples: np.ndarray) -> np.ndarray:
    """``stat`` over each row of ``samples`` ([n_boot, n]); vectorised when ``stat`` takes ``axis``."""
    try:
        out = np.asarray(stat(samples, axis=1), dtype=float)
        if out.shape == (samples.shape[0],):
            return out
    except TypeError:
        pass
    return np.array([float(stat(row)) for row in samples])


def _interval(boot: np.ndarray, level: float) -> tuple[float, float]:
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(boot, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def bootstrap_ci(
    values: Iterable[float], stat: Stat = np.mean, n_boot: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """Percentile bootstrap: ``(stat(values), lo, hi)``.  One value gives ``lo = hi = est``."""
    x = _as_array(values)
    est = float(stat(x))
    if x.size == 1:
        return est, est, est
    rng = np.random.default_rng(seed)
    boot = _stat_rows(stat, x[rng.integers(0, x.size, size=(n_boot, x.size))])
    return (est, *_interval(boot, level))


def _band(values: pd.Series, n_boot: int, level: float, seed: int) -> pd.Series:
    est, lo, hi = bootstrap_ci(values.dropna().to_numpy(), n_boot=n_boot, level=level, seed=seed)
    return pd.Series({"mean": est, "lo": lo, "hi": hi, "n": int(values.notna().sum())})


def curve_band(
    df: pd.DataFrame,
    x: str,
    y: str,
    group: str | None = None,
    seed_col: str | None = "seed",
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Mean of ``y`` across seeds at each ``x`` (per ``group``), with a bootstrap band.

    Rows repeated within one seed at the same ``x`` are averaged first, so the band is across seeds.  When the
    seeds of a group do not share their ``x`` values (``x`` = generated tokens, say), ``x`` is first put into
    12 equal-width bins (:func:`binned`, each point at its bin's middle) so that the seeds line up.
    Returns columns ``[group], x, mean, lo, hi, n``.
    """
    keys = ([group] if group else []) + [x]
    data = df[df[y].notna()]
    if seed_col and seed_col in data.columns and not _aligned(data, x, group, seed_col):
        data = data.assign(**{x: binned(data[x])})
    if seed_col and seed_col in data.columns:
        data = data.groupby(keys + [seed_col], as_index=False, sort=False)[y].mean()
    out = data.groupby(keys, sort=True)[y].apply(lambda v: _band(v, n_boot, level, seed)).unstack()
    out = out.reset_index()
    out["n"] = out["n"].astype(int)
    return out


def _palette(n: int) -> list[Any]:
    """``n`` distinguishable colours: matplotlib's 10-colour cycle, ``tab20`` beyond 10 (no colour repeats)."""
    import matplotlib

    name = "tab10" if n <= 10 else "tab20"
    cmap = matplotlib.colormaps[name]
    return [cmap(i % cmap.N) for i in range(n)]


def _aligned(df: pd.DataFrame, x: str, group: str | None, seed_col: str) -> bool:
    """Do the seeds of every group log mostly the same ``x`` values (steps do, also when one seed stops a step
    earlier; token counts do not)?  Aligned: the values all seeds share are at least half of all values."""
    for _, part in df.groupby(group, sort=False) if group else [(None, df)]:
        xs = [set(v) for _, v in part.groupby(seed_col, sort=False)[x]]
        if len(xs) > 1 and len(set.intersection(*xs)) < 0.5 * len(set.union(*xs)):
            return False
    return True


def binned(values: pd.Series, bins: int = 12) -> pd.Series:
    """``values`` replaced by the middle of their equal-width bin over ``[min, max]`` (``bins`` bins)."""
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return values.astype(float)
    width = (hi - lo) / bins
    idx = np.minimum(((values.astype(float) - lo) // width).astype(int), bins - 1)
    return lo + (idx + 0.5) * width


FEW_POINTS = 12  # curves with at most this many points are drawn with markers


def plot_curves(
    ax: Any, df: pd.DataFrame, x: str, y: str, hue: str | None = None, seed_col: str = "seed"
) -> Any:
    """Mean line and 95% bootstrap band across seeds, one per ``hue`` value; returns ``ax``.  A curve of at most
    :data:`FEW_POINTS` points gets a marker at each point (one or two steps would otherwise draw nothing)."""
    band = curve_band(df, x, y, group=hue, seed_col=seed_col)
    groups = list(band.groupby(hue, sort=False)) if hue else [(None, band)]
    colors = _palette(len(groups))
    for (name, part), color in zip(groups, colors, strict=True):
        marker = "o" if len(part) <= FEW_POINTS else None
        (line,) = ax.plot(part[x], part["mean"], label=None if name is None else str(name), color=color,
                          marker=marker, markersize=4)
        ax.fill_between(part[x], part["lo"], part["hi"], color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    if hue:
        ax.legend(title=hue)
    return ax


TRAINING_PANELS = (
    ("reward_mean", "reward (mean)"),
    ("accuracy", "train accuracy"),
    ("response_length", "response length (tokens)"),
    ("zero_adv_group_frac", "share of zero-advantage groups"),
    ("entropy", "token entropy"),
    ("step_s", "seconds per step"),
)


def training_dashboard(history: pd.DataFrame | Sequence[dict[str, Any]], title: str = "") -> Any:
    """One figure with the per-step training metrics of a run (reward, accuracy, length, ...)."""
    import matplotlib.pyplot as plt

    df = pd.DataFrame(history)
    panels = [(k, label) for k, label in TRAINING_PANELS if k in df]
    fig, axes = plt.subplots(2, (len(panels) + 1) // 2, figsize=(4 * ((len(panels) + 1) // 2), 6), squeeze=False)
    for ax, (key, label) in zip(axes.flat, panels, strict=False):
        ax.plot(df["step"], df[key], marker="o", markersize=3)
        if "eval_accuracy" in df and key == "accuracy":
            ev = df.dropna(subset=["eval_accuracy"])
            ax.plot(ev["step"], ev["eval_accuracy"], marker="s", label="held-out (greedy)")
            ax.legend()
        ax.set_title(label)
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def side_by_side(questions: Sequence[str], answers: Sequence[str], **columns: Sequence[Any]) -> pd.DataFrame:
    """A table of questions, reference answers and one column per named list of completions/scores."""
    data: dict[str, Sequence[Any]] = {"question": list(questions), "answer": list(answers)}
    for name, values in columns.items():
        data[name] = list(values)[: len(questions)]
    return pd.DataFrame(data)


# ---------------------------------------------------------------- multi-seed method comparisons
# (inputs: ``rlbook.training.experiments.SweepResult.metrics`` / ``.final``, one row per step / per (method, seed))


def method_curves(
    metrics: pd.DataFrame,
    panels: Sequence[tuple[str, str]],
    x: str = "step",
    hue: str = "method",
    title: str = "",
    ncols: int = 3,
) -> Any:
    """One panel per ``(column, label)``: mean across seeds with a 95% bootstrap band, one line per method.
    Columns missing from ``metrics`` (or all NaN) are skipped."""
    import matplotlib.pyplot as plt

    panels = [(c, lab) for c, lab in panels if c in metrics and metrics[c].notna().any()]
    ncols = max(1, min(ncols, len(panels)))
    nrows = max(1, -(-len(panels) // ncols))
    size = (6.4, 4.4) if len(panels) == 1 else (4.2 * ncols, 3.3 * nrows)
    fig, axes = plt.subplots(nrows, ncols, figsize=size, squeeze=False)
    for ax, (col, label) in zip(axes.flat, panels, strict=False):
        plot_curves(ax, metrics, x, col, hue=hue)
        ax.set_title(label)
        ax.set_ylabel(label)
        if ax.get_legend():
            ax.get_legend().remove()
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if labels:  # one legend for the figure, right of the panels, so it never hides a curve
        fig.legend(handles, labels, title=hue, loc="upper left", bbox_to_anchor=(1.0, 0.95), fontsize=8)
    return fig


def pareto_plot(
    final: pd.DataFrame,
    x: str = "final_response_length",
    y: str = "final_accuracy",
    method_col: str = "method",
    ax: Any = None,
    xlabel: str = "mean response length (tokens)",
    ylabel: str = "held-out accuracy",
) -> Any:
    """Accuracy against mean response length, one point per method at the seed means, with 95% bootstrap
    CI crosses in both directions and the single seeds as faint dots (the Pareto view of length methods)."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 4.2))
    for method, part in final.groupby(method_col, sort=False):
        xs, ys = part[x].dropna().to_numpy(), part[y].dropna().to_numpy()
        if not len(xs) or not len(ys):
            continue
        mx, xlo, xhi = bootstrap_ci(xs)
        my, ylo, yhi = bootstrap_ci(ys)
        cont = ax.errorbar([mx], [my], xerr=[[mx - xlo], [xhi - mx]], yerr=[[my - ylo], [yhi - my]], fmt="o",
                           capsize=4, label=str(method))
        ax.scatter(part[x], part[y], color=cont[0].get_color(), alpha=0.3, s=14)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return ax.figure


def timing_table(final: pd.DataFrame, method_col: str = "method") -> pd.DataFrame:
    """Per method: mean seconds per training step and per run, and completions sampled per run."""
    cols = [c for c in ("seconds_per_step", "train_seconds", "samples") if c in final]
    return final.groupby(method_col, sort=False)[cols].mean()


def mcnemar_p(before: Sequence[bool], after: Sequence[bool]) -> float:
    """Exact two-sided McNemar test of paired 0/1 outcomes (the same problems before and after): a binomial
    test of the discordant pairs (McNemar 1947; ``scipy.stats.binomtest``).  1.0 when no pair changed."""
    from scipy.stats import binomtest

    b = sum(1 for x, y in zip(before, after, strict=True) if x and not y)
    c = sum(1 for x, y in zip(before, after, strict=True) if y and not x)
    return float(binomtest(c, b + c, 0.5).pvalue) if b + c else 1.0


def format_split(before: dict[str, Any], after: dict[str, Any]) -> pd.DataFrame:
    """Split a change of held-out accuracy into answer-format learning and getting the answer right: the share of
    answers in the requested format, accuracy among well-formatted answers, and accuracy overall, before and
    after (``rlbook.training.experiments.evaluate`` outputs on the same problems), with an exact McNemar p-value over the
    paired problems for the two 0/1 rates (this one run's problems: not a replication across seeds)."""
    fb, fa = np.asarray(before["formatted"], bool), np.asarray(after["formatted"], bool)
    cb, ca = np.asarray(before["correct"], bool), np.asarray(after["correct"], bool)

    def among(c: np.ndarray, f: np.ndarray) -> float:
        return float(c[f].mean()) if f.any() else float("nan")

    rows = [
        {"quantity": "answer in the requested format", "before": fb.mean(), "after": fa.mean(),
         "McNemar p (paired problems)": mcnemar_p(fb, fa)},
        {"quantity": "accuracy among well-formatted answers", "before": among(cb, fb), "after": among(ca, fa),
         "McNemar p (paired problems)": float("nan")},
        {"quantity": "accuracy overall", "before": cb.mean(), "after": ca.mean(),
         "McNemar p (paired problems)": mcnemar_p(cb, ca)},
    ]
    out = pd.DataFrame(rows).set_index("quantity")
    out.insert(2, "change", out["after"] - out["before"])
    return out


def quickstart_summary(before: dict[str, Any], after: dict[str, Any], split: pd.DataFrame, hist: pd.DataFrame,
                       claim_row: dict[str, Any]) -> Any:
    """The quickstart's closing paragraph, every number from the run (IPython Markdown)."""
    from IPython.display import Markdown

    delta = after["accuracy"] - before["accuracy"]
    direction = "rose" if delta > 0 else ("fell" if delta < 0 else "")
    change = (f"{direction} from {before['accuracy']:.1%} to {after['accuracy']:.1%}" if direction
              else f"stayed at {after['accuracy']:.1%}")
    fmt, acc = split.loc["answer in the requested format"], split.loc["accuracy among well-formatted answers"]
    p = split.loc["accuracy overall", "McNemar p (paired problems)"]
    return Markdown(
        f"**Result.** After {len(hist)} GRPO steps ({float(hist['step_s'].sum()) / 60:.1f} min of training, "
        f"{float(hist['step_s'].mean()):.1f} s per step), held-out greedy accuracy on {after['n']} problems "
        f"**{change}** ({delta * 100:+.1f} points; exact "
        f"McNemar {_p_phrase(p)} over this run's paired problems). {_format_sentence(fmt, acc)} Mean response length "
        f"went from {before['response_length']:.1f} to {after['response_length']:.1f} "
        f"tokens. Verdict: **{claim_row['verdict']}** ({short_reason(claim_row)}): the method notebooks repeat such runs "
        f"over seeds before they call a claim replicated.")


def _p_phrase(p: float) -> str:
    """``p = 0.012`` or ``p < 0.001`` for prose."""
    text = _p_value(p)
    return f"p {text}" if text.startswith("<") else f"p = {text}"


def _format_sentence(fmt: Any, acc: Any) -> str:
    """How much of the change is the answer's form and how much its content, said plainly when no answer was in
    the requested form before or after (then the whole change is in the content)."""
    if fmt["before"] == 0 and fmt["after"] == 0:
        return ("No answer was in the requested format (the answer alone) before or after, so the whole change is in "
                "the answers themselves (the final number of each reply), not in learning the format.")
    return (f"Of that, the share of answers given in the requested format went from {fmt['before']:.1%} to "
            f"{fmt['after']:.1%}, and {_formatted_accuracy(acc)}: the first is learning the format, the second "
            "getting the answer right.")


def _formatted_accuracy(acc: Any) -> str:
    """The accuracy-among-well-formatted-answers clause; says so when no answer was in the format."""
    if not finite(acc["before"]) and not finite(acc["after"]):
        return "accuracy among well-formatted answers cannot be measured (no answer was in the format, before or after)"
    return f"accuracy among well-formatted answers from {_share(acc['before'])} to {_share(acc['after'])}"


def _share(x: float) -> str:
    """A share as a percentage, or why there is none (no well-formatted answer to take it over)."""
    return f"{x:.1%}" if finite(x) else "none (no answer in the format)"


def _p_value(p: float) -> str:
    """A p-value as the tables show it: 3 decimals, or ``< 0.001``."""
    return "none" if not finite(p) else ("< 0.001" if p < 0.001 else f"{p:.3f}")


# ---------------------------------------------------------------- claim rows as a reader sees them
# (rows: the dicts of rlbook.analysis.stats.evaluate_claim / assign_verdicts, optionally with `primary`, `paper_effect`)


def finite(x: Any) -> bool:
    """A real number that is neither NaN nor infinite (None, strings and non-finite floats are not)."""
    return isinstance(x, (int, float, np.floating, np.integer)) and not isinstance(x, bool) and bool(np.isfinite(x))


def num(x: Any, spec: str = ".3g", missing: str = "none") -> str:
    """``x`` formatted, or ``missing`` for None / NaN / inf: no ``nan`` or ``inf`` ever reaches the prose."""
    return format(float(x), spec) if finite(x) else missing


def count(n: Any, word: str) -> str:
    """``1 seed``, ``3 seeds``."""
    n = int(n) if finite(n) else 0
    return f"{n} {word}{'' if n == 1 else 's'}"


def range_text(lo: float, hi: float, spec: str = "g") -> str:
    """A required range in words: ``between 0.1 and 0.9``, ``at least 0.5``, ``at most 3`` (no ``inf``)."""
    if finite(lo) and finite(hi):
        return f"between {format(lo, spec)} and {format(hi, spec)}"
    if finite(lo):
        return f"at least {format(lo, spec)}"
    if finite(hi):
        return f"at most {format(hi, spec)}"
    return "any value"


def interval_text(row: dict[str, Any]) -> str:
    """``[-0.021, +0.083]``, or why there is none (``no interval with 1 seed``)."""
    if finite(row.get("ci_low")) and finite(row.get("ci_high")):
        return f"[{row['ci_low']:+.3g}, {row['ci_high']:+.3g}]"
    n = row.get("n_seeds")
    return f"no interval with {count(n, 'seed')}" if finite(n) and n < 2 else "no interval"


def effect_text(row: dict[str, Any]) -> str:
    """The measured effect with its 95% interval, e.g. ``+0.031 [-0.021, +0.083]``."""
    if not finite(row.get("effect")):
        return "not measured"
    text = interval_text(row)
    return f"{row['effect']:+.3g} {text if text.startswith('[') else f'({text})'}"


def paper_text(row: dict[str, Any]) -> str:
    """What the paper reports: ``paper_effect`` (a number or text) and the quoted ``paper``, or ``-``."""
    parts = []
    pe = row.get("paper_effect")
    if pe is not None and pe != "":
        parts.append(f"{pe:+.3g}" if finite(pe) else str(pe))
    if row.get("paper"):
        parts.append(str(row["paper"]))
    return ": ".join(parts) or "-"


def short_reason(row: dict[str, Any], width: int = 110) -> str:
    """Why the verdict, in one short line (the full reason is in the row's details and results.json)."""
    verdict = row.get("verdict")
    if verdict == "underpowered":
        text = f"{count(row.get('n_seeds'), 'seed')}; a verdict needs 3"
    elif verdict == "untestable in this regime":
        text = str(row.get("reason") or "a regime check failed").split("; ")[0]
    elif verdict == "check":
        text = "a check (true by construction or a precondition): shown, no verdict"
    else:
        which = "p (primary, alone)" if row.get("role") == "primary" or row.get("primary") else "BH-adjusted p"
        text = f"{which} = {num(row.get('p_adjusted'), '.2g')}"
        if finite(row.get("mde")):
            text += f"; smallest detectable effect {row['mde']:.3g}"
    if row.get("degenerate"):
        text = f"DEGENERATE STAGE ({row['degenerate']}); {text}"
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"


def _detail_value(value: Any) -> str:
    if isinstance(value, float) or finite(value):
        return num(value, ".4g", "none")
    return "-" if value is None or value == "" else str(value)


# Scoped to the claim table; in the page itself, so that JupyterLab shows it as the report does (their
# stylesheets right-align table cells).
CLAIMS_CSS = (
    "table.rlbook-claims{border-collapse:collapse;font-size:13px}"
    "table.rlbook-claims caption{caption-side:top;text-align:left;font-weight:600;padding:4px 0}"
    "table.rlbook-claims td,table.rlbook-claims th{padding:4px 8px;vertical-align:top;text-align:left!important;"
    "border-bottom:1px solid #e5e7eb}"
    "table.rlbook-claims td.claim{max-width:340px}table.rlbook-claims td.why{max-width:300px;color:#4b5563}"
    "table.rlbook-claims details summary{cursor:pointer;color:#2563eb}"
    "table.rlbook-claims details dl{display:grid;grid-template-columns:max-content auto;gap:2px 10px;margin:4px 0}"
    "table.rlbook-claims details dt{color:#6b7280}table.rlbook-claims details dd{margin:0}"
)


def claims_html(rows: Sequence[dict[str, Any]], caption: str = "") -> str:
    """The claim table a reader can take in: claim, effect and 95% interval, the paper's effect, verdict and the
    reason in one line; every field of the row in an expandable ``<details>`` (the same row as results.json).
    A primary claim is marked ★."""
    import html

    caption = caption or (f"{count(len(rows), 'claim')}: effect = method minus baseline (paired by seed and "
                          "problem) with its calibrated 95% interval; ★ the primary claim, tested alone; secondary claims "
                          "Benjamini-Hochberg-adjusted; checks carry no verdict.")
    head = "".join(f"<th>{h}</th>" for h in ("claim", "effect [95% CI]", "paper", "verdict", "why", ""))
    body = []
    for r in rows:
        star = "★ " if r.get("primary") else ""
        what = f"{r.get('method')}" + (f" vs {r['baseline']}" if r.get("baseline") else "") + f", {r.get('metric')}"
        fields = "".join(f"<dt>{html.escape(str(k))}</dt><dd>{html.escape(_detail_value(v))}</dd>"
                         for k, v in r.items())
        cells = [f"{star}{html.escape(str(r.get('claim')))}<br><small>{html.escape(what)}</small>",
                 html.escape(effect_text(r)), html.escape(paper_text(r)),
                 f"<b>{html.escape(str(r.get('verdict')))}</b>", html.escape(short_reason(r)),
                 f"<details><summary>details</summary><dl>{fields}</dl></details>"]
        classes = ("claim", "effect", "paper", "verdict", "why", "more")
        body.append("<tr>" + "".join(f"<td class='{c}'>{v}</td>" for c, v in zip(classes, cells, strict=True))
                    + "</tr>")
    return (f"<style>{CLAIMS_CSS}</style><table class='rlbook-claims'><caption>{html.escape(caption)}</caption><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")


def signal_advice(warning: str, profile: str | None) -> str:
    """The no-signal warning of :func:`rlbook.analysis.probe.signal_warning` as the profile calls for it: under the smoke
    profile (a few steps, tiny settings: a plumbing test) no signal is expected, so it is a note without advice
    to change the task; otherwise the warning with its advice."""
    if profile == "smoke":
        first = warning.split(". ")[0]
        return f"note: {first} (expected with the smoke profile's tiny settings; a plumbing test, nothing to change)"
    return f"warning: {warning}"


def claim_sentence(row: dict[str, Any]) -> str:
    """One Markdown line per claim for the conclusion; every number from the row, none of them ``nan``."""
    vs = f" vs {row['baseline']}" if row.get("baseline") else ""
    # arms that gave identical values (a mechanism that never acted, with common random numbers) have no variance:
    # an interval [0, 0] and an mde of 0 would read as a precise null, so the sentence says what happened instead
    identical = row.get("effect") == 0 and row.get("se") == 0
    mde = (f", smallest detectable effect {row['mde']:.3g}" if finite(row.get("mde")) and not identical else "")
    paper = f" The paper: {paper_text(row)}." if paper_text(row) != "-" else ""
    why = {"untestable in this regime": f" ({row.get('reason') or short_reason(row)})",
           "underpowered": f" ({short_reason(row)})"}.get(str(row.get("verdict")), "")
    star = "★ Primary: " if row.get("primary") else "Check: " if row.get("role") == "check" else ""
    scale = " (log ratio)" if row.get("scale", "identity") != "identity" else ""
    units = f" x {count(row.get('n_units'), 'unit')}" if finite(row.get("n_units")) and row.get("n_units", 1) > 1 else ""
    verdict = "shown, no verdict" if row.get("verdict") == "check" else f"**{row.get('verdict')}**"
    degenerate = f" **Degenerate stage**: {row['degenerate']}." if row.get("degenerate") else ""
    effect = "0 (the arms gave identical values)" if identical else effect_text(row)
    return (f"- {star}*{row['claim']}* ({row.get('method')}{vs}, {row.get('metric')}{scale}): effect "
            f"{effect}, {count(row.get('n_seeds'), 'seed')}{units}{mde}: {verdict}{why}.{paper}{degenerate}")


def table(df: pd.DataFrame, caption: str, digits: int = 3) -> Any:
    """``df`` for display with a caption: numbers to ``digits`` decimals, p-value columns (a name with
    "p-value" or "p (" in it, or ``p_*``) as ``< 0.001`` rather than a rounded 0, missing values as a dash
    (never ``nan``); returns a pandas Styler (shown as HTML in JupyterLab and in the report)."""
    def is_p(col: Any) -> bool:
        name = str(col).lower()
        return "p-value" in name or "p (" in name or name.startswith("p_") or name.startswith("mcnemar p")

    numeric = [c for c in df.columns if pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])]
    import html

    fmt = {c: ((lambda v: html.escape(_p_value(v))) if is_p(c) else (lambda v, d=digits: num(v, f".{d}f", "—")))
           for c in numeric}
    return df.style.format(fmt, na_rep="—", escape="html").set_caption(caption)
