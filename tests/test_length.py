"""The length family (rlbook.mechanisms.length): every mechanism on hand-made batches against numbers worked out from its
paper's (or code's) formula, then one real trainer step per preset on the tiny model."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from rlbook.data.tasks import extract_answer, make_task
from rlbook.mechanisms import estimators, filters, presets, rewards
from rlbook.mechanisms.length import decs as D
from rlbook.mechanisms.length import phases as LP
from rlbook.mechanisms.length import rewards as LR
from rlbook.mechanisms.length import text as T
from rlbook.policy.models import wrap_lora
from rlbook.training.trainer import Trainer

TASK = {"name": "chain_sum", "config": {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1},
        "train_size": 40, "eval_size": 10, "system_prompt": None}


class StubTask:
    """Verifies the last number of a text against the problem's answer (what Task.score does on chain_sum)."""

    numeric = True

    def score(self, problem, text):
        return float(extract_answer(text) == problem.answer)


def P(answer: str = "7"):
    return SimpleNamespace(answer=answer)


def call(name, completions, problems=None, **context):
    problems = problems or [P()] * len(completions)
    return rewards.REWARDS.call(name, completions, problems, context=context)


def close(a, b, tol=1e-5):
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


# ---------------------------------------------------------------------------------------------- text rules


def test_first_answer_end_follows_the_reconsidering_overthinking_regex():
    # "= 7" is found; "17" and "-7"... the 7 in "17" is preceded by a digit, in "x+7" by an operator: skipped
    assert T.first_answer_end("17 x+7 so 7 ok", "7") == 11
    assert T.first_answer_end("total 1,234 then", "1234") == 11  # the comma form of a long answer
    assert T.first_answer_end("no answer here", "7") is None
    assert T.first_answer_end("a7b", "7") == 2  # fallback: plain substring


def test_chunks_reflection_words_and_sentences():
    text = "2 + 5 = 7.\nThe answer is 7. But wait, check 7."
    assert T.chunk_starts(text) == [0, 11, 28]
    assert T.reflection_count("But wait, let me check. Hmm, however... butter") == 5  # but, wait, check, hmm, however
    assert T.split_sentences("x is 1.5. y! z") == ["x is 1.5.", "y!", "z"]


# ---------------------------------------------------------------------------------------------------- DLER


def test_dler_stop_coef_and_its_recipe_estimator():
    # prompt A: correct [1,1,0,1], the second cut at the limit (not finished): r = c (s + (1-s) 0.1) = [1, 0.1, 0, 1]
    term = call("dler", ["a"] * 4, correct=[True, True, False, True], finished=[True, False, True, True])
    assert close(term, [0.0, -0.9, 0.0, 0.0])
    r = torch.tensor([[1.0, 0.1, 0.0, 1.0]])
    # reinforce_pp_baseline (DLER's estimator), lengths [4, 10, 6, 2]: s = r - 0.525 = [.475, -.425, -.525, .475];
    # token-weighted mean -4.55/22 = -0.206818; var = 3.872727/22 * 22/21 = 0.184416; A = (s - mu)/0.429437
    adv = estimators.compute("reinforce_pp_baseline", r, context={"lengths": torch.tensor([[4.0, 10, 6, 2]])})
    assert close(adv[0].tolist(), [1.58770, -0.50806, -0.74092, 1.58770], 1e-4)
    # dynamic sampling on accuracy drops an all-correct group even when the stop coef made its rewards differ
    keep = filters.apply("dynamic_sampling", torch.tensor([[1.0, 0.1, 1.0, 1.0], [1.0, 0.1, 0.0, 1.0]]),
                         {"correct": torch.tensor([[True] * 4, [True, True, False, True]])})
    assert keep.tolist() == [False, True]


