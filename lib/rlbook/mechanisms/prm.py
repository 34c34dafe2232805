"""The implicit process reward model (PRM): a second LoRA adapter on the policy's own base model, trained with
cross-entropy on outcome labels, whose token log-ratio to the reference is a process reward.

Yuan et al., "Free Process Rewards without Process Labels" (2024): parameterise the outcome reward as
``r(y) = beta * log(pi_phi(y) / pi_ref(y))`` and train it as an outcome reward model; then the partial sums
``Q_t = beta * sum_{s <= t} log(pi_phi(y_s | y_<s) / pi_ref(y_s | y_<s))`` are Q-values and their differences
are process rewards, for free.  Cui et al., "Process Reinforcement through Implicit Rewards" (PRIME, 2025)
update this PRM online, on each step's rollouts and their verifier labels, and feed its token rewards to the
policy's advantage (``rlbook.mechanisms.estimators.prime_rloo``).

Here ``pi_phi`` is the adapter ``"prm"`` on the same peft model as the policy (``rlbook.policy.models.add_adapter``:
one copy of the base weights, the policy's adapter ``"default"``), ``pi_ref`` the base model with every
adapter disabled (PRIME's ``ref_type: freeze``, the initial model).  The new adapter starts with ``B = 0``, so
the PRM starts equal to the reference and every implicit reward is exactly 0 (the paper's PRM starts from the
SFT model, which is its reference too).  The phase owns the adapter's AdamW optimizer; both are in its
``state_dict`` and so in the trainer's checkpoints.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from rlbook.core.errors import ParamError
from rlbook.core.guard import StepGuard
from rlbook.mechanisms import phases, process
from rlbook.policy.models import LoraConfig, adapter_parameters, add_adapter, reference_mode, use_adapter
from rlbook.policy.rollout import Batch, Rollout, forward_logprobs, micro_batches, slice_rows

UPDATES = ("before", "after", "none")


def ce_loss(q_sum: Tensor, acc: Tensor, beta: float) -> Tensor:
    """The PRM's loss, mean over completions: binary cross-entropy of sigmoid(beta * sum_t q_t) against the
    outcome label.  Source: verl ``recipe/prime/prime_core_algos.py::compute_ce_dpo_loss_rm`` (PRIME-RL/PRIME
    ``core_algos.compute_ce_dpo_loss_rm``; PRIME-RL/ImplicitPRM ``ce_trainer.py::CETrainer.loss_fn``).  The
    logits form is the same function, computed stably."""
    return F.binary_cross_entropy_with_logits(beta * q_sum, acc.to(q_sum.dtype))


def dpo_accuracy(scores: Tensor, acc: Tensor) -> float:
    """Within each group, over pairs with different labels: the share ordered by ``scores`` like the labels
    (0.5 for a group without such a pair), averaged over groups.  Source: verl
    ``recipe/prime/prime_core_algos.py::compute_dpo_accuracy`` (``scores`` = summed implicit rewards [P, G])."""
    out = []
    for s, a in zip(scores.float(), acc.float(), strict=True):
        iu = torch.triu_indices(len(s), len(s), offset=1)
        ds, da = (s[:, None] - s[None, :])[iu[0], iu[1]], (a[:, None] - a[None, :])[iu[0], iu[1]]
        if float(da.abs().sum()) == 0:
            out.append(0.5)
        else:
            out.append(float((((ds > 0) == (da > 0)).float() * da.abs()).sum() / da.abs().sum()))
    return float(np.mean(out)) if out else float("nan")


def per_step_sums(token_values: Tensor, lay: process.StepLayout) -> Tensor:
    """``[P, G, K]``: the sum of ``token_values`` ``[P, G, T]`` over each step's tokens (Q_k - Q_{k-1} for implicit
    token rewards: the step reward of ImplicitPRM ``eval/prm_eval_utils.py::get_reward``)."""
    flat = token_values.reshape(len(lay.ends), -1)
    out = torch.zeros(len(lay.ends), lay.K, dtype=flat.dtype)
    idx = lay.index[:, : flat.shape[1]]
    for k in range(lay.K):
        out[:, k] = (flat * (idx == k).to(flat.dtype)).sum(-1)
    return out.view(-1, lay.G, lay.K)


@phases.register("implicit_prm", at="before_advantages")
class ImplicitPRM(phases.Phase):
    """PRIME's implicit PRM: scores each token with ``beta * log(pi_phi / pi_ref)`` (context ``token_rewards``,
    ``step_rewards``) and, unless ``update="none"``, takes ``minibatches`` AdamW steps of :func:`ce_loss` on the
    step's rollouts and verifier labels.

    Source: verl ``recipe/prime/prime_dp_rm.py::DataParallelPRIMERewardModel`` (``_forward_micro_batch``: q =
    log pi_phi - log pi_ref at temperature 1, 0 past the response; r = beta q; ``update_rm``: mini-batches of the
    step's rollouts, CE loss, grad-norm clip) and ``prime_ray_trainer.py::fit`` (``update="before"``: update,
    then score with the updated PRM, the recipe's default; ``"after"``: score with the PRM before its update,
    the single forward of PRIME-RL/PRIME ``dp_prime.py`` and its run script; ``"none"``: a frozen PRM).
    ``warmup_prompts > 0``: before the first step the PRM is fitted offline, ``warmup_epochs`` passes over
    ``warmup_prompts`` x G completions of the initial policy in batches of ``warmup_rows`` (ImplicitPRM's
    recipe ``train/tasks/run_ce.sh``: one epoch, batch 64), their tokens counted as generated.
    Differences: LoRA instead of full fine-tuning, so ``lr`` is LoRA-sized (paper 1e-6, full 7B); one mini-batch
    per step by default (the paper's run: about four); the recipe also gives the last response token 0 reward
    (``drop_last_token=True``; the PRIME repo does not); the batch normalisation of the token rewards is applied by
    the estimator (``prime_rloo``); ``ref="policy"`` is not offered.
    """

    def __init__(self, trainer: Any, *, beta: float = 0.05, lr: float = 1e-4, update: str = "before",
                 minibatches: int = 1, grad_clip: float = 10.0, weight_decay: float = 0.0, lora_r: int = 0,
                 drop_last_token: bool = False, warmup_prompts: int = 0, warmup_epochs: int = 1,
                 warmup_rows: int = 64, adapter: str = "prm", seed: int = 0):
        if update not in UPDATES:
            raise ParamError(f"implicit_prm: update={update!r} is not allowed; allowed: {', '.join(UPDATES)}")
        for key, value, lo in (("minibatches", minibatches, 1), ("warmup_prompts", warmup_prompts, 0),
                               ("warmup_epochs", warmup_epochs, 1), ("warmup_rows", warmup_rows, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < lo:
                raise ParamError(f"implicit_prm: {key}={value!r} must be an integer >= {lo}")
        self.beta, self.update, self.minibatches, self.grad_clip = beta, update, minibatches, grad_clip
        self.drop_last_token, self.adapter, self.seed = drop_last_token, adapter, seed
        self.warmup_prompts, self.warmup_epochs, self.warmup_rows = warmup_prompts, warmup_epochs, warmup_rows
        lora = _policy_lora(trainer.model, lora_r)
        add_adapter(trainer.model, adapter, lora, seed=seed)
        self.params = list(adapter_parameters(trainer.model, adapter).values())
        self.optimizer = torch.optim.AdamW(self.params, lr=lr, weight_decay=weight_decay)
        self.cfg1 = dataclasses.replace(trainer.cfg, temperature=1.0)  # the PRM and its reference: temperature 1
        self.warmed = warmup_prompts == 0
        self.updates = 0
        self.guard = StepGuard(trainer.cfg.max_bad_steps, "implicit_prm")

    # ------------------------------------------------------------------------------------ the step
    def run(self, trainer: Any, batch: Batch) -> dict[str, float]:
        metrics: dict[str, float] = {}
        if not self.warmed:
            metrics.update(self.warmup(trainer, batch))
        rows = list(range(batch.P * batch.G))
        acc = batch.correct.reshape(-1).float()
        ref = self.logprobs(trainer, batch.roll, rows, reference=True)
        if self.update == "none":
            q_before = q = self.q_values(trainer, batch.roll, rows, ref)
        else:
            skipped = self.guard.skipped
            q_before, loss, norm = self.fit(trainer, batch.roll, rows, acc, ref, self.minibatches)
            metrics.update(prm_loss=loss, prm_grad_norm=norm, prm_skipped=self.guard.skipped - skipped)
            q = self.q_values(trainer, batch.roll, rows, ref) if self.update == "before" else q_before
        metrics.update(self.publish(trainer, batch, q, q_before))
        return metrics

    def publish(self, trainer: Any, batch: Batch, q: Tensor, q_before: Tensor) -> dict[str, float]:
        """Write ``token_rewards`` / ``step_rewards`` / ``step_mask`` and measure the PRM on this batch (with the
        scores of the PRM before this step's update: the batch is new to it)."""
        mask = batch.roll.completion_mask
        r = self.beta * q * mask
        if self.drop_last_token:
            last = (mask.sum(-1).long() - 1).clamp(min=0)
            r = r.scatter(-1, last.unsqueeze(-1), 0.0)
        lay = process.batch_layout(trainer, batch)
        token_rewards = r.view(batch.P, batch.G, -1)
        batch.context.update(token_rewards=token_rewards, step_rewards=per_step_sums(token_rewards, lay),
                             step_mask=lay.step_mask())
        before = (self.beta * q_before * mask).view(batch.P, batch.G, -1)
        out = {"prm_dpo_acc": dpo_accuracy(before.sum(-1), batch.correct),
               "prm_reward_mean": float(r.sum(-1).mean())}
        if process.has_oracle(batch):
            out["prm_step_auc"] = step_auc(batch, lay, per_step_sums(before, lay))
        return out

    # ------------------------------------------------------------------------------ forward passes
    def logprobs(self, trainer: Any, roll: Rollout, rows: list[int], reference: bool = False,
                 grad: bool = False) -> dict[int, Tensor]:
        """Per-token log-probs (temperature 1) of ``rows`` under the PRM, or the reference (no gradient)."""
        out: dict[int, Tensor] = {}
        for mb in micro_batches(rows, roll.lengths.tolist(), trainer.cfg, trainer.whole_groups):
            logp = self.forward(trainer, roll, mb, reference, grad)
            for j, r in enumerate(mb):
                out[r] = logp[j]
        return out

    def forward(self, trainer: Any, roll: Rollout, mb: list[int], reference: bool, grad: bool) -> Tensor:
        ids, att, _, lc = slice_rows(roll, mb)
        ctx = reference_mode(trainer.model) if reference else use_adapter(trainer.model, self.adapter)
        with ctx, torch.set_grad_enabled(grad and not reference):
            logp, _ = forward_logprobs(trainer.model, self.cfg1, ids, att, lc, mb)
        return logp

    def q_values(self, trainer: Any, roll: Rollout, rows: list[int], ref: dict[int, Tensor]) -> Tensor:
        """``[B, T]``: log pi_phi - log pi_ref of every completion token (0 past each completion), no gradient."""
        now = self.logprobs(trainer, roll, rows)
        return self._stack(roll, {r: now[r] - ref[r] for r in rows})

    @staticmethod
    def _stack(roll: Rollout, per_row: dict[int, Tensor]) -> Tensor:
        out = torch.zeros(roll.completion_mask.shape)
        for r, v in per_row.items():
            out[r, : v.numel()] = v.detach().float().cpu()
        return out * roll.completion_mask

    # ------------------------------------------------------------------------------------ the update
    def fit(self, trainer: Any, roll: Rollout, rows: list[int], acc: Tensor, ref: dict[int, Tensor],
            n_minibatches: int) -> tuple[Tensor, float, float]:
        """``n_minibatches`` AdamW steps of :func:`ce_loss`, each over a consecutive slice of ``rows``; returns the
        q-values each mini-batch had before its own step, the mean loss and the mean gradient norm."""
        size = -(-len(rows) // n_minibatches)
        q: dict[int, Tensor] = {}
        losses: list[float] = []
        norms: list[float] = []
        with use_adapter(trainer.model, self.adapter):  # peft reads requires_grad at backward: stay active
            for start in range(0, len(rows), size):
                losses.append(self.minibatch(trainer, roll, rows[start : start + size], acc, ref, q, norms))
        return self._stack(roll, q), float(np.mean(losses)), float(np.mean(norms))

    def minibatch(self, trainer: Any, roll: Rollout, part: list[int], acc: Tensor, ref: dict[int, Tensor],
                  q: dict[int, Tensor], norms: list[float]) -> float:
        """One AdamW step of :func:`ce_loss` over the rows ``part`` (micro-batched); returns the loss."""
        self.optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for mb in micro_batches(part, roll.lengths.tolist(), trainer.cfg, trainer.whole_groups):
            logp = self.forward(trainer, roll, mb, reference=False, grad=True)
            mask = roll.completion_mask[mb, : logp.shape[1]].to(logp.device)
            diff = (logp - torch.stack([ref[r][: logp.shape[1]] for r in mb])) * mask
            loss = ce_loss(diff.sum(-1), acc[mb].to(logp.device), self.beta) * len(mb) / len(part)
            loss.backward()
            total += float(loss.detach())
            for j, r in enumerate(mb):
                q[r] = diff[j].detach()
        norm, skipped = self.guard.step(self.params, self.optimizer, total, self.grad_clip)
        norms.append(norm)
        self.updates += int(not skipped)
        return total

    def warmup(self, trainer: Any, batch: Batch) -> dict[str, float]:
        """The offline fit (Free Process Rewards): completions of the initial policy on ``warmup_prompts`` training
        prompts, then ``warmup_epochs`` passes of the CE loss; the global RNG is left as it was."""
        cfg = trainer.cfg
        picks = random.Random(self.seed).sample(range(len(trainer.task.train)),
                                                min(self.warmup_prompts, len(trainer.task.train)))
        problems = [trainer.task.train[i] for i in picks]
        devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.seed)
            roll = trainer.generate([trainer.prompt_ids(p) for p in problems], cfg.max_new_tokens, True,
                                    cfg.temperature, group_size=cfg.group_size)
        flat = [p for p in problems for _ in range(cfg.group_size)]
        acc = torch.tensor([trainer.task.score(p, t) >= 1.0 for p, t in zip(flat, roll.texts, strict=True)]).float()
        rows = list(range(len(flat)))
        ref = self.logprobs(trainer, roll, rows, reference=True)
        n_mb = max(1, -(-len(rows) // self.warmup_rows))
        losses = [self.fit(trainer, roll, rows, acc, ref, n_mb)[1] for _ in range(self.warmup_epochs)]
        self.warmed = True
        tokens = int(roll.lengths.sum())
        batch.sampling["extra_gen_tokens"] = batch.sampling.get("extra_gen_tokens", 0) + tokens
        return {"prm_warmup_loss": losses[-1], "prm_warmup_accuracy": float(acc.mean())}

    # ----------------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return {"adapter": {i: p.detach().cpu().clone() for i, p in enumerate(self.params)},
                "optimizer": self.optimizer.state_dict(), "warmed": self.warmed, "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            for i, p in enumerate(self.params):
                p.copy_(state["adapter"][i].to(p.device, p.dtype))
        self.optimizer.load_state_dict(state["optimizer"])
        self.warmed, self.updates = bool(state["warmed"]), int(state["updates"])


def _policy_lora(model: Any, r: int) -> LoraConfig:
    """The PRM adapter's LoRA settings: the policy adapter's, with rank ``r`` when ``r > 0``."""
    pc = model.peft_config["default"]
    rank = r or int(pc.r)
    return LoraConfig(r=rank, alpha=int(pc.lora_alpha * rank / pc.r), dropout=float(pc.lora_dropout),
                      target_modules=sorted(pc.target_modules))


def step_auc(batch: Batch, lay: process.StepLayout, step_scores: Tensor) -> float:
    """AUC of per-step scores ``[P, G, K]`` for oracle-right vs oracle-wrong calc lines of the batch."""
    labels = process.oracle_labels(batch, lay)
    flat = step_scores.reshape(len(lay.ends), -1)
    pairs = [(float(flat[b, k]), lab) for b, row in enumerate(labels) for k, lab in enumerate(row)
             if lab is not None and lay.steps[b][k].kind == "calc"]
    return process.auc([s for s, _ in pairs], [lab for _, lab in pairs]) if pairs else float("nan")
