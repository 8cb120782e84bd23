"""The shared interface of prompt-tuning methods.

A method takes the frozen pre-trained policy, a test task's few-shot
trajectories, its config and a key, and returns what evaluation needs:

  method(plm: PretrainedPolicy, few_shot: Trajectories, config, key)
      -> TunedPolicy(params, prompt)

``params`` are the policy parameters to roll out with (the PLM's own for pure
prompt methods; tuned copies for fine-tuning baselines) and ``prompt`` a
:class:`Segments` of one task, ``[Kp, ...]`` without batch axis. Stacking the
results of several tasks along a new leading axis (:func:`stack_tuned`) gives
exactly the input of :func:`pdiff.evaluation.make_prompted_rollout`. The
policy containers live in :mod:`pdiff.models.policy` and are re-exported here.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import ml_collections

from pdiff.models.policy import (
    PretrainedPolicy,
    TunedPolicy,
    masked_action_mse,
    stack_tuned,
)
from pdiff.types import Trajectories

__all__ = [
    "PretrainedPolicy",
    "TunedPolicy",
    "TuningMethod",
    "few_shot_prompt",
    "masked_action_mse",
    "stack_tuned",
]

TuningMethod = Callable[
    [PretrainedPolicy, Trajectories, ml_collections.ConfigDict, jax.Array],
    TunedPolicy]


def few_shot_prompt(plm: PretrainedPolicy, few_shot: Trajectories,
                    config: ml_collections.ConfigDict, key: jax.Array
                    ) -> TunedPolicy:
  """Prompt-DT's plain few-shot prompt: no tuning.

  The prompt is the last ``K*`` steps (before the final step) of a few-shot
  trajectory drawn at random, as Prompt-DT builds its evaluation prompts
  (:meth:`PretrainedPolicy.few_shot_prompt`).

  Args:
    plm: the pre-trained policy.
    few_shot: the task's few-shot trajectories ``[N, T, ...]``.
    config: unused (the interface's method config).
    key: picks the trajectory.

  Returns:
    The PLM's parameters and a prompt ``[K*, ...]``.
  """
  del config
  return plm.few_shot_prompt(key, few_shot)
