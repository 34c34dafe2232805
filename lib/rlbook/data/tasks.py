"""Tasks from reasoning-gym: seeded train / held-out splits, chat prompts, answer extraction, verification.

``TaskSpec(name="chain_sum", config={...})`` names any reasoning-gym dataset and its config.  The
train and eval splits are generated from different seeds derived from ``TaskSpec.seed`` and are
de-duplicated against each other, so a held-out problem never appears in training.  Verification
is the dataset's own ``score_answer``; extraction takes the ``<answer>`` tag the prompt asks for,
else a trailing "answer: X", else (for numeric answers) the last number in the completion.

Every :class:`Problem` carries ``meta``: its source family and per-item difficulty, read from the
reasoning-gym entry's ``metadata`` (``composite`` records the sub-dataset each entry came from).
``TaskSpec(name="composite", config={"datasets": [{"name": ..., "weight": ..., "config": {...}}]})``
mixes families; the sub-dataset specs may be plain mappings (as YAML gives them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from rlbook.core.config import ParamError
from rlbook.data.problems import ANSWER_TAG, NUMBER, Problem

INSTRUCTIONS = {
    "plain": "Reply with the answer only.",
    "tag": "Put the final answer between <answer> and </answer>.",
}
TOOLS = ("", "calculator")  # rlbook.mechanisms.toolcalls runs them; "" = no tool
# worked examples of a tool task (task.shots of them, in this order): one call, no call, one call
TOOL_SHOTS = {"": [], "calculator": [
    ("What is 23 * 47?", "<calc>23 * 47</calc><result>1081</result><answer>1081</answer>"),
    ("What is 2 + 3?", "<answer>5</answer>"),
    ("Find the GCD of 84 and 36.", "<calc>gcd(84, 36)</calc><result>12</result><answer>12</answer>"),
]}
# what a tool wrote into a completion (rlbook.mechanisms.toolcalls): never read as the policy's answer
TOOL_RESULT = re.compile(r"<result>.*?</result>", re.S)
_TAG = ANSWER_TAG
_SAYS = re.compile(r"answer(?: is)?\s*[:=]?\s*([^\n]+)", re.I)
_NUMBER = NUMBER


def available() -> list[str]:
    """Names of the reasoning-gym datasets that can be used as tasks."""
    import reasoning_gym

    return sorted(reasoning_gym.factory.DATASETS)


@dataclass
class TaskSpec:
    """Which reasoning-gym dataset, its config, split sizes and seed."""

    name: str = "chain_sum"  # a reasoning-gym task, or "hub:ID" / "file:PATH" (rlbook.data.hub)
    config: dict[str, Any] = field(default_factory=dict)  # reasoning_gym.create_dataset kwargs, or rlbook.data.hub.CONFIG
    train_size: int = 1000
    eval_size: int = 200
    seed: int = 0
    answer_format: str = "plain"  # "plain": the answer alone; "tag": inside <answer>...</answer>
    instruction: str | None = None  # appended to every question; None: the answer_format's own
    system_prompt: str | None = "You are a concise assistant."  # None: the chat template's default
    shots: int = 0  # worked examples shown as earlier chat turns (chain_sum: one running partial sum per line)
    tool: str = ""  # "calculator": the policy may call a tool mid-answer (rlbook.mechanisms.toolcalls); "" = no tool
    max_tool_calls: int = 3  # tool calls an episode may make (a further call ends it unanswered)

    def __post_init__(self) -> None:
        from rlbook.data import hub

        if hub.is_hub_name(self.name):  # "hub:owner/name" or "file:path": a data set (rlbook.data.hub)
            hub.check_spec(self.name, self.config)
        elif self.name not in (names := available()):
            raise ParamError(f"task.name={self.name!r} is not a reasoning-gym task; available: {', '.join(names)}; "
                             "or a data set 'hub:ID' / 'file:PATH' (rlbook.data.hub)")
        for key, n in (("train_size", self.train_size), ("eval_size", self.eval_size)):
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise ParamError(f"task.{key}={n!r} must be an integer >= 1")
        if self.answer_format not in INSTRUCTIONS:
            raise ParamError(f"task.answer_format={self.answer_format!r} is not allowed; allowed: {', '.join(INSTRUCTIONS)}")
        if self.instruction is None:
            self.instruction = INSTRUCTIONS[self.answer_format]
        if not isinstance(self.config, dict):
            raise ParamError(f"task.config={self.config!r} must be a mapping")
        if isinstance(self.shots, bool) or not isinstance(self.shots, int) or self.shots < 0:
            raise ParamError(f"task.shots={self.shots!r} must be an integer >= 0")
        if self.tool not in TOOLS:
            raise ParamError(f"task.tool={self.tool!r} is not allowed; allowed: {', '.join(map(repr, TOOLS))}")
        if isinstance(self.max_tool_calls, bool) or not isinstance(self.max_tool_calls, int) or self.max_tool_calls < 0:
            raise ParamError(f"task.max_tool_calls={self.max_tool_calls!r} must be an integer >= 0")
        if self.tool and self.shots > len(TOOL_SHOTS[self.tool]):
            raise ParamError(f"task.shots={self.shots}: {len(TOOL_SHOTS[self.tool])} worked examples are written for "
                             f"task.tool={self.tool!r}")
        if self.shots and not self.tool and self.name not in SHOT_WRITERS:
            raise ParamError(f"task.shots={self.shots} needs worked solutions, written only for: "
                             f"{', '.join(SHOT_WRITERS)} (got task.name={self.name!r})")


def problem_meta(entry: dict[str, Any], default_source: str) -> dict[str, Any]:
    """Source family and difficulty of one reasoning-gym entry, from its ``metadata``.

    ``difficulty`` maps each of the dataset's difficulty knobs to this item's own value when the
    metadata records one (chain_sum: ``num_terms``, ``num_digits``), else to the config's range as a
    list (``[lo, hi]``); a scalar difficulty (gsm_symbolic) becomes ``{"difficulty": value}``.
    """
    md = entry.get("metadata") or {}
    knobs = md.get("difficulty")
    if isinstance(knobs, dict):
        level = {k: _plain(md[k]) if k in md and not isinstance(md[k], (dict, list)) else _plain(v) for k, v in knobs.items()}
    elif knobs is None:
        level = {}
    else:
        level = {"difficulty": _plain(knobs)}
    return {"source": md.get("source_dataset", default_source), "source_index": md.get("source_index"),
            "difficulty": level}


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _dataset_kwargs(name: str, config: dict[str, Any]) -> dict[str, Any]:
    """``config`` as ``create_dataset`` takes it: composite's sub-dataset mappings become ``DatasetSpec``s."""
    if name != "composite" or "datasets" not in config:
        return config
    from reasoning_gym.composite import DatasetSpec

    specs = []
    for ds in config["datasets"] or []:
        if isinstance(ds, dict):
            unknown = set(ds) - {"name", "weight", "config"}
            if unknown or "name" not in ds:
                raise ParamError(f"task.config.datasets entry {ds!r} must have keys name, weight, config (got {sorted(ds)})")
            ds = DatasetSpec(name=ds["name"], weight=float(ds.get("weight", 1.0)), config=dict(ds.get("config") or {}))
        specs.append(ds)
    return {**config, "datasets": specs}