def test_dler_da_tightens_truncation_with_group_accuracy(tok):
    # limit 10, gamma 0.5, min_len 2: group 1 all correct (p = 1) -> L_g = 5; group 2 half correct -> round(7.5) = 8
    texts = ["ab 7 cdef", "7 abcdefg", "abcde 7", "x 7", "abcdefgh 7", "q 3", "zz 7", "w 2"]
    lengths = [9, 9, 7, 3, 10, 3, 4, 3]
    ctx = {"task": StubTask(), "correct": [True] * 4 + [True, False, True, False], "finished": [True] * 8,
           "lengths": lengths, "group_size": 4, "max_new_tokens": 10, "tokenizer": tok}
    term = rewards.REWARDS.call("dler_da", texts, [P()] * 8, context=ctx, min_len=2)
    # group 1 (cap 5): "ab 7 " verifies -> 0.1 - 1; "7 abc" -> 0.1 - 1; "abcde" (7 > 5) has no answer -> 0 - 1;
    # "x 7" (3 <= 5) untouched -> 0.  group 2 (cap 8): "abcdefgh" has no answer -> -1; the rest fit -> 0
    assert close(term, [-0.9, -0.9, -1.0, 0.0, -1.0, 0.0, 0.0, 0.0])


# ---------------------------------------------------------------------------------------------------- HAPO


def test_hapo_history_rewards_and_update_order():
    state = rewards.REWARDS.make_state("hapo")
    ctx = {"state": state, "prompt_ids": [7, 7, 7]}
    # step 1: no history -> r_len = 0; then h_7 = min(30, 20) = 20
    assert call("hapo", ["a"] * 3, correct=[True, True, False], lengths=[30, 20, 10], **ctx) == [0.0, 0.0, 0.0]
    assert state.h == {7: 20.0}
    # step 2 with h = 20 (not the updated 10): cos(pi/4) = .707107; cos(pi/2) = 0; cos(3pi/4) -> max(-.7, -.707) = -.7;
    # L >= 2h -> -1 -> -.7; wrong: min(0, .707) = 0; min(0, -.707107); L = 40 >= 2h -> -1
    ctx["prompt_ids"] = [7] * 7
    got = call("hapo", ["a"] * 7, correct=[True] * 4 + [False] * 3, lengths=[10, 20, 30, 45, 10, 30, 40], **ctx)
    assert close(got, [0.707107, 0.0, -0.7, -0.7, 0.0, -0.707107, -1.0])
    assert state.h == {7: 10.0}
    # w_lr = 0.5 halves the term (totals 1.353553, 1.0, 0.65, 0.65, 0.0, -0.353553, -0.5 with correctness)
    half = LR.hapo(["a"] * 3, [P()] * 3, correct=[True, True, False], lengths=[10, 30, 30], prompt_ids=[1, 1, 1],
                   state=_state_with({1: 20.0}), w_lr=0.5)
    assert close(half, [0.353553, -0.35, -0.353553])


def _state_with(h):
    s = LR.LengthHistory()
    s.h = dict(h)
    return s


def test_hapo_linear_mean_mode_and_checkpoint():
    # linear, h = 20, tolerance 0.1 (1.1 h = 22): correct 10 -> 1 - .5; 21 -> 0; 30 -> -(30-22)/20 = -.4; 40 -> -.9 -> -.7
    # wrong 21 -> 0; 30 -> -.4; 50 -> -1.4 -> -1
    got = [LR.hapo_length_reward(n, c, 20.0, "linear") for n, c in
           [(10, True), (21, True), (30, True), (40, True), (21, False), (30, False), (50, False)]]
    assert close(got, [0.5, 0.0, -0.4, -0.7, 0.0, -0.4, -1.0])
    s = LR.LengthHistory()
    s.update(3, [30, 20], "mean")  # h = 25, n = 2
    s.update(3, [10], "mean")  # ratio 1/3: 10/3 + 2/3 * 25 = 20
    assert s.h[3] == pytest.approx(20.0) and s.n[3] == 3
    t = LR.LengthHistory()
    t.load_state_dict(s.state_dict())
    assert t.h == s.h and t.n == s.n


