"""Importers of third-party offline datasets into pdiff's storage format.

* Prompt-DT pickles: ``{env}-{idx}-{mode}.pkl`` (and prompt sets
  ``{env}-{idx}-prompt-{mode}.pkl``), each a list of dicts with
  ``observations`` [T, ds], ``actions`` [T, da], ``rewards`` [T] and
  ``dones`` or ``terminals`` [T] (``next_observations`` is ignored).
* Minari datasets stored locally, read with ``h5py`` directly:
  ``<dataset_dir>/data/main_data.hdf5`` with groups ``episode_{i}`` holding
  ``observations`` [T + 1, ds], ``actions`` [T, da], ``rewards`` [T],
  ``terminations`` [T] and ``truncations`` [T]; ``<dataset_dir>/data/
  metadata.json`` (or ``<dataset_dir>/metadata.json``) is read when present.

Both produce padded ``Trajectories``: every episode ends either with a
terminal step (``dones``) or with a time-limit step (``timeouts``); an episode
whose last step carries neither flag is marked as timed out there.
"""

from __future__ import annotations

import json
import os
import pathlib
import pickle
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pdiff.data.storage import (
    QUALITIES,
    DatasetError,
    TaskDataset,
    dataset_path,
    make_task_dataset,
    save_task_dataset,
)
from pdiff.types import Trajectories

PathLike = str | os.PathLike

# `{env}-{idx}-{mode}.pkl` or `{env}-{idx}-prompt-{mode}.pkl`.
PROMPT_DT_NAME = re.compile(
    r"^(?P<env>.+)-(?P<idx>\d+)-(?P<prompt>prompt-)?(?P<mode>[A-Za-z0-9_]+)\.pkl$")


def parse_prompt_dt_name(path: PathLike) -> tuple[str, int, str, bool]:
  """Splits a Prompt-DT file name into (env, task index, mode, is_prompt).

  Args:
    path: e.g. ``cheetah_vel-3-expert.pkl`` or ``ant_dir-7-prompt-expert.pkl``.

  Returns:
    ``("cheetah_vel", 3, "expert", False)`` for the first example.

  Raises:
    DatasetError: if the name does not follow the pattern.
  """
  name = pathlib.Path(path).name
  match = PROMPT_DT_NAME.match(name)
  if match is None:
    raise DatasetError(
        f"{path}: file name {name!r} does not match Prompt-DT's pattern, "
        "expected '{env}-{task index}-{mode}.pkl' or "
        "'{env}-{task index}-prompt-{mode}.pkl', e.g. 'cheetah_vel-3-expert.pkl'")
  return (match["env"], int(match["idx"]), match["mode"],
          match["prompt"] is not None)


