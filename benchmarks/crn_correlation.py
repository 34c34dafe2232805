"""How much two arms of one seed share: GRPO vs Dr. GRPO on arith-small, per seed.

For each seed, trains GRPO and Dr. GRPO from the same fresh LoRA adapter on the same task split (the real model)
and scores both on the same held-out problems (greedy, ``rlbook.training.experiments.evaluate``).  Reports, per seed:

* ``shared_rollouts``: the share of training completions that are identical in the two arms, per step (step 1
  is always 1.0: both policies are the base model; later steps show whether the arms kept sharing their
  random numbers once their policies differed);
* ``outcome_corr``: the Pearson correlation of the two arms' final per-problem outcomes (0/1) over the held-out
  problems, and ``agree``: the share of problems with the same outcome;

and, as the reference a design without common random numbers gets, the same correlation between arms of
different seeds (``cross_seed_corr``: GRPO of seed s against Dr. GRPO of seed s + 1).  The within-seed
correlation is what shrinks the paired difference's variance: Var(a - b) = Var(a) + Var(b) - 2 Cov(a, b).
Runs on any revision with ``Trainer``, ``Trainer.roll_out`` and ``experiments.evaluate`` (before and after a change):

    OMP_NUM_THREADS=1 python benchmarks/crn_correlation.py --seeds 3 --steps 2 --eval 100 --json crn.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import numpy as np


def run_arm(base: Any, tok: Any, task: Any, method: str, seed: int, a: argparse.Namespace) -> dict[str, Any]:
    import torch
    from rlbook.mechanisms.presets import method_train
    from rlbook.policy.models import wrap_lora
    from rlbook.training.experiments import evaluate
    from rlbook.training.trainer import Trainer

    train = {**method_train(method), "seed": seed, "steps": a.steps, "prompts_per_step": a.prompts,
             "group_size": a.group_size, "max_new_tokens": a.max_new_tokens, "lr": a.lr}
    model = wrap_lora(base, {"r": 16, "alpha": 32, "dropout": 0.0}, seed=seed)
    try:
        trainer = Trainer(model, tok, task, train, progress=False)
        texts: list[list[str]] = []
        roll_out = trainer.roll_out

        def recording(indices: list[int]) -> Any:
            batch = roll_out(indices)
            texts.append(list(batch.roll.texts))
            return batch

        trainer.roll_out = recording  # type: ignore[method-assign]
        t0 = time.perf_counter()
        trainer.fit()
        ev = evaluate(trainer, a.eval, a.max_new_tokens)
        torch.cuda.empty_cache() if torch.cuda.is_available() else None
        return {"texts": texts, "correct": [bool(c) for c in ev["correct"]], "accuracy": ev["accuracy"],
                "seconds": time.perf_counter() - t0}
    finally:
        model.unload()


def corr(x: list[bool], y: list[bool]) -> float:
    a, b = np.asarray(x, float), np.asarray(y, float)
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--prompts", type=int, default=4)
    p.add_argument("--group-size", type=int, default=4)
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--eval", type=int, default=100, help="held-out problems")
    p.add_argument("--task", default="arith-small", help="an rlbook.data.tasks.PRESETS name")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default="")
    a = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from rlbook.data.tasks import make_task, preset
    from rlbook.policy.models import load_policy

    torch.set_num_threads(a.threads)
    task = make_task(preset(a.task)["task"])
    base, tok = load_policy(lora=None)
    runs = {(m, s): run_arm(base, tok, task, m, s, a) for s in range(a.seeds) for m in ("grpo", "dr_grpo")}
    rows = []
    for s in range(a.seeds):
        g, d = runs["grpo", s], runs["dr_grpo", s]
        shared = [float(np.mean([x == y for x, y in zip(tg, td, strict=True)]))
                  for tg, td in zip(g["texts"], d["texts"], strict=True)]
        row = {"seed": s, "shared_rollouts": shared, "outcome_corr": corr(g["correct"], d["correct"]),
               "agree": float(np.mean([x == y for x, y in zip(g["correct"], d["correct"], strict=True)])),
               "acc_grpo": g["accuracy"], "acc_dr_grpo": d["accuracy"],
               "cross_seed_corr": corr(g["correct"], runs["dr_grpo", (s + 1) % a.seeds]["correct"]) if a.seeds > 1
               else float("nan"), "seconds": g["seconds"] + d["seconds"]}
        rows.append(row)
        print(json.dumps(row), flush=True)
    summary = {"mean_outcome_corr": float(np.nanmean([r["outcome_corr"] for r in rows])),
               "mean_cross_seed_corr": float(np.nanmean([r["cross_seed_corr"] for r in rows])),
               "mean_agree": float(np.mean([r["agree"] for r in rows])),
               "mean_shared_rollouts_last_step": float(np.mean([r["shared_rollouts"][-1] for r in rows]))}
    print(json.dumps(summary))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"args": vars(a), "seeds": rows, "summary": summary}, f, indent=1)


if __name__ == "__main__":
    main()
