"""One test per row of docs/BAD_INPUT.md: exit code 2, the message, and no run folder; or, for a model
that cannot be loaded (only known once the run tries it), a folder whose manifest says ``failed``."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
from rlbook.application import cli
from rlbook.training import runs

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "BAD_INPUT.md").read_text()


@pytest.fixture(autouse=True)
def repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RLBOOK_ROOT", str(ROOT))


def bad(argv: list[str], outputs: Path, capsys: pytest.CaptureFixture[str], *expected: str) -> str:
    """Run the CLI in-process: exit 2, one stderr line holding every expected piece, nothing written."""
    assert cli.main([*argv, "--outputs", str(outputs)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rlbook: error: ") and "\n" not in err, err
    for piece in expected:
        assert piece in err, (piece, err)
    assert not outputs.exists()
    return err


ROWS = [  # (row of the doc, -p overrides / flags, expected pieces of the message)
    ("unknown params key", ["-p", "nonexistent=1"],
     ["unknown parameter 'nonexistent'; allowed: eval_size, lora, model, show_examples, task, train"]),
    ("unknown key in a section", ["-p", "train.foo=1"], ["unknown key train.foo; allowed: seed, steps,"]),
    ("bad type", ["-p", "show_examples=1.5"], ["show_examples=1.5 must be an integer (like the default 8)"]),
    ("bad type", ["-p", "train.lr=abc"], ["train.lr='abc' must be a number"]),
    ("bad type", ["-p", "lora.r=abc"], ["lora: lora.r='abc' must be an integer"]),
    ("out-of-range value", ["-p", "train.lr=-1"], ["train.lr=-1 must be >= 0.0"]),
    ("out-of-range value", ["-p", "train.top_p=2"], ["train.top_p=2 must be <= 1.0"]),
    ("count below 1", ["-p", "eval_size=0"], ["eval_size=0 must be at least 1"]),
    ("unknown estimator", ["-p", "train.estimator=nope"], ["train.estimator='nope' is not allowed; allowed: ", "grpo"]),
    ("unknown loss", ["-p", "train.loss=nope"], ["train.loss='nope' is not allowed; allowed: ", "ppo_clip"]),
    ("unknown reward", ["-p", "train.rewards=[{name: nope}]"],
     ["train.rewards[0].name='nope' is not allowed; allowed: ", "correct"]),
    ("unknown task", ["-p", "task.name=nope"], ["task.name='nope' is not a reasoning-gym task; available: ", "chain_sum"]),
    ("unknown sampler", ["-p", "train.sampler=nope"], ["train.sampler='nope' is not allowed; allowed: ", "knapsack", "uniform"]),
    ("unknown profile", ["--profile", "tpu"], ["unknown profile 'tpu' for quickstart; allowed: smoke, cpu, gpu"]),
    ("bad `-p` syntax", ["-p", "foo"], ["override 'foo' must look like key=value"]),
    ("bad `-p` syntax", ["-p", "train.steps=[1"], ["override train.steps: value '[1' is not valid YAML"]),
]


@pytest.mark.parametrize(("row", "flags", "expected"), ROWS, ids=[f"{r[0]}:{' '.join(r[1])}" for r in ROWS])
def test_bad_parameter(row: str, flags: list[str], expected: list[str], tmp_path: Path,
                       capsys: pytest.CaptureFixture[str]) -> None:
    assert f"| {row} |" in DOC
    bad(["run", "quickstart", *flags], tmp_path / "outputs", capsys, *expected)


METHOD_ROWS = [  # (row of the doc, the methods table given with -p to `rlbook run knapsack --profile smoke`, pieces)
    ("unknown method preset", "{GRPO: grpo, Bad: {preset: knapsak}}",
     ["methods['Bad']: method preset 'knapsak' is unknown; available: ", "knapsack"]),
    ("bad sampler hyper-parameter", "{GRPO: grpo, K: {preset: knapsack, sampler_kwargs: {nn: 1}}}",
     ["methods['K']: train.sampler: sampler 'knapsack' got unknown hyper-parameter(s) nn; allowed: n, min_n"]),
    ("bad sampler hyper-parameter", "{GRPO: grpo, K: {preset: knapsack, sampler_kwargs: {min_n: 0}}}",
     ["methods['K']: knapsack needs n >= 1 and 1 <= min_n <= max_n; got n=8, min_n=0, max_n=128"]),
    ("bad estimator hyper-parameter", "{GRPO: grpo, B: {preset: bnpo, estimator_kwargs: {nope: 1}}}",
     ["methods['B']: train.estimator: estimator 'bnpo' got unknown hyper-parameter(s) nope; allowed: "]),
    ("unknown loss in a method", "{GRPO: grpo, L: {preset: grpo, loss: nope}}",
     ["methods['L']: train.loss='nope' is not allowed; allowed: ", "ppo_clip"]),
    ("group narrower than the sampler's budgets", "{GRPO: grpo, K: {preset: knapsack, group_size: 8}}",
     ["methods['K']: train.group_size=8 is narrower than the 14 completions sampler 'knapsack' can ask for one "
      "prompt (prompts_per_step=2)"]),
]


@pytest.mark.parametrize(("row", "methods", "expected"), METHOD_ROWS, ids=[f"{r[0]}:{r[1]}" for r in METHOD_ROWS])
def test_bad_method(row: str, methods: str, expected: list[str], tmp_path: Path,
                    capsys: pytest.CaptureFixture[str]) -> None:
    assert f"| {row} |" in DOC
    bad(["run", "knapsack", "--profile", "smoke", "-p", f"methods={methods}"], tmp_path / "outputs", capsys, *expected)


def test_jobs_below_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "| jobs below 1 |" in DOC
    bad(["run", "quickstart", "--jobs", "0"], tmp_path / "outputs", capsys,
        "--jobs 0 must be at least 1 (training processes at once; 1 trains one run at a time)")


def test_baseline_not_among_the_methods(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "| baseline not among the methods |" in DOC
    bad(["run", "knapsack", "--profile", "smoke", "-p", "baseline=PPO"], tmp_path / "outputs", capsys,
        "baseline='PPO' is not one of the methods; allowed: GRPO, ")


def test_misspelt_preset_exits_2_in_seconds_with_no_run_folder(tmp_path: Path) -> None:
    """The command of docs/BAD_INPUT.md as a user types it: a fresh process, exit 2, the preset and the allowed
    ones named, nothing written; its CPU time is the imports' (wall time on a busy machine is not)."""
    outputs = tmp_path / "outputs"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run([sys.executable, "-m", "rlbook.application.cli", "run", "knapsack", "--profile", "smoke", "-p",
                           "methods={GRPO: grpo, Bad: {preset: knapsak}}", "--outputs", str(outputs)],
                          capture_output=True, text=True, timeout=120, env=os.environ.copy())
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("rlbook: error: methods['Bad']: method preset 'knapsak' is unknown; available: ")
    assert "knapsack" in done.stderr.split("available: ")[1]
    assert not outputs.exists()
    assert cpu < 30, cpu


