"""OTC (tool-call efficiency): the reward worked out by hand from the paper's formula, the calculator tool and its
environment, the rollout with tool results written into the completion, and their tokens left out of the loss."""

from __future__ import annotations

import math

import pytest
import torch
from rlbook.core.config import ParamError
from rlbook.data.tasks import Problem, make_task
from rlbook.mechanisms import rewards, toolcalls
from rlbook.mechanisms.toolcalls import CalculatorEnv, FewestCalls, calculate, count_calls, tool_reward
from rlbook.policy.models import wrap_lora
from rlbook.policy.rollout import rollout_from_ids
from rlbook.training.trainer import Trainer

TASK = {"name": "chain_sum", "config": {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1},
        "train_size": 20, "eval_size": 4, "system_prompt": None, "answer_format": "tag", "tool": "calculator",
        "max_tool_calls": 2}


def calls(m: int) -> str:
    return "".join(f"<calc>{k}+1</calc><result>{k + 1}</result>" for k in range(m)) + "<answer>1</answer>"


# ------------------------------------------------------------------------------------ the reward, by hand


@pytest.mark.parametrize(("m", "n", "c", "expected"), [
    (0, 0, 3, 1.0),                      # f(m, n) = n = 0
    (1, 0, 3, math.cos(math.pi / 5)),    # n = 0: cos(m pi / (2m + c)) = cos(pi / 5) = 0.809017
    (2, 0, 3, math.cos(2 * math.pi / 7)),  # 0.623490
    (2, 2, 3, 1.0),                      # m = n: f = n, sin(pi / 2)
    (1, 2, 3, math.sin(math.pi / 3)),    # f = 4/3, sin((4/3) pi / 4) = 0.866025 (too few calls)
    (4, 2, 3, math.sin(2 * math.pi / 3)),  # f = 8/3, sin((8/3) pi / 4) = 0.866025 (too many)
    (3, 1, 3, math.sin(3 * math.pi / 4)),  # f = 3/2, sin((3/2) pi / 2) = 0.707107
])
def test_tool_coefficient_peaks_at_the_fewest_calls_and_matches_the_papers_formula(m, n, c, expected):
    assert tool_reward(m, n, c) == pytest.approx(expected, abs=1e-6)


def test_otc_reward_scales_correct_answers_by_calls_relative_to_the_groups_fewest():
    # prompt 0: calls [2, 1, 3, 0], correct [T, T, F, F] -> n = 1; m=2: f = 4/3, sin(2 pi / 3) = 0.866025; m=1: 1;
    # wrong answers 0 whatever their calls.  prompt 1: calls [0, 2], both correct -> n = 0: 1 and cos(2 pi / 7).
    texts = [calls(2), calls(1), calls(3), calls(0), calls(0), calls(2)]
    state = FewestCalls()
    out = rewards.REWARDS.call("otc", texts, [None] * 6, context={
        "correct": [True, True, False, False, True, True], "prompt_ids": [0, 0, 0, 0, 1, 1], "state": state}, c=3.0)
    assert out == pytest.approx([0.866025, 1.0, 0.0, 0.0, 1.0, 0.623490], abs=1e-6)
    assert state.n == {0: 1, 1: 0}
    # a later batch of prompt 0: its own fewest correct is 3, the global fewest stays 1 -> m=3: f = 3/2, 0.707107
    later = {"correct": [True, False], "prompt_ids": [0, 0]}
    out = rewards.REWARDS.call("otc", [calls(3), calls(2)], [None] * 2, context={**later, "state": state})
    assert out == pytest.approx([0.707107, 0.0], abs=1e-6)
    # the paper's local approximation (this group only): n = 3, so m = 3 is optimal
    out = rewards.REWARDS.call("otc", [calls(3), calls(2)], [None] * 2, context={**later, "state": FewestCalls()},
                               scope="group")
    assert out == pytest.approx([1.0, 0.0], abs=1e-6)


def test_otc_reward_rejects_an_unknown_scope_naming_the_allowed_ones():
    with pytest.raises(ParamError, match="global, group"):
        rewards.REWARDS.call("otc", ["x"], [None], context={"correct": [True], "prompt_ids": [0],
                                                             "state": FewestCalls()}, scope="best")


