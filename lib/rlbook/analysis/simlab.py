"""The estimator lab: a synthetic Bernoulli bandit in which the exact policy gradient is known.

Prompt i succeeds with probability p_i = sigmoid(theta_i); a "completion" is one Bernoulli draw y with
reward r = y.  For a Bernoulli policy d log pi(y) / d theta_i = y - p_i, and the exact gradient of prompt
i's expected reward is dE[r]/dtheta_i = p_i (1 - p_i).  A batch is G draws for every prompt; an estimator
from :mod:`rlbook.mechanisms.estimators` turns the batch's rewards ``[N, G]`` into advantages, and the batch's
gradient estimate is

    g_hat_i = (1/G) * sum_j A_ij * (y_ij - p_ij)

(the group mean, matching the per-group averaging of the GRPO loss; REINFORCE and RLOO are then unbiased
for p_i (1 - p_i)).

Optional *strata* (Stratified GRPO's structural heterogeneity): with ``stratum_shift = d > 0`` each
completion also draws a stratum s in {0, 1} (probability 1/2, not controlled by theta) that shifts its
success logit by +d (s = 0) or -d (s = 1), e.g. "answered directly" vs "took a detour".  Then
p_ij = sigmoid(theta_i + shift(s_ij)), the score is still y - p_ij, and the exact gradient is
mean_s p_is (1 - p_is).  The stratum is visible to estimators as a zero-weight second reward part (the
key the ``stratified`` estimator reads with ``key="part"``) and through the lengths (stratum 0 short,
stratum 1 long).

Context the bandit lacks gets synthetic values (:func:`make_context`): lengths uniform in [8, 64] tokens
independent of the outcome (or by stratum), ``seq_log_ratio`` = log pi_theta(y) - log pi_theta0(y) with the
initial theta as the reference (0 in the Monte-Carlo part), ``max_new_tokens = 64``.

Here: the bandit, Monte-Carlo statistics (:func:`mc_estimates`, :func:`gradient_stats`, :func:`lab_table`) and
training (:func:`train`, :func:`train_curves`).  The lab's claims, with seeds as independent simulation runs and
:mod:`rlbook.analysis.stats` verdicts, and the categorical bandit of NGRPO's claim are in :mod:`rlbook.analysis.simclaims`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import stats as scipy_stats
from torch import Tensor

from rlbook.core.config import ParamError
from rlbook.mechanisms import estimators

MAX_NEW_TOKENS = 64
ZERO = 1e-7  # |A| below this counts as no signal
DEFAULT_SETS: dict[str, tuple[float, float]] = {
    "easy": (0.6, 0.95),
    "hard": (0.02, 0.3),
    "mixed": (0.02, 0.98),
}


# ---------------------------------------------------------------------------------------------------------
# the bandit
# ---------------------------------------------------------------------------------------------------------


def prompt_set(p_range: Sequence[float], n_prompts: int) -> Tensor:
    """theta for ``n_prompts`` prompts whose success probabilities are evenly spread over ``p_range``."""
    lo, hi = float(p_range[0]), float(p_range[1])
    if not 0.0 < lo <= hi < 1.0:
        raise ParamError(f"prompt set range {p_range!r} must satisfy 0 < lo <= hi < 1")
    p = torch.linspace(lo, hi, n_prompts, dtype=torch.float64)
    return torch.logit(p)


@dataclass
class Batch:
    """G draws for every prompt: rewards, per-draw success probability, strata and lengths ([N, G])."""

    rewards: Tensor
    probs: Tensor
    strata: Tensor
    lengths: Tensor
    ref_probs: Tensor  # success probability of the same draw under the reference (initial) theta
    _contexts: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict, repr=False)

    def context(self, step: int = 0, total_steps: int = 1) -> dict[str, Any]:
        """:func:`make_context` of this batch, cached (every estimator of a Monte-Carlo cell shares it)."""
        key = (step, total_steps)
        if key not in self._contexts:
            self._contexts[key] = make_context(self, step, total_steps)
        return self._contexts[key]

    @property
    def score(self) -> Tensor:
        """d log pi(y) / d theta = y - p for each draw."""
        return self.rewards - self.probs


@dataclass
class Bandit:
    """N independent Bernoulli prompts with logits ``theta`` (float64) and optional strata."""

    theta: Tensor
    stratum_shift: float = 0.0
    theta_ref: Tensor | None = None

    def __post_init__(self) -> None:
        self.theta = self.theta.to(torch.float64).clone()
        if self.theta_ref is None:
            self.theta_ref = self.theta.clone()

    @property
    def n(self) -> int:
        return self.theta.numel()

    def _shifts(self) -> Tensor:
        return torch.tensor([self.stratum_shift, -self.stratum_shift], dtype=torch.float64)

    def probs(self) -> Tensor:
        """Per-prompt success probability averaged over strata, [N]."""
        if self.stratum_shift == 0.0:
            return torch.sigmoid(self.theta)
        return torch.sigmoid(self.theta.unsqueeze(-1) + self._shifts()).mean(-1)

    def expected_reward(self) -> float:
        """J(theta) = mean over prompts of the expected reward (exact)."""
        return float(self.probs().mean())

    def true_gradient(self) -> Tensor:
        """dE[r_i]/dtheta_i = mean_s p_is (1 - p_is), [N] (the gradient of J is this divided by N)."""
        p = (
            torch.sigmoid(self.theta.unsqueeze(-1) + self._shifts())
            if self.stratum_shift
            else torch.sigmoid(self.theta).unsqueeze(-1)
        )
        return (p * (1 - p)).mean(-1)

    def sample(self, group_size: int, gen: torch.Generator) -> Batch:
        n, g = self.n, group_size
        if self.stratum_shift:
            strata = (torch.rand(n, g, generator=gen, dtype=torch.float64) < 0.5).long()
            shift = self._shifts()[strata]
            lo = torch.where(strata == 0, 8, 40)
            lengths = lo + torch.randint(0, 25, (n, g), generator=gen)
        else:
            strata = torch.zeros(n, g, dtype=torch.long)
            shift = torch.zeros(n, g, dtype=torch.float64)
            lengths = torch.randint(8, MAX_NEW_TOKENS + 1, (n, g), generator=gen)
        probs = torch.sigmoid(self.theta.unsqueeze(-1) + shift)
        ref_probs = torch.sigmoid(self.theta_ref.unsqueeze(-1) + shift)  # type: ignore[union-attr]
        rewards = (torch.rand(n, g, generator=gen, dtype=torch.float64) < probs).to(torch.float64)
        return Batch(rewards, probs, strata, lengths.to(torch.float64), ref_probs)


def make_context(batch: Batch, step: int = 0, total_steps: int = 1) -> dict[str, Any]:
    """The context the trainer would give estimators, built from a bandit batch (see the module doc)."""
    r = batch.rewards.float()
    y = batch.rewards
    logp = torch.where(y > 0, batch.probs.log(), torch.log1p(-batch.probs))
    logp_ref = torch.where(y > 0, batch.ref_probs.log(), torch.log1p(-batch.ref_probs))
    if batch.strata.any():
        parts = torch.stack([r, batch.strata.float()], dim=-1)
        weights = torch.tensor([1.0, 0.0])
    else:
        parts, weights = r.unsqueeze(-1), torch.tensor([1.0])
    return {
        "lengths": batch.lengths.float(),
        "reward_parts": parts,
        "part_weights": weights,
        "correct": batch.rewards >= 1.0,
        "answer_ids": batch.rewards.long(),  # one arm: the right answer and one wrong answer
        "prompt_ids": torch.arange(r.shape[0]),
        "seq_log_ratio": (logp - logp_ref).float(),
        # the sequence log-ratio spread evenly over the completion's synthetic tokens
        "token_log_ratio": token_spread((logp - logp_ref).float(), batch.lengths.float()),
        "spo_drift": torch.zeros(r.shape[0]),  # the bandit keeps no earlier responses: no measured drift
        "max_new_tokens": MAX_NEW_TOKENS,
        "step": step,
        "total_steps": total_steps,
        "finished": batch.lengths < MAX_NEW_TOKENS,  # a synthetic completion at the limit counts as cut
        "sample_mask": torch.ones_like(batch.rewards, dtype=torch.bool),  # every slot filled, none replayed
        "replayed": torch.zeros_like(batch.rewards, dtype=torch.bool),
    }


def token_spread(seq: Tensor, lengths: Tensor, width: int = MAX_NEW_TOKENS) -> Tensor:
    """[N, G, width]: each sequence value divided evenly over its ``lengths`` tokens, 0 beyond."""
    mask = torch.arange(width) < lengths.unsqueeze(-1)
    return (seq / lengths.clamp(min=1.0)).unsqueeze(-1) * mask


def advantages(
    name: str, batch: Batch, state: Any = None, step: int = 0, total_steps: int = 1, **hyper: Any
) -> Tensor:
    """Estimator ``name``'s advantages for ``batch``, [N, G] float64 (token-level outputs are averaged)."""
    ctx = batch.context(step, total_steps)
    if state is not None:
        ctx = {**ctx, "state": state}
    adv = estimators.compute(name, batch.rewards.float(), context=ctx, **hyper)
    if adv.dim() == 3:
        adv = adv.mean(-1)
    return adv.to(torch.float64)


