"""Step layout, the oracle and line-validity process rewards, the credit audit and the token-level estimators
(PRIME, TEMPO, PURE min-form, Clip/Delta, SPO-chain, Rewarding Progress, SPAE, CAPO), on hand-made completions
with the numbers worked out by hand from each paper's formula (or its code) in the comments."""

from __future__ import annotations

import math
import string
from types import SimpleNamespace

import pytest
import torch
from rlbook.core.config import ParamError
from rlbook.data.tasks import Problem, problem_meta
from rlbook.mechanisms import estimators as E
from rlbook.mechanisms import process
from rlbook.mechanisms.estimators.process import (
    clip_delta_transform,
    masked_whiten,
    prime_batch_norm,
    spo_chain_row,
)
from rlbook.policy.rollout import Batch, Rollout


def line_tokenizer():
    """One token per character, newline included (the tiny model's tokenizer has none); id 2 = EOS."""
    from tokenizers import Tokenizer as RawTokenizer
    from tokenizers import decoders, pre_tokenizers
    from tokenizers import models as tok_models
    from transformers import PreTrainedTokenizerFast

    chars = list(string.printable[:95]) + ["\n"]
    vocab = {t: i for i, t in enumerate(["<unk>", "<bos>", "<eos>", *chars])}
    raw = RawTokenizer(tok_models.WordLevel(vocab=vocab, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    fast = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="<unk>", bos_token="<bos>", eos_token="<eos>",
                                   pad_token="<eos>")
    fast.backend_tokenizer.decoder = decoders.Fuse()
    return fast


def chain_problem(expression: str) -> Problem:
    tokens = expression.split()
    total = int(tokens[0])
    for op, t in zip(tokens[1::2], tokens[2::2], strict=True):
        total = total + int(t) if op == "+" else total - int(t)
    entry = {"question": f"{expression} =", "answer": str(total),
             "metadata": {"source_dataset": "chain_sum", "source_index": 0, "expression": expression,
                          "num_terms": len(tokens) // 2 + 1, "num_digits": 1}}
    return Problem(index=0, question=entry["question"], answer=str(total), entry=entry, messages=[],
                   meta=problem_meta(entry, "chain_sum"))


def make_batch(tok, problem: Problem, texts: list[str], correct: list[bool]) -> Batch:
    """One group of completions (ids = characters + EOS), right-padded with EOS."""
    ids = [tok(t, add_special_tokens=False)["input_ids"] + [2] for t in texts]
    T = max(len(x) for x in ids)
    comp = torch.full((len(ids), T), 2, dtype=torch.long)
    mask = torch.zeros(len(ids), T)
    for i, x in enumerate(ids):
        comp[i, : len(x)] = torch.tensor(x)
        mask[i, : len(x)] = 1
    roll = Rollout(input_ids=comp, attention_mask=mask.long(), prompt_len=0, completion_ids=comp,
                   completion_mask=mask, texts=texts)
    G = len(texts)
    return Batch([0], [problem], roll, torch.zeros(G, 1), torch.tensor([correct], dtype=torch.float),
                 torch.tensor([correct]))


# ------------------------------------------------------------------------------------------- layout


def test_row_layout_owns_tokens_from_a_line_to_the_next_and_merges_empty_steps():
    # starts 0, 4, 9 in a completion of 12 tokens padded to 14: step 0 = 0..3, 1 = 4..8, 2 = 9..11 (EOS included)
    index, ends, kept = process.row_layout([0, 4, 9], 12, 14)
    assert index == [0] * 4 + [1] * 5 + [2] * 3 + [-1] * 2 and ends == [3, 8, 11] and kept == [0, 1, 2]
    # two lines starting in the same token: the second is merged into the first; leading tokens go to step 0
    assert process.row_layout([0, 4, 4, 9], 12, 12)[2] == [0, 1, 3]
    assert process.row_layout([2, 5], 8, 8)[:2] == ([0] * 5 + [1] * 3, [4, 7])
    assert process.row_layout([], 3, 4)[:2] == ([0, 0, 0, -1], [2])  # no line: one step over every token


def test_layout_of_a_three_line_completion_by_character():
    tok = line_tokenizer()
    # "4 - 1 = 3" = chars 0..8, newline 9; "3 - 7 = -4" = 10..19, newline 20; "Answer: -4" = 21..30; EOS = 31
    batch = make_batch(tok, chain_problem("4 - 1 - 7"), ["4 - 1 = 3\n3 - 7 = -4\nAnswer: -4"], [True])
    lay = process.batch_layout(SimpleNamespace(tok=tok), batch)
    assert lay.ends == [[9, 20, 31]]
    assert lay.index[0].tolist() == [0] * 10 + [1] * 11 + [2] * 11
    assert [s.kind for s in lay.steps[0]] == ["calc", "calc", "answer"]
    assert lay.step_mask().tolist() == [[[True, True, True]]]
    placed = lay.place(torch.tensor([[[1.0, -2.0, 3.0]]]))
    assert placed[0, 0, 9] == 1.0 and placed[0, 0, 20] == -2.0 and placed[0, 0, 31] == 3.0
    assert float(placed.abs().sum()) == 6.0


def test_oracle_and_line_validity_step_rewards():
    tok = line_tokenizer()
    # 4 - 1 - 7: partial sums 3, -4.  Completion 0: right, wrong (-5), answer -5 wrong.  Completion 1: a valid but
    # useless line repeated: "1 + 1 = 2" is arithmetic that holds, not the partial sum 3 (wrong for the oracle).
    texts = ["4 - 1 = 3\n3 - 7 = -5\nAnswer: -5", "1 + 1 = 2\n1 + 1 = 2\nok"]
    batch = make_batch(tok, chain_problem("4 - 1 - 7"), texts, [False, False])
    trainer = SimpleNamespace(tok=tok)
    m = process.OracleSteps(trainer).run(trainer, batch)
    assert batch.context["step_rewards"].tolist() == [[[1.0, -1.0, -1.0], [-1.0, -1.0, 0.0]]]
    assert m["oracle_step_acc"] == pytest.approx(1 / 5)  # 1 right of 5 checkable lines
    prefix = process.OracleSteps(trainer, labels="prefix", wrong=0.0)
    prefix.run(trainer, batch)
    assert batch.context["step_rewards"].tolist() == [[[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]]
    m = process.LineValidity(trainer).run(trainer, batch)
    # completion 0: 4-1=3 holds, 3-7=-5 does not (-4), the answer line makes no a op b claim
    assert batch.context["step_rewards"].tolist() == [[[1.0, -1.0, 0.0], [1.0, 1.0, 0.0]]]
    assert m["valid_line_share"] == pytest.approx(3 / 4) and m["valid_lines"] == pytest.approx(1.5)
    assert process.line_is_valid("12 - 20 = -8") is True and process.line_is_valid("so 3") is None


def test_auc_and_pair_accuracy_by_hand():
    assert process.auc([0.9, 0.1, 0.5], [True, False, False]) == 1.0
    assert process.auc([1.0, 1.0], [True, False]) == 0.5
    # pos [0.3, 0.8] vs neg [0.5]: 0.8 > 0.5 wins, 0.3 loses -> 1/2
    assert process.auc([0.3, 0.8, 0.5], [True, True, False]) == 0.5
    assert math.isnan(process.auc([1.0], [True]))
    assert process.pair_accuracy([[1.0, -1.0], [0.2, 0.2]], [[True, False], [True, False]]) == pytest.approx(0.75)


def test_credit_audit_on_hand_made_advantages():
    tok = line_tokenizer()
    # A: calc lines right, wrong; B: right, right (4 - 1 - 7: partial sums 3, -4)
    texts = ["4 - 1 = 3\n3 - 7 = -5\nAnswer: -5", "4 - 1 = 3\n3 - 7 = -4\nAnswer: -4"]
    batch = make_batch(tok, chain_problem("4 - 1 - 7"), texts, [False, True])
    lay = process.batch_layout(SimpleNamespace(tok=tok), batch)
    token_adv = torch.zeros(1, 2, lay.index.shape[1])
    token_adv[0, 0] = torch.where(lay.index[0] == 0, 1.0, -1.0) * (lay.index[0] >= 0)
    token_adv[0, 1] = 0.5 * (lay.index[1] >= 0)
    m = process.audit(batch, lay, token_adv)
    # calc credits: A (1, right), (-1, wrong); B (0.5, right), (0.5, right): every right line above the wrong one
    assert m["credit_auc"] == 1.0 and m["credit_pair_acc"] == 1.0 and m["oracle_step_share"] == 0.75
    # outcome-only credit A = -1, B = +1: right lines {-1, 1, 1} vs wrong {-1}: (2 + 0.5) / 3; inside A a tie
    m = process.audit(batch, lay, torch.tensor([[-1.0, 1.0]]))
    assert m["credit_auc"] == pytest.approx(2.5 / 3) and m["credit_pair_acc"] == 0.5
    assert m["format_share"] == 1.0 and m["calc_lines"] == 2.0 and m["repeated_lines"] == 0.0


def test_outcome_credit_auc_is_the_paired_reference_on_the_same_lines_not_a_constant():
    tok = line_tokenizer()
    # A (outcome wrong): calc lines right, wrong; B (outcome right): right, right (4 - 1 - 7: partial sums 3, -4)
    texts = ["4 - 1 = 3\n3 - 7 = -5\nAnswer: -5", "4 - 1 = 3\n3 - 7 = -4\nAnswer: -4"]
    batch = make_batch(tok, chain_problem("4 - 1 - 7"), texts, [False, True])
    lay = process.batch_layout(SimpleNamespace(tok=tok), batch)
    # outcome-only credit: GRPO's advantage of rewards [0, 1] (mean 0.5, Bessel std 0.707): A -0.707, B +0.707
    assert process.outcome_credit(batch)[0].tolist() == pytest.approx([-0.5 / 0.5 ** 0.5, 0.5 / 0.5 ** 0.5], abs=1e-5)
    token_adv = torch.zeros(1, 2, lay.index.shape[1])
    token_adv[0, 0] = torch.where(lay.index[0] == 0, 1.0, -1.0) * (lay.index[0] >= 0)
    token_adv[0, 1] = 0.5 * (lay.index[1] >= 0)
    m = process.audit(batch, lay, token_adv)
    # same lines, outcome credit: right {-0.707, 0.707, 0.707} vs wrong {-0.707}: (2 + 0.5) / 3; the method's 1.0
    assert m["credit_auc"] == 1.0 and m["outcome_credit_auc"] == pytest.approx(2.5 / 3)
    # both outcomes wrong: outcome credit is 0 everywhere, AUC 0.5 (it carries nothing about the lines)
    batch.rewards = torch.zeros(1, 2)
    assert process.audit(batch, lay, token_adv)["outcome_credit_auc"] == pytest.approx(0.5)


# ----------------------------------------------------------------------------------------- PRIME


def _ragged(rows: list[list[float]], T: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    T = T or max(len(r) for r in rows)
    x, m = torch.zeros(1, len(rows), T), torch.zeros(1, len(rows), T)
    for i, r in enumerate(rows):
        x[0, i, : len(r)] = torch.tensor(r)
        m[0, i, : len(r)] = 1
    return x, m


def test_prime_rloo_follows_the_codes_leave_one_out_and_whitening():
    # K = 3, process rewards s1 = [0.2, 0.4], s2 = [-0.3, 0, -0.3], s3 = [0.1, 0.1, 0.4]; acc = [1, 0, 1]; coefs 5, 5
    # means m = [0.3, -0.2, 0.2], sum 0.3; code form r' = 1.5 r - 0.15:
    #   s1 [0.15, 0.45], s2 [-0.6, -0.15, -0.6], s3 [0, 0, 0.45]
    # outcome RLOO on the last token: [1 - 1/2, 0 - 1, 1 - 1/2] = [0.5, -1, 0.5]
    # c = 5 r' + 5 out: s1 [0.75, 4.75], s2 [-3, -0.75, -8], s3 [0, 0, 4.75]
    # returns: s1 [5.5, 4.75], s2 [-11.75, -8.75, -8.0], s3 [4.75, 4.75, 4.75]
    # (the paper's form r - mean_{j!=i} m_j gives s3 returns [4.75, 4.5, 4.25]: the test tells them apart)
    tr, mask = _ragged([[0.2, 0.4], [-0.3, 0.0, -0.3], [0.1, 0.1, 0.4]])
    acc = torch.tensor([[1.0, 0.0, 1.0]])
    ret = E.compute("prime_rloo", acc, {"token_mask": mask, "token_rewards": tr}, norm="none", whiten=False)
    want = torch.tensor([[[5.5, 4.75, 0.0], [-11.75, -8.75, -8.0], [4.75, 4.75, 4.75]]])
    assert torch.allclose(ret, want, atol=1e-5)
    # whitening over the 8 tokens: mean -0.5, unbiased var 56.732142857 (std 7.532074)
    adv = E.compute("prime_rloo", acc, {"token_mask": mask, "token_rewards": tr}, norm="none")
    want = torch.tensor([[[0.7966, 0.6970, 0.0], [-1.4936, -1.0953, -0.9957], [0.6970, 0.6970, 0.6970]]])
    assert torch.allclose(adv, want, atol=1e-4)


def test_prime_outcome_only_and_batch_norm():
    # process_coef 0: plain RLOO [0.5, -1, 0.5] times 5 on every token (returns), token-weighted whitening after
    _, mask = _ragged([[0, 0], [0, 0, 0], [0, 0, 0]])
    ret = E.compute("prime_rloo", torch.tensor([[1.0, 0.0, 1.0]]), {"token_mask": mask}, process_coef=0.0, whiten=False)
    assert torch.allclose(ret, torch.tensor([[[2.5, 2.5, 0.0], [-5.0, -5.0, -5.0], [2.5, 2.5, 2.5]]]))
    with pytest.raises(ParamError, match="token_rewards"):
        E.compute("prime_rloo", torch.tensor([[1.0, 0.0, 1.0]]), {"token_mask": mask})
    # batch_norm: beta q = [0.05, 0.15], [-0.1, 0.025, -0.075], [0.025, 0.025, 0.1]; returns-to-go
    # [0.2, 0.15], [-0.15, -0.05, -0.075], [0.15, 0.125, 0.1]; max |.| = 0.2 -> divide by 0.2 + 1e-6
    tr, mask = _ragged([[0.05, 0.15], [-0.1, 0.025, -0.075], [0.025, 0.025, 0.1]])
    want, _ = _ragged([[0.25, 0.75], [-0.5, 0.125, -0.375], [0.125, 0.125, 0.5]])
    assert torch.allclose(prime_batch_norm(tr, mask), want, atol=1e-5)
    with pytest.raises(ParamError, match="group_size >= 2"):
        E.compute("prime_rloo", torch.tensor([[1.0]]), {"token_mask": torch.ones(1, 1, 2)}, process_coef=0.0)


# ----------------------------------------------------------------------------------------- TEMPO


def test_tempo_adds_the_prefix_value_differences_of_the_groups_tree():
    # y1 = [5, 7, 9] r=1, y2 = [5, 7, 8] r=0, y3 = [5, 6, 9] r=1.  GRPO (unbiased std): a = [0.57735, -1.1547, 0.57735]
    # V(root) = V([5]) = 0; V([5,7]) = (0.57735 - 1.1547)/2 = -0.288675; V([5,6]) = 0.57735; leaves = own a
    # y1: deltas [0, -0.288675, 0.866025]; y2: [0, -0.288675, -0.866025]; y3: [0, 0.57735, 0]; A = a + delta
    ids = torch.tensor([[[5, 7, 9], [5, 7, 8], [5, 6, 9]]])
    ctx = {"completion_ids": ids, "token_mask": torch.ones(1, 3, 3)}
    r = torch.tensor([[1.0, 0.0, 1.0]])
    adv = E.compute("tempo", r, ctx)
    want = torch.tensor([[[0.57735, 0.288675, 1.443376], [-1.154700, -1.443376, -2.020726],
                          [0.57735, 1.154701, 0.57735]]])
    assert torch.allclose(adv, want, atol=1e-4)
    grpo = E.compute("grpo", r, {})
    assert torch.allclose(E.compute("tempo", r, ctx, lam=0.0), grpo.unsqueeze(-1).expand(1, 3, 3))
    same = {"completion_ids": torch.tensor([[[5, 7], [5, 7]]]), "token_mask": torch.ones(1, 2, 2)}
    r2 = torch.tensor([[1.0, 0.0]])  # identical completions: one path, every delta 0 but the shared leaf's
    out = E.compute("tempo", r2, same)
    a = E.compute("grpo", r2, {})
    assert torch.allclose(out, a.unsqueeze(-1).expand(1, 2, 2), atol=1e-6)


# ---------------------------------------------------------------------------------------- PURE


def test_min_form_follows_pures_transform_baselines_and_masks():
    # n = 2, T = 0.1.  A: 3 steps of 2 tokens, s = [0.9, -0.8, 0.7], unsolved; B: 2 steps of 2 tokens, s = [0.6, 0.8],
    # solved.  weights A = softmax([-9, 8, -7]) = [4.14e-8, 0.99999965, 3.06e-7] -> r_A = [3.7e-8, -0.7999997, 2.1e-7];
    # B = softmax([-6, -8]) = [0.880797, 0.119203] -> r_B = [0.528478, 0.095362]
    # o_A = -0.7999995, o_B = 0.6238406; token baselines b_A = o_B / 4 = 0.155960, b_B = o_A / 6 = -0.133333
    # minus 2 tokens x baseline: A [-0.311920, -1.111920, -0.311920], B [0.795145, 0.362029]
    # VR: v = [-1, 0] -> RLOO [-1, +1] at EOS.  Token rewards A [0, -.311920, 0, -1.111920, 0, -1.311920],
    # B [0, .795145, 0, 1.362029]; returns, then 0 at the reward positions (step ends and EOS)
    si = torch.tensor([[[0, 0, 1, 1, 2, 2], [0, 0, 1, 1, -1, -1]]])
    ctx = {"step_rewards": torch.tensor([[[0.9, -0.8, 0.7], [0.6, 0.8, 0.0]]]),
           "step_mask": torch.tensor([[[True, True, True], [True, True, False]]]), "step_index": si,
           "token_mask": (si >= 0).float(), "correct": torch.tensor([[False, True]])}
    adv = E.compute("min_form", torch.tensor([[0.0, 1.0]]), ctx)
    want = torch.tensor([[[-2.735760, 0, -2.423840, 0, -1.311920, 0], [2.157174, 0, 1.362029, 0, 0, 0]]])
    assert torch.allclose(adv, want, atol=1e-5)
    # sum-form ablation: r_A = s_A / 3 = [0.3, -0.266667, 0.233333] (read off the token rewards before the baseline)
    from rlbook.mechanisms.estimators.process import pure_step_rewards
    r = pure_step_rewards(ctx["step_rewards"], ctx["step_mask"], 0.1, "mean")
    assert torch.allclose(r[0, 0], torch.tensor([0.3, -0.266667, 0.233333]), atol=1e-5)


# ----------------------------------------------------------------------------------- Clip / Delta


def test_clip_and_delta_bound_the_return_of_repeated_steps():
    p = torch.tensor([[[0.9, 0.8, 0.95, 0.3]]])
    m = torch.ones(1, 1, 4, dtype=torch.bool)
    # clip (eta 0.5): min(p - 0.5, 0) = [0, 0, 0, -0.2]; delta: [0.1, -0.15, 0.65, 0.3] (sums from t on = p_t);
    # clip_delta: [0, 0, 0.2, -0.2]
    assert torch.allclose(clip_delta_transform(p, m, "clip", 0.5), torch.tensor([[[0.0, 0.0, 0.0, -0.2]]]))
    assert torch.allclose(clip_delta_transform(p, m, "delta", 0.5), torch.tensor([[[0.1, -0.15, 0.65, 0.3]]]))
    assert torch.allclose(clip_delta_transform(p, m, "clip_delta", 0.5), torch.tensor([[[0.0, 0.0, 0.2, -0.2]]]))
    # ten identical steps scored 0.9: sum-form 9.0, clip 0, delta 0.9 (and 0.9 with twenty)
    ten = torch.full((1, 1, 10), 0.9)
    tm = torch.ones(1, 1, 10, dtype=torch.bool)
    assert float(clip_delta_transform(ten, tm, "none", 0.5).sum()) == pytest.approx(9.0)
    assert float(clip_delta_transform(ten, tm, "clip", 0.5).sum()) == pytest.approx(0.0)
    assert float(clip_delta_transform(ten, tm, "delta", 0.5).sum()) == pytest.approx(0.9)


def test_clip_delta_estimator_returns_minus_leave_one_out_total():
    # completion 1: 4 steps of one token, p = [0.9, 0.8, 0.95, 0.3], R = 1: clip_delta [0, 0, 0.2, -0.2] + R at the
    # last token -> returns [1, 1, 1, 0.8]; completion 2: 2 steps of 2 tokens, p = [0.2, 0.9], R = 0: clip
    # [-0.3, 0], delta [-0.3, 0] -> token rewards [0, -0.3, 0, 0], returns [-0.3, -0.3, 0, 0]
    # baselines: the other's total return: 1 - (-0.3) ... A1 = ret1 + 0.3, A2 = ret2 - 1
    ctx = {"step_rewards": torch.tensor([[[0.9, 0.8, 0.95, 0.3], [0.2, 0.9, 0.0, 0.0]]]),
           "step_mask": torch.tensor([[[True] * 4, [True, True, False, False]]]),
           "step_index": torch.tensor([[[0, 1, 2, 3], [0, 0, 1, 1]]]), "token_mask": torch.ones(1, 2, 4)}
    r = torch.tensor([[1.0, 0.0]])
    adv = E.compute("clip_delta", r, ctx)
    assert torch.allclose(adv, torch.tensor([[[1.3, 1.3, 1.3, 1.1], [-1.3, -1.3, -1.0, -1.0]]]), atol=1e-6)
    # sum form: token rewards [0.9, 0.8, 0.95, 1.3] -> returns [3.95, 3.05, 2.25, 1.3]; [0, 0.2, 0, 0.9] ->
    # [1.1, 1.1, 0.9, 0.9]; minus the other's total: 1.1 and 3.95
    adv = E.compute("clip_delta", r, ctx, mode="none")
    assert torch.allclose(adv, torch.tensor([[[2.85, 1.95, 1.15, 0.2], [-2.85, -2.85, -3.05, -3.05]]]), atol=1e-5)


# ------------------------------------------------------------------------------------- SPO-chain


def test_spo_chain_rows_by_hand():
    # p = [0.5, 0.95, 0.3, 0.99, 0.6, 0.97], R = 1: cutpoints -1, 1, 3 with V = 0.4, 0.6, 0.2
    # t1: 0.6 - 0.4 = 0.2; t3: 0.2 - 0.6 = -0.4; t5 (last, R): 1 - 0.2 = 0.8; back-filled [.2, .2, -.4, -.4, .8, .8]
    assert spo_chain_row([None, 0.6, None, 0.2, None, None], 0.4, 1.0) == pytest.approx([0.2, 0.2, -0.4, -0.4, 0.8, 0.8])
    # no value at the prompt (token 0 likely): the first segment gets 0
    assert spo_chain_row([0.5, None, 0.25, None], None, 0.0) == pytest.approx([0.0, -0.25, -0.25, -0.25])


def test_spo_chain_estimator_applies_the_probability_mask():
    p = torch.tensor([[[0.5, 0.95, 0.3, 0.99, 0.6, 0.97]]])
    nan = float("nan")
    ctx = {"token_values": torch.tensor([[[nan, 0.6, nan, 0.2, nan, nan]]]), "prompt_values": torch.tensor([[0.4]]),
           "old_logp": p.log(), "token_mask": torch.ones(1, 1, 6)}
    adv = E.compute("spo_chain", torch.tensor([[1.0]]), ctx, whiten=False)
    assert torch.allclose(adv, torch.tensor([[[0.2, 0.0, -0.4, 0.0, 0.8, 0.0]]]), atol=1e-6)
    # whitened over the three kept tokens [0.2, -0.4, 0.8]: mean 0.2, unbiased var 0.36 -> [0, -1, 1]
    adv = E.compute("spo_chain", torch.tensor([[1.0]]), ctx)
    assert torch.allclose(adv, torch.tensor([[[0.0, 0.0, -1.0, 0.0, 1.0, 0.0]]]), atol=1e-4)
    assert torch.allclose(masked_whiten(torch.tensor([1.0, 2.0, 3.0]), torch.ones(3)), torch.tensor([-1.0, 0.0, 1.0]))


# ---------------------------------------------------------------------------- Rewarding Progress


def test_rewarding_progress_with_a_best_of_k_prover():
    # completion 1: 3 one-token steps, Q^pi(prompt, after 1, after 2) = [0.5, 0.6, 0.3], R = 0; completion 2: one
    # step of 3 tokens, Q^pi(prompt) = 0.5, R = 1.  Group mean R = 0.5.  K = 4: Q^mu = 1 - (1 - Q)^4 =
    # [0.9375, 0.9744, 0.7599]; progress 1 = [0.0369, -0.2145, 0 - 0.7599]; A1 = -0.5 + progress;
    # completion 2: 1 - 0.9375 = 0.0625 -> A2 = 0.5 + 0.0625 on its three tokens
    nan = float("nan")
    ctx = {"token_values": torch.tensor([[[0.6, 0.3, nan], [nan, nan, nan]]]), "prompt_values": torch.tensor([[0.5, 0.5]]),
           "step_index": torch.tensor([[[0, 1, 2], [0, 0, 0]]]), "token_mask": torch.ones(1, 2, 3)}
    r = torch.tensor([[0.0, 1.0]])
    adv = E.compute("rewarding_progress", r, ctx)
    assert torch.allclose(adv, torch.tensor([[[-0.4631, -0.7145, -1.2599], [0.5625] * 3]]), atol=1e-4)
    # K = 1 (the prover is the policy): progress [0.1, -0.3, -0.3] -> [-0.4, -0.8, -0.8]
    adv = E.compute("rewarding_progress", r, ctx, prover_k=1)
    assert torch.allclose(adv[0, 0], torch.tensor([-0.4, -0.8, -0.8]), atol=1e-6)
    ctx["prompt_values"] = torch.tensor([[nan, 0.5]])
    with pytest.raises(ParamError, match="step_ends"):
        E.compute("rewarding_progress", r, ctx)


# ------------------------------------------------------------------------------------- SPAE, CAPO


def test_spae_shapes_with_potential_gains_and_saturation():
    # Phi = [-0.12, 0.15, 0.87875, 1.0, 1.0] (from (Acc, Conf) = (.1,.2), (.5,.4), (.95,.95), (1,1), (1,1));
    # dPhi = [0, 0.27, 0.72875, 0.12125, 0]; saturation at step 4 (first Phi > 0.9), so step 5 is after it.
    # rewards [1, 0]: GRPO a = [0.70711, -0.70711].  Correct: [a, a + .27, a + .72875, a + .12125, 0.5 a];
    # wrong (no down-weighting): [-a, -a + .27, ...]
    phi = torch.tensor([-0.12, 0.15, 0.87875, 1.0, 1.0])
    ctx = {"step_values": torch.stack([phi, phi]).unsqueeze(0), "step_mask": torch.ones(1, 2, 5, dtype=torch.bool),
           "step_index": torch.arange(5).expand(1, 2, 5), "token_mask": torch.ones(1, 2, 5)}
    adv = E.compute("spae", torch.tensor([[1.0, 0.0]]), ctx)
    a = 0.70711
    want = torch.tensor([[[a, a + 0.27, a + 0.72875, a + 0.12125, 0.5 * a],
                          [-a, -a + 0.27, -a + 0.72875, -a + 0.12125, -a]]])
    assert torch.allclose(adv, want, atol=1e-4)


def test_capo_subtracts_the_process_penalty_on_flagged_steps():
    # rewards [1, 0] -> a = +-0.70711; completion 1 has steps [ok, wrong, wrong] of 2 tokens each (step_rewards
    # 0, -1, -1), W_process = 0.5: [a, a, a - .5, a - .5, a - .5, a - .5]; completion 2 unflagged: -a everywhere
    ctx = {"step_rewards": torch.tensor([[[0.0, -1.0, -1.0], [0.0, 0.0, 0.0]]]),
           "step_index": torch.tensor([[[0, 0, 1, 1, 2, 2], [0, 0, 1, 1, 2, 2]]]), "token_mask": torch.ones(1, 2, 6)}
    adv = E.compute("capo", torch.tensor([[1.0, 0.0]]), ctx)
    a = 0.70711
    assert torch.allclose(adv, torch.tensor([[[a, a, a - 0.5, a - 0.5, a - 0.5, a - 0.5], [-a] * 6]]), atol=1e-4)
