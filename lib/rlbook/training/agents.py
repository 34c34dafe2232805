"""Multi-turn text environments and a batched rollout API for agent methods (one action per turn).

An environment (:class:`TextEnv`) is text in, text out: ``reset(seed)`` starts an episode, ``messages()`` is the
current state as chat messages (what the policy is prompted with), ``step(action)`` applies one action and
returns the next observation, a reward, ``done`` and an ``info`` dict.  A *policy* maps a batch of states to one
action each (:func:`lm_policy` wraps a LoRA model: one batched generation per turn, a named adapter or the base
model); :func:`rollout_episodes` plays many episodes in lock-step (the episodes still running form the batch of
each turn) and returns their :class:`Transition` lists; :func:`mc_returns` adds discounted returns.

:class:`GuessNumber` is a small environment with an exact verifier and short actions, in which using the
feedback matters: a hidden whole number in ``[low, high]``, at most ``max_turns`` guesses, each answered "too
high" / "too low"; reward 1 for the correct guess (the episode ends), else 0.  Uniform guessing succeeds about
``max_turns / (high - low + 1)`` of the time, binary search always when ``high - low + 1 <= 2^max_turns - 1``
(7 of 8 numbers with 3 guesses); :meth:`GuessNumber.informative` says
whether a guess can still be right (inside the interval the feedback allows, not guessed before).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from rlbook.core.config import TrainConfig
from rlbook.mechanisms.toolcalls import CalculatorEnv
from rlbook.policy.generation import prompt_ids
from rlbook.policy.models import Tokenizer, reference_mode, use_adapter
from rlbook.policy.rollout import Rollout, generate

Messages = list[dict[str, str]]
Policy = Callable[[list[Messages]], list[str]]
_INT = re.compile(r"-?\d+")


@dataclass
class StepResult:
    observation: str
    reward: float
    done: bool
    info: dict[str, Any] = field(default_factory=dict)


class TextEnv(Protocol):
    """A multi-turn text environment: one action per turn, a verifiable reward."""

    max_turns: int

    def reset(self, seed: int) -> str: ...

    def step(self, action: str) -> StepResult: ...

    def messages(self) -> Messages: ...


@dataclass
class Transition:
    """One turn of an episode: the state (chat messages), the action, its reward, the next state and ``done``."""

    episode: int
    turn: int
    state: Messages
    action: str
    reward: float
    next_state: Messages
    done: bool
    info: dict[str, Any] = field(default_factory=dict)
    mc_return: float = 0.0


# ------------------------------------------------------------------------------------- generation


@torch.no_grad()
def generate_as(model: Any, tok: Tokenizer, prompts: list[list[int]], *, adapter: str | None,
                max_new_tokens: int, do_sample: bool = True, temperature: float = 1.0, group_size: int = 1,
                gen_batch_size: int = 64) -> Rollout:
    """:func:`rlbook.policy.rollout.generate` with adapter ``adapter`` active, or the base model (``adapter=None``: every
    adapter disabled, nothing merged)."""
    cfg = TrainConfig(temperature=temperature, gen_batch_size=gen_batch_size, merge_lora_for_generation=adapter is not None)
    ctx = use_adapter(model, adapter) if adapter is not None else reference_mode(model)
    with ctx:
        return generate(model, tok, cfg, prompts, max_new_tokens, do_sample, temperature, group_size)


def lm_policy(model: Any, tok: Tokenizer, *, adapter: str | None, max_new_tokens: int, temperature: float = 1.0,
              do_sample: bool = True) -> Policy:
    """A policy that samples one action per state from ``model`` (``adapter`` active, or the base model)."""

    def act(states: list[Messages]) -> list[str]:
        prompts = [prompt_ids(tok, s) for s in states]
        return generate_as(model, tok, prompts, adapter=adapter, max_new_tokens=max_new_tokens,
                           do_sample=do_sample, temperature=temperature).texts

    return act


def sample_actions(model: Any, tok: Tokenizer, states: Sequence[Messages], n: int, *, adapter: str | None,
                   max_new_tokens: int, temperature: float = 1.0) -> list[list[str]]:
    """``n`` sampled actions per state (one shared prompt prefill per state)."""
    prompts = [prompt_ids(tok, s) for s in states]
    roll = generate_as(model, tok, prompts, adapter=adapter, max_new_tokens=max_new_tokens, temperature=temperature,
                       group_size=n)
    return [roll.texts[i * n : (i + 1) * n] for i in range(len(states))]


# --------------------------------------------------------------------------------------- rollouts


def rollout_episodes(make_env: Callable[[], TextEnv], seeds: Sequence[int], policy: Policy) -> list[list[Transition]]:
    """One episode per seed, all advancing in lock-step: each turn the running episodes' states go to ``policy``
    as one batch.  Returns each episode's transitions in order."""
    envs = [make_env() for _ in seeds]
    for env, seed in zip(envs, seeds, strict=True):
        env.reset(seed)
    episodes: list[list[Transition]] = [[] for _ in seeds]
    running = list(range(len(seeds)))
    turn = 0
    while running:
        states = [envs[i].messages() for i in running]
        actions = policy(states)
        still = []
        for i, state, action in zip(running, states, actions, strict=True):
            res = envs[i].step(action)
            episodes[i].append(Transition(i, turn, state, action, res.reward, envs[i].messages(), res.done,
                                          {**res.info, "seed": seeds[i]}))
            if not res.done:
                still.append(i)
        running, turn = still, turn + 1
    return episodes


