"""Lessons: what a method notebook shows *before* it measures (the worked example and the mechanism figure).

A method notebook teaches in three cells after its introduction (markdown with the paper's equation in LaTeX):

* a code cell tagged ``worked-example``: calls the **registered** mechanism (the very function the trainer
  calls, through its registry: ``estimators.compute``, ``LOSSES.call``, ``REWARDS.call`` ...) on a toy batch
  small enough to check by hand, prints the intermediate quantities next to GRPO's with :func:`side_by_side`,
  and shows the function's source with :func:`source`;
* a code cell tagged ``mechanism-figure``: a picture of what the mechanism does, drawn from the library in
  seconds (one function per method in this package's family modules, e.g. :mod:`rlbook.analysis.lessons.estimators`).

Both cells run on their own (imports included, no training, no model): ``tests/test_lessons.py`` executes them
for every notebook in a fresh namespace and checks that the worked example touched a registry entry (or, for
pipelines whose mechanism is not a registry entry, bound the function it teaches to the name ``mechanism``).
Helpers shared by several notebooks live here; a notebook holds no algorithm.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch

__all__ = ["finish", "source", "side_by_side", "toy_rewards"]


def source(fn: Callable[..., Any], *, docstring: bool = False) -> str:
    """The source of ``fn`` (a registered mechanism), without its docstring unless ``docstring=True``;
    print it in the worked example so the reader sees exactly the code the trainer runs."""
    text = textwrap.dedent(inspect.getsource(inspect.unwrap(fn)))
    if docstring:
        return text
    node = ast.parse(text).body[0]
    body = getattr(node, "body", [])
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
            and isinstance(body[0].value.value, str):
        lines = text.splitlines(keepends=True)
        del lines[body[0].lineno - 1: body[0].end_lineno]
        text = "".join(lines)
    return text


def _as_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=float)


def side_by_side(columns: Mapping[str, Any], *, group_size: int | None = None, digits: int = 3) -> pd.DataFrame:
    """A small table of per-sample quantities (one column per name; each a ``[P, G]`` tensor/array or a
    flat vector), indexed by ``(group, sample)`` when ``group_size`` is given or the first column is 2-D."""
    arrays = {k: _as_numpy(v) for k, v in columns.items()}
    if not arrays:
        raise ValueError("side_by_side needs at least one column")
    first = next(iter(arrays.values()))
    if group_size is None and first.ndim == 2:
        group_size = first.shape[1]
    flat = {k: v.reshape(-1) for k, v in arrays.items()}
    sizes = {k: v.size for k, v in flat.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"columns differ in size: {sizes}")
    n = next(iter(sizes.values()))
    if group_size:
        if n % group_size:
            raise ValueError(f"{n} values do not split into groups of {group_size}")
        index = pd.MultiIndex.from_tuples([(i // group_size, i % group_size) for i in range(n)],
                                          names=["group", "sample"])
    else:
        index = pd.RangeIndex(n, name="sample")
    return pd.DataFrame(flat, index=index).round(digits)


def toy_rewards(*groups: list[float]) -> torch.Tensor:
    """A ``[P, G]`` reward tensor from literal groups, e.g. ``toy_rewards([1, 0, 0, 0], [1, 1, 1, 0])``."""
    if not groups or len({len(g) for g in groups}) != 1:
        raise ValueError("toy_rewards needs one or more groups of equal size")
    return torch.tensor([list(map(float, g)) for g in groups], dtype=torch.float32)


def finish(fig: Any, *axes: Any) -> Any:
    """The figures' common ending: a light grid and a small legend on each of ``axes`` (a legend only where
    something is labelled), a tight layout; returns ``fig``."""
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
