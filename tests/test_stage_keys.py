"""Stage cache keys are derived, not hand-kept (rlbook.training.stages): a stage's key hashes every field of its typed
parameters and its upstream stages' keys, and a stage can read no parameter outside its fields.  For every
pipeline notebook (MALT, Digi-Q, continual post-training, Best-of-N) and every parameter of its defaults,
changing that parameter changes the key of exactly the stages that read it and the stages downstream of them."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from rlbook.core.errors import ParamError
from rlbook.pipelines import bon, continual, malt, qvalue
from rlbook.training import params, stages

# notebook -> (module, parameters that no stage reads: analysis and display only, or the number of stages)
PIPELINES = {
    "malt": (malt, {"seeds"}),
    "digi_q": (qvalue, {"seeds"}),
    "rft_vs_sft_forgetting": (continual, {"seeds"}),
    "self_certainty_bon": (bon, {"seeds", "ns", "borda_powers", "draws"}),
}


def graph(module, p: dict) -> dict[str, stages.Stage]:
    """Every stage of a study by a stable name (the modules' ``study_stages`` return them in different shapes)."""
    out = module.study_stages(p)
    if module is qvalue:
        data, seeds = out
        return {"data": data, **{f"seed {s.params.seed}": s for s in seeds}}
    if module is continual:
        base, seqs = out
        return {"base": base, **{f"{label} {seed}": s for (label, seed), s in seqs.items()}}
    return {f"seed {s.params.seed}": s for s in out}


def leaves_values(tree: object, path: tuple = ()) -> Iterator[tuple[tuple, object]]:
    if isinstance(tree, dict) and tree:
        for k, v in tree.items():
            yield from leaves_values(v, (*path, k))
    else:
        yield path, tree


def changed(value: object) -> object:
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str):
        return value + "_x"
    if isinstance(value, list):
        return [*value, copy.deepcopy(value[-1])] if value else [{"name": "gcd"}]
    return 1 if value is None else {"x": 1}


def set_path(tree: dict, path: tuple, value: object) -> None:
    for k in path[:-1]:
        tree = tree[k]
    tree[path[-1]] = value


def downstream(g: dict[str, stages.Stage], seeds: set[str]) -> set[str]:
    """``seeds`` and every stage that reads from one of them."""
    out = set(seeds)
    grew = True
    while grew:
        more = {n for n, s in g.items() if any(u in (g[m] for m in out) for u in s.upstream)}
        grew = not more <= out
        out |= more
    return out


@pytest.mark.parametrize("notebook", sorted(PIPELINES))
def test_changing_any_parameter_invalidates_its_stages_and_only_their_dependents(notebook):
    module, not_read = PIPELINES[notebook]
    base = params.resolve(notebook)
    g0 = graph(module, base)
    keys0 = {n: s.key for n, s in g0.items()}
    tried = 0
    for path, value in leaves_values(base):
        if path[0] in not_read:
            continue
        p = copy.deepcopy(base)
        set_path(p, path, changed(value))
        try:
            g1 = graph(module, p)
        except ParamError:  # the change is not a valid value (e.g. an arm's kind): nothing to key
            continue
        tried += 1
        assert set(g1) == set(g0), path
        read = {n for n in g0 if g1[n].params != g0[n].params}
        assert read, f"{notebook}: no stage reads {'.'.join(map(str, path))} (list it as not read, or read it)"
        moved = {n for n in g0 if g1[n].key != keys0[n]}
        assert moved == downstream(g0, read), ".".join(map(str, path))
    assert tried >= 8


@pytest.mark.parametrize("notebook", sorted(PIPELINES))
def test_every_parameter_of_a_pipeline_is_read_by_a_stage_or_declared_not_read(notebook):
    module, not_read = PIPELINES[notebook]
    base = params.resolve(notebook)
    fields = set().union(*(s.params.names() for s in graph(module, base).values()))
    assert set(base) - fields - {"arms"} == not_read  # continual's `arms` is read as each stage's `arm`
    assert not_read <= set(base)


def test_another_seed_adds_a_stage_and_keeps_the_others():
    p = params.resolve("malt")
    before = {n: s.key for n, s in graph(malt, p).items()}
    after = {n: s.key for n, s in graph(malt, {**p, "seeds": p["seeds"] + 1}).items()}
    assert {n: after[n] for n in before} == before and len(after) == len(before) + 1


@dataclass(frozen=True)
class Toy(stages.StageParams):
    k: int
    seed: int = 0


def test_a_stage_reads_only_its_own_parameters():
    p = Toy.from_params({"k": 1, "other": 2})
    assert p["k"] == 1 and p.get("seed") == 0
    with pytest.raises(KeyError, match=r"Toy has no parameter 'other' .*: k, seed"):
        p["other"]
    with pytest.raises(ParamError, match=r"Toy need 'k'"):
        Toy.from_params({"other": 2})


def test_typed_stages_compute_once_and_an_upstream_change_reruns_the_downstream_stage(tmp_path):
    calls = []

    def compute(p, folder):
        calls.append((p.k, folder.name))
        return {"k": p.k}

    up = stages.Stage("up", Toy(1))
    down = stages.Stage("down", Toy(5), (up,))
    assert down.run(tmp_path, compute) == {**down.run(tmp_path, compute), "k": 5}
    assert len(calls) == 1 and stages.Stage("down", Toy(5), (up,)).key == down.key
    down2 = stages.Stage("down", Toy(5), (stages.Stage("up", Toy(2)),))
    assert down2.key != down.key and down2.run(tmp_path, compute)["k"] == 5 and len(calls) == 2
    assert down.folder(tmp_path).is_dir() and stages.is_done(down.folder(tmp_path))
