"""Hub and local data sets as rlbook tasks: GSM8K- and MATH-style problems, answers checked with math-verify.

A :class:`~rlbook.data.tasks.TaskSpec` names one with a prefix (``rlbook.data.tasks.make_task`` dispatches here)::

    task:
      name: "hub:openai/gsm8k"           # datasets.load_dataset("openai/gsm8k", "main", split=...)
      config: {subset: main, split: train, eval_split: test}
    task:
      name: "file:data/gsm8k.jsonl"      # a local .jsonl / .json / .parquet / .csv file (one split)
      config: {question_field: question, answer_field: answer}

``config`` keys (:data:`CONFIG`): ``subset`` (the hub data set's config name), ``split`` (training split),
``eval_split`` (held-out split; ``None``: held-out problems are drawn from ``split``), ``question_field``,
``answer_field``, ``answer_style`` (how the reference answer is read from ``answer_field``: ``gsm8k`` = the
text after ``####`` without thousands separators, as GSM8K's answers end; ``boxed`` = the last
``\\boxed{...}``, as MATH's solutions end; ``plain`` = the field as it is; ``auto`` = ``gsm8k`` when the text
has ``####``, else ``boxed`` when it has ``\\boxed``, else ``plain``) and ``revision`` (hub revision).

Splits follow ``rlbook.data.tasks.Task``: questions are de-duplicated, shuffled with ``TaskSpec.seed``, the first
``eval_size`` are held out and training problems never share a question with them.  The verifier is
math-verify (``math_verify.parse`` + ``math_verify.verify``, the checker of open-r1 and TRL's accuracy
reward): the completion's ``<answer>`` tag content when it has one, else the whole completion, is parsed
(math-verify takes the last ``\\boxed{}`` or expression) and compared with the reference parsed as LaTeX.
Nothing here downloads unless a ``hub:`` name is used on a machine with network.
"""

from __future__ import annotations

import os
import random
import threading
from pathlib import Path
from typing import Any

from rlbook.core.config import ParamError
from rlbook.data.problems import ANSWER_TAG, Problem
from rlbook.data.problems import NUMBER as _NUMBER

PREFIXES = ("hub:", "file:")
CONFIG: dict[str, Any] = {
    "subset": None,
    "split": "train",
    "eval_split": None,
    "question_field": "question",
    "answer_field": "answer",
    "answer_style": "auto",
    "revision": None,
}
ANSWER_STYLES = ("auto", "gsm8k", "boxed", "plain")
FILE_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}


def is_hub_name(name: str) -> bool:
    """Whether a task name points at a hub or local data set (``hub:...`` / ``file:...``)."""
    return isinstance(name, str) and name.startswith(PREFIXES)


def check_spec(name: str, config: Any) -> dict[str, Any]:
    """The config with defaults filled in; ParamError for an unknown key, a bad style or an empty source."""
    if not isinstance(config, dict):
        raise ParamError(f"task.config={config!r} must be a mapping")
    unknown = sorted(set(config) - set(CONFIG))
    if unknown:
        raise ParamError(f"task.config has unknown key {unknown[0]!r} for data set {name!r}; allowed: {', '.join(CONFIG)}")
    cfg = {**CONFIG, **config}
    if cfg["answer_style"] not in ANSWER_STYLES:
        raise ParamError(f"task.config.answer_style={cfg['answer_style']!r} is not allowed; allowed: {', '.join(ANSWER_STYLES)}")
    source = name.partition(":")[2]
    if not source:
        raise ParamError(f"task.name={name!r} names no data set; e.g. 'hub:openai/gsm8k' or 'file:path/to/data.jsonl'")
    if name.startswith("file:") and Path(source).suffix not in FILE_BUILDERS:
        raise ParamError(f"task.name={name!r}: the file must end in one of {', '.join(FILE_BUILDERS)}")
    return cfg


def _local_path(source: str) -> Path:
    path = Path(source).expanduser()
    if path.is_absolute() or path.exists():
        return path
    try:  # a path relative to the repository (notebooks run with their own folder as working directory)
        from rlbook.core.paths import find_root

        return find_root() / path
    except ParamError:
        return path


