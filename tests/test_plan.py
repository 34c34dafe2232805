"""The run plan: every method resolved and checked once, before any compute; samplers' widest groups; `rlbook check`."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from conftest import Factory
from rlbook.application import cli
from rlbook.core import config
from rlbook.core.errors import ParamError
from rlbook.mechanisms import components, sampling
from rlbook.mechanisms.curricula.knapsack import KnapsackSampler, knapsack_budgets
from rlbook.training import experiments

ROOT = Path(__file__).resolve().parents[1]
TASK = {"name": "chain_sum", "config": {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1},
        "train_size": 20, "eval_size": 4}
TRAIN = {"steps": 1, "prompts_per_step": 2, "group_size": 3, "max_new_tokens": 4, "micro_batch_size": 6,
         "gen_batch_size": 8, "eval_size": 4}
BASE = {"task": TASK, "lora": {"r": 2, "alpha": 4}, "train": TRAIN, "model": "tiny"}
KNAPSACK = {n: KnapsackSampler.__init__.__kwdefaults__[n] for n in
            ("n", "min_n", "max_n", "alpha", "negative_n", "positive_n", "cost_estimation")}


@pytest.fixture(autouse=True)
def repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RLBOOK_ROOT", str(ROOT))


# ---------------------------------------------------------------- built once


def test_a_trained_method_builds_and_checks_its_config_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One (method, seed) trained through the sweep, with its base eval: one TrainConfig built, its mechanisms
    checked once (the landed code built and checked it 15 times: key, base_key, collect, sweep, the Trainer...)."""
    built, checked = [], []
    post_init, check = config.TrainConfig.__post_init__, components.check

    def counting_post_init(self: config.TrainConfig) -> None:
        built.append(1)
        post_init(self)

    def counting_check(cfg: config.TrainConfig) -> None:
        if not config.is_checked(cfg):
            checked.append(1)
        check(cfg)

    monkeypatch.setattr(config.TrainConfig, "__post_init__", counting_post_init)
    monkeypatch.setattr(components, "check", counting_check)
    specs = experiments.make_specs({"GRPO": "grpo"}, BASE)
    assert (len(built), len(checked)) == (1, 1)
    res = experiments.sweep(specs, [0], cache=tmp_path, model_factory=Factory(), progress=False)
    assert res.trained == 1
    assert (len(built), len(checked)) == (1, 1)


def test_the_trainer_gets_the_plans_config_object() -> None:
    from rlbook.data.tasks import make_task
    from rlbook.training.trainer import Trainer

    (spec,) = experiments.make_specs({"GRPO": "grpo"}, BASE)
    cfg = spec.train_config(3)
    model, tok = Factory()()
    from rlbook.policy.models import wrap_lora

    trainer = Trainer(wrap_lora(model, spec.resolved(3)["lora"], seed=3), tok, make_task(spec.task_spec()), cfg,
                      progress=False)
    assert trainer.cfg is cfg and cfg.seed == 3
    assert spec.train_config(0).seed == 0  # each run gets its own copy
    assert spec.resolved(3)["train"] == cfg.to_dict()


def test_setting_a_mechanism_after_the_check_is_checked_again() -> None:
    (spec,) = experiments.make_specs({"GRPO": "grpo"}, BASE)
    cfg = spec.train_config(0)
    assert config.is_checked(cfg)
    cfg.micro_batch_size = 2  # a batch knob (the out-of-memory retry) keeps the mark
    assert config.is_checked(cfg)
    cfg.estimator = "nope"
    assert not config.is_checked(cfg)
    with pytest.raises(ParamError, match="train.estimator='nope' is not allowed"):
        components.check(cfg)


def test_a_bad_method_fails_when_its_spec_is_made_and_names_the_method() -> None:
    with pytest.raises(ParamError, match=r"methods\['Bad'\]: method preset 'knapsak' is unknown; available: .*knapsack"):
        experiments.make_specs({"Bad": {"preset": "knapsak"}}, BASE)
    with pytest.raises(ParamError, match=r"ablations\['B'\]: train.estimator: estimator 'bnpo' got unknown hyper-param"):
        experiments.make_specs({"B": {"preset": "bnpo", "estimator_kwargs": {"nope": 1}}}, BASE, name="ablations")