def gradient_estimate(adv: Tensor, batch: Batch) -> Tensor:
    """g_hat_i = (1/G) sum_j A_ij (y_ij - p_ij), [N]."""
    return (adv * batch.score).mean(-1)


# ---------------------------------------------------------------------------------------------------------
# Monte-Carlo statistics
# ---------------------------------------------------------------------------------------------------------


@dataclass
class MCResult:
    """Per-batch quantities of one estimator on one (prompt set, G) cell; arrays have one row per batch."""

    name: str
    estimates: np.ndarray  # [M, N] gradient estimates
    zero_share: np.ndarray  # [M] share of groups with no signal (all |A| < ZERO)
    all_wrong_signal: (
        np.ndarray
    )  # [M] share of all-wrong groups whose estimate points the right way (NaN: none)
    stratum_bias: np.ndarray  # [M] mean over strata of |mean advantage in the stratum| (0 without strata)
    extra: dict[str, Any] = field(default_factory=dict)


def sample_batches(bandit: Bandit, group_size: int, n_batches: int, seed: int) -> list[Batch]:
    """``n_batches`` independent batches (shared by every estimator: common random numbers)."""
    gen = torch.Generator().manual_seed(seed)
    return [bandit.sample(group_size, gen) for _ in range(n_batches)]


