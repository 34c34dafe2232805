"""Progress bars: ``tqdm.auto`` (widgets in JupyterLab, text elsewhere), or text bars when ``RLBOOK_PROGRESS=text``.

``rlbook run`` sets ``RLBOOK_PROGRESS=text`` for the notebook's kernel, so that the bars it streams to the
terminal are lines of text (a widget has no text a terminal can show); run by hand in JupyterLab, the bars are
ipywidgets.
"""

from __future__ import annotations

import os
from typing import Any


def tqdm(*args: Any, **kwargs: Any) -> Any:
    """A progress bar: ``tqdm.std.tqdm`` when ``RLBOOK_PROGRESS=text``, else ``tqdm.auto.tqdm``."""
    if os.environ.get("RLBOOK_PROGRESS") == "text":
        from tqdm.std import tqdm as bar
    else:
        from tqdm.auto import tqdm as bar
    return bar(*args, **kwargs)
