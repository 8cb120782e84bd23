"""Device mesh and sharding helpers for data-parallel execution.

The library runs data-parallel: a `jax.sharding.Mesh` with a `data` axis over
all devices (of all processes), batches split along their leading axis on
`data`, parameters and optimizer state replicated. A jitted step given inputs
with these shardings runs on every device at once, and XLA inserts the
gradient all-reduce.

Multi-host (several processes, e.g. a TPU pod slice or a GPU cluster): call
`maybe_initialize_distributed(True)` first thing in every process, then build
the mesh as usual. Every process then passes the same global batch to
`shard_batch` (draw it with the same key everywhere), which keeps on each
process only the rows of its own devices; `replicate` likewise expects the
same values on every process. A run therefore computes the same thing
whatever the number of processes: only the number of devices on the mesh
changes how the work is split (and the float rounding of the reductions).
On CPU the processes exchange data through Gloo, the default of JAX's
`jax_cpu_collectives_implementation` option: nothing to configure.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def maybe_initialize_distributed(
    enabled: bool,
    *,
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    local_device_ids: Sequence[int] | None = None,
) -> None:
  """Starts JAX's multi-process runtime when `enabled`.

  Must run before any other JAX computation in the process; does nothing if
  the runtime is already started (the launchers start it before parsing
  their flags, since loading a config may use JAX). On Cloud TPU,
  Slurm and Open MPI every argument may be left out: JAX detects them. On other
  clusters, give them as arguments or through environment variables:

  * `JAX_COORDINATOR_ADDRESS`: `host:port` of process 0 (read by JAX).
  * `JAX_NUM_PROCESSES`: number of processes (read here).
  * `JAX_PROCESS_ID`: this process's index in `[0, JAX_NUM_PROCESSES)` (read
    here).
  * `JAX_LOCAL_DEVICE_IDS`: comma-separated local devices to use (read by
    JAX).

  Args:
    enabled: when false, does nothing (single-process run).
    coordinator_address: `host:port` of process 0.
    num_processes: number of processes.
    process_id: index of this process.
    local_device_ids: local devices visible to this process.

  Raises:
    ValueError: if `JAX_NUM_PROCESSES` or `JAX_PROCESS_ID` is not an integer.
  """
  if not enabled or jax.distributed.is_initialized():
    return
  for name in ("JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
    value = os.environ.get(name)
    if value is not None and not value.strip().isdigit():
      raise ValueError(f"environment variable {name} must be a non-negative "
                       f"integer, got {value!r}")
  if num_processes is None and "JAX_NUM_PROCESSES" in os.environ:
    num_processes = int(os.environ["JAX_NUM_PROCESSES"])
  if process_id is None and "JAX_PROCESS_ID" in os.environ:
    process_id = int(os.environ["JAX_PROCESS_ID"])
  jax.distributed.initialize(
      coordinator_address=coordinator_address,
      num_processes=num_processes,
      process_id=process_id,
      local_device_ids=local_device_ids,
  )
  logging.info("JAX distributed: process %d of %d, %d local / %d devices",
               jax.process_index(), jax.process_count(),
               jax.local_device_count(), jax.device_count())


def make_mesh(
    axis_names: Sequence[str] = (DATA_AXIS,),
    devices: Sequence[jax.Device] | None = None,
    shape: Sequence[int] | None = None,
) -> Mesh:
  """Builds a device mesh.

  Args:
    axis_names: mesh axis names.
    devices: devices to use; all devices of all processes by default.
    shape: mesh shape, one size per axis; by default all devices on the first
      axis and 1 on the others.

  Returns:
    The mesh.

  Raises:
    ValueError: if `shape` does not match `axis_names` or the device count.
  """
  devices = list(jax.devices() if devices is None else devices)
  if shape is None:
    shape = (len(devices),) + (1,) * (len(axis_names) - 1)
  if len(shape) != len(axis_names):
    raise ValueError(f"mesh shape {tuple(shape)} must have one size per axis "
                     f"name {tuple(axis_names)}")
  if int(np.prod(shape)) != len(devices):
    raise ValueError(f"mesh shape {tuple(shape)} must hold exactly the "
                     f"{len(devices)} devices")
  return Mesh(np.asarray(devices).reshape(shape), tuple(axis_names))


def data_sharding(mesh: Mesh) -> NamedSharding:
  """Sharding that splits the leading (batch) axis over the `data` axis."""
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated_sharding(mesh: Mesh) -> NamedSharding:
  """Sharding that keeps a full copy on every device."""
  return NamedSharding(mesh, PartitionSpec())


def data_parallel_size(mesh: Mesh) -> int:
  """Number of batch shards: the size of the mesh's `data` axis."""
  if DATA_AXIS not in mesh.shape:
    raise ValueError(f"mesh must have a {DATA_AXIS!r} axis, got axes "
                     f"{tuple(mesh.axis_names)}")
  return mesh.shape[DATA_AXIS]


def check_batch_divisible(batch_size: int, mesh: Mesh, what: str = "batch"):
  """Raises a ValueError unless `batch_size` splits evenly over `data`."""
  shards = data_parallel_size(mesh)
  if batch_size % shards:
    raise ValueError(
        f"{what} size {batch_size} must be divisible by the number of "
        f"data-parallel devices ({shards})")


def _from_global(x: Any, sharding: NamedSharding) -> jax.Array:
  """A global array with `sharding` from the full value `x` held by every
  process; each process copies only the slices of its own devices."""
  x = np.asarray(x)
  return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])


def shard_batch(batch: Any, mesh: Mesh) -> Any:
  """Places a global batch on the mesh, split on its leading axis.

  Every leaf holds the whole global batch on axis 0. In a single process it
  is copied to the devices with `jax.device_put`. With several processes,
  every process must pass the same values (draw the batch with the same key
  on every process; this is not checked): each one copies to its own devices
  only their rows, through `jax.make_array_from_callback`. Drawing the whole
  batch on every process costs little next to a training step and makes the
  batch, hence the run, independent of how the devices are spread over
  processes.

  Args:
    batch: pytree of [B, ...] arrays, B the global batch size.
    mesh: mesh with a `data` axis.

  Returns:
    The same pytree of global [B, ...] `jax.Array`s, split over `data`.

  Raises:
    ValueError: if a leaf's batch does not split over `data`.
  """
  sharding = data_sharding(mesh)

  def put(x):
    check_batch_divisible(np.shape(x)[0], mesh)
    if jax.process_count() == 1:
      x = np.asarray(x) if not isinstance(x, jax.Array) else x
      return jax.device_put(x, sharding)
    return _from_global(x, sharding)

  return jax.tree.map(put, batch)


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Places a full copy of every leaf of `tree` on every device of `mesh`.

  With several processes, every process must pass the same values (not
  checked); each copies them to its own devices.
  """
  sharding = replicated_sharding(mesh)
  if jax.process_count() == 1:
    return jax.device_put(tree, sharding)
  return jax.tree.map(lambda x: _from_global(x, sharding), tree)
