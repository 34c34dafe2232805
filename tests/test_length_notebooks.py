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


# The baselines a length notebook's claims may name besides GRPO: the paper's own comparison (the additive penalty,
# the always-penalised group, the fixed budget, outcome-only REINFORCE++, the other redundancy variant, DLER for
# DA-DLER, CRM for the penalty's wrong answers).
PAPER_BASELINES = {"drpo": {"GRPO + length penalty"}, "grpo_lambda": {"GRPO + Kimi length"},
                   "conciseness_rm": {"GRPO + length penalty", "CRM (rule scorer)"},
                   "budget_curriculum": {"Fixed budget"}, "vsrm": {"REINFORCE++"},
                   "redundancy": {"Redundancy (external only)"}, "dler": {"DLER"},
                   "efficiency": {"GRPO + length penalty"}}
BASE_METRICS = ("accuracy_gain", "length_change", "length_wrong_change")  # against the base model's answers
EFFICIENCY_METRICS = ("acc_per_1k", "anytime_auc", "acc_at_")  # accuracy per held-out token or at a budget


def spec(name: str, profile: str = "cpu"):
    from rlbook.analysis import power

    return power.load_spec(name, resolved(name, profile), ROOT)


@pytest.mark.parametrize("name", FAMILY)
def test_no_length_claim_compares_with_the_base_model(name):
    """At our scale plain GRPO also shortens answers and raises accuracy, so a row against the base model would
    'replicate' for a method with no length mechanism: every row names a trained baseline."""
    for c in spec(name).claims:
        assert c.baseline is not None, f"{name}: {c.text!r} has no baseline (the base model)"
        assert c.metric not in BASE_METRICS, f"{name}: {c.text!r} measures against the base model ({c.metric})"


@pytest.mark.parametrize("name", FAMILY)
def test_every_length_claim_is_against_grpo_or_the_papers_baseline(name):
    allowed = {"GRPO"} | PAPER_BASELINES.get(name, set())
    for c in spec(name).claims:
        assert c.baseline in allowed, f"{name}: {c.text!r} against {c.baseline!r}; allowed {sorted(allowed)}"


@pytest.mark.parametrize("name", FAMILY[:-1])
def test_every_method_notebook_tests_accuracy_non_inferiority_against_grpo(name):
    """The informative row: the method, trained for GRPO's steps on GRPO's problems, is not less accurate than
    GRPO by more than a margin above one run's evaluation standard error."""
    rows = [c for c in spec(name).claims if c.metric == "final_accuracy" and c.baseline == "GRPO"
            and c.direction == "not_less" and not c.check]
    assert rows, f"{name}: no accuracy non-inferiority claim against GRPO"
    assert all(c.margin >= 0.05 and ("baseline_beats_base", {}) in c.requires for c in rows)


@pytest.mark.parametrize("name", FAMILY)
def test_length_claims_use_the_log_scale(name):
    for c in spec(name).claims:
        if any(w in c.metric for w in ("length", "tokens", "after_answer", "reflections")):
            assert c.scale in ("log", "log1p"), f"{name}: {c.text!r} on the {c.scale} scale"


@pytest.mark.parametrize("name", FAMILY)
def test_efficiency_claims_are_made_at_equal_training_tokens(name):
    """Accuracy per held-out token (or at a token budget) against a baseline: only when the method generated no
    more training tokens than the baseline (accuracy per training token is per token by construction)."""
    for c in spec(name).claims:
        if any(c.metric.startswith(m) for m in EFFICIENCY_METRICS) and not c.check:
            assert "train_tokens_at_most" in [n for n, _ in c.requires], f"{name}: {c.text!r}"
