"""Digi-Q's critic and Best-of-N operator by hand, TD learning on a toy problem, and the multi-turn rollout API."""

from __future__ import annotations

import pytest
import torch
from rlbook.pipelines import qvalue
from rlbook.policy.models import tiny_llama, wrap_adapters
from rlbook.training import agents


def test_mc_returns_by_hand():
    # rewards (0, 0, 1), gamma 0.95 -> (0.9025, 0.95, 1.0)
    assert agents.mc_returns([0, 0, 1], 0.95) == pytest.approx([0.9025, 0.95, 1.0])


def test_td_targets_by_hand():
    # r = 0, not done, V1_target(s') = 0.6, gamma 0.95 -> 0.57; terminal r = 1, V_target(s') = 0.8 -> 1.0 (masked)
    y = qvalue.td_targets(torch.tensor([0.0, 1.0]), torch.tensor([False, True]), torch.tensor([[0.6, 0.8], [0.6, 0.8]]),
                          0.95)
    assert y[0].tolist() == pytest.approx([0.57, 1.0])
    # head pairing: V1_t = 0.2, V2_t = 1.0, r = 0, gamma 1: (0.2, 1.0); a min-over-heads target would give 0.2 twice
    y = qvalue.td_targets(torch.tensor([0.0]), torch.tensor([False]), torch.tensor([[0.2], [1.0]]), 1.0)
    assert y[:, 0].tolist() == pytest.approx([0.2, 1.0])


class Fixed:
    """A critic whose heads return fixed values (to check the loss's wiring by hand)."""

    def __init__(self, q, v):
        self._q, self._v = torch.tensor(q), torch.tensor(v)

    def q(self, sa):
        return self._q

    def v(self, s):
        return self._v


def test_critic_loss_by_hand():
    # online Q = (0.5, 0.4), V = (0.3, 0.2); target V(s') = (0.6, 0.8), target Q(s, a_logged) = (0.4, 0.7); r = 0
    # y_Q = 0.95 * (0.6, 0.8) = (0.57, 0.76); y_V = (0.4, 0.7) (the logged action's target Q, head by head)
    # loss = 0.07^2 + 0.36^2 + 0.1^2 + 0.5^2 = 0.0049 + 0.1296 + 0.01 + 0.25 = 0.3945
    batch = {"s": torch.zeros(1, 2), "sa": torch.zeros(1, 2), "r": torch.zeros(1), "done": torch.zeros(1),
             "s_next": torch.zeros(1, 2)}
    loss, _ = qvalue.critic_loss(Fixed([[0.5], [0.4]], [[0.3], [0.2]]), Fixed([[0.4], [0.7]], [[0.6], [0.8]]), batch,
                                 0.95)
    assert float(loss) == pytest.approx(0.3945, abs=1e-6)


def test_soft_update_by_hand():
    t, o = torch.nn.Linear(1, 1, bias=False), torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        t.weight.fill_(0.2)
        o.weight.fill_(1.0)
    qvalue.soft_update(t, o, 0.1)  # 0.9 * 0.2 + 0.1 * 1.0 = 0.28
    assert float(t.weight.detach()) == pytest.approx(0.28)


