"""Prompt-DT pre-training config (``experiments/pretrain.py``).

Usage: ``--config=experiments/configs/pretrain.py:cheetah_vel,cpu``: a family
and a preset. ``paper`` is Prompt-DT's full budget (for accelerators);
``cpu`` reaches a useful policy in about 20 minutes on 2 CPU cores
(cheetah_vel trains longer: 30,000 steps, about an hour); ``tiny`` is for
tests and smoke runs.
"""

import ml_collections

from experiments.configs import prompt_dt as prompt_dt_configs
from pdiff import envs

PRESETS = ("paper", "cpu", "tiny")


def get_train_config() -> ml_collections.ConfigDict:
  """Prompt-DT's public training recipe (``pdiff.training.train``).

  Returns:
    ConfigDict with the model, the optimizer and the run's seed.
  """
  config = ml_collections.ConfigDict()
  # Architecture (experiments/configs/prompt_dt.py).
  config.model = prompt_dt_configs.get_config()
  config.learning_rate = 1e-4  # AdamW peak learning rate
  config.warmup_steps = 10_000  # linear warm-up steps to learning_rate
  config.weight_decay = 1e-4  # AdamW decoupled weight decay
  config.grad_clip_norm = 0.25  # clip gradients to this global norm
  config.seed = 0  # initialisation, data and dropout keys derive from it
  config.max_to_keep = 3  # checkpoints kept in {workdir}/checkpoints
  return config


# Segments per optimiser step of the cpu preset, over all training tasks.
CPU_BATCH = 128


def cpu_batch_per_task(family: str) -> int:
  """The cpu preset's segments per task: at least 4, and at least
  ``CPU_BATCH`` in all (cheetah-vel's 35 training tasks: 4; cheetah-dir's
  2: 64; ant-dir's 45: 4)."""
  try:
    num_train = len(envs.make(family).train_tasks)
  except ValueError:
    return 4  # an unknown family: the run's validation names it
  return max(4, -(-CPU_BATCH // num_train))


def max_ep_len(family: str) -> int:
  """Timestep embeddings of the presets: 200, or the family's episode length
  where it is longer (500 on metaworld_reach). An unknown family gets 200
  (the run's validation names it)."""
  try:
    return max(200, envs.make(family).episode_length)
  except ValueError:
    return 200


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
  # Draw training trajectories in proportion to their length (Prompt-DT's
  # p_sample); False draws them uniformly. Matters where episodes end early
  # (ant-dir).
  c.weight_by_length = True
  # States pooled into the normalisation statistics: "train_and_test" (the
  # training and the test tasks' datasets, Prompt-DT's --average_state_mean)
  # or "train" (no test-task data before tuning).
  c.state_statistics = "train_and_test"
  # Segments per training task in a batch (Prompt-DT: 16).
  c.batch_per_task = 16
  # Total optimiser steps.
  c.num_steps = 100_000
  # Steps between console/TensorBoard lines.
  c.log_every = 100
  # Steps between checkpoints.
  c.ckpt_every = 5_000
  # Model, optimiser and seed (get_train_config below).
  c.train = get_train_config()
  # Episodes per task when the launcher evaluates the result (0 = skip).
  c.eval_episodes = 10
  if preset == "cpu":
    c.context_len = 10
    c.batch_per_task = cpu_batch_per_task(family)
    c.num_steps = 6_000
    c.ckpt_every = 1_000
    c.train.model.hidden_dim = 64
    c.train.model.mlp_dim = 256
    c.train.model.num_layers = 2
    # Timestep embeddings: at least one per step of the family's episodes.
    c.train.model.max_ep_len = max_ep_len(family)
    c.train.learning_rate = 3e-4
    c.train.warmup_steps = 500
    if family == "cheetah_vel":
      # Longer, keeping every checkpoint: the shipped cheetah_vel_cpu is the
      # one with the highest return on the training tasks over two
      # evaluation seeds (experiments/evaluate.py --curve), step 18,000
      # (pretrain.py --export_step=18000; docs/training.md).
      c.num_steps = 30_000
      c.ckpt_every = 2_000
      c.train.max_to_keep = 20
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
    c.train.model.max_ep_len = max_ep_len(family)
    c.train.warmup_steps = 5
    c.eval_episodes = 2
  return c
