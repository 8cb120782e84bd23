"""One process of the multi-process pre-training test.

Pre-trains the ``point_robot,tiny`` Prompt-DT with
``pdiff.training.pretrain.pretrain`` (what ``experiments/pretrain.py`` runs)
for a few steps and writes the final parameters, the rows of a probe batch
this process held, and the device layout::

  JAX_PLATFORMS=cpu XLA_FLAGS=--xla_force_host_platform_device_count=1 \\
  JAX_COORDINATOR_ADDRESS=127.0.0.1:12345 JAX_NUM_PROCESSES=2 \\
  JAX_PROCESS_ID=0 python -m tests.training.multiprocess_pretrain \\
      --distributed --dataset_root=D --workdir=W --out=P0

(and the same with ``JAX_PROCESS_ID=1``). Without ``--distributed`` it is an
ordinary single-process run. ``--out`` receives ``params.npz`` (one array per
parameter, keyed by its path) and ``info.json``.
"""

import argparse
import json
import os
import sys

import jax
import numpy as np

from experiments.configs import pretrain as pretrain_configs
from pdiff import envs, parallel

FAMILY = "point_robot"
QUALITY = "random"


def tiny_config(num_steps: int):
  """The ``tiny`` preset, trained ``num_steps`` steps on random data."""
  config = pretrain_configs.get_config(f"{FAMILY},tiny")
  config.quality = QUALITY
  config.num_steps = num_steps
  config.log_every = 1
  config.ckpt_every = num_steps
  config.eval_episodes = 0
  return config


def flat_params(params) -> dict[str, np.ndarray]:
  """``{path: array}`` of a parameter pytree, as written to params.npz."""
  return {jax.tree_util.keystr(path): np.asarray(leaf)
          for path, leaf in jax.tree_util.tree_leaves_with_path(params)}


def probe_rows(mesh) -> list[int]:
  """Shards a global probe batch and returns the rows this process holds,
  after checking that each local device got its own rows of the batch."""
  rows = 2 * jax.device_count()
  probe = np.arange(rows * 3, dtype=np.float32).reshape(rows, 3)
  placed = parallel.shard_batch(probe, mesh)
  assert placed.shape == probe.shape, placed.shape
  held = []
  for shard in placed.addressable_shards:
    np.testing.assert_array_equal(np.asarray(shard.data), probe[shard.index])
    held.extend(range(rows)[shard.index[0]])
  return sorted(held)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--distributed", action="store_true",
                      help="initialise jax.distributed from JAX_* variables")
  parser.add_argument("--dataset_root", required=True)
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--out", required=True)
  parser.add_argument("--num_steps", type=int, default=3)
  args = parser.parse_args()

  # pdiff does not use torch, which tensorboardX imports when it is installed
  # (seconds of CPU per process): keep it out of this short-lived process.
  sys.modules.setdefault("torch", None)
  from pdiff.training import pretrain as pretrain_lib

  parallel.maybe_initialize_distributed(args.distributed)
  mesh = parallel.make_mesh()
  plm = pretrain_lib.pretrain(tiny_config(args.num_steps), envs.make(FAMILY),
                              args.dataset_root, args.workdir, mesh=mesh)
  os.makedirs(args.out, exist_ok=True)
  np.savez(os.path.join(args.out, "params.npz"), **flat_params(plm.params))
  info = dict(process_index=jax.process_index(),
              process_count=jax.process_count(),
              device_count=jax.device_count(),
              local_device_count=jax.local_device_count(),
              probe_rows=probe_rows(mesh))
  with open(os.path.join(args.out, "info.json"), "w") as f:
    json.dump(info, f)


if __name__ == "__main__":
  main()
