"""Parameter resolution: profiles, --params files, dotted overrides, validation errors."""

from __future__ import annotations

import importlib.util
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest
from rlbook.core.config import ParamError
from rlbook.training import params as P

FIXTURES = Path(__file__).parent / "fixtures"
PARAMS = FIXTURES / "params"


def resolve(notebook: str = "nested", *args, **kwargs):
    kwargs.setdefault("sections", {})
    return P.resolve(notebook, *args, params_dir=PARAMS, **kwargs)


def test_defaults_without_profile() -> None:
    assert resolve("tiny", sections=None) == {
        "scale": 1.0,
        "steps": 3,
        "label": "tiny",
        "fail": False,
        "sleep_s": 0.0,
        "seed": 0,
    }


def test_profile_merges_and_int_becomes_float() -> None:
    out = resolve("tiny", "cpu")
    assert out["steps"] == 4 and out["scale"] == 2.0 and isinstance(out["scale"], float)
    assert out["label"] == "tiny"


def test_nested_profile_merges_key_by_key() -> None:
    out = resolve("nested", "smoke")
    assert out["opts"] == {"depth": 2, "inner": {"width": 1, "name": "a"}}


def test_unknown_profile_lists_allowed() -> None:
    with pytest.raises(ParamError, match=r"unknown profile 'tpu' for nested; allowed: smoke, cpu"):
        resolve("nested", "tpu")


def test_missing_params_file() -> None:
    with pytest.raises(ParamError, match="no params file"):
        resolve("nope")


def test_overrides_parse_yaml_and_reach_into_dicts() -> None:
    out = resolve(
        "nested",
        "cpu",
        overrides=["methods=[grpo, bnpo]", "opts.inner.width=7", "opts.depth=3", "lr=1e-4", "note=hi there"],
    )
    assert out["methods"] == ["grpo", "bnpo"]
    assert out["opts"] == {"depth": 3, "inner": {"width": 7, "name": "a"}}
    assert out["lr"] == pytest.approx(1e-4) and isinstance(out["lr"], float)
    assert out["note"] == "hi there"


def test_params_file_merges_before_overrides(tmp_path: Path) -> None:
    extra = tmp_path / "extra.yaml"
    extra.write_text("lr: 0.5\nopts: {depth: 9}\n")
    out = resolve("nested", "cpu", params_file=extra, overrides=["opts.depth=1"])
    assert out["lr"] == 0.5 and out["opts"]["depth"] == 1 and out["opts"]["inner"]["width"] == 4


def test_unknown_key_names_it_and_the_allowed_ones() -> None:
    with pytest.raises(ParamError) as e:
        resolve("nested", overrides=["nonexistent=1"])
    msg = str(e.value)
    assert "'nonexistent'" in msg and "allowed: lr, methods, note, opts, seeds, verbose" in msg
    assert "\n" not in msg


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("lr=fast", "lr='fast' must be a number"),
        ("verbose=1", "verbose=1 must be true or false"),
        ("methods=grpo", "methods='grpo' must be list"),
        ("opts=3", "opts=3 must be dict"),
    ],
)
def test_bad_type(override: str, fragment: str) -> None:
    with pytest.raises(ParamError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        resolve("nested", overrides=[override])


def test_int_default_rejects_float_and_bool() -> None:
    with pytest.raises(ParamError, match="steps=2.5 must be an integer"):
        resolve("tiny", overrides=["steps=2.5"])
    with pytest.raises(ParamError, match="steps=True must be an integer"):
        resolve("tiny", overrides=["steps=true"])


def test_none_default_accepts_anything() -> None:
    assert resolve("nested", overrides=["note={a: 1}"])["note"] == {"a": 1}


def test_dotted_override_through_a_non_mapping() -> None:
    with pytest.raises(ParamError, match="cannot set lr.x: lr is 0.001, not a mapping"):
        resolve("nested", overrides=["lr.x=1"])


@pytest.mark.parametrize("text", ["noequals", "=3"])
def test_malformed_override(text: str) -> None:
    with pytest.raises(ParamError, match="must look like key=value"):
        resolve("nested", overrides=[text])


@dataclass
class Opts:
    depth: int = 1
    inner: dict | None = None

    def __post_init__(self) -> None:
        if self.depth > 5:
            raise ParamError(f"opts.depth={self.depth!r} must be <= 5")


def test_section_validated_by_its_dataclass() -> None:
    sections = {"opts": Opts}
    assert resolve("nested", overrides=["opts.depth=5"], sections=sections)["opts"]["depth"] == 5
    with pytest.raises(ParamError, match="opts.depth=6 must be <= 5"):
        resolve("nested", overrides=["opts.depth=6"], sections=sections)
    with pytest.raises(ParamError, match="unknown key opts.colour; allowed: depth, inner"):
        resolve("nested", overrides=["opts.colour=red"], sections=sections)


def test_params_hash_is_stable_and_order_free() -> None:
    assert P.params_hash({"a": 1, "b": [1, 2]}) == P.params_hash({"b": [1, 2], "a": 1})
    assert P.params_hash({"a": 1}) != P.params_hash({"a": 2})
    assert len(P.params_hash({})) == 8


def test_find_root_walks_up_and_env_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "params").mkdir()
    (tmp_path / "notebooks").mkdir()
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    monkeypatch.delenv("RLBOOK_ROOT", raising=False)
    assert P.find_root(deep) == tmp_path.resolve()
    monkeypatch.setenv("RLBOOK_ROOT", str(FIXTURES))
    assert P.find_root(deep) == FIXTURES.resolve()
    assert P.available() == ["tiny"]


