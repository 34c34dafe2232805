"""How rlbook's step time grows when the group size, the max new tokens and the prompts per step double.

Runs ``bench_trainer.py --only rlbook`` once per configuration (each in its own process) and prints a
markdown table of median seconds per step, split into generation and training, for planning runs:

    python benchmarks/cost_growth.py --steps 2 --json cost_growth.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
BASE = {"prompts": 8, "group_size": 8, "max_new_tokens": 32}
CONFIGS = [
    ("base (P=8, G=8, 32 tokens)", {}),
    ("G x2 (16)", {"group_size": 16}),
    ("max new tokens x2 (64)", {"max_new_tokens": 64}),
    ("P x2 (16 prompts)", {"prompts": 16}),
]


def run_one(overrides: dict[str, int], steps: int, extra: list[str]) -> dict:
    cfg = {**BASE, **overrides}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.json"
        cmd = [sys.executable, str(HERE / "bench_trainer.py"), "--only", "rlbook", "--steps", str(steps),
               "--prompts", str(cfg["prompts"]), "--group-size", str(cfg["group_size"]),
               "--max-new-tokens", str(cfg["max_new_tokens"]), "--json", str(out), *extra]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--steps", type=int, default=2, help="measured steps per configuration")
    p.add_argument("--json", type=Path, default=None)
    a, extra = p.parse_known_args(argv)
    rows = []
    for label, overrides in CONFIGS:
        res = run_one(overrides, a.steps, extra)
        s = res["rlbook"]
        rows.append({"config": label, "s_per_step": s["s_per_step_median"], "gen_s": s["gen_s_median"],
                     "train_s": s["train_s_median"], "gen_tokens_per_step": s["mean_gen_tokens_per_step"],
                     "train_tokens_per_step": s["mean_train_tokens_per_step"], "device": res["device"]})
        print(f"[cost] {label}: {s['s_per_step_median']:.1f} s/step", file=sys.stderr, flush=True)
    base = rows[0]["s_per_step"]
    print("| config | s/step | x base | generation s | training s | dominant phase | gen tok/step | trained tok/step |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        dom = "generation" if r["gen_s"] >= r["train_s"] else "training"
        print(f"| {r['config']} | {r['s_per_step']:.1f} | {r['s_per_step'] / base:.2f} | {r['gen_s']:.1f} | "
              f"{r['train_s']:.1f} | {dom} | {r['gen_tokens_per_step']:.0f} | {r['train_tokens_per_step']:.0f} |")
    if a.json:
        a.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