def pad_episodes(
    episodes: Sequence[Mapping[str, np.ndarray]],
    where: str,
    num_steps: int | None = None,
) -> Trajectories:
  """Stacks variable-length episodes into a padded ``Trajectories``.

  Args:
    episodes: dicts with ``observations`` [T, ds], ``actions`` [T, da],
      ``rewards`` [T], ``dones`` [T] and ``timeouts`` [T].
    where: file or dataset name used in error messages.
    num_steps: padded length T; defaults to the longest episode.

  Returns:
    Trajectories as numpy arrays [N, T, ...]; ``timeouts`` is set on the last
    step of an episode that ends with neither flag.

  Raises:
    DatasetError: on empty input, inconsistent lengths or dimensions.
  """
  if not episodes:
    raise DatasetError(f"{where}: no episodes, expected at least one")
  lengths = []
  for i, ep in enumerate(episodes):
    t = ep["observations"].shape[0]
    for name in ("actions", "rewards", "dones", "timeouts"):
      if ep[name].shape[0] != t:
        raise DatasetError(
            f"{where}: episode {i} has {ep[name].shape[0]} '{name}' steps, "
            f"expected {t} (as 'observations')")
    if t < 1:
      raise DatasetError(f"{where}: episode {i} is empty, expected >= 1 step")
    lengths.append(t)
  horizon = max(lengths) if num_steps is None else num_steps
  if max(lengths) > horizon:
    raise DatasetError(f"{where}: an episode has {max(lengths)} steps, "
                       f"expected at most num_steps = {horizon}")
  ds = episodes[0]["observations"].shape[-1]
  da = episodes[0]["actions"].shape[-1]
  n = len(episodes)
  obs = np.zeros((n, horizon, ds), np.float32)
  act = np.zeros((n, horizon, da), np.float32)
  rew = np.zeros((n, horizon), np.float32)
  dones = np.zeros((n, horizon), np.bool_)
  timeouts = np.zeros((n, horizon), np.bool_)
  for i, (ep, t) in enumerate(zip(episodes, lengths, strict=True)):
    for name, dim in (("observations", ds), ("actions", da)):
      if ep[name].ndim != 2 or ep[name].shape[1] != dim:
        raise DatasetError(f"{where}: episode {i} '{name}' has shape "
                           f"{ep[name].shape}, expected [{t}, {dim}]")
    obs[i, :t] = ep["observations"]
    act[i, :t] = ep["actions"]
    rew[i, :t] = ep["rewards"]
    dones[i, :t] = ep["dones"]
    timeouts[i, :t] = ep["timeouts"] & ~ep["dones"]
    if not dones[i, t - 1]:
      timeouts[i, t - 1] = True
  return Trajectories(observations=obs, actions=act, rewards=rew, dones=dones,
                      timeouts=timeouts, lengths=np.asarray(lengths, np.int32))


def read_prompt_dt_pickle(
    path: PathLike, num_steps: int | None = None
) -> Trajectories:
  """Reads one Prompt-DT pickle into padded trajectories.

  Only load pickles from a trusted source: unpickling runs arbitrary code.

  Args:
    path: the ``.pkl`` file (a list of per-episode dicts).
    num_steps: padded length; defaults to the longest episode.

  Returns:
    Trajectories [N, T, ...] as numpy arrays.

  Raises:
    DatasetError: if the file is unreadable or an episode lacks a field.
  """
  where = str(path)
  try:
    with open(path, "rb") as f:
      raw = pickle.load(f)
  except FileNotFoundError as e:
    raise DatasetError(f"{where}: no such file") from e
  except (pickle.UnpicklingError, EOFError, AttributeError, ImportError) as e:
    raise DatasetError(f"{where}: cannot unpickle: {type(e).__name__}: {e}") from e
  if not isinstance(raw, list | tuple):
    raise DatasetError(f"{where}: holds a {type(raw).__name__}, expected a list "
                       "of episode dicts")
  episodes = []
  for i, ep in enumerate(raw):
    if not isinstance(ep, Mapping):
      raise DatasetError(f"{where}: episode {i} is a {type(ep).__name__}, "
                         "expected a dict")
    for name in ("observations", "actions", "rewards"):
      if name not in ep:
        raise DatasetError(f"{where}: episode {i} lacks '{name}' "
                           f"(keys: {sorted(ep)})")
    flag = "dones" if "dones" in ep else "terminals" if "terminals" in ep else None
    if flag is None:
      raise DatasetError(f"{where}: episode {i} lacks 'dones' or 'terminals' "
                         f"(keys: {sorted(ep)})")
    dones = np.asarray(ep[flag]).reshape(-1).astype(np.bool_)
    episodes.append({
        "observations": np.asarray(ep["observations"], np.float32),
        "actions": np.asarray(ep["actions"], np.float32),
        "rewards": np.asarray(ep["rewards"], np.float32).reshape(-1),
        "dones": dones,
        "timeouts": np.zeros_like(dones),
    })
  return pad_episodes(episodes, where, num_steps)