# ---------------------------------------------------------------- widest groups


def test_knapsack_widest_group_is_reached_by_one_unsolved_prompt_among_solved_ones() -> None:
    # P = 4 prompts, n = 8: 32 rollouts; three solved prompts (p = 1) keep positive_n = 2 each, the unsolved one
    # (p = 0) takes the rest: 32 - 3 * 2 = 26
    states = [(True, 0.0, 8), (True, 1.0, 8), (True, 1.0, 8), (True, 1.0, 8)]
    assert knapsack_budgets(states, n=8)[0] == [26, 2, 2, 2]
    assert KnapsackSampler.widest_group(4, **KNAPSACK) == 26
    assert KnapsackSampler.widest_group(16, **KNAPSACK) == 16 * 8 - 15 * 2  # the gpu profiles: 98, not 32
    assert KnapsackSampler.widest_group(4, **{**KNAPSACK, "positive_n": 0}) == 32 - 3 * 0
    assert KnapsackSampler.widest_group(4, **{**KNAPSACK, "n": 4}) == 16 - 3 * 2


def test_knapsack_budgets_never_exceed_the_widest_group() -> None:
    rng = np.random.default_rng(0)
    for _ in range(300):
        P = int(rng.integers(1, 17))
        states = [(bool(rng.random() < 0.8), float(rng.choice([0.0, 1.0, rng.random()])), 8) for _ in range(P)]
        budgets, _ = knapsack_budgets(states, n=8)
        assert max(budgets) <= KnapsackSampler.widest_group(P, **KNAPSACK)


def test_plan_sets_group_size_from_the_sampler_or_checks_a_given_one() -> None:
    base = {**BASE, "train": {**TRAIN, "prompts_per_step": 4, "group_size": 8}}
    auto, wide = experiments.make_specs({"K": "knapsack", "W": {"preset": "knapsack", "group_size": 32}}, base)
    assert auto.train_config(0).group_size == 26  # not the base's 8
    assert wide.train_config(0).group_size == 32
    with pytest.raises(ParamError, match=r"methods\['N'\]: train.group_size=20 is narrower than the 26 completions"):
        experiments.make_specs({"N": {"preset": "knapsack", "group_size": 20}}, base)
    assert sampling.group_size("uniform", 4, {}, 8) == 8  # a sampler without budgets leaves it alone
    with pytest.raises(ParamError, match="declares no widest group"):
        experiments.RunSpec("U", {**TRAIN, "group_size": None}, TASK, model="tiny")


def test_knapsack_hyper_parameter_values_fail_at_the_plan() -> None:
    with pytest.raises(ParamError, match="knapsack needs n >= 1 and 1 <= min_n <= max_n; got n=8, min_n=0"):
        experiments.make_specs({"K": {"preset": "knapsack", "sampler_kwargs": {"min_n": 0}}}, BASE)


# ---------------------------------------------------------------- rlbook check


def test_check_all_passes_every_notebook_and_profile(capsys: pytest.CaptureFixture[str]) -> None:
    start = time.perf_counter()
    assert cli.main(["check", "--all"]) == 0
    seconds = time.perf_counter() - start
    lines = capsys.readouterr().out.splitlines()
    notebooks = sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb"))
    for name in notebooks:
        for profile in ("smoke", "cpu", "gpu"):
            assert any(line.startswith(f"ok   {name} {profile}:") for line in lines), (name, profile)
    assert "ok   knapsack gpu: methods: 2 [Knapsack RL group_size=98 (sampler knapsack)]" in lines
    assert seconds < 60, seconds


def test_check_reports_a_bad_method_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check", "knapsack", "--profile", "smoke", "-p", "methods={GRPO: grpo, Bad: {preset: knapsak}}"]) == 2
    out = capsys.readouterr()
    assert "FAIL knapsack smoke: methods['Bad']: method preset 'knapsak' is unknown; available: " in out.out
    assert "rlbook: error: 1 notebook/profile pair(s) failed the check" in out.err
    assert cli.main(["check", "nope"]) == 2
    assert "unknown notebook 'nope'" in capsys.readouterr().err
