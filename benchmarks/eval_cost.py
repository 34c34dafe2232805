"""What greedy held-out evaluation costs: seconds for N problems of a task preset with the real model.

Builds a fresh LoRA trainer (the base model's behaviour) on ``rlbook.data.tasks.PRESETS[--task]``, repeats the held-out
problems until there are ``--n`` of them (arith-small has fewer than 1,000 distinct questions: the cost of N problems
does not depend on which they are), and times ``rlbook.training.experiments.evaluate`` (the one held-out evaluation the
trainer and the sweeps share) ``--repeats`` times.  Prints one JSON line per repeat (seconds, seconds per 1,000
problems, accuracy, mean length, truncated share) and the median.  Runs on any revision that has
``experiments.evaluate(trainer, n, max_new_tokens)`` (so the same script measures before and after a change):

    OMP_NUM_THREADS=1 python benchmarks/eval_cost.py --task arith-small --n 1000 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--task", default="arith-small", help="an rlbook.data.tasks.PRESETS name")
    p.add_argument("--n", type=int, default=1000, help="held-out problems per evaluation")
    p.add_argument("--max-new-tokens", type=int, default=0, help="0: the preset's")
    p.add_argument("--gen-batch-size", type=int, default=0, help="0: TrainConfig's default")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default="", help="also write the results here")
    a = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from rlbook.data.tasks import make_task, preset
    from rlbook.policy.models import load_policy
    from rlbook.training.experiments import evaluate
    from rlbook.training.trainer import Trainer

    torch.set_num_threads(a.threads)
    spec = preset(a.task)
    mnt = a.max_new_tokens or spec["max_new_tokens"]
    task = make_task(spec["task"])
    held = list(task.eval)
    task.eval = (held * (a.n // len(held) + 1))[: a.n]
    model, tok = load_policy(lora={"r": 8, "alpha": 16}, seed=0)
    train = {"max_new_tokens": mnt, **({"gen_batch_size": a.gen_batch_size} if a.gen_batch_size else {})}
    trainer = Trainer(model, tok, task, train, progress=False)
    rows = []
    for r in range(a.repeats):
        t0 = time.perf_counter()
        out = evaluate(trainer, a.n, mnt)
        s = time.perf_counter() - t0
        row = {"repeat": r, "task": a.task, "n": a.n, "max_new_tokens": mnt, "seconds": round(s, 2),
               "s_per_1000": round(s * 1000 / a.n, 2), "accuracy": out["accuracy"],
               "response_length": out["response_length"],
               "truncated": sum(out["truncated"]) / len(out["truncated"]), "distinct_problems": len(held)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    summary = {"median_s_per_1000": statistics.median(r["s_per_1000"] for r in rows), "rows": rows}
    print(json.dumps({"median_s_per_1000": summary["median_s_per_1000"]}))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(summary, f, indent=1)


if __name__ == "__main__":
    main()
