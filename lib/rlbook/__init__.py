"""rlbook: replicate RL-for-LLM methods at laptop scale.

The package is one folder per layer of the import contract (``docs/ARCHITECTURE.md``; top to bottom:
application, analysis, pipelines, training, mechanisms, policy, data, core).  The old flat paths
(``rlbook.study``, ``rlbook.trainer``, ``rlbook.estimators.group`` ...) keep working: :class:`_Aliases`
imports the module at its new place (:data:`rlbook._layout.ALIASES`) and returns that very object, so
``rlbook.study is rlbook.analysis.study`` and pickles that name an old path load.  A name that is neither
gives an ``ImportError`` naming the modules that exist.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import ModuleType

from rlbook._layout import ALIASES

__version__ = "0.1.0"


def _target(fullname: str) -> str | None:
    """The new path of an old one: the module itself or a submodule of a moved package."""
    head = fullname
    while head.count("."):
        if head in ALIASES:
            return ALIASES[head] + fullname[len(head):]
        head = head.rpartition(".")[0]
    return None


class _Aliases(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """``import rlbook.<old>`` -> the module at its new place, the same object (registered once)."""

    def __init__(self) -> None:
        self._specs: dict[str, importlib.machinery.ModuleSpec] = {}

    def find_spec(self, fullname, path=None, target=None):
        new = _target(fullname)
        if new is None:
            public = fullname.startswith("rlbook.") and fullname.count(".") == 1 and not fullname[7:].startswith("_")
            if public and "rlbook" in sys.modules \
                    and importlib.machinery.PathFinder.find_spec(fullname, sys.modules["rlbook"].__path__) is None:
                raise ModuleNotFoundError(_unknown(fullname), name=fullname)
            return None
        real = importlib.util.find_spec(new)
        if real is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, self, origin=real.origin,
                                              is_package=real.submodule_search_locations is not None)

    def create_module(self, spec) -> ModuleType:
        module = importlib.import_module(_target(spec.name))
        self._specs[module.__name__] = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        # the import system set __spec__ to the alias's: give the module back its own (reload, pickle, -m)
        module.__spec__ = self._specs.pop(module.__name__, module.__spec__)

    def get_code(self, fullname):
        """``python -m rlbook.<old>`` runs the module at its new place."""
        new = _target(fullname)
        return importlib.util.find_spec(new).loader.get_code(new)


def _unknown(fullname: str) -> str:
    folders = sorted({new.split(".")[1] for new in ALIASES.values()})
    return (f"no module named {fullname!r}: rlbook's modules live in the folders {', '.join(folders)} "
            f"(old flat names that still work: {', '.join(sorted(a.split('.', 1)[1] for a in ALIASES))})")


if not any(isinstance(f, _Aliases) for f in sys.meta_path):
    sys.meta_path.insert(0, _Aliases())