def test_best_of_n_by_hand():
    # Q1 = (0.30, 0.55, 0.70), Q2 = (0.35, 0.50, 0.60), V1 = 0.45, V2 = 0.50: Q = max = (0.35, 0.55, 0.70), V = 0.50,
    # A = (-0.15, 0.05, 0.20) -> best 2, A* = 0.20 > 0.05 -> weight 1
    q = torch.tensor([[[0.30, 0.55, 0.70]], [[0.35, 0.50, 0.60]]])
    v = torch.tensor([[0.45], [0.50]])
    best, w, a = qvalue.best_of_n(q, v, torch.ones(1, 3, dtype=torch.bool), 0.05)
    assert best.tolist() == [2] and w.tolist() == [1.0] and a.tolist() == pytest.approx([0.20])
    # strictness, in numbers exact in binary: Q1 = (0.25, 0.75, 1.0), Q2 = (0.5, 0.5, 0.75), V = (0.25, 0.5):
    # A = (0, 0.25, 0.5); with candidate 2 invalid A = (0, 0.25, 0) -> best 1, A* = 0.25, not > 0.25 -> weight 0
    q = torch.tensor([[[0.25, 0.75, 1.0]], [[0.5, 0.5, 0.75]]])
    v = torch.tensor([[0.25], [0.5]])
    best, w, a = qvalue.best_of_n(q, v, torch.ones(1, 3, dtype=torch.bool), 0.25)
    assert best.tolist() == [2] and w.tolist() == [1.0] and a.tolist() == [0.5]
    best, w, a = qvalue.best_of_n(q, v, torch.tensor([[True, True, False]]), 0.25)
    assert best.tolist() == [1] and w.tolist() == [0.0] and a.tolist() == [0.25]
    # ties go to the first candidate; A* is clamped to [0, 1]
    best, _, a = qvalue.best_of_n(torch.full((2, 1, 3), 3.0), torch.zeros(2, 1), torch.ones(1, 3, dtype=torch.bool), 0.1)
    assert best.tolist() == [0] and a.tolist() == [1.0]


def test_td_learning_recovers_a_two_step_chain():
    """s0 -> s1 (r = 0) -> end (r = 1) with gamma 0.5: Q(s1) -> 1, Q(s0) -> 0.5 via V(s1); a distractor action
    from s0 ends with r = 0 (Q -> 0).  Features are one-hot."""
    s0, s1, end = torch.eye(3)
    data = {"s": torch.stack([s0, s1, s0]), "sa": torch.eye(3), "r": torch.tensor([0.0, 1.0, 0.0]),
            "done": torch.tensor([0.0, 1.0, 1.0]), "s_next": torch.stack([s1, end, end])}
    data["sa"] = torch.stack([torch.tensor([1.0, 0, 0, 1]), torch.tensor([0.0, 1, 0, 1]), torch.tensor([0.0, 0, 1, 1])])
    critic, _ = qvalue.train_critic(data, steps=400, batch_size=8, lr=1e-2, gamma=0.5, tau=0.5, target_every=4,
                                    hidden=16, seed=0)
    with torch.no_grad():
        q = critic.q(data["sa"]).mean(0)
    assert q.tolist() == pytest.approx([0.5, 1.0, 0.0], abs=0.08)


def test_guess_number_rules():
    env = agents.GuessNumber(1, 8, 3)
    assert env.reset(0) == env.messages()[-1]["content"] and env.messages()[0]["role"] == "system"
    target = env.target
    assert 1 <= target <= 8
    res = env.step("banana")
    assert not res.info["valid"] and res.reward == 0.0 and not res.done and "? (invalid)" in env.observation()
    low = 1 if target > 1 else 2
    res = env.step(f"I guess {low}")
    if target > 1:
        assert env.feasible() == (2, 8) and "too low" in res.observation
        assert not env.informative("1") and not env.informative(str(low)) and env.informative(str(target))
    res = env.step(str(target))
    assert res.reward == 1.0 and res.done


