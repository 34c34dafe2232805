"""Choosing what to train on: the sampling, filtering, replay, hint and rollout-budget papers.

Each module registers one paper's mechanism in the shared registries (``rlbook.mechanisms.sampling``, ``rlbook.mechanisms.phases``,
``rlbook.mechanisms.estimators``, ``rlbook.mechanisms.rewards``) and names the paper and the code it follows:

* ``knapsack``: Knapsack RL, a rollout budget per prompt (sampler ``knapsack``);
* ``dump``: DUMP, a UCB bandit over the pool's buckets (sampler ``dump``);
* ``spo_sampling``: SPO's prioritised prompt sampling with its value tracker (sampler ``spo_sampling``);
* ``d3s``: Learning More with Less, advantage-variance and |A| x entropy down-sampling (phase ``d3s``);
* ``pf_ppo``: Policy Filtration, reliable-reward samples only, and a simulated noisy reward model (phase
  ``pf_ppo``, reward ``noisy_rm``);
* ``r3``: R^3, replay of past samples into all-equal groups and a ranking reward (phase ``r3_replay``,
  estimator ``r3``);
* ``adhint``: ADHint, difficulty-dependent solution-prefix hints (phases ``adhint``, ``adhint_mask``);
* ``adora``: ADORA, advantage weighting by group utility (estimator ``adora``);
* ``tppo``: Truncated PPO's extended GAE on rollouts cut at the window, with a value head (phase
  ``tppo_critic``, estimator ``tppo_egae``).

The trainer features they need are small and named: uneven groups (``Batch.sample_mask``, the sampler's
``budgets``, ``train.rollouts_per_prompt``), samples dropped after the advantages (``Batch.drop``), a token mask
(``batch.context["loss_token_mask"]``), ``Sampler.observe_batch``, and an equal budget of generated tokens
(``train.gen_token_budget``).
"""

from . import adhint, adora, d3s, dump, knapsack, pf_ppo, r3, spo_sampling, tppo  # noqa: F401  (registration)
