"""Tool-integrated reasoning with a calculator, and OTC's tool-efficiency reward.

The tool (``task.tool: calculator``): inside its answer the policy may write ``<calc>12*7</calc>``; generation
stops there, the calculator's result is written into the completion as ``<result>84</result>`` and the policy
continues; ``<answer>84</answer>`` (or EOS, or the token budget) ends the episode.  An episode makes at most
``task.max_tool_calls`` calls; a further call ends it unanswered.  This is the single-sequence layout of
Search-R1 / ToRL, on which OTC builds: the whole episode is one completion whose tool-written tokens are marked in
``Rollout.action_mask`` (0) and get no gradient (the paper's indicator I(y_t), Sec. 3.2); the policy gradient is
the trainer's own (:mod:`rlbook.training.update`), over the policy's tokens only.

* :func:`calculate`: the tool (an arithmetic expression: + - * / // % **, parentheses, gcd, lcm, abs, min,
  max); a malformed expression returns ``error: ...`` (the call still counts).
* :class:`CalculatorEnv`: the episode as a :class:`rlbook.training.agents.TextEnv` (``step(action)`` runs one call or ends
  the episode; ``info["tool_calls"]`` counts the calls); the in-stream generation and the chat-turn rollouts of
  :mod:`rlbook.training.agents` share it.
* :func:`generate`: the trainer's rollout with the tool (``Trainer.generate`` calls it when ``task.tool`` is set).
* :func:`count_calls`: the calls in a completion (``</calc>`` closings: every call the policy issued).
* reward ``otc`` (OTC-GRPO) and :func:`tool_reward`: correctness scaled by a function of the calls m relative to
  the fewest calls n of a correct answer to the same question.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from rlbook.core.config import ParamError, TrainConfig
from rlbook.data.tasks import Problem
from rlbook.mechanisms.rewards import register
from rlbook.policy.models import Tokenizer
from rlbook.policy.rollout import Rollout, eos_ids, rollout_from_ids
from rlbook.policy.rollout import generate as plain_generate

CALL_OPEN, CALL_CLOSE, ANSWER_CLOSE = "<calc>", "</calc>", "</answer>"
MAX_EXPRESSION = 200  # characters; a longer expression is an error
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_FUNCTIONS: dict[str, Callable[..., Any]] = {"gcd": math.gcd, "lcm": math.lcm, "abs": abs, "min": min, "max": max}


# -------------------------------------------------------------------------------------------- the tool


def calculate(expression: str) -> str:
    """The calculator: the value of an arithmetic expression (function names in any case) as text (an integer when the value is whole, else
    up to 8 significant digits), or ``error: <why>`` for anything else (a name, a string, an exponent above 64,
    division by zero, a value above 1e18)."""
    text = expression.strip()
    if not text or len(text) > MAX_EXPRESSION:
        return "error: empty or too long expression"
    try:
        value = _evaluate(ast.parse(text.replace("^", "**").replace("×", "*"), mode="eval").body)
    except ZeroDivisionError:
        return "error: division by zero"
    except (SyntaxError, ValueError, TypeError, OverflowError, RecursionError):
        return "error: not an arithmetic expression"
    if abs(value) > 1e18:
        return "error: value too large"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.8g}"
    return str(int(value))


def _evaluate(node: ast.AST) -> int | float:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = _evaluate(node.operand)
        return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > 64:
            raise ValueError("exponent too large")
        return _BINARY[type(node.op)](left, right)
    name = node.func.id.lower() if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) else ""
    if isinstance(node, ast.Call) and name in _FUNCTIONS and node.args and not node.keywords:
        args = [_evaluate(a) for a in node.args]
        if name in ("gcd", "lcm"):
            if not all(float(a).is_integer() for a in args):
                raise ValueError("gcd and lcm take whole numbers")
            args = [int(a) for a in args]
        return _FUNCTIONS[name](*args)
    raise ValueError(f"not allowed: {type(node).__name__}")


def count_calls(completion: str) -> int:
    """Tool calls the policy issued in a completion: its ``</calc>`` closings (the tool never writes one)."""
    return completion.count(CALL_CLOSE)


def call_expression(action: str) -> str:
    """The expression of the call an action ends with: the text between the last ``<calc>`` before the first
    ``</calc>`` and that ``</calc>`` ("" when ``<calc>`` is missing: a malformed call)."""
    head = action.split(CALL_CLOSE, 1)[0]
    start = head.rfind(CALL_OPEN)
    return head[start + len(CALL_OPEN):] if start >= 0 else ""


def stop_kind(text: str) -> str | None:
    """Which closing tag comes first in ``text``: ``"calc"`` (a tool call), ``"answer"``, or None."""
    i, j = text.find(CALL_CLOSE), text.find(ANSWER_CLOSE)
    if i < 0 and j < 0:
        return None
    return "calc" if j < 0 or 0 <= i < j else "answer"


# ---------------------------------------------------------------------------------------- the episode


@dataclass
class ToolStep:
    """One step's outcome (the fields of :class:`rlbook.training.agents.StepResult`, which sits in a layer above)."""

    observation: str
    reward: float
    done: bool
    info: dict[str, Any] = field(default_factory=dict)