def mc_returns(rewards: Sequence[float], gamma: float) -> list[float]:
    """Discounted returns ``G_t = sum_{k >= t} gamma^(k - t) r_k`` (Digi-Q ``env_utils.add_mc_return``)."""
    out, g = [], 0.0
    for r in reversed(list(rewards)):
        g = float(r) + gamma * g
        out.append(g)
    return out[::-1]


def add_mc_returns(episodes: list[list[Transition]], gamma: float) -> None:
    for ep in episodes:
        for t, g in zip(ep, mc_returns([t.reward for t in ep], gamma), strict=True):
            t.mc_return = g


def success(episodes: list[list[Transition]]) -> list[float]:
    """1.0 for each episode that collected a positive reward, else 0.0."""
    return [float(any(t.reward > 0 for t in ep)) for ep in episodes]


# ------------------------------------------------------------------------------------ environments


class GuessNumber:
    """Guess a hidden whole number in ``[low, high]`` in at most ``max_turns`` guesses, told "too high" / "too low".

    An action is read as its first integer; none, or one outside ``[low, high]``, is an invalid guess (the turn is
    spent, the observation says so).  Reward 1 for the correct guess, which ends the episode."""

    def __init__(self, low: int = 1, high: int = 6, max_turns: int = 3,
                 system_prompt: str | None = "You are a concise assistant."):
        if not low < high or max_turns < 1:
            raise ValueError(f"GuessNumber needs low < high and max_turns >= 1, got {low}, {high}, {max_turns}")
        self.low, self.high, self.max_turns, self.system_prompt = low, high, max_turns, system_prompt
        self.target = low
        self.history: list[tuple[int | None, str]] = []

    def reset(self, seed: int) -> str:
        self.target = random.Random(seed).randint(self.low, self.high)
        self.history = []
        return self.observation()

    def feasible(self) -> tuple[int, int]:
        """The interval of numbers the feedback so far still allows."""
        lo, hi = self.low, self.high
        for guess, said in self.history:
            if said == "too high" and guess is not None:
                hi = min(hi, guess - 1)
            elif said == "too low" and guess is not None:
                lo = max(lo, guess + 1)
        return lo, hi

    def parse(self, action: str) -> int | None:
        m = _INT.search(action)
        value = int(m.group()) if m else None
        return value if value is not None and self.low <= value <= self.high else None

    def informative(self, action: str) -> bool:
        """The guess can still be right: inside the feasible interval and not guessed before."""
        g = self.parse(action)
        lo, hi = self.feasible()
        return g is not None and lo <= g <= hi and all(g != h for h, _ in self.history)

    def step(self, action: str) -> StepResult:
        g = self.parse(action)
        info = {"valid": g is not None, "informative": self.informative(action), "guess": g}
        said = "invalid" if g is None else "correct" if g == self.target else "too high" if g > self.target else "too low"
        self.history.append((g, said))
        done = said == "correct" or len(self.history) >= self.max_turns
        return StepResult(self.observation(), 1.0 if said == "correct" else 0.0, done, info)

    def observation(self) -> str:
        left = self.max_turns - len(self.history)
        past = ", ".join(f"{g if g is not None else '?'} ({s})" for g, s in self.history) or "none"
        return (f"Let's play a guessing game. I picked a whole number from {self.low} to {self.high}. Previous "
                f"guesses: {past}. You have {left} guesses left. What is your guess? Answer with a single number "
                f"from {self.low} to {self.high}.")

    def messages(self) -> Messages:
        msgs = [{"role": "user", "content": self.observation()}]
        return ([{"role": "system", "content": self.system_prompt}] if self.system_prompt else []) + msgs


ENVS: dict[str, Callable[..., TextEnv]] = {"guess_number": GuessNumber, "calculator": CalculatorEnv}


def make_env_factory(name: str, **kwargs: Any) -> Callable[[], TextEnv]:
    """A factory of environment ``name`` (:data:`ENVS`) with ``kwargs``."""
    if name not in ENVS:
        raise ValueError(f"environment {name!r} is not known; available: {', '.join(ENVS)}")
    ENVS[name](**kwargs)  # validate once
    return lambda: ENVS[name](**kwargs)


def replay_env(make_env: Callable[[], TextEnv], seed: int, actions: Sequence[str]) -> TextEnv:
    """The environment of episode ``seed`` after ``actions`` (to ask it about a state, e.g. which guesses are
    informative)."""
    env = make_env()
    env.reset(seed)
    for a in actions:
        env.step(a)
    return env

