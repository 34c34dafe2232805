"""``rlbook export``: a notebook's method as a TRL script (run here for one CPU step) or a verl config folder."""

from __future__ import annotations

import importlib.util
import json
import runpy
from pathlib import Path

import pytest
import yaml
from conftest import SPECIALS
from rlbook.application import cli
from rlbook.application import export as E
from rlbook.application.export import AGGREGATION_TO_VERL, method_spec
from rlbook.core.config import ParamError
from rlbook.policy.models import tiny_llama

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    monkeypatch.setenv("RLBOOK_ROOT", str(ROOT))
    for key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):
        monkeypatch.setenv(key, "1")


def test_method_lookup_by_label_preset_or_any_preset():
    assert method_spec("rloo", "RLOO").train["estimator"] == "rloo"
    assert method_spec("rloo", "rloo").label == "RLOO"  # the preset a label uses
    ablation = method_spec("dapo", "DAPO w/o clip-higher", profile="smoke")
    t = ablation.train
    assert (t["eps_low"], t["eps_high"], t["aggregation"]) == (0.2, 0.2, "token_mean")
    assert [f["name"] for f in t["filters"]] == ["dynamic_sampling"]
    assert [r["name"] for r in t["rewards"]] == ["correct", "overlong"]
    assert (t["steps"], t["prompts_per_step"]) == (1, 2)  # the smoke profile
    assert method_spec("quickstart").train["estimator"] == "grpo"  # no methods: the notebook's own run
    assert method_spec("quickstart", "cispo").train["loss"] == "cispo"  # any preset on the notebook's base
    assert method_spec("rloo", "RLOO", overrides=["train.lr=0.001"]).train["lr"] == 0.001
    with pytest.raises(ParamError, match="allowed: GRPO, RLOO"):
        method_spec("rloo", "PPO")
    with pytest.raises(ParamError, match="pass --method"):
        method_spec("rloo")
    with pytest.raises(ParamError, match="trains no language model"):
        method_spec("estimator_lab")


def save_tiny_folder(folder: Path, tok) -> None:
    model = tiny_llama(vocab_size=len(SPECIALS) + 95)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)