class CalculatorEnv:
    """A question answered with the calculator as a tool, one action per turn (:class:`rlbook.training.agents.TextEnv`).

    ``step(action)``: an action whose first closing tag is ``</calc>`` is a tool call: while fewer than
    ``max_calls`` calls were made the calculator runs (the observation is ``<result>v</result>``, the episode
    goes on); a call beyond the limit ends the episode unanswered.  Any other action (``</answer>``, or no tag)
    ends the episode, with reward ``score(problem, episode text)`` (the task's verifier; tool results are not
    answers).  ``info``: ``tool_calls`` (calls so far, the refused one included), ``call`` (this action was a
    call), ``result``.  ``max_turns = max_calls + 1``.  Without ``problems`` it is the in-stream environment of
    :func:`generate` (no question, reward 0: the trainer scores)."""

    def __init__(self, problems: list[Problem] | None = None, max_calls: int = 3,
                 score: Callable[[Problem, str], float] | None = None, system_prompt: str | None = None):
        if isinstance(max_calls, bool) or not isinstance(max_calls, int) or max_calls < 0:
            raise ValueError(f"CalculatorEnv: max_calls={max_calls!r} must be an integer >= 0")
        self.problems, self.max_calls, self.score, self.system_prompt = problems or [], max_calls, score, system_prompt
        self.max_turns = max_calls + 1
        self.problem: Problem | None = None
        self.calls, self.turns, self.done = 0, [], False

    def reset(self, seed: int) -> str:
        self.problem = self.problems[seed % len(self.problems)] if self.problems else None
        self.calls, self.turns, self.done = 0, [], False
        return self.problem.messages[-1]["content"] if self.problem else ""

    def step(self, action: str) -> ToolStep:
        if self.done:
            raise ValueError("CalculatorEnv.step after the episode ended; call reset")
        is_call = stop_kind(action) == "calc"
        result = ""
        if is_call:
            self.calls += 1
            if self.calls <= self.max_calls:
                result = calculate(call_expression(action))
        self.done = not is_call or self.calls > self.max_calls
        observation = f"<result>{result}</result>" if is_call and not self.done else ""
        self.turns.append((action, observation))
        reward = 0.0
        if self.done and self.problem is not None and self.score is not None:
            reward = float(self.score(self.problem, self.text()))
        return ToolStep(observation, reward, self.done, {"tool_calls": self.calls, "call": is_call, "result": result})

    def text(self) -> str:
        """The episode so far as one completion (actions and the tool's results)."""
        return "".join(a + o for a, o in self.turns)

    def messages(self) -> list[dict[str, str]]:
        """Chat turns: the question, then each action (assistant) and tool result (user)."""
        msgs = [dict(m) for m in self.problem.messages] if self.problem else []
        if self.system_prompt and not (msgs and msgs[0]["role"] == "system"):
            msgs.insert(0, {"role": "system", "content": self.system_prompt})
        for action, observation in self.turns:
            msgs.append({"role": "assistant", "content": action})
            if observation:
                msgs.append({"role": "user", "content": observation.strip()})
        return msgs


# ------------------------------------------------------------------------------------- the rollout


