"""``rlbook export NOTEBOOK --method NAME --to trl|verl``: a notebook's method as a script or config for an engine.

The method's settings are resolved as the notebook resolves them (``params/<notebook>.yaml``, a profile,
``-p key=value`` overrides; the method is a label of the notebook's ``methods``, a preset name it uses, or any
preset of ``rlbook.mechanisms.presets.PRESETS`` applied to the notebook's base ``train``), then written as:

* ``--to trl``: one ready-to-edit Python script (``SETTINGS`` at the top) that trains the method with
  :class:`rlbook.application.integrations.trl.RlbookGRPOTrainer`; run it with ``python`` on one device or with
  ``accelerate launch`` on many GPUs (the global batch per step stays the method's).
* ``--to verl``: a folder with ``config.yaml`` (a Hydra config on top of verl's ``ppo_trainer``), ``settings.json``,
  ``prepare_data.py`` (writes the task as verl's parquet files), ``reward.py`` (verl's ``compute_score``
  running rlbook's reward functions) and ``run.sh``.  Estimator and loss are registered in verl as
  ``rlbook_method`` through ``VERL_USE_EXTERNAL_MODULES=rlbook.application.integrations.verl`` (``RLBOOK_VERL_METHOD``).

Nothing is written unless the engine carries every mechanism of the method
(:func:`rlbook.application.integrations.carry.plan`): otherwise a ParamError (``rlbook export`` exits 2) names each
mechanism it cannot carry and why.  ``-p`` overrides apply on top of the method's preset (or are refused when
the export does not use the key).  docs/SCALE_OUT.md walks from a notebook to a multi-GPU run.
"""

from __future__ import annotations

import json
import pprint
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rlbook.application.integrations import carry
from rlbook.application.integrations.carry import AGGREGATION_TO_VERL, ENGINES, KL_TO_VERL
from rlbook.core.config import ParamError
from rlbook.policy.models import TINY

__all__ = ["AGGREGATION_TO_VERL", "ENGINES", "KL_TO_VERL", "MethodSpec", "export", "method_spec", "plan", "table"]

# verl loads models with transformers / vLLM from a folder or hub id: the embedded GGUF name maps to its hub original
HUB_IDS = {"smollm2-135m-instruct": "HuggingFaceTB/SmolLM2-135M-Instruct"}
# the notebook parameters an export uses; a -p override of any other key is refused (it would change nothing)
USED_KEYS = ("model", "task", "lora", "train", "methods")


@dataclass
class MethodSpec:
    """A notebook's method, resolved: everything a training run needs."""

    notebook: str
    label: str
    profile: str | None
    model: str
    task: dict[str, Any]
    lora: dict[str, Any]
    train: dict[str, Any]  # every TrainConfig field

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", f"{self.notebook}-{self.label}".lower()).strip("-")

    def command(self, engine: str) -> str:
        method = f" --method {json.dumps(self.label)}" if self.label != self.notebook else ""
        profile = f" --profile {self.profile}" if self.profile else ""
        return f"rlbook export {self.notebook}{method} --to {engine}{profile}"


def _methods(params: dict[str, Any]) -> dict[str, Any]:
    methods = params.get("methods")
    if methods is None:
        return {}
    return dict(methods) if isinstance(methods, dict) else {str(m): m for m in methods}


def _pick(notebook: str, params: dict[str, Any], method: str | None) -> tuple[str, dict[str, Any]]:
    """(label, trainer overrides) of ``method`` in the notebook (see the module doc for the lookup order)."""
    from rlbook.application.integrations import method_names, method_train

    methods = _methods(params)
    if method is None:
        if methods:
            raise ParamError(f"notebook {notebook!r} compares methods: pass --method, one of {', '.join(methods)}")
        return notebook, {}
    for label, value in methods.items():
        if method == label or method.lower() == label.lower():
            return label, method_train(value)
    for label, value in methods.items():
        if isinstance(value, str) and value == method:
            return label, method_train(value)
    try:
        return method, method_train(method)
    except ParamError:
        known = [*methods, *method_names()]
        raise ParamError(f"method {method!r} is neither a method of {notebook!r} nor a preset; "
                         f"allowed: {', '.join(known)}") from None


