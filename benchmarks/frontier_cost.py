"""What `make frontier` costs: CPU seconds per training step and per held-out problem of every length method.

Resolves ``params/efficiency.yaml`` at ``--profile`` (the family's shared settings: model, task, LoRA, batch,
128 new tokens), takes every method it trains or reuses (``methods`` and ``reuse``), and trains each for
``--steps`` steps, one seed, with ``--eval-size`` held-out problems, into a temporary run cache (never the real
one: the step count differs, so nothing here would be reused).  The model is loaded once.  For each method it
prints one JSON line: the training steps' wall seconds (``step_s`` of the metrics), the held-out evaluation's wall
seconds per problem (the run's wall time minus its steps), the process CPU seconds of the whole run, and from them
the CPU seconds per step and per problem (wall split in the same proportion as the CPU time).  The first steps
are the dearest (length methods shorten the answers later), so ``steps x s/step`` bounds a run from above.

    OMP_NUM_THREADS=1 python benchmarks/frontier_cost.py --steps 1 --eval-size 20 --json frontier_cost.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--profile", default="cpu")
    p.add_argument("--steps", type=int, default=1, help="training steps per method")
    p.add_argument("--eval-size", type=int, default=20, help="held-out problems per run")
    p.add_argument("--only", nargs="*", default=[], help="these method labels only")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default="", help="also write the rows here")
    a = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import pandas as pd
    import torch
    from rlbook.training import experiments
    from rlbook.training import params as rparams

    torch.set_num_threads(a.threads)
    prm = rparams.resolve("efficiency", a.profile)
    methods = {**prm["methods"], **prm["reuse"]}
    if a.only:
        methods = {k: v for k, v in methods.items() if k in a.only}
    base = {k: prm[k] for k in experiments.SPEC_KEYS if k in prm}
    base["train"] = {**base["train"], "steps": a.steps}
    base["eval_size"] = a.eval_size
    full_eval = int(prm["eval_size"])
    specs = experiments.make_specs(methods, base)
    model = experiments.default_model_factory(specs[0])()
    rows = []
    with tempfile.TemporaryDirectory(prefix="frontier-cost-") as cache:
        experiments._base_eval(specs[0], Path(cache), *model, force=False)  # shared by every method, not timed
        for spec in specs:
            c0, w0 = time.process_time(), time.perf_counter()
            res = experiments.sweep([spec], [0], cache, model_factory=lambda: model, progress=False)
            cpu, wall = time.process_time() - c0, time.perf_counter() - w0
            step_wall = float(res.final["train_seconds"].iloc[0])
            share = cpu / wall if wall > 0 else 1.0
            per_step, per_problem = share * step_wall / a.steps, share * (wall - step_wall) / a.eval_size
            row = {"method": spec.label, "steps": a.steps, "eval_size": a.eval_size, "wall_s": round(wall, 1),
                   "cpu_s": round(cpu, 1), "step_wall_s": round(step_wall, 1), "cpu_s_per_step": round(per_step, 1),
                   "cpu_s_per_problem": round(per_problem, 2),
                   "tokens_per_step": float(res.metrics["gen_tokens"].mean()
                                            + res.metrics.get("extra_gen_tokens", pd.Series([0.0])).fillna(0).mean()),
                   "cpu_s_per_seed_estimate": round(int(prm["train"]["steps"]) * per_step + full_eval * per_problem)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    total = sum(r["cpu_s_per_seed_estimate"] for r in rows) * int(prm["seeds"])
    summary = {"profile": a.profile, "seeds": int(prm["seeds"]), "methods": len(rows),
               "cpu_s_all_methods_estimate": total, "rows": rows}
    print(json.dumps({k: v for k, v in summary.items() if k != "rows"}))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(summary, f, indent=1)


if __name__ == "__main__":
    main()