def import_prompt_dt_file(
    src_path: PathLike,
    *,
    family: str,
    task_params: Sequence[float] = (),
    num_steps: int | None = None,
) -> TaskDataset:
  """Converts one Prompt-DT pickle into a ``TaskDataset``.

  The quality is the file's mode when it is one of expert/medium/random, and
  ``"imported"`` otherwise.

  Args:
    src_path: ``{env}-{idx}-{mode}.pkl``.
    family: pdiff family name stored in the metadata.
    task_params: the task's parameter(s); empty when unknown.
    num_steps: padded length; defaults to the longest episode.

  Returns:
    The dataset (not written).
  """
  env, idx, mode, is_prompt = parse_prompt_dt_name(src_path)
  quality = mode if mode in QUALITIES else "imported"
  trajs = read_prompt_dt_pickle(src_path, num_steps)
  kind = "prompt-" if is_prompt else ""
  return make_task_dataset(
      trajs, family=family, task_index=idx, task_params=task_params,
      quality=quality, seed=None,
      source=f"prompt-dt:{pathlib.Path(src_path).name} ({env}, {kind}{mode})")


def import_prompt_dt_dir(
    src_dir: PathLike,
    dst_root: PathLike,
    *,
    family: str,
    env_prefix: str,
    task_params: Mapping[int, Sequence[float]] | None = None,
    prompt_files: bool = False,
    num_steps: int | None = None,
) -> dict[int, pathlib.Path]:
  """Imports every ``{env_prefix}-{idx}-{mode}.pkl`` of a directory.

  Each file is written to ``dataset_path(dst_root, family, quality, idx)``.

  Args:
    src_dir: directory of Prompt-DT pickles (e.g. ``data/cheetah_vel``).
    dst_root: pdiff dataset root.
    family: pdiff family name.
    env_prefix: Prompt-DT env name, e.g. ``"cheetah_vel"``; other files are
      skipped.
    task_params: ``{task index: parameters}``; missing tasks get ``()``.
    prompt_files: import the ``-prompt-`` files instead of the datasets (write
      them under a separate ``dst_root``).
    num_steps: padded length; defaults to each file's longest episode.

  Returns:
    ``{task index: written path}``.

  Raises:
    DatasetError: on a malformed file, two files for the same task and
      quality, or when no file matches.
  """
  src_dir = pathlib.Path(src_dir)
  written: dict[int, pathlib.Path] = {}
  for src in sorted(src_dir.glob(f"{env_prefix}-*.pkl")):
    env, idx, _, is_prompt = parse_prompt_dt_name(src)
    if env != env_prefix or is_prompt != prompt_files:
      continue
    dataset = import_prompt_dt_file(
        src, family=family, task_params=(task_params or {}).get(idx, ()),
        num_steps=num_steps)
    dst = dataset_path(dst_root, family, dataset.metadata.quality, idx)
    if idx in written and written[idx] == dst:
      raise DatasetError(f"{src}: task {idx} already imported to {dst}, "
                         "expected one file per task and quality")
    save_task_dataset(dst, dataset)
    written[idx] = dst
  if not written:
    kind = "prompt " if prompt_files else ""
    raise DatasetError(f"{src_dir}: no Prompt-DT {kind}file for env "
                       f"{env_prefix!r}, expected '{env_prefix}-{{idx}}-"
                       f"{'prompt-' if prompt_files else ''}{{mode}}.pkl'")
  return written