def _train_overrides(overrides: list[str] | tuple[str, ...], label: str) -> list[tuple[str, Any]]:
    """The ``train.*`` overrides, to apply after the method's preset; a ParamError for an override the export
    would not use (another notebook parameter, another method's settings)."""
    from rlbook.training import params as P

    out = []
    for text in overrides:
        key, value = P.parse_override(text)
        top = key.split(".", 1)[0]
        if top not in USED_KEYS:
            raise ParamError(f"-p {key}: the export does not use {top!r} (it uses {', '.join(USED_KEYS)}); "
                             "drop the override")
        if top == "methods" and not key.startswith(f"methods.{label}"):
            raise ParamError(f"-p {key}: sets another method than the exported {label!r}; use -p train.KEY=VALUE")
        if top == "train":
            out.append((key.split(".", 1)[1], value))
    return out


def method_spec(notebook: str, method: str | None = None, profile: str | None = None,
                overrides: list[str] | tuple[str, ...] = (), params_dir: Path | None = None) -> MethodSpec:
    """Resolve ``notebook``'s ``method`` (ParamError naming the allowed notebooks / methods).

    ``overrides`` (``key=value``) apply as for ``rlbook run``, and ``train.*`` ones also on top of the method's
    preset, so ``-p train.eps_high=0.5`` wins over DAPO's 0.28 (the preset never silently wins)."""
    from rlbook.core.config import TrainConfig, build
    from rlbook.policy.models import LoraConfig
    from rlbook.training import params as P

    params = P.resolve(notebook, profile, overrides=list(overrides), params_dir=params_dir)
    if not {"model", "task", "train"} <= set(params):
        raise ParamError(f"notebook {notebook!r} trains no language model (no model / task / train parameters)")
    label, over = _pick(notebook, params, method)
    merged = {"train": {**params["train"], **over}}
    for key, value in _train_overrides(overrides, label):
        P.set_dotted(merged["train"], key, value)
    train = build(TrainConfig, merged["train"], "train").to_dict()
    lora = asdict(LoraConfig(**dict(params.get("lora") or {})))
    return MethodSpec(notebook, label, profile, str(params["model"]), dict(params["task"]), lora, train)


def export(notebook: str, method: str | None, to: str, out: str | Path | None = None, profile: str | None = None,
           overrides: list[str] | tuple[str, ...] = (), params_dir: Path | None = None) -> Path:
    """Write the script (``trl``) or config folder (``verl``) of a notebook's method; returns its path."""
    if to not in ENGINES:
        raise ParamError(f"--to {to!r} is not allowed; allowed: {', '.join(ENGINES)}")
    spec = method_spec(notebook, method, profile, overrides, params_dir)
    if to == "verl" and spec.model == TINY:
        raise ParamError(f"model {TINY!r} exists only in memory (smoke runs); verl loads a model by path or hub id: "
                         "pass -p model=smollm2-135m-instruct or a hub id")
    p = plan(spec, to)
    p.require(f"{spec.notebook} / {spec.label}")
    for note in p.notes:
        print(f"rlbook: {to} carries {note}")
    if to == "trl":
        path = Path(out) if out else Path("exports") / f"{spec.slug}-trl.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(trl_script(spec))
        return path
    folder = Path(out) if out else Path("exports") / f"{spec.slug}-verl"
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in verl_files(spec).items():
        (folder / name).write_text(text)
    (folder / "run.sh").chmod(0o755)
    return folder


def plan(spec: MethodSpec, engine: str) -> carry.Plan:
    """What ``engine`` carries of a resolved method (:func:`rlbook.application.integrations.carry.plan`)."""
    return carry.plan(spec.train, engine)


def notebook_methods(params_dir: Path | None = None) -> list[tuple[str, str | None]]:
    """Every (notebook, method label) of the notebooks that train a language model (``methods`` of their
    defaults; ``None`` for a notebook without methods)."""
    from rlbook.training import params as P

    root = P.find_root()
    out: list[tuple[str, str | None]] = []
    for nb in P.available(root / "notebooks"):
        params = P.resolve(nb, None, params_dir=params_dir)
        if {"model", "task", "train"} <= set(params):
            out.extend((nb, label) for label in (_methods(params) or [None]))
    return out


