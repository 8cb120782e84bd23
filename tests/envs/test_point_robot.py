"""point_robot: goals, dynamics, reward, time limit and batching."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdiff import envs
from pdiff.envs.rollout import rollout

HORIZON = 20


@pytest.fixture(scope="module")
def family():
  return envs.make("point_robot")


@pytest.fixture(scope="module")
def reset(family):
  return jax.jit(family.reset)


@pytest.fixture(scope="module")
def step(family):
  return jax.jit(family.step)


def greedy_policy(key, obs, task):
  """Moves straight to the closest reachable point to the goal."""
  del key
  return jnp.clip(task.params - obs, -0.1, 0.1)


def test_goals_on_upper_half_circle(family):
  goals = np.asarray(family.task_params)  # [25, 2]
  assert goals.shape == (25, 2)
  np.testing.assert_allclose(np.linalg.norm(goals, axis=1), 1.0, atol=1e-6)
  angles = np.arctan2(goals[:, 1], goals[:, 0])
  np.testing.assert_allclose(angles, np.linspace(0, np.pi, 25), atol=1e-6)
  assert len(family.train_tasks) == 20 and len(family.test_tasks) == 5
  assert set(family.train_tasks).isdisjoint(family.test_tasks)
  assert set(family.train_tasks) | set(family.test_tasks) == set(range(25))


def test_step_clips_action_and_rewards_negative_distance(family, reset, step):
  task = family.task(3)
  state = reset(jax.random.key(0), task)
  np.testing.assert_array_equal(state.obs, [0.0, 0.0])
  action = np.array([0.5, -0.03], np.float32)
  state = step(state, action)
  position = np.array([0.1, -0.03])
  np.testing.assert_allclose(state.obs, position, atol=1e-7)
  goal = np.array(family.task_values[3])
  np.testing.assert_allclose(
      state.reward, -np.linalg.norm(position - goal), rtol=1e-6
  )
  assert state.pipeline_state is None
  np.testing.assert_allclose(state.metrics["distance"], -state.reward)


def test_episode_ends_at_horizon_and_stays_done(family, reset, step):
  state = reset(jax.random.key(1), family.task(0))
  rewards = []
  for t in range(1, HORIZON + 3):
    state = step(state, jnp.array([0.05, 0.05]))
    rewards.append(float(state.reward))
    assert int(state.step) == min(t, HORIZON)
    assert float(state.done) == float(t >= HORIZON)
    assert float(state.truncation) == float(t >= HORIZON)
  assert rewards[-2:] == [0.0, 0.0]
  np.testing.assert_allclose(state.obs, [0.05 * HORIZON] * 2, rtol=1e-5)


def test_vmap_over_tasks_equals_python_loop(family, reset, step):
  indices = np.array(family.test_tasks)
  keys = jax.random.split(jax.random.key(2), len(indices))
  actions = jax.random.uniform(jax.random.key(3), (len(indices), 5, 2),
                               minval=-0.2, maxval=0.2)
  batched = jax.vmap(family.reset)(keys, family.tasks(indices))
  batched_rewards = []
  for t in range(5):
    batched = jax.vmap(family.step)(batched, actions[:, t])
    batched_rewards.append(batched.reward)
  for i, index in enumerate(indices):
    state = reset(keys[i], family.task(int(index)))
    for t in range(5):
      state = step(state, actions[i, t])
      np.testing.assert_allclose(batched_rewards[t][i], state.reward,
                                 rtol=1e-6)
    np.testing.assert_allclose(batched.obs[i], state.obs, rtol=1e-6)


def test_greedy_return_matches_closed_form(family):
  # The reachable set after t steps is the box [-0.1 t, 0.1 t]^2, and the
  # greedy policy reaches its point closest to the goal at every step.
  goals = np.asarray(family.task_values, np.float64)  # [25, 2]
  t = np.arange(1, HORIZON + 1)[:, None, None]  # [T, 1, 1]
  gap = goals[None] - np.clip(goals[None], -0.1 * t, 0.1 * t)  # [T, 25, 2]
  expected = -np.linalg.norm(gap, axis=-1).sum(axis=0)  # [25]
  trajectories, _ = jax.jit(rollout, static_argnums=(0, 1))(
      family, greedy_policy, jax.random.key(0),
      family.tasks(np.arange(family.num_tasks)))
  returns = np.asarray(trajectories.rewards.sum(axis=1))
  np.testing.assert_allclose(returns, expected, atol=1e-4)
  assert expected.max() <= family.return_target + 0.1  # target is reachable
  assert expected.max() > family.return_target - 0.5


def test_reset_noise(family):
  noisy = dataclasses.replace(family, reset_noise_scale=0.05)
  keys = jax.random.split(jax.random.key(4), 64)
  states = jax.vmap(noisy.reset)(keys, noisy.tasks(np.zeros(64, int)))
  assert np.abs(states.obs).max() <= 0.05
  assert np.abs(states.obs).max() > 0.03
  with pytest.raises(ValueError, match="reset_noise_scale"):
    dataclasses.replace(family, reset_noise_scale=-1.0)
  with pytest.raises(ValueError, match="max_action"):
    dataclasses.replace(family, max_action=0.0)