def test_unknown_notebook(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "| unknown notebook |" in DOC
    bad(["run", "nope"], tmp_path / "outputs", capsys, "unknown notebook 'nope'; available: ", "quickstart")


@pytest.mark.parametrize(("row", "text", "expected"), [
    ("malformed YAML file", "train: {steps: [1\n", ["bad.yaml: not valid YAML: "]),
    ("params file not a mapping", "- 1\n- 2\n", ["bad.yaml must be a mapping of parameter values"]),
])
def test_bad_params_file(row: str, text: str, expected: list[str], tmp_path: Path,
                         capsys: pytest.CaptureFixture[str]) -> None:
    assert f"| {row} |" in DOC
    (tmp_path / "bad.yaml").write_text(text)
    bad(["run", "quickstart", "--params", str(tmp_path / "bad.yaml")], tmp_path / "outputs", capsys, *expected)


def test_missing_params_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "| missing params file |" in DOC
    missing = tmp_path / "missing.yaml"
    bad(["run", "quickstart", "--params", str(missing)], tmp_path / "outputs", capsys, f"--params {missing}: no such file")


def test_unsafe_yaml_tag_is_refused_and_never_executed(tmp_path: Path) -> None:
    assert "| unsafe YAML tag |" in DOC
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.yaml"
    evil.write_text(f"show_examples: !!python/object/apply:os.system ['touch {marker}']\n")
    outputs = tmp_path / "outputs"
    done = subprocess.run([sys.executable, "-m", "rlbook.application.cli", "run", "quickstart", "--params", str(evil),
                           "--outputs", str(outputs)], capture_output=True, text=True, timeout=120,
                          env=os.environ.copy())
    assert done.returncode == 2, done.stderr
    assert "not valid YAML: could not determine a constructor for the tag " in done.stderr
    assert "python/object/apply:os.system" in done.stderr and done.stderr.strip().count("\n") == 0
    assert not marker.exists() and not outputs.exists()


# ---------------------------------------------------------------- resume


def test_resume_of_a_folder_that_is_not_a_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "| resume: not a run folder |" in DOC
    err = bad(["resume", str(tmp_path / "somewhere")], tmp_path / "outputs", capsys)
    assert "somewhere is not a run folder (no manifest.json)" in err


def test_resume_of_a_running_run_with_new_params_or_of_another_notebook(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for row in ("resume: run still running", "resume with new params", "resume of another notebook's run"):
        assert f"| {row} |" in DOC
    run_dir, before = runs.create("estimator_lab", {"a": 1}, tmp_path / "runs", ROOT)  # pid: this live process
    outputs = tmp_path / "outputs"
    bad(["resume", str(run_dir)], outputs, capsys, f"{run_dir} is still running (pid {os.getpid()} on ")
    bad(["run", "quickstart", "--resume", str(run_dir), "-p", "train.steps=1"], outputs, capsys,
        "--resume continues a run with the parameters it recorded; drop -p")
    bad(["run", "quickstart", "--resume", str(run_dir)], outputs, capsys,
        f"{run_dir} is a run of 'estimator_lab', not 'quickstart'")
    assert json.loads((run_dir / "manifest.json").read_text()) == before


# ---------------------------------------------------------------- a model that cannot be loaded


def test_unloadable_model_message_says_what_was_tried() -> None:
    from rlbook.policy.models import ModelLoadError, load_policy

    with pytest.raises(ModelLoadError) as e:
        load_policy("/does/not/exist")
    msg = str(e.value)
    assert msg.startswith("cannot load model '/does/not/exist': tried local folder '/does/not/exist' (does not exist)")
    assert "Hugging Face hub id '/does/not/exist'" in msg and "Use 'smollm2-135m-instruct' (embedded, offline)" in msg


@pytest.mark.slow
def test_unloadable_model_leaves_a_failed_manifest_with_the_message(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    assert "| unloadable model path or id |" in DOC
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    outputs = tmp_path / "outputs"
    assert cli.main(["run", "quickstart", "--profile", "smoke", "-p", "model=/does/not/exist",
                     "--outputs", str(outputs)]) == 1
    (run_dir,) = (outputs / "quickstart").iterdir()
    m = runs.load(run_dir).manifest
    assert m["status"] == "failed"
    assert m["error"].startswith("ModelLoadError: cannot load model '/does/not/exist': tried local folder")
    assert "ModelLoadError" in m["traceback"]


def test_every_row_of_the_table_has_a_test() -> None:
    rows = [line.split("|")[1].strip() for line in DOC.split("Failures during training")[0].splitlines()
            if line.startswith("| ") and not line.startswith("| bad input")]
    source = Path(__file__).read_text()
    missing = [r for r in rows if f'"{r}"' not in source and f"| {r} |" not in source]
    assert not missing, missing


def test_sweep_reuse_finds_the_finished_run_with_the_same_params(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from rlbook.training import params as P

    outputs = tmp_path / "outputs"
    params = P.resolve("quickstart", "smoke", params_dir=ROOT / "params")
    other, _ = runs.create("quickstart", {**params, "show_examples": 1}, outputs, ROOT)
    runs.finish(other, "ok")
    done, _ = runs.create("quickstart", params, outputs, ROOT)
    runs.finish(done, "ok")
    assert runs.find_same(outputs, "quickstart", params).dir == done
    assert cli.main(["run", "quickstart", "--profile", "smoke", "--reuse", "--outputs", str(outputs)]) == 0
    assert f"{done} finished ok; reusing it" in capsys.readouterr().err
    assert len(list((outputs / "quickstart").iterdir())) == 2
