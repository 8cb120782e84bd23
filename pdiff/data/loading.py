"""A family's stored datasets as the trainers consume them.

:func:`load_family_datasets` reads one quality of several tasks
(``{root}/{family}/{quality}/task_XX.npz``, each file validated by
:mod:`pdiff.data.storage`); :func:`load_task_trajectories` keeps their
trajectories and :func:`pooled` merges tasks into one stack, e.g. for state
statistics over all training tasks.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import jax

from pdiff.data import storage
from pdiff.data.samplers import stack_tasks
from pdiff.types import Trajectories


def load_family_datasets(
    root: storage.PathLike, family: str, quality: str,
    task_indices: Iterable[int]) -> dict[int, storage.TaskDataset]:
  """Loads the datasets of several tasks of one family, checking each file.

  Args:
    root: dataset root directory.
    family: task family name.
    quality: dataset quality.
    task_indices: task indices to load.

  Returns:
    ``{task_index: dataset}`` in the order given.

  Raises:
    DatasetError: as :func:`pdiff.data.storage.load_task_dataset`, for the
      first bad file.
  """
  return {
      int(idx): storage.load_task_dataset(
          storage.dataset_path(root, family, quality, idx),
          expect_family=family, expect_task=int(idx), expect_quality=quality)
      for idx in task_indices
  }


def load_task_trajectories(family, dataset_root: str, quality: str,
                           task_indices: Iterable[int]
                           ) -> dict[int, Trajectories]:
  """Loads (and validates) one quality's datasets of ``task_indices``.

  Args:
    family: the task family (its ``name`` locates the files).
    dataset_root: root of the datasets.
    quality: dataset quality, e.g. ``"expert"``.
    task_indices: the tasks to load.

  Returns:
    ``{task_index: Trajectories [N, T, ...]}`` in the order given.

  Raises:
    DatasetError: naming the file, for a missing or malformed dataset, or
      one whose observation or action size is not the family's.
  """
  indices = list(task_indices)
  datasets = load_family_datasets(dataset_root, family.name, quality, indices)
  for i, d in datasets.items():
    t = d.trajectories
    for field, got, want in (
        ("observations", t.observations.shape[-1], family.observation_size),
        ("actions", t.actions.shape[-1], family.action_size)):
      if got != want:
        path = storage.dataset_path(dataset_root, family.name, quality, i)
        raise storage.DatasetError(
            f"{path}: field {field!r} has size {got} per step, but "
            f"{family.name} (backend {family.backend}) has {want}; the file "
            "was made for another environment.")
  return {i: d.trajectories for i, d in datasets.items()}


def pooled(trajs: Sequence[Trajectories]) -> Trajectories:
  """Concatenates the trajectories of several tasks into one stack.

  Args:
    trajs: M stacks ``[N_m, T_m, ...]``.

  Returns:
    Trajectories ``[M * max N_m, max T_m, ...]``; the padding trajectories
    added by :func:`pdiff.data.samplers.stack_tasks` have length 0.
  """
  stacked = stack_tasks(trajs)  # [M, N, T, ...]
  return jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), stacked)