def test_rollout_episodes_with_scripted_policies():
    make = agents.make_env_factory("guess_number", low=1, high=7, max_turns=3)

    def binary_search(states):  # reads the feasible interval back from the text
        out = []
        for s in states:
            lo, hi = 1, 7
            for part in s[-1]["content"].split("Previous guesses: ")[1].split(". You have")[0].split(", "):
                if "too high" in part:
                    hi = min(hi, int(part.split()[0]) - 1)
                if "too low" in part:
                    lo = max(lo, int(part.split()[0]) + 1)
            out.append(str((lo + hi + 1) // 2))
        return out

    eps = agents.rollout_episodes(make, list(range(20)), binary_search)
    assert agents.success(eps) == [1.0] * 20  # 3 guesses always find one of 7 = 2^3 - 1 numbers
    eps = agents.rollout_episodes(make, list(range(20)), lambda states: ["1"] * len(states))
    targets = [agents.replay_env(make, s, []).target for s in range(20)]
    assert agents.success(eps) == [float(t == 1) for t in targets]
    assert all(len(ep) == (1 if t == 1 else 3) for ep, t in zip(eps, targets, strict=True))
    agents.add_mc_returns(eps, 0.9)
    assert eps[0][-1].info["seed"] == 0 and eps[0][0].mc_return == pytest.approx(0.81 * float(targets[0] == 1)
                                                                                  if len(eps[0]) == 3 else 1.0)


def test_lm_policy_and_features_on_the_tiny_model(tok):
    model = wrap_adapters(tiny_llama(vocab_size=98, seed=0, init_std=0.2), {"r": 4, "alpha": 8}, ["repr", "policy"])
    make = agents.make_env_factory("guess_number")
    eps = agents.rollout_episodes(make, [0, 1, 2], agents.lm_policy(model, tok, adapter=None, max_new_tokens=3))
    assert len(eps) == 3 and all(1 <= len(ep) <= 3 for ep in eps)
    states = [ep[0].state for ep in eps]
    cands = agents.sample_actions(model, tok, states, 2, adapter="policy", max_new_tokens=3)
    assert [len(c) for c in cands] == [2, 2, 2]
    s = qvalue.state_features(model, tok, states, layer=1)
    sa = qvalue.action_features(model, tok, states, ["3", "4", "5"], layer=1)
    assert s.shape == sa.shape == (3, 32) and not torch.allclose(s, sa)


def test_layer_features_stop_early_and_match_the_full_pass(tok):
    model = tiny_llama(vocab_size=98, seed=0, init_std=0.2, layers=3).eval()
    ids = torch.tensor([[5, 6, 7, 8], [2, 9, 10, 11]])
    att = torch.tensor([[1, 1, 1, 1], [0, 1, 1, 1]])
    pos = (att.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=att, position_ids=pos, output_hidden_states=True).hidden_states
    for layer in (1, 2):
        ours = qvalue._layer_output(model, layer, input_ids=ids, attention_mask=att, position_ids=pos)
        assert torch.allclose(ours, full[layer], atol=1e-6)
    with pytest.raises(ValueError, match="intermediate"):
        qvalue._layer_output(model, 3, input_ids=ids)


def test_next_state_features_follow_the_episode():
    def t(ep, turn, done):
        return agents.Transition(ep, turn, [], "", 0.0, [], done)

    flat = [(t(0, 0, False), 0, False), (t(0, 1, True), 0, False), (t(1, 0, False), 0, False), (t(1, 1, True), 0, False)]
    s = torch.arange(4.0).unsqueeze(1)
    assert qvalue.next_state_features(flat, s).squeeze(1).tolist() == [1.0, 0.0, 3.0, 0.0]


def test_a_constant_critic_and_an_empty_extraction_are_degenerate():
    valid = torch.tensor([[True, True, False], [True, True, True]])
    # a critic whose last layers were zeroed: both heads output their bias, the same Q for every candidate
    critic = qvalue.DoubleCritic(d_action=4, d_state=4, hidden=8)
    with torch.no_grad():
        for head in critic.modules():
            if isinstance(head, torch.nn.Linear) and head.out_features == 1:
                head.weight.zero_()
    q, _ = qvalue.advantages(critic, torch.randn(2, 4), torch.randn(2, 3, 4))
    reasons = qvalue.degenerate(q, valid, kept=0)
    assert len(reasons) == 2 and "critic is constant" in reasons[0] and "5 held-out candidates" in reasons[0]
    assert "kept no example" in reasons[1]
    # Q that differs on one valid candidate by 0.1: usable; an invalid candidate's Q is not looked at
    q = torch.zeros(2, 2, 3)
    q[0, 1, 2] = 0.1
    assert qvalue.degenerate(q, valid, kept=3) == []
    q = torch.zeros(2, 2, 3)
    q[0, 0, 2] = 5.0  # only on the invalid candidate
    assert "constant" in qvalue.degenerate(q, valid, kept=3)[0]
