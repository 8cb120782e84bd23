"""ant_dir: reward, termination when unhealthy, absorbing done states.

Compiled once (module fixture). Episodes 1 and 2 start from crafted states
with the torso above the healthy range and below it.
"""

import dataclasses

import numpy as np
import pytest

from pdiff import envs
from tests.envs.recording import (
    keys_from_seeds,
    make_recorder,
    random_actions,
    to_numpy,
)

NUM_STEPS = 40
HEALTHY_Z = (0.2, 1.0)  # Gym's and Brax's healthy torso height range
CTRL_COST_WEIGHT = 0.5
# (seed, task, torso height offset after reset); the ant starts at z ~ 0.55.
EPISODES = ((0, 0, 0.0), (0, 0, 0.6), (1, 10, -0.45), (2, 33, 0.0))


@pytest.fixture(scope="module")
def family():
  return envs.make("ant_dir")


@pytest.fixture(scope="module")
def run(family):
  record = make_recorder(family)
  seeds, tasks, offsets = zip(*EPISODES, strict=True)
  actions = random_actions(2, len(EPISODES), NUM_STEPS, family.action_size)
  out = record(keys_from_seeds(seeds), np.asarray(tasks), actions,
               np.asarray(offsets, np.float32))
  return {"out": to_numpy(out), "actions": actions, "tasks": tasks}


def expected_done(torso_z):
  """Done flags ``[B, T]`` from torso heights: unhealthy once, done after."""
  low, high = HEALTHY_Z
  unhealthy = (torso_z < low) | (torso_z > high)
  return np.maximum.accumulate(unhealthy, axis=1).astype(np.float32)


def test_reward_matches_formula_until_done(family, run):
  out, actions = run["out"], run["actions"]
  steps = out["steps"]
  xy = np.concatenate(
      [out["initial_torso"][:, None, :2], steps["torso"][..., :2]], axis=1
  ).astype(np.float64)  # [B, T + 1, 2]
  velocity = np.diff(xy, axis=1) / family.dt  # [B, T, 2]
  goals = np.array([family.task_values[t][0] for t in run["tasks"]])  # [B]
  direction = np.stack([np.cos(goals), np.sin(goals)], axis=-1)  # [B, 2]
  forward = np.einsum("btk,bk->bt", velocity, direction)
  ctrl = CTRL_COST_WEIGHT * np.sum(np.square(actions.astype(np.float64)), -1)
  expected = forward - ctrl + 1.0  # contact cost 0 on this backend
  # Steps up to and including the first done are real; later ones are 0.
  done = steps["done"]
  live = np.concatenate([np.ones_like(done[:, :1]), 1.0 - done[:, :-1]], 1)
  np.testing.assert_allclose(
      steps["reward"], np.where(live > 0, expected, 0.0), atol=2e-4
  )
  assert np.abs(forward[0]).max() > 0.05  # the ant really moved


def test_terminates_when_torso_leaves_healthy_range(run):
  steps = run["out"]["steps"]
  torso_z = steps["torso"][..., 2]
  np.testing.assert_array_equal(steps["done"], expected_done(torso_z))
  # The crafted episodes end on their first step, the others run on.
  np.testing.assert_array_equal(steps["done"][:, 0], [0.0, 1.0, 1.0, 0.0])
  assert torso_z[1, 0] > HEALTHY_Z[1] and torso_z[2, 0] < HEALTHY_Z[0]
  np.testing.assert_array_equal(steps["done"][[0, 3], -1], 0.0)
  np.testing.assert_array_equal(steps["truncation"], 0.0)


def test_terminated_state_is_absorbing(run):
  steps = run["out"]["steps"]
  for episode in (1, 2):
    np.testing.assert_array_equal(steps["reward"][episode, 1:], 0.0)
    np.testing.assert_array_equal(steps["step"][episode], 1)
    np.testing.assert_array_equal(
        steps["obs"][episode], np.broadcast_to(
            steps["obs"][episode, 0], steps["obs"][episode].shape)
    )


def test_observation_is_brax_observation(family, run):
  out = run["out"]
  np.testing.assert_allclose(out["reset_obs"], out["brax_reset_obs"])
  steps = out["steps"]
  expected = np.concatenate([steps["q"][..., 2:], steps["qd"]], axis=-1)
  np.testing.assert_array_equal(steps["obs"], expected)
  assert steps["obs"].shape[-1] == family.observation_size == 27


def test_contact_cost_needs_contact_forces(family):
  assert family.contact_cost_weight == 0.0
  for backend in ("generalized", "positional", "spring"):
    with pytest.raises(ValueError, match="contact_cost_weight"):
      envs.AntDir(backend=backend, contact_cost_weight=5e-4)


def test_healthy_range_is_checked(family):
  with pytest.raises(ValueError, match="healthy_z_range"):
    dataclasses.replace(family, healthy_z_range=(1.0, 0.2))
