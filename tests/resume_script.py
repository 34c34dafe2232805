"""A tiny-model training run with checkpoints, for ``tests/test_resume.py`` (run as a subprocess).

``python tests/resume_script.py RUN_DIR [--steps N] [--sleep S]`` trains the tiny random Llama of
``tests/conftest.py`` with LoRA (dropout on), a stateful estimator (``single_stream``), a KL term and
periodic evaluation, checkpointing every step into ``RUN_DIR/checkpoints``; a second call with the same
``RUN_DIR`` resumes.  At the end it writes ``RUN_DIR/adapter.safetensors`` and ``RUN_DIR/history.json``.
``--sleep`` pauses after each step so that a test can kill the process between steps or mid-write.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))

TASK = {"name": "chain_sum", "config": {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1},
        "train_size": 24, "eval_size": 4, "system_prompt": None}
CONFIG = {"prompts_per_step": 2, "group_size": 4, "max_new_tokens": 6, "micro_batch_size": 3, "gen_batch_size": 8,
          "rewards": [{"name": "lowercase_share"}], "eval_every": 3, "eval_size": 4, "eval_pass_k": 2,
          "estimator": "single_stream", "kl_coef": 0.05, "lr": 1e-2, "checkpoint_every": 1, "seed": 3}
# ``--variant knapsack``: a stateful sampler that also sets each prompt's rollout budget (Knapsack RL) over a pool
# small enough to be revisited, so the per-prompt success state decides budgets after a resume
VARIANTS = {
    "default": ({}, {}),
    "knapsack": ({"train_size": 6}, {"estimator": "grpo", "sampler": "knapsack", "group_size": 8,
                                     "sampler_kwargs": {"n": 4, "min_n": 1, "max_n": 8, "min_buffer_length": 4,
                                                        "success_threshold": 0.25},
                                     "phases": [{"name": "adv_clip"}]}),
}


def build_trainer(steps: int, metrics_path: Path, checkpoint_dir: Path, sleep: float = 0.0,
                  variant: str = "default") -> Any:
    """The tiny trainer (also used by the fixture notebook tests/fixtures/resume_root/notebooks/train.ipynb)."""
    from conftest import SPECIALS, char_tokenizer
    from rlbook.data.tasks import make_task
    from rlbook.mechanisms import rewards
    from rlbook.policy.models import tiny_llama, wrap_lora
    from rlbook.training.trainer import Trainer

    if "lowercase_share" not in rewards.available():
        @rewards.register("lowercase_share")
        def _lower(completions: list[str], problems: list, *, task: object) -> list[float]:
            return [sum(ch.islower() for ch in c) / 8 for c in completions]

    torch.set_num_threads(1)
    model = wrap_lora(tiny_llama(vocab_size=len(SPECIALS) + 95, seed=0, init_std=0.2),
                      {"r": 4, "alpha": 8, "dropout": 0.1}, seed=0)
    task, train = VARIANTS[variant]
    trainer = Trainer(model, char_tokenizer(), make_task({**TASK, **task}), {**CONFIG, **train, "steps": steps},
                      metrics_path=metrics_path, progress=False, checkpoint_dir=checkpoint_dir)
    if sleep:
        step = trainer.step

        def slow_step() -> dict:
            m = step()
            time.sleep(sleep)
            return m

        trainer.step = slow_step  # type: ignore[method-assign]
    return trainer


def main() -> None:
    from rlbook.training import checkpoint

    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--sleep", type=float, default=0.0)
    ap.add_argument("--variant", default="default", choices=sorted(VARIANTS))
    args = ap.parse_args()
    trainer = build_trainer(args.steps, args.run_dir / "metrics.csv", args.run_dir / "checkpoints", args.sleep,
                            args.variant)
    history = trainer.fit()
    from safetensors.torch import save_file

    save_file(checkpoint.trainable_state(trainer), str(args.run_dir / "adapter.safetensors"))
    (args.run_dir / "history.json").write_text(json.dumps({"resumed_from_step": trainer.resumed_from_step,
                                                           "history": history}))


if __name__ == "__main__":
    main()
