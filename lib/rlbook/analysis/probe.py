"""Probe a task configuration: can the base model give GRPO any signal on it?

GRPO learns only from groups whose rewards differ: a prompt that the policy always solves, or never
solves, contributes zero advantage (DeepSeekMath, Shao et al. 2024, §4.1.2: ``(r - mean) / std`` is 0
when all G rewards are equal; DAPO, Yu et al. 2025, §3.2 "Dynamic Sampling" drops such groups).  So
before training one wants, on the exact task configuration and generation length of the run:

* ``greedy``: held-out greedy accuracy (what ``Trainer.evaluate`` measures) on ``task.eval[:n_eval]``;
* ``sampled``: ``group_size`` samples at ``temperature`` for each of ``task.train[:n_prompts]`` (what a
  training step sees): per-prompt success rates, their histogram, and the share of **mixed** groups
  (some right, some wrong: the only groups with a non-zero GRPO advantage);
* for both: response length in tokens (through the first EOS, as the trainer counts it), its
  percentiles, the truncation rate (no EOS within ``max_new_tokens``), the answer-format rate
  (:func:`rlbook.data.tasks.is_well_formatted`) and the share of completions from which an answer can be
  extracted at all;
* ``by_group``: the same accuracies split by source family and difficulty (``Problem.meta``) when
  the pool mixes several.

:func:`signal_warning` turns a probe (or a bare accuracy) into the message a run prints at its start
when GRPO will get no signal, with concrete advice (an easier / harder config from the dataset's
reasoning-gym curriculum, the answer format, more tokens).

Generation uses :func:`rlbook.policy.generation.sample_groups` with the trainer's conventions (chat
template with the generation prompt, no extra special tokens, EOS ids from the tokenizer and the
generation config, completion = tokens through the first EOS, decoded with
``skip_special_tokens``), independently of :class:`rlbook.training.trainer.Trainer`.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlbook.core.config import ParamError
from rlbook.data.tasks import Problem, Task, TaskSpec, extract_answer, is_well_formatted, make_task
from rlbook.policy.generation import left_pad, prompt_ids, sample_groups

DEFAULT_MODEL = "smollm2-135m-instruct"
LOW_MIXED_SHARE = 0.1  # below this share of mixed groups a run's steps are mostly zero-advantage


# ------------------------------------------------------------------------------------- generation
def eos_ids(model: torch.nn.Module, tok: Any) -> list[int]:
    """The tokenizer's EOS and the generation config's EOS id(s) (the trainer's convention)."""
    ids = {tok.eos_token_id}
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(gen_eos, int):
        ids.add(gen_eos)
    elif gen_eos:
        ids.update(gen_eos)
    return sorted(i for i in ids if i is not None)


@dataclass
class Completions:
    """Decoded completions (prompt-major rows), their token lengths through the first EOS, truncation."""

    texts: list[str]
    lengths: list[int]
    truncated: list[bool]  # no EOS within max_new_tokens


@torch.no_grad()
def generate(
    model: torch.nn.Module, tok: Any, problems: list[Problem], *, max_new_tokens: int, group_size: int = 1,
    do_sample: bool = False, temperature: float = 1.0, batch_rows: int = 64,
) -> Completions:
    """``group_size`` completions per problem, about ``batch_rows`` sequences per ``sample_groups`` call.

    All prompts are left-padded together and then cut into chunks, as ``Trainer.generate`` does.
    """
    device = next(model.parameters()).device
    eos = eos_ids(model, tok)
    pad = tok.pad_token_id if tok.pad_token_id is not None else eos[0]
    ids, att = left_pad([prompt_ids(tok, p.messages) for p in problems], pad, device)
    per_chunk = max(1, batch_rows // group_size)
    was_training = model.training
    model.eval()
    texts: list[str] = []
    lengths: list[int] = []
    truncated: list[bool] = []
    try:
        for s in range(0, ids.shape[0], per_chunk):
            comp = sample_groups(model, ids[s : s + per_chunk], att[s : s + per_chunk], group_size, max_new_tokens,
                                 eos, pad, do_sample=do_sample, temperature=temperature)
            is_eos = torch.isin(comp, torch.tensor(eos, device=comp.device))
            keep = (torch.cumsum(is_eos.long(), -1) - is_eos.long()) == 0  # through the first EOS
            texts += tok.batch_decode(torch.where(keep, comp, torch.full_like(comp, pad)), skip_special_tokens=True)
            lengths += keep.sum(-1).tolist()
            truncated += (~is_eos.any(-1) & (keep.sum(-1) >= max_new_tokens)).tolist()
    finally:
        model.train(was_training)
    return Completions(texts, [int(n) for n in lengths], [bool(t) for t in truncated])


# ------------------------------------------------------------------------------------- statistics
def length_stats(lengths: list[int]) -> dict[str, float]:
    """Mean, standard deviation and 10/50/90th percentiles (numpy's linear interpolation), min, max."""
    a = np.asarray(lengths, dtype=float)
    p10, p50, p90 = np.percentile(a, [10, 50, 90])
    return {"mean": float(a.mean()), "std": float(a.std()), "p10": float(p10), "p50": float(p50),
            "p90": float(p90), "min": float(a.min()), "max": float(a.max())}


def completion_stats(task: Task, comps: Completions, scores: list[float]) -> dict[str, Any]:
    """Accuracy (score >= 1), format and extraction rates, lengths and truncation of a set of completions."""
    fmt = task.spec.answer_format
    return {
        "accuracy": float(np.mean([s >= 1.0 for s in scores])),
        "format_rate": float(np.mean([is_well_formatted(t, fmt) for t in comps.texts])),
        "extractable_rate": float(np.mean([extract_answer(t, task.numeric) is not None for t in comps.texts])),
        "truncation_rate": float(np.mean(comps.truncated)),
        "length": length_stats(comps.lengths),
    }


def group_stats(correct: list[bool], group_size: int) -> dict[str, Any]:
    """Per-prompt success over prompt-major rows: rates, histogram of #correct (0..G), mixed/all shares."""
    if group_size < 1 or len(correct) % group_size:
        raise ParamError(f"{len(correct)} rows do not split into groups of group_size={group_size}")
    k = np.asarray(correct, dtype=int).reshape(-1, group_size).sum(-1)
    hist = np.bincount(k, minlength=group_size + 1)
    return {
        "per_prompt_success": (k / group_size).tolist(),
        "histogram": hist.tolist(),  # histogram[j]: prompts with exactly j of G samples correct
        "mixed_share": float(np.mean((k > 0) & (k < group_size))),
        "all_wrong_share": float(np.mean(k == 0)),
        "all_correct_share": float(np.mean(k == group_size)),
    }


def group_label(problem: Problem) -> str:
    """``source`` plus its per-item difficulty, e.g. ``chain_sum num_digits=2 num_terms=2``."""
    meta = problem.meta or {}
    diff = meta.get("difficulty") or {}
    parts = [f"{k}={v}" for k, v in sorted(diff.items()) if not isinstance(v, list)]
    return " ".join([str(meta.get("source", "?")), *parts])


def by_group(problems: list[Problem], values: list[float]) -> dict[str, dict[str, float]]:
    """Mean of ``values`` (one per problem) and count for each :func:`group_label`."""
    acc: dict[str, list[float]] = defaultdict(list)
    for p, v in zip(problems, values, strict=True):
        acc[group_label(p)].append(v)
    return {g: {"n": len(v), "mean": float(np.mean(v))} for g, v in sorted(acc.items())}


# ------------------------------------------------------------------------------------- the probe
def _as_task(task: Task | TaskSpec | dict[str, Any] | str) -> tuple[Task, int | None]:
    """The task, and the preset's ``max_new_tokens`` when ``task`` names a preset."""
    if isinstance(task, Task):
        return task, None
    if isinstance(task, str):
        from rlbook.data.tasks import preset

        p = preset(task)
        return make_task(p["task"]), p["max_new_tokens"]
    return make_task(task), None


def _check_sizes(**sizes: int) -> None:
    for key, v in sizes.items():
        low = 0 if key == "n_prompts" else 1
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ParamError(f"probe {key}={v!r} must be an integer >= {low}")


def probe(
    task: Task | TaskSpec | dict[str, Any] | str,
    model: torch.nn.Module | None = None,
    tok: Any = None,
    *,
    max_new_tokens: int | None = None,
    n_eval: int = 100,
    n_prompts: int = 32,
    group_size: int = 8,
    temperature: float = 1.0,
    batch_rows: int = 64,
    seed: int = 0,
    model_name: str = DEFAULT_MODEL,
    examples: int = 3,
    keep_completions: bool = False,
) -> dict[str, Any]:
    """Greedy held-out accuracy and sampled per-prompt success of the base model on ``task``.

    ``task``: a :class:`Task`, a ``TaskSpec`` or its dict, or a preset name (:data:`rlbook.data.tasks.PRESETS`).
    ``max_new_tokens``: default the preset's, else 32.  ``model`` / ``tok``: default the embedded model,
    loaded without LoRA.  ``n_prompts=0`` skips sampling.
    The global torch RNG is seeded with ``seed`` for sampling and restored afterwards.
    ``keep_completions``: also return every completion (``greedy.completions``, ``sampled.completions``,
    in the order of ``task.eval`` / ``task.train`` rows, prompt-major).
    """
    t0 = time.perf_counter()
    task, preset_tokens = _as_task(task)
    max_new_tokens = max_new_tokens or preset_tokens or 32
    _check_sizes(n_eval=n_eval, n_prompts=n_prompts, group_size=group_size, max_new_tokens=max_new_tokens,
                 batch_rows=batch_rows)
    if model is None or tok is None:
        from rlbook.policy.models import load_policy

        model, tok = load_policy(model_name, lora=None)
    out: dict[str, Any] = {
        "task": asdict(task.spec), "model": model_name if model_name else type(model).__name__,
        "max_new_tokens": max_new_tokens, "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "threads": torch.get_num_threads(),
    }
    evals = task.eval[:n_eval]
    comps = generate(model, tok, evals, max_new_tokens=max_new_tokens, batch_rows=batch_rows)
    scores = [task.score(p, t) for p, t in zip(evals, comps.texts, strict=True)]
    out["greedy"] = {"n": len(evals), **completion_stats(task, comps, scores),
                     "examples": [{"question": p.question, "answer": p.answer, "completion": t}
                                  for p, t in zip(evals[:examples], comps.texts, strict=False)]}
    if keep_completions:
        out["greedy"]["completions"] = comps.texts
    groups = {"greedy": by_group(evals, [float(s >= 1.0) for s in scores])}
    out["greedy_seconds"] = time.perf_counter() - t0
    if n_prompts > 0:
        out["sampled"], groups["sampled"] = _sampled(task, model, tok, n_prompts, group_size, max_new_tokens,
                                                     temperature, batch_rows, seed, keep_completions)
    if any(len(g) > 1 for g in groups.values()):
        out["by_group"] = groups
    out["seconds"] = time.perf_counter() - t0
    out["warning"] = signal_warning(out, task)
    return out


def _sampled(
    task: Task, model: torch.nn.Module, tok: Any, n_prompts: int, group_size: int, max_new_tokens: int,
    temperature: float, batch_rows: int, seed: int, keep_completions: bool,
) -> tuple[dict[str, Any], dict[str, dict[str, float]]]:
    prompts = task.train[:n_prompts]
    device = next(model.parameters()).device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):  # the caller's RNG is kept
        torch.manual_seed(seed)
        comps = generate(model, tok, prompts, max_new_tokens=max_new_tokens, group_size=group_size,
                         do_sample=True, temperature=temperature, batch_rows=batch_rows)
    rows = [p for p in prompts for _ in range(group_size)]
    scores = [task.score(p, t) for p, t in zip(rows, comps.texts, strict=True)]
    groups = group_stats([s >= 1.0 for s in scores], group_size)
    stats = {"n_prompts": len(prompts), "group_size": group_size, "temperature": temperature,
             **completion_stats(task, comps, scores), **groups}
    if keep_completions:
        stats["completions"] = comps.texts
    return stats, by_group(prompts, groups["per_prompt_success"])


# ------------------------------------------------------------------------------------- no-signal warning
def _spec_of(task: Task | TaskSpec | dict[str, Any] | str) -> tuple[str, dict[str, Any]]:
    if isinstance(task, Task):
        return task.spec.name, dict(task.spec.config)
    if isinstance(task, TaskSpec):
        return task.name, dict(task.config)
    if isinstance(task, dict):
        return str(task.get("name", "chain_sum")), dict(task.get("config") or {})
    from rlbook.data.tasks import PRESETS

    if task in PRESETS:
        return PRESETS[task]["task"]["name"], dict(PRESETS[task]["task"].get("config") or {})
    return str(task), {}


def config_advice(name: str, config: dict[str, Any], direction: str) -> list[str]:
    """Overrides that move ``config`` one way along the dataset's reasoning-gym curriculum.

    ``direction="easier"``: every difficulty knob to the curriculum's first (easiest) level;
    ``"harder"``: every knob to the level just above its current upper value.  Returns overrides like
    ``["task.config.max_terms=2"]``; empty when the dataset has no curriculum or is already at that end.
    """
    import reasoning_gym

    if direction not in ("easier", "harder"):
        raise ParamError(f"direction={direction!r} is not allowed; allowed: easier, harder")
    if name not in getattr(reasoning_gym.factory, "CURRICULA", {}):
        return []
    current = {**asdict(reasoning_gym.factory.DATASETS[name][1]()), **config}
    sets: dict[str, Any] = {}
    for attr in reasoning_gym.factory.CURRICULA[name]().attributes.values():
        upper = getattr(attr, "upper_field_name", None) or getattr(attr, "field_name", None)
        lower = getattr(attr, "lower_field_name", None)
        if upper is None or upper not in current:
            continue
        value, levels = current[upper], list(attr.levels)
        try:
            target = levels[0] if direction == "easier" else next((v for v in levels if v > value), None)
            moves = target is not None and (target < value if direction == "easier" else True)
        except TypeError:  # levels that are not ordered numbers (e.g. lists of operators)
            continue
        if moves:
            sets[upper] = target
            if lower is not None and lower in current and current[lower] > target:
                sets[lower] = target
    return [f"task.config.{k}={v}" for k, v in sets.items()]


def _as_probe(probe_or_accuracy: dict[str, Any] | float) -> dict[str, Any]:
    if isinstance(probe_or_accuracy, dict):
        return probe_or_accuracy
    acc = float(probe_or_accuracy)
    if not 0.0 <= acc <= 1.0:
        raise ParamError(f"accuracy={acc!r} must lie in [0, 1]")
    return {"greedy": {"accuracy": acc}}


def signal_warning(probe_or_accuracy: dict[str, Any] | float, task: Task | TaskSpec | dict[str, Any] | str) -> str | None:
    """The message for a task on which GRPO gets (almost) no signal, with what to try; None if it does.

    ``probe_or_accuracy``: a :func:`probe` result, or the base model's greedy held-out accuracy alone.
    A bare accuracy warns at exactly 0 or 1.  A probe with a sampled part warns when fewer than
    ``LOW_MIXED_SHARE`` of its groups are mixed (the others have zero advantage for every sample),
    whatever the greedy accuracy; without one it warns like a bare accuracy.
    """
    res = _as_probe(probe_or_accuracy)
    greedy, sampled = res.get("greedy", {}), res.get("sampled")
    acc = float(greedy.get("accuracy", float("nan")))
    if sampled is not None:
        if sampled["mixed_share"] >= LOW_MIXED_SHARE:
            return None
        too_hard = sampled["all_wrong_share"] >= sampled["all_correct_share"]
        what = (f"only {sampled['mixed_share']:.0%} of {sampled['n_prompts']} prompts give a mixed group of "
                f"{sampled['group_size']} samples ({sampled['all_wrong_share']:.0%} all wrong, "
                f"{sampled['all_correct_share']:.0%} all right; greedy held-out accuracy {acc:.0%})")
    elif acc <= 0.0 or acc >= 1.0:
        too_hard = acc <= 0.0
        what = f"the base model's greedy held-out accuracy is {acc:.0%}"
    else:
        return None
    name, config = _spec_of(task)
    return f"GRPO gets no signal on task {name!r}: {what}. " + _advice(res, name, config, too_hard)


def _advice(res: dict[str, Any], name: str, config: dict[str, Any], too_hard: bool) -> str:
    """What to try, most specific first; every suggestion can be checked with ``rlbook tasks --probe``."""
    check = f"Check a config first: `rlbook tasks --probe {name} -p task.config.KEY=VALUE`."
    if not too_hard:
        moves = config_advice(name, config, "harder")
        if moves:
            check = f"Check it first: `rlbook tasks --probe {name} -p {' -p '.join(moves)}`."
        first = (f"Every group is all right, so every advantage is 0: make it harder, e.g. -p {' -p '.join(moves)}."
                 if moves else "Every group is all right, so every advantage is 0: choose a harder config.")
        return f"{first} {check}"
    tips = ["Every group is all wrong, so every advantage is 0." if "sampled" in res
            else "Sampled groups will then be (almost) all wrong, and an all-wrong group's advantages are all 0."]
    stats = res.get("sampled") or res.get("greedy") or {}
    mnt = res.get("max_new_tokens")
    if stats.get("truncation_rate", 0.0) > 0.2 and mnt:
        tips.append(f"{stats['truncation_rate']:.0%} of completions hit max_new_tokens={mnt}: give more tokens "
                    f"(e.g. -p train.max_new_tokens={2 * mnt}).")
    if stats.get("extractable_rate", 1.0) < 0.5:
        tips.append(f"only {stats['extractable_rate']:.0%} of completions contain an answer that can be read: "
                    "ask for a tagged answer (-p task.answer_format=tag) or a shorter reply.")
    moves = config_advice(name, config, "easier")
    if moves:
        tips.append(f"Make it easier, e.g. -p {' -p '.join(moves)}.")
        check = f"Check it first: `rlbook tasks --probe {name} -p {' -p '.join(moves)}`."
    else:
        tips.append("Choose an easier config or task (`rlbook tasks` lists presets with their measured base accuracy).")
    tips.append(check)
    return " ".join(tips)


# ------------------------------------------------------------------------------------- command line
CLI_DEFAULTS = {"train_size": 1000, "eval_size": 100}  # as the notebooks' params (TaskSpec's own eval_size is 200)


def task_from_cli(name: str, overrides: list[str]) -> tuple[dict[str, Any], int | None]:
    """The task dict and ``max_new_tokens`` (None: not set) for ``rlbook tasks --probe NAME -p k=v ...``.

    ``NAME``: a preset (:data:`rlbook.data.tasks.PRESETS`) or a reasoning-gym dataset (then ``train_size=1000,
    eval_size=100`` unless overridden).  Override keys are ``TaskSpec`` fields or ``config.KEY``, with or
    without a leading ``task.`` (so a ``rlbook run`` override works as it is), or ``max_new_tokens``
    (also as ``train.max_new_tokens``).
    """
    import copy

    from rlbook.data.tasks import PRESETS, available
    from rlbook.training import params as P

    if name in PRESETS:
        spec, mnt = copy.deepcopy(PRESETS[name]["task"]), PRESETS[name].get("max_new_tokens")
    elif name in available():
        spec, mnt = {"name": name, **CLI_DEFAULTS}, None
    else:
        raise ParamError(f"unknown task {name!r}; presets: {', '.join(PRESETS)}; or any reasoning-gym task "
                         "(`rlbook tasks` lists them)")
    for text in overrides:
        key, value = P.parse_override(text)
        key = key.removeprefix("task.")
        if key in ("max_new_tokens", "train.max_new_tokens"):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ParamError(f"max_new_tokens={value!r} must be an integer >= 1")
            mnt = value
        else:
            P.set_dotted(spec, key, value)
    return spec, mnt


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _lengths(stats: dict[str, Any]) -> str:
    n = stats["length"]
    return (f"length mean {n['mean']:.1f} p10/p50/p90 {n['p10']:.0f}/{n['p50']:.0f}/{n['p90']:.0f} max {n['max']:.0f}, "
            f"truncated {_pct(stats['truncation_rate'])}, format {_pct(stats['format_rate'])}, "
            f"answer found {_pct(stats['extractable_rate'])}")


def format_report(res: dict[str, Any]) -> str:
    """A probe result as a few lines of text (what ``rlbook tasks --probe`` prints)."""
    t, g = res["task"], res["greedy"]
    lines = [f"task {t['name']} config={json.dumps(t['config'])} answer_format={t['answer_format']} "
             f"max_new_tokens={res['max_new_tokens']} (model {res['model']}, {res['seconds']:.0f} s)",
             f"  instruction: {t['instruction']!r}",
             f"greedy, {g['n']} held-out problems: accuracy {_pct(g['accuracy'])}; {_lengths(g)}"]
    s = res.get("sampled")
    if s is not None:
        lines += [f"sampled, {s['n_prompts']} train prompts x {s['group_size']} at T={s['temperature']}: accuracy "
                  f"{_pct(s['accuracy'])}, mixed groups {_pct(s['mixed_share'])} (all wrong "
                  f"{_pct(s['all_wrong_share'])}, all right {_pct(s['all_correct_share'])}); {_lengths(s)}",
                  "  prompts by #correct of G: " + " ".join(f"{k}:{n}" for k, n in enumerate(s["histogram"]))]
    for part, groups in (res.get("by_group") or {}).items():
        lines.append(f"{part} by source and difficulty: "
                     + "; ".join(f"{k} {_pct(v['mean'])} (n={v['n']})" for k, v in groups.items()))
    for ex in g.get("examples", [])[:2]:
        lines.append(f"  e.g. {ex['question'][-60:]!r} -> {ex['completion'][:100]!r} (answer {ex['answer']})")
    if res["warning"]:
        lines.append(res["warning"])
    elif s is not None:
        lines.append(f"GRPO gets signal here: {_pct(s['mixed_share'])} of the groups are mixed.")
    else:
        lines.append("Greedy accuracy is neither 0% nor 100%; sample (--prompts N) to see how many groups are mixed.")
    return "\n".join(lines)


def load_results(path: str | Path) -> list[dict[str, Any]]:
    """Probe results saved one JSON object per line (``rlbook tasks --probe ... --save FILE``)."""
    p = Path(path)
    if not p.is_file():
        return []
    return [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]


def save_result(res: dict[str, Any], path: str | Path) -> None:
    """Append ``res`` (without its completions) as one JSON line."""
    slim = {k: v for k, v in res.items()}
    for part in ("greedy", "sampled"):
        if part in slim:
            slim[part] = {k: v for k, v in slim[part].items() if k != "completions"}
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(slim) + "\n")


