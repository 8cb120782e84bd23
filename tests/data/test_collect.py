"""Tests of offline data collection (``pdiff.data.collect``) on point_robot."""

import io
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import collect as collect_configs
from pdiff import envs
from pdiff.data import behavior, collect, storage

FAMILY = envs.make("point_robot")
T = FAMILY.episode_length
MAX_ACTION = FAMILY.max_action


def recomputed_rewards(trajs, goals):
  """point_robot's reward from the stored steps, in NumPy: minus the
  distance to the goal after the (clipped) move. goals: [..., 2]."""
  moved = trajs.observations + np.clip(trajs.actions, -MAX_ACTION, MAX_ACTION)
  return -np.linalg.norm(moved - goals[..., None, None, :], axis=-1), moved


def check_point_robot_steps(trajs, goals):
  """Lengths, flags, dynamics and rewards of full point_robot episodes."""
  np.testing.assert_array_equal(trajs.lengths, T)
  assert not np.any(trajs.dones)  # point_robot never terminates
  np.testing.assert_array_equal(trajs.timeouts[..., -1], True)
  assert not np.any(trajs.timeouts[..., :-1])
  rewards, moved = recomputed_rewards(trajs, goals)
  np.testing.assert_allclose(trajs.rewards, rewards, rtol=1e-5, atol=1e-6)
  # The next observation is where the move led.
  np.testing.assert_allclose(trajs.observations[..., 1:, :],
                             moved[..., :-1, :], atol=1e-6)
  np.testing.assert_array_equal(trajs.observations[..., 0, :], 0.0)


def test_random_collector():
  collect_fn = collect.make_collector(FAMILY, None, 3)
  tasks = np.array([0, 12])
  trajs = jax.device_get(collect_fn(
      jnp.asarray(tasks), jnp.stack([jax.random.key(0), jax.random.key(1)])))
  assert trajs.observations.shape == (2, 3, T, 2)
  assert trajs.actions.shape == (2, 3, T, 2)
  assert trajs.rewards.shape == trajs.dones.shape == (2, 3, T)
  assert trajs.lengths.shape == (2, 3)
  assert np.all(np.abs(trajs.actions) <= 1.0)
  assert np.abs(trajs.actions).max() > 0.9  # uniform in [-1, 1]
  check_point_robot_steps(trajs, np.asarray(FAMILY.task_params)[tasks])


def test_policy_sees_task_parameters_and_noise_is_clipped():
  # The policy's action is the task's goal, read from the appended parameters.
  goal_policy = lambda obs_task, key: obs_task[:, FAMILY.observation_size:]
  tasks = np.array([3, 20])
  keys = jnp.stack([jax.random.key(0), jax.random.key(1)])
  goals = np.asarray(FAMILY.task_params)[tasks]
  exact = jax.device_get(collect.make_collector(FAMILY, goal_policy, 2)(
      jnp.asarray(tasks), keys))
  np.testing.assert_allclose(
      exact.actions, np.broadcast_to(goals[:, None, None], exact.actions.shape),
      atol=1e-6)
  check_point_robot_steps(exact, goals)
  noisy = jax.device_get(collect.make_collector(
      FAMILY, goal_policy, 2, action_noise=0.5)(jnp.asarray(tasks), keys))
  assert np.all(np.abs(noisy.actions) <= 1.0)
  spread = np.std(noisy.actions - goals[:, None, None])
  assert 0.3 < spread < 0.55, spread
  check_point_robot_steps(noisy, goals)


@pytest.mark.parametrize("kwargs,field", [
    (dict(num_trajectories=0), "num_trajectories"),
    (dict(num_trajectories=1, action_noise=-0.1), "action_noise"),
])
def test_make_collector_rejects_bad_arguments(kwargs, field):
  with pytest.raises(ValueError, match=field):
    collect.make_collector(FAMILY, None, **kwargs)


def test_collect_tasks_chunking_does_not_change_data():
  key = jax.random.key(4)
  tasks = [0, 3, 5]
  progress = {}
  out = {}
  for chunk in (1, 2, 3):
    calls = []
    out[chunk] = collect.collect_tasks(
        FAMILY, None, tasks, 2, key, tasks_per_chunk=chunk,
        on_chunk=lambda done, total, calls=calls: calls.append((done, total)))
    progress[chunk] = calls
    assert list(out[chunk]) == tasks
  assert progress == {1: [(1, 3), (2, 3), (3, 3)], 2: [(2, 3), (3, 3)],
                      3: [(3, 3)]}
  for chunk in (1, 2):
    for i in tasks:
      jax.tree.map(np.testing.assert_array_equal, out[chunk][i], out[3][i])
  assert isinstance(out[3][0].rewards, np.ndarray)
  # Tasks get different keys: different random actions.
  assert not np.allclose(out[3][0].actions, out[3][3].actions)


def test_collect_tasks_edge_cases():
  with pytest.raises(ValueError, match="tasks_per_chunk"):
    collect.collect_tasks(FAMILY, None, [0], 1, jax.random.key(0),
                          tasks_per_chunk=0)
  assert collect.collect_tasks(FAMILY, None, [], 1, jax.random.key(0)) == {}


def read_metadata(path):
  return storage.load_task_dataset(path).metadata


