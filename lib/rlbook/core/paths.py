"""Where the workbook lives on disk (a leaf module)."""

from __future__ import annotations

import os
from pathlib import Path

from rlbook.core.errors import ParamError


def find_root(start: Path | None = None) -> Path:
    """The repo root: ``$RLBOOK_ROOT``, else the first folder up from ``start`` (cwd) holding
    both ``params/`` and ``notebooks/``."""
    if os.environ.get("RLBOOK_ROOT"):
        return Path(os.environ["RLBOOK_ROOT"]).expanduser().resolve()
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "params").is_dir() and (folder / "notebooks").is_dir():
            return folder
    raise ParamError(f"no rlbook root above {here} (a folder with params/ and notebooks/); set RLBOOK_ROOT")
