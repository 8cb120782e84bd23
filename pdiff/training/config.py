"""Configuration of Prompt-DT pre-training (multi-task behaviour cloning)."""

from __future__ import annotations

import ml_collections

from pdiff.models import prompt_dt


def get_config() -> ml_collections.ConfigDict:
  """Prompt-DT's public training recipe.

  Returns:
    ConfigDict with the model, the optimizer and the run's seed.
  """
  config = ml_collections.ConfigDict()
  config.model = prompt_dt.get_config()  # architecture, see prompt_dt.get_config
  config.learning_rate = 1e-4  # AdamW peak learning rate
  config.warmup_steps = 10_000  # linear warm-up steps to learning_rate
  config.weight_decay = 1e-4  # AdamW decoupled weight decay
  config.grad_clip_norm = 0.25  # clip gradients to this global norm
  config.seed = 0  # initialisation, data and dropout keys derive from it
  config.max_to_keep = 3  # checkpoints kept in {workdir}/checkpoints
  return config
