"""Truncated PPO's Extended GAE: advantages for rollouts cut at a window before they finish, from a value model
trained on the finished ones.

Source: Fan, Liu, Yue, Chen, ... Wu, "Truncated Proximal Policy Optimization" (2025, arXiv 2506.15050).
**No public code**; the rules follow a third-party reading note of the full paper:

* generation proceeds in windows of ``l`` tokens; the policy is updated on every sequence so far, finished
  or not (successive batching continues the unfinished ones in the next step);
* Extended GAE (:func:`egae`): A_t = sum_k (gamma lambda)^k delta_{t+k}, delta_t = r_t + gamma V(s_{t+1}) - V(s_t);
  a finished sequence ends with its outcome reward and V(terminal) = 0; for a truncated sequence of current
  length L the missing V(s_L) is V(s_{L-1}) (so its last delta is (gamma - 1) V(s_{L-1}), 0 for gamma = 1);
* the value model is trained only on finished sequences, with Monte-Carlo returns (lambda = 1).

What is implemented, and the differences: the window is ``train.max_new_tokens`` (a rollout that did not end
by then is *truncated*); its tokens are trained with EGAE advantages and the value bootstrap; **successive
batching is not implemented** (a truncated rollout is not continued in the next step), so the paper's gain
in wall-clock time on 8K-24K-token responses is not reproduced.  The value model is a linear head on the
policy's last hidden state (detached), fitted each step by ``critic_steps`` Adam steps on the finished
rollouts' Monte-Carlo returns (the paper's critic is a full model).  gamma = 1 and lambda = 0.95 are
assumptions (not recovered from the paper); the advantages are whitened over the batch's tokens as verl's
GAE path does (``masked_whiten``).  Truncated rollouts get no outcome reward.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from rlbook.core.errors import ParamError
from rlbook.core.guard import StepGuard
from rlbook.mechanisms import phases
from rlbook.mechanisms.estimators import register
from rlbook.policy.rollout import micro_batches, position_ids_from_mask, slice_rows


def egae(rewards: Tensor, values: Tensor, lengths: Tensor, finished: Tensor, gamma: float = 1.0,
         lam: float = 0.95) -> Tensor:
    """[B, T] EGAE advantages: ``rewards`` [B] outcome rewards (counted only for finished rows, at their last
    token), ``values`` [B, T] V(s_t), ``lengths`` [B] tokens, ``finished`` [B] bool; 0 past each length."""
    B, T = values.shape
    out = torch.zeros(B, T, dtype=torch.float64)
    v = values.double()
    for b in range(B):
        n = int(lengths[b])
        if n == 0:
            continue
        nxt = 0.0 if bool(finished[b]) else float(v[b, n - 1])  # V(s_L): terminal 0, or V(s_{L-1}) when cut
        gae = 0.0
        for t in range(n - 1, -1, -1):
            r = float(rewards[b]) if (t == n - 1 and bool(finished[b])) else 0.0
            delta = r + gamma * nxt - float(v[b, t])
            gae = delta + gamma * lam * gae
            out[b, t] = gae
            nxt = float(v[b, t])
    return out.to(values.dtype)


@register("tppo_egae", ragged=True)
def tppo_egae(rewards: Tensor, *, values: Tensor, finished: Tensor, lengths: Tensor,
              sample_mask: Tensor | None = None, gamma: float = 1.0, lam: float = 0.95, whiten: bool = True) -> Tensor:
    """T-PPO's EGAE over each sampled completion ([P, G, T]; ``values`` and ``finished`` from the
    ``tppo_critic`` phase), whitened over the batch's tokens (see the module docstring)."""
    P, G, T = values.shape
    mask = torch.ones(P, G, dtype=torch.bool) if sample_mask is None else sample_mask.bool()
    lens = torch.where(mask, lengths.long(), torch.zeros_like(lengths.long())).reshape(-1)
    adv = egae(rewards.reshape(-1), values.reshape(P * G, T), lens, finished.reshape(-1), gamma, lam)
    if whiten:
        tok = torch.arange(T).unsqueeze(0) < lens.unsqueeze(1)
        flat = adv[tok]
        if flat.numel() > 1:  # verl masked_whiten: (x - mean) * rsqrt(var_unbiased + 1e-8)
            adv = torch.where(tok, (adv - flat.mean()) * torch.rsqrt(flat.var() + 1e-8), torch.zeros_like(adv))
    return adv.view(P, G, T)


