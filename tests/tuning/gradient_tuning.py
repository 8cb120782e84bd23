"""Shared set-up of the gradient-tuning tests (fine-tuning, soft prompt,
adapters): a prompt-sensitive tiny PLM and data it mispredicts.

An untrained Prompt-DT attends nearly uniformly and its attention values are
small, so a prompt moves its actions by about 1e-3 and a soft prompt cannot
lower its loss measurably. Scaling the attention kernels makes the prompt
matter, as it does in a trained PLM. The few-shot actions are set to a
constant the PLM does not predict, so every method has a loss to lower.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from experiments.configs import tuning as tuning_configs
from pdiff.tuning import registry
from tests.tuning import tiny_plm

ATTENTION_SCALE = 30.0  # multiplies every attention kernel of the tiny PLM
ACTION = 0.6  # every real step's action in the test data
NUM_TASKS = 2
NUM_SHOTS = 2  # few-shot trajectories per task (of tiny_plm's 4)


@functools.cache
def plm():
  """The tiny PLM with its attention kernels scaled by ``ATTENTION_SCALE``."""
  base = tiny_plm.tiny_plm()

  def scale(path, x):
    keys = [getattr(p, "key", None) for p in path]
    return x * ATTENTION_SCALE if ("attention" in keys
                                   and keys[-1] == "kernel") else x

  return base.replace(params=jax.tree_util.tree_map_with_path(
      scale, base.params))


@functools.cache
def full_data():
  """Every trajectory of the first test tasks ``[M, 4, T, ...]`` (jnp),
  actions ``ACTION`` on real steps, and the tasks."""
  data, tasks = tiny_plm.stacked_test_trajectories(NUM_TASKS)
  steps = np.arange(data.rewards.shape[-1])
  valid = steps < np.asarray(data.lengths)[..., None]  # [M, N, T]
  actions = np.where(valid[..., None], ACTION, 0.0).astype(np.float32)
  actions = np.broadcast_to(actions, data.actions.shape)
  return jax.tree.map(jnp.asarray, data._replace(actions=actions)), tasks


def few_shot_data():
  """The first ``NUM_SHOTS`` trajectories of each task of :func:`full_data`."""
  data, tasks = full_data()
  return jax.tree.map(lambda x: x[:, :NUM_SHOTS], data), tasks


def context(policy=None) -> registry.TuningContext:
  _, tasks = full_data()
  return registry.TuningContext(plm=policy or plm(), family=tiny_plm.family(),
                                train_trajs=None, test_tasks=tasks)


def tiny_config(name: str, **overrides):
  """The method's default config with a test budget."""
  c = tuning_configs.get_config(name)
  c.steps = 20
  c.batch_size = 32
  c.update(overrides)
  return c


def keys():
  return jax.random.split(jax.random.key(0), NUM_TASKS)


def first_and_last(losses, n: int = 3):
  """Mean of the first and of the last ``n`` steps, per task ``[M]``."""
  losses = np.asarray(losses)
  return losses[:, :n].mean(axis=1), losses[:, -n:].mean(axis=1)


def task(tree, i: int):
  return jax.tree.map(lambda x: x[i], tree)
