"""``prompt_dt``: Prompt-DT's plain few-shot prompt, no tuning.

For each test task the prompt is the last ``K*`` steps of one of its
few-shot trajectories, drawn at random, as the public Prompt-DT builds its
evaluation prompt; the PLM is used as it is. It is the baseline every other
method is compared with, and trains nothing.
"""

from __future__ import annotations

import jax
import ml_collections

from pdiff.models.policy import TunedPolicy
from pdiff.tuning import registry


def check_config(config: ml_collections.ConfigDict) -> None:
  if set(config.keys()) - {"name"}:
    raise ValueError(f"prompt_dt config: unknown fields "
                     f"{sorted(set(config.keys()) - {'name'})}.")


def make_tune(context: registry.TuningContext, config) -> registry.TuneFn:
  """``tune(None, few_shot [M, N, T, ...], keys [M])``: one prompt per task."""
  del config
  plm = context.plm

  @jax.jit
  def prompts(few_shot, keys):
    return jax.vmap(lambda f, k: plm.few_shot_prompt(k, f).prompt)(few_shot,
                                                                   keys)

  def tune(prepared, few_shot, keys):
    del prepared
    return TunedPolicy(params=plm.params, prompt=prompts(few_shot, keys)), {}

  return tune


METHOD = registry.register(registry.Method(
    name="prompt_dt", check_config=check_config, make_tune=make_tune,
    trainable_parameters=lambda context, config: 0))
