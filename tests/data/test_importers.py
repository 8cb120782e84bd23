"""Tests of pdiff.data.importers on small Prompt-DT pickles and Minari files."""

import json
import pickle

import h5py
import numpy as np
import pytest

from pdiff.data import importers, loading, storage

STATE_DIM, ACTION_DIM = 4, 2


def _episode(length, seed, terminal=False, flag="dones", next_obs=False):
  rng = np.random.default_rng(seed)
  done = np.zeros(length, bool)
  done[-1] = terminal
  episode = {
      "observations": rng.normal(size=(length, STATE_DIM)),
      "actions": rng.uniform(-1, 1, (length, ACTION_DIM)),
      "rewards": rng.normal(size=length),
      flag: done.astype(np.float32),
  }
  if next_obs:
    episode["next_observations"] = rng.normal(size=(length, STATE_DIM))
  return episode


def _assert_matches_episodes(trajs, episodes, flag="dones"):
  assert trajs.observations.shape[0] == len(episodes)
  for i, ep in enumerate(episodes):
    n = len(ep["rewards"])
    assert trajs.lengths[i] == n
    np.testing.assert_allclose(trajs.observations[i, :n], ep["observations"],
                               rtol=1e-6)
    np.testing.assert_allclose(trajs.actions[i, :n], ep["actions"], rtol=1e-6)
    np.testing.assert_allclose(trajs.rewards[i, :n], ep["rewards"], rtol=1e-6)
    np.testing.assert_array_equal(trajs.dones[i, :n], ep[flag] > 0)
    # Exactly one end flag, on the last step: terminal or time limit.
    terminal = bool(ep[flag][-1])
    assert trajs.timeouts[i, n - 1] == (not terminal)
    assert trajs.timeouts[i].sum() + trajs.dones[i].sum() == 1
    np.testing.assert_array_equal(trajs.observations[i, n:], 0.0)


@pytest.mark.parametrize("name, expected", [
    ("cheetah_vel-3-expert.pkl", ("cheetah_vel", 3, "expert", False)),
    ("ant_dir-12-prompt-medium.pkl", ("ant_dir", 12, "medium", True)),
    ("ML1-pick-place-v2-0-expert.pkl", ("ML1-pick-place-v2", 0, "expert", False)),
])
def test_parse_prompt_dt_name(name, expected):
  assert importers.parse_prompt_dt_name(f"/x/{name}") == expected


@pytest.mark.parametrize("name", ["cheetah_vel-expert.pkl", "cheetah_vel-3.pkl",
                                  "cheetah_vel-3-expert.npz", "3-expert.pkl"])
def test_bad_prompt_dt_name(name):
  with pytest.raises(storage.DatasetError, match="does not match Prompt-DT"):
    importers.parse_prompt_dt_name(name)


def test_prompt_dt_dir_round_trip(tmp_path):
  src = tmp_path / "src"
  src.mkdir()
  files = {
      "cheetah_vel-0-expert.pkl": ([_episode(6, 0, terminal=True),
                                    _episode(4, 1, next_obs=True)], "dones"),
      "cheetah_vel-2-expert.pkl": ([_episode(5, 2)], "terminals"),
      "cheetah_vel-2-prompt-expert.pkl": ([_episode(3, 3)], "dones"),
      "cheetah_dir-0-expert.pkl": ([_episode(3, 4)], "dones"),
  }
  for name, (episodes, flag) in files.items():
    if flag == "terminals":
      episodes = [{("terminals" if k == "dones" else k): v
                   for k, v in ep.items()} for ep in episodes]
      files[name] = (episodes, flag)
    with open(src / name, "wb") as f:
      pickle.dump(episodes, f)

  written = importers.import_prompt_dt_dir(
      src, tmp_path / "out", family="cheetah_vel", env_prefix="cheetah_vel",
      task_params={0: [0.075], 2: [0.225]})
  assert sorted(written) == [0, 2]
  loaded = loading.load_family_datasets(tmp_path / "out", "cheetah_vel",
                                        "expert", [0, 2])
  for idx, name in ((0, "cheetah_vel-0-expert.pkl"),
                    (2, "cheetah_vel-2-expert.pkl")):
    episodes, flag = files[name]
    _assert_matches_episodes(loaded[idx].trajectories, episodes, flag)
    assert loaded[idx].metadata.source.startswith(f"prompt-dt:{name}")
    assert loaded[idx].metadata.seed is None
  assert loaded[0].metadata.task_params == (0.075,)
  assert loaded[0].trajectories.observations.shape == (2, 6, STATE_DIM)

  prompts = importers.import_prompt_dt_dir(
      src, tmp_path / "prompts", family="cheetah_vel",
      env_prefix="cheetah_vel", prompt_files=True)
  assert list(prompts) == [2]
  prompt = storage.load_task_dataset(prompts[2], expect_task=2)
  _assert_matches_episodes(prompt.trajectories,
                           files["cheetah_vel-2-prompt-expert.pkl"][0])
  assert prompt.metadata.task_params == ()


