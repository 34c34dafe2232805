"""rlbook.training.params.for_notebook: a notebook run by hand or by papermill directly gets its profile and merged sections."""

from __future__ import annotations

from pathlib import Path

import pytest
from rlbook.core.config import ParamError
from rlbook.training import params as P

YAML = """
defaults:
  task: {name: chain_sum, config: {min_terms: 2}, train_size: 400, eval_size: 200, seed: 0}
  steps_note: 12
  methods: {GRPO: grpo, BNPO: bnpo}
profiles:
  smoke:
    task: {train_size: 32, eval_size: 8}
    steps_note: 2
"""
DEFAULTS = {"task": {"name": "chain_sum", "config": {"min_terms": 2}, "train_size": 400, "eval_size": 200, "seed": 0},
            "steps_note": 12, "methods": {"GRPO": "grpo", "BNPO": "bnpo"}}


@pytest.fixture
def params_dir(tmp_path: Path) -> Path:
    (tmp_path / "nb.yaml").write_text(YAML)
    return tmp_path


def namespace(**changes: object) -> dict:
    import copy

    return {**copy.deepcopy(DEFAULTS), "run_dir": None, "profile": None, **changes}


def test_profile_variable_applies_the_profile_and_writes_the_values_back(params_dir: Path) -> None:
    ns = namespace(profile="smoke")
    got = P.for_notebook("nb", ns, params_dir)
    assert got["task"] == {"name": "chain_sum", "config": {"min_terms": 2}, "train_size": 32, "eval_size": 8, "seed": 0}
    assert got["steps_note"] == 2 and ns["task"]["train_size"] == 32 and ns["steps_note"] == 2


def test_a_partial_task_dict_updates_the_defaults_key_by_key(params_dir: Path) -> None:
    ns = namespace(task={"train_size": 32})  # papermill -y "task: {train_size: 32}"
    got = P.for_notebook("nb", ns, params_dir)
    assert got["task"] == {**DEFAULTS["task"], "train_size": 32}


def test_a_method_table_replaces_its_default(params_dir: Path) -> None:
    got = P.for_notebook("nb", namespace(methods={"GRPO": "grpo"}), params_dir)
    assert got["methods"] == {"GRPO": "grpo"}


def test_an_edit_goes_on_top_of_the_profile(params_dir: Path) -> None:
    got = P.for_notebook("nb", namespace(profile="smoke", steps_note=5), params_dir)
    assert got["steps_note"] == 5 and got["task"]["eval_size"] == 8


def test_under_rlbook_run_the_values_are_taken_as_they_are(params_dir: Path) -> None:
    ns = namespace(run_dir="/tmp/x", profile="smoke", steps_note=200)
    assert P.for_notebook("nb", ns, params_dir)["steps_note"] == 200


def test_unknown_profile_and_missing_variable_are_clear_errors(params_dir: Path) -> None:
    with pytest.raises(ParamError, match="'fast' is not a profile of nb; allowed: smoke"):
        P.for_notebook("nb", namespace(profile="fast"), params_dir)
    ns = namespace()
    del ns["methods"]
    with pytest.raises(ParamError, match=r"\['methods'\] are not defined"):
        P.for_notebook("nb", ns, params_dir)
