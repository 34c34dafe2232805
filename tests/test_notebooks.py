"""Every notebook: committed without outputs, parameters cell equal to its params defaults, smoke run."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rlbook.training import params as rparams

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb"))


def parameters_cell(name: str) -> dict:
    nb = json.loads((ROOT / "notebooks" / f"{name}.ipynb").read_text())
    cells = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, f"{name}: exactly one cell must be tagged 'parameters'"
    values = {}
    for node in ast.parse("".join(cells[0]["source"])).body:
        assert isinstance(node, ast.Assign), f"{name}: the parameters cell holds plain assignments only"
        values[node.targets[0].id] = ast.literal_eval(node.value)
    return values


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_committed_without_outputs(name):
    nb = json.loads((ROOT / "notebooks" / f"{name}.ipynb").read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert not cell.get("outputs") and not cell.get("execution_count"), f"{name} has outputs"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_parameters_cell_matches_params_defaults(name):
    cell = parameters_cell(name)
    defaults = rparams.load_file(name, ROOT / "params")["defaults"]
    assert cell.pop("run_dir") is None and cell.pop("profile") is None
    assert cell == defaults, f"{name}: parameters cell and params/{name}.yaml defaults differ"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_every_profile_validates(name):
    for profile in ("smoke", "cpu", "gpu"):
        rparams.resolve(name, profile, params_dir=ROOT / "params")


@pytest.fixture(scope="session")
def runs_cache(tmp_path_factory):
    """One sweep cache for the whole session: baselines (e.g. GRPO) train once and are shared."""
    return tmp_path_factory.mktemp("runs_cache")


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_with_smoke_profile(name, tmp_path, runs_cache, monkeypatch, capfd):
    """``rlbook run NAME --profile smoke``: the notebook runs in its own kernel as for a user, but the command runs
    in this test process (``cli.main``), not a subprocess, so the planning imports (torch, transformers,
    reasoning-gym: ~10 CPU-seconds measured) are paid once per test worker, not once per notebook."""
    from rlbook.application import cli

    out = tmp_path / "outputs"
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("RLBOOK_RUNS_CACHE", str(runs_cache))
    # one torch thread each: the tests run notebooks two at a time (pytest -n 2) on two cores
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("RLBOOK_PROGRESS", "text")  # the command sets it for its kernels; restored after the test
    code = cli.main(["run", name, "--profile", "smoke", "--outputs", str(out)])
    captured = capfd.readouterr()
    assert code == 0, captured.out[-3000:] + captured.err[-3000:]
    (folder,) = list((out / name).iterdir())
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["status"] == "ok"
    for f in ("report.html", f"{name}.ipynb", "results.json"):
        assert (folder / f).exists(), f
    assert list((folder / "figures").glob("*.png")), "no figures"
    results = json.loads((folder / "results.json").read_text())
    if name == "quickstart":
        assert 0.0 <= results["base_accuracy"] <= 1.0 and 0.0 <= results["final_accuracy"] <= 1.0
        assert (folder / "metrics.csv").exists()


def _code_lines(name: str) -> list[str]:
    nb = json.loads((ROOT / "notebooks" / f"{name}.ipynb").read_text())
    lines = []
    for cell in nb["cells"]:
        if cell["cell_type"] == "code" and "parameters" not in cell.get("metadata", {}).get("tags", []):
            lines += [ln.strip() for ln in "".join(cell["source"]).splitlines() if ln.strip()]
    return lines


def test_notebooks_share_no_block_of_more_than_five_identical_code_lines():
    """A new notebook needs no copied code: any algorithm two notebooks need belongs in lib/."""
    seen: dict[tuple[str, ...], str] = {}
    for name in NOTEBOOKS:
        lines = _code_lines(name)
        for i in range(len(lines) - 5):
            block = tuple(lines[i : i + 6])
            other = seen.setdefault(block, name)
            assert other == name, f"{name} and {other} share these 6 code lines:\n" + "\n".join(block)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_opens_with_the_rlbook_kernel(name):
    nb = json.loads((ROOT / "notebooks" / f"{name}.ipynb").read_text())
    assert nb["metadata"]["kernelspec"]["name"] == "rlbook", f"{name}: run `make kernelspec`"


def test_method_catalog_is_generated_from_the_notebooks(tmp_path):
    # docs/METHODS.md is made by docs/make_methods_md.py from the README table, notebooks and presets
    import shutil

    out = tmp_path / "METHODS.md"
    shutil.copy(ROOT / "docs" / "METHODS.md", out)
    subprocess.run([sys.executable, str(ROOT / "docs" / "make_methods_md.py"), str(out)], check=True,
                   capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT / "lib")})
    assert out.read_text() == (ROOT / "docs" / "METHODS.md").read_text(), "run docs/make_methods_md.py"