def mc_estimates(name: str, batches: Sequence[Batch], **hyper: Any) -> MCResult:
    """Run estimator ``name`` on every batch and collect its gradient estimates and signal statistics."""
    state = estimators.make_state(name)
    est, zero, wrong, sbias = [], [], [], []
    for b in batches:
        adv = advantages(name, b, state=state, **hyper)
        g = gradient_estimate(adv, b)
        est.append(g.numpy())
        zero.append(float((adv.abs() < ZERO).all(-1).double().mean()))
        all_wrong = (b.rewards == 0).all(-1)
        wrong.append(float((g[all_wrong] > ZERO).double().mean()) if all_wrong.any() else math.nan)
        if b.strata.any():
            means = [adv[b.strata == s].mean().abs() for s in (0, 1) if (b.strata == s).any()]
            sbias.append(float(torch.stack(means).mean()))
        else:
            sbias.append(0.0)
    return MCResult(name, np.stack(est), np.asarray(zero), np.asarray(wrong), np.asarray(sbias))


def gradient_stats(res: MCResult, true_grad: Tensor) -> dict[str, float]:
    """Bias, variance and direction of an estimator's gradient estimates against the exact gradient.

    * ``rel_bias`` = ||mean g_hat - g|| / ||g|| (scale-sensitive: GRPO-style scaling shows up here);
    * ``scale`` = <mean g_hat, g> / ||g||^2 (how much larger the estimator's expected step is);
    * ``variance`` = total variance sum_i Var(g_hat_i);
    * ``rel_variance`` = variance / ||mean g_hat||^2 (scale-free: the noise-to-signal ratio);
    * ``cos_mean`` = cos(mean g_hat, g) (direction bias); ``cos_batch`` = mean over batches of cos(g_hat, g);
    * ``zero_share``: share of groups with no signal; ``all_wrong_signal``: share of all-wrong groups whose
      estimate points the right way.
    """
    g = true_grad.numpy()
    e = res.estimates
    mean = e.mean(0)
    gn = float(np.linalg.norm(g))
    var = float(e.var(0, ddof=1).sum()) if len(e) > 1 else 0.0
    mn2 = float(mean @ mean)
    norms = np.linalg.norm(e, axis=1)
    cos_b = np.where(norms > 0, e @ g / np.maximum(norms, 1e-300) / gn, 0.0)
    return {
        "rel_bias": float(np.linalg.norm(mean - g) / gn),
        "scale": float(mean @ g / gn**2),
        "variance": var,
        "rel_variance": var / mn2 if mn2 > 0 else math.inf,
        "cos_mean": float(mean @ g / max(np.sqrt(mn2) * gn, 1e-300)),
        "cos_batch": float(cos_b.mean()),
        "zero_share": float(res.zero_share.mean()),
        "all_wrong_signal": float(np.nanmean(res.all_wrong_signal))
        if np.isfinite(res.all_wrong_signal).any()
        else math.nan,
    }