def _offline_hint(name: str, config: dict[str, Any]) -> str:
    subset = f", {config['subset']!r}" if config.get("subset") else ""
    return (f"to work offline, load it once on a machine with network (datasets.load_dataset("
            f"{name.partition(':')[2]!r}{subset}) fills the Hugging Face cache) and copy the cache here, then set "
            "HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1; or save its rows to a file and use task.name='file:PATH.jsonl'")


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the hub's endpoint (``HF_ENDPOINT``) accepts a connection: one quick try, no retries."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    try:
        with socket.create_connection((url.hostname or "", url.port or (443 if url.scheme == "https" else 80)), timeout):
            return True
    except OSError:
        return False


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE) or os.environ.get("HF_DATASETS_OFFLINE", "").upper() in ("1", "TRUE", "ON")


def _load_hub(name: str, config: dict[str, Any], split: str) -> Any:
    """``datasets.load_dataset`` of a ``hub:`` name; any failure is one ParamError naming the data set and what to do
    offline.  Without the offline flags and without a connection to the hub, a data set that is not in the cache
    fails at once (``datasets`` would retry for about 20 s first)."""
    import datasets

    source = name.partition(":")[2]
    local = Path(source).expanduser().exists()
    offline = _offline()
    if not local and not offline and not _hub_reachable():
        offline = True  # use the cache if it has the data set; fail fast if it does not
    try:
        if offline and not local:
            with _hub_offline():
                return datasets.load_dataset(source, name=config.get("subset"), split=split,
                                             revision=config.get("revision"))
        return datasets.load_dataset(source, name=config.get("subset"), split=split, revision=config.get("revision"))
    except ParamError:
        raise
    except Exception as e:  # datasets / huggingface_hub raise ConnectionError, FileNotFoundError, HTTP errors, ...
        where = "offline (no connection to the hub and not in the cache)" if offline and not local else "from the hub"
        raise ParamError(f"data set {name!r} (split {split!r}) could not be loaded {where}: {type(e).__name__}: "
                         f"{' '.join(str(e).split())[:200]}; {_offline_hint(name, config)}") from e


class _hub_offline:
    """Offline mode for one load: the flags ``datasets`` and ``huggingface_hub`` read at call time."""

    def __enter__(self) -> None:
        import datasets
        from huggingface_hub import constants

        self.saved = (datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE)
        datasets.config.HF_HUB_OFFLINE = True
        constants.HF_HUB_OFFLINE = True

    def __exit__(self, *exc: Any) -> None:
        import datasets
        from huggingface_hub import constants

        datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE = self.saved


def load_records(name: str, config: dict[str, Any], split: str) -> list[dict[str, Any]]:
    """The rows of one split of a ``hub:`` data set, or of a ``file:`` (which has one split)."""
    import datasets

    kind, _, source = name.partition(":")
    if kind == "hub":
        ds = _load_hub(name, config, split)
    else:
        path = _local_path(source)
        if not path.is_file():
            raise ParamError(f"task.name={name!r}: no such file {path}")
        ds = datasets.load_dataset(FILE_BUILDERS[path.suffix], data_files=str(path), split="train")
    return list(ds)