def first_stop(tok: Tokenizer, ids: list[int]) -> int | None:
    """The length of the shortest prefix of ``ids`` whose text closes a call or an answer (None: neither)."""
    if stop_kind(tok.decode(ids, skip_special_tokens=True)) is None:
        return None
    lo, hi = 1, len(ids)
    while lo < hi:  # the text of a longer prefix contains that of a shorter one: the predicate is monotone
        mid = (lo + hi) // 2
        if stop_kind(tok.decode(ids[:mid], skip_special_tokens=True)) is None:
            lo = mid + 1
        else:
            hi = mid
    return lo


@torch.no_grad()
def generate(model: Any, tok: Tokenizer, cfg: TrainConfig, prompts: list[list[int]], max_new_tokens: int,
             do_sample: bool = True, temperature: float = 1.0, group_size: int = 1,
             noise: list[tuple[int, ...]] | None = None, max_calls: int = 3) -> Rollout:
    """``group_size`` episodes per prompt (rows prompt-major) with the calculator, as one :class:`Rollout`.

    Turn by turn, the running episodes continue from their prompt and completion so far
    (:func:`rlbook.policy.rollout.generate`; the first turn shares each prompt's prefill across its group); each new
    segment is cut after its first ``</calc>`` or ``</answer>``, stepped through a :class:`CalculatorEnv`, and
    the tool's result tokens are appended with ``action_mask`` 0.  ``max_new_tokens`` bounds the whole completion
    (the policy's and the tool's tokens).  Common random numbers: turn t of row r draws its noise from r's
    coordinates plus t.  ``finished``: the episode ended with EOS, an answer, or a refused call (not the budget)."""
    B = len(prompts) * group_size
    rows = [list(p) for p in prompts for _ in range(group_size)]
    envs = [CalculatorEnv(max_calls=max_calls) for _ in range(B)]
    for env in envs:
        env.reset(0)
    comp: list[list[int]] = [[] for _ in range(B)]
    acts: list[list[float]] = [[] for _ in range(B)]
    finished = [False] * B
    eos = set(eos_ids(model, tok))
    running, turn = list(range(B)), 0
    while running:
        budget = {i: max_new_tokens - len(comp[i]) for i in running}
        if turn == 0:
            roll = plain_generate(model, tok, cfg, prompts, max_new_tokens, do_sample, temperature, group_size,
                                  noise=noise)
        else:
            roll = plain_generate(model, tok, cfg, [rows[i] + comp[i] for i in running], max(budget.values()),
                                  do_sample, temperature, 1,
                                  noise=[(*noise[i], turn) for i in running] if noise is not None else None)
        still = []
        for k, i in enumerate(running):
            seg = roll.completion_ids[k][: int(roll.completion_mask[k].sum())].tolist()[: budget[i]]
            cut = first_stop(tok, seg)
            seg = seg[:cut] if cut is not None else seg
            comp[i] += seg
            acts[i] += [1.0] * len(seg)
            res = envs[i].step(tok.decode(seg, skip_special_tokens=True))
            if res.done:
                finished[i] = cut is not None or bool(seg and seg[-1] in eos)
                continue
            obs = tok(res.observation, add_special_tokens=False)["input_ids"]
            room = max_new_tokens - len(comp[i])
            comp[i] += obs[:room]
            acts[i] += [0.0] * len(obs[:room])
            if len(obs) < room:
                still.append(i)
        running, turn = still, turn + 1
    texts = [tok.decode(c, skip_special_tokens=True) for c in comp]
    device = next(model.parameters()).device
    out = rollout_from_ids(prompts=rows, completions=comp, texts=texts, finished=finished, pad_id=tok.pad_token_id,
                           device=device)
    mask = torch.zeros_like(out.completion_mask)
    for i, a in enumerate(acts):
        mask[i, : len(a)] = torch.tensor(a, dtype=mask.dtype)
    out.action_mask = mask
    return out


# ------------------------------------------------------------------------------------- OTC's reward


def tool_reward(m: int, n: int, c: float) -> float:
    """OTC-GRPO's tool coefficient r_tool for a trajectory with m calls when the fewest calls of a correct answer
    is n (Wang et al. 2025, Sec. 3.3): 1 if f(m, n) = n = 0; cos(m pi / (2m + c)) if n = 0; else
    sin(f(m, n) pi / (2n)) with f(m, n) = 2nm / (m + n), which is 1 at m = n and falls on either side."""
    if m < 0 or n < 0 or c <= 0:
        raise ParamError(f"tool_reward: m={m}, n={n} must be >= 0 and c={c} > 0")
    if n == 0:
        return 1.0 if m == 0 else math.cos(m * math.pi / (2 * m + c))
    return math.sin((2 * n * m / (m + n)) * math.pi / (2 * n))