# -------------------------------------------------------------------------------------- Kimi and GRPO-lambda


def test_grpo_lambda_switches_length_reward_by_group_accuracy():
    # A: correct [1,1,1,0], L [10,20,30,40] (p = .75); B: correct [1,0,0,0], L [5,5,50,60] (p = .25); lam .5 -> A only.
    # A: lambda = .5 - [0,10,20,30]/30 = [.5, .166667, -.166667, -.5]; wrong -> min(0, -.5)
    ctx = {"correct": [True, True, True, False, True, False, False, False], "lengths": [10, 20, 30, 40, 5, 5, 50, 60],
           "group_size": 4}
    got = call("grpo_lambda", ["a"] * 8, **ctx)
    assert close(got, [0.5, 0.166667, -0.166667, -0.5, 0, 0, 0, 0])
    # lam = 1: B too: range 55, lambda = .5 - [0,0,45,55]/55 = [.5, .5, -.318182, -.5]; wrong .5 -> min(0, .5) = 0
    got = rewards.REWARDS.call("grpo_lambda", ["a"] * 8, [P()] * 8, context=ctx, lam=1.0)
    assert close(got[4:], [0.5, 0.0, -0.318182, -0.5])
    assert close(call("kimi_length", ["a"] * 8, **ctx)[4:], [0.5, 0.0, -0.318182, -0.5])


def test_grpo_lambda_never_pays_an_all_wrong_group():
    got = rewards.REWARDS.call("grpo_lambda", ["a"] * 4, [P()] * 4, lam=1.0,
                               context={"correct": [False] * 4, "lengths": [5, 9, 20, 40], "group_size": 2})
    assert got == [0.0] * 4


# -------------------------------------------------------------------------------- conciseness and budget


def test_conciseness_rm_is_outcome_gated():
    # rule scorer, L_max 100, alpha 1: correct 20 -> s = .8 -> +.8; correct 100 -> 0; wrong 10 -> 0
    got = call("conciseness_rm", ["a"] * 3, correct=[True, True, False], lengths=[20, 100, 10], max_new_tokens=100)
    assert close(got, [0.8, 0.0, 0.0])
    got = rewards.REWARDS.call("conciseness_rm", ["a"] * 2, [P()] * 2, alpha=0.5,
                               context={"correct": [True, False], "lengths": [20, 10], "max_new_tokens": 100})
    assert close(got, [0.4, 0.0])


def test_budget_schedule_and_reward():
    # B0 64, gamma .5, T 10, B_min 8: 64 (t < 10), 32, 16 at t = 25, 8 at 30, max(8, 4) = 8 at 45
    assert [LR.budget_at(t, 64, 0.5, 10, 8) for t in (0, 9, 10, 25, 30, 45)] == [64, 64, 32, 16, 8, 8]
    assert LR.budget_at(10, 128, interval=10, schedule="linear", b_final=32, total_steps=30) == 80  # 128 - 96 * 10/20
    got = rewards.REWARDS.call(
        "budget_curriculum", ["so 12. answer: 12", "answer is 3", "no"], [P()] * 3,
        context={"correct": [True, True, False], "lengths": [12, 24, 40], "step": 25, "total_steps": 50},
        b0=64, gamma=0.5, interval=10, b_min=8)
    # B = 16: 1 + .5 * 1 + .2 = 1.7; L = 24: l = 1 - 8/16 = .5 -> 1 + .25 + .2 = 1.45; wrong, 40 > 32 -> 0, no statement
    assert close(got, [1.7, 1.45, 0.0])


# ----------------------------------------------------------------------------------------------------- DOT


