"""The library's exceptions (a leaf module: it imports nothing from rlbook)."""

from __future__ import annotations


class ParamError(ValueError):
    """A bad parameter: the message names the key, the bad value and what is allowed."""


class TrainingError(RuntimeError):
    """Training cannot continue (e.g. too many consecutive non-finite steps, out of memory twice)."""
