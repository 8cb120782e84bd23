"""rollout(): Trajectories with lengths, terminal flags, time-outs, padding;
scan_steps' per-step metrics."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdiff import envs
from pdiff.envs.rollout import (
  random_returns,
  rollout,
  scan_steps,
  uniform_random_policy,
)

REACHED = 0.5  # distance at which the reaching variant terminates


@dataclasses.dataclass(frozen=True, kw_only=True)
class ReachingPointRobot(envs.PointRobot):
  """point_robot that terminates once within REACHED of the goal."""

  def transition(self, pipeline_state, obs, action, params):
    out = super().transition(pipeline_state, obs, action, params)
    pipeline_state, position, reward, _, metrics = out
    reached = jnp.linalg.norm(position - params) < REACHED
    return pipeline_state, position, reward, reached, metrics


def greedy_policy(key, obs, task):
  del key
  return jnp.clip(task.params - obs, -0.1, 0.1)


@pytest.fixture(scope="module")
def jit_rollout():
  return jax.jit(rollout, static_argnums=(0, 1, 4))


def test_time_limit_sets_timeouts_and_pads(jit_rollout):
  family = envs.make("point_robot")
  tasks = family.tasks(np.repeat(family.test_tasks, 2))  # 10 episodes
  trajectories, final = jit_rollout(
      family, uniform_random_policy(family, -0.1, 0.1), jax.random.key(0),
      tasks, 25)
  t = jax.tree.map(np.asarray, trajectories)
  assert t.observations.shape == (10, 25, 2) and t.actions.shape == (10, 25, 2)
  np.testing.assert_array_equal(t.lengths, 20)
  assert not t.dones.any()
  np.testing.assert_array_equal(t.timeouts[:, 19], True)
  assert t.timeouts.sum() == 10
  for padded in (t.observations[:, 20:], t.actions[:, 20:], t.rewards[:, 20:]):
    np.testing.assert_array_equal(padded, 0.0)
  # Observations are those before each action: they chain through actions.
  np.testing.assert_allclose(
      t.observations[:, 1:20], np.cumsum(t.actions, axis=1)[:, :19], atol=1e-6)
  np.testing.assert_array_equal(final.done, 1.0)


def test_termination_sets_dones_and_lengths(jit_rollout):
  family = ReachingPointRobot()
  trajectories, _ = jit_rollout(
      family, greedy_policy, jax.random.key(1),
      family.tasks(np.arange(family.num_tasks)), family.episode_length)
  t = jax.tree.map(np.asarray, trajectories)
  goals = np.asarray(family.task_values, np.float64)  # [25, 2]
  steps = np.arange(1, 21)[:, None, None]
  distance = np.linalg.norm(
      goals[None] - np.clip(goals[None], -0.1 * steps, 0.1 * steps), axis=-1)
  expected_lengths = np.argmax(distance < REACHED, axis=0) + 1  # [25]
  np.testing.assert_array_equal(t.lengths, expected_lengths)
  np.testing.assert_array_equal(
      t.dones, np.arange(20)[None] == (expected_lengths - 1)[:, None])
  assert not t.timeouts.any()
  returns = t.rewards.sum(axis=1)
  expected_returns = -np.sum(
      np.where(steps[..., 0] <= expected_lengths[None], distance, 0.0), axis=0)
  np.testing.assert_allclose(returns, expected_returns, atol=1e-5)


def test_random_returns_per_task():
  family = envs.make("point_robot")
  returns, lengths = random_returns(family, jax.random.key(0), 3)
  assert returns.shape == lengths.shape == (family.num_tasks, 3)
  np.testing.assert_array_equal(lengths, family.episode_length)
  # No policy beats the greedy optimum (at most -3.04 on every task).
  assert np.all(np.asarray(returns) < -3.0)
  with pytest.raises(ValueError, match="episodes_per_task"):
    random_returns(family, jax.random.key(0), 0)


def test_steps_carry_the_metrics_zero_after_the_end():
  """``observe`` sees each step's metrics (point_robot's distance to the
  goal after the step), zero once the episode has ended; the recorded
  trajectories are those of ``rollout``."""
  family = ReachingPointRobot()
  tasks = family.tasks(np.arange(family.num_tasks))
  batch = family.num_tasks

  def policy_step(carry, state, key):
    keys = jax.random.split(key, batch)
    return jax.vmap(greedy_policy)(keys, state.obs, state.task), carry

  def observe(carry, step):
    total, count = carry
    distance = step.metrics["distance"]  # [B]
    return total + distance, count + (distance > 0).astype(jnp.int32)

  @jax.jit
  def play(key):
    reset_key, step_key = jax.random.split(key)
    state = jax.vmap(family.reset)(jax.random.split(reset_key, batch), tasks)
    carry = (jnp.zeros(batch), jnp.zeros(batch, jnp.int32))
    return scan_steps(family, policy_step, carry, state,
                      jax.random.split(step_key, family.episode_length),
                      observe=observe)

  (total, count), _, trajectories = play(jax.random.key(1))
  t = jax.tree.map(np.asarray, trajectories)
  assert (t.lengths < family.episode_length).any()  # some end early
  np.testing.assert_array_equal(count, t.lengths)  # zero after the end
  np.testing.assert_allclose(total, -t.rewards.sum(axis=1), rtol=1e-6)
  expected, _ = rollout(family, greedy_policy, jax.random.key(1), tasks)
  jax.tree.map(np.testing.assert_array_equal, trajectories, expected)
