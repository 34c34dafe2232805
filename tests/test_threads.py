"""rlbook.core.threads: the wait policy set where processes start, the user's settings kept."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from rlbook.core import threads


def test_passive_wait_unless_the_user_set_one_or_said_keep():
    env: dict[str, str] = {}
    assert threads.configure(env) == "PASSIVE" and env == {"OMP_WAIT_POLICY": "PASSIVE"}
    env = {"OMP_WAIT_POLICY": "ACTIVE"}
    assert threads.configure(env) == "ACTIVE" and env == {"OMP_WAIT_POLICY": "ACTIVE"}
    env = {"RLBOOK_THREADS": "keep"}
    assert threads.configure(env) is None and env == {"RLBOOK_THREADS": "keep"}


def test_the_cli_sets_it_before_torch_and_its_children_inherit_it(tmp_path):
    code = (f"import os, sys; from rlbook import cli; cli.main(['list', '--outputs', {str(tmp_path)!r}]); "
            "print(os.environ['OMP_WAIT_POLICY'], 'torch' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "RLBOOK_THREADS")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent / "lib")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.split()[-2:] == ["PASSIVE", "False"]  # set, and torch not yet imported: OpenMP will read it
