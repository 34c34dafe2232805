"""rlbook.training.experiments: content-addressed run cache, sweeps that train nothing twice, unfinished runs."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from conftest import Factory
from rlbook.analysis import report
from rlbook.training import experiments
from rlbook.training.experiments import RunSpec

TASK = {"name": "chain_sum", "config": {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1},
        "train_size": 20, "eval_size": 4, "system_prompt": None}
TRAIN = {"steps": 2, "prompts_per_step": 2, "group_size": 3, "max_new_tokens": 4, "micro_batch_size": 6,
         "gen_batch_size": 8, "eval_size": 4}
LORA = {"r": 2, "alpha": 4}


def spec(label: str = "GRPO", **train) -> RunSpec:
    return RunSpec(label=label, train={**TRAIN, **train}, task=TASK, lora=LORA, model="tiny")


def test_key_is_stable_and_depends_on_seed_and_config():
    a, b = spec(), spec(label="another label")
    assert a.key(0) == a.key(0) == b.key(0)  # the label is not part of the address
    assert len(a.key(0)) == 24
    assert a.key(0) != a.key(1)
    assert a.key(0) != spec(lr=1e-3).key(0)
    assert a.key(0) != RunSpec("GRPO", {**TRAIN}, {**TASK, "seed": 1}, LORA, "tiny").key(0)
    # defaults spelled out or left implicit give the same run
    assert spec(estimator="grpo").key(0) == a.key(0)
    # settings that do not change the result stay out of the key
    assert spec(checkpoint_every=1).key(0) == a.key(0)


def test_method_presets_merge_with_overrides():
    t = experiments.method_train({"preset": "dapo", "filters": []})
    assert t["eps_high"] == 0.28 and t["filters"] == [] and t["aggregation"] == "token_mean"
    assert experiments.method_train("dr_grpo")["aggregation"] == "seq_mean_token_sum_norm"
    specs = experiments.make_specs(["grpo", "rloo"], {"task": TASK, "lora": LORA, "train": TRAIN, "model": "tiny"})
    assert [s.label for s in specs] == ["grpo", "rloo"] and specs[1].train["estimator"] == "rloo"
    for name in experiments.METHODS:  # every preset is a valid trainer config
        experiments.make_specs([name], {"task": TASK, "train": TRAIN})[0].resolved(0)


def test_sweep_twice_trains_nothing_the_second_time(tmp_path, count_trainers):
    specs = [spec("GRPO"), spec("RLOO", estimator="rloo")]
    f1 = Factory()
    res = experiments.sweep(specs, seeds=2, cache=tmp_path, model_factory=f1, progress=False)
    assert f1.calls == 1 and res.trained == 4 and res.reused == 0
    assert len(count_trainers) == 4 + 1  # four runs and one shared base eval
    assert set(res.metrics["method"]) == {"GRPO", "RLOO"} and set(res.metrics["seed"]) == {0, 1}
    assert {"samples", "adv_var", "length_wrong"} <= set(res.metrics.columns)
    assert len(res.final) == 4 and not res.final["cached"].any()
    for folder in res.folders.values():
        for name in ("config.json", "metrics.csv", "eval.json", "adapter.safetensors", "DONE"):
            assert (folder / name).is_file(), name
        assert not (folder / "checkpoints").exists()
    ev = res.evals[("GRPO", 0)]
    assert len(ev["final"]["completions"]) == 4 and 0 <= ev["base"]["accuracy"] <= 1

    count_trainers.clear()
    f2 = Factory()
    again = experiments.sweep(specs, seeds=2, cache=tmp_path, model_factory=f2, progress=False)
    assert f2.calls == 0 and not count_trainers  # nothing trained, the model not even loaded
    assert again.trained == 0 and again.reused == 4 and again.final["cached"].all()
    pd.testing.assert_frame_equal(again.metrics, res.metrics)

    # a third method shares the cached ones and trains only itself
    f3 = Factory()
    more = experiments.sweep([*specs, spec("BNPO", estimator="bnpo")], seeds=[0], cache=tmp_path, model_factory=f3,
                             progress=False)
    assert f3.calls == 1 and more.trained == 1 and more.reused == 2


def test_unfinished_folder_is_not_reused(tmp_path, count_trainers):
    s = spec()
    folder = tmp_path / s.key(0)
    folder.mkdir(parents=True)
    (folder / "metrics.csv").write_text("step,accuracy\n1,0.9\n")
    (folder / "eval.json").write_text(json.dumps({"base": {}, "final": {}}))  # no DONE: not finished
    assert not experiments.is_done(folder)
    with pytest.raises(FileNotFoundError):
        experiments.collect([s], [0], tmp_path)
    res = experiments.sweep([s], seeds=[0], cache=tmp_path, model_factory=Factory(), progress=False)
    assert res.trained == 1 and experiments.is_done(folder)
    assert len(res.metrics) == TRAIN["steps"]  # the stale row was wiped


def test_no_adapter_leaks_between_runs(tmp_path):
    f = Factory()
    base, tok = f()
    x = torch.tensor([[4, 5, 6, 7]])
    with torch.no_grad():
        before = base(x).logits.clone()
    res = experiments.sweep([spec(lr=0.05)], seeds=[0], cache=tmp_path, model_factory=lambda: (base, tok),
                            progress=False)
    assert res.trained == 1
    assert not hasattr(base, "peft_config")
    assert not any("lora" in n for n, _ in base.named_modules())
    with torch.no_grad():
        assert torch.equal(base(x).logits, before)


def test_timing_table_on_a_sweep(tmp_path):
    res = experiments.sweep([spec("A"), spec("B", estimator="rloo")], seeds=2, cache=tmp_path,
                            model_factory=Factory(), progress=False)
    tab = report.timing_table(res.final)
    assert list(tab.index) == ["A", "B"]
    assert (tab["samples"] > 0).all() and (tab["train_seconds"] > 0).all()


def test_unfinished_folder_with_a_checkpoint_is_resumed(tmp_path):
    from rlbook.data.tasks import make_task
    from rlbook.policy.models import wrap_lora
    from rlbook.training.trainer import Trainer

    s = spec()
    cfg = s.resolved(0)
    folder = tmp_path / s.key(0)
    base, tok = Factory()()
    model = wrap_lora(base, cfg["lora"], seed=0)
    first = Trainer(model, tok, make_task(cfg["task"]), cfg["train"], metrics_path=folder / "metrics.csv",
                    progress=False)
    first.fit(steps=1, checkpoint_dir=folder / "checkpoints")  # killed after one of two steps
    model.unload()
    assert not experiments.is_done(folder)
    res = experiments.sweep([s], seeds=[0], cache=tmp_path, model_factory=lambda: (base, tok), progress=False)
    assert res.trained == 1 and res.evals[("GRPO", 0)]["resumed_from_step"] == 1
    assert list(res.metrics["step"]) == [1, 2]


def test_done_fraction_is_steps_or_tokens_whichever_is_further() -> None:
    """By hand: 2 of 40 steps is 5%; 1,500 of a 3,000-token budget is 50%; past the budget is done (1.0)."""
    from types import SimpleNamespace

    from rlbook.training.trainer import Trainer

    def trainer(steps: int, budget: int, step_count: int, tokens: int) -> SimpleNamespace:
        return SimpleNamespace(cfg=SimpleNamespace(steps=steps, gen_token_budget=budget), step_count=step_count,
                               generated_tokens=tokens)

    assert Trainer.done_fraction(trainer(40, 0, 2, 1500)) == pytest.approx(0.05)
    assert Trainer.done_fraction(trainer(40, 3000, 2, 1500)) == pytest.approx(0.5)
    assert Trainer.done_fraction(trainer(40, 3000, 2, 3100)) == 1.0
    assert Trainer.done_fraction(trainer(4, 3000, 4, 100)) == 1.0


def test_sweep_bar_counts_runs_and_a_token_budget_finishes_a_run(tmp_path, monkeypatch) -> None:
    """The bar's total is the runs to train and a run stopped by its token budget is a whole run on it; a bar
    counting steps up to the 10-step cap would stand at 2 of 20 (10%) with the sweep finished."""
    from rlbook.core import progress

    bars = []

    class Bar:
        def __init__(self, iterable=(), total=None, desc: str = "", **kwargs) -> None:
            self.iterable, self.total, self.n, self.seen = iterable, total, 0.0, []
            if desc.startswith("sweep"):
                bars.append(self)

        def __iter__(self):
            return iter(self.iterable)

        def update(self, d: float) -> None:
            self.n += d
            self.seen.append(round(self.n, 6))

        def set_description(self, *args, **kwargs) -> None: ...

        def set_postfix(self, *args, **kwargs) -> None: ...

        def close(self) -> None: ...

    monkeypatch.setattr(progress, "tqdm", Bar)
    res = experiments.sweep([spec("GRPO", steps=10, gen_token_budget=1)], seeds=2, cache=tmp_path,
                            model_factory=Factory(), progress=True)
    assert res.metrics.groupby("seed")["step"].max().tolist() == [1, 1]  # the budget ended each run after one step
    (bar,) = bars
    assert bar.total == 2 and bar.seen == [1.0, 1.0, 2.0, 2.0]


def test_the_last_steps_evaluation_is_the_final_one_not_made_twice(tmp_path, monkeypatch):
    """eval_every dividing the steps: the step-2 evaluation of the same problems at the same length is the run's final
    evaluation (greedy: the same numbers), so held_out_eval runs once per run after the base eval, not twice."""
    from rlbook.training import trainer as trainer_mod

    calls = []
    original = trainer_mod.held_out_eval

    def counting(tr, problems, max_new_tokens):
        calls.append((tr.step_count, len(problems), max_new_tokens))
        return original(tr, problems, max_new_tokens)

    monkeypatch.setattr(trainer_mod, "held_out_eval", counting)
    res = experiments.sweep([spec(eval_every=2)], seeds=1, cache=tmp_path, model_factory=Factory(), progress=False)
    assert calls == [(0, 4, 4), (2, 4, 4)]  # the base model, then step 2 only
    ev = res.evals[("GRPO", 0)]["final"]
    assert ev["accuracy"] == res.metrics["eval_accuracy"].iloc[-1] and len(ev["correct"]) == len(ev["completions"]) == 4
    calls.clear()  # an evaluation at another length is made again
    other = RunSpec("GRPO", {**TRAIN, "eval_every": 2}, TASK, LORA, "tiny", eval_max_new_tokens=3)
    experiments.sweep([other], seeds=1, cache=tmp_path / "b",
                      model_factory=Factory(), progress=False)
    assert calls == [(0, 4, 3), (2, 4, 4), (2, 4, 3)]
