"""Regenerate the measured part of docs/TASKS.md from docs/tasks_probe.jsonl.

    PYTHONPATH=lib python docs/make_tasks_md.py [docs/TASKS.md] [docs/tasks_probe.jsonl]

Keeps the hand-written text before "## Chosen configurations" and rewrites everything after it, so
every number there comes from the saved probe results (rlbook tasks --probe NAME --save FILE).
"""
import sys
from pathlib import Path

from rlbook.analysis.probe import _config_text, _pct, load_results, markdown_table
from rlbook.data.tasks import SUITE

out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/TASKS.md")
jsonl = sys.argv[2] if len(sys.argv) > 2 else "docs/tasks_probe.jsonl"
MARK = "## Chosen configurations"
head = out.read_text(encoding="utf-8").split(MARK)[0] if out.is_file() else "# Tasks\n\n"
recs = load_results(jsonl)
last = {}
for r in recs:
    if r.get("preset") and (r.get("sampled") or {}).get("temperature", 1.0) == 1.0:
        last[r["preset"]] = r  # the latest temperature-1 measurement of each preset

def L(stats):
    n = stats["length"]
    return (f"mean {n['mean']:.0f}, std {n['std']:.0f}, p10/p50/p90 {n['p10']:.0f}/{n['p50']:.0f}/{n['p90']:.0f}, "
            f"max {n['max']:.0f}; truncated {_pct(stats['truncation_rate'])}")

def summary(r):
    g, s = r["greedy"], r.get("sampled")
    text = f"greedy {_pct(g['accuracy'])} of {g['n']}"
    if s:
        text += (f"; sampled {_pct(s['accuracy'])}, mixed groups {_pct(s['mixed_share'])} of {s['n_prompts']}x{s['group_size']} "
                 f"at T={s['temperature']}")
    return text

md = [head.rstrip("\n") + "\n"]
md.append(MARK + " (numbers from `docs/tasks_probe.jsonl`)\n")
md.append("**A. Default suite** (`rlbook.data.tasks.SUITE`, for `rlbook run compare -p tasks='[...]'`; each entry "
          "`rlbook.data.tasks.preset(name)['task']`):\n")
for n in SUITE:
    md.append(f"* `{n}`: {summary(last[n])} ({last[n]['date'][:10]})")
r = last["sums-reasoning"]
md.append("\n**B. Length regime** `sums-reasoning`: " + summary(r) + ".")
md.append(f"Greedy lengths (tokens): {L(r['greedy'])}.  Sampled lengths: {L(r['sampled'])}.")
lv = r.get("length_vs_correct", {})
for part, v in lv.items():
    md.append(f"* {part}: right answers average {v['mean_tokens_right']:.0f} tokens, wrong ones {v['mean_tokens_wrong']:.0f} "
              f"(correlation of length with correctness {v['corr_length_correct']:+.2f}; lengths re-tokenized from the text, without EOS).")
md.append("\nNearer the issue's example (3-4 terms) the embedded model falls below 10%:")
for x in recs:
    if "step by step" in x["task"]["instruction"] and x is not r:
        md.append(f"* {_config_text(x)}: {summary(x)}; greedy lengths {L(x['greedy'])}")
        for part, v in (x.get("length_vs_correct") or {}).items():
            if v["mean_tokens_right"] is not None:
                md.append(f"  ({part}: right {v['mean_tokens_right']:.0f} tokens, wrong {v['mean_tokens_wrong']:.0f})")
md.append("\n**C. Mixed pool** `mixed-pool` (each `Problem.meta` = `{source, source_index, difficulty}`):\n")
for x in recs:
    if x.get("preset") == "mixed-pool":
        s = x["sampled"]
        md.append(f"* {summary(x)}; prompts by number right of {s['group_size']}: "
                  + " ".join(f"{k}:{c}" for k, c in enumerate(s["histogram"]))
                  + f"; per-prompt success max {max(s['per_prompt_success']):.2f}")
        for part, groups in x.get("by_group", {}).items():
            md.append(f"  * {part}: " + "; ".join(f"{k} {_pct(v['mean'])} (n={v['n']})" for k, v in groups.items()))
r = last["sums-2digit"]
md.append(f"\n**C. Hard regime** `sums-2digit`: {summary(r)}; histogram "
          + " ".join(f"{k}:{c}" for k, c in enumerate(r["sampled"]["histogram"])) + ".")
md.append("\n**D. Step format** (`rlbook.mechanisms.steps`: `segment`, `oracle_step_labels`, `step_stats`; format = share of "
          "completions with >= 2 calc lines; step accuracy = share of calc lines equal to the running partial sum "
          "at their position; all right = completions with >= 2 calc lines, every one right):\n")
md.append("| configuration | system prompt | part | n | final accuracy | format | calc lines / completion | step accuracy | all steps right |")
md.append("|---|---|---|---|---|---|---|---|---|")
for x in recs:
    for part, st in (x.get("steps") or {}).items():
        sysp = "example in system prompt" if "Example" in (x["task"]["system_prompt"] or "") else "default"
        stats = x[part]
        n = stats.get("n") or stats["n_prompts"] * stats["group_size"]
        md.append(f"| {_config_text(x)} | {sysp} | {part} | {n} | {_pct(stats['accuracy'])} | {_pct(st['format_share'])} | "
                  f"{st['calc_steps_per_completion']:.2f} | {_pct(st['step_accuracy'])} | {_pct(st['all_steps_right'])} |")
md.append("\n## Every measurement\n")
md.append("Made by `rlbook.analysis.probe.markdown_table` from `docs/tasks_probe.jsonl` (chronological; two-part cells are "
          "greedy / sampled; lengths in tokens through the first EOS).  Rows without a preset were probes "
          "on the way to one.  Rows without a sampled part were greedy-only screens.\n")
md.append(markdown_table(recs))
out.write_text("\n".join(md) + "\n", encoding="utf-8")
