"""The run cache cannot lie: a change to the training code changes every key, the old run is never reused,
``rlbook cache`` lists it as stale and ``--prune`` deletes it; reporting code does not invalidate runs."""

from __future__ import annotations

import shutil
from pathlib import Path

from conftest import Factory
from rlbook.application import cli
from rlbook.core import cache
from rlbook.training import experiments
from test_experiments import spec


def _copy_package(tmp_path: Path) -> Path:
    dst = tmp_path / "rlbook"
    shutil.copytree(cache.PACKAGE, dst, ignore=shutil.ignore_patterns("__pycache__"))
    return dst


def test_a_change_to_training_code_changes_the_code_version_but_reporting_code_does_not(tmp_path):
    pkg = _copy_package(tmp_path)
    before = cache.code_version(pkg)
    assert before == cache.code_version(cache.PACKAGE)  # same source, same version
    (pkg / "analysis" / "report.py").write_text((pkg / "analysis" / "report.py").read_text() + "\n# a reporting change\n")
    cache._code_version.cache_clear()
    assert cache.code_version(pkg) == before
    grpo = pkg / "mechanisms" / "estimators" / "group.py"
    source = grpo.read_text()
    assert "return grpo_advantage(" in source
    grpo.write_text(source.replace("return grpo_advantage(", "return -grpo_advantage(", 1))
    cache._code_version.cache_clear()
    assert cache.code_version(pkg) != before
    assert pkg / "training" / "trainer.py" in cache.training_sources(pkg) and pkg / "analysis" / "study.py" not in cache.training_sources(pkg)


def _imports(path: Path) -> set[str]:
    import ast

    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return names


def test_no_training_module_imports_a_module_left_out_of_the_code_version():
    """Leaving a module out of the code version is safe only if no training module can call it: a lesson figure or
    the scoreboard may change without retraining, a helper the trainer calls may not (the cache and stage plumbing
    keys runs and is the one exception)."""
    assert "analysis/lessons/" in cache.NOT_TRAINING and "application/scoreboard.py" in cache.NOT_TRAINING
    left_out = ["rlbook." + n.removesuffix(".py").removesuffix("/").replace("/", ".") for n in cache.NOT_TRAINING
                if n not in cache.PLUMBING]
    bad = [f"{p.relative_to(cache.PACKAGE)} imports {name}" for p in cache.training_sources()
           for name in _imports(p) for m in left_out if name == m or name.startswith(m + ".")]
    assert not bad, bad


def test_a_cached_run_made_by_other_code_is_never_reused_and_is_pruned_as_stale(tmp_path, monkeypatch, count_trainers):
    root = tmp_path / "cache"
    experiments.sweep([spec("GRPO")], seeds=1, cache=root, model_factory=Factory(), progress=False)
    assert len(count_trainers) == 2  # the run and the base eval
    old_key = spec("GRPO").key(0)
    monkeypatch.setattr(experiments, "code_version", lambda: "0123456789abcdef")  # the training code changed
    monkeypatch.setattr(cache, "code_version", lambda: "0123456789abcdef")
    assert spec("GRPO").key(0) != old_key
    res = experiments.sweep([spec("GRPO")], seeds=1, cache=root, model_factory=Factory(), progress=False)
    assert res.trained == 1 and len(count_trainers) == 4  # trained again, base eval again
    states = {e["key"]: e["state"] for e in cache.entries(root)}
    assert states[old_key] == "stale" and states[spec("GRPO").key(0)] == "ok"
    assert sorted(states.values()).count("stale") == 2  # the old run and the old base eval
    assert cli.main(["cache", "--root", str(root)]) == 0
    assert cli.main(["cache", "--root", str(root), "--prune"]) == 0
    assert {e["state"] for e in cache.entries(root)} == {"ok"} and not (root / old_key).exists()