def test_collect_family_datasets_random(tmp_path):
  messages = []
  paths = collect.collect_family_datasets(
      FAMILY, "random", str(tmp_path), num_trajectories=2, seed=3,
      task_indices=[1, 4], progress=messages.append)
  expected = [str(storage.dataset_path(tmp_path, FAMILY.name, "random", i))
              for i in (1, 4)]
  assert paths == expected
  assert messages and all("point_robot/random" in m for m in messages)
  for i, path in zip((1, 4), paths, strict=True):
    dataset = storage.load_task_dataset(path, expect_family=FAMILY.name,
                                        expect_task=i, expect_quality="random")
    meta = dataset.metadata
    assert meta.seed == 3 and meta.num_trajectories == 2
    assert meta.source == "uniform random actions"
    np.testing.assert_allclose(meta.task_params, FAMILY.task_values[i])
    check_point_robot_steps(dataset.trajectories,
                            np.asarray(FAMILY.task_values[i]))

  # Existing files are kept unless overwrite is set.
  before = {p: open(p, "rb").read() for p in paths}
  again = collect.collect_family_datasets(
      FAMILY, "random", str(tmp_path), num_trajectories=2, seed=4,
      task_indices=[1, 4])
  assert again == paths
  assert {p: open(p, "rb").read() for p in paths} == before
  collect.collect_family_datasets(
      FAMILY, "random", str(tmp_path), num_trajectories=2, seed=4,
      task_indices=[1, 4], overwrite=True)
  assert read_metadata(paths[0]).seed == 4
  new = storage.load_task_dataset(paths[0]).trajectories
  old = np.load(io.BytesIO(before[paths[0]]))["actions"]
  assert not np.allclose(new.actions, old)
  assert sorted(os.listdir(os.path.dirname(paths[0]))) == [
      "task_01.npz", "task_04.npz"]


def test_collect_family_datasets_rejects_unknown_quality(tmp_path):
  with pytest.raises(ValueError, match="'great'"):
    collect.collect_family_datasets(FAMILY, "great", str(tmp_path),
                                    num_trajectories=1, seed=0)
  assert not os.listdir(tmp_path)


def test_policy_backend_must_match_the_family(tmp_path):
  policy_dir = tmp_path / "policy"
  shutil.copytree(behavior.shipped_policy_dir(FAMILY.name, "expert"),
                  policy_dir)
  info = json.loads((policy_dir / "policy.json").read_text())
  info["backend"] = "mjx"
  (policy_dir / "policy.json").write_text(json.dumps(info))
  with pytest.raises(ValueError, match="backend 'mjx'"):
    collect.collect_family_datasets(
        FAMILY, "expert", str(tmp_path / "data"), num_trajectories=1, seed=0,
        policy_dir=str(policy_dir), task_indices=[0])


def test_resplit_family_collects_with_its_behavior_familys_policies(
    tmp_path, monkeypatch):
  """ant_dir_10 re-splits ant_dir's goals: its data come from ant_dir's
  shipped policies (the load is stopped before anything is collected)."""
  loaded = []

  class Loaded(Exception):
    pass

  def load_policy(directory, **kwargs):
    loaded.append(directory)
    raise Loaded

  monkeypatch.setattr(behavior, "load_policy", load_policy)
  family = envs.make("ant_dir_10")
  with pytest.raises(Loaded):
    collect.collect_family_datasets(family, "medium", str(tmp_path),
                                    num_trajectories=1, seed=0,
                                    task_indices=[1])
  assert loaded == [behavior.shipped_policy_dir("ant_dir", "medium")]
  assert os.path.isfile(os.path.join(loaded[0], "params.msgpack"))


def test_shipped_expert_beats_random(tmp_path):
  tasks = [2, 7, 12]
  paths = collect.collect_family_datasets(
      FAMILY, "expert", str(tmp_path), num_trajectories=4, seed=0,
      action_noise=0.1, task_indices=tasks)
  expert = [storage.load_task_dataset(p) for p in paths]
  assert "ppo" in expert[0].metadata.source
  goals = np.asarray(FAMILY.task_params)[tasks]
  for dataset, goal in zip(expert, goals, strict=True):
    check_point_robot_steps(dataset.trajectories, goal)
  expert_return = np.mean([d.trajectories.rewards.sum(-1) for d in expert])
  random = collect.collect_tasks(FAMILY, None, tasks, 4, jax.random.key(0),
                                 tasks_per_chunk=len(tasks))
  random_return = np.mean([random[i].rewards.sum(-1) for i in tasks])
  # The best possible return is about -3 to -4.5, uniform actions about -20.
  assert expert_return > random_return + 5.0, (expert_return, random_return)


def test_collect_from_config(tmp_path):
  config = collect_configs.get_config("point_robot")
  config.qualities = ("random",)
  config.num_trajectories = 1
  config.tasks_per_chunk = FAMILY.num_tasks
  out = collect.collect_from_config(config, str(tmp_path))
  assert list(out) == ["random"]
  assert len(out["random"]) == FAMILY.num_tasks
  for i, path in enumerate(out["random"]):
    assert path == str(storage.dataset_path(tmp_path / "datasets",
                                            FAMILY.name, "random", i))
    assert read_metadata(path).seed == config.seed
