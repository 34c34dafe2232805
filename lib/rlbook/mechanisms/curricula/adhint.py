"""ADHint: solution-prefix hints whose length follows each prompt's estimated difficulty, with the hint tokens
of failed hinted rollouts kept out of the gradient.

Source: Zhang, Tan, Ma, Dong, Leng, Zhao, Sun, Yang, "ADHint: Adaptive Hints with Difficulty Priors for
Reinforcement Learning" (2025, arXiv 2512.13095).  **No public code** ("will be made publicly available upon
acceptance"); the rules follow a third-party note on the paper:

1. per prompt, ``n`` naive rollouts first; the difficulty prior Diff_N = 1 - their mean reward;
2. hint ratio w = (w_max - w_min) Diff_N + w_min + noise (harder -> longer hint), clipped to [0, 1]; the hint is
   the first round(w |y*|) tokens of a reference solution y*, placed at the start of the response, and the
   hinted rollouts continue from it (:func:`hint_ratio`, :func:`hint_ids`);
3. hint tokens are trained as response tokens (off-policy), except that a hinted rollout with a negative
   advantage gets no gradient on its hint tokens (selective masking for hint preservation: the failure belongs
   to the continuation), :func:`selective_mask`;
4. the advantage is the group baseline over naive and hinted rollouts together (``grpo`` with ``sample_mask``).

Not implemented (formulas not recoverable): Consistency-based Gradient Modulation (a per-token weight on hint
tokens from their entropy against the continuation's) and Advantage Estimation with Rollout Difficulty
Posterior (naive/hinted advantages reweighted by their relative difficulty).  Assumptions: as many hinted
rollouts as there are free slots (``group_size - rollouts_per_prompt``), w_min 0.1, w_max 0.9, noise uniform
in [-noise, noise] (0 by default); the mechanics of prefix hints (hint ids before the generated tokens, trained
as completion tokens) follow G2RPO-A (github.com/T-Lab-CUHKSZ/G2RPO-A, commit 0d98af8,
``g2rpoa_trainer.py``).  Reference solutions (:func:`reference_solution`) are written from what the task
generator records (reasoning-gym metadata: the expression of a sum or product, the words of a letter count),
else the gold answer alone.  Hint tokens are not counted as generated tokens; the continuations are.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from rlbook.core.errors import ParamError
from rlbook.data.tasks import Problem
from rlbook.mechanisms import phases
from rlbook.mechanisms.curricula._util import sample_advantages
from rlbook.policy.rollout import rollout_from_ids


def reference_solution(problem: Problem) -> str:
    """A worked solution from the generator's metadata: ``a + b = c`` for sums and products, per-word counts for
    letter counting; otherwise the gold answer."""
    md = (problem.entry or {}).get("metadata") or {}
    if "expression" in md:
        return f"{md['expression']} = {problem.answer}"
    if "target_letter" in md and "span" in md:
        letter = str(md["target_letter"])
        counts = ", ".join(f"{w}: {w.lower().count(letter.lower())}" for w in md["span"])
        return f"{counts}. Total: {problem.answer}"
    return str(problem.answer)


def hint_ratio(naive_success: float, w_min: float = 0.1, w_max: float = 0.9, noise: float = 0.0,
               rng: np.random.Generator | None = None) -> float:
    """w = (w_max - w_min) (1 - success) + w_min + u, u ~ U[-noise, noise], clipped to [0, 1]."""
    u = float(rng.uniform(-noise, noise)) if noise > 0 and rng is not None else 0.0
    return min(1.0, max(0.0, (w_max - w_min) * (1.0 - naive_success) + w_min + u))


def hint_ids(solution_ids: list[int], ratio: float) -> list[int]:
    """The first round(ratio x len) tokens of the solution (Python's round: half to even)."""
    return list(solution_ids[: int(round(ratio * len(solution_ids)))])


def selective_mask(advantages: torch.Tensor, hint_len: torch.Tensor, width: int) -> torch.Tensor:
    """[B, width] 0/1: 0 on the first ``hint_len[b]`` tokens of rows whose advantage is negative, else 1."""
    pos = torch.arange(width).unsqueeze(0)
    in_hint = pos < hint_len.unsqueeze(1)
    return torch.where(in_hint & (advantages.unsqueeze(1) < 0), torch.zeros(()), torch.ones(()))


@phases.register("adhint", at="before_advantages")
class ADHint(phases.Phase):
    """Hinted rollouts into the free slots of each group, hint length from the naive rollouts' success."""

    def __init__(self, trainer: Any, *, w_min: float = 0.1, w_max: float = 0.9, noise: float = 0.0, seed: int = 0):
        naive = trainer.cfg.rollouts_per_prompt or trainer.cfg.group_size
        self.n_hint = trainer.cfg.group_size - naive
        if self.n_hint < 1:
            raise ParamError("adhint needs free slots for hinted rollouts: train.rollouts_per_prompt < train.group_size "
                             f"(now {trainer.cfg.rollouts_per_prompt} of {trainer.cfg.group_size})")
        if not 0.0 <= w_min <= w_max <= 1.0:
            raise ParamError(f"adhint needs 0 <= w_min <= w_max <= 1; got {w_min}, {w_max}")
        self.w_min, self.w_max, self.noise, self.seed = w_min, w_max, noise, seed

    def run(self, trainer: Any, batch: Any) -> dict[str, float]:
        filled = batch.sample_mask if batch.sample_mask is not None else torch.ones_like(batch.correct, dtype=torch.bool)
        hints, ratios = [], []
        for j, p in enumerate(batch.problems):
            rng = np.random.default_rng([self.seed, trainer.step_count, int(batch.indices[j])])
            ratios.append(hint_ratio(float(batch.correct[j][filled[j]].float().mean()), self.w_min, self.w_max, self.noise, rng))
            sol = trainer.tok(reference_solution(p), add_special_tokens=False)["input_ids"]
            hints.append(hint_ids(sol, ratios[-1]))
        prompts = [trainer.prompt_ids(p) for p in batch.problems]
        roll = trainer.generate([q + h for q, h in zip(prompts, hints, strict=True)], trainer.cfg.max_new_tokens,
                                do_sample=True, temperature=trainer.cfg.temperature, group_size=self.n_hint)
        rows = [(j, i) for j in range(batch.P) for i in range(self.n_hint)]
        comps = [hints[j] + roll.completion_ids[k, : int(roll.lengths[k])].tolist() for k, (j, _) in enumerate(rows)]
        texts = trainer.tok.batch_decode(comps, skip_special_tokens=True)
        hinted = rollout_from_ids([prompts[j] for j, _ in rows], comps, texts, roll.finished.tolist(), trainer.tok.pad_token_id)
        parts, correct = trainer.score(hinted, batch.problems, batch.indices, [self.n_hint] * batch.P)
        slots = [(j, g) for j in range(batch.P) for g in (~filled[j]).nonzero().flatten().tolist()[: self.n_hint]]
        batch.fill(slots, hinted, parts, correct, trainer.tok.pad_token_id)
        for (j, g), value in zip(slots, (parts * trainer.reward_weights).sum(-1).tolist(), strict=True):
            batch.rewards[j, g] = value
        hint_len = torch.zeros(batch.P, batch.G, dtype=torch.long)
        for j, g in slots:
            hint_len[j, g] = len(hints[j])
        batch.context["hint_len"] = hint_len
        batch.sampling["gen_tokens"] += int(roll.lengths.sum())
        batch.sampling["gen_rollouts"] += len(rows)
        naive_acc = batch.correct[filled].float().mean()
        return {"adhint_ratio": float(np.mean(ratios)), "adhint_hint_tokens": float(np.mean([len(h) for h in hints])),
                "adhint_naive_accuracy": float(naive_acc),
                "adhint_hinted_accuracy": float(np.mean(correct)) if correct else float("nan")}


@phases.register("adhint_mask", at="after_advantages")
class ADHintMask(phases.Phase):
    """Selective masking for hint preservation: no gradient on the hint tokens of negative-advantage rollouts."""

    def __init__(self, trainer: Any):
        pass

    def run(self, trainer: Any, batch: Any) -> dict[str, float]:
        hint_len = batch.context.get("hint_len")
        if hint_len is None:
            raise ParamError("adhint_mask needs the adhint phase before it (context 'hint_len')")
        adv = sample_advantages(batch.advantages, batch.roll.completion_mask)
        width = batch.roll.completion_mask.shape[1]
        tm = selective_mask(adv.reshape(-1), hint_len.reshape(-1), width)
        prev = batch.context.get("loss_token_mask")
        batch.context["loss_token_mask"] = tm if prev is None else tm * prev
        masked = ((hint_len.reshape(-1) > 0) & (adv.reshape(-1) < 0)).float().sum()
        return {"adhint_masked_rollouts": float(masked)}
