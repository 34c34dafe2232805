"""Self-certainty (in the sampler and as a Best-of-N score) and the selectors, against hand-worked numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from rlbook.core.config import TrainConfig
from rlbook.pipelines import bon
from rlbook.policy.generation import left_pad, sample_groups, self_certainty_from_logits
from rlbook.policy.models import tiny_llama
from rlbook.policy.rollout import generate

EOS = 2


def test_self_certainty_is_kl_from_uniform_by_hand():
    # V = 2, p = (0.9, 0.1): KL(U || p) = -ln 2 - (ln 0.9 + ln 0.1) / 2 = -0.693147 + 1.203973 = 0.510826
    # p = (0.5, 0.5): 0.  V = 4, p = (0.7, 0.1, 0.1, 0.1): -ln 4 - (ln 0.7 + 3 ln 0.1) / 4 = 0.429813
    assert float(self_certainty_from_logits(torch.tensor([0.9, 0.1]).log())) == pytest.approx(0.510826, abs=1e-6)
    assert float(self_certainty_from_logits(torch.tensor([0.5, 0.5]).log())) == pytest.approx(0.0, abs=1e-7)
    assert float(self_certainty_from_logits(torch.tensor([0.7, 0.1, 0.1, 0.1]).log())) == pytest.approx(0.429813, abs=1e-6)
    # logits (2, 0, 0, 0): logsumexp = ln(e^2 + 3) = ln 10.389056 = 2.340753, minus mean 0.5, minus ln 4 = 0.454459
    assert float(self_certainty_from_logits(torch.tensor([2.0, 0.0, 0.0, 0.0]))) == pytest.approx(0.454459, abs=1e-6)


def test_sequence_score_is_the_masked_mean():
    # tokens 0.510826 and 0 with a padded third position (any value): mean 0.255413
    s = bon.sequence_score(torch.tensor([[0.510826, 0.0, 99.0]]), torch.tensor([[1, 1, 0]]))
    assert float(s) == pytest.approx(0.255413, abs=1e-6)


def _model():
    return tiny_llama(vocab_size=98, seed=0, init_std=0.2).eval()


def test_sampler_records_the_distribution_that_produced_each_token(tok):
    """Teacher-forced check: the per-token value equals -log V - mean_j log p_j of the distribution predicting that
    token (computed from a fresh forward pass; a one-position shift would fail)."""
    model = _model()
    prompts = [tok(f"<bos>user:{a}+{a}<eos><bos>assistant:", add_special_tokens=False)["input_ids"] for a in range(3)]
    ids, att = left_pad(prompts, EOS, torch.device("cpu"))
    torch.manual_seed(0)
    comp, _, _, cert = sample_groups(model, ids, att, 2, 5, [EOS], EOS, return_logprobs=True,
                                     return_self_certainty=True)
    row = 3  # prompt 1, sample 1
    full = torch.cat([ids[1], comp[row]])[None]
    mask = torch.cat([att[1], torch.ones(comp.shape[1], dtype=torch.long)])[None]
    with torch.no_grad():
        logits = model(input_ids=full, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0)).logits
    lp = torch.log_softmax(logits[0, ids.shape[1] - 1 : -1], -1)  # positions predicting each completion token
    direct = -math.log(lp.shape[-1]) - lp.mean(-1)
    n = int((comp[row] != EOS).sum()) + 1  # through the first EOS
    assert torch.allclose(cert[row, :n], direct[:n], atol=1e-4)


def test_self_certainty_does_not_change_what_is_sampled(tok):
    model = _model()
    ids, att = left_pad([tok("<bos>user:hi<eos><bos>assistant:", add_special_tokens=False)["input_ids"]], EOS,
                        torch.device("cpu"))
    torch.manual_seed(3)
    plain = sample_groups(model, ids, att, 4, 6, [EOS], EOS)
    torch.manual_seed(3)
    comp, cert = sample_groups(model, ids, att, 4, 6, [EOS], EOS, return_self_certainty=True)
    assert torch.equal(plain, comp) and cert.shape == comp.shape and (cert >= 0).all()


def test_rollout_carries_self_certainty_only_when_asked(tok):
    model = _model()
    prompts = [tok("<bos>user:hi<eos><bos>assistant:", add_special_tokens=False)["input_ids"]]
    roll = generate(model, tok, TrainConfig(), prompts, 5, group_size=3)
    assert roll.self_certainty is None
    roll = generate(model, tok, TrainConfig(), prompts, 5, group_size=3, self_certainty=True)
    assert roll.self_certainty is not None and roll.self_certainty.shape == roll.completion_ids.shape
    assert roll.select([0, 2]).self_certainty.shape[0] == 2
    with pytest.raises(ValueError, match="rlbook"):
        generate(model, tok, TrainConfig(generation_backend="hf"), prompts, 5, self_certainty=True)


def test_select_max_drops_unanswered_and_breaks_ties_low():
    # answers (None, B, B), scores (5.0, 0.1, 0.2): index 0 is set to -1e9 -> index 2
    assert bon.select_max([5.0, 0.1, 0.2], [None, "B", "B"]) == 2
    assert bon.select_max([0.3, 0.3], ["A", "B"]) == 0


@pytest.mark.parametrize(("power", "expected"), [(0.0, 0), (0.5, 0), (1.0, 1), (2.0, 1)])
def test_borda_by_hand(power, expected):
    # N = 4, answers (A, B, A, C), self-certainty (0.3, 0.9, 0.1, 0.5): ranks B=1, C=2, A(0)=3, A(2)=4;
    # rank r casts (N - r + 1)^p: p=0 A 2, B 1, C 1 -> A; p=0.5 A = 1.414 + 1 = 2.414, B 2, C 1.732 -> A;
    # p=1 A = 2 + 1 = 3, B 4, C 3 -> B; p=2 A = 4 + 1 = 5, B 16, C 9 -> B.  A's votes go to its first index 0.
    assert bon.borda_select([0.3, 0.9, 0.1, 0.5], ["A", "B", "A", "C"], power) == expected


def test_borda_credits_the_first_response_and_skips_unanswered():
    # (None, B, B), scores (5.0, 0.1, 0.2), p = 0.5: idx0 rank 1 casts nothing, idx2 rank 2 -> 2^0.5, idx1 rank 3 -> 1;
    # B totals 2.414, credited to idx 1 (the first B)
    assert bon.borda_select([5.0, 0.1, 0.2], [None, "B", "B"], 0.5) == 1
    assert bon.majority_select(["B", "A", "A", "B"]) == 0  # 2-2 tie: the answer seen first
    assert bon.majority_select([None, None]) == 0


def _pool():
    # one problem, 4 samples: correct (F, T, T, F), self-certainty (0.1, 0.5, 0.2, 0.9), answers (1, 2, 2, 3)
    return bon.Pool(np.array([[0.1, 0.5, 0.2, 0.9]]), np.array([[-1.0, -0.5, -2.0, -0.1]]),
                    np.array([[False, True, True, False]]), [["1", "2", "2", "3"]], np.array([[3.0, 3, 3, 3]]))


def test_bon_curve_on_the_first_n_samples_by_hand():
    rows = {(r["selector"], r["n"]): r["value"] for r in bon.bon_curve(_pool(), [1, 2, 4], bon.SELECTORS, draws=1)}
    # N=1: only sample 0 (wrong) for every selector
    assert rows[("self-certainty", 1)] == 0.0 and rows[("random", 1)] == 0.0 and rows[("oracle", 1)] == 0.0
    # N=2: self-certainty picks 0.5 -> right; random 0.5; majority: answers (1, 2) tie -> sample 0 -> wrong
    assert rows[("self-certainty", 2)] == 1.0 and rows[("random", 2)] == 0.5 and rows[("majority vote", 2)] == 0.0
    # N=4: self-certainty picks 0.9 (answer 3, wrong); majority "2" (two votes) -> right; neg. perplexity -0.1 -> wrong
    assert rows[("self-certainty", 4)] == 0.0 and rows[("majority vote", 4)] == 1.0
    assert rows[("negative perplexity", 4)] == 0.0 and rows[("oracle", 4)] == 1.0


def test_auroc_by_hand():
    # positives (0.9, 0.3) vs negatives (0.8, 0.1): 0.9 beats both, 0.3 beats 0.1 only -> 3 / 4
    assert bon.auroc(np.array([0.9, 0.8, 0.3, 0.1]), np.array([1, 0, 1, 0])) == 0.75
    assert math.isnan(bon.auroc(np.array([0.1, 0.2]), np.array([1, 1])))


def test_sample_pool_on_the_tiny_model(tok):
    from rlbook.data.tasks import make_task

    task = make_task({"name": "gcd", "config": {"min_value": 1, "max_value": 20}, "train_size": 8, "eval_size": 4})
    model = tiny_llama(vocab_size=98, seed=0, init_std=0.2).eval()
    pool = bon.sample_pool(model, tok, task, task.eval[:3], 4, 6, seed=0)
    assert pool.correct.shape == pool.certainty.shape == (3, 4) and len(pool.answers[0]) == 4
    assert bon.Pool.from_dict(pool.to_dict()).certainty.tolist() == pool.certainty.tolist()
    tabs = bon.tables({0: pool}, [1, 4], [0.5], 2)
    assert {r["method"] for r in tabs["bon"]} >= {"self-certainty@4", "Borda p=0.5@1", "oracle@4"}


def test_a_pool_without_answers_or_with_flat_self_certainty_is_degenerate():
    def pool(answers, certainty):
        c = np.array(certainty, dtype=float)
        return bon.Pool(c, np.zeros_like(c), np.zeros(c.shape, dtype=bool), answers, np.ones_like(c))

    assert bon.degenerate(pool([["1", None], [None, "2"]], [[0.1, 0.2], [0.3, 0.1]])) == []
    reasons = bon.degenerate(pool([[None, None], [None, None]], [[0.5, 0.5], [0.5, 0.5]]))
    assert len(reasons) == 2 and "no response has an extractable answer" in reasons[0]
    assert "self-certainty is the same" in reasons[1]