def test_trl_export_runs_one_step_on_cpu(tmp_path, tok, capsys):
    script = tmp_path / "rloo-trl.py"
    code = cli.main(["export", "rloo", "--method", "RLOO", "--to", "trl", "--profile", "smoke", "--out", str(script)])
    assert code == 0 and script.is_file()
    spec = importlib.util.spec_from_file_location("exported_trl", script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.SETTINGS["train"] == method_spec("rloo", "RLOO", profile="smoke").train
    assert mod.SETTINGS["train"]["estimator"] == "rloo"
    folder = tmp_path / "tiny"
    save_tiny_folder(folder, tok)
    out = tmp_path / "run"
    mod.main(["--model", str(folder), "--max-steps", "1", "--output-dir", str(out)])
    assert (out / "adapter_config.json").is_file()  # one TRL step trained and saved the LoRA adapter
    assert "'rlbook/clip_frac'" in capsys.readouterr().out  # the loss was rlbook's (TRL logs its metrics)


def test_verl_export_fits_verls_config_schema_and_its_files_work(tmp_path):
    pytest.importorskip("verl.trainer.ppo.core_algos")
    from omegaconf import OmegaConf
    from rlbook.application.integrations import verl as rv
    from verl.utils.config import omega_conf_to_dataclass

    assert AGGREGATION_TO_VERL == rv.TO_VERL_AGGREGATION
    folder = tmp_path / "dapo-verl"
    assert cli.main(["export", "dapo", "--method", "DAPO", "--to", "verl", "--profile", "smoke", "-p",
                     "model=smollm2-135m-instruct", "--out", str(folder)]) == 0
    assert sorted(p.name for p in folder.iterdir()) == ["config.yaml", "prepare_data.py", "reward.py", "run.sh",
                                                        "settings.json"]
    ours = yaml.safe_load((folder / "config.yaml").read_text())
    assert ours.pop("defaults") == ["ppo_trainer", "_self_"] and ours.pop("hydra")
    # two keys verl reads but its schema does not list: the DAPO reward manager's reward_kwargs and Ray's env_vars
    new_keys = ours["reward"].pop("reward_kwargs")
    assert new_keys["overlong_buffer_cfg"]["len"] == 2  # DAPO's L_cache: 0.25 * max_new_tokens 8
    env = ours["ray_kwargs"]["ray_init"]["runtime_env"].pop("env_vars")
    assert env["VERL_USE_EXTERNAL_MODULES"] == "rlbook.application.integrations.verl"
    assert rv.register_method(json.loads(env["RLBOOK_VERL_METHOD"])) == ("rlbook_method", "rlbook_method")
    checkpoints = ours["trainer"]
    assert (checkpoints["test_freq"], checkpoints["save_freq"], checkpoints["total_training_steps"]) == (1, 5, 1)
    # every other key exists in verl's full ppo_trainer config (struct mode refuses unknown keys)
    base = OmegaConf.load(Path(rv.core_algos.__file__).parents[1] / "config" / "_generated_ppo_trainer.yaml")
    OmegaConf.set_struct(base, True)
    merged = OmegaConf.merge(base, ours)
    actor = omega_conf_to_dataclass(merged.actor_rollout_ref.actor)  # verl's own validation
    assert (actor.loss_agg_mode, actor.clip_ratio_high, actor.policy_loss.loss_mode) == ("token-mean", 0.28, "rlbook_method")
    assert merged.algorithm.adv_estimator == "rlbook_method" and merged.algorithm.filter_groups.enable
    assert merged.actor_rollout_ref.model.path == "HuggingFaceTB/SmolLM2-135M-Instruct"
    # prepare_data.py writes verl's parquet files; reward.py scores with rlbook's rewards
    import pandas as pd

    runpy.run_path(str(folder / "prepare_data.py"))["main"](str(tmp_path / "data"))
    train = pd.read_parquet(tmp_path / "data" / "train.parquet")
    assert len(train) == 32 and set(train.columns) >= {"data_source", "prompt", "reward_model", "extra_info"}
    row = train.iloc[3]
    compute_score = runpy.run_path(str(folder / "reward.py"))["compute_score"]
    truth = row["reward_model"]["ground_truth"]
    assert compute_score(row["data_source"], truth, truth, dict(row["extra_info"]))["score"] == 1.0
    assert compute_score(row["data_source"], "no", truth, dict(row["extra_info"]))["score"] == 0.0


def test_export_errors_are_one_line_with_exit_code_2(tmp_path, capsys):
    assert cli.main(["export", "nope", "--to", "trl"]) == 2
    assert "unknown notebook 'nope'" in capsys.readouterr().err
    assert cli.main(["export", "rloo", "--method", "RLOO", "--to", "verl", "-p",
                     "train.rewards=[{name: length_penalty}]", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "reward length_penalty: needs lengths" in err and "nothing was written" in err
    assert not (tmp_path / "x").exists()


def _refused(err: str) -> list[str]:
    return err.split("nothing was written: ", 1)[1].strip() if "nothing was written: " in err else ""


def test_every_notebook_method_exports_faithfully_or_is_refused_at_export_time(tmp_path, capsys):
    # every method of every notebook x engine: exit 0 and the files written, or exit 2 naming each mechanism the
    # engine cannot carry (as the plan lists them) and nothing written.  No training: the export only.
    walked, written, refused = 0, 0, 0
    for nb, label in E.notebook_methods():
        spec = method_spec(nb, label)
        for engine in E.ENGINES:
            out = tmp_path / f"{spec.slug}-{engine}"
            code = cli.main(["export", nb, *(["--method", label] if label else []), "--to", engine, "--out", str(out)])
            err = capsys.readouterr().err
            plan = E.plan(spec, engine)
            walked += 1
            if plan.refused:
                assert code == 2 and not out.exists(), (nb, label, engine)
                for item in plan.refused:
                    assert f"{item.mechanism}: {item.how}" in _refused(err), (nb, label, engine, item)
                refused += 1
            else:
                assert code == 0, (nb, label, engine, err)
                assert out.is_file() if engine == "trl" else (out / "config.yaml").is_file()
                written += 1
    assert walked == 2 * len(E.notebook_methods()) and written and refused
    # the mechanisms the issue found silently dropped are refused for verl
    for nb, label, name in (("pf_ppo", "PF-PPO (BR)", "phase pf_ppo"), ("knapsack", "Knapsack RL", "sampler knapsack"),
                            ("dump", "DUMP", "sampler dump"), ("spo_sampling", "SPO sampling", "sampler spo_sampling"),
                            ("d3s", "D3S", "phase d3s"), ("r3", "R^3 (replay)", "phase r3_replay"),
                            ("adhint", "ADHint", "phase adhint"), ("adora", "ADORA", "phase adora_stats"),
                            ("siri", "SIRI", "phase length_schedule")):
        for engine in E.ENGINES:
            assert name in [r.mechanism for r in E.plan(method_spec(nb, label), engine).refused], (nb, engine)


def test_scale_out_doc_table_is_generated_from_the_registries():
    doc = (ROOT / "docs" / "SCALE_OUT.md").read_text()
    assert E.table() in doc, "docs/SCALE_OUT.md is stale: paste rlbook.application.export.table() (python -m rlbook.application.export)"


def test_overrides_win_over_the_preset_or_are_refused(capsys):
    assert method_spec("dapo", "DAPO").train["eps_high"] == 0.28
    assert method_spec("dapo", "DAPO", overrides=["train.eps_high=0.5"]).train["eps_high"] == 0.5
    spec = method_spec("dapo", "DAPO w/o clip-higher", overrides=["train.eps_high=0.3", "train.filters=[]"])
    assert spec.train["eps_high"] == 0.3 and spec.train["filters"] == []
    assert method_spec("bnpo", "BNPO").train["loss_kwargs"]["dual_clip"] == 10.0  # the preset's
    assert method_spec("bnpo", "BNPO", overrides=["train.loss_kwargs.dual_clip=5.0"]).train["loss_kwargs"] == {
        "dual_clip": 5.0}
    assert method_spec("dapo", "DAPO", overrides=["methods.DAPO={preset: dapo, eps_high: 0.4}"]).train["eps_high"] == 0.4
    with pytest.raises(ParamError, match="does not use 'seeds'"):
        method_spec("dapo", "DAPO", overrides=["seeds=5"])
    with pytest.raises(ParamError, match="another method"):
        method_spec("dapo", "DAPO", overrides=["methods.GRPO={preset: grpo, lr: 0.1}"])
    assert cli.main(["export", "dapo", "--method", "DAPO", "--to", "trl", "-p", "eval_size=5", "--out", "/dev/null"]) == 2
    assert "does not use 'eval_size'" in capsys.readouterr().err


def test_trl_export_trains_as_many_generation_batches_as_rlbook_steps_with_two_inner_epochs(tmp_path, tok, monkeypatch):
    # rlbook: 2 steps x 2 inner epochs = 2 generation batches, 4 optimizer steps.  TRL counts optimizer steps, so
    # max_steps must be 4; the export evaluates (greedy, eval_size problems) and checkpoints at the notebook's steps
    from rlbook.application.integrations import trl as rt

    script = tmp_path / "grpo-trl.py"
    assert cli.main(["export", "rloo", "--method", "RLOO", "--to", "trl", "--profile", "smoke", "-p",
                     "train.inner_epochs=2", "-p", "train.steps=2", "-p", "train.checkpoint_every=1", "-p",
                     "train.eval_every=2", "-p", "train.eval_size=3", "--out", str(script)]) == 0
    mod = runpy.run_path(str(script))
    calls: list[int] = []
    generate = rt.RlbookGRPOTrainer._generate_and_score_completions

    def counted(self, inputs):
        calls.append(int(self.state.global_step))
        return generate(self, inputs)

    evals: list[dict] = []
    evaluate = rt.RlbookGRPOTrainer.evaluate

    def recorded(self, *a, **kw):
        evals.append(evaluate(self, *a, **kw))
        return evals[-1]

    monkeypatch.setattr(rt.RlbookGRPOTrainer, "_generate_and_score_completions", counted)
    monkeypatch.setattr(rt.RlbookGRPOTrainer, "evaluate", recorded)
    folder = tmp_path / "tiny"
    save_tiny_folder(folder, tok)
    out = tmp_path / "run"
    mod["main"](["--model", str(folder), "--output-dir", str(out)])
    assert calls == [0, 2]  # two generation batches, at optimizer steps 0 and 2
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]  # every rlbook step
    assert len(evals) == 1 and evals[0]["eval_n"] == 3.0 and 0.0 <= evals[0]["eval_accuracy"] <= 1.0  # at step 2


def test_bnpo_verl_export_composes_validates_and_its_functions_run_through_verls_api(tmp_path):
    pytest.importorskip("verl.trainer.ppo.core_algos")
    import numpy as np
    import torch
    from hydra import compose, initialize_config_dir
    from rlbook.application.integrations import verl as rv
    from verl.trainer.ppo import core_algos
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import omega_conf_to_dataclass, validate_config

    folder = tmp_path / "bnpo-verl"
    assert cli.main(["export", "bnpo", "--method", "BNPO", "--to", "verl", "--out", str(folder)]) == 0
    for gpus in (1, 8):
        with initialize_config_dir(config_dir=str(folder), version_base=None):
            cfg = compose(config_name="config", overrides=[f"trainer.n_gpus_per_node={gpus}"])
        assert cfg.actor_rollout_ref.model.lora_rank == 16
        # verl's last check asks vLLM (not installed on CPU) whether it serves LoRA rank 16; validate the rest
        cfg.actor_rollout_ref.model.lora_rank = 0
        validate_config(cfg, use_reference_policy=need_reference_policy(cfg), use_critic=need_critic(cfg))
        cfg.actor_rollout_ref.model.lora_rank = 16
    actor = omega_conf_to_dataclass(cfg.actor_rollout_ref.actor)
    assert actor.loss_agg_mode == "seq-mean-token-sum"  # the crash: rlbook's seq_mean_token_sum had no verl name
    method = json.loads(cfg.ray_kwargs.ray_init.runtime_env.env_vars.RLBOOK_VERL_METHOD)
    rv.register_method(method)
    # BNPO through verl's registry, one group of 4 with rewards (1, 0, 0, 1): bnpo with its preset's Beta
    # normalisation is rlbook's; here we check the layout and the loss by hand
    scores = [1.0, 0.0, 0.0, 1.0]
    rewards = torch.zeros(4, 3)
    rewards[torch.arange(4), 1] = torch.tensor(scores)
    mask = torch.ones(4, 3)
    adv = core_algos.get_adv_estimator_fn(cfg.algorithm.adv_estimator)(rewards, mask, index=np.array(["u"] * 4),
                                                                        config=cfg.algorithm)[0]
    from rlbook.mechanisms import estimators

    r = torch.tensor([scores])
    expected = estimators.compute("bnpo", r, context={"reward_parts": r.unsqueeze(-1), "part_weights": torch.ones(1)},
                                  **method["estimator_kwargs"])
    assert torch.allclose(adv[:, 0], expected.view(-1), atol=1e-6)
    # seq-mean-token-sum at ratio 1: PPO's token loss is -A; mean over sequences of the token sums = -mean(3 A)
    fn = core_algos.get_policy_loss_fn(actor.policy_loss.loss_mode)
    logp = torch.zeros(4, 3)
    loss, _ = fn(logp, logp, adv, mask, actor.loss_agg_mode, actor)
    assert abs(float(loss) - float(-(3 * adv[:, 0]).mean())) < 1e-6


def test_dapo_filter_metric_names_verls_fields(tmp_path):
    core = pytest.importorskip("verl.trainer.ppo.core_algos")
    import ast

    # verl's replay buffer (which imports TransferQueue, absent here) names the canonical reward metric
    source = ast.parse((Path(core.__file__).parent / "v1" / "replay_buffer.py").read_text())
    FILTER_GROUPS_REWARD_METRIC = next(n.value.value for n in source.body if isinstance(n, ast.Assign)
                                       and getattr(n.targets[0], "id", "") == "FILTER_GROUPS_REWARD_METRIC")
    assert FILTER_GROUPS_REWARD_METRIC == "reward"

    for metric, verl_name in (("acc", "acc"), ("reward", FILTER_GROUPS_REWARD_METRIC)):
        folder = tmp_path / metric
        filters = f"train.filters=[{{name: dynamic_sampling, kwargs: {{metric: {metric}}}}}]"
        assert cli.main(["export", "dapo", "--method", "DAPO", "--to", "verl", "-p", filters, "--out", str(folder)]) == 0
        groups = yaml.safe_load((folder / "config.yaml").read_text())["algorithm"]["filter_groups"]
        assert groups == {"enable": True, "metric": verl_name, "max_num_gen_batches": 0}
    # "acc" is what reward.py returns next to the score
    compute_score = runpy.run_path(str(tmp_path / "acc" / "reward.py"))["compute_score"]
    assert set(compute_score("x", "no", "1", {"split": "train", "index": 0})) == {"score", "acc"}


def test_engine_constraint_files_match_pyproject():
    # constraints/verl-vllm.txt installs rlbook's dependencies next to verl[vllm] (rlbook itself with --no-deps):
    # every pyproject dependency with its own pin, transformers at verl's (the one thing rlbook gives up there)
    import re
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    def reqs(lines):
        out = {}
        for line in lines:
            line = line.split("#", 1)[0].strip()
            if line:
                name = re.match(r"[A-Za-z0-9_.\-]+", line).group(0).lower()
                out[name] = line
        return out

    ours = reqs(project["dependencies"] + project["optional-dependencies"]["engines"])
    verl = reqs((ROOT / "constraints" / "verl-vllm.txt").read_text().splitlines())
    assert verl.pop("verl") == "verl[vllm]==0.9.1"
    assert verl.pop("transformers") == "transformers==5.9.0" and ours.pop("transformers") == "transformers==5.23.0"
    assert verl == ours
    trl = reqs((ROOT / "constraints" / "trl.txt").read_text().splitlines())
    assert trl["trl"] in project["optional-dependencies"]["bench"] and "transformers" not in trl
