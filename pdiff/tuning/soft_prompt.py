"""``soft_prompt``: continuous prompt tokens learned by gradient, PLM frozen.

Prompt-DT embeds a trajectory prompt ``P`` of ``K*`` steps into
``3 K*`` tokens ``e(P) in R^{3K* x H}``. The soft prompt replaces them by
learned continuous tokens ``e(P) + delta``, initialised at ``delta = 0`` from
the embedded tokens of the task's few-shot prompt ``P`` (drawn as
``prompt_dt`` draws it), and trained on the masked action MSE of few-shot
windows ``tau`` with every PLM weight ``theta`` frozen:

  delta* = argmin_delta  E_tau L(theta, e(P) + delta; tau),

by ``steps`` clipped AdamW steps of :func:`pdiff.tuning.finetune.make_trainer`.
``delta`` is the optional ``soft_prompt`` parameter of
``pdiff.models.PromptDT`` (``[3K*, H]``, added to the embedded prompt), so the
tuned policy is the PLM's own module with params
``{**theta, "soft_prompt": delta*}`` (one copy per task) and prompt ``P``.
At ``delta = 0`` its outputs are exactly the PLM's. Trained scalars per task:
``3 K* H``.
"""

from __future__ import annotations

import jax.numpy as jnp
import ml_collections

from pdiff.models.prompt_dt import SOFT_PROMPT, TOKENS_PER_STEP
from pdiff.tuning import finetune, registry

FIELDS = ("name",) + finetune.TRAINER_FIELDS


def check_config(config: ml_collections.ConfigDict) -> None:
  finetune.check_fields(config, "soft_prompt", FIELDS)
  finetune.check_trainer_config(config, "soft_prompt")


def soft_prompt_shape(plm) -> tuple[int, int]:
  """``(3 K*, H)``: one offset per token of a one-episode prompt."""
  return (TOKENS_PER_STEP * plm.prompt_len, int(plm.model.hidden_dim))


def with_soft_prompt(params, delta):
  """The PLM's ``params`` with the ``soft_prompt`` entry ``delta``."""
  return {**params, SOFT_PROMPT: delta}


def make_tune(context: registry.TuningContext, config) -> registry.TuneFn:
  """``tune(None, few_shot [M, N, T, ...], keys [M])``: ``delta`` trained per
  task; params ``[M, ...]`` (the PLM's leaves broadcast, unchanged)."""
  plm = context.plm
  shape = soft_prompt_shape(plm)
  combine = lambda delta: with_soft_prompt(plm.params, delta)
  train = finetune.make_trainer(plm, config, combine, fixed_prompt=True)
  return finetune.make_task_tuner(
      plm, train, lambda key: jnp.zeros(shape, jnp.float32), combine)


def trainable_parameters(context: registry.TuningContext, config) -> int:
  del config
  rows, hidden = soft_prompt_shape(context.plm)
  return rows * hidden


METHOD = registry.register(registry.Method(
    name="soft_prompt", check_config=check_config, make_tune=make_tune,
    trainable_parameters=trainable_parameters, params_per_task=True))
