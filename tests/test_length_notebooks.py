"""The length family's notebooks share one base configuration, so `efficiency` reuses their cached runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from rlbook.training import experiments
from rlbook.training import params as rparams

ROOT = Path(__file__).resolve().parents[1]
FAMILY = ["dler", "hapo", "drpo", "grpo_lambda", "conciseness_rm", "budget_curriculum", "siri", "dot", "decs",
          "redundancy", "arlcp", "vsrm", "anytime", "efficiency"]
SHARED = ("model", "task", "lora", "train", "seeds", "eval_size", "eval_max_new_tokens")


def resolved(name: str, profile: str) -> dict:
    return rparams.resolve(name, profile, params_dir=ROOT / "params")


@pytest.mark.parametrize("profile", ["smoke", "cpu", "gpu"])
def test_every_length_notebook_shares_the_base_config(profile):
    first = {k: resolved(FAMILY[0], profile)[k] for k in SHARED}
    for name in FAMILY[1:]:
        assert {k: resolved(name, profile)[k] for k in SHARED} == first, name


@pytest.mark.parametrize("profile", ["smoke", "cpu"])
def test_efficiency_trains_or_reuses_exactly_the_method_notebooks_runs(profile):
    """Each method of a method notebook is in efficiency (methods or reuse) under the same label, and both give the
    same run keys, so efficiency finds the runs the method notebooks cached."""
    eff = resolved("efficiency", profile)
    everything = {**eff["methods"], **eff["reuse"]}
    base = {k: eff[k] for k in SHARED if k != "seeds"}
    for name in FAMILY[:-1]:
        p = resolved(name, profile)
        for label, method in p["methods"].items():
            assert label in everything, f"{name}: {label} missing from efficiency"
            mine = experiments.make_specs({label: method}, base)[0]
            theirs = experiments.make_specs({label: everything[label]}, base)[0]
            assert mine.key(0) == theirs.key(0), f"{name}: {label} differs from efficiency's"
