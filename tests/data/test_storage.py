"""Tests of pdiff.data.storage: round trip, atomic writes, validation."""

import dataclasses
import json
import os

import numpy as np
import pytest

import pdiff
import pdiff.envs
from pdiff.data import loading, storage
from pdiff.types import Trajectories


def _trajectories(lengths=(5, 2, 4), num_steps=5, state_dim=3, action_dim=2):
  rng = np.random.default_rng(0)
  n = len(lengths)
  dones = np.zeros((n, num_steps), bool)
  timeouts = np.zeros((n, num_steps), bool)
  dones[1, lengths[1] - 1] = True
  timeouts[0, lengths[0] - 1] = True
  return Trajectories(
      observations=rng.normal(size=(n, num_steps, state_dim)),
      actions=rng.normal(size=(n, num_steps, action_dim)),
      rewards=rng.normal(size=(n, num_steps)),
      dones=dones, timeouts=timeouts, lengths=np.asarray(lengths))


def _dataset(family="cheetah_vel", task_index=3, quality="expert"):
  return storage.make_task_dataset(
      _trajectories(), family=family, task_index=task_index,
      task_params=[1.5], quality=quality, source="unit test", seed=7)


def _write_raw(path, arrays, metadata):
  """Writes an npz directly, bypassing the checks of save_task_dataset."""
  extra = {} if metadata is None else {"metadata": np.array(json.dumps(metadata))}
  with open(path, "wb") as f:
    np.savez(f, **arrays, **extra)


def _raw(dataset):
  arrays = dataset.trajectories._asdict()
  return arrays, dataclasses.asdict(dataset.metadata)


def test_dataset_path():
  path = storage.dataset_path("/data", "ant_dir", "medium", 7)
  assert str(path) == "/data/ant_dir/medium/task_07.npz"


def test_make_task_dataset_dtypes_padding_and_statistics():
  dataset = _dataset()
  trajs = dataset.trajectories
  assert trajs.observations.dtype == np.float32
  assert trajs.dones.dtype == np.bool_ and trajs.lengths.dtype == np.int32
  assert np.all(trajs.observations[1, 2:] == 0)  # Padding zeroed.
  source = _trajectories()
  real = np.concatenate(
      [source.observations[i, :n] for i, n in enumerate(source.lengths)])
  np.testing.assert_allclose(dataset.metadata.state_mean, real.mean(0),
                             rtol=1e-5)
  np.testing.assert_allclose(dataset.metadata.state_std, real.std(0) + 1e-6,
                             rtol=1e-5)
  assert dataset.metadata.num_trajectories == 3
  assert dataset.metadata.pdiff_version == pdiff.__version__
  assert dataset.metadata.format_version == storage.FORMAT_VERSION


def test_round_trip(tmp_path):
  dataset = _dataset()
  path = storage.dataset_path(tmp_path, "cheetah_vel", "expert", 3)
  storage.save_task_dataset(path, dataset)
  loaded = storage.load_task_dataset(
      path, expect_family="cheetah_vel", expect_task=3, expect_quality="expert")
  assert loaded.metadata == dataset.metadata
  for name, value in dataset.trajectories._asdict().items():
    got = getattr(loaded.trajectories, name)
    assert got.dtype == value.dtype
    np.testing.assert_array_equal(got, value)
  # Only the dataset file is left in the directory: no temporary file.
  assert os.listdir(path.parent) == ["task_03.npz"]


def test_overwrite_replaces_file(tmp_path):
  path = tmp_path / "d.npz"
  storage.save_task_dataset(path, _dataset(task_index=1))
  storage.save_task_dataset(path, _dataset(task_index=2))
  assert storage.load_task_dataset(path).metadata.task_index == 2
  assert os.listdir(tmp_path) == ["d.npz"]


def test_crash_mid_write_leaves_nothing(tmp_path, monkeypatch):
  def failing_savez(file, **arrays):
    file.write(b"PK\x03\x04 partial")
    raise OSError("disk full")

  monkeypatch.setattr(np, "savez", failing_savez)
  path = tmp_path / "family" / "expert" / "task_00.npz"
  with pytest.raises(OSError, match="disk full"):
    storage.save_task_dataset(path, _dataset())
  assert os.listdir(path.parent) == []


def test_crash_keeps_previous_file(tmp_path, monkeypatch):
  path = tmp_path / "task_00.npz"
  storage.save_task_dataset(path, _dataset(task_index=0))
  monkeypatch.setattr(np, "savez", lambda file, **a: (_ for _ in ()).throw(
      KeyboardInterrupt()))
  with pytest.raises(KeyboardInterrupt):
    storage.save_task_dataset(path, _dataset(task_index=5))
  monkeypatch.undo()
  assert storage.load_task_dataset(path).metadata.task_index == 0
  assert os.listdir(tmp_path) == ["task_00.npz"]


@pytest.mark.parametrize("keep_fraction", [0.0, 0.3, 0.9])
def test_truncated_file(tmp_path, keep_fraction):
  path = tmp_path / "task_00.npz"
  storage.save_task_dataset(path, _dataset())
  data = path.read_bytes()
  path.write_bytes(data[:int(len(data) * keep_fraction)])
  with pytest.raises(storage.DatasetError, match="truncated or corrupt") as e:
    storage.load_task_dataset(path)
  assert str(path) in str(e.value)