def test_prompt_dt_pad_to_fixed_length(tmp_path):
  path = tmp_path / "ant_dir-1-random.pkl"
  with open(path, "wb") as f:
    pickle.dump([_episode(3, 0)], f)
  dataset = importers.import_prompt_dt_file(path, family="ant_dir",
                                            num_steps=10)
  assert dataset.trajectories.rewards.shape == (1, 10)
  assert dataset.metadata.quality == "random"
  with pytest.raises(storage.DatasetError, match="at most num_steps = 2"):
    importers.import_prompt_dt_file(path, family="ant_dir", num_steps=2)


@pytest.mark.parametrize("content, message", [
    ({"a": 1}, "expected a list of episode dicts"),
    ([{"observations": np.zeros((2, 4)), "rewards": np.zeros(2)}],
     "episode 0 lacks 'actions'"),
    ([{"observations": np.zeros((2, 4)), "actions": np.zeros((2, 2)),
       "rewards": np.zeros(2)}], "lacks 'dones' or 'terminals'"),
    ([{"observations": np.zeros((2, 4)), "actions": np.zeros((3, 2)),
       "rewards": np.zeros(2), "dones": np.zeros(2)}],
     "episode 0 has 3 'actions' steps, expected 2"),
])
def test_malformed_prompt_dt_pickle(tmp_path, content, message):
  path = tmp_path / "cheetah_vel-0-expert.pkl"
  with open(path, "wb") as f:
    pickle.dump(content, f)
  with pytest.raises(storage.DatasetError) as e:
    importers.import_prompt_dt_file(path, family="cheetah_vel")
  assert str(path) in str(e.value) and message in str(e.value)


def test_no_matching_prompt_dt_file(tmp_path):
  with pytest.raises(storage.DatasetError, match="no Prompt-DT file"):
    importers.import_prompt_dt_dir(tmp_path, tmp_path / "out", family="x",
                                   env_prefix="cheetah_vel")


def _write_minari(dataset_dir, lengths, metadata=None, bad_obs=False):
  """Minari's layout: data/main_data.hdf5 with episode_{i} groups."""
  (dataset_dir / "data").mkdir(parents=True)
  episodes = []
  rng = np.random.default_rng(0)
  with h5py.File(dataset_dir / "data" / "main_data.hdf5", "w") as f:
    for i, t in enumerate(lengths):
      terminations = np.zeros(t, bool)
      truncations = np.zeros(t, bool)
      if i % 2 == 0:
        terminations[-1] = True
      else:
        truncations[-1] = True
      obs = rng.normal(size=(t + (0 if bad_obs else 1), STATE_DIM))
      group = f.create_group(f"episode_{i}")
      group.attrs["id"] = i
      group.create_dataset("observations", data=obs)
      group.create_dataset("actions", data=rng.normal(size=(t, ACTION_DIM)))
      group.create_dataset("rewards", data=rng.normal(size=t))
      group.create_dataset("terminations", data=terminations)
      group.create_dataset("truncations", data=truncations)
      episodes.append({"observations": obs[:t], "actions": group["actions"][()],
                       "rewards": group["rewards"][()],
                       "dones": terminations.astype(np.float32)})
  if metadata is not None:
    with open(dataset_dir / "data" / "metadata.json", "w") as f:
      json.dump(metadata, f)
  return episodes


def test_minari_round_trip(tmp_path):
  # 11 episodes: episode_10 must come after episode_9, not after episode_1.
  lengths = [3, 5, 2, 4, 6, 3, 2, 5, 4, 3, 7]
  episodes = _write_minari(tmp_path / "pointmaze-v0", lengths,
                           metadata={"dataset_id": "pointmaze/open-v2"})
  dst = storage.dataset_path(tmp_path / "out", "point_robot", "imported", 4)
  dataset = importers.import_minari(
      tmp_path / "pointmaze-v0", dst, family="point_robot", task_index=4,
      task_params=[0.5, -0.5])
  loaded = storage.load_task_dataset(dst, expect_family="point_robot",
                                     expect_task=4, expect_quality="imported")
  assert loaded.metadata == dataset.metadata
  assert loaded.metadata.source == "minari:pointmaze/open-v2"
  assert loaded.metadata.task_params == (0.5, -0.5)
  _assert_matches_episodes(loaded.trajectories, episodes)


def test_minari_without_metadata_uses_directory_name(tmp_path):
  _write_minari(tmp_path / "mine-v1", [2, 3])
  trajs, info = importers.read_minari_episodes(tmp_path / "mine-v1")
  assert info == {}
  dataset = importers.import_minari(
      tmp_path / "mine-v1", tmp_path / "o.npz", family="f", task_index=0,
      task_params=[], quality="medium")
  assert dataset.metadata.source == "minari:mine-v1"
  np.testing.assert_array_equal(trajs.lengths, [2, 3])


def test_minari_errors(tmp_path):
  with pytest.raises(storage.DatasetError, match="main_data.hdf5: no such file"):
    importers.read_minari_episodes(tmp_path)
  _write_minari(tmp_path / "bad", [3], bad_obs=True)
  with pytest.raises(storage.DatasetError,
                     match=r"episode_0: 'observations' has shape \(3, 4\), "
                           r"expected \[4, ds\]"):
    importers.read_minari_episodes(tmp_path / "bad")