class FewestCalls:
    """OTC-GRPO's global approximation of the optimal number of calls: per question (dataset index), the fewest
    calls of any correct answer seen so far in training; checkpointed with the trainer."""

    def __init__(self) -> None:
        self.n: dict[int, int] = {}

    def state_dict(self) -> dict[str, Any]:
        return {"n": {int(k): int(v) for k, v in self.n.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.n = {int(k): int(v) for k, v in state["n"].items()}


@register("otc", state=FewestCalls)
def otc(completions: list[str], problems: list[Problem], *, correct: list[bool], prompt_ids: list[int],
        state: FewestCalls, c: float = 3.0, alpha: float = 1.0, scope: str = "global") -> list[float]:
    """OTC-GRPO's tool-integrated reward: alpha * r_tool(m, n) * r_correct.

    m = the completion's calls (:func:`count_calls`); n = the fewest calls among the correct answers to the same
    question: in this batch's group (``scope="group"``, the paper's local approximation) or also in every earlier
    batch (``scope="global"``, what the paper's experiments use, Sec. 4.1: "global approximation ... more stable");
    :func:`tool_reward` gives r_tool.  A wrong answer gets 0 whatever its calls (the multiplicative form).

    Source: Wang et al., "OTC: Optimal Tool Calls via Reinforcement Learning" (arXiv 2504.14870), Sec. 3.3
    (r_tool, f(m, n), r = alpha r_tool r_phi) and Sec. 4.1 (c = the tool-call limit, alpha = 1, global n).  The
    authors' repository was not in the reference index; the reward follows the paper's equations, checked against
    a public re-implementation (``otc_reward.py``: ``compute_mapping_function``, ``compute_tool_reward``,
    ``find_optimal_tool_calls``, ``compute_otc_reward``; unknown repository).  Differences: r_phi is the task
    verifier's 0/1 (Search-R1's exact match, no format term); calls are counted as ``</calc>`` closings (the
    code's regex patterns count tagged blocks); that re-implementation takes n from the group only (no global
    minimum across steps) and clips r_tool at 0 (never reached: both branches lie in [0, 1])."""
    if scope not in ("global", "group"):
        raise ParamError(f"otc: scope={scope!r}; allowed: global, group")
    if c <= 0 or alpha < 0:
        raise ParamError(f"otc: c={c} must be > 0 and alpha={alpha} >= 0")
    calls = [count_calls(t) for t in completions]
    fewest: dict[int, int] = {}
    for m, ok, pid in zip(calls, correct, prompt_ids, strict=True):
        if ok:
            fewest[pid] = min(m, fewest.get(pid, m))
    if scope == "global":
        for pid, m in fewest.items():
            state.n[pid] = min(m, state.n.get(pid, m))
        fewest = {pid: state.n[pid] for pid in fewest}
    return [alpha * tool_reward(m, fewest[pid], c) if ok else 0.0
            for m, ok, pid in zip(calls, correct, prompt_ids, strict=True)]


def calls_table(evals: dict[tuple[str, int], dict[str, Any]], which: str = "final") -> list[dict[str, Any]]:
    """Tool calls per held-out episode, one row per (method, seed, problem): ``method, seed, unit, value`` (from a
    sweep's ``evals``, each run's per-problem completions)."""
    return [{"method": method, "seed": seed, "unit": u, "value": float(count_calls(t))}
            for (method, seed), ev in evals.items() for u, t in enumerate(ev[which]["completions"])]


def productivity_table(evals: dict[tuple[str, int], dict[str, Any]]) -> list[dict[str, Any]]:
    """OTC's tool productivity per run, correct answers per tool call: sum(correct) / max(1, sum(calls)) over the
    held-out problems (Sec. 4.1, TP; the max keeps a run that never calls the tool finite)."""
    rows = []
    for (method, seed), ev in evals.items():
        calls = sum(count_calls(t) for t in ev["final"]["completions"])
        rows.append({"method": method, "seed": seed, "value": float(sum(ev["final"]["correct"])) / max(1, calls)})
    return rows
