"""MALT: a generator, a verifier and a refiner (three LoRA adapters on one base), trained from a search tree.

Paper: Motwani et al. (2024/2025), "MALT: Improving Reasoning with Multi-Agent LLM Training", arXiv 2412.01928
(COLM 2025).  No official code was found (queries in the research notes); the procedure follows the paper's
abstract and method description as far as it could be read, and the third-party re-implementation
SamAdamDay/neural-interactive-proofs ``nip/trainers/malt_pure_text.py`` as a second reading.  Assumptions are
named where they are made.

* **Roles** (:data:`ROLES`): the generator answers the question (the task's own prompt); the verifier critiques
  (question, answer) without solving it again; the refiner writes a corrected answer from (question, answer,
  critique).  Each role is a LoRA adapter on one copy of the base weights (:func:`rlbook.policy.models.wrap_adapters`);
  adapters start at B = 0, so the untrained system is the base model in three roles.  Prompts are our own
  paraphrases (:func:`verifier_messages`, :func:`refiner_messages`).
* **Trajectory expansion** (:func:`expand`): per training question n generations, n critiques of each, n
  refinements of each (n = 3: 3 + 9 + 27 samples, 27 leaves); each leaf's reward is the task verifier on the
  refined answer.
* **Value iteration** (:func:`tree_values`): ``V(r) = reward``, ``V(v) = mean of its refinements' values``,
  binarised (positive when > ``threshold``), ``V(g) = mean of its critiques' binarised values`` (``rule=
  "binarised"``, the default: the paper binarises the values at each level before the next one averages them)
  or the mean of the critiques' raw values (``rule="mean"``, = the mean of the leaves below, as the third-party
  code computes it; an option).  The two label generators differently: with n = 3 and leaves [1, 1, 0],
  [1, 1, 0], [0, 0, 0] under one generation, the critiques' values are 2/3, 2/3, 0, so ``binarised`` gives
  V(g) = 2/3 (positive) and ``mean`` 4/9 (negative).  A node is positive when its value is > ``threshold``
  (0.5; the third-party code uses >=, which differs only for even n).
* **Post-training data** (:func:`role_data`): per role, SFT examples = its positive outputs; DPO pairs = every
  (positive, negative) pair of siblings (same parent input), optionally capped.  Training: SFT on positives for
  every role, then DPO on the pairs for the roles in ``dpo_roles`` (default verifier and refiner: our reading
  of the paper; the third-party code trains every role by DPO only), the reference being the role's SFT
  adapter, frozen (:func:`rlbook.training.finetune.train_dpo`).
* **Inference** (:func:`run_chain`): generator -> verifier -> refiner, greedy (one chain; the paper majority-votes
  over several sampled chains).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from rlbook.data.tasks import Problem
from rlbook.policy.generation import prompt_ids
from rlbook.policy.models import Tokenizer
from rlbook.training.agents import generate_as
from rlbook.training.finetune import Example, Pair, completion_ids, subsample
from rlbook.training.stages import Stage, StageParams

ROLES = ("generator", "verifier", "refiner")
RULES = ("mean", "binarised")
VERIFY = ("Question: {q}\nProposed answer: {g}\nYou are a careful verifier. Check the proposed answer step by step and "
          "say whether it is right, pointing out any mistake. Do not write a new solution.")
REFINE = ("Question: {q}\nInitial answer: {g}\nCritique: {v}\nUsing the critique, give the correct final answer. "
          "{instruction}")


def _system(problem: Problem) -> list[dict[str, str]]:
    return [m for m in problem.messages if m["role"] == "system"]


def generator_messages(problem: Problem) -> list[dict[str, str]]:
    return list(problem.messages)


def verifier_messages(problem: Problem, g: str) -> list[dict[str, str]]:
    return _system(problem) + [{"role": "user", "content": VERIFY.format(q=problem.question, g=g.strip())}]


def refiner_messages(problem: Problem, g: str, v: str, instruction: str) -> list[dict[str, str]]:
    content = REFINE.format(q=problem.question, g=g.strip(), v=v.strip(), instruction=instruction)
    return _system(problem) + [{"role": "user", "content": content.strip()}]


@dataclass
class Tree:
    """One question's search tree: ``n`` generations, ``n x n`` critiques, ``n x n x n`` refinements, leaf rewards."""

    problem: Problem
    g: list[str]
    v: list[list[str]]
    r: list[list[list[str]]]
    reward: np.ndarray  # [n, n, n]