def chain_sum_solution(entry: dict[str, Any]) -> str:
    """A worked chain_sum solution, one running partial sum per line, then the answer (``rlbook.mechanisms.steps``'
    format): ``"6 + 2 - 5"`` -> ``"6 + 2 = 8\\n8 - 5 = 3\\nAnswer: 3"``."""
    tokens = entry["metadata"]["expression"].split()
    total, lines = int(tokens[0]), []
    for op, term in zip(tokens[1::2], tokens[2::2], strict=True):
        new = total + int(term) if op == "+" else total - int(term)
        lines.append(f"{total} {op} {term} = {new}")
        total = new
    return "\n".join([*lines, f"Answer: {total}"])


# task name -> worked-solution writer, for few-shot prompts (TaskSpec.shots)
SHOT_WRITERS = {"chain_sum": chain_sum_solution}


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

        self.spec = spec
        size = first_size = spec.train_size + 2 * spec.eval_size + 200
        while True:  # a pool with too few distinct questions for the held-out set is drawn again, larger
            pool, unique = _distinct(spec, size)
            # a first pool that can make the split is kept (every existing split stays the same); one that could
            # not is drawn again, larger, until it holds both sets or reaches POOL_LIMIT draws
            enough = spec.eval_size + spec.train_size if size > first_size else spec.eval_size + 1
            if len(unique) >= enough or size >= POOL_LIMIT:
                break
            size *= 2
        self._dataset = pool
        entries = list(unique.values())
        random.Random(spec.seed).shuffle(entries)
        if len(entries) <= spec.eval_size:
            raise ParamError(
                f"task {spec.name!r} with config {spec.config} has only {len(entries)} distinct questions; "
                f"task.eval_size={spec.eval_size} must be smaller so that some remain for training"
            )
        self.shots = self._shots(entries[spec.eval_size + spec.train_size:])
        # Held-out questions first, then training questions: the two never share a question.
        self.eval = [self._problem(i, e) for i, e in enumerate(entries[: spec.eval_size])]
        train = entries[spec.eval_size : spec.eval_size + spec.train_size]
        self.train = [self._problem(i, e) for i, e in enumerate(train)]
        self.numeric = all(_NUMBER.fullmatch(p.answer.strip()) for p in self.train[:50])

    def _shots(self, unused: list[dict[str, Any]]) -> list[dict[str, str]]:
        """``spec.shots`` worked examples as chat turns, from questions in neither split."""
        n = self.spec.shots
        if n == 0:
            return []
        turns = []
        if self.spec.tool:  # fixed examples of the tool's use (questions in neither split)
            for question, reply in TOOL_SHOTS[self.spec.tool][:n]:
                turns += [{"role": "user", "content": f"{question} {self.spec.instruction}".strip()},
                          {"role": "assistant", "content": reply}]
            return turns
        if len(unused) < n:
            raise ParamError(f"task.shots={n}: only {len(unused)} questions are left outside the train and eval "
                             "splits; lower task.train_size or task.eval_size")
        write = SHOT_WRITERS[self.spec.name]
        for entry in unused[:n]:
            turns += [{"role": "user", "content": f"{entry['question']} {self.spec.instruction}".strip()},
                      {"role": "assistant", "content": write(entry)}]
        return turns

    def _problem(self, index: int, entry: dict[str, Any]) -> Problem:
        content = f"{entry['question']} {self.spec.instruction}".strip()
        messages = [*self.shots, {"role": "user", "content": content}]
        if self.spec.system_prompt is not None:
            messages.insert(0, {"role": "system", "content": self.spec.system_prompt})
        return Problem(index=index, question=entry["question"], answer=str(entry["answer"]), messages=messages,
                       entry=entry, meta=problem_meta(entry, self.spec.name))

    def score(self, problem: Problem, completion: str) -> float:
        """The task's own verifier applied to the extracted answer (1.0 = correct); with a tool, what the tool
        wrote (``<result>...</result>``) is not the policy's answer and is left out first."""
        if self.spec.tool:
            completion = TOOL_RESULT.sub(" ", completion)
        answer = extract_answer(completion, numeric=self.numeric)
        if answer is None:
            return 0.0
        return float(self._dataset.score_answer(answer, problem.entry))

    def __repr__(self) -> str:
        return f"Task({self.spec.name!r}, train={len(self.train)}, eval={len(self.eval)}, config={self.spec.config})"


