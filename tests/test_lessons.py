"""Every method notebook teaches before it measures: the paper's equation in LaTeX, a ``worked-example`` cell
that runs a registered mechanism on a toy batch, and a ``mechanism-figure`` cell; the suite runs both."""

from __future__ import annotations

import json
import re
from pathlib import Path

import matplotlib
import pytest
from rlbook.core import registry

matplotlib.use("Agg")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb"))
LATEX = re.compile(r"\$\$.+?\$\$|\$[^$\n]*\\[A-Za-z]+[^$\n]*\$", re.S)


def cells(name: str) -> list[dict]:
    return json.loads((ROOT / "notebooks" / f"{name}.ipynb").read_text())["cells"]


def tagged(name: str, tag: str) -> list[str]:
    return ["".join(c["source"]) for c in cells(name) if tag in c.get("metadata", {}).get("tags", [])]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_states_the_method_in_latex(name):
    text = "\n".join("".join(c["source"]) for c in cells(name) if c["cell_type"] == "markdown")
    assert LATEX.search(text), f"{name}: no LaTeX equation ($$...$$ or $\\command...$) in its markdown"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_worked_example_and_figure_run_the_registered_mechanism(name, monkeypatch, tmp_path):
    examples, figures = tagged(name, "worked-example"), tagged(name, "mechanism-figure")
    assert len(examples) == 1, f"{name}: needs exactly one cell tagged 'worked-example', has {len(examples)}"
    assert len(figures) == 1, f"{name}: needs exactly one cell tagged 'mechanism-figure', has {len(figures)}"
    touched: list[tuple[str, str]] = []
    original = registry.Registry.entry

    def entry(self, key):
        touched.append((self.kind, key))
        return original(self, key)

    monkeypatch.setattr(registry.Registry, "entry", entry)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__lesson__"}
    exec(compile(examples[0], f"{name}:worked-example", "exec"), namespace)
    mechanism = namespace.get("mechanism")
    assert touched or (callable(mechanism) and getattr(mechanism, "__module__", "").startswith("rlbook.")
                       and not mechanism.__module__.startswith("rlbook.analysis.lessons")), \
        f"{name}: the worked example neither called a registered mechanism nor bound `mechanism` to a library function"
    import matplotlib.pyplot as plt
    before = set(plt.get_fignums())
    exec(compile(figures[0], f"{name}:mechanism-figure", "exec"), namespace)
    assert set(plt.get_fignums()) - before or namespace.get("fig") is not None, f"{name}: the figure cell drew nothing"
    plt.close("all")
