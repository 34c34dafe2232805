"""rlbook estimators and losses through verl's own registries (verl 0.9.1's algorithm module, no GPU, no Ray).

Numbers are worked out by hand where the formula is short; otherwise the adapter (verl's layout: token-level
rewards, response masks, shuffled group ids) is compared with rlbook called on the ``[P, G]`` layout, and
rlbook's losses with verl's own implementations of the same papers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("verl.trainer.ppo.core_algos")

from rlbook.application.integrations import verl as rv  # noqa: E402
from rlbook.core.config import ParamError  # noqa: E402
from rlbook.mechanisms import estimators, losses  # noqa: E402
from verl.trainer.ppo import core_algos  # noqa: E402
from verl.workers.config import ActorConfig  # noqa: E402

LIB = Path(__file__).resolve().parents[1] / "lib"
WIDTH = 8  # padded response length


def token_rewards(scores: list[float], lengths: list[int], width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """verl's layout: the scalar reward at the last response token, mask 1 on the response."""
    mask = torch.zeros(len(scores), width)
    rewards = torch.zeros(len(scores), width)
    for i, (s, n) in enumerate(zip(scores, lengths, strict=True)):
        mask[i, :n] = 1.0
        rewards[i, n - 1] = s
    return rewards, mask


def call_estimator(verl_name: str, scores: list[float], index: list[str], lengths: list[int] | None = None) -> torch.Tensor:
    lengths = lengths or [3] * len(scores)
    rewards, mask = token_rewards(scores, lengths, WIDTH)
    fn = core_algos.get_adv_estimator_fn(verl_name)
    adv, returns = fn(token_level_rewards=rewards, response_mask=mask, index=np.array(index, dtype=object), config=None)
    assert torch.equal(adv, returns)
    # one advantage per response, broadcast over its tokens and zero on padding
    assert torch.allclose(adv, adv[:, :1] * mask)
    return adv[:, 0]


# Shuffled ids and unequal groups: b = rows 0, 2; a = rows 1, 3, 4; c = row 5 (a group of one).
INDEX = ["b", "a", "b", "a", "a", "c"]
SCORES = [1.0, 1.0, 0.0, 0.0, 0.5, 0.3]


def test_grpo_rloo_dr_grpo_through_verls_registry_on_a_shuffled_unequal_batch():
    # group a = (1, 0, 0.5): mean 0.5, unbiased std sqrt((0.25 + 0.25 + 0) / 2) = 0.5
    # group b = (1, 0):      mean 0.5, unbiased std sqrt(0.5 / 1) = 0.70711
    # group c = (0.3):       a group of one has no baseline: A = r (verl's convention, rlbook's too)
    grpo = [0.5 / 0.70711, 0.5 / 0.5, -0.5 / 0.70711, -0.5 / 0.5, 0.0, 0.3]
    # RLOO: r_i - mean of the others: a: 1 - 0.25, 0 - 0.75, 0.5 - 0.5; b: 1 - 0, 0 - 1; c: r
    rloo = [1.0, 0.75, -1.0, -0.75, 0.0, 0.3]
    # Dr. GRPO: r - group mean
    dr = [0.5, 0.5, -0.5, -0.5, 0.0, 0.3]
    for name, expected in (("grpo", grpo), ("rloo", rloo), ("dr_grpo", dr)):
        got = call_estimator(f"rlbook_{name}", SCORES, INDEX, lengths=[1, 2, 3, 4, 2, 1])
        assert torch.allclose(got, torch.tensor(expected), atol=1e-4), name
    # verl's own GRPO and RLOO agree on this batch (same Bessel-corrected std, same eps 1e-6)
    rewards, mask = token_rewards(SCORES, [3] * 6, WIDTH)
    idx = np.array(INDEX, dtype=object)
    own = core_algos.compute_grpo_outcome_advantage(rewards, mask, idx)[0][:, 0]
    assert torch.allclose(own, call_estimator("rlbook_grpo", SCORES, INDEX), atol=1e-6)
    own = core_algos.compute_rloo_outcome_advantage(rewards, mask, idx)[0][:, 0]
    assert torch.allclose(own, call_estimator("rlbook_rloo", SCORES, INDEX), atol=1e-6)