def test_missing_file(tmp_path):
  with pytest.raises(storage.DatasetError, match="no such dataset file"):
    storage.load_task_dataset(tmp_path / "nope.npz")


@pytest.mark.parametrize("field, value, expected", [
    ("family", "ant_dir", "'family' is 'cheetah_vel', expected 'ant_dir'"),
    ("task", 4, "'task_index' is 3, expected 4"),
    ("quality", "random", "'quality' is 'expert', expected 'random'"),
])
def test_metadata_mismatch(tmp_path, field, value, expected):
  path = tmp_path / "task_03.npz"
  storage.save_task_dataset(path, _dataset())
  with pytest.raises(storage.DatasetError) as e:
    storage.load_task_dataset(path, **{f"expect_{field}": value})
  assert str(path) in str(e.value) and expected in str(e.value)


def _corrupt(arrays, metadata, change):
  kind, name, value = change
  if kind == "drop" and name == "metadata":
    metadata = None
  elif kind == "drop":
    del arrays[name]
  elif kind == "array":
    arrays[name] = value(arrays[name])
  else:
    metadata[name] = value
  return arrays, metadata


@pytest.mark.parametrize("change, message", [
    (("drop", "timeouts", None), "missing array 'timeouts'"),
    (("drop", "metadata", None), "missing array 'metadata'"),
    (("array", "actions", lambda a: a[:2]), "'actions' has shape (2, 5, 2)"),
    (("array", "rewards", lambda a: a[:, :4]), "'rewards' has shape"),
    (("array", "rewards", lambda a: a.astype(np.float64)),
     "'rewards' has dtype float64, expected float32"),
    (("array", "dones", lambda a: a.astype(np.int8)),
     "'dones' has dtype int8, expected bool"),
    (("array", "lengths", lambda a: a + 1), "'lengths'[0] = 6 is out of range"),
    (("array", "lengths", lambda a: a * 0), "'lengths'[0] = 0 is out of range"),
    (("array", "observations", lambda a: a * np.nan), "non-finite"),
    (("meta", "quality", "great"), "'quality' is 'great', expected one of"),
    (("meta", "num_trajectories", 9), "'num_trajectories' is 9, expected 3"),
    (("meta", "state_mean", [0.0]), "'state_mean' has 1 entries, expected 3"),
    (("meta", "task_index", "3"), "'task_index' is '3', expected a int"),
    (("meta", "format_version", 99), "'format_version' is 99"),
])
def test_malformed_files(tmp_path, change, message):
  arrays, metadata = _corrupt(*_raw(_dataset()), change)
  path = tmp_path / "bad.npz"
  _write_raw(path, arrays, metadata)
  with pytest.raises(storage.DatasetError) as e:
    storage.load_task_dataset(path)
  assert str(path) in str(e.value)
  assert message in str(e.value)


def test_save_rejects_bad_dataset(tmp_path):
  dataset = _dataset()
  bad = dataset.replace(metadata=dataclasses.replace(dataset.metadata,
                                                     quality="good"))
  with pytest.raises(storage.DatasetError, match="'quality'"):
    storage.save_task_dataset(tmp_path / "x.npz", bad)
  assert not os.listdir(tmp_path)


def test_load_family_datasets(tmp_path):
  for idx in (0, 2):
    storage.save_task_dataset(
        storage.dataset_path(tmp_path, "cheetah_vel", "medium", idx),
        _dataset(task_index=idx, quality="medium"))
  loaded = loading.load_family_datasets(tmp_path, "cheetah_vel", "medium",
                                        [2, 0])
  assert list(loaded) == [2, 0]
  assert [d.metadata.task_index for d in loaded.values()] == [2, 0]
  # A file stored under the wrong index is caught.
  os.replace(storage.dataset_path(tmp_path, "cheetah_vel", "medium", 2),
             storage.dataset_path(tmp_path, "cheetah_vel", "medium", 5))
  with pytest.raises(storage.DatasetError, match="'task_index' is 2, expected 5"):
    loading.load_family_datasets(tmp_path, "cheetah_vel", "medium", [5])


def test_dimensions_must_be_the_family_s(tmp_path):
  """A dataset with another observation size (e.g. MuJoCo's 20-value cheetah
  against Brax's 17) is refused by name, not by a shape error downstream."""
  family = pdiff.envs.make("point_robot")  # observations 2, actions 2
  good = storage.make_task_dataset(
      _trajectories(state_dim=2, action_dim=2), family="point_robot",
      task_index=0, task_params=[1.0, 0.0], quality="expert", source="t",
      seed=0)
  bad = storage.make_task_dataset(
      _trajectories(state_dim=3, action_dim=2), family="point_robot",
      task_index=1, task_params=[0.0, 1.0], quality="expert", source="t",
      seed=0)
  for idx, d in ((0, good), (1, bad)):
    storage.save_task_dataset(
        storage.dataset_path(tmp_path, "point_robot", "expert", idx), d)
  assert list(loading.load_task_trajectories(family, tmp_path, "expert", [0]))
  path = storage.dataset_path(tmp_path, "point_robot", "expert", 1)
  with pytest.raises(storage.DatasetError,
                     match=rf"{path}.*'observations' has size 3.*has 2"):
    loading.load_task_trajectories(family, tmp_path, "expert", [0, 1])