# ------------------------------------------------------------------------------------------ the tool


@pytest.mark.parametrize(("expr", "value"), [
    ("12*7", "84"), (" 7 / 2 ", "3.5"), ("(3+4)*-2", "-14"), ("gcd(12, 18)", "6"), ("2^10", "1024"), ("10//3", "3"),
    ("1/0", "error: division by zero"), ("__import__('os')", "error: not an arithmetic expression"),
    ("12*", "error: not an arithmetic expression"), ("", "error: empty or too long expression"),
    ("9**99", "error: not an arithmetic expression"),
    ("10**18*10", "error: value too large"),
])
def test_calculator_evaluates_arithmetic_and_reports_malformed_expressions(expr, value):
    assert calculate(expr) == value


def test_calculator_env_returns_results_counts_calls_and_ends_at_the_answer():
    problem = Problem(index=0, question="What is 12*7?", answer="84", messages=[{"role": "user", "content": "12*7?"}],
                      entry={})

    def score(p, text):
        return float("<answer>84</answer>" in text)

    env = CalculatorEnv([problem], max_calls=2, score=score)
    env.reset(0)
    r1 = env.step("I compute <calc>12*7</calc>")
    assert (r1.observation, r1.done, r1.info["tool_calls"], r1.info["call"]) == ("<result>84</result>", False, 1, True)
    r2 = env.step("again <calc>12*</calc>")  # a malformed call: an error comes back, the call counts
    assert r2.info["result"].startswith("error") and r2.info["tool_calls"] == 2 and not r2.done
    r3 = env.step("<answer>84</answer>")
    assert r3.done and r3.reward == 1.0 and r3.info["tool_calls"] == 2 and not r3.info["call"]
    assert count_calls(env.text()) == 2
    assert [m["role"] for m in env.messages()] == ["user", "assistant", "user", "assistant", "user", "assistant"]
    with pytest.raises(ValueError, match="reset"):
        env.step("more")


def test_a_call_beyond_the_limit_ends_the_episode_unanswered():
    env = CalculatorEnv(max_calls=1)
    env.reset(0)
    assert not env.step("<calc>1+1</calc>").done
    last = env.step("<calc>2+2</calc>")
    assert last.done and last.observation == "" and last.info["tool_calls"] == 2 and last.reward == 0.0


def test_an_action_without_a_call_ends_the_episode():
    env = CalculatorEnv(max_calls=3)
    env.reset(0)
    res = env.step("just 5")
    assert res.done and res.info["tool_calls"] == 0


# --------------------------------------------------------------------- the rollout and the masked loss


def scripted(monkeypatch, tok, turns: list[str]) -> list[int]:
    """Replace the model's sampling by scripted segments (turn k: ``turns[k]`` for every row); returns how many
    times generation ran."""
    ran = []

    def fake(model, tok_, cfg, prompts, max_new_tokens, do_sample, temperature, group_size, noise=None):
        rows = [p for p in prompts for _ in range(group_size)]
        text = turns[len(ran)]
        ran.append(len(rows))
        ids = tok(text, add_special_tokens=False)["input_ids"][:max_new_tokens]
        return rollout_from_ids(rows, [ids] * len(rows), [text] * len(rows), [False] * len(rows), tok.pad_token_id)

    monkeypatch.setattr(toolcalls, "plain_generate", fake)
    return ran


def test_rollout_cuts_at_the_call_writes_the_result_and_masks_its_tokens(monkeypatch, tiny_model, tok):
    ran = scripted(monkeypatch, tok, ["ab<calc>2*3</calc>zz", "<answer>6</answer>yy"])
    roll = toolcalls.generate(tiny_model, tok, toolcalls.TrainConfig(), [[5, 6, 7]], 60, group_size=2, max_calls=2)
    policy1, tool, policy2 = "ab<calc>2*3</calc>", "<result>6</result>", "<answer>6</answer>"
    assert roll.texts == [policy1 + tool + policy2] * 2
    assert ran == [2, 2]  # two turns; the trailing "zz" and "yy" after the closing tags are cut
    expected = [1.0] * len(policy1) + [0.0] * len(tool) + [1.0] * len(policy2)  # one token per character
    assert roll.action_mask[0].tolist() == expected
    assert roll.completion_mask.sum(-1).tolist() == [len(expected)] * 2
    assert roll.finished.tolist() == [True, True] and [count_calls(t) for t in roll.texts] == [1, 1]


