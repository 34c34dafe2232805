"""Efficient reasoning: the length-reward family (rewards, token-level estimators, phases, a filter).

Registered names (see each docstring for its paper, the public code followed and every difference):

* rewards (:mod:`rlbook.mechanisms.length.rewards`): ``dler``, ``dler_da``, ``hapo`` (stateful), ``kimi_length``,
  ``grpo_lambda``, ``conciseness_rm``, ``budget_curriculum``, ``dot``, ``arlcp``, ``redundancy``, ``cosine``,
  ``length_cap``;
* estimators (:mod:`rlbook.mechanisms.length.estimators`): ``decs``, ``brpo``, ``vsrm`` (token-level ``[P, G, T]``);
* phases (:mod:`rlbook.mechanisms.length.phases`, :mod:`rlbook.mechanisms.length.decs`): ``length_schedule`` (a scheduled
  generation limit), ``budget_answers``, ``step_answers``, ``answer_marks``;
* filter: ``decs_curriculum`` (stateful).

Presets combining them per paper: :data:`rlbook.mechanisms.presets.PRESETS`.  ``drpo`` (a loss) lives in
:mod:`rlbook.mechanisms.losses`.
"""

from rlbook.mechanisms.length import decs, estimators, phases, rewards, text  # noqa: F401  (registration side effects)