def make_task(spec: TaskSpec | dict[str, Any]) -> Task:
    """The task a spec names: a reasoning-gym task, or a hub / local data set (``rlbook.data.hub.HubTask``)."""
    from rlbook.core.config import build
    from rlbook.data import hub

    spec = build(TaskSpec, spec, "task")
    return hub.HubTask(spec) if hub.is_hub_name(spec.name) else Task(spec)  # type: ignore[return-value]


# Named task configurations chosen by measuring the embedded model with ``rlbook tasks --probe NAME``
# (the measurements: docs/TASKS.md, made from docs/tasks_probe.jsonl).  "max_new_tokens" is the length the
# measurement generated (a run's train.max_new_tokens).
STEP_INSTRUCTION = (  # rlbook.mechanisms.steps.INSTRUCTION: one running partial sum per line
    "Add the numbers one at a time from left to right. Write each step on its own line as "
    "'previous total + next number = new total', then write 'Answer: ' and the final total."
)
STEP_SYSTEM_PROMPT = (  # rlbook.mechanisms.steps.SYSTEM_PROMPT: a worked example, without which the model ignores the format
    "You add numbers one step at a time. Example.\nQuestion: 2 + 5 - 3 =\nYour reply:\n2 + 5 = 7\n7 - 3 = 4\nAnswer: 4"
)
REASON_INSTRUCTION = "Solve it step by step, then give the final answer."
_SPLIT = {"train_size": 1000, "eval_size": 100}


