"""Pilot of the gradient-variance measurement (issue 21, item 5): what one batch costs on the real adapter, and how
many batches the claim "BNPO's gradient has a lower relative variance than GRPO's" needs.

Builds the notebook's first method table (``params/<notebook>.yaml`` under ``--profile``), puts a fresh LoRA adapter of
seed 0 on the real model (the base checkpoint of ``rlbook.analysis.measure.gradient_variance``) and draws
``--batches`` batches of ``grad.prompts`` prompts x ``group_size`` completions through
``rlbook.analysis.measure.batch_gradients``, the function the notebook's measurement calls: one generation, one
forward, one backward per estimator.  Per batch it records the wall seconds and this process's CPU seconds (with one
thread the CPU seconds are the work, whatever else the machine runs).

Then, per estimator, the jackknife ``log R`` and its standard error over the pilot's batches
(``measure.relative_variance``), and for each estimator against ``--baseline`` the standard deviation of the paired
per-batch pseudo-value differences (the claim's unit is the batch, paired across estimators): the batches that give
80% power (one-sided 0.025) against a relative-variance reduction of ``--effect`` (default 21%: last session's
4.12 vs 3.93 of the old, saturated statistic is a true 28 vs 22), and the cost of the notebook's ``grad.n_batches``.

    OMP_NUM_THREADS=1 python benchmarks/grad_variance_pilot.py --notebook bnpo --profile cpu --batches 16
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
import types


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--notebook", default="bnpo")
    p.add_argument("--profile", default="cpu")
    p.add_argument("--batches", type=int, default=16, help="pilot batches (>= 3)")
    p.add_argument("--baseline", default="GRPO", help="the method label the others are paired with")
    p.add_argument("--effect", type=float, default=0.21, help="relative-variance reduction to detect (0.21 = 21%%)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default="", help="also write the results here")
    a = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import numpy as np
    import torch
    from rlbook.analysis import measure
    from rlbook.data.tasks import make_task
    from rlbook.training import params as P
    from rlbook.training.experiments import _adapter, cache_root, default_model_factory, plan
    from rlbook.training.trainer import Trainer

    torch.set_num_threads(a.threads)
    resolved = P.resolve(a.notebook, a.profile, None, [])
    specs = next(iter(plan(resolved).values()))
    ests = measure.study_estimators(types.SimpleNamespace(specs=specs))
    grad = dict(resolved.get("grad", {}))
    prompts = int(grad.get("prompts", 4))
    spec = next(s for s in specs if s.label == a.baseline)
    base, tok = default_model_factory(spec, cache_root())()
    cfg = spec.resolved(0)
    walls, cpus = [], []
    grads: dict[str, list[torch.Tensor]] = {label: [] for label in ests}
    with _adapter(base, cfg["lora"], 0) as model:
        trainer = Trainer(model, tok, make_task(spec.task_spec()), spec.train_config(0), progress=False)
        rng = np.random.default_rng([0, 4])
        torch.manual_seed(int(rng.integers(2**31)))
        for b in range(a.batches):
            indices = [int(i) for i in rng.choice(len(trainer.task.train), size=prompts, replace=False)]
            w0, c0 = time.perf_counter(), time.process_time()
            for label, g in measure.batch_gradients(trainer, indices, ests).items():
                grads[label].append(g)
            walls.append(time.perf_counter() - w0)
            cpus.append(time.process_time() - c0)
            print(f"batch {b + 1}/{a.batches}: {walls[-1]:.1f} s wall, {cpus[-1]:.1f} s CPU", flush=True)
    stats = {label: measure.relative_variance(torch.stack(gs)) for label, gs in grads.items()}
    target = abs(math.log(1.0 - a.effect))
    z = 1.959964 + 0.841621  # one-sided 0.025, 80% power
    n_grad = int(grad.get("n_batches", 0))
    cpu_batch = statistics.median(cpus[1:] if len(cpus) > 1 else cpus)  # the first batch warms caches
    out = {"notebook": a.notebook, "profile": a.profile, "threads": a.threads, "batches": a.batches,
           "prompts": prompts, "group_size": trainer.cfg.group_size, "estimators": list(ests),
           "wall_s_per_batch_median": round(statistics.median(walls), 2),
           "cpu_s_per_batch_median": round(cpu_batch, 2),
           "notebook_n_batches": n_grad,
           "notebook_cpu_min_at_n_batches": round(n_grad * cpu_batch / 60, 1),
           "per_estimator": {k: {"rel_var": round(v["rel_var"], 3), "log_r": round(v["log_r"], 3),
                                 "log_r_se": round(v["log_r_se"], 3)} for k, v in stats.items()},
           "paired": {}}
    for label in ests:
        if label == a.baseline:
            continue
        d = stats[label]["pseudo"] - stats[a.baseline]["pseudo"]
        d = d[np.isfinite(d)]
        sd = float(np.std(d, ddof=1))
        need = math.ceil((z * sd / target) ** 2)
        out["paired"][f"{label} - {a.baseline}"] = {
            "mean_log_ratio": round(float(d.mean()), 3), "sd_per_batch": round(sd, 3),
            "mde_log_at_n_batches": round(z * sd / math.sqrt(n_grad), 3) if n_grad else None,
            "batches_for_80pct_power": need, "cpu_min_for_those": round(need * cpu_batch / 60, 1)}
    print(json.dumps(out, indent=1))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