def test_dot_truncates_only_outliers_of_all_correct_groups():
    # all correct L = [10,12,14,40]: mu 19, sigma = sqrt(596/4) = 12.206556; k 1.5 -> tau 37.3098 -> 40 is cut
    ctx = {"correct": [True] * 4 + [True, True, True, False], "lengths": [10, 12, 14, 40] * 2, "group_size": 4}
    got = rewards.REWARDS.call("dot", ["a"] * 8, [P()] * 8, context=ctx, k=1.5)
    assert got == [0, 0, 0, -1.0, 0, 0, 0, 0]
    # k = 2 -> tau 43.41: nothing; k = 3 can never fire for G = 4 (max z = sqrt(3))
    assert rewards.REWARDS.call("dot", ["a"] * 8, [P()] * 8, context=ctx, k=2.0) == [0.0] * 8


# --------------------------------------------------------------------------------------------------- ARLCP


def test_arlcp_reflection_and_length_penalties():
    # correct A (k 2, L 20), B (k 0, L 10), C (k 4, L 30); D wrong. mu_k 2, sd_k 2; mu_L 20, sd_L 10; w1 .05, w2 .15
    # A: 1 - .2 * sigmoid(0) = .9; B: 1 - .2 sigmoid(-1) = .946212; C: 1 - .2 sigmoid(1) = .853788
    texts = ["but but", "plain", "but check hmm wait", "wait"]
    got = call("arlcp", texts, correct=[True, True, True, False], lengths=[20, 10, 30, 5], group_size=4)
    assert close([g + 1 for g in got[:3]], [0.9, 0.946212, 0.853788]) and got[3] == 0.0
    # k and L disagree: (k 0, L 30), (k 4, L 10): z = -/+.707107 -> sigmoid .330238 / .669762.  Thresholds (1, 3):
    # first k 0 <= 1 -> w1 .05: 1 - .05 * .330238 - .15 * .669762 = .883024; second k 4 > 3 -> w1 .15:
    # 1 - .15 * .669762 - .05 * .330238 = .883024 (paper thresholds would give .916976 for it)
    texts = ["plain", "but but but but"]
    ctx = {"correct": [True, True], "lengths": [30, 10], "group_size": 2}
    got = rewards.REWARDS.call("arlcp", texts, [P()] * 2, context=ctx, thresholds=(1, 3))
    assert close([g + 1 for g in got], [0.883024, 0.883024])
    got = rewards.REWARDS.call("arlcp", texts, [P()] * 2, context=ctx)
    assert close([g + 1 for g in got], [0.883024, 0.916976])


# ---------------------------------------------------------------------------------- Reconsidering Overthinking


def test_redundancy_external_and_internal(tok):
    # char tokenizer: text "a b. a c. a c 7. ok" (19 chars); FCS "a b. a c. a c 7", aft ". ok" -> ERD round(4/19, 2)
    # = .21, r_ext = .79.  FCS sentences {a,b}, {a,c}, {a,c,7}: cosines .5 and 2/sqrt(6) = .816497 -> IRD .658248
    # S(x) = [sig(20(.7 - x)) - sig(-6)] / [sig(14) - sig(-6)] = .696669; both: .5 (.696669 + .79) = .743334
    text = "a b. a c. a c 7. ok"
    ctx = {"task": StubTask(), "correct": [True, False], "tokenizer": tok}
    got = rewards.REWARDS.call("redundancy", [text, text], [P(), P()], context=ctx)
    assert close([got[0] + 1], [0.743334]) and got[1] == 0.0
    ext = rewards.REWARDS.call("redundancy", [text], [P()], context={**ctx, "correct": [True]}, use_internal=False)
    assert close([ext[0] + 1], [0.79])
    # the code's quirk: a correct answer that ends exactly at its answer (empty remainder) scores 0
    assert rewards.REWARDS.call("redundancy", ["so 7"], [P()], context={**ctx, "correct": [True]}) == [-1.0]
    assert LR.overthinking_penalty(0.0) == pytest.approx(1.0) and LR.overthinking_penalty(1.0) == pytest.approx(0.0)
    assert LR.overthinking_penalty(0.75) == pytest.approx(0.267130, abs=1e-6)


# ----------------------------------------------------------------------------------------- cosine and SIRI


