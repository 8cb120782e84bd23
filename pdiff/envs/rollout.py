"""Batched episodes: one ``lax.scan`` over a ``vmap`` of ``step``.

:func:`scan_steps` is the episode loop every rollout in pdiff runs: data
collection (``pdiff.data.collect``), prompted evaluation
(``pdiff.evaluation.rollout``) and :func:`rollout` here. A policy step maps
its own carry and the batched state to actions; the loop steps the envs,
masks what happens after each episode's end and, if asked, records the
steps as ``pdiff.types.Trajectories``::

  family = pdiff.envs.make("point_robot")
  tasks = family.tasks(np.repeat(family.test_tasks, 4))    # 4 episodes each
  trajectories, _ = jax.jit(rollout, static_argnums=(0, 1))(
      family, uniform_random_policy(family), key, tasks)
  returns = trajectories.rewards.sum(axis=1)               # [N]

A done state is absorbing (``TaskFamily.step``), so an episode is valid at a
step exactly while its state before the step is not done; steps after the
end are zero padding, excluded from ``lengths``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from pdiff.envs.base import EnvState, Task, TaskFamily
from pdiff.types import Trajectories

# (key, obs [ds], task) -> action [da], for one episode; vmapped by rollout.
PolicyFn = Callable[[jax.Array, jax.Array, Task], jax.Array]
# (carry, state [B], x) -> (actions [B, da], carry), for a batch of episodes.
PolicyStep = Callable[[Any, EnvState, Any], tuple[jax.Array, Any]]


class Step(NamedTuple):
  """One step of a batch of B episodes, zero where an episode had ended."""

  obs: jax.Array  # [B, ds] the observation the action was taken on
  action: jax.Array  # [B, da]
  reward: jax.Array  # [B] reward of the step
  terminal: jax.Array  # [B] bool, the episode terminated at this step
  timeout: jax.Array  # [B] bool, it reached the time limit at this step
  valid: jax.Array  # [B] bool, the episode had not ended before this step
  # The next state's metrics (``TaskFamily.metric_names``), each [B].
  metrics: dict[str, jax.Array]


def scan_steps(
    family: TaskFamily,
    policy_step: PolicyStep,
    carry: Any,
    state: EnvState,
    xs: Any,
    *,
    observe: Callable[[Any, Step], Any] | None = None,
    record: bool = True,
) -> tuple[Any, EnvState, Trajectories | None]:
  """Steps a batch of episodes once per entry of ``xs``, in one scan.

  Args:
    family: the task family.
    policy_step: ``(carry, state, x) -> (actions [B, da], carry)``, given
      the batched state before the step and the step's entry of ``xs``.
    carry: the policy's initial carry (any pytree, e.g. ``None``).
    state: the batched ``EnvState`` ``[B]`` the episodes start from.
    xs: per-step inputs of the policy, leading axis ``T`` (e.g. keys).
    observe: optional ``(carry, step) -> carry``, called after each env
      step with the masked :class:`Step` (e.g. to accumulate returns, or a
      success flag from ``step.metrics``).
    record: return the steps as trajectories; without, nothing per step is
      kept. Trajectories hold no metrics.

  Returns:
    ``(carry, final_state, trajectories)``: the policy's final carry, the
    batched state after the last step and ``Trajectories`` ``[B, T, ...]``
    (``dones`` on terminations, ``timeouts`` on time-limit ends, zeros after
    an episode's end), or None without ``record``.
  """

  def body(loop_carry, x):
    state, carry = loop_carry
    alive = 1.0 - state.done  # [B] 1.0 before the episode's end, then 0.0
    valid = alive > 0
    action, carry = policy_step(carry, state, x)
    next_state = jax.vmap(family.step)(state, action)
    ended = next_state.done > 0
    timeout = ended & (next_state.truncation > 0)

    def pad(v):  # zero after the end
      return v * alive.reshape(alive.shape + (1,) * (v.ndim - 1)).astype(v.dtype)

    step = Step(obs=pad(state.obs), action=pad(action),
                reward=pad(next_state.reward), terminal=valid & ended & ~timeout,
                timeout=valid & timeout, valid=valid,
                metrics=jax.tree.map(pad, next_state.metrics))
    if observe is not None:
      carry = observe(carry, step)
    # Trajectories keep no metrics: the scan does not stack them.
    return (next_state, carry), (step._replace(metrics={}) if record else None)

  (final_state, carry), steps = jax.lax.scan(body, (state, carry), xs)
  if not record:
    return carry, final_state, None
  steps = jax.tree.map(lambda v: jnp.swapaxes(v, 0, 1), steps)  # [B, T, ...]
  trajectories = Trajectories(
      observations=steps.obs, actions=steps.action, rewards=steps.reward,
      dones=steps.terminal, timeouts=steps.timeout,
      lengths=steps.valid.sum(axis=1).astype(jnp.int32))
  return carry, final_state, trajectories


def scan_episode(
    family: TaskFamily,
    policy_step: PolicyStep,
    carry: Any,
    tasks: Task,
    key: jax.Array,
    num_steps: int | None = None,
) -> tuple[Any, EnvState, Trajectories]:
  """Resets one episode per task of a batch and plays it with a step key.

  The reset keys come from one half of ``key`` (one per episode), the
  per-step inputs of ``policy_step`` are ``num_steps`` keys split from the
  other half.

  Args:
    family: the task family.
    policy_step: ``(carry, state [B], key) -> (actions [B, da], carry)``.
    carry: the policy's initial carry.
    tasks: a batch of tasks, leaves with leading axis ``B`` (one episode
      each).
    key: a ``jax.random.key``.
    num_steps: steps to scan (default ``family.episode_length``).

  Returns:
    ``(carry, final_state, trajectories)`` as :func:`scan_steps`.
  """
  num_steps = family.episode_length if num_steps is None else num_steps
  batch = tasks.index.shape[0]
  reset_key, step_key = jax.random.split(key)
  state = jax.vmap(family.reset)(jax.random.split(reset_key, batch), tasks)
  return scan_steps(family, policy_step, carry, state,
                    jax.random.split(step_key, num_steps))


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
  batch = tasks.index.shape[0]

  def policy_step(carry, state: EnvState, step_key: jax.Array):
    keys = jax.random.split(step_key, batch)
    return jax.vmap(policy_fn)(keys, state.obs, state.task), carry  # [N, da]

  _, final_state, trajectories = scan_episode(
      family, policy_step, None, tasks, key, num_steps)
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
