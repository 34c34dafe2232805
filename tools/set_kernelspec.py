"""Set the kernel of notebooks to the one ``make install`` registers: ``rlbook`` ("rlbook (.venv)").

    python3 tools/set_kernelspec.py notebooks/*.ipynb     (or: make kernelspec)

Only ``metadata.kernelspec`` changes (keys keep their order, 1-space indent as the notebooks are stored), so the
diff is two lines. ``rlbook run`` picks the ``rlbook`` kernel when it is registered and ``python3`` otherwise.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

KERNELSPEC = {"display_name": "rlbook (.venv)", "language": "python", "name": "rlbook"}


def set_kernelspec(path: Path) -> bool:
    """Rewrite ``path`` with the rlbook kernelspec; returns whether it changed."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    if nb.get("metadata", {}).get("kernelspec") == KERNELSPEC:
        return False
    nb.setdefault("metadata", {})["kernelspec"] = dict(KERNELSPEC)
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return True


def main(paths: list[str]) -> int:
    changed = [p for p in paths if set_kernelspec(Path(p))]
    print(f"kernelspec 'rlbook (.venv)' set in {len(changed)} of {len(paths)} notebooks")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