def read_minari_episodes(
    dataset_dir: PathLike, num_steps: int | None = None
) -> tuple[Trajectories, dict[str, Any]]:
  """Reads a locally stored Minari dataset with ``h5py``.

  Args:
    dataset_dir: the dataset's directory (holding ``data/main_data.hdf5``).
    num_steps: padded length; defaults to the longest episode.

  Returns:
    (Trajectories [N, T, ...], the dataset's metadata.json contents or {}).
    The final observation of each episode (``observations[T]``) is dropped.

  Raises:
    DatasetError: if the file is missing or an episode is malformed.
  """
  import h5py  # Optional dependency, needed for Minari only.

  dataset_dir = pathlib.Path(dataset_dir)
  data_file = dataset_dir / "data" / "main_data.hdf5"
  if not data_file.is_file():
    raise DatasetError(f"{data_file}: no such file, expected a Minari dataset "
                       "directory with data/main_data.hdf5")
  where = str(data_file)
  episodes = []
  try:
    with h5py.File(data_file, "r") as f:
      names = [n for n in f if re.fullmatch(r"episode_\d+", n)]
      for name in sorted(names, key=lambda n: int(n.split("_")[1])):
        episodes.append(_read_minari_episode(f[name], f"{where}:{name}"))
      # Older Minari versions keep the metadata in the file's attributes.
      attrs = {k: v.decode() if isinstance(v, bytes) else v
               for k, v in f.attrs.items()}
  except OSError as e:
    raise DatasetError(f"{where}: cannot read HDF5 file: {e}") from e
  info = _read_minari_metadata(dataset_dir) or attrs
  return pad_episodes(episodes, where, num_steps), info


def _read_minari_episode(group: Any, where: str) -> dict[str, np.ndarray]:
  import h5py

  for name in ("observations", "actions", "rewards", "terminations",
               "truncations"):
    if name not in group:
      raise DatasetError(f"{where}: lacks '{name}' (keys: {sorted(group)})")
    if not isinstance(group[name], h5py.Dataset):
      raise DatasetError(f"{where}: '{name}' is a group (dict space), expected "
                         "a flat array")
  rewards = np.asarray(group["rewards"], np.float32).reshape(-1)
  t = rewards.shape[0]
  obs = np.asarray(group["observations"], np.float32)
  if obs.ndim != 2 or obs.shape[0] != t + 1:
    raise DatasetError(f"{where}: 'observations' has shape {obs.shape}, "
                       f"expected [{t + 1}, ds] (one more than 'rewards')")
  actions = np.asarray(group["actions"], np.float32)
  return {
      "observations": obs[:t],
      "actions": actions.reshape(actions.shape[0], -1),
      "rewards": rewards,
      "dones": np.asarray(group["terminations"]).reshape(-1).astype(np.bool_),
      "timeouts": np.asarray(group["truncations"]).reshape(-1).astype(np.bool_),
  }


def _read_minari_metadata(dataset_dir: pathlib.Path) -> dict[str, Any]:
  for candidate in (dataset_dir / "data" / "metadata.json",
                    dataset_dir / "metadata.json"):
    if candidate.is_file():
      try:
        with open(candidate) as f:
          return json.load(f)
      except json.JSONDecodeError as e:
        raise DatasetError(f"{candidate}: not valid JSON: {e}") from e
  return {}


def import_minari(
    dataset_dir: PathLike,
    dst_path: PathLike,
    *,
    family: str,
    task_index: int,
    task_params: Sequence[float],
    quality: str = "imported",
    num_steps: int | None = None,
) -> TaskDataset:
  """Imports a local Minari dataset as one task's dataset and writes it.

  Args:
    dataset_dir: the Minari dataset directory.
    dst_path: destination ``.npz`` (e.g. from :func:`dataset_path`).
    family: pdiff family name.
    task_index: task index inside the family.
    task_params: the task's parameter(s).
    quality: one of ``QUALITIES``.
    num_steps: padded length; defaults to the longest episode.

  Returns:
    The written dataset.
  """
  trajs, info = read_minari_episodes(dataset_dir, num_steps)
  dataset_id = info.get("dataset_id", pathlib.Path(dataset_dir).name)
  dataset = make_task_dataset(
      trajs, family=family, task_index=task_index, task_params=task_params,
      quality=quality, seed=None, source=f"minari:{dataset_id}")
  save_task_dataset(dst_path, dataset)
  return dataset