@pytest.mark.parametrize("name", ["bnpo", "reinforce_pp", "lite_ppo", "ngrpo", "stratified"])
def test_batch_estimators_on_a_shuffled_batch_equal_rlbook_on_the_group_layout(name):
    gen = torch.Generator().manual_seed(1)
    P, G = 4, 3
    reward = (torch.rand(P, G, generator=gen) < 0.5).float() * 0.75 + torch.rand(P, G, generator=gen) * 0.25
    lengths = torch.randint(1, WIDTH + 1, (P, G), generator=gen).float()
    # scatter the [P, G] batch into verl rows in a shuffled order, group ids as strings
    perm = torch.randperm(P * G, generator=gen).tolist()
    rows_of = {flat: row for row, flat in enumerate(perm)}
    scores = [float(reward.view(-1)[flat]) for flat in perm]
    index = [f"uid-{flat // G}" for flat in perm]
    got = call_estimator(f"rlbook_{name}", scores, index, lengths=[int(lengths.view(-1)[f]) for f in perm])
    # groups come out in order of first appearance, so build rlbook's batch in that order
    order = list(dict.fromkeys(flat // G for flat in perm))
    r = reward[order]
    context = {"lengths": lengths[order], "reward_parts": r.unsqueeze(-1), "part_weights": torch.ones(1),
               "correct": r >= 1.0, "max_new_tokens": WIDTH}
    expected = estimators.compute(name, r, context=context)
    for k, p in enumerate(order):
        for g in range(G):
            assert abs(float(got[rows_of[p * G + g]]) - float(expected[k, g])) < 1e-5, (name, p, g)


def test_group_local_estimators_depend_on_their_own_group_only():
    # the list that allows unequal group sizes must hold only estimators whose groups do not interact
    gen = torch.Generator().manual_seed(2)
    r = torch.rand(5, 4, generator=gen)
    for name in rv.GROUP_LOCAL:
        whole = estimators.compute(name, r)
        alone = torch.cat([estimators.compute(name, r[i : i + 1]) for i in range(r.shape[0])])
        assert torch.allclose(whole, alone, atol=1e-6), name


def test_unequal_groups_are_refused_for_batch_estimators():
    with pytest.raises(ParamError, match="groups of sizes"):
        call_estimator("rlbook_bnpo", SCORES, INDEX)


def test_stateful_single_stream_keeps_its_tracker_across_calls_keyed_by_the_group_id():
    name = rv.register_estimator("single_stream", "rlbook_single_stream_test")
    fn = core_algos.get_adv_estimator_fn(name)
    state = estimators.make_state("single_stream")
    # SPO by hand (no log-ratio, so rho = rho_max = 0.96; N0 = 1 / (1 - 0.5) = 2, v0 = 0.5: alpha = beta = 1):
    # step 1: p = (1, 1) and q = (0, 1) are new, baseline 0.5: A = (.5, .5), (-.5, .5); batch mean .25,
    #   unbiased std .5 -> p: (.5, .5), q: (-1.5, .5).  q's tracker: alpha = .96 + 1, beta = .96 + 1 -> 0.5
    # step 2: q = (0, 1) again (baseline 0.5), r = (0, 0) new (0.5): A = (-.5, .5), (-.5, -.5); mean -.25,
    #   std .5 -> q: (-.5, 1.5), r: (-.5, -.5)
    steps = [(["p", "q", "p", "q"], [1.0, 0.0, 1.0, 1.0], [0.5, -1.5, 0.5, 0.5]),
             (["q", "r", "q", "r"], [0.0, 0.0, 1.0, 0.0], [-0.5, -0.5, 1.5, -0.5])]
    ids: dict[str, int] = {}
    for index, scores, by_hand in steps:
        rewards, mask = token_rewards(scores, [2] * 4, 3)
        got = fn(token_level_rewards=rewards, response_mask=mask, index=np.array(index, dtype=object))[0][:, 0]
        assert torch.allclose(got, torch.tensor(by_hand), atol=1e-5)
        # and rlbook directly on the [P, G] layout with the same tracker
        order = list(dict.fromkeys(index))
        rows = [[i for i, k in enumerate(index) if k == key] for key in order]
        r = torch.tensor([[scores[i] for i in g] for g in rows])
        pid = torch.tensor([ids.setdefault(k, len(ids)) for k in order])
        expected = estimators.compute("single_stream", r, context={"state": state, "prompt_ids": pid})
        for k, g in enumerate(rows):
            assert torch.allclose(got[g], expected[k], atol=1e-6)


def test_stateful_estimator_warns_when_no_group_id_comes_back():
    fn = rv.estimator_adapter("single_stream")
    rewards, mask = token_rewards([1.0, 0.0], [2, 2], 3)
    fn(rewards, mask, index=np.array(["u1", "u1"], dtype=object))
    with pytest.warns(UserWarning, match="uuid4"):
        fn(rewards, mask, index=np.array(["u2", "u2"], dtype=object))


def test_what_verl_cannot_feed_is_refused_with_the_reason():
    with pytest.raises(ParamError, match="seq_log_ratio"):
        rv.estimator_adapter("ace")
    with pytest.raises(ParamError, match="context"):
        rv.loss_adapter("gtpo")
    with pytest.raises(ParamError, match="allowed: eps"):
        rv.estimator_adapter("grpo", eps=1e-6, alpha=2.0)
    with pytest.raises(ParamError, match="verl already has its own"):
        rv.register_estimator("grpo", "grpo")
    with pytest.raises(ParamError, match="group index"):
        rv.estimator_adapter("grpo")(*token_rewards([1.0], [1], 2))
    assert rv.register_estimator("rloo") == "rlbook_rloo"  # registering again replaces our own entry
    done = rv.register_all()
    assert "rlbook_grpo" in done["estimators"] and "rlbook_gspo" in done["losses"]
    token_level = {n for n in estimators.available() if estimators.token_level(n)}  # every family's, registered
    assert {"prime_rloo", "tempo", "decs", "tppo_egae"} <= token_level
    assert set(done["skipped"]) == {"ace", "arm", "loss gtpo", "loss drpo", "reinforce_pp_kl"} | token_level
    assert "only rlbook's trainer" in done["skipped"]["tempo"] and "seq_log_ratio" in done["skipped"]["ace"]


# ---------------------------------------------------------------------------------------------------------
# losses
# ---------------------------------------------------------------------------------------------------------


def actor_config(**kw) -> ActorConfig:
    return ActorConfig(strategy="fsdp", rollout_n=2, ppo_mini_batch_size=2, ppo_micro_batch_size_per_gpu=2, **kw)


def hand_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Row 0: A = +1, ratios (1, 1.5, 0.5); row 1: A = -2, ratios (1.1, 0.7), last token padding."""
    old = torch.zeros(2, 3)
    logp = torch.log(torch.tensor([[1.0, 1.5, 0.5], [1.1, 0.7, 9.0]]))
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    adv = torch.tensor([[1.0, 1.0, 1.0], [-2.0, -2.0, -2.0]]) * mask
    return old, logp, adv, mask


def test_ppo_clip_through_verls_registry_hand_numbers():
    # eps_low 0.2, eps_high 0.28: token loss max(-A rho, -A clip(rho, 0.8, 1.28))
    # row 0 (A=1):  -1, max(-1.5, -1.28) = -1.28, max(-0.5, -0.8) = -0.5
    # row 1 (A=-2): max(2.2, 2.2) = 2.2, max(1.4, 1.6) = 1.6
    # token-mean: (-1 - 1.28 - 0.5 + 2.2 + 1.6) / 5 = 0.204
    # seq-mean-token-mean: (-2.78 / 3 + 3.8 / 2) / 2 = 0.486667
    # seq-mean-token-sum-norm, scale 4: (-2.78 / 4 + 3.8 / 4) / 2 = 0.1275
    old, logp, adv, mask = hand_batch()
    fn = core_algos.get_policy_loss_fn("rlbook_ppo_clip")
    cfg = actor_config(clip_ratio_low=0.2, clip_ratio_high=0.28, loss_scale_factor=4)
    for mode, expected in (("token-mean", 0.204), ("seq-mean-token-mean", 0.486667), ("seq-mean-token-sum-norm", 0.1275)):
        loss, metrics = fn(old_log_prob=old, log_prob=logp, advantages=adv, response_mask=mask.bool(),
                           loss_agg_mode=mode, config=cfg)
        assert abs(float(loss) - expected) < 1e-5, mode
    # clipped tokens: row 0's rho = 1.5 and row 1's rho = 0.7, 2 of 5
    assert abs(metrics["actor/pg_clipfrac"] - 0.4) < 1e-6
    with pytest.raises(ParamError, match="loss_agg_mode='token-sum'"):
        fn(old_log_prob=old, log_prob=logp, advantages=adv, response_mask=mask, loss_agg_mode="token-sum", config=cfg)


def random_batch(seed: int, B: int = 6, T: int = 5) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    old = -torch.rand(B, T, generator=gen) * 2
    logp = (old + torch.randn(B, T, generator=gen) * 0.3).requires_grad_(True)
    lengths = torch.randint(1, T + 1, (B,), generator=gen)
    mask = (torch.arange(T).unsqueeze(0) < lengths.unsqueeze(1)).float()
    adv = torch.randn(B, 1, generator=gen).expand(B, T) * mask
    return old, logp, adv.contiguous(), mask


@pytest.mark.parametrize(
    ("ours", "hyper", "theirs", "cfg", "mode"),
    [
        # PPO clip with DAPO's clip-higher; verl's vanilla adds a dual clip at c = 3 for A < 0 by default:
        # with c = 1e9 it never binds, and the two agree
        ("ppo_clip", {}, "vanilla", {"clip_ratio_low": 0.2, "clip_ratio_high": 0.28, "clip_ratio_c": 1e9}, "token-mean"),
        ("ppo_clip", {"dual_clip": 3.0}, "vanilla", {"clip_ratio_low": 0.2, "clip_ratio_high": 0.2}, "seq-mean-token-mean"),
        # GSPO: verl clips the sequence ratio with clip_ratio_low/high, rlbook with seq_eps_low/high
        ("gspo", {"seq_eps_low": 0.05, "seq_eps_high": 0.08}, "gspo",
         {"clip_ratio_low": 0.05, "clip_ratio_high": 0.08}, "seq-mean-token-mean"),
        # CISPO: verl's IS bounds are the PPO clip ratios (default 0.2/0.2); rlbook's defaults are 1 / 4
        ("cispo", {}, "cispo", {"clip_ratio_low": 1.0, "clip_ratio_high": 4.0}, "token-mean"),
        # SAPO: verl always aggregates seq-mean-token-mean
        ("sapo", {"tau_pos": 1.0, "tau_neg": 1.05}, "sapo", {"tau_pos": 1.0, "tau_neg": 1.05}, "seq-mean-token-mean"),
    ],
)
def test_losses_through_verls_registry_equal_rlbook_and_verls_own(ours, hyper, theirs, cfg, mode):
    name = rv.register_loss(ours, f"rlbook_{ours}_test", **hyper)
    config = actor_config(**cfg)
    old, logp, adv, mask = random_batch(3)
    loss, metrics = core_algos.get_policy_loss_fn(name)(old, logp, adv, mask, mode, config)
    (grad,) = torch.autograd.grad(loss, logp)
    # rlbook directly
    kw = dict(hyper)
    if ours == "ppo_clip":
        kw.update(eps_low=cfg["clip_ratio_low"], eps_high=cfg["clip_ratio_high"])
    token_loss, _ = losses.compute(ours, logp, old, adv, mask, **kw)
    direct = losses.aggregate(token_loss, mask, rv.aggregation_for(mode), max_tokens=mask.shape[1])
    assert torch.allclose(loss, direct, atol=1e-6)
    # verl's own implementation of the same method
    own, own_metrics = core_algos.get_policy_loss_fn(theirs)(old, logp, adv, mask, mode, config)
    (own_grad,) = torch.autograd.grad(own, logp)
    assert torch.allclose(loss, own, atol=1e-5), (float(loss), float(own))
    assert torch.allclose(grad, own_grad, atol=1e-5)
    assert abs(metrics["actor/ppo_kl"] - own_metrics["actor/ppo_kl"]) < 1e-6


def test_verls_default_dual_clip_differs_from_rlbooks_ppo_clip():
    # one token, A = -2, ratio 4: PPO's loss max(8, 2 * 1.2) = 8; verl's dual clip min(8, 3 * 2) = 6
    old, logp = torch.zeros(1, 1), torch.log(torch.tensor([[4.0]]))
    adv, mask = torch.tensor([[-2.0]]), torch.ones(1, 1)
    cfg = actor_config(clip_ratio_low=0.2, clip_ratio_high=0.2)
    ours = core_algos.get_policy_loss_fn("rlbook_ppo_clip")(old, logp, adv, mask, "token-mean", cfg)[0]
    own = core_algos.get_policy_loss_fn("vanilla")(old, logp, adv, mask, "token-mean", cfg)[0]
    assert abs(float(ours) - 8.0) < 1e-5 and abs(float(own) - 6.0) < 1e-5


def test_global_batch_info_gives_verls_data_parallel_normalisation():
    # dp_size 2 with global counts: each rank's loss is its sum / (global count / 2), as verl's agg_loss
    old, logp, adv, mask = random_batch(4)
    for mode in ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"):
        cfg = actor_config(clip_ratio_low=0.2, clip_ratio_high=0.2, clip_ratio_c=1e9)
        cfg.global_batch_info.update(dp_size=2, batch_num_tokens=40, global_batch_size=14, loss_scale_factor=7)
        ours = core_algos.get_policy_loss_fn("rlbook_ppo_clip")(old, logp, adv, mask, mode, cfg)[0]
        own = core_algos.get_policy_loss_fn("vanilla")(old, logp, adv, mask, mode, cfg)[0]
        assert torch.allclose(ours, own, atol=1e-6), mode


def test_method_registration_from_the_environment_and_verls_external_module_hook(monkeypatch):
    train = {"estimator": "ngrpo", "estimator_kwargs": {"n_virtual": 2}, "loss": "gspo",
             "loss_kwargs": {"seq_eps_low": 0.001, "seq_eps_high": 0.002}}
    monkeypatch.setenv(rv.METHOD_ENV, json.dumps(train))
    rv._register_from_environment()
    got = call_estimator(rv.METHOD_NAME, [1.0, 0.0], ["x", "x"])
    # NGRPO with two virtual rewards of 1: (1, 0, 1, 1) mean 0.75, unbiased std sqrt(0.75 / 3) = 0.5
    assert torch.allclose(got, torch.tensor([0.5, -1.5]), atol=1e-4)
    # verl imports the module named in VERL_USE_EXTERNAL_MODULES in every process (here a fresh one)
    env = {**os.environ, "VERL_USE_EXTERNAL_MODULES": "rlbook.application.integrations.verl", rv.METHOD_ENV: json.dumps(train),
           "PYTHONPATH": f"{LIB}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    code = ("from verl.trainer.ppo import core_algos as c; "
            "print(c.get_adv_estimator_fn('rlbook_method').__name__, c.get_policy_loss_fn('rlbook_method').__name__)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["rlbook_ngrpo_advantage", "rlbook_gspo_policy_loss"]
