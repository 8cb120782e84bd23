"""A task family as one task-conditioned ``brax.envs.Env``, for Brax's trainers.

Behaviour policies are trained with Brax's own agents
(``brax.training.agents.ppo`` / ``sac``) on all tasks of a split at once::

  env = family.as_brax_env(family.train_tasks)
  make_policy, params, _ = ppo.train(environment=env, episode_length=200, ...)

Each ``reset`` draws a task uniformly from the given indices and the
observation is ``[obs, task params]`` (``ds + P``), so the policy knows its
task. There is no time limit here: the trainers add ``EpisodeWrapper`` and
``AutoResetWrapper``. ``AutoResetWrapper`` restores the first state of an
environment slot, so a slot keeps the task drawn at its first reset; with
many parallel slots every task is covered.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from brax.envs.base import Env, State

from pdiff.envs import base


class TaskConditionedEnv(Env):
  """Brax view of a ``TaskFamily`` over a set of tasks.

  ``state.info`` holds ``task_index`` ([] int32) and ``task_params`` ([P]).
  """

  def __init__(
      self,
      family: base.TaskFamily,
      task_indices: tuple[int, ...],
      *,
      append_task: bool = True,
  ):
    """Builds the environment.

    Args:
      family: the task family to step.
      task_indices: tasks to draw from at reset (e.g. ``family.train_tasks``).
      append_task: whether to append the task parameters to observations.

    Raises:
      ValueError: if ``task_indices`` is empty or has an invalid index.
    """
    indices = np.asarray(task_indices)
    if indices.ndim != 1 or indices.size == 0:
      raise ValueError(
          f"{family.name}: task_indices must be a non-empty 1-D sequence, "
          f"got {task_indices!r}."
      )
    family.tasks(indices)  # Checks the range.
    self._family = family
    self._task_indices = tuple(int(i) for i in indices)
    self._append_task = append_task

  @property
  def family(self) -> base.TaskFamily:
    """The wrapped task family."""
    return self._family

  @property
  def task_indices(self) -> tuple[int, ...]:
    """The tasks drawn from at reset."""
    return self._task_indices

  def _observe(self, obs: jax.Array, params: jax.Array) -> jax.Array:
    if self._append_task:
      return jnp.concatenate([obs, params])  # [ds + P]
    return obs  # [ds]

  def reset(self, rng: jax.Array) -> State:
    task_key, reset_key = jax.random.split(rng)
    choice = jax.random.randint(task_key, (), 0, len(self._task_indices))
    index = jnp.asarray(self._task_indices, jnp.int32)[choice]
    params = self._family.task_params[index]  # [P]
    pipeline_state, obs = self._family.reset_physics(reset_key)
    zero = jnp.zeros((), jnp.float32)
    return State(
        pipeline_state=pipeline_state,
        obs=self._observe(obs, params),
        reward=zero,
        done=zero,
        metrics={name: zero for name in self._family.metric_names},
        info={"task_index": index, "task_params": params},
    )

  def step(self, state: State, action: jax.Array) -> State:
    action = self._family.check_action(action)  # [da]
    params = state.info["task_params"]  # [P]
    obs = state.obs[: self._family.observation_size]  # [ds]
    pipeline_state, obs, reward, terminated, metrics = self._family.transition(
        state.pipeline_state, obs, action, params
    )
    return state.replace(
        pipeline_state=pipeline_state,
        obs=self._observe(obs, params),
        reward=jnp.asarray(reward, jnp.float32),
        done=jnp.asarray(terminated, jnp.float32),
        # Wrappers add their own metrics (e.g. EpisodeWrapper's "reward").
        metrics={**state.metrics, **metrics},
    )

  @property
  def observation_size(self) -> int:
    num_params = self._family.task_params.shape[-1] if self._append_task else 0
    return self._family.observation_size + num_params

  @property
  def action_size(self) -> int:
    return self._family.action_size

  @property
  def backend(self) -> str:
    return self._family.backend
