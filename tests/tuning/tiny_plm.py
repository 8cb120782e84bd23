"""A tiny untrained Prompt-DT on point_robot, and point_robot trajectories.

Shared by the evaluation and tuning tests. The helpers are cached, so every
test module in one pytest process gets the same objects and reuses what jit
compiled for them.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from experiments.configs import pretrain as pretrain_configs
from pdiff import envs
from pdiff.data import collect, loading, samplers
from pdiff.data.normalization import state_statistics
from pdiff.models.policy import PretrainedPolicy
from pdiff.models.prompt_dt import make_prompt_dt
from pdiff.types import Segments

NUM_TRAJECTORIES = 4  # trajectories per task of the cached datasets


def family():
  """The point_robot family (20-step episodes, 2-D states and actions)."""
  return envs.make("point_robot")


@functools.cache
def trajectories() -> dict[int, object]:
  """Uniform-random trajectories of every point_robot task,
  ``{task: Trajectories [N, T, ...]}`` (NumPy), collected in one call."""
  fam = family()
  return collect.collect_tasks(fam, None, range(fam.num_tasks),
                               NUM_TRAJECTORIES, jax.random.key(0),
                               tasks_per_chunk=fam.num_tasks)


@functools.cache
def tiny_plm(seed: int = 0) -> PretrainedPolicy:
  """An untrained Prompt-DT of the ``tiny`` pre-training preset.

  State statistics come from the training tasks' random trajectories, as
  pre-training would compute them.
  """
  fam = family()
  config = pretrain_configs.get_config("point_robot,tiny")
  model = make_prompt_dt(config.train.model, state_dim=fam.observation_size,
                         act_dim=fam.action_size)
  train = trajectories()
  mean, std = jax.jit(state_statistics)(
      loading.pooled([train[i] for i in fam.train_tasks]))
  plm = PretrainedPolicy(
      model=model, params=None, state_mean=jnp.asarray(mean, jnp.float32),
      state_std=jnp.asarray(std, jnp.float32),
      return_scale=float(fam.return_scale),
      max_ep_len=int(config.train.model.max_ep_len),
      context_len=int(config.context_len), prompt_len=int(config.prompt_len))
  # Only shapes matter for the initialisation: zero windows do.
  segments = _zero_segments(2, plm.context_len, fam)
  prompt = _zero_segments(2, plm.prompt_len, fam)
  params = jax.jit(model.init)(jax.random.key(seed), segments, prompt)
  return plm.replace(params=params["params"])


def _zero_segments(batch: int, steps: int, fam) -> Segments:
  return Segments(
      states=jnp.zeros((batch, steps, fam.observation_size)),
      actions=jnp.zeros((batch, steps, fam.action_size)),
      rewards=jnp.zeros((batch, steps)),
      returns_to_go=jnp.zeros((batch, steps)),
      timesteps=jnp.zeros((batch, steps), jnp.int32),
      mask=jnp.ones((batch, steps)))


def pooled_train_trajectories():
  """All training tasks' trajectories in one stack ``[M * N, T, ...]``."""
  fam = family()
  train = trajectories()
  return jax.tree.map(np.asarray,
                      loading.pooled([train[i] for i in fam.train_tasks]))


def stacked_test_trajectories(num_tasks: int = 2):
  """The first test tasks' trajectories ``[M, N, T, ...]`` and their indices."""
  fam = family()
  tasks = tuple(fam.test_tasks[:num_tasks])
  data = trajectories()
  return samplers.stack_tasks([data[i] for i in tasks]), tasks