def test_the_token_budget_bounds_policy_and_tool_tokens_together(monkeypatch, tiny_model, tok):
    scripted(monkeypatch, tok, ["<calc>1+1</calc>", "<answer>2</answer>"])
    roll = toolcalls.generate(tiny_model, tok, toolcalls.TrainConfig(), [[5]], 20, max_calls=2)
    # 16 policy characters, then the result is cut at the budget of 20 and the episode is unfinished
    assert roll.texts == ["<calc>1+1</calc><res"] and roll.finished.tolist() == [False]
    assert roll.action_mask[0].tolist() == [1.0] * 16 + [0.0] * 4


def test_trainer_leaves_tool_tokens_out_of_the_loss_and_logs_tool_calls(monkeypatch, tiny_model, tok):
    scripted(monkeypatch, tok, ["<calc>2+3</calc>", "<answer>5</answer>"] * 10)
    torch.manual_seed(0)
    cfg = {"steps": 1, "prompts_per_step": 2, "group_size": 2, "max_new_tokens": 60, "eval_size": 2,
           "rewards": [{"name": "otc"}]}
    trainer = Trainer(wrap_lora(tiny_model, {"r": 4, "alpha": 8}, seed=0), tok, make_task(TASK), cfg, progress=False)
    batch = trainer.collect()
    trainer.add_context(batch)
    batch.advantages = torch.ones(batch.P, batch.G)  # every row enters the update
    inputs = trainer.update_inputs(batch)
    tool = len("<result>5</result>")
    policy = len("<calc>2+3</calc>") + len("<answer>5</answer>")
    assert inputs.n_tokens == 4 * policy  # 4 episodes; the tool's tokens are not counted
    assert inputs.token_mask.sum(-1).tolist() == [policy] * 4
    assert inputs.token_mask[0, 16:16 + tool].sum() == 0
    m = trainer.step()
    assert m["tool_calls"] == 1.0 and math.isfinite(m["loss"])


def test_calculator_env_plays_multi_turn_chat_episodes_through_the_agents_api():
    from rlbook.training import agents

    problems = [Problem(index=i, question=f"{i} * 7?", answer=str(7 * i), messages=[{"role": "user", "content": f"{i} * 7?"}],
                        entry={}) for i in range(2)]

    def score(p, text):
        return float(f"<answer>{p.answer}</answer>" in text)

    make = agents.make_env_factory("calculator", problems=problems, max_calls=2, score=score)

    def policy(states):  # call the tool once, then answer with the tool's result (the last user turn)
        out = []
        for s in states:
            last = s[-1]["content"]
            out.append(f"<answer>{last[8:-9]}</answer>" if last.startswith("<result>")
                       else f"<calc>{s[-1]['content'].split('?')[0]}</calc>")
        return out

    episodes = agents.rollout_episodes(make, [0, 1], policy)
    assert [len(ep) for ep in episodes] == [2, 2]
    assert [ep[-1].reward for ep in episodes] == [1.0, 1.0] and agents.success(episodes) == [1.0, 1.0]
    assert [ep[-1].info["tool_calls"] for ep in episodes] == [1, 1]
    assert episodes[1][0].next_state[-1] == {"role": "user", "content": "<result>7</result>"}


def test_tool_task_shows_worked_examples_and_never_reads_the_tools_result_as_the_answer():
    task = make_task({**TASK, "shots": 2})
    p = task.eval[0]
    assert [m["role"] for m in p.messages] == ["user", "assistant", "user", "assistant", "user"]
    assert p.messages[1]["content"].startswith("<calc>") and p.messages[3]["content"] == "<answer>5</answer>"
    assert task.score(p, f"<calc>x</calc><result>{p.answer}</result>") == 0.0  # the tool said it, not the policy
    assert task.score(p, f"<calc>x</calc><result>{p.answer}</result><answer>{p.answer}</answer>") == 1.0
    with pytest.raises(ParamError, match="worked examples"):
        make_task({**TASK, "shots": 4})