def test_reserved_names_rejected_in_defaults(tmp_path: Path) -> None:
    (tmp_path / "x.yaml").write_text("defaults: {run_dir: null, a: 1}\n")
    with pytest.raises(ParamError, match="'run_dir' is set by the run machinery"):
        P.resolve("x", params_dir=tmp_path)


def _train_stack_importable() -> bool:
    names = ["rlbook.mechanisms.estimators", "rlbook.mechanisms.losses", "rlbook.mechanisms.rewards", "rlbook.mechanisms.sampling", "rlbook.data.tasks"]
    return all(importlib.util.find_spec(n) is not None for n in names)


@pytest.mark.skipif(
    not _train_stack_importable(), reason="rlbook estimators/losses/rewards/sampling/tasks not there yet"
)
def test_train_section_uses_trainconfig(tmp_path: Path) -> None:
    (tmp_path / "t.yaml").write_text("defaults:\n  train: {steps: 2}\n  lora: {r: 4}\n")
    assert P.resolve("t", overrides=["train.steps=3"], params_dir=tmp_path)["train"] == {"steps": 3}
    with pytest.raises(ParamError, match="train.estimator='nope' is not allowed; allowed: "):
        P.resolve("t", overrides=["train.estimator=nope"], params_dir=tmp_path)
    with pytest.raises(ParamError, match="unknown key train.stepz"):
        P.resolve("t", overrides=["train.stepz=3"], params_dir=tmp_path)


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ({"seeds": 0}, "seeds=0 must be at least 1 (3 or more for a verdict)"),
        ({"eval_size": -5}, "eval_size=-5 must be at least 1"),
        ({"baseline": "PPO"}, "baseline='PPO' is not one of the methods; allowed: GRPO, DAPO"),
    ],
)
def test_values_no_run_can_use_fail_at_the_edge(override: dict, fragment: str) -> None:
    defaults = {"seeds": 3, "eval_size": 1000, "methods": {"GRPO": "grpo", "DAPO": "dapo"}, "baseline": "GRPO"}
    with pytest.raises(ParamError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        P.validate({**defaults, **override}, defaults, sections={})


def test_a_baseline_among_a_list_of_methods_passes() -> None:
    defaults = {"seeds": 1, "methods": ["grpo", "dr_grpo"], "baseline": "grpo"}
    assert P.validate(defaults, defaults, sections={})["baseline"] == "grpo"


def test_zero_training_steps_warn_that_every_method_is_its_start_model() -> None:
    defaults = {"seeds": 3, "train": {"steps": 6, "lr": 0.0005}}
    with pytest.warns(UserWarning, match="train.steps=0: no method trains"):
        P.validate({**defaults, "train": {"steps": 0, "lr": 0.0005}}, defaults, sections={})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        P.validate(defaults, defaults, sections={})