POOL_LIMIT = 20000  # the largest pool a Task draws when its first draw has too few distinct questions
HELDOUT_TARGET = 1000  # held-out problems a claim should have where the task has that many (issue 21, item 7)
HELDOUT_TARGET_LONG = 500  # ... for tasks answered in 128 tokens or more (each evaluation costs ~4x more)
_CAPACITY: dict[str, int] = {}


def heldout_target(max_new_tokens: int) -> int:
    """How many held-out problems a claim should have where the task has that many distinct questions: 1,000,
    or 500 for answers of 128 tokens or more.  At 200 problems the paired evaluation floor (about 3 points of
    accuracy) dominates the seed noise; held-out problems are the cheapest power (``rlbook power``)."""
    return HELDOUT_TARGET_LONG if max_new_tokens >= 128 else HELDOUT_TARGET


def capacity(spec: TaskSpec | dict[str, Any], draws: int = 5000) -> int | None:
    """The number of distinct questions the task's generator gives in ``draws`` draws (a lower bound on its
    capacity; a task such as one-digit sums has 200), or None for hub/file tasks (their size is their file's).
    Held-out plus training problems cannot exceed it (:class:`Task` de-duplicates)."""
    from rlbook.core.config import build
    from rlbook.data import hub

    spec = build(TaskSpec, spec, "task")
    if hub.is_hub_name(spec.name):
        return None
    key = repr((spec.name, sorted(spec.config.items()), spec.seed, draws))
    if key not in _CAPACITY:
        _CAPACITY[key] = len(_distinct(spec, draws)[1])
    return _CAPACITY[key]


def check_split(spec: TaskSpec | dict[str, Any]) -> None:
    """Raise ``ParamError`` when the task's generator cannot give ``eval_size`` held-out questions and still leave
    some for training: what :class:`Task` would find only after a run folder and a model exist, checked at the
    edge (``rlbook check``/``run`` through :func:`rlbook.training.experiments.plan`).  A pool short in
    ``capacity``'s draws is counted again at :data:`POOL_LIMIT` draws, the most a Task draws."""
    from rlbook.core.config import build
    from rlbook.data import hub

    spec = build(TaskSpec, spec, "task")
    if hub.is_hub_name(spec.name):
        return  # a file's size is known only once it is read (hub.load_task checks it then)
    n = capacity(spec)
    if n is not None and n <= spec.eval_size:
        n = capacity(spec, draws=POOL_LIMIT)
    if n is not None and n <= spec.eval_size:
        raise ParamError(f"task {spec.name!r} with config {spec.config} has only {n} distinct questions; "
                         f"task.eval_size={spec.eval_size} must be smaller (at most {n - 1}) so that some remain "
                         "for training")


def _distinct(spec: TaskSpec, size: int) -> tuple[Any, dict[str, dict[str, Any]]]:
    """``size`` draws of the task's generator and its distinct questions, first entry of each kept, in draw order:
    the pool behind both :class:`Task` and :func:`capacity`."""
    import reasoning_gym

    try:
        pool = reasoning_gym.create_dataset(spec.name, size=size, seed=spec.seed,
                                            **_dataset_kwargs(spec.name, spec.config))
    except (TypeError, AssertionError, ValueError) as e:
        raise ParamError(f"task.config for {spec.name!r} is invalid: {e}") from e
    unique: dict[str, dict[str, Any]] = {}
    for entry in pool:
        unique.setdefault(entry["question"], entry)
    return pool, unique