def per_batch_rel_variance(res: MCResult) -> np.ndarray:
    """||g_hat_m - mean g_hat||^2 / ||mean g_hat||^2 per batch (its mean is ``rel_variance`` up to M/(M-1))."""
    mean = res.estimates.mean(0)
    return ((res.estimates - mean) ** 2).sum(1) / max(float(mean @ mean), 1e-300)


def per_batch_cos(res: MCResult, true_grad: Tensor) -> np.ndarray:
    g = true_grad.numpy()
    norms = np.linalg.norm(res.estimates, axis=1)
    return np.where(norms > 0, res.estimates @ g / np.maximum(norms, 1e-300) / np.linalg.norm(g), 0.0)


def estimator_names(names: Iterable[str] | None = None) -> list[str]:
    """``names`` checked against the registry, or every registered estimator when empty/None.  Token-level
    estimators (credit assignment inside a completion: ``estimators.token_level``) need completions' tokens, which
    a bandit draw does not have: they are not among the defaults, and naming one is an error."""
    avail = [n for n in estimators.available() if not estimators.token_level(n)]
    names = list(names or [])
    for n in names:
        if n not in avail:
            why = " (token-level: it needs completions' tokens, not a bandit draw)" if n in estimators.available() else ""
            raise ParamError(f"estimator {n!r} is unknown on the bandit{why}; available: {', '.join(avail)}")
    return names or avail


