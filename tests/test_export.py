"""``rlbook export``: a notebook's method as a TRL script (run here for one CPU step) or a verl config folder."""

from __future__ import annotations

import importlib.util
import json
import runpy
from pathlib import Path

import pytest
import yaml
from conftest import SPECIALS
from rlbook import cli
from rlbook.config import ParamError
from rlbook.export import AGGREGATION_TO_VERL, method_spec
from rlbook.models import tiny_llama

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
    from rlbook.integrations import verl as rv
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
    assert env["VERL_USE_EXTERNAL_MODULES"] == "rlbook.integrations.verl"
    assert rv.register_method(json.loads(env["RLBOOK_VERL_METHOD"])) == ("rlbook_method", "rlbook_method")
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
    assert "needs completion lengths" in capsys.readouterr().err