def table(params_dir: Path | None = None) -> str:
    """The Markdown table of docs/SCALE_OUT.md: for every notebook method, what TRL and verl carry."""
    lines = ["| notebook | method | TRL | verl |", "|---|---|---|---|"]
    for nb, label in notebook_methods(params_dir):
        spec = method_spec(nb, label, params_dir=params_dir)
        cells = [carry.summary(carry.plan(spec.train, e)) for e in ENGINES]
        lines.append(f"| {nb} | {spec.label} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------------
# TRL
# ---------------------------------------------------------------------------------------------------------

TRL_TEMPLATE = '''#!/usr/bin/env python
"""{title}: {estimator} advantages, {loss} loss, {aggregation} aggregation, trained by TRL.

Written by `{command}`.
SETTINGS below are the method's settings (params/{notebook}.yaml); edit them freely.

    python {file}                                # one GPU, or the CPU
    accelerate launch --num_processes 8 {file}   # 8 GPUs: the same global batch per step, split over them
    python {file} --model PATH --max-steps 1     # another model (hub id or local folder), one step

TRL's GRPOTrainer runs the loop (generation, vLLM, accelerate / DeepSpeed / FSDP, logging, checkpoints);
rlbook.application.integrations.trl.RlbookGRPOTrainer computes the advantages with rlbook's estimator and the loss with
rlbook's loss and aggregation, so the method means what it means in the notebook.
"""

from __future__ import annotations

import argparse
import os

SETTINGS = {settings}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=SETTINGS["model"], help="hub id, local folder or smollm2-135m-instruct")
    parser.add_argument("--output-dir", default=SETTINGS["output_dir"])
    parser.add_argument("--max-steps", type=int, default=None, help="override train.steps (rlbook steps)")
    parser.add_argument("--report-to", default="none", help="wandb, tensorboard, ... (TRL's report_to)")
    args = parser.parse_args(argv)

    import torch
    from peft import LoraConfig
    from rlbook.application.integrations import trl as rlbook_trl
    from rlbook.policy.models import load_policy
    from rlbook.data.tasks import make_task
    from trl import GRPOConfig

    train = dict(SETTINGS["train"])
    if args.max_steps is not None:
        train["steps"] = args.max_steps
    # max_steps = steps x inner_epochs (TRL counts optimizer steps), eval / save steps at the notebook's settings
    grpo = rlbook_trl.grpo_config_kwargs(train, num_processes=int(os.environ.get("WORLD_SIZE", "1")))
    cuda = torch.cuda.is_available()
    model, tokenizer = load_policy(args.model, device="cpu", dtype=torch.bfloat16 if cuda else torch.float32)
    task = make_task(SETTINGS["task"])
    reward_funcs, reward_weights = rlbook_trl.reward_functions(train["rewards"], task, grpo["max_completion_length"],
                                                               grpo["num_generations"], tokenizer,
                                                               inner_epochs=train["inner_epochs"])
    config = GRPOConfig(output_dir=args.output_dir, reward_weights=reward_weights, bf16=cuda, use_cpu=not cuda,
                        logging_steps=1, report_to=args.report_to, **grpo)
    lora = SETTINGS["lora"]
    peft_config = None
    if lora["r"] > 0:  # the reference policy is the base model (the adapter disabled), as in rlbook
        peft_config = LoraConfig(r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"],
                                 target_modules=list(lora["target_modules"]), task_type="CAUSAL_LM")
    eval_dataset = rlbook_trl.task_dataset(task, "eval") if train["eval_every"] else None
    trainer = rlbook_trl.RlbookGRPOTrainer(
        model, reward_funcs, config, train_dataset=rlbook_trl.task_dataset(task), eval_dataset=eval_dataset,
        processing_class=tokenizer, peft_config=peft_config, task=task, **rlbook_trl.trainer_kwargs(train),
    )
    trainer.train()
    trainer.save_model(args.output_dir)


if __name__ == "__main__":
    main()
'''


def trl_script(spec: MethodSpec) -> str:
    """The TRL training script of a resolved method."""
    settings = {"model": spec.model, "task": spec.task, "lora": spec.lora, "train": spec.train,
                "output_dir": f"outputs/trl/{spec.slug}"}
    t = spec.train
    return TRL_TEMPLATE.format(
        title=f"{spec.notebook} / {spec.label} with TRL", estimator=t["estimator"], loss=t["loss"],
        aggregation=t["aggregation"], command=spec.command("trl"), notebook=spec.notebook,
        file=f"{spec.slug}-trl.py", settings=pprint.pformat(settings, sort_dicts=False, width=100),
    )


# ---------------------------------------------------------------------------------------------------------
# verl
# ---------------------------------------------------------------------------------------------------------


def _verl_reward(train: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(rewards computed in reward.py, verl reward-manager settings): DAPO's ``overlong`` is verl's own.
    What reward.py cannot compute is refused by :func:`plan` before this runs."""
    kept, manager = [], {}
    for r in train["rewards"]:
        if r["name"] == "overlong":  # verl's DAPO reward manager applies the same soft overlong punishment
            kw = dict(r.get("kwargs") or {})
            cache = int(kw.get("cache") or max(1, round(kw.get("cache_frac", 0.25) * train["max_new_tokens"])))
            manager = {"reward_manager": {"name": "dapo"},
                       "reward_kwargs": {"max_resp_len": train["max_new_tokens"],
                                         "overlong_buffer_cfg": {"enable": True, "len": cache,
                                                                 "penalty_factor": float(r.get("weight", 1.0)),
                                                                 "log": True}}}
            continue
        kept.append(r)
    return kept, manager


def verl_config(spec: MethodSpec) -> dict[str, Any]:
    """verl's ``ppo_trainer`` overrides for the method (see docs/SCALE_OUT.md for each mapping).

    Paths (data, reward.py, checkpoints) are relative to the export folder here; run.sh passes them as
    absolute paths (``RLBOOK_DATA_DIR`` / ``RLBOOK_CKPT_DIR`` to put them on a filesystem every node sees)."""
    t = spec.train
    micro = min(t["micro_batch_size"], t["prompts_per_step"] * t["group_size"])
    _, reward_manager = _verl_reward(t)
    actor = {
        "optim": {"lr": t["lr"], "weight_decay": t["weight_decay"], "betas": list(t["betas"]),
                  "clip_grad": t["max_grad_norm"] if t["max_grad_norm"] > 0 else 1e9},
        "ppo_mini_batch_size": t["prompts_per_step"],  # one optimizer step per batch and epoch, as rlbook
        "ppo_micro_batch_size_per_gpu": micro,
        "ppo_epochs": t["inner_epochs"],
        "clip_ratio_low": t["eps_low"], "clip_ratio_high": t["eps_high"],
        "loss_agg_mode": AGGREGATION_TO_VERL[t["aggregation"]],
        "loss_scale_factor": t["max_new_tokens"],  # Dr. GRPO's constant normaliser = max_new_tokens
        "use_kl_loss": t["kl_coef"] > 0, "kl_loss_coef": t["kl_coef"], "kl_loss_type": KL_TO_VERL[t["kl_kind"]],
        "entropy_coeff": 0, "policy_loss": {"loss_mode": "rlbook_method"},
    }
    model: dict[str, Any] = {"path": HUB_IDS.get(spec.model, spec.model), "use_remove_padding": True}
    if spec.lora["r"] > 0:
        model.update(lora_rank=spec.lora["r"], lora_alpha=spec.lora["alpha"],
                     target_modules=list(spec.lora["target_modules"]))
    method = {k: t[k] for k in ("estimator", "estimator_kwargs", "loss", "loss_kwargs")}
    return {
        "hydra": {"searchpath": ["pkg://verl.trainer.config"]},
        "defaults": ["ppo_trainer", "_self_"],
        "data": {"train_files": "data/train.parquet", "val_files": "data/val.parquet",
                 "train_batch_size": t["prompts_per_step"], "max_prompt_length": 1024,
                 "max_response_length": t["max_new_tokens"], "filter_overlong_prompts": True},
        "algorithm": {"adv_estimator": "rlbook_method", "use_kl_in_reward": False,
                      "filter_groups": _filter_groups(t)},
        "actor_rollout_ref": {
            "model": model, "actor": actor,
            "rollout": {"name": "vllm", "n": t["group_size"], "temperature": t["temperature"], "top_p": t["top_p"],
                        "tensor_model_parallel_size": 1, "gpu_memory_utilization": 0.5,
                        "log_prob_micro_batch_size_per_gpu": micro,
                        # rlbook's held-out evaluation is greedy pass@1
                        "val_kwargs": {"do_sample": False, "temperature": 0, "n": 1}},
            "ref": {"log_prob_micro_batch_size_per_gpu": micro},
        },
        "reward": {"custom_reward_function": {"path": "reward.py", "name": "compute_score"}, **reward_manager},
        "trainer": {"total_training_steps": t["steps"], "total_epochs": 1000, "n_gpus_per_node": 1, "nnodes": 1,
                    "logger": ["console"], "project_name": "rlbook", "experiment_name": spec.slug,
                    "val_before_train": bool(t["eval_every"]), "test_freq": t["eval_every"] or -1,
                    # checkpoint_every steps; 0 = rlbook's "only at the end" (verl saves at the last step too)
                    "save_freq": t["checkpoint_every"] or t["steps"], "default_local_dir": "checkpoints"},
        "ray_kwargs": {"ray_init": {"runtime_env": {"env_vars": {
            "VERL_USE_EXTERNAL_MODULES": "rlbook.application.integrations.verl",
            "RLBOOK_VERL_METHOD": json.dumps(method, sort_keys=True)}}}},
    }


PREPARE_DATA = '''"""Write this method's task (settings.json) as verl's parquet files: data/train.parquet, data/val.parquet."""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def rows(task, split: str, eval_size: int) -> list[dict]:
    # rlbook evaluates on the first train.eval_size held-out problems (rlbook.training.trainer.Trainer.evaluate)
    problems = task.train if split == "train" else task.eval[:eval_size]
    return [{"data_source": f"rlbook/{task.spec.name}", "prompt": p.messages, "ability": "reasoning",
             "reward_model": {"style": "rule", "ground_truth": p.answer},
             "extra_info": {"split": split, "index": p.index}} for p in problems]


def main(out: str | None = None) -> Path:
    import pandas as pd
    from rlbook.data.tasks import make_task

    settings = json.loads((HERE / "settings.json").read_text())
    task = make_task(settings["task"])
    folder = Path(out) if out else HERE / "data"
    folder.mkdir(parents=True, exist_ok=True)
    size = settings["train"]["eval_size"]
    for split, name in (("train", "train.parquet"), ("eval", "val.parquet")):
        pd.DataFrame(rows(task, split, size)).to_parquet(folder / name)
    print(f"wrote {len(task.train)} training and {len(task.eval[:size])} held-out problems to {folder}")
    return folder


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
'''

REWARD = '''"""verl's compute_score for this method: rlbook's reward functions (settings.json) on the task's problems.

verl calls compute_score(data_source, solution_str, ground_truth, extra_info) once per response; extra_info
holds the problem's split and index (prepare_data.py).  The score is sum(weight * reward) over
settings["verl_rewards"], each reward given the context it names (the task, the verifier's verdict); DAPO's
overlong punishment, when the method uses it, is verl's DAPO reward manager (config.yaml), which applies the
same formula with the response length in tokens.  "acc" (the verdict) is DAPO's filter metric.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

HERE = Path(__file__).resolve().parent


@lru_cache(maxsize=1)
def _setup():
    from rlbook.mechanisms import components  # noqa: F401  (registers every family's rewards)
    from rlbook.mechanisms.rewards import REWARDS
    from rlbook.data.tasks import make_task

    settings = json.loads((HERE / "settings.json").read_text())
    task = make_task(settings["task"])
    funcs = [(r["name"], float(r.get("weight", 1.0)), dict(r.get("kwargs") or {})) for r in settings["verl_rewards"]]
    return task, funcs, REWARDS


def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs) -> dict:
    task, funcs, registry = _setup()
    info = extra_info or {}
    problem = (task.train if info.get("split", "train") == "train" else task.eval)[int(info["index"])]
    correct = task.score(problem, solution_str) >= 1.0
    context = {"task": task, "correct": [correct]}
    score = sum(weight * registry.call(name, [solution_str], [problem], context=context, **kw)[0]
                for name, weight, kw in funcs)
    return {"score": float(score), "acc": float(correct)}
'''

RUN = """#!/usr/bin/env bash
# {command}
# Needs verl with vLLM and rlbook on every node (docs/SCALE_OUT.md, "Install"):
#   pip install -r constraints/verl-vllm.txt && pip install --no-deps -e <rlbook>
# Edit config.yaml (trainer.n_gpus_per_node, nnodes, rollout.tensor_model_parallel_size, ...) or pass
# Hydra overrides: bash run.sh trainer.n_gpus_per_node=8 trainer.nnodes=2
# Paths are made absolute here.  On several nodes put them where every node sees them:
#   RLBOOK_DATA_DIR=/shared/data RLBOOK_CKPT_DIR=/shared/ckpt bash run.sh trainer.nnodes=2
# (this folder, with reward.py and settings.json, must be at the same path on every node too).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
DATA_DIR="$(mkdir -p "${{RLBOOK_DATA_DIR:-$HERE/data}}" && cd "${{RLBOOK_DATA_DIR:-$HERE/data}}" && pwd)"
CKPT_DIR="${{RLBOOK_CKPT_DIR:-$HERE/checkpoints}}"
python "$HERE/prepare_data.py" "$DATA_DIR"
export VERL_USE_EXTERNAL_MODULES=rlbook.application.integrations.verl
export RLBOOK_VERL_METHOD={method}
python -m verl.trainer.main_ppo --config-path="$HERE" --config-name=config \\
    data.train_files="$DATA_DIR/train.parquet" data.val_files="$DATA_DIR/val.parquet" \\
    reward.custom_reward_function.path="$HERE/reward.py" trainer.default_local_dir="$CKPT_DIR" "$@"
"""


def verl_files(spec: MethodSpec) -> dict[str, str]:
    """The files of the verl export folder, by name."""
    import shlex

    import yaml

    config = verl_config(spec)
    kept, _ = _verl_reward(spec.train)
    settings = {"notebook": spec.notebook, "method": spec.label, "profile": spec.profile, "model": spec.model,
                "task": spec.task, "lora": spec.lora, "train": spec.train, "verl_rewards": kept}
    method = config["ray_kwargs"]["ray_init"]["runtime_env"]["env_vars"]["RLBOOK_VERL_METHOD"]
    header = (f"# verl config of {spec.notebook} / {spec.label}, written by `{spec.command('verl')}`.\n"
              "# A Hydra config on top of verl's ppo_trainer; run it with run.sh (docs/SCALE_OUT.md).\n")
    return {
        "config.yaml": header + yaml.safe_dump(config, sort_keys=False, width=110),
        "settings.json": json.dumps(settings, indent=2) + "\n",
        "prepare_data.py": PREPARE_DATA,
        "reward.py": REWARD,
        "run.sh": RUN.format(command=spec.command("verl"), method=shlex.quote(method)),
    }


def _filter_groups(t: dict[str, Any]) -> dict[str, Any]:
    """verl's ``algorithm.filter_groups`` for DAPO's dynamic sampling (:func:`plan` refuses any other filter).

    ``metric``: ``acc`` is reward.py's verdict (``reward_extra_info["acc"]``), ``reward`` verl's canonical reward
    (``rm_scores``, the overlong punishment included), as rlbook's ``metric="reward"`` filters on the total
    reward.  verl 0.9.1's replay buffer ignores ``max_num_gen_batches`` and refills until the batch is full
    (a note at export time)."""
    ds = [f for f in t["filters"] if f["name"] == "dynamic_sampling"]
    metric = (ds[0].get("kwargs") or {}).get("metric", "acc") if ds else "acc"
    return {"enable": bool(ds), "metric": metric, "max_num_gen_batches": 0}


if __name__ == "__main__":  # python -m rlbook.application.export: the table of docs/SCALE_OUT.md
    print(table(), end="")