def test_cosine_reward_matches_the_paper_values():
    # L_max 100, margin 16 (exceed at L >= 84): correct 50 -> 1.5, 25 -> 1.853553, 0 -> 2; wrong 50 -> -5,
    # 25 -> -8.535534, 80 -> -.954915; 84 or 90 -> -10
    got = call("cosine", ["a"] * 8, correct=[True, True, True, False, False, False, True, False],
               lengths=[50, 25, 0, 50, 25, 80, 84, 90], max_new_tokens=100)
    assert close(got, [1.5, 1.853553, 2.0, -5.0, -8.535534, -0.954915, -10.0, -10.0])


def test_length_cap_and_the_siri_schedule():
    assert call("length_cap", ["a"] * 3, correct=[True, True, False], finished=[True, False, False]) == [0.0, -1.0, 0.0]
    # cosine from the expansion level, 128 -> 32 -> 128 over 20 steps: 128, 32 + 96 (1 + cos(pi/2))/2 = 80, 32, 80, 128
    assert [LP.schedule_limit(t, "cosine", 128, 32, 20, "expand") for t in (0, 5, 10, 15, 20)] == [128, 80, 32, 80, 128]
    assert LP.schedule_limit(0, "cosine", 128, 32, 20, "compress") == 32
    stair = [LP.schedule_limit(t, "stair", 128, 32, 20) for t in range(20)]
    assert stair == [32] * 10 + [128] * 10


# ---------------------------------------------------------------------------------------------------- DECS


def test_decs_token_advantages_against_the_worked_example():
    # G = 4, W = 10, beta .1: r1 correct L 4; r2 correct L 8, redundant tokens 4..7; r3 wrong L 6; r4 wrong L 10.
    # t 0-3: [1.1, 1.1, 0, 0] -> mu .55, sd .635085 -> +-.866025; t 4-7: [1.1, 1.02, 0, 0] (1 + .1 (1 - .8) = 1.02)
    # -> mu .53, sd sqrt(1.1268/3) = .612862 -> r2 .799527, r3/r4 -.864794; t 8-9 as t 0-3
    adv = estimators.compute("decs", torch.zeros(1, 4), context={
        "correct": torch.tensor([[True, True, False, False]]), "lengths": torch.tensor([[4.0, 8, 6, 10]]),
        "redundant_span": torch.tensor([[[0, 0], [4, 8], [0, 0], [0, 0]]]), "max_new_tokens": 10})
    a = adv[0]
    assert a.shape == (4, 10)
    assert close(a[0, :4].tolist(), [0.866024] * 4) and close(a[0, 4:].tolist(), [0.0] * 6)
    assert close(a[1, 4:8].tolist(), [0.799526] * 4) and close(a[1, 8:].tolist(), [0.0, 0.0])
    assert close(a[2, :6].tolist(), [-0.866024] * 4 + [-0.864793] * 2)
    assert close(a[3, 8:].tolist(), [-0.866024] * 2)


def test_decs_redundant_span_and_kappa_schedule(tok):
    text = "2 + 5 = 7.\nThe answer is 7."  # chunks start at 0 and 11; the answer first stated in chunk 0
    ids = tok(text, add_special_tokens=False)["input_ids"]
    offsets = [(i, i + 1) for i in range(len(ids))]  # the char tokenizer: one token per character
    assert D.redundant_span(text, "7", offsets, len(ids)) == (11, len(text), 0.5)  # NRP ratio (0 + 1) / 2
    assert D.redundant_span("so 7", "7", [(i, i + 1) for i in range(4)], 4) == (0, 0, 1.0)
    k = D.Kappa()
    k.update(0.6, 0.2)  # kappa = 0 + .2 (.6 - .5) = .02
    assert k.kappa == pytest.approx(0.02)
    correct = torch.tensor([[True, False]] * 30 + [[True, True]] * 10)
    keep = D.decs_curriculum(torch.zeros(40, 2), correct=correct, step=1, state=k)
    assert int(keep.sum()) == 30  # int(.02 * 30 / .98) = int(.612) = 0 all-correct groups added
    keep = D.decs_curriculum(torch.zeros(40, 2), correct=correct, step=1, state=k)  # kept_cum 60: int(1.22) = 1
    assert int(keep.sum()) == 31 and k.kept_cum == 0