def _sums(terms: tuple[int, int], digits: tuple[int, int]) -> dict[str, int]:
    return {"min_terms": terms[0], "max_terms": terms[1], "min_digits": digits[0], "max_digits": digits[1]}


PRESETS: dict[str, dict[str, Any]] = {
    "sums-1digit": {
        "task": {"name": "chain_sum", "config": _sums((2, 2), (1, 1)), **_SPLIT}, "max_new_tokens": 32,
        "about": "a + b or a - b, one-digit terms (the quickstart task; only 199 distinct questions: 99 train)",
    },
    "products-1digit": {
        "task": {"name": "products", "config": _sums((2, 2), (1, 1)), "train_size": 60, "eval_size": 40},
        "max_new_tokens": 32,
        "about": "a * b, one-digit factors (only 94 distinct questions: 54 train, 40 held out)",
    },
    "letters-5words": {
        "task": {"name": "letter_counting", "config": {"min_words": 5, "max_words": 5}, **_SPLIT},
        "max_new_tokens": 32, "about": "how often a letter occurs in a 5-word text",
    },
    "gcd-20": {
        "task": {"name": "gcd", "config": {"min_value": 1, "max_value": 20}, **_SPLIT}, "max_new_tokens": 32,
        "about": "GCD of two numbers up to 20 (228 train questions; half the answers are 1: always saying 1 scores ~50%)",
    },
    "sums-2digit": {
        "task": {"name": "chain_sum", "config": _sums((2, 2), (2, 2)), **_SPLIT}, "max_new_tokens": 32,
        "about": "hard regime: a +/- b with two-digit terms (almost every group all wrong)",
    },
    "mixed-pool": {
        "task": {"name": "composite", **_SPLIT, "config": {"datasets": [
            {"name": "chain_sum", "weight": 2, "config": _sums((2, 2), (1, 2))},
            {"name": "products", "weight": 1, "config": _sums((2, 2), (1, 1))},
            {"name": "letter_counting", "weight": 1, "config": {"min_words": 5, "max_words": 5}},
        ]}},
        "max_new_tokens": 32,
        "about": "one- and two-digit sums, one-digit products, letter counts; Problem.meta has source and difficulty",
    },
    "arith-small": {
        "task": {"name": "composite", "train_size": 400, "eval_size": 200, "config": {"datasets": [
            {"name": "chain_sum", "weight": 1, "config": _sums((2, 2), (1, 1))},
            {"name": "products", "weight": 1, "config": _sums((2, 2), (1, 1))},
            {"name": "gcd", "weight": 1, "config": {"min_value": 1, "max_value": 20}},
        ]}},
        "max_new_tokens": 32,
        "about": "one-digit sums, one-digit products and GCDs up to 20: over 500 distinct questions, so 200 held out",
    },
    "sums-reasoning": {
        "task": {"name": "chain_sum", "config": _sums((2, 2), (1, 1)), **_SPLIT, "instruction": REASON_INSTRUCTION},
        "max_new_tokens": 128, "about": "sums-1digit with reasoning asked for: long answers of widely varied length",
    },
    "sums-steps": {
        "task": {"name": "chain_sum", "config": _sums((3, 3), (1, 1)), **_SPLIT, "instruction": STEP_INSTRUCTION,
                 "system_prompt": STEP_SYSTEM_PROMPT},
        "max_new_tokens": 64, "about": "3 one-digit terms, one running partial sum per line (rlbook.mechanisms.steps oracle)",
    },
}
SUITE: list[str] = ["sums-1digit", "products-1digit", "letters-5words", "gcd-20"]  # base accuracy 10-70%


def preset(name: str) -> dict[str, Any]:
    """A copy of preset ``name``: ``{"task": TaskSpec dict, "max_new_tokens": int, "about": str}``."""
    import copy

    if name not in PRESETS:
        raise ParamError(f"unknown preset {name!r}; available: {', '.join(PRESETS)}")
    return copy.deepcopy(PRESETS[name])
