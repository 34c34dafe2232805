"""The warm-start stage (rlbook.training.warmstart): a short SFT on gold answers, cached with a derived key, merged into the
base weights that every run of a study wraps its adapter around; run keys without a warm start are unchanged."""

from __future__ import annotations

import pytest
import torch
from rlbook.core.errors import ParamError
from rlbook.training import experiments, warmstart

TASK = {"name": "chain_sum", "config": {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1},
        "train_size": 8, "eval_size": 4, "seed": 0}
TRAIN = {"steps": 1, "prompts_per_step": 2, "group_size": 2, "max_new_tokens": 4}
WARM = {"steps": 2, "lr": 0.01, "batch_size": 2, "seed": 1}


def spec(**kw) -> experiments.RunSpec:
    return experiments.RunSpec("GRPO", train=dict(TRAIN), task=dict(TASK), lora={"r": 2, "alpha": 4},
                               model="tiny-random", **kw)


def test_no_warm_start_and_zero_steps_keep_the_base_model_keys():
    plain = spec()
    for off in (None, {"steps": 0, "lr": 0.5}):
        s = spec(warm_start=off)
        assert s.key(0) == plain.key(0) and s.base_key() == plain.base_key()
        assert "warm_start" not in s.resolved(0)
    warm = spec(warm_start=WARM)
    assert warm.key(0) != plain.key(0) and warm.base_key() != plain.base_key()
    assert warm.resolved(0)["warm_start"] == {"steps": 2, "lr": 0.01, "batch_size": 2, "seed": 1}


def test_bad_warm_start_values_name_the_key_and_the_allowed_ones():
    with pytest.raises(ParamError, match="unknown key warm_start.epochs; allowed: steps, lr, batch_size, seed"):
        spec(warm_start={"steps": 2, "epochs": 3})
    with pytest.raises(ParamError, match=r"warm_start.steps=-1 must be an integer >= 0"):
        warmstart.resolve({"steps": -1})
    with pytest.raises(ParamError, match=r"warm_start.lr=0 must be a number > 0"):
        warmstart.resolve({"steps": 2, "lr": 0})
    with pytest.raises(ParamError, match="lora.r=0 must be >= 1"):
        experiments.RunSpec("x", train=dict(TRAIN), task=dict(TASK), lora={"r": 0}, model="tiny-random",
                            warm_start=WARM)


def test_stage_key_ignores_the_pool_draw_and_follows_every_other_field():
    model, task, lora, warm = spec(warm_start=WARM).start()
    key = warmstart.stage(model, task, lora, warm).key
    # the pool's seed and sizes are replaced by the SFT draw's: the same stage for any pool of the task
    assert warmstart.stage(model, {**task, "seed": 5, "train_size": 99, "eval_size": 7}, lora, warm).key == key
    for other in ({**warm, "steps": 3}, {**warm, "lr": 0.02}, {**warm, "batch_size": 3}, {**warm, "seed": 2}):
        assert warmstart.stage(model, task, lora, other).key != key
    assert warmstart.stage(model, {**task, "config": {**task["config"], "max_digits": 2}}, lora, warm).key != key
    assert warmstart.stage(model, task, {**lora, "r": 4}, warm).key != key


def test_warm_model_merges_the_sft_adapter_and_is_cached(tmp_path):
    model, task, lora, warm = spec(warm_start=WARM).start()
    base, _, none = warmstart.warm_model(model, task, lora, None, tmp_path)
    assert none is None and not list(tmp_path.iterdir())  # the base model: no stage
    warm_base, tok, result = warmstart.warm_model(model, task, lora, warm, tmp_path)
    assert result["examples"] == 4 and result["steps"] == 2 and result["skipped"] == 0  # 2 steps x batch 2
    assert not hasattr(warm_base, "peft_config")  # merged: no adapter left for the run to trip over
    diffs = [float((a - b).detach().abs().max()) for a, b in zip(warm_base.parameters(), base.parameters(), strict=True)]
    assert max(diffs) > 0  # the SFT moved the weights it merged
    folder = warmstart.stage(model, task, lora, warm).folder(tmp_path)
    assert (folder / warmstart.ADAPTER).is_file() and (folder / "DONE").is_file()
    again, _, cached = warmstart.warm_model(model, task, lora, warm, tmp_path)
    assert cached == result  # read back, not trained again
    for a, b in zip(again.parameters(), warm_base.parameters(), strict=True):
        assert torch.allclose(a, b)


def test_a_sweep_starts_every_run_from_the_warm_model(tmp_path):
    warm = spec(warm_start=WARM)
    res = experiments.sweep([warm], 1, cache=tmp_path, progress=False)
    assert res.final["steps"].iloc[0] == 1
    stage_folders = [p.name for p in tmp_path.iterdir() if p.name.startswith("warm-start-")]
    assert len(stage_folders) == 1  # trained once for the base eval and the run
    with pytest.raises(ValueError, match="one sweep trains from one base model"):
        experiments.sweep([warm, experiments.RunSpec("cold", train=dict(TRAIN), task=dict(TASK),
                                                     lora={"r": 2, "alpha": 4}, model="tiny-random")], 1,
                          cache=tmp_path, progress=False)


def test_the_pool_histogram_is_keyed_by_the_warm_start_only_when_there_is_one():
    from rlbook.analysis import regimes

    params = {"model": "tiny-random", "task": dict(TASK), "lora": {"r": 2, "alpha": 4}, "train": dict(TRAIN)}
    cold = regimes._key(params, 8, 4, 0)
    assert regimes._key({**params, "warm_start": {"steps": 0}}, 8, 4, 0) == cold
    warm = regimes._key({**params, "warm_start": WARM}, 8, 4, 0)
    assert warm != cold and warm != regimes._key({**params, "warm_start": {**WARM, "steps": 3}}, 8, 4, 0)
