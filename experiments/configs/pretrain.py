"""Prompt-DT pre-training config (``experiments/pretrain.py``).

Usage: ``--config=experiments/configs/pretrain.py:cheetah_vel,cpu``: a family
and a preset. ``paper`` is Prompt-DT's full budget (for accelerators);
``cpu`` reaches a useful policy in about 20 minutes on 2 CPU cores; ``tiny``
is for tests and smoke runs.
"""

import ml_collections

from pdiff.training import config as training_config

PRESETS = ("paper", "cpu", "tiny")


def get_config(arg: str = "cheetah_vel,cpu") -> ml_collections.ConfigDict:
  family, _, preset = arg.partition(",")
  preset = preset or "cpu"
  if preset not in PRESETS:
    raise ValueError(f"pretrain config: preset must be one of {PRESETS}, got "
                     f"{preset!r} (argument {arg!r}).")
  c = ml_collections.ConfigDict()
  # Task family (pdiff.envs.make name); its train_tasks are used.
  c.family = family
  # Brax backend; None = pdiff.envs.DEFAULT_BACKEND.
  c.backend = ml_collections.config_dict.placeholder(str)
  # Dataset quality the PLM is trained on.
  c.quality = "expert"
  # K: context window of the PLM (steps).
  c.context_len = 20
  # K*: steps per prompt episode.
  c.prompt_len = 5
  # J: episodes per prompt.
  c.prompt_episodes = 1
  # Segments per training task in a batch (Prompt-DT: 16).
  c.batch_per_task = 16
  # Total optimiser steps.
  c.num_steps = 100_000
  # Steps between console/TensorBoard lines.
  c.log_every = 100
  # Steps between checkpoints.
  c.ckpt_every = 5_000
  # Model, optimiser and seed (pdiff.training.config).
  c.train = training_config.get_config()
  # Episodes per task when the launcher evaluates the result (0 = skip).
  c.eval_episodes = 10
  if preset == "cpu":
    c.context_len = 10
    c.batch_per_task = 4
    c.num_steps = 6_000
    c.ckpt_every = 1_000
    c.train.model.hidden_dim = 64
    c.train.model.mlp_dim = 256
    c.train.model.num_layers = 2
    c.train.model.max_ep_len = 200
    c.train.learning_rate = 3e-4
    c.train.warmup_steps = 500
  elif preset == "tiny":
    c.context_len = 4
    c.prompt_len = 3
    c.batch_per_task = 2
    c.num_steps = 20
    c.log_every = 5
    c.ckpt_every = 10
    c.train.model.hidden_dim = 16
    c.train.model.mlp_dim = 32
    c.train.model.num_layers = 1
    c.train.model.max_ep_len = 200
    c.train.warmup_steps = 5
    c.eval_episodes = 2
  return c