# ----------------------------------------------------------------------------------------------- BRPO


def test_brpo_segment_advantages_and_token_mapping():
    # S = 2, uniform p, G = 2: r_g0 = [0, 1], r_g1 = [1, 1].  s = 0: R = [.5, 1], V2 = .75, V1 = 0 -> baseline .75
    # -> [-.25, .25]; s = 1: R = [.5, .5], V2 = .5, V1 = [0 * .5, 1 * .5] -> baselines (0 + .5)/2, (.5 + .5)/2 -> [.25, 0]
    scores = torch.tensor([[[0.0, 1.0], [1.0, 1.0]]])
    adv = estimators.compute("brpo", torch.zeros(1, 2), context={
        "lengths": torch.tensor([[5.0, 3.0]]), "budget_scores": scores, "budget_ends": torch.tensor([2, 4])})
    # tokens 0-1 -> segment 0, 2-3 -> segment 1, 4 -> last segment; row 2 ends at 3
    assert close(adv[0, 0].tolist(), [-0.25, -0.25, 0.25, 0.25, 0.25])
    assert close(adv[0, 1].tolist(), [0.25, 0.25, 0.0, 0.0, 0.0])
    v2 = estimators.get("brpo")(torch.zeros(1, 2), lengths=torch.tensor([[4.0, 4.0]]), budget_scores=scores,
                                budget_ends=torch.tensor([2, 4]), variance_reduction="v2only")
    assert close(v2[0, :, 2].tolist(), [0.0, 0.0])
    # S = 3 discount weights 2^j: r = [1, 0, x] -> V1 at s = 2 = (1 * 1 + 2 * 0) / 3 * p_2
    from rlbook.mechanisms.length.estimators import brpo_segment_advantages
    a = brpo_segment_advantages(torch.tensor([[[1.0, 0.0, 0.0]]]), torch.ones(3) / 3, "v1only")
    assert a[0, 0, 2].item() == pytest.approx(0.0 - (1 / 3) * (1 / 3))


# ----------------------------------------------------------------------------------------------- VSRM


def test_vsrm_lookahead_and_returns():
    # gains [0, .5, 0, -.25], gamma .5: r = [.5 * .5, .5, .5 * -.25, -.25] = [.25, .5, -.125, -.25]
    assert close(LP.lookahead_rewards([0.0, 0.5, 0.0, -0.25], gamma=0.5, window=2), [0.25, 0.5, -0.125, -0.25])
    assert LP.lookahead_rewards([0.0, 0.0, 0.0, 1.0], gamma=0.5, window=2) == [0.0, 0.25, 0.5, 1.0]
    # one completion of 3 tokens: step reward .5 on token 0, outcome 1 on token 2 -> returns [1.5, 1, 1];
    # a second of 1 token with outcome 0 -> [0].  Token-weighted whitening over the 4 tokens: mean .875,
    # var = (.625^2 + 2 * .125^2 + .875^2)/4 * 4/3 = .395833 -> A = (x - .875)/.629153
    adv = estimators.compute("vsrm", torch.tensor([[1.0, 0.0]]), context={
        "lengths": torch.tensor([[3.0, 1.0]]), "token_rewards": torch.tensor([[[0.5, 0, 0], [0, 0, 0]]])})
    assert close(adv[0, 0].tolist(), [0.993399, 0.198680, 0.198680]) and close(adv[0, 1].tolist(), [-1.390758, 0, 0])


# ------------------------------------------------------------------------------------ one real trainer step


