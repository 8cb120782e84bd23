"""Batched episode rollouts: one ``lax.scan`` over a ``vmap`` of ``step``.

``rollout`` plays one episode per entry of a batch of tasks, all in one
compiled loop, and returns them as ``pdiff.data.types.Trajectories``::

  family = pdiff.envs.make("point_robot")
  tasks = family.tasks(np.repeat(family.test_tasks, 4))    # 4 episodes each
  trajectories, _ = jax.jit(rollout, static_argnums=(0, 1))(
      family, uniform_random_policy(family), key, tasks)
  returns = trajectories.rewards.sum(axis=1)               # [N]
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from pdiff.data.types import Trajectories
from pdiff.envs.base import EnvState, Task, TaskFamily

# (key, obs [ds], task) -> action [da], for one episode; vmapped by rollout.
PolicyFn = Callable[[jax.Array, jax.Array, Task], jax.Array]


def uniform_random_policy(family: TaskFamily, low: float = -1.0,
                          high: float = 1.0) -> PolicyFn:
  """A policy drawing actions uniformly from ``[low, high]^da``."""
  def policy(key: jax.Array, obs: jax.Array, task: Task) -> jax.Array:
    del obs, task
    return jax.random.uniform(
        key, (family.action_size,), minval=low, maxval=high
    )
  return policy


def rollout(
    family: TaskFamily,
    policy_fn: PolicyFn,
    key: jax.Array,
    tasks: Task,
    num_steps: int | None = None,
) -> tuple[Trajectories, EnvState]:
  """Plays one episode per task of a batch, vectorised, in one scan.

  Steps after an episode's end are padding: zeros in the returned arrays,
  excluded from ``lengths``.

  Args:
    family: the task family.
    policy_fn: ``(key, obs [ds], task) -> action [da]`` for one episode.
    key: a ``jax.random.key``.
    tasks: a batch of tasks, leaves with leading axis ``N`` (one episode
      each; repeat indices for several episodes of a task).
    num_steps: steps to scan (default ``family.episode_length``).

  Returns:
    ``(trajectories, final_state)``: ``Trajectories`` with ``T = num_steps``
    (``dones`` on terminations, ``timeouts`` on time-limit ends) and the
    batched ``EnvState`` after the last step.
  """
  num_steps = family.episode_length if num_steps is None else num_steps
  batch = tasks.index.shape[0]
  reset_key, policy_key = jax.random.split(key)
  state = jax.vmap(family.reset)(jax.random.split(reset_key, batch), tasks)

  def body(state: EnvState, step_key: jax.Array):
    keys = jax.random.split(step_key, batch)
    action = jax.vmap(policy_fn)(keys, state.obs, state.task)  # [N, da]
    next_state = jax.vmap(family.step)(state, action)
    valid = state.done == 0  # [N]
    ended = next_state.done > 0
    timeout = ended & (next_state.truncation > 0)
    step = (state.obs, action, next_state.reward, ended & ~timeout, timeout,
            valid)
    return next_state, step

  step_keys = jax.random.split(policy_key, num_steps)
  final_state, steps = jax.lax.scan(body, state, step_keys)
  obs, actions, rewards, dones, timeouts, valid = jax.tree.map(
      lambda x: jnp.swapaxes(x, 0, 1), steps
  )  # [N, T, ...]

  def pad(x):
    mask = valid.reshape(valid.shape + (1,) * (x.ndim - 2))
    return jnp.where(mask, x, jnp.zeros_like(x))

  trajectories = Trajectories(
      observations=pad(obs),
      actions=pad(actions),
      rewards=pad(rewards),
      dones=pad(dones),
      timeouts=pad(timeouts),
      lengths=valid.sum(axis=1).astype(jnp.int32),
  )
  return trajectories, final_state


def random_returns(
    family: TaskFamily, key: jax.Array, episodes_per_task: int
) -> tuple[jax.Array, jax.Array]:
  """Returns and lengths of uniform-random episodes on every task.

  All ``num_tasks * episodes_per_task`` episodes run in one compiled scan.

  Args:
    family: the task family.
    key: a ``jax.random.key``.
    episodes_per_task: episodes per task.

  Returns:
    ``(returns, lengths)``, each ``[num_tasks, episodes_per_task]``.
  """
  if episodes_per_task <= 0:
    raise ValueError(
        f"episodes_per_task must be positive, got {episodes_per_task}."
    )
  indices = jnp.repeat(jnp.arange(family.num_tasks), episodes_per_task)
  play = jax.jit(rollout, static_argnums=(0, 1))
  trajectories, _ = play(
      family, uniform_random_policy(family), key, family.tasks(indices)
  )
  shape = (family.num_tasks, episodes_per_task)
  returns = trajectories.rewards.sum(axis=1).reshape(shape)
  return returns, trajectories.lengths.reshape(shape)