def _sample(model: Any, tok: Tokenizer, role: str, messages: list[list[dict[str, str]]], n: int,
            max_new_tokens: int, temperature: float) -> list[list[str]]:
    roll = generate_as(model, tok, [prompt_ids(tok, m) for m in messages], adapter=role,
                       max_new_tokens=max_new_tokens, temperature=temperature, group_size=n)
    return [roll.texts[i * n : (i + 1) * n] for i in range(len(messages))]


def expand(model: Any, tok: Tokenizer, task: Any, problems: Sequence[Problem], n: int, max_new_tokens: dict[str, int],
           temperature: float = 1.0, seed: int = 0) -> list[Tree]:
    """Trajectory expansion: n generations per question, n critiques per generation, n refinements per critique
    (each role sampled with its own adapter; one shared prompt prefill per parent)."""
    torch.manual_seed(seed)
    instr = task.spec.instruction
    gs = _sample(model, tok, "generator", [generator_messages(p) for p in problems], n, max_new_tokens["generator"],
                 temperature)
    v_in = [verifier_messages(p, g) for p, row in zip(problems, gs, strict=True) for g in row]
    vs = _sample(model, tok, "verifier", v_in, n, max_new_tokens["verifier"], temperature)
    r_in = [refiner_messages(p, g, v, instr) for qi, p in enumerate(problems) for gi, g in enumerate(gs[qi])
            for v in vs[qi * n + gi]]
    rs = _sample(model, tok, "refiner", r_in, n, max_new_tokens["refiner"], temperature)
    trees = []
    for qi, p in enumerate(problems):
        v = [vs[qi * n + gi] for gi in range(n)]
        r = [[rs[(qi * n + gi) * n + vi] for vi in range(n)] for gi in range(n)]
        reward = np.array([[[task.score(p, r[gi][vi][ri]) >= 1.0 for ri in range(n)] for vi in range(n)]
                           for gi in range(n)], dtype=float)
        trees.append(Tree(p, gs[qi], v, r, reward))
    return trees


def tree_values(leaf_rewards: np.ndarray, rule: str = "binarised", threshold: float = 0.5
                ) -> tuple[np.ndarray, np.ndarray]:
    """Value iteration over ``[..., n_g, n_v, n_r]`` leaf rewards: the verifiers' values ``[..., n_g, n_v]``
    (mean over their refinements) and the generators' values ``[..., n_g]``: the mean of their critiques'
    binarised labels ``value > threshold`` (``binarised``, the paper's rule) or of their raw values (``mean``,
    the third-party code's)."""
    if rule not in RULES:
        raise ValueError(f"rule={rule!r}; allowed: {', '.join(RULES)}")
    v_val = np.asarray(leaf_rewards, dtype=float).mean(-1)
    g_val = v_val.mean(-1) if rule == "mean" else (v_val > threshold).astype(float).mean(-1)
    return v_val, g_val


def sibling_pairs(labels: Sequence[bool]) -> list[tuple[int, int]]:
    """Every (positive, negative) pair among siblings, positives in index order."""
    pos = [i for i, x in enumerate(labels) if x]
    neg = [i for i, x in enumerate(labels) if not x]
    return [(p, q) for p in pos for q in neg]


@dataclass
class RoleData:
    sft: list[Example]
    pairs: list[Pair]


def role_data(tok: Tokenizer, trees: Sequence[Tree], instruction: str, rule: str = "binarised", threshold: float = 0.5
              ) -> dict[str, RoleData]:
    """Per role: SFT examples (its positive outputs) and DPO pairs (positive vs negative siblings)."""
    out = {r: RoleData([], []) for r in ROLES}
    for t in trees:
        v_val, g_val = tree_values(t.reward, rule, threshold)
        n = len(t.g)
        items = [("generator", prompt_ids(tok, generator_messages(t.problem)), t.g, g_val > threshold)]
        for gi in range(n):
            items.append(("verifier", prompt_ids(tok, verifier_messages(t.problem, t.g[gi])), t.v[gi], v_val[gi] > threshold))
            for vi in range(n):
                msgs = refiner_messages(t.problem, t.g[gi], t.v[gi][vi], instruction)
                items.append(("refiner", prompt_ids(tok, msgs), t.r[gi][vi], t.reward[gi, vi] > threshold))
        for role, prompt, texts, labels in items:
            ids = [completion_ids(tok, x) for x in texts]
            out[role].sft += [Example(prompt, ids[i]) for i, ok in enumerate(labels) if ok]
            out[role].pairs += [Pair(prompt, ids[a], ids[b]) for a, b in sibling_pairs(list(labels))]
    return out


