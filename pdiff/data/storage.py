"""On-disk format of a task's offline trajectories: one ``.npz`` per file.

A dataset is one (family, task index, quality) triple, stored at
``{root}/{family}/{quality}/task_{idx:02d}.npz``. The file holds the six
arrays of a :class:`~pdiff.types.Trajectories` under their field names
and a ``metadata`` entry: a 0-d unicode array with a JSON object (no pickle, so
files load with ``allow_pickle=False``). Writes are atomic: the file appears
whole or not at all. Loading validates everything and raises
:class:`DatasetError`, whose message names the file and what is wrong.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
import tempfile
import zipfile
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
from flax import struct

from pdiff import __version__
from pdiff.data.normalization import state_statistics
from pdiff.types import Trajectories

FORMAT_VERSION = 1
QUALITIES = ("expert", "medium", "random", "imported")

# Name, dtype and rank of each stored array.
ARRAY_SPECS = {
    "observations": (np.float32, 3),  # [N, T, ds]
    "actions": (np.float32, 3),  # [N, T, da]
    "rewards": (np.float32, 2),  # [N, T]
    "dones": (np.bool_, 2),  # [N, T]
    "timeouts": (np.bool_, 2),  # [N, T]
    "lengths": (np.int32, 1),  # [N]
}
METADATA_KEY = "metadata"

PathLike = str | os.PathLike


class DatasetError(ValueError):
  """A dataset file is missing, unreadable, malformed or not the one expected."""


@dataclasses.dataclass(frozen=True)
class DatasetMetadata:
  """What a dataset file says about itself (all fields hashable, JSON-able).

  Attributes:
    family: task family name, e.g. ``"cheetah_vel"``.
    task_index: index of the task inside its family.
    task_params: the task parameter(s), e.g. ``(1.5,)`` for a target velocity;
      empty when the source does not record them.
    quality: one of ``QUALITIES``.
    seed: seed of the collection run, ``None`` for imported data.
    source: where the data comes from (a policy checkpoint, an imported file).
    state_mean: [ds] state mean over valid steps.
    state_std: [ds] state standard deviation over valid steps (+ 1e-6).
    num_trajectories: N.
    pdiff_version: version of pdiff that wrote the file.
    format_version: version of this file format.
  """

  family: str
  task_index: int
  task_params: tuple[float, ...]
  quality: str
  seed: int | None
  source: str
  state_mean: tuple[float, ...]
  state_std: tuple[float, ...]
  num_trajectories: int
  pdiff_version: str = __version__
  format_version: int = FORMAT_VERSION


@struct.dataclass
class TaskDataset:
  """Trajectories of one task with their metadata (metadata is static)."""

  trajectories: Trajectories  # numpy arrays after loading
  metadata: DatasetMetadata = struct.field(pytree_node=False)


def dataset_path(
    root: PathLike, family: str, quality: str, task_index: int
) -> pathlib.Path:
  """Canonical location ``{root}/{family}/{quality}/task_{idx:02d}.npz``."""
  return pathlib.Path(root) / family / quality / f"task_{int(task_index):02d}.npz"


def make_task_dataset(
    trajectories: Trajectories,
    *,
    family: str,
    task_index: int,
    task_params: Sequence[float],
    quality: str,
    source: str,
    seed: int | None = None,
) -> TaskDataset:
  """Builds a validated ``TaskDataset`` and computes its statistics.

  Arrays are converted to numpy with the stored dtypes and steps beyond each
  length are zeroed, so that padding is always zeros on disk.

  Args:
    trajectories: a padded stack (numpy or jax arrays, any real dtype).
    family: task family name.
    task_index: task index inside the family.
    task_params: task parameter(s) as floats.
    quality: one of ``QUALITIES``.
    source: free-form description of where the data comes from.
    seed: collection seed, ``None`` when unknown.

  Returns:
    The dataset, with state statistics over the valid steps in its metadata.

  Raises:
    DatasetError: if the arrays are inconsistent or a field is invalid.
  """
  where = f"dataset {family}/{quality}/task {task_index}"
  arrays = {}
  for name, (dtype, _) in ARRAY_SPECS.items():
    arrays[name] = np.asarray(getattr(trajectories, name))
    if name in ("observations", "actions", "rewards"):
      arrays[name] = arrays[name].astype(dtype)
  arrays["lengths"] = arrays["lengths"].astype(np.int32)
  arrays["dones"] = arrays["dones"].astype(np.bool_)
  arrays["timeouts"] = arrays["timeouts"].astype(np.bool_)
  _check_arrays(arrays, where)
  valid = np.arange(arrays["rewards"].shape[1]) < arrays["lengths"][:, None]
  for name, value in arrays.items():
    if name != "lengths":
      arrays[name] = np.where(valid.reshape(valid.shape + (1,) * (value.ndim - 2)),
                              value, np.zeros((), value.dtype))
  trajs = Trajectories(**arrays)
  mean, std = state_statistics(trajs)
  metadata = DatasetMetadata(
      family=family,
      task_index=int(task_index),
      task_params=tuple(float(p) for p in task_params),
      quality=quality,
      seed=None if seed is None else int(seed),
      source=source,
      state_mean=tuple(float(m) for m in np.asarray(mean)),
      state_std=tuple(float(s) for s in np.asarray(std)),
      num_trajectories=int(arrays["lengths"].shape[0]),
  )
  _check_metadata(metadata, arrays, where)
  return TaskDataset(trajectories=trajs, metadata=metadata)


def save_task_dataset(path: PathLike, dataset: TaskDataset) -> None:
  """Writes a dataset atomically.

  The data go to a temporary file in the destination directory, are flushed
  and fsync-ed, then renamed over ``path`` with ``os.replace``; a failure at
  any point removes the temporary file and leaves ``path`` untouched.

  Args:
    path: destination file (parent directories are created).
    dataset: the dataset to write; validated first.

  Raises:
    DatasetError: if the dataset is malformed (nothing is written).
  """
  path = pathlib.Path(path)
  arrays = {name: np.asarray(getattr(dataset.trajectories, name))
            for name in ARRAY_SPECS}
  _check_arrays(arrays, str(path))
  _check_metadata(dataset.metadata, arrays, str(path))
  metadata_json = json.dumps(dataclasses.asdict(dataset.metadata))
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp_name = tempfile.mkstemp(
      dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
  try:
    with os.fdopen(fd, "wb") as f:
      np.savez(f, **arrays, **{METADATA_KEY: np.array(metadata_json)})
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp_name, path)
  except BaseException:
    with contextlib.suppress(FileNotFoundError):
      os.unlink(tmp_name)
    raise
  _fsync_directory(path.parent)


def load_task_dataset(
    path: PathLike,
    *,
    expect_family: str | None = None,
    expect_task: int | None = None,
    expect_quality: str | None = None,
) -> TaskDataset:
  """Reads and validates a dataset file.

  Args:
    path: the ``.npz`` file.
    expect_family: if given, the metadata's family must equal it.
    expect_task: if given, the metadata's task index must equal it.
    expect_quality: if given, the metadata's quality must equal it.

  Returns:
    The dataset with numpy arrays.

  Raises:
    DatasetError: on a missing, truncated or corrupt file, a missing array, an
      array of the wrong dtype or shape, lengths out of range, malformed
      metadata, or metadata that differ from the expectation.
  """
  path = pathlib.Path(path)
  where = str(path)
  if not path.is_file():
    raise DatasetError(f"{where}: no such dataset file")
  try:
    with np.load(path, allow_pickle=False) as npz:
      contents = {name: npz[name] for name in npz.files}
  except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
    raise DatasetError(
        f"{where}: cannot read the file (truncated or corrupt): "
        f"{type(e).__name__}: {e}") from e
  for name in (*ARRAY_SPECS, METADATA_KEY):
    if name not in contents:
      raise DatasetError(f"{where}: missing array '{name}' "
                         f"(found {sorted(contents)})")
  arrays = {name: contents[name] for name in ARRAY_SPECS}
  _check_arrays(arrays, where)
  metadata = _parse_metadata(contents[METADATA_KEY], where)
  _check_metadata(metadata, arrays, where)
  expected = {"family": expect_family, "task_index": expect_task,
              "quality": expect_quality}
  for field, value in expected.items():
    if value is not None and getattr(metadata, field) != value:
      raise DatasetError(f"{where}: metadata field '{field}' is "
                         f"{getattr(metadata, field)!r}, expected {value!r}")
  return TaskDataset(trajectories=Trajectories(**arrays), metadata=metadata)


def _check_arrays(arrays: dict[str, np.ndarray], where: str) -> None:
  """Checks dtypes, ranks, consistent shapes and lengths of stored arrays."""
  for name, (dtype, ndim) in ARRAY_SPECS.items():
    value = arrays[name]
    if value.dtype != dtype:
      raise DatasetError(f"{where}: array '{name}' has dtype {value.dtype}, "
                         f"expected {np.dtype(dtype).name}")
    if value.ndim != ndim:
      raise DatasetError(f"{where}: array '{name}' has shape {value.shape}, "
                         f"expected {ndim} dimensions")
  n, t = arrays["observations"].shape[:2]
  for name in ARRAY_SPECS:
    shape = arrays[name].shape
    expected = (n,) if name == "lengths" else (n, t)
    if shape[:len(expected)] != expected:
      raise DatasetError(f"{where}: array '{name}' has shape {shape}, expected "
                         f"leading dimensions {expected} (N, T from 'observations')")
  if n == 0:
    raise DatasetError(f"{where}: no trajectories, expected N >= 1")
  lengths = arrays["lengths"]
  bad = np.flatnonzero((lengths < 1) | (lengths > t))
  if bad.size:
    i = int(bad[0])
    raise DatasetError(f"{where}: 'lengths'[{i}] = {int(lengths[i])} is out of "
                       f"range, expected 1 <= length <= T = {t}")
  valid = np.arange(t) < lengths[:, None]  # [N, T]
  for name in ("observations", "actions", "rewards"):
    value = arrays[name]
    finite = np.isfinite(value).reshape(n, t, -1).all(axis=-1)
    if not finite[valid].all():
      raise DatasetError(f"{where}: array '{name}' has non-finite values on "
                         "valid steps, expected finite floats")
  for name in ("dones", "timeouts"):
    if arrays[name][~valid].any():
      raise DatasetError(f"{where}: array '{name}' is true on padding steps, "
                         "expected false beyond 'lengths'")


def _parse_metadata(raw: np.ndarray, where: str) -> DatasetMetadata:
  """Decodes the JSON metadata entry into a ``DatasetMetadata``."""
  if raw.ndim != 0 or raw.dtype.kind != "U":
    raise DatasetError(f"{where}: '{METADATA_KEY}' has dtype {raw.dtype} and "
                       f"shape {raw.shape}, expected a 0-d unicode JSON string")
  try:
    fields = json.loads(str(raw))
  except json.JSONDecodeError as e:
    raise DatasetError(f"{where}: '{METADATA_KEY}' is not valid JSON: {e}") from e
  if not isinstance(fields, dict):
    raise DatasetError(f"{where}: '{METADATA_KEY}' is a {type(fields).__name__}, "
                       "expected a JSON object")
  names = [f.name for f in dataclasses.fields(DatasetMetadata)]
  missing = [n for n in names if n not in fields]
  if missing:
    raise DatasetError(f"{where}: metadata field(s) {missing} missing")
  try:
    return DatasetMetadata(
        family=_typed(fields, "family", str, where),
        task_index=_typed(fields, "task_index", int, where),
        task_params=tuple(_floats(fields, "task_params", where)),
        quality=_typed(fields, "quality", str, where),
        seed=(None if fields["seed"] is None
              else _typed(fields, "seed", int, where)),
        source=_typed(fields, "source", str, where),
        state_mean=tuple(_floats(fields, "state_mean", where)),
        state_std=tuple(_floats(fields, "state_std", where)),
        num_trajectories=_typed(fields, "num_trajectories", int, where),
        pdiff_version=_typed(fields, "pdiff_version", str, where),
        format_version=_typed(fields, "format_version", int, where),
    )
  except (TypeError, ValueError) as e:
    if isinstance(e, DatasetError):
      raise
    raise DatasetError(f"{where}: malformed metadata: {e}") from e


def _typed(fields: dict[str, Any], name: str, kind: type, where: str) -> Any:
  value = fields[name]
  if not isinstance(value, kind) or isinstance(value, bool):
    raise DatasetError(f"{where}: metadata field '{name}' is {value!r}, "
                       f"expected a {kind.__name__}")
  return value


def _floats(fields: dict[str, Any], name: str, where: str) -> list[float]:
  value = fields[name]
  if not isinstance(value, list) or not all(
      isinstance(v, int | float) and not isinstance(v, bool) for v in value):
    raise DatasetError(f"{where}: metadata field '{name}' is {value!r}, "
                       "expected a list of floats")
  return [float(v) for v in value]


def _check_metadata(
    metadata: DatasetMetadata, arrays: dict[str, np.ndarray], where: str
) -> None:
  """Checks metadata values and their agreement with the arrays."""
  if metadata.quality not in QUALITIES:
    raise DatasetError(f"{where}: metadata field 'quality' is "
                       f"{metadata.quality!r}, expected one of {QUALITIES}")
  if metadata.format_version > FORMAT_VERSION or metadata.format_version < 1:
    raise DatasetError(
        f"{where}: metadata field 'format_version' is {metadata.format_version}, "
        f"expected 1..{FORMAT_VERSION} (written by a newer pdiff?)")
  if metadata.task_index < 0:
    raise DatasetError(f"{where}: metadata field 'task_index' is "
                       f"{metadata.task_index}, expected >= 0")
  n = arrays["lengths"].shape[0]
  if metadata.num_trajectories != n:
    raise DatasetError(f"{where}: metadata field 'num_trajectories' is "
                       f"{metadata.num_trajectories}, expected {n} (arrays)")
  ds = arrays["observations"].shape[-1]
  for name in ("state_mean", "state_std"):
    value = getattr(metadata, name)
    if len(value) != ds:
      raise DatasetError(f"{where}: metadata field '{name}' has {len(value)} "
                         f"entries, expected {ds} (state dimension)")
  if any(not s > 0 for s in metadata.state_std):
    raise DatasetError(f"{where}: metadata field 'state_std' has entries <= 0, "
                       "expected positive standard deviations")


def _fsync_directory(directory: pathlib.Path) -> None:
  """Makes a rename in ``directory`` durable (no-op where unsupported)."""
  try:
    fd = os.open(directory, os.O_RDONLY)
  except OSError:
    return
  try:
    os.fsync(fd)
  except OSError:
    pass
  finally:
    os.close(fd)
