"""Digi-Q: an offline Q-function on frozen intermediate-layer features, and Best-of-N policy extraction.

Paper: Bai, Zhou, Li, Levine & Kumar (2025), "Digi-Q: Learning VLM Q-Value Functions for Training Device-Control
Agents", arXiv 2502.15760 (ICLR 2025).  Code followed: DigiRL-agent/digiq @ 818137974b5b:

* ``digiq/models/critic.py`` ``VLMDoubleCritic``: two Q heads on (state, action) features and two V heads on
  state features, each an MLP, plus a target copy (:class:`DoubleCritic`);
* ``digiq/algorithms/digiq/trainer.py`` ``DigiQTrainer.critic_loss`` (``advantage_estimation: bellman``):
  ``Q_i(s, a) -> r + gamma (1 - done) V_i^target(s')`` with the *same-index* target V head (no min over heads)
  and ``V_i(s) -> Q_i^target(s, a_logged)`` (``critc_use_original_action_to_backup: True``: SARSA-style, no max);
  loss = sum of the four MSEs (:func:`td_targets`, :func:`v_targets`, :func:`critic_loss`); soft target update
  ``theta' <- (1 - tau) theta' + tau theta`` (:func:`soft_update`);
* ``DigiQTrainer.actor_loss`` (``best-of-n``): for each state N candidate actions (index 0 the logged one),
  ``A = max(Q1, Q2) - max(V1, V2)`` (the code takes the maximum of the two heads), invalid actions ``A = 0``,
  best = argmax (first on ties), ``A* = clamp(A_best, 0, 1)``, weight 1 if ``A* > threshold`` else 0 (strict),
  loss ``-mean_batch w sum_t log clamp(pi(a*_t), 0.001, 0.99)`` (:func:`best_of_n`;
  :func:`rlbook.training.finetune.sft_loss` with ``seq_sum_mean`` and ``prob_clamp``);
* ``digiq/algorithms/filteredbc/trainer.py`` ``BCTrainer``: the Filtered-BC baseline, ``-mean_batch sum_t log
  pi(a_t)`` on the successful trajectories.

Differences at our scale (a text environment, :class:`rlbook.training.agents.GuessNumber`, and a 135M LM): the features
are one intermediate layer's hidden state at the last prompt token of the LoRA "repr" model (Digi-Q: the
fine-tuned VLM's hidden state averaged over its Yes/No answer tokens, concatenated with RoBERTa encodings of
goal and actions and BLIP-2 image features, which we do not have); the V heads see the state's feature (Digi-Q's
V sees no VLM feature); representation fine-tuning asks "does this guess make progress?" labelled by the
environment (the guess is still possible: the analogue of Digi-Q's "did the screen change?" label,
``construct_sft_data.py``); MLP width 256, Adam lr 1e-3 and gradient clip 1.0 on cached features (theirs:
lr 1e-5, clip 0.01, with trainable RoBERTa encoders); the candidates come from the behaviour policy, as in the
code (``get_more_actions_batched.py``), not from the current policy as the abstract says.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from rlbook.core.guard import MAX_BAD, StepGuard
from rlbook.policy.generation import left_pad, prompt_ids
from rlbook.policy.models import Tokenizer
from rlbook.training.stages import Stage, StageParams

QUESTION = "Proposed reply: {action}\nDoes this reply make progress? Answer Yes or No."


def repr_messages(state: list[dict[str, str]], action: str) -> list[dict[str, str]]:
    """The representation model's prompt for (state, action): the state's last message plus the question."""
    *head, last = state
    return [*head, {"role": last["role"], "content": f"{last['content']}\n{QUESTION.format(action=action.strip())}"}]


class _Stop(Exception):
    """Raised by a forward hook to end a forward pass once the wanted layer has run."""

    def __init__(self, hidden: torch.Tensor):
        super().__init__()
        self.hidden = hidden


def _layer_output(model: Any, layer: int, **inputs: Any) -> torch.Tensor:
    """Output of decoder layer ``layer`` (1-based: what ``output_hidden_states`` lists at index ``layer`` for every
    layer but the last, which it lists after the final norm), running only the layers up to it."""
    layers = model.get_decoder().layers
    if not 1 <= layer < len(layers):
        raise ValueError(f"layer={layer} must be between 1 and {len(layers) - 1} (an intermediate layer)")

    def stop(module: Any, args: Any, out: Any) -> None:
        raise _Stop(out[0] if isinstance(out, tuple) else out)

    handle = layers[layer - 1].register_forward_hook(stop)
    try:
        model(**inputs, use_cache=False, logits_to_keep=1)
    except _Stop as s:
        return s.hidden
    finally:
        handle.remove()
    raise RuntimeError("the forward pass ended without reaching the hooked layer")


@torch.no_grad()
def hidden_features(model: Any, tok: Tokenizer, prompts: Sequence[list[int]], layer: int,
                    batch_size: int = 32) -> torch.Tensor:
    """Hidden state after decoder layer ``layer`` at each prompt's last token, ``[B, d]``, under the active adapter
    (no gradient: the features are frozen; the layers above ``layer`` are not run)."""
    device = next(model.parameters()).device
    out = []
    for s in range(0, len(prompts), batch_size):
        ids, att = left_pad(list(prompts[s : s + batch_size]), tok.pad_token_id, device)
        pos = (att.cumsum(-1) - 1).clamp(min=0)
        h = _layer_output(model, layer, input_ids=ids, attention_mask=att, position_ids=pos)
        out.append(h[:, -1].float().cpu())
    return torch.cat(out) if out else torch.zeros(0)


def state_features(model: Any, tok: Tokenizer, states: Sequence[list[dict[str, str]]], layer: int) -> torch.Tensor:
    return hidden_features(model, tok, [prompt_ids(tok, s) for s in states], layer)


def action_features(model: Any, tok: Tokenizer, states: Sequence[list[dict[str, str]]], actions: Sequence[str],
                    layer: int) -> torch.Tensor:
    return hidden_features(model, tok, [prompt_ids(tok, repr_messages(s, a)) for s, a in zip(states, actions,
                                                                                                 strict=True)], layer)


# -------------------------------------------------------------------------------------- the critic


def mlp(d_in: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))


class DoubleCritic(nn.Module):
    """Two Q heads on (state, action) features and two V heads on state features (Digi-Q ``VLMDoubleCritic``)."""

    def __init__(self, d_action: int, d_state: int, hidden: int = 256):
        super().__init__()
        self.q1, self.q2 = mlp(d_action, hidden), mlp(d_action, hidden)
        self.v1, self.v2 = mlp(d_state, hidden), mlp(d_state, hidden)

    def q(self, sa: torch.Tensor) -> torch.Tensor:
        """``[2, *batch]``: both Q heads."""
        return torch.stack([self.q1(sa).squeeze(-1), self.q2(sa).squeeze(-1)])

    def v(self, s: torch.Tensor) -> torch.Tensor:
        """``[2, *batch]``: both V heads."""
        return torch.stack([self.v1(s).squeeze(-1), self.v2(s).squeeze(-1)])


def td_targets(reward: torch.Tensor, done: torch.Tensor, v_next_target: torch.Tensor, gamma: float) -> torch.Tensor:
    """Q targets ``[2, B]``: ``r + gamma (1 - done) V_i^target(s')`` for heads i = 1, 2 (each its own V head)."""
    return reward.unsqueeze(0) + gamma * (1.0 - done.float()).unsqueeze(0) * v_next_target


def v_targets(q_target_logged: torch.Tensor) -> torch.Tensor:
    """V targets ``[2, B]``: the target critic's Q of the logged action, head by head (no max over actions)."""
    return q_target_logged


def critic_loss(critic: DoubleCritic, target: DoubleCritic, batch: dict[str, torch.Tensor], gamma: float
                ) -> tuple[torch.Tensor, dict[str, float]]:
    """Digi-Q's Bellman critic loss on a batch with ``s``, ``sa`` (logged action), ``r``, ``done``, ``s_next``."""
    with torch.no_grad():
        y_q = td_targets(batch["r"], batch["done"], target.v(batch["s_next"]), gamma)
        y_v = v_targets(target.q(batch["sa"]))
    q, v = critic.q(batch["sa"]), critic.v(batch["s"])
    mse = nn.functional.mse_loss
    loss = mse(q[0], y_q[0]) + mse(q[1], y_q[1]) + mse(v[0], y_v[0]) + mse(v[1], y_v[1])
    q, v = q.detach(), v.detach()
    return loss, {"q_loss": float(mse(q, y_q)), "v_loss": float(mse(v, y_v)), "q_mean": float(q.mean())}


@torch.no_grad()
def soft_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """``target <- (1 - tau) target + tau online`` for every parameter (Digi-Q ``soft_update_target_critic``)."""
    for t, o in zip(target.parameters(), online.parameters(), strict=True):
        t.mul_(1.0 - tau).add_(o, alpha=tau)


def train_critic(data: dict[str, torch.Tensor], *, steps: int, batch_size: int = 64, lr: float = 1e-3,
                 gamma: float = 0.95, tau: float = 0.1, target_every: int = 20, hidden: int = 256, seed: int = 0,
                 max_grad_norm: float = 1.0, max_bad_steps: int = MAX_BAD
                 ) -> tuple[DoubleCritic, list[dict[str, float]]]:
    """TD learning of a :class:`DoubleCritic` on cached transitions (``s, sa, r, done, s_next``), minibatches drawn
    with replacement (as the code's replay buffer), a soft target update every ``target_every`` steps.  A step with
    a non-finite loss or gradient is skipped (``skipped`` 1 in its row) and ``max_bad_steps`` in a row fail
    (:class:`rlbook.core.guard.StepGuard`)."""
    torch.manual_seed(seed)
    critic = DoubleCritic(data["sa"].shape[1], data["s"].shape[1], hidden)
    target = copy.deepcopy(critic)
    opt = torch.optim.Adam(critic.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    n, hist = data["r"].shape[0], []
    guard = StepGuard(max_bad_steps, "Digi-Q critic")
    for step in range(1, steps + 1):
        idx = torch.randint(0, n, (batch_size,), generator=g)
        loss, info = critic_loss(critic, target, {k: v[idx] for k, v in data.items()}, gamma)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        _, skipped = guard.step(critic.parameters(), opt, float(loss.detach()), max_grad_norm, step)
        if step % target_every == 0:
            soft_update(target, critic, tau)
        hist.append({"step": step, "loss": float(loss.detach()), **info, "skipped": int(skipped)})
    return critic, hist


@torch.no_grad()
def advantages(critic: DoubleCritic, s: torch.Tensor, sa: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both heads' Q ``[2, B, N]`` of each state's N candidates (``sa``: ``[B, N, d]``) and V ``[2, B]``."""
    return critic.q(sa), critic.v(s)


def best_of_n(q: torch.Tensor, v: torch.Tensor, valid: torch.Tensor, threshold: float
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Digi-Q's Best-of-N operator: ``A = max(Q1, Q2) - max(V1, V2)`` per candidate (``q`` ``[2, B, N]``, ``v``
    ``[2, B]``), 0 for invalid candidates; best = argmax (first on ties); ``A* = clamp(A_best, 0, 1)``; weight
    ``1[A* > threshold]``.  Returns ``(best [B], weight [B], A* [B])``."""
    adv = q.max(0).values - v.max(0).values.unsqueeze(-1)
    adv = torch.where(valid, adv, torch.zeros_like(adv))
    best = adv.argmax(-1)
    a_star = adv.gather(-1, best.unsqueeze(-1)).squeeze(-1).clamp(0.0, 1.0)
    return best, (a_star > threshold).float(), a_star


def degenerate(q: torch.Tensor, valid: torch.Tensor, kept: int, tol: float = 1e-6) -> list[str]:
    """Why a seed's critic or extraction is unusable (empty: usable): the critic is constant (``max(Q1, Q2)``
    over the valid candidates ``q`` ``[2, B, N]`` of held-out states varies by at most ``tol``: its Best-of-N
    pick is the first candidate, whatever it is), or the Best-of-N extraction ``kept`` no example (no advantage
    above the threshold: the extracted policy is the untrained adapter)."""
    out = []
    vals = q.max(0).values[valid.bool()]
    if vals.numel() > 1 and float(vals.max() - vals.min()) <= tol:
        out.append(f"the critic is constant (Q = {float(vals.mean()):.4g} on all {vals.numel()} held-out candidates)")
    if kept == 0:
        out.append("Best-of-N extraction kept no example (no advantage above the threshold; the policy stays untrained)")
    return out


# ------------------------------------------------------------------------------------ the study


def repr_examples(tok: Tokenizer, transitions: Sequence[Any], cap: int, seed: int) -> list[Any]:
    """Representation fine-tuning data: (state, logged action) -> "Yes" when the action made progress, else "No"
    (balanced between the two answers as far as the data allows, at most ``cap``)."""
    import numpy as np

    from rlbook.training.finetune import Example, completion_ids

    rng = np.random.default_rng(seed)
    by = {True: [], False: []}  # type: dict[bool, list[Any]]
    for t in transitions:
        by[bool(t.info["informative"])].append(t)
    half = cap // 2
    pick = []
    for label, items in by.items():
        k = min(len(items), max(half, cap - len(by[not label])))
        pick += [(items[i], label) for i in sorted(rng.choice(len(items), size=k, replace=False).tolist())]
    return [Example(prompt_ids(tok, repr_messages(t.state, t.action)), completion_ids(tok, "Yes" if y else "No"))
            for t, y in pick]


def next_state_features(flat: Sequence[tuple[Any, int, bool]], s: torch.Tensor) -> torch.Tensor:
    """Features of each transition's next state: the next transition's state in the same episode (the same
    messages); zeros after the last turn, where ``done`` masks the bootstrap anyway."""
    out = torch.zeros_like(s)
    for i, (t, _, _) in enumerate(flat[:-1]):
        nxt = flat[i + 1][0]
        if not t.done and nxt.episode == t.episode and nxt.turn == t.turn + 1:
            out[i] = s[i + 1]
    return out


def _flatten(episodes: list[list[Any]], split: int) -> list[tuple[Any, int, bool]]:
    return [(t, split, any(x.reward > 0 for x in ep)) for ep in episodes for t in ep]


def build_dataset(params: DataParams, folder: Any) -> dict[str, Any]:
    """The shared offline stages: behaviour episodes, candidate actions, representation fine-tuning, frozen
    features.  Writes ``features.pt`` and ``repr.safetensors`` into ``folder``; returns a summary."""
    import numpy as np
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    from rlbook.policy.models import load_policy, use_adapter, wrap_adapters
    from rlbook.training import agents
    from rlbook.training.finetune import train_sft

    make_env = agents.make_env_factory(params["env"]["name"], **params["env"].get("kwargs", {}))
    d = params["data"]
    base, tok = load_policy(params["model"], lora=None)
    model = wrap_adapters(base, params["lora"], ["repr"], seed=0)
    torch.manual_seed(0)
    behave = agents.lm_policy(model, tok, adapter=None, max_new_tokens=int(params["action_tokens"]),
                              temperature=float(params["temperature"]))
    n_tr, n_va = int(d["train_episodes"]), int(d["val_episodes"])
    episodes = agents.rollout_episodes(make_env, list(range(n_tr + n_va)), behave)
    agents.add_mc_returns(episodes, float(params["gamma"]))
    flat = _flatten(episodes[:n_tr], 0) + _flatten(episodes[n_tr:], 1)
    states = [t.state for t, _, _ in flat]
    n = int(d["candidates"])
    extra = agents.sample_actions(model, tok, states, n - 1, adapter=None, max_new_tokens=int(params["action_tokens"]),
                                  temperature=float(d["candidate_temperature"])) if n > 1 else [[] for _ in flat]
    cands = [[t.action, *more] for (t, _, _), more in zip(flat, extra, strict=True)]
    envs = [agents.replay_env(make_env, t.info["seed"], [x.action for x in episodes[t.episode][: t.turn]])
            for t, _, _ in flat]
    info = [[(e.parse(c) is not None, e.informative(c)) for c in cs] for e, cs in zip(envs, cands, strict=True)]
    train_t = [t for t, split, _ in flat if split == 0]
    ex = repr_examples(tok, train_t, int(d["repr_cap"]), 0)
    with use_adapter(model, "repr"):
        rows = train_sft(model, tok, ex, lr=float(d["repr_lr"]), epochs=int(d["repr_epochs"]),
                         batch_size=int(d["batch_size"]), seed=0)
        layer = int(params["layer"])
        s = state_features(model, tok, states, layer)
        s_next = next_state_features(flat, s)
        sa = action_features(model, tok, [st for st in states for _ in range(n)], [c for cs in cands for c in cs],
                             layer).view(len(flat), n, -1)
    save_file({k: v.contiguous() for k, v in get_peft_model_state_dict(model, adapter_name="repr").items()},
              str(folder / "repr.safetensors"))
    torch.save({"s": s, "s_next": s_next, "sa": sa, "r": torch.tensor([t.reward for t, _, _ in flat]),
                "done": torch.tensor([t.done for t, _, _ in flat]), "mc": torch.tensor([t.mc_return for t, _, _ in flat]),
                "valid": torch.tensor([[v for v, _ in row] for row in info]),
                "informative": torch.tensor([[i for _, i in row] for row in info]),
                "split": torch.tensor([sp for _, sp, _ in flat]), "success": torch.tensor([ok for _, _, ok in flat])},
               folder / "features.pt")
    text = [{"state": t.state, "candidates": cs} for (t, _, _), cs in zip(flat, cands, strict=True)]
    (folder / "transitions.json").write_text(__import__("json").dumps(text))
    succ = agents.success(episodes)
    return {"folder": folder.name, "behaviour_success_train": float(np.mean(succ[:n_tr])),
            "behaviour_success_val": float(np.mean(succ[n_tr:])), "transitions": len(flat),
            "informative_rate_logged": float(np.mean([t.info["informative"] for t, _, _ in flat])),
            "informative_rate_candidates": float(np.mean([i for row in info for _, i in row])),
            "repr_examples": len(ex), "repr_loss_first": rows[0]["loss"] if rows else None,
            "repr_loss_last": rows[-1]["loss"] if rows else None,
            "repr_skipped": sum(r["skipped"] for r in rows), "feature_dim": int(s.shape[1])}


def _critic_data(f: dict[str, torch.Tensor], split: int) -> dict[str, torch.Tensor]:
    m = f["split"] == split
    return {"s": f["s"][m], "sa": f["sa"][m][:, 0], "r": f["r"][m].float(), "done": f["done"][m].float(),
            "s_next": f["s_next"][m]}


def ranking_units(critic: DoubleCritic, f: dict[str, torch.Tensor], split: int, threshold: float
                  ) -> tuple[list[float], list[float]]:
    """Per state of ``split``: is the candidate the critic ranks best one that can still be right (informative),
    and the share of informative candidates (= a uniformly random pick)."""
    m = f["split"] == split
    q, v = advantages(critic, f["s"][m], f["sa"][m])
    best, _, _ = best_of_n(q, v, f["valid"][m], threshold)
    inf = f["informative"][m].float()
    return inf.gather(1, best.unsqueeze(1)).squeeze(1).tolist(), inf.mean(1).tolist()


def extraction_examples(tok: Tokenizer, critic: DoubleCritic, f: dict[str, torch.Tensor], text: list[dict[str, Any]],
                        threshold: float, cap: int, seed: int) -> tuple[list[Any], dict[str, float]]:
    """Best-of-N policy extraction data on the training states: the critic's best candidate where its clamped
    advantage passes ``threshold`` (:func:`best_of_n`).  Digi-Q's loss averages over the batch including the
    weight-0 rows, a constant factor per batch that Adam's normalisation all but cancels; we leave them out
    (they cost a forward and backward pass each and add nothing to the gradient)."""
    from rlbook.training.finetune import Example, completion_ids, subsample

    m = (f["split"] == 0).nonzero().squeeze(1)
    q, v = advantages(critic, f["s"][m], f["sa"][m])
    best, w, a_star = best_of_n(q, v, f["valid"][m], threshold)
    ex = [Example(prompt_ids(tok, text[int(i)]["state"]), completion_ids(tok, text[int(i)]["candidates"][int(b)]))
          for i, b, wi in zip(m.tolist(), best.tolist(), w.tolist(), strict=True) if wi > 0]
    info = {"kept_frac": float(w.mean()), "best_is_logged": float((best == 0).float().mean()),
            "a_star_mean": float(a_star.mean())}
    return subsample(ex, cap, seed), info


def bc_examples(tok: Tokenizer, f: dict[str, torch.Tensor], text: list[dict[str, Any]], cap: int, seed: int
                ) -> list[Any]:
    """Filtered behaviour cloning data: the logged actions of the successful training episodes."""
    from rlbook.training.finetune import Example, completion_ids, subsample

    idx = ((f["split"] == 0) & f["success"]).nonzero().squeeze(1).tolist()
    ex = [Example(prompt_ids(tok, text[i]["state"]), completion_ids(tok, text[i]["candidates"][0])) for i in idx]
    return subsample(ex, cap, seed)


def _spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    from scipy.stats import spearmanr

    if len(a) < 3 or float(a.std()) == 0 or float(b.std()) == 0:
        return float("nan")
    return float(spearmanr(a.numpy(), b.numpy()).statistic)


def critic_report(critic: DoubleCritic, f: dict[str, torch.Tensor], split: int) -> dict[str, float]:
    """Q of the logged actions against their Monte-Carlo returns on ``split``: MSE and Spearman correlation."""
    m = f["split"] == split
    with torch.no_grad():
        q = critic.q(f["sa"][m][:, 0]).max(0).values
    mc = f["mc"][m].float()
    return {"mse_vs_mc": float(((q - mc) ** 2).mean()), "spearman_vs_mc": _spearman(q, mc)}


@dataclass(frozen=True)
class DataParams(StageParams):
    """What the shared offline data stage reads (its cache key, :class:`rlbook.training.stages.Stage`)."""

    model: str
    env: dict[str, Any]
    lora: dict[str, Any]
    data: dict[str, Any]
    layer: int
    gamma: float
    action_tokens: int
    temperature: float


@dataclass(frozen=True)
class SeedParams(StageParams):
    """What one seed reads on top of the offline data (the data stage is its upstream)."""

    model: str
    env: dict[str, Any]
    lora: dict[str, Any]
    gamma: float
    action_tokens: int
    temperature: float
    critic: dict[str, Any]
    extraction: dict[str, Any]
    eval_episodes: int
    seed: int


def study_stages(params: dict[str, Any]) -> tuple[Stage, list[Stage]]:
    """The ``digiq-data`` stage and one ``digiq-seed`` stage per seed downstream of it."""
    data = Stage("digiq-data", DataParams.from_params(params))
    return data, [Stage("digiq-seed", SeedParams.from_params(params, seed=s), (data,))
                  for s in range(int(params["seeds"]))]


def run_seed(params: SeedParams, folder: Any) -> dict[str, Any]:
    """One seed on the shared offline data in ``folder`` (the data stage's): TD critic, ranking check, Best-of-N
    extraction, filtered BC, online evaluation (fresh episodes, the only environment interaction after the data
    was logged)."""
    import json
    import time

    from rlbook.policy.models import load_policy, use_adapter, wrap_adapters
    from rlbook.training import agents
    from rlbook.training.finetune import train_sft

    seed = params.seed
    t0 = time.perf_counter()
    f = torch.load(folder / "features.pt")
    text = json.loads((folder / "transitions.json").read_text())
    c, x = params["critic"], params["extraction"]
    critic, hist = train_critic(_critic_data(f, 0), steps=int(c["steps"]), batch_size=int(c["batch_size"]),
                                lr=float(c["lr"]), gamma=float(params["gamma"]), tau=float(c["tau"]),
                                target_every=int(c["target_every"]), hidden=int(c["hidden"]), seed=seed)
    out: dict[str, Any] = {"critic": {"loss_last": hist[-1]["loss"], "skipped": sum(h["skipped"] for h in hist),
                                      **critic_report(critic, f, 1)}}
    out["ranking"] = dict(zip(("Q-ranked", "random"), ranking_units(critic, f, 1, float(x["threshold"])), strict=True))
    base, tok = load_policy(params["model"], lora=None)
    model = wrap_adapters(base, params["lora"], ["policy", "bc"], seed=seed)
    ex, out["extraction"] = extraction_examples(tok, critic, f, text, float(x["threshold"]), int(x["cap"]), seed)
    bc = bc_examples(tok, f, text, int(x["cap"]), seed)
    t1 = time.perf_counter()
    for name, data in (("policy", ex), ("bc", bc)):
        with use_adapter(model, name):
            rows = train_sft(model, tok, data, lr=float(x["lr"]), epochs=int(x["epochs"]), batch_size=int(x["batch_size"]),
                      seed=seed, reduction="seq_sum_mean", prob_clamp=(0.001, 0.99) if name == "policy" else None)
            out["extraction"][f"{name}_skipped"] = sum(r["skipped"] for r in rows)
    out["extraction"].update(examples=len(ex), bc_examples=len(bc))
    held = f["split"] == 1
    out["degenerate"] = degenerate(advantages(critic, f["s"][held], f["sa"][held])[0].detach(), f["valid"][held], len(ex))
    t2 = time.perf_counter()
    make_env = agents.make_env_factory(params["env"]["name"], **params["env"].get("kwargs", {}))
    seeds = [10**6 + i for i in range(int(params["eval_episodes"]))]
    out["success"] = {}
    for label, adapter in (("behaviour policy", None), ("Digi-Q", "policy"), ("filtered BC", "bc")):
        torch.manual_seed(seed)
        pol = agents.lm_policy(model, tok, adapter=adapter, max_new_tokens=int(params["action_tokens"]),
                               temperature=float(params["temperature"]))
        out["success"][label] = agents.success(agents.rollout_episodes(make_env, seeds, pol))
    out["seconds"] = {"critic": t1 - t0, "extraction_and_bc": t2 - t1, "evaluation": time.perf_counter() - t2}
    return out


def run_study(params: dict[str, Any], root: Any, progress: Any = print) -> dict[str, Any]:
    """The shared offline data (one cached stage) and every seed's critic, extraction and evaluation."""
    data_stage, seed_stages = study_stages(params)
    progress("offline data: behaviour episodes, candidates, representation fine-tuning, features")
    data = data_stage.run(root, build_dataset)
    folder = data_stage.folder(root)
    seeds = {}
    for st in seed_stages:
        progress(f"Digi-Q seed {st.params.seed}")
        seeds[st.params.seed] = st.run(root, lambda p, _: run_seed(p, folder))
    return {"data": data, "seeds": seeds}


def tables(study_out: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Long tables: ``success`` (per evaluation episode and policy) and ``ranking`` (per held-out state: the
    Q-ranked candidate informative, vs the share of informative candidates) and ``behaviour_success``."""
    succ, rank = [], []
    for seed, res in study_out["seeds"].items():
        for label, vals in res["success"].items():
            succ += [{"method": label, "seed": seed, "unit": u, "value": float(x)} for u, x in enumerate(vals)]
        for label, vals in res["ranking"].items():
            rank += [{"method": label, "seed": seed, "unit": u, "value": float(x)} for u, x in enumerate(vals)]
    return {"success": succ, "ranking": rank}