@phases.register("tppo_critic", at="before_advantages")
class TPPOCritic(phases.Phase):
    """A linear value head on the policy's last hidden state: V(s_t) for every sampled token (context ``values``
    [P, G, T] and ``finished`` [P, G]), then ``critic_steps`` Adam steps on the finished rollouts' returns."""

    def __init__(self, trainer: Any, *, lr: float = 1e-2, critic_steps: int = 20):
        if critic_steps < 0 or lr <= 0:
            raise ParamError(f"tppo_critic needs lr > 0 and critic_steps >= 0; got lr={lr}, critic_steps={critic_steps}")
        hidden = int(trainer.model.config.hidden_size)
        self.head = torch.nn.Linear(hidden, 1)
        torch.nn.init.zeros_(self.head.weight)
        torch.nn.init.zeros_(self.head.bias)
        self.opt = torch.optim.Adam(self.head.parameters(), lr=lr)
        self.steps = critic_steps
        self.guard = StepGuard(trainer.cfg.max_bad_steps, "tppo_critic")

    @torch.no_grad()
    def features(self, trainer: Any, batch: Any, rows: list[int]) -> dict[int, Tensor]:
        """Last-layer hidden state at each position that predicts a completion token (s_t), per row."""
        out: dict[int, Tensor] = {}
        for mb in micro_batches(rows, batch.roll.lengths.tolist(), trainer.cfg, False):
            ids, att, _, lc = slice_rows(batch.roll, mb)
            res = trainer.model(input_ids=ids, attention_mask=att, position_ids=position_ids_from_mask(att),
                                output_hidden_states=True, logits_to_keep=1, use_cache=False)
            h = res.hidden_states[-1][:, ids.shape[1] - lc - 1 : ids.shape[1] - 1].float()
            for j, r in enumerate(mb):
                out[r] = h[j, : int(batch.roll.lengths[r])].cpu()
        return out

    def run(self, trainer: Any, batch: Any) -> dict[str, float]:
        valid = batch.valid.nonzero().flatten().tolist()
        feats = self.features(trainer, batch, valid)
        T = batch.roll.completion_mask.shape[1]
        values = torch.zeros(batch.P * batch.G, T)
        with torch.no_grad():
            for r, f in feats.items():
                values[r, : len(f)] = self.head(f).squeeze(-1)
        finished = batch.roll.finished if batch.roll.finished is not None else torch.ones(batch.P * batch.G, dtype=torch.bool)
        batch.context["values"] = values.view(batch.P, batch.G, T)
        batch.context["finished"] = finished.view(batch.P, batch.G)
        skipped = self.guard.skipped
        loss = self.fit(feats, batch.rewards.reshape(-1), finished)
        return {"tppo_value_loss": loss, "tppo_skipped": self.guard.skipped - skipped, "tppo_truncated_frac": 1.0 - float(finished[batch.valid].float().mean())}

    def fit(self, feats: dict[int, Tensor], rewards: Tensor, finished: Tensor) -> float:
        """Monte-Carlo regression on finished rollouts: every state's return is the outcome reward (gamma = 1).
        Non-finite steps are skipped and counted (:class:`rlbook.core.guard.StepGuard`, ``train.max_bad_steps`` in a
        row fail)."""
        rows = [r for r in feats if bool(finished[r]) and len(feats[r])]
        if not rows or self.steps == 0:
            return float("nan")
        x = torch.cat([feats[r] for r in rows])
        y = torch.cat([torch.full((len(feats[r]),), float(rewards[r])) for r in rows])
        loss = torch.zeros(())
        for _ in range(self.steps):
            self.opt.zero_grad()
            loss = torch.nn.functional.mse_loss(self.head(x).squeeze(-1), y)
            loss.backward()
            self.guard.step(self.head.parameters(), self.opt, float(loss.detach()))
        return float(loss.detach())

    def state_dict(self) -> dict[str, Any]:
        return {"head": self.head.state_dict(), "opt": self.opt.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.head.load_state_dict(state["head"])
        self.opt.load_state_dict(state["opt"])
