"""Tasks from reasoning-gym: seeded train / held-out splits, chat prompts, answer extraction, verification.

``TaskSpec(name="chain_sum", config={...})`` names any reasoning-gym dataset and its config.  The
train and eval splits are generated from different seeds derived from ``TaskSpec.seed`` and are
de-duplicated against each other, so a held-out problem never appears in training.  Verification
is the dataset's own ``score_answer``; extraction takes the ``<answer>`` tag the prompt asks for,
else a trailing "answer: X", else (for numeric answers) the last number in the completion.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from rlbook.config import ParamError

INSTRUCTIONS = {
    "plain": "Reply with the answer only.",
    "tag": "Put the final answer between <answer> and </answer>.",
}
_TAG = re.compile(r"<answer>\s*(.*?)\s*</answer>", re.S | re.I)
_SAYS = re.compile(r"answer(?: is)?\s*[:=]?\s*([^\n]+)", re.I)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def available() -> list[str]:
    """Names of the reasoning-gym datasets that can be used as tasks."""
    import reasoning_gym

    return sorted(reasoning_gym.factory.DATASETS)


@dataclass
class TaskSpec:
    """Which reasoning-gym dataset, its config, split sizes and seed."""

    name: str = "chain_sum"  # a reasoning-gym task, or "hub:ID" / "file:PATH" (rlbook.hub)
    config: dict[str, Any] = field(default_factory=dict)  # reasoning_gym.create_dataset kwargs, or rlbook.hub.CONFIG
    train_size: int = 1000
    eval_size: int = 200
    seed: int = 0
    answer_format: str = "plain"  # "plain": the answer alone; "tag": inside <answer>...</answer>
    instruction: str | None = None  # appended to every question; None: the answer_format's own
    system_prompt: str | None = "You are a concise assistant."  # None: the chat template's default

    def __post_init__(self) -> None:
        from rlbook import hub

        if hub.is_hub_name(self.name):  # "hub:owner/name" or "file:path": a data set (rlbook.hub)
            hub.check_spec(self.name, self.config)
        elif self.name not in (names := available()):
            raise ParamError(f"task.name={self.name!r} is not a reasoning-gym task; available: {', '.join(names)}; "
                             "or a data set 'hub:ID' / 'file:PATH' (rlbook.hub)")
        for key, n in (("train_size", self.train_size), ("eval_size", self.eval_size)):
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise ParamError(f"task.{key}={n!r} must be an integer >= 1")
        if self.answer_format not in INSTRUCTIONS:
            raise ParamError(f"task.answer_format={self.answer_format!r} is not allowed; allowed: {', '.join(INSTRUCTIONS)}")
        if self.instruction is None:
            self.instruction = INSTRUCTIONS[self.answer_format]
        if not isinstance(self.config, dict):
            raise ParamError(f"task.config={self.config!r} must be a mapping")


@dataclass
class Problem:
    """One question with its reference answer, the chat messages to prompt with, and its index."""

    index: int
    question: str
    answer: str
    messages: list[dict[str, str]]
    entry: dict[str, Any]  # the reasoning-gym entry (for score_answer)


def extract_answer(completion: str, numeric: bool = True) -> str | None:
    """The answer a completion gives: the ``<answer>`` tag, else 'answer: X', else the last number."""
    tags = _TAG.findall(completion)
    if tags:
        return tags[-1].strip()
    says = _SAYS.findall(completion)
    if says:
        text = says[-1].strip().rstrip(".")
        if numeric:
            nums = _NUMBER.findall(text)
            return nums[0] if nums else text
        return text
    if numeric:
        nums = _NUMBER.findall(completion)
        return nums[-1] if nums else None
    return None


def has_answer_tag(completion: str) -> bool:
    return bool(_TAG.search(completion))


def is_well_formatted(completion: str, answer_format: str) -> bool:
    """Whether the completion gives its answer in the requested form (tag, or the answer alone)."""
    if answer_format == "tag":
        return has_answer_tag(completion)
    text = completion.strip().rstrip(".").strip()
    return bool(text) and "\n" not in text and len(text.split()) <= 3


class Task:
    """A reasoning-gym dataset split into train and eval problems."""

    def __init__(self, spec: TaskSpec):
        import random

        import reasoning_gym

        self.spec = spec
        try:
            pool = reasoning_gym.create_dataset(
                spec.name, size=spec.train_size + 2 * spec.eval_size + 200, seed=spec.seed, **spec.config
            )
        except TypeError as e:
            raise ParamError(f"task.config for {spec.name!r} is invalid: {e}") from e
        self._dataset = pool
        unique: dict[str, dict[str, Any]] = {}
        for entry in pool:
            unique.setdefault(entry["question"], entry)
        entries = list(unique.values())
        random.Random(spec.seed).shuffle(entries)
        if len(entries) <= spec.eval_size:
            raise ParamError(
                f"task {spec.name!r} with config {spec.config} has only {len(entries)} distinct questions; "
                f"task.eval_size={spec.eval_size} must be smaller so that some remain for training"
            )
        # Held-out questions first, then training questions: the two never share a question.
        self.eval = [self._problem(i, e) for i, e in enumerate(entries[: spec.eval_size])]
        train = entries[spec.eval_size : spec.eval_size + spec.train_size]
        self.train = [self._problem(i, e) for i, e in enumerate(train)]
        self.numeric = all(_NUMBER.fullmatch(p.answer.strip()) for p in self.train[:50])

    def _problem(self, index: int, entry: dict[str, Any]) -> Problem:
        content = f"{entry['question']} {self.spec.instruction}".strip()
        messages = [{"role": "user", "content": content}]
        if self.spec.system_prompt is not None:
            messages.insert(0, {"role": "system", "content": self.spec.system_prompt})
        return Problem(index=index, question=entry["question"], answer=str(entry["answer"]), messages=messages, entry=entry)

    def score(self, problem: Problem, completion: str) -> float:
        """The task's own verifier applied to the extracted answer (1.0 = correct)."""
        answer = extract_answer(completion, numeric=self.numeric)
        if answer is None:
            return 0.0
        return float(self._dataset.score_answer(answer, problem.entry))

    def __repr__(self) -> str:
        return f"Task({self.spec.name!r}, train={len(self.train)}, eval={len(self.eval)}, config={self.spec.config})"


def make_task(spec: TaskSpec | dict[str, Any]) -> Task:
    """The task a spec names: a reasoning-gym task, or a hub / local data set (``rlbook.hub.HubTask``)."""
    from rlbook import hub
    from rlbook.config import build

    spec = build(TaskSpec, spec, "task")
    return hub.HubTask(spec) if hub.is_hub_name(spec.name) else Task(spec)  # type: ignore[return-value]