def degenerate(data: dict[str, RoleData], dpo_roles: Sequence[str]) -> list[str]:
    """Why a seed's post-training data are unusable, role by role (empty: usable): a role without a positive
    example has nothing to SFT on (its adapter stays the base model: e.g. no generation's value passed the
    threshold), a DPO role without a (positive, negative) sibling pair has nothing to DPO on."""
    out = [f"{role}: no positive example (nothing to SFT on; the adapter stays untrained)"
           for role in ROLES if not data[role].sft]
    out += [f"{role}: no DPO pair (no positive and negative siblings)" for role in dpo_roles if not data[role].pairs]
    return out


@torch.no_grad()
def run_chain(model: Any, tok: Tokenizer, task: Any, problems: Sequence[Problem], adapters: dict[str, str | None],
              max_new_tokens: dict[str, int], roles: Sequence[str] = ROLES) -> dict[str, list[str]]:
    """The pipeline on ``problems``, greedy: each role in ``roles`` with its adapter (None = the base model).
    Returns every role's outputs."""
    def run(role: str, msgs: list[list[dict[str, str]]]) -> list[str]:
        return generate_as(model, tok, [prompt_ids(tok, m) for m in msgs], adapter=adapters[role],
                           max_new_tokens=max_new_tokens[role], do_sample=False).texts

    out = {"generator": run("generator", [generator_messages(p) for p in problems])}
    if "verifier" in roles:
        out["verifier"] = run("verifier", [verifier_messages(p, g) for p, g in zip(problems, out["generator"],
                                                                                      strict=True)])
    if "refiner" in roles:
        out["refiner"] = run("refiner", [refiner_messages(p, g, v, task.spec.instruction) for p, g, v in
                                         zip(problems, out["generator"], out["verifier"], strict=True)])
    return out


# ------------------------------------------------------------------------------------ the study


def _correct(task: Any, problems: Sequence[Problem], texts: Sequence[str]) -> list[bool]:
    return [task.score(p, t) >= 1.0 for p, t in zip(problems, texts, strict=True)]


def evaluate_systems(model: Any, tok: Tokenizer, task: Any, problems: Sequence[Problem], trained: bool,
                     max_new_tokens: dict[str, int]) -> dict[str, list[bool]]:
    """Per-question correctness of the generator alone and of the G -> V -> R chain, with the role adapters
    (``trained``) or the base model in every role."""
    adapters = {r: (r if trained else None) for r in ROLES}
    out = run_chain(model, tok, task, problems, adapters, max_new_tokens)
    tag = "trained" if trained else "untrained"
    return {f"generator ({tag})": _correct(task, problems, out["generator"]),
            f"G-V-R ({tag})": _correct(task, problems, out["refiner"])}


def post_train(model: Any, tok: Tokenizer, data: dict[str, RoleData], cfg: dict[str, Any], seed: int
               ) -> dict[str, Any]:
    """SFT of every role on its (capped) positives, then DPO of ``cfg["dpo_roles"]`` on their (capped) pairs
    against the role's SFT adapter frozen as the reference."""
    from rlbook.policy.models import copy_adapter, use_adapter
    from rlbook.training.finetune import summed_logprobs, train_dpo, train_sft

    info: dict[str, Any] = {}
    for i, role in enumerate(ROLES):
        sft = subsample(data[role].sft, int(cfg["sft_cap"]), seed + i)
        with use_adapter(model, role):
            rows = train_sft(model, tok, sft, lr=float(cfg["sft_lr"]), epochs=int(cfg["epochs"]),
                             batch_size=int(cfg["batch_size"]), seed=seed + i)
        info[f"{role}_sft_examples"] = len(sft)
        info[f"{role}_sft_loss"] = rows[-1]["loss"] if rows else float("nan")
        info[f"{role}_sft_skipped"] = sum(r["skipped"] for r in rows)
        if role not in cfg["dpo_roles"]:
            continue
        pairs = subsample(data[role].pairs, int(cfg["dpo_cap"]), seed + 10 + i)
        copy_adapter(model, role, f"{role}_ref")
        with use_adapter(model, f"{role}_ref"):
            ref_c = summed_logprobs(model, tok, [p.prompt for p in pairs], [p.chosen for p in pairs])
            ref_r = summed_logprobs(model, tok, [p.prompt for p in pairs], [p.rejected for p in pairs])
        with use_adapter(model, role):
            rows = train_dpo(model, tok, pairs, ref_c, ref_r, beta=float(cfg["beta"]), lr=float(cfg["dpo_lr"]),
                             epochs=int(cfg["epochs"]), batch_size=int(cfg["batch_size"]), seed=seed + 20 + i)
        info[f"{role}_dpo_pairs"] = len(pairs)
        info[f"{role}_dpo_loss_first"] = rows[0]["loss"] if rows else float("nan")
        info[f"{role}_dpo_loss_last"] = rows[-1]["loss"] if rows else float("nan")
        info[f"{role}_dpo_accuracy_last"] = rows[-1]["accuracy"] if rows else float("nan")
        info[f"{role}_dpo_skipped"] = sum(r["skipped"] for r in rows)
    return info