# ---------------------------------------------------------------------------------------------------------
# reference answers and verification
# ---------------------------------------------------------------------------------------------------------


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) in ``text``, braces matched; None if none."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    open_at = text.find("{", start)
    if open_at < 0:
        return None
    depth = 0
    for i in range(open_at, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[open_at + 1 : i].strip()
    return None


def reference_answer(text: Any, style: str = "auto") -> str:
    """The reference answer in a data set's answer field (see the module doc for the styles)."""
    text = str(text)
    if style == "auto":
        style = "gsm8k" if "####" in text else "boxed" if ("\\boxed" in text or "\\fbox" in text) else "plain"
    if style == "gsm8k":
        if "####" not in text:
            raise ParamError(f"answer {text[:60]!r} has no '####' (answer_style=gsm8k)")
        return text.rsplit("####", 1)[1].strip().replace(",", "")
    if style == "boxed":
        boxed = last_boxed(text)
        if boxed is None:
            raise ParamError(f"answer {text[:60]!r} has no \\boxed{{...}} (answer_style=boxed)")
        return boxed
    return text.strip()


def _timeout() -> int | None:
    """math-verify's timeouts use SIGALRM, which only the main thread may set (TRL and verl score in threads)."""
    return 5 if threading.current_thread() is threading.main_thread() else None


def verify(reference: str, completion: str) -> float:
    """1.0 when math-verify finds the completion's answer equal to ``reference``, else 0.0."""
    from math_verify import parse
    from math_verify import verify as mv_verify

    t = _timeout()
    gold = parse(f"${reference}$", parsing_timeout=t) or parse(reference, parsing_timeout=t)
    tags = ANSWER_TAG.findall(completion)
    answer = parse(tags[-1] if tags else completion, parsing_timeout=t)
    if not gold or not answer:
        return 0.0
    return float(mv_verify(gold, answer, timeout_seconds=t))


# ---------------------------------------------------------------------------------------------------------
# the task
# ---------------------------------------------------------------------------------------------------------


class HubTask:
    """A hub / local data set split into train and eval problems, with the same interface as ``rlbook.data.tasks.Task``."""

    def __init__(self, spec: Any):
        self.spec = spec
        self.config = check_spec(spec.name, spec.config)
        self._problem_cls = Problem
        rows = self._unique(load_records(spec.name, self.config, self.config["split"]))
        random.Random(spec.seed).shuffle(rows)
        if self.config["eval_split"] is not None:
            held = self._unique(load_records(spec.name, self.config, self.config["eval_split"]))
            random.Random(spec.seed + 1).shuffle(held)
            held = held[: spec.eval_size]
        else:
            if len(rows) <= spec.eval_size:
                raise ParamError(f"data set {spec.name!r} has {len(rows)} distinct questions; task.eval_size="
                                 f"{spec.eval_size} must be smaller so that some remain for training")
            held, rows = rows[: spec.eval_size], rows[spec.eval_size :]
        seen = {self._question(r) for r in held}
        train = [r for r in rows if self._question(r) not in seen][: spec.train_size]
        if not train or not held:
            raise ParamError(f"data set {spec.name!r} gives {len(train)} training and {len(held)} held-out problems")
        self.eval = [self._problem(i, r) for i, r in enumerate(held)]
        self.train = [self._problem(i, r) for i, r in enumerate(train)]
        self.numeric = all(_NUMBER.fullmatch(p.answer.strip()) for p in self.train[:50])

    def _question(self, row: dict[str, Any]) -> str:
        key = self.config["question_field"]
        if key not in row:
            raise ParamError(f"data set {self.spec.name!r} has no field {key!r} (task.config.question_field); "
                             f"fields: {', '.join(row)}")
        return str(row[key])

    def _unique(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        unique: dict[str, dict[str, Any]] = {}
        for row in rows:
            unique.setdefault(self._question(row), row)
        return list(unique.values())

    def _problem(self, index: int, row: dict[str, Any]) -> Any:
        key = self.config["answer_field"]
        if key not in row:
            raise ParamError(f"data set {self.spec.name!r} has no field {key!r} (task.config.answer_field); "
                             f"fields: {', '.join(row)}")
        question = self._question(row)
        content = f"{question} {self.spec.instruction}".strip()
        messages = [{"role": "user", "content": content}]
        if self.spec.system_prompt is not None:
            messages.insert(0, {"role": "system", "content": self.spec.system_prompt})
        answer = reference_answer(row[key], self.config["answer_style"])
        return self._problem_cls(index=index, question=question, answer=answer, messages=messages, entry=row)

    def score(self, problem: Any, completion: str) -> float:
        """math-verify's verdict on the completion against the problem's reference answer (1.0 = correct)."""
        return verify(problem.answer, completion)

    def __repr__(self) -> str:
        return f"HubTask({self.spec.name!r}, train={len(self.train)}, eval={len(self.eval)}, config={self.spec.config})"