def make_trainer(model, tok, **cfg) -> Trainer:
    base = {"steps": 2, "prompts_per_step": 2, "group_size": 4, "max_new_tokens": 12, "micro_batch_size": 4,
            "gen_batch_size": 8, "eval_size": 4}
    base.update(cfg)
    torch.manual_seed(0)
    return Trainer(wrap_lora(model, {"r": 4, "alpha": 8}, seed=0), tok, make_task(TASK), base, progress=False)


LENGTH_PRESETS = ["length_penalty", "overlong", "cosine", "dler", "dler_da", "hapo", "kimi_length", "grpo_lambda",
                  "conciseness_rm", "budget_curriculum", "siri", "dot", "decs", "redundancy", "arlcp", "vsrm", "anytime",
                  "drpo"]
SCALE = {"siri": {"phases": [{"name": "length_schedule", "kwargs": {"low": 6, "period": 4}}]},
         "budget_curriculum": {"rewards": [{"name": "budget_curriculum", "kwargs": {"b0": 12, "interval": 1}}]},
         "dot": {"rewards": [{"name": "correct"}, {"name": "dot", "kwargs": {"k": 1.0}}]}}


@pytest.mark.parametrize("name", LENGTH_PRESETS)
def test_one_trainer_step_per_length_preset(tiny_model, tok, name):
    tr = make_trainer(tiny_model, tok, **{**presets.method_train(name), **SCALE.get(name, {})})
    m = tr.step()
    assert math.isfinite(m["loss"]) and m["step"] == 1
    if name == "siri":  # compression first: generation limited to the low level
        assert m["gen_limit"] == 6 and tr.generation_limit() == LP.schedule_limit(1, "cosine", 12, 6, 4)
        assert int(tr.history[0]["response_length"]) <= 6
    if name == "anytime":
        assert {"acc@3", "acc@12", "budget_answers_generated"} <= set(m)
        # the budget answers' tokens count as the step's extra generation: 1 to 8 (answer_tokens) per answer
        n = m["budget_answers_generated"]
        assert n <= m["extra_gen_tokens"] <= 8 * n and tr.generated_tokens == m["gen_tokens"] + m["extra_gen_tokens"]
    if name == "decs":
        assert "decs_redundant_share" in m and "decs_kappa" in m
    if name == "vsrm":
        assert "vsrm_steps" in m


def test_stateful_length_components_survive_a_checkpoint(tiny_model, tok):
    tr = make_trainer(tiny_model, tok, **presets.method_train("hapo"))
    tr.comp.rewards[1].state.h = {3: 11.0}
    tr.comp.rewards[1].state.n = {3: 2}
    saved = tr.state_dict()
    tr.comp.rewards[1].state.h = {}
    tr.load_state_dict(saved)
    assert tr.comp.rewards[1].state.h == {3: 11.0} and tr.comp.rewards[1].state.n == {3: 2}
    from rlbook.policy.models import SPECIALS, tiny_llama

    tr2 = make_trainer(tiny_llama(vocab_size=len(SPECIALS) + 95, hidden=32, layers=2, heads=4), tok,
                       **presets.method_train("decs"))
    tr2.comp.filters[0].state.kappa = 0.3
    saved = tr2.state_dict()
    tr2.comp.filters[0].state.kappa = 0.0
    tr2.load_state_dict(saved)
    assert tr2.comp.filters[0].state.kappa == 0.3


def test_pareto_front_by_hand():
    from rlbook.analysis.efficiency import pareto_front

    # (tokens, accuracy): B dominates A (shorter and more accurate); C is longer but the most accurate; D ties B's
    # length at lower accuracy (dominated); E is the shortest
    pts = {"A": (60, 0.30), "B": (40, 0.35), "C": (80, 0.50), "D": (40, 0.20), "E": (10, 0.10)}
    assert pareto_front(pts) == ["B", "C", "E"]


def test_an_estimator_without_its_phase_is_a_config_error():
    from rlbook.core.config import TrainConfig
    from rlbook.core.errors import ParamError
    from rlbook.mechanisms import components

    with pytest.raises(ParamError, match="answer_marks"):
        components.check(TrainConfig(estimator="decs"))
