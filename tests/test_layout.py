"""The package layout: one folder per layer of the import contract, and the old flat paths still import."""

from __future__ import annotations

import importlib
import pickle
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import rlbook
from rlbook._layout import ALIASES, FOLDERS

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "lib" / "rlbook"


def _floor_names(floor: str) -> list[str]:
    return [n.strip() for n in floor.replace(":", "|").split("|")]


@pytest.mark.parametrize("old", sorted(ALIASES))
def test_every_old_module_path_is_the_new_module_object(old):
    new = importlib.import_module(ALIASES[old])
    assert importlib.import_module(old) is new
    assert new.__name__ == ALIASES[old] and new.__spec__.name == ALIASES[old]  # its own spec, not the alias's


def test_old_names_work_in_every_import_form():
    from rlbook import study, trainer
    from rlbook.analysis.study import Study as NewStudy
    from rlbook.study import Study

    assert Study is NewStudy and study is sys.modules["rlbook.analysis.study"]
    assert trainer.Trainer is importlib.import_module("rlbook.training.trainer").Trainer
    import rlbook.estimators.group  # a moved package's submodule: loaded once, under its new name

    assert rlbook.estimators.group is importlib.import_module("rlbook.mechanisms.estimators.group")
    assert "rlbook.mechanisms.estimators.group" in sys.modules


def test_a_pickle_that_names_an_old_path_loads_the_new_class():
    from rlbook.analysis.study import Claim

    data = pickle.dumps(Claim, protocol=0)  # a class pickles by reference: "c<module>\n<name>\n"
    assert b"rlbook.analysis.study" in data
    assert pickle.loads(data.replace(b"rlbook.analysis.study", b"rlbook.study")) is Claim


def test_an_unknown_module_name_raises_an_import_error_naming_what_exists():
    with pytest.raises(ImportError) as err:
        importlib.import_module("rlbook.no_such_module")
    msg = str(err.value)
    assert "rlbook.no_such_module" in msg
    assert all(f in msg for f, _ in FOLDERS) and "study" in msg


def test_the_tree_is_the_layout_one_folder_per_layer():
    flat = sorted(p.name for p in PACKAGE.iterdir()
                  if (p.suffix == ".py" and p.stem not in ("__init__", "_layout", "__main__"))
                  or (p.is_dir() and (p / "__init__.py").exists() and p.name not in dict(FOLDERS)))
    assert flat == [], f"modules outside the layer folders: {flat}"
    for folder, floors in FOLDERS:
        listed = {n for f in floors for n in _floor_names(f)}
        present = {p.stem if p.suffix == ".py" else p.name for p in (PACKAGE / folder).iterdir()
                   if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").exists()}
        assert present == listed, f"{folder}: modules {sorted(present - listed)} not in its floors, " \
                                  f"floors {sorted(listed - present)} without a module"
    for old, new in ALIASES.items():
        assert old.count(".") == 1 and new.split(".")[1] in dict(FOLDERS), (old, new)


def test_the_import_contract_lists_each_folder_as_a_layer_and_its_floors():
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    top = contracts[0]
    assert top["type"] == "layers" and top["layers"] == [f"rlbook.{f}" for f, _ in FOLDERS]
    inner = {c["containers"][0]: c["layers"] for c in contracts[1:]}
    for folder, floors in FOLDERS:
        got = [_floor_names(f) for f in inner[f"rlbook.{folder}"]]
        assert got == [_floor_names(f) for f in floors], folder


def test_the_registries_fill_through_the_trainer_import():
    importlib.import_module("rlbook.training.trainer")
    from rlbook.mechanisms import estimators
    from rlbook.mechanisms.losses import LOSSES

    assert "grpo" in estimators.ESTIMATORS and "rloo" in estimators.ESTIMATORS and len(LOSSES.available()) > 3
    assert importlib.import_module("rlbook.estimators") is estimators


def test_python_dash_m_runs_the_cli_under_its_old_and_new_names():
    for name in ("rlbook.cli", "rlbook.application.cli"):
        out = subprocess.run([sys.executable, "-m", name, "--help"], capture_output=True, text=True, timeout=120,
                             env={"PYTHONPATH": str(PACKAGE.parent), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
        assert out.returncode == 0 and "usage: rlbook" in out.stdout, out.stderr[-2000:]
    assert rlbook.__version__


def _numbered(text: str) -> list[str]:
    """The bold names of a numbered list ``1. **collect** ...``, in order."""
    return [m.group(2) for m in re.finditer(r"^\s*(\d+)\. \*\*([^*]+)\*\*", text, re.M)]


def test_the_step_has_one_numbering_in_code_and_docs():
    trainer = importlib.import_module("rlbook.training.trainer")
    stages = _numbered(trainer.__doc__)
    assert stages[0] == "collect" and stages[-1] == "log" and len(stages) == 9
    arch = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    section = arch[arch.index("## The trainer"):]
    assert _numbered(section)[:len(stages)] == stages
    doc = " ".join(trainer.Trainer.step.__doc__.split())
    for i, name in enumerate(stages, 1):
        assert f"{i} {name.split()[0]}" in doc, (i, name)
    src = (PACKAGE / "training" / "trainer.py").read_text()
    banners = [line.rsplit("- ", 1)[1] for line in src.splitlines() if line.startswith("    # ---")]
    numbers = [int(n) for b in banners for n in b.split(".")[0].split(", ") if n.isdigit()]
    assert sorted(numbers) == [1, 2, 3, 4, 6, 7, 8, 9] and numbers[:2] == [1, 2]  # 5 (observe) is the sampler's
