"""cheetah_vel and cheetah_dir: rewards, time limit, determinism, batching.

Each family is compiled once (module fixtures); the tests read the recorded
rollouts and recompute rewards and observations in NumPy from the raw
physics state (torso positions, q, qd).
"""

import numpy as np
import pytest

from pdiff import envs
from tests.envs.recording import (
    keys_from_seeds,
    make_recorder,
    random_actions,
    to_numpy,
)

EPISODE_STEPS = 200
NUM_STEPS = EPISODE_STEPS + 1  # one step past the time limit
CTRL_COST_WEIGHT = 0.05  # Prompt-DT's cheetah control cost weight

# Episodes of cheetah_vel: (seed, task); 0 and 2 are the same episode, 3
# differs from 0 only by its key.
VEL_EPISODES = ((0, 0), (1, 17), (0, 0), (3, 0))


@pytest.fixture(scope="module")
def vel_family():
  return envs.make("cheetah_vel")


@pytest.fixture(scope="module")
def vel_run(vel_family):
  record = make_recorder(vel_family, with_loop=True)
  actions = random_actions(0, len(VEL_EPISODES), NUM_STEPS,
                           vel_family.action_size)
  actions[2] = actions[3] = actions[0]
  seeds, tasks = zip(*VEL_EPISODES, strict=True)
  args = (keys_from_seeds(seeds), np.asarray(tasks), actions,
          np.zeros(len(VEL_EPISODES), np.float32))
  first = to_numpy(record(*args))
  second = to_numpy(record(*args))
  return {"out": first, "again": second, "actions": actions, "tasks": tasks}


def torso_velocity(out, dt):
  """Forward torso velocity of each step, ``[B, T]``, from positions."""
  x = np.concatenate(
      [out["initial_torso"][:, None, 0], out["steps"]["torso"][..., 0]], axis=1
  ).astype(np.float64)
  return np.diff(x, axis=1) / dt


def test_cheetah_vel_reward_matches_formula(vel_family, vel_run):
  out, actions = vel_run["out"], vel_run["actions"]
  goals = np.array([vel_family.task_values[t][0] for t in vel_run["tasks"]])
  v = torso_velocity(out, vel_family.dt)  # [B, T]
  ctrl = CTRL_COST_WEIGHT * np.sum(np.square(actions.astype(np.float64)), -1)
  expected = -np.abs(v - goals[:, None]) - ctrl
  rewards = out["steps"]["reward"]
  np.testing.assert_allclose(
      rewards[:, :EPISODE_STEPS], expected[:, :EPISODE_STEPS], atol=2e-4
  )
  assert np.ptp(v) > 0.5  # the cheetah really moved


def test_cheetah_episode_ends_at_time_limit(vel_run):
  steps = vel_run["out"]["steps"]
  last = EPISODE_STEPS - 1
  np.testing.assert_array_equal(steps["done"][:, :last], 0.0)
  np.testing.assert_array_equal(steps["truncation"][:, :last], 0.0)
  np.testing.assert_array_equal(steps["done"][:, last:], 1.0)
  np.testing.assert_array_equal(steps["truncation"][:, last:], 1.0)
  np.testing.assert_array_equal(
      steps["step"][0], np.minimum(np.arange(1, NUM_STEPS + 1), EPISODE_STEPS)
  )


def test_stepping_a_done_state_keeps_it(vel_run):
  steps = vel_run["out"]["steps"]
  last = EPISODE_STEPS - 1
  np.testing.assert_array_equal(steps["reward"][:, last + 1:], 0.0)
  np.testing.assert_array_equal(steps["obs"][:, last + 1], steps["obs"][:, last])
  np.testing.assert_array_equal(steps["q"][:, last + 1], steps["q"][:, last])


def test_cheetah_observation_is_brax_observation(vel_family, vel_run):
  out = vel_run["out"]
  np.testing.assert_allclose(out["reset_obs"], out["brax_reset_obs"])
  np.testing.assert_allclose(out["initial_obs"], out["reset_obs"], atol=1e-6)
  steps = out["steps"]
  expected = np.concatenate([steps["q"][..., 1:], steps["qd"]], axis=-1)
  np.testing.assert_array_equal(steps["obs"], expected)
  assert steps["obs"].shape[-1] == vel_family.observation_size


def test_same_key_same_rollout_other_key_other_rollout(vel_run):
  out, again = vel_run["out"], vel_run["again"]
  np.testing.assert_array_equal(out["steps"]["obs"], again["steps"]["obs"])
  np.testing.assert_array_equal(out["steps"]["obs"][0], out["steps"]["obs"][2])
  np.testing.assert_array_equal(
      out["steps"]["reward"][0], out["steps"]["reward"][2]
  )
  assert not np.allclose(out["reset_obs"][0], out["reset_obs"][3])


def test_vmap_over_tasks_equals_sequential_loop(vel_run):
  out = vel_run["out"]
  loop = out["loop"]
  np.testing.assert_allclose(loop["reset_obs"], out["reset_obs"], atol=1e-6)
  # Contacts make rollouts chaotic: vmap and a loop round differently from
  # the first step (about 1e-5), and on some CPUs the gap grows past 1e-2
  # within 15 steps; compare the first 10 steps tightly, the done flags over
  # the whole episode.
  np.testing.assert_allclose(
      loop["steps"]["obs"][:, :10], out["steps"]["obs"][:, :10], atol=1e-3
  )
  np.testing.assert_array_equal(loop["steps"]["done"], out["steps"]["done"])


# ----------------------------------------------------------- cheetah_dir --

DIR_STEPS = 10


@pytest.fixture(scope="module")
def dir_family():
  return envs.make("cheetah_dir")


@pytest.fixture(scope="module")
def dir_run(dir_family):
  record = make_recorder(dir_family)
  actions = random_actions(1, 2, DIR_STEPS, dir_family.action_size)
  actions[1] = actions[0]
  out = record(keys_from_seeds([5, 5]), np.array([0, 1]), actions,
               np.zeros(2, np.float32))
  return {"out": to_numpy(out), "actions": actions}


def test_cheetah_dir_reward_matches_formula(dir_family, dir_run):
  out, actions = dir_run["out"], dir_run["actions"]
  directions = np.array([v[0] for v in dir_family.task_values])  # [2]
  np.testing.assert_array_equal(directions, [1.0, -1.0])
  v = torso_velocity(out, dir_family.dt)  # [2, T]
  ctrl = CTRL_COST_WEIGHT * np.sum(np.square(actions.astype(np.float64)), -1)
  expected = directions[:, None] * v - ctrl
  np.testing.assert_allclose(out["steps"]["reward"], expected, atol=2e-4)
  assert np.abs(v).max() > 0.1


def test_cheetah_dir_task_changes_reward_not_dynamics(dir_run):
  steps = dir_run["out"]["steps"]
  np.testing.assert_array_equal(steps["obs"][0], steps["obs"][1])
  assert not np.allclose(steps["reward"][0], steps["reward"][1])
