"""Tests of the mesh, sharding and multi-process helpers."""

import numpy as np
import pytest

from pdiff import parallel


def test_shard_batch_rejects_indivisible_batch():
  mesh = parallel.make_mesh()
  batch = {"states": np.zeros((6, 4, 3)), "mask": np.ones((6, 4))}
  with pytest.raises(ValueError, match="divisible by the number of data-"):
    parallel.shard_batch(batch, mesh)
  sharded = parallel.shard_batch({"mask": np.ones((16, 4))}, mesh)
  assert sharded["mask"].sharding.shard_shape((16, 4)) == (2, 4)


def test_make_mesh_checks_shape():
  mesh = parallel.make_mesh(("data", "model"), shape=(4, 2))
  assert dict(mesh.shape) == {"data": 4, "model": 2}
  assert parallel.data_parallel_size(mesh) == 4
  with pytest.raises(ValueError, match="exactly the 8 devices"):
    parallel.make_mesh(("data",), shape=(3,))
  with pytest.raises(ValueError, match="one size per axis"):
    parallel.make_mesh(("data", "model"), shape=(8,))


def test_replicate_puts_a_copy_on_every_device():
  mesh = parallel.make_mesh()
  tree = parallel.replicate({"w": np.arange(3.0)}, mesh)
  assert tree["w"].sharding.is_fully_replicated
  assert len(tree["w"].sharding.device_set) == 8


def test_initialize_distributed_disabled_is_a_no_op(monkeypatch):
  called = []
  monkeypatch.setattr(parallel.jax.distributed, "initialize",
                      lambda **kwargs: called.append(kwargs))
  parallel.maybe_initialize_distributed(False)
  assert not called


def test_initialize_distributed_reads_environment(monkeypatch):
  called = []
  monkeypatch.setattr(parallel.jax.distributed, "initialize",
                      lambda **kwargs: called.append(kwargs))
  monkeypatch.setenv("JAX_NUM_PROCESSES", "4")
  monkeypatch.setenv("JAX_PROCESS_ID", "2")
  parallel.maybe_initialize_distributed(True, coordinator_address="h:1234")
  assert called == [{"coordinator_address": "h:1234", "num_processes": 4,
                     "process_id": 2, "local_device_ids": None}]
  monkeypatch.setenv("JAX_PROCESS_ID", "two")
  with pytest.raises(ValueError, match="JAX_PROCESS_ID"):
    parallel.maybe_initialize_distributed(True)


def test_initialize_distributed_twice_is_a_no_op(monkeypatch):
  called = []
  monkeypatch.setattr(parallel.jax.distributed, "initialize",
                      lambda **kwargs: called.append(kwargs))
  monkeypatch.setattr(parallel.jax.distributed, "is_initialized",
                      lambda: True)
  parallel.maybe_initialize_distributed(True)
  assert not called