def _config_text(res: dict[str, Any]) -> str:
    t = res["task"]
    cfg = ", ".join(f"{k}={v}" for k, v in t["config"].items()) if t["name"] != "composite" else "; ".join(
        f"{d['name']}×{d.get('weight', 1)}({', '.join(f'{k}={v}' for k, v in (d.get('config') or {}).items())})"
        for d in t["config"].get("datasets", []))
    extra = "" if t["instruction"] in ("Reply with the answer only.", "Put the final answer between <answer> and </answer>.") \
        else f", instruction “{t['instruction'][:40]}…”"
    if t.get("system_prompt", TaskSpec.system_prompt) != TaskSpec.system_prompt:
        extra += f", system prompt “{str(t.get('system_prompt'))[:30]}…”"
    return f"{t['name']}({cfg}){extra}, {t['answer_format']}, {res['max_new_tokens']} tok"


def _len_cell(stats: dict[str, Any]) -> str:
    n = stats["length"]
    return f"{n['mean']:.0f} ({n['p10']:.0f}/{n['p50']:.0f}/{n['p90']:.0f}, {n['max']:.0f})"


def markdown_table(results: list[dict[str, Any]]) -> str:
    """One Markdown row per probe result (the tables of docs/TASKS.md are made by this, not typed).

    Two-part cells read ``greedy / sampled``.
    """
    cols = ["preset", "configuration", "n greedy", "greedy acc", "sampled acc", "mixed groups",
            "#correct of G: prompts", "greedy length mean (p10/p50/p90, max)", "sampled length",
            "truncated", "format", "answer found", "date", "s"]
    rows = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in results:
        g, s = r["greedy"], r.get("sampled")
        both = [g] + ([s] if s else [])
        cells = [r.get("preset") or "-", _config_text(r), str(g["n"]), _pct(g["accuracy"]),
                 _pct(s["accuracy"]) if s else "-",
                 f"{_pct(s['mixed_share'])} of {s['n_prompts']}x{s['group_size']}"
                 + (f" at T={s['temperature']}" if s["temperature"] != 1.0 else "") if s else "-",
                 " ".join(f"{k}:{n}" for k, n in enumerate(s["histogram"])) if s else "-",
                 _len_cell(g), _len_cell(s) if s else "-", *(" / ".join(_pct(x[key]) for x in both)
                                               for key in ("truncation_rate", "format_rate", "extractable_rate")), r["date"][:10], f"{r['seconds']:.0f}"]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


