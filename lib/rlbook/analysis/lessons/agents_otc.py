"""Lessons of the agent family, OTC (tool-call efficiency): toy episodes for the worked example and the figure.

Every number is computed by the registered mechanism: reward ``otc`` (``REWARDS.call``) and its coefficient
:func:`rlbook.mechanisms.toolcalls.tool_reward`, the advantage by ``estimators.compute("grpo", ...)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure

from rlbook.mechanisms import estimators
from rlbook.mechanisms.rewards import REWARDS
from rlbook.mechanisms.toolcalls import tool_reward

__all__ = ["otc_figure", "toy_episode", "toy_rewards"]


def toy_episode(calls: int, answer: str = "7") -> str:
    """An episode text with ``calls`` calculator calls (each followed by the tool's result), then the answer."""
    return "".join(f"<calc>{k}+1</calc><result>{k + 1}</result>" for k in range(calls)) + f"<answer>{answer}</answer>"


def toy_rewards(calls: Sequence[int], correct: Sequence[bool], c: float = 3.0) -> tuple[list[float], list[float]]:
    """GRPO's 0/1 reward and OTC-GRPO's reward (the registered ``otc``, one group, a fresh history) of a group of
    episodes with these calls and verdicts."""
    texts = [toy_episode(m) for m in calls]
    otc = REWARDS.call("otc", texts, [None] * len(texts), context={
        "correct": list(correct), "prompt_ids": [0] * len(texts), "state": REWARDS.make_state("otc")}, c=c)
    return [float(x) for x in correct], otc


def otc_figure(c: float = 3.0, max_calls: int = 6) -> Figure:
    """Left: OTC-GRPO's tool coefficient r_tool(m, n) against the calls m, one curve per fewest correct calls n
    (n = 0: cos(m pi / (2m + c)); n > 0: sin(f(m, n) pi / (2n)), highest at m = n).  Right: the GRPO advantages of
    one toy group (calls 0-3, two wrong answers) under the 0/1 reward and under OTC's reward: a correct answer with
    more calls than the group's fewest loses advantage, the wrong ones stay lowest."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    ms = list(range(max_calls + 1))
    for n in range(4):
        left.plot(ms, [tool_reward(m, n, c) for m in ms], marker="o", label=f"n = {n}")
    left.set(xlabel="tool calls m of a correct answer", ylabel="r_tool (reward of a correct answer, alpha = 1)",
             title=f"r_tool(m, n), c = {c:g}")
    left.legend(fontsize=8, frameon=False)
    calls = [0, 1, 1, 2, 3, 3]
    correct = [False, True, True, True, True, False]
    grpo_r, otc_r = toy_rewards(calls, correct, c)
    a_grpo = estimators.compute("grpo", torch.tensor([grpo_r]))[0].tolist()
    a_otc = estimators.compute("grpo", torch.tensor([otc_r]))[0].tolist()
    x = list(range(len(calls)))
    right.bar([i - 0.2 for i in x], a_grpo, width=0.4, label="GRPO (0/1 reward)", color="0.6")
    right.bar([i + 0.2 for i in x], a_otc, width=0.4, label="OTC-GRPO", color="C0")
    right.set_xticks(x, [f"m={m}\n{'right' if ok else 'wrong'}" for m, ok in zip(calls, correct, strict=True)])
    right.axhline(0, color="0.3", lw=0.8)
    right.set(ylabel="advantage", title="one group: the fewest correct calls is n = 1")
    right.legend(fontsize=8, frameon=False)
    fig.suptitle("OTC: a correct answer pays most with the group's fewest tool calls", fontsize=11)
    for ax in fig.axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
