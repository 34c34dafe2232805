"""Hub and local data sets (rlbook.data.hub) and hub-style model folders, all offline.

A hand-written GSM8K-format file (tests/fixtures/hub/gsm8k_sample.jsonl), a MATH-format file, a folder laid out
like a hub data set repository (README configs + parquet shards), and tiny Llama / Qwen2 model folders written
with ``save_pretrained``: the loading code is the one a ``hub:`` name runs, nothing is downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import SPECIALS
from rlbook.core.config import ParamError
from rlbook.data import hub
from rlbook.data.tasks import TaskSpec, make_task
from rlbook.mechanisms import rewards
from rlbook.policy.models import LoraConfig, load_policy, tiny_llama

FIXTURES = Path(__file__).parent / "fixtures" / "hub"
GSM8K = FIXTURES / "gsm8k_sample.jsonl"
MATH = FIXTURES / "math_sample.jsonl"


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    for key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):
        monkeypatch.setenv(key, "1")
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))


def test_reference_answers_gsm8k_and_math_style():
    assert hub.reference_answer("so 12 * 125 = 1500\n#### 1,500") == "1500"
    assert hub.reference_answer("$x = \\boxed{\\frac{5}{6}}$.") == "\\frac{5}{6}"
    assert hub.reference_answer("first \\boxed{1} then \\boxed{2\\sqrt{2}}") == "2\\sqrt{2}"
    assert hub.reference_answer(" 42 ", "plain") == "42"
    with pytest.raises(ParamError, match="no '####'"):
        hub.reference_answer("42", "gsm8k")
    with pytest.raises(ParamError, match="boxed"):
        hub.reference_answer("42", "boxed")


@pytest.mark.parametrize(
    ("reference", "completion", "expected"),
    [
        ("29", "She has 36 - 7 = 29 pencils left.", 1.0),
        ("29", "<answer>29</answer>", 1.0),
        ("29", "<answer>30</answer> but maybe 29", 0.0),  # the tag is the answer
        ("14", "The answer is 15.", 0.0),
        ("\\frac{5}{6}", "so the sum is \\boxed{5/6}", 1.0),  # equal as numbers
        ("5\\sqrt{2}", "\\boxed{\\sqrt{50}}", 1.0),  # equal symbolically
        ("5\\sqrt{2}", "\\boxed{5\\sqrt{3}}", 0.0),
        ("150", "no number here", 0.0),
    ],
)
def test_math_verify_answer_checking(reference, completion, expected):
    assert hub.verify(reference, completion) == expected


def test_local_gsm8k_file_as_a_task():
    task = make_task({"name": f"file:{GSM8K}", "train_size": 10, "eval_size": 2, "seed": 0, "answer_format": "tag"})
    assert len(task.eval) == 2 and len(task.train) == 3
    assert not {p.question for p in task.eval} & {p.question for p in task.train}
    assert sorted(p.answer for p in task.train + task.eval) == sorted(["29", "14", "150", "450", "1500"])
    assert task.numeric
    p = task.train[0]
    assert p.messages[-1]["content"].endswith("Put the final answer between <answer> and </answer>.")
    # the registered rewards work on it as on a reasoning-gym task
    right, wrong = f"Thinking... <answer>{p.answer}</answer>", "<answer>-1</answer>"
    assert rewards.get("correct")([right, wrong], [p, p], task=task) == [1.0, 0.0]
    assert rewards.get("format")([right, "7"], [p, p], task=task) == [1.0, 0.0]
    # the same seed gives the same split
    again = make_task({"name": f"file:{GSM8K}", "train_size": 10, "eval_size": 2, "seed": 0})
    assert [q.question for q in again.eval] == [q.question for q in task.eval]


def test_math_style_file_with_its_own_field_names():
    spec = TaskSpec(name=f"file:{MATH}", config={"question_field": "problem", "answer_field": "solution"},
                    train_size=5, eval_size=1)
    task = make_task(spec)
    assert sorted(p.answer for p in task.train + task.eval) == ["4", "5\\sqrt{2}", "\\frac{5}{6}"]
    five_sixths = next(p for p in task.train + task.eval if p.answer == "\\frac{5}{6}")
    assert task.score(five_sixths, "<answer>\\frac{10}{12}</answer>") == 1.0


def write_hub_layout(root: Path) -> None:
    """A data set repository as the hub serves openai/gsm8k: README configs, ``main/{train,test}-*.parquet``."""
    import pandas as pd

    rows = [json.loads(line) for line in GSM8K.read_text().splitlines()]
    (root / "main").mkdir(parents=True)
    pd.DataFrame(rows[:4]).to_parquet(root / "main" / "train-00000-of-00001.parquet")
    pd.DataFrame(rows[4:]).to_parquet(root / "main" / "test-00000-of-00001.parquet")
    (root / "README.md").write_text(
        "---\nconfigs:\n- config_name: main\n  data_files:\n  - split: train\n    path: main/train-*\n"
        "  - split: test\n    path: main/test-*\n---\n"
    )


def test_hub_layout_with_a_test_split_offline(tmp_path):
    write_hub_layout(tmp_path / "gsm8k")
    spec = {"name": f"hub:{tmp_path / 'gsm8k'}", "config": {"subset": "main", "split": "train", "eval_split": "test"},
            "train_size": 100, "eval_size": 100}
    task = make_task(spec)
    assert [p.answer for p in task.eval] == ["1500"]  # the test split is held out
    assert sorted(p.answer for p in task.train) == ["14", "150", "29", "450"]


def test_bad_data_set_specs_name_the_problem(tmp_path):
    with pytest.raises(ParamError, match="unknown key 'question' .*; allowed: subset"):
        TaskSpec(name=f"file:{GSM8K}", config={"question": "q"})
    with pytest.raises(ParamError, match="answer_style='latex'"):
        TaskSpec(name=f"file:{GSM8K}", config={"answer_style": "latex"})
    with pytest.raises(ParamError, match="must end in one of"):
        TaskSpec(name="file:data.txt")
    with pytest.raises(ParamError, match="no such file"):
        make_task({"name": f"file:{tmp_path / 'missing.jsonl'}"})
    with pytest.raises(ParamError, match="no field 'prompt'"):
        make_task({"name": f"file:{GSM8K}", "config": {"question_field": "prompt"}, "eval_size": 1})
    with pytest.raises(ParamError, match="eval_size=5 must be smaller"):
        make_task({"name": f"file:{GSM8K}", "eval_size": 5})
    with pytest.raises(ParamError, match="is not a reasoning-gym task"):
        TaskSpec(name="gsm8k")


def save_tiny_folder(folder: Path, tok, arch: str) -> None:
    """A model folder laid out as on the hub (config.json, safetensors, tokenizer files) of a tiny model."""
    if arch == "llama":
        model = tiny_llama(vocab_size=len(SPECIALS) + 95)
    else:  # Qwen2: the architecture of Qwen2.5-*-Instruct (grouped KV heads, tied embeddings)
        from transformers import Qwen2Config, Qwen2ForCausalLM

        torch.manual_seed(0)
        cfg = Qwen2Config(vocab_size=len(SPECIALS) + 95, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                          tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=2)
        model = Qwen2ForCausalLM(cfg)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_hub_style_model_folder_trains_on_the_local_gsm8k_file(tmp_path, tok, arch):
    from rlbook.training.trainer import Trainer

    folder = tmp_path / f"tiny-{arch}"
    save_tiny_folder(folder, tok, arch)
    model, tok2 = load_policy(str(folder), lora=LoraConfig(r=2, alpha=4), device="cpu", seed=0)
    assert type(model.base_model.model).__name__ == ("LlamaForCausalLM" if arch == "llama" else "Qwen2ForCausalLM")
    assert tok2.padding_side == "left" and tok2.apply_chat_template(
        [{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False).endswith("assistant:")
    task = make_task({"name": f"file:{GSM8K}", "train_size": 10, "eval_size": 2})
    trainer = Trainer(model, tok2, task, {"prompts_per_step": 2, "group_size": 2, "max_new_tokens": 4, "steps": 1,
                                          "rewards": [{"name": "correct"}, {"name": "format", "weight": 0.5}]},
                      progress=False)
    m = trainer.step()
    assert m["step"] == 1 and 0.0 <= m["accuracy"] <= 1.0 and m["gen_tokens"] > 0