RESULTS_FILE = "docs/tasks_probe.jsonl"  # the measurements docs/TASKS.md shows, one probe result per line


def preset_names() -> list[str]:
    from rlbook.data.tasks import PRESETS

    return list(PRESETS)


def list_text(results: str | Path | None = None) -> str:
    """What ``rlbook tasks`` prints: presets with their latest saved measurement, then every reasoning-gym task."""
    import textwrap

    from rlbook.data.tasks import PRESETS, SUITE, available

    last = {r["preset"]: r for r in load_results(results) if r.get("preset")} if results else {}
    lines = ["Presets (rlbook tasks --probe NAME; in a notebook: task=rlbook.data.tasks.preset(NAME)['task']):"]
    for name, p in PRESETS.items():
        r = last.get(name)
        measured = "not measured"
        if r is not None:
            measured = f"greedy {_pct(r['greedy']['accuracy'])}"
            if r.get("sampled"):
                t = r["sampled"]["temperature"]
                measured += f", mixed groups {_pct(r['sampled']['mixed_share'])}" + (f" at T={t}" if t != 1.0 else "")
            measured += f" ({r['date'][:10]})"
        suite = " [suite]" if name in SUITE else ""
        lines.append(f"  {name:<16} {p['task']['name']:<16} {p.get('max_new_tokens', 32):>4} tok  {measured}{suite}")
        lines.append(f"  {'':<16} {p['about']}")
    names = available()
    lines.append(f"\nreasoning-gym tasks ({len(names)}; rlbook tasks --probe NAME -p config.KEY=VALUE):")
    lines += textwrap.wrap(" ".join(names), width=100, initial_indent="  ", subsequent_indent="  ")
    return "\n".join(lines)


if __name__ == "__main__":  # python -m rlbook.analysis.probe [FILE]: the Markdown table of saved probe results
    import sys

    print(markdown_table(load_results(sys.argv[1] if len(sys.argv) > 1 else RESULTS_FILE)))