def lab_table(
    names: Sequence[str],
    prompt_sets: dict[str, Sequence[float]],
    group_sizes: Sequence[int],
    n_prompts: int,
    n_batches: int,
    seed: int = 0,
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Monte-Carlo statistics of every estimator for every (prompt set, G): one row each.

    Returns the table and ``skipped`` (estimator -> reason) for estimators that cannot run on the bandit.
    """
    torch.set_num_threads(1)
    rows: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    for si, (set_name, rng) in enumerate(prompt_sets.items()):
        bandit = Bandit(prompt_set(rng, n_prompts))
        g_true = bandit.true_gradient()
        for gi, gsize in enumerate(group_sizes):
            batches = sample_batches(bandit, gsize, n_batches, seed + 1000 * si + gi)
            for name in names:
                if name in skipped:
                    continue
                t0 = time.perf_counter()
                try:
                    res = mc_estimates(name, batches)
                except (ParamError, ValueError, RuntimeError) as e:
                    skipped[name] = f"{type(e).__name__}: {e}"
                    continue
                rows.append(
                    {
                        "estimator": name,
                        "prompt_set": set_name,
                        "G": gsize,
                        **gradient_stats(res, g_true),
                        "seconds": time.perf_counter() - t0,
                    }
                )
    return pd.DataFrame(rows), skipped


def grpo_expected_update(p: np.ndarray, group_size: int, eps: float = 1e-6) -> np.ndarray:
    """GRPO's expected per-prompt update E[g_hat_i] on the Bernoulli bandit, exactly (no strata).

    With k successes in G draws the group mean is k/G and the unbiased std s_k = sqrt(k (G - k) / (G (G - 1))), so
    g_hat = (1/G) [k (1 - k/G)(1 - p) + (G - k)(k/G) p] / (s_k + eps) = k (G - k) / (G^2 (s_k + eps)) whatever p;
    E[g_hat] = sum_k C(G, k) p^k (1 - p)^(G - k) k (G - k) / (G^2 (s_k + eps)) (k = 0, G give 0).  ``eps``: the
    ``grpo`` estimator's (1e-6).  Example G = 2: E = 2 p (1 - p) / (4 sqrt(1/2)) = 0.70711 p (1 - p)."""
    G = int(group_size)
    if G < 2:
        raise ParamError(f"group_size={group_size!r} must be >= 2 (a group of one has no GRPO baseline)")
    p = np.asarray(p, dtype=np.float64)
    out = np.zeros_like(p)
    for k in range(1, G):
        s = math.sqrt(k * (G - k) / (G * (G - 1)))
        out += math.comb(G, k) * p**k * (1 - p) ** (G - k) * k * (G - k) / (G * G * (s + eps))
    return out


def update_profile(name: str, bandit: Bandit, group_size: int, n_batches: int, seed: int = 0) -> pd.DataFrame:
    """Expected per-prompt update E[g_hat_i] (Monte-Carlo) next to the exact gradient, by p_i."""
    res = mc_estimates(name, sample_batches(bandit, group_size, n_batches, seed))
    return pd.DataFrame(
        {
            "p": bandit.probs().numpy(),
            "expected_update": res.estimates.mean(0),
            "true_gradient": bandit.true_gradient().numpy(),
            "estimator": name,
        }
    )


# ---------------------------------------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------------------------------------


def train(
    name: str,
    theta0: Tensor,
    group_size: int,
    steps: int,
    lr: float,
    seed: int = 0,
    stratum_shift: float = 0.0,
    max_step: float = 10.0,
    **hyper: Any,
) -> np.ndarray:
    """SGD ascent theta <- theta + lr * g_hat with estimator ``name``; expected reward after each step.

    Returns ``steps + 1`` values (index 0 = before training).  Every step draws G completions for every
    prompt (N·G samples).  ``max_step`` bounds |lr·g_hat_i| per step so that an estimator with huge
    advantages (e.g. BNPO's 1/pdf weights) cannot blow theta up in one step; how often it binds is not
    recorded.
    """
    torch.set_num_threads(1)
    bandit = Bandit(theta0, stratum_shift=stratum_shift)
    gen = torch.Generator().manual_seed(seed)
    state = estimators.make_state(name)
    out = [bandit.expected_reward()]
    for t in range(steps):
        b = bandit.sample(group_size, gen)
        adv = advantages(name, b, state=state, step=t, total_steps=steps, **hyper)
        upd = (lr * gradient_estimate(adv, b)).clamp(-max_step, max_step)
        bandit.theta = bandit.theta + upd
        out.append(bandit.expected_reward())
    return np.asarray(out)


def train_curves(
    names: Sequence[str],
    theta0: Tensor,
    group_size: int,
    steps: int,
    lr: float,
    seeds: Sequence[int],
) -> dict[str, np.ndarray]:
    """Expected-reward curves ``[n_seeds, steps + 1]`` per estimator (seed k uses the same draws stream)."""
    return {n: np.stack([train(n, theta0, group_size, steps, lr, seed=s) for s in seeds]) for n in names}


def curve_band(curves: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean across seeds (independent training runs) and its t-interval at ``level``, per step (no band
    with one seed)."""
    mean = curves.mean(0)
    n = curves.shape[0]
    if n < 2:
        return mean, mean.copy(), mean.copy()
    half = scipy_stats.t.ppf(0.5 + level / 2, n - 1) * curves.std(0, ddof=1) / np.sqrt(n)
    return mean, mean - half, mean + half
