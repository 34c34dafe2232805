"""What common random numbers cost in generation: the keyed exponential race against ``torch.multinomial``.

Two measurements, alternating the two samplers repeat by repeat so a busy machine's drift hits both alike:

1. ``pick``: one sampling decision for B rows over the real vocabulary (``rlbook.policy.generation._pick`` with and
   without noise keys, on random logits): milliseconds per decode step;
2. ``generate``: ``rlbook.policy.generation.sample_groups`` on the embedded model (P prompts x G samples, the same
   prompts), with and without noise keys: milliseconds per generated token (every row decodes to the limit:
   EOS is masked so both sides do the same work).

    OMP_NUM_THREADS=1 python benchmarks/sampling_noise.py --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--rows", type=int, default=64, help="B rows of the pick benchmark")
    p.add_argument("--prompts", type=int, default=4)
    p.add_argument("--group-size", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--skip-generate", action="store_true")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from rlbook.data.tasks import make_task, preset
    from rlbook.policy.generation import _pick, left_pad, noise_keys, prompt_ids, sample_groups
    from rlbook.policy.models import load_policy

    torch.set_num_threads(a.threads)
    model, tok = load_policy(lora=None)
    model.eval()
    V = model.get_output_embeddings().weight.shape[0]
    logits = torch.randn(a.rows, V) * 3
    keys = noise_keys([(0, 0, 0, j, 0) for j in range(a.rows)])
    pick: dict[str, list[float]] = {"multinomial": [], "keyed": []}
    for _ in range(a.repeats):
        for name, k in (("multinomial", None), ("keyed", keys)):
            t0 = time.perf_counter()
            for t in range(10):
                _pick(logits, True, 1.0, 1.0, k, t)
            pick[name].append((time.perf_counter() - t0) / 10 * 1000)
    out: dict[str, object] = {"pick_ms_per_step": {k: statistics.median(v) for k, v in pick.items()},
                              "pick_all": pick, "rows": a.rows, "vocab": V}
    print(json.dumps({"pick_ms_per_step": out["pick_ms_per_step"]}), flush=True)
    if not a.skip_generate:
        task = make_task(preset("arith-small")["task"])
        prompts = [prompt_ids(tok, pr.messages) for pr in task.train[: a.prompts]]
        ids, att = left_pad(prompts, tok.pad_token_id, torch.device("cpu"))
        G, n = a.group_size, a.max_new_tokens
        gkeys = noise_keys([(0, 0, 0, j, g) for j in range(a.prompts) for g in range(G)])
        gen: dict[str, list[float]] = {"multinomial": [], "keyed": []}
        for _ in range(a.repeats):
            for name, k in (("multinomial", None), ("keyed", gkeys)):
                t0 = time.perf_counter()
                comp = sample_groups(model, ids, att, G, n, [-1], tok.pad_token_id, noise_keys=k)  # no EOS: full length
                gen[name].append((time.perf_counter() - t0) * 1000 / comp.numel())
        out["generate_ms_per_token"] = {k: statistics.median(v) for k, v in gen.items()}
        out["generate_all"] = gen
        print(json.dumps({"generate_ms_per_token": out["generate_ms_per_token"]}), flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