@dataclass(frozen=True)
class SeedParams(StageParams):
    """What one seed of the study reads: its cache key (:class:`rlbook.training.stages.Stage`)."""

    model: str
    task: dict[str, Any]
    lora: dict[str, Any]
    n: int
    train_questions: int
    temperature: float
    max_new_tokens: dict[str, int]
    rule: str
    threshold: float
    post_training: dict[str, Any]
    eval_size: int
    seed: int


def study_stages(params: dict[str, Any]) -> list[Stage]:
    """One ``malt-seed`` stage per seed."""
    return [Stage("malt-seed", SeedParams.from_params(params, seed=s)) for s in range(int(params["seeds"]))]


def run_seed(params: SeedParams, folder: Any = None) -> dict[str, Any]:
    """One seed of the MALT study: untrained evaluation, expansion, value iteration, post-training, evaluation."""
    import time

    from rlbook.data.tasks import make_task
    from rlbook.policy.models import load_policy, wrap_adapters

    seed = params.seed
    t0 = time.perf_counter()
    task = make_task(params["task"])
    base, tok = load_policy(params["model"], lora=None)
    model = wrap_adapters(base, params["lora"], list(ROLES), seed=seed)
    mnt = dict(params["max_new_tokens"])
    test = task.eval[: int(params["eval_size"])]
    out: dict[str, Any] = {"correct": evaluate_systems(model, tok, task, test, False, mnt)}
    order = np.random.default_rng(seed).permutation(len(task.train))[: int(params["train_questions"])]
    t1 = time.perf_counter()
    trees = expand(model, tok, task, [task.train[i] for i in order], int(params["n"]), mnt,
                   float(params["temperature"]), seed)
    t2 = time.perf_counter()
    data = role_data(tok, trees, task.spec.instruction, params["rule"], float(params["threshold"]))
    out["tree"] = {"leaf_accuracy": float(np.mean([t.reward.mean() for t in trees])),
                   "generation_accuracy": float(np.mean([tree_values(t.reward, "mean")[1].mean() for t in trees])),
                   **{f"{r}_positives": len(d.sft) for r, d in data.items()},
                   **{f"{r}_pairs": len(d.pairs) for r, d in data.items()}}
    out["degenerate"] = degenerate(data, params["post_training"]["dpo_roles"])
    out["training"] = post_train(model, tok, data, params["post_training"], seed)
    t3 = time.perf_counter()
    out["correct"].update(evaluate_systems(model, tok, task, test, True, mnt))
    out["seconds"] = {"eval_untrained": t1 - t0, "expansion": t2 - t1, "post_training": t3 - t2,
                      "eval_trained": time.perf_counter() - t3}
    return out


def run_study(params: dict[str, Any], root: Any, progress: Any = print) -> dict[int, dict[str, Any]]:
    """Every seed of the MALT study, each a cached stage (:func:`study_stages`)."""
    out = {}
    for st in study_stages(params):
        progress(f"MALT seed {st.params.seed}")
        out[st.params.seed] = st.run(root, run_seed)
    return out


def tables(study_out: dict[int, dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Long tables: ``accuracy`` (per question, every system), ``repair`` (per seed: the share of wrong first
    answers the chain made right, and of right ones it made wrong) and ``pairs`` (per seed and role: DPO pairs)."""
    acc, repair, pairs = [], [], []
    for seed, res in study_out.items():
        for system, vals in res["correct"].items():
            acc += [{"method": system, "seed": seed, "unit": u, "value": float(x)} for u, x in enumerate(vals)]
        for tag in ("untrained", "trained"):
            g, f = res["correct"][f"generator ({tag})"], res["correct"][f"G-V-R ({tag})"]
            fixed = [fx for gx, fx in zip(g, f, strict=True) if not gx]
            broken = [not fx for gx, fx in zip(g, f, strict=True) if gx]
            repair += [{"method": f"G-V-R ({tag})", "seed": seed, "what": "wrong -> right",
                        "value": float(np.mean(fixed)) if fixed else float("nan")},
                       {"method": f"G-V-R ({tag})", "seed": seed, "what": "right -> wrong",
                        "value": float(np.mean(broken)) if broken else float("nan")}]
        pairs += [{"method": r, "seed": seed, "value": float(res["tree"][f"{r}_pairs"])} for r in ROLES]
    return {"accuracy": acc, "repair": repair, "pairs": pairs}
