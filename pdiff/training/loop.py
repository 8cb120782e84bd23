"""Prompt-DT pre-training loop: data-parallel, checkpointed, resumable.

Every step's randomness is derived from `(config.seed, step)` with
`jax.random.fold_in`, and the full train state (parameters, optimizer state,
step) is checkpointed, so a run stopped and resumed from a checkpoint produces
exactly the parameters of an uninterrupted run with the same seed.

With several processes (`jax.distributed`), every process draws the same
global batch from the same key and keeps the rows of its own devices
(`pdiff.parallel.shard_batch`): a run on N processes trains on the batches of
a single-process run, and matches it up to float rounding.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable

import jax
import ml_collections
import numpy as np
import tensorboardX
from absl import logging
from jax.sharding import Mesh

from pdiff import parallel
from pdiff.models.prompt_dt import make_prompt_dt
from pdiff.training import checkpointing
from pdiff.training.prompt_dt_step import (
    default_microbatches,
    make_learning_rate_schedule,
    make_optimizer,
    tokens_per_row,
    train_step,
)
from pdiff.training.train_state import (
    TrainState,
    count_params,
    create_train_state,
)
from pdiff.types import Segments

# Training metrics of every log line, one JSON object per line.
METRICS_FILE = "metrics.jsonl"


def read_metrics(workdir: str) -> list[dict]:
  """``{workdir}/metrics.jsonl`` as a list ordered by step; where a resumed
  run logged a step twice, the later line wins. Empty if there is none."""
  path = os.path.join(workdir, METRICS_FILE)
  if not os.path.exists(path):
    return []
  by_step = {}
  with open(path) as f:
    for line in f:
      line = line.strip()
      if not line:
        continue
      try:
        record = json.loads(line)
      except json.JSONDecodeError:
        continue  # a line cut short by a killed run
      by_step[int(record["step"])] = record
  return [by_step[k] for k in sorted(by_step)]

Batch = tuple[Segments, Segments]
SampleBatchFn = Callable[[jax.Array], Batch]


def run_keys(seed: int) -> tuple[jax.Array, jax.Array]:
  """`(init_key, steps_key)` of a run: parameter init, and the root of steps."""
  init, steps = jax.random.split(jax.random.key(seed))
  return init, steps


def step_keys(seed: int, step: int) -> tuple[jax.Array, jax.Array]:
  """Data and dropout keys of one step, a function of `(seed, step)` only.

  Both are the same on every process of a multi-process run: each process
  draws the whole global batch and keeps its own rows. (The data key folds in
  0, the index of the batch's single share, which keeps the batches of
  existing single-process runs, and so their checkpoints, reproducible.)

  Args:
    seed: the run's seed.
    step: the step about to be taken (0-based).

  Returns:
    `(data_key, dropout_key)`.
  """
  step_key = jax.random.fold_in(run_keys(seed)[1], step)
  data_key, dropout_key = jax.random.split(step_key)
  return jax.random.fold_in(data_key, 0), dropout_key


def place_batch(batch: Batch, mesh: Mesh) -> Batch:
  """Shards segments on `data`; shards prompts too, or replicates a batch-1
  prompt shared by all rows."""
  segments, prompts = batch
  segments = parallel.shard_batch(segments, mesh)
  if prompts.mask.shape[0] == 1 and segments.mask.shape[0] > 1:
    prompts = parallel.replicate(prompts, mesh)
  else:
    prompts = parallel.shard_batch(prompts, mesh)
  return segments, prompts


def make_step_fn(mesh: Mesh, init_batch: Batch) -> tuple[Callable, int]:
  """The jitted train step `train` runs: `(state, batch, key) -> (state,
  metrics)`, state donated and replicated over `mesh`.

  Args:
    mesh: device mesh with a `data` axis.
    init_batch: an example global batch (its shapes are used; every
      process holds the whole global batch, see `train`).

  Returns:
    `(step_fn, microbatches)`: the step, and the microbatches it splits each
    batch into (`default_microbatches` for the global batch over the mesh's
    data-parallel devices).
  """
  global_batch = init_batch[0].mask.shape[0]
  microbatches = default_microbatches(
      global_batch, tokens_per_row(init_batch),
      devices=parallel.data_parallel_size(mesh))
  step_fn = jax.jit(functools.partial(train_step, microbatches=microbatches),
                    out_shardings=parallel.replicated_sharding(mesh),
                    donate_argnums=0)
  return step_fn, microbatches


def _check_positive(**values):
  for name, value in values.items():
    if value <= 0:
      raise ValueError(f"{name} must be positive, got {value}")


def train(
    config: ml_collections.ConfigDict,
    sample_batch: SampleBatchFn,
    init_batch: Batch,
    workdir: str,
    *,
    num_steps: int,
    log_every: int = 100,
    ckpt_every: int = 1000,
    mesh: Mesh | None = None,
) -> TrainState:
  """Trains Prompt-DT by masked action MSE, resuming from the latest checkpoint.

  Args:
    config: training config (`get_train_config()` of
      `experiments/configs/pretrain.py`); the model's `state_dim`/`act_dim`
      may be 0 (taken from `init_batch`).
    sample_batch: `key -> (segments [B, K], prompts [B or 1, Kp])`, the
      global batch B; with several processes, every process must draw the
      same batch from the same key (each keeps its devices' rows). Wrap it in
      `jax.jit` when it is pure JAX.
    init_batch: an example `(segments, prompts)` of the same shapes, used to
      initialise the parameters.
    workdir: directory for `config.json`, `checkpoints/`, `tensorboard/` and
      `metrics.jsonl` (one JSON line per log line; a resumed run appends).
    num_steps: train until the state's step reaches this (total, including
      steps done before a resume).
    log_every: steps between console/TensorBoard metric lines.
    ckpt_every: steps between checkpoints; the last step is always saved.
    mesh: device mesh with a `data` axis; all devices by default.

  Returns:
    The final train state (parameters replicated over the mesh).

  Raises:
    ValueError: on bad arguments, or when the global batch size is not
      divisible by the number of data-parallel devices.
  """
  _check_positive(log_every=log_every, ckpt_every=ckpt_every)
  if num_steps < 0:
    raise ValueError(f"num_steps must be >= 0, got {num_steps}")
  mesh = parallel.make_mesh() if mesh is None else mesh
  segments, prompts = init_batch
  global_batch = segments.mask.shape[0]
  parallel.check_batch_divisible(global_batch, mesh, "global batch")

  model = make_prompt_dt(config.model, state_dim=segments.states.shape[-1],
                         act_dim=segments.actions.shape[-1])
  config = ml_collections.ConfigDict(config.to_dict())
  config.model.state_dim = model.state_dim
  config.model.act_dim = model.act_dim
  tx = make_optimizer(config)
  schedule = make_learning_rate_schedule(config)
  is_chief = jax.process_index() == 0
  # A run resumed with another model or optimiser would not fit (or would
  # silently mix) the checkpoints: refuse before writing anything.
  checkpointing.check_config_unchanged(workdir, config)
  if is_chief:
    checkpointing.write_config(workdir, config)

  state = create_train_state(model, tx, run_keys(config.seed)[0], init_batch)
  state = parallel.replicate(state, mesh)
  manager = checkpointing.make_checkpoint_manager(workdir, config.max_to_keep)
  restored = checkpointing.restore_latest_train_state(manager, state)
  if restored is not None:
    state = restored
    logging.info("Resumed from %s at step %d", manager.directory,
                 int(state.step))
  step_fn, microbatches = make_step_fn(mesh, init_batch)
  logging.info("Prompt-DT: %d parameters; global batch %d over %d devices, "
               "%d microbatches per step", count_params(state.params),
               global_batch, parallel.data_parallel_size(mesh), microbatches)
  writer = (tensorboardX.SummaryWriter(
      os.path.join(workdir, checkpointing.TENSORBOARD_SUBDIR))
            if is_chief else None)
  start = int(state.step)
  pending = []  # metrics since the last log line, still on device
  last_time, last_step = time.perf_counter(), start
  try:
    for step in range(start, num_steps):
      data_key, dropout_key = step_keys(config.seed, step)
      batch = place_batch(sample_batch(data_key), mesh)
      state, metrics = step_fn(state, batch, dropout_key)
      pending.append(metrics)
      done = step + 1
      if done % log_every == 0 or done == num_steps:
        means = {k: float(np.mean([m[k] for m in jax.device_get(pending)]))
                 for k in pending[0]}
        now = time.perf_counter()
        rate = (done - last_step) / (now - last_time)
        last_time, last_step, pending = now, done, []
        means["learning_rate"] = float(schedule(step))
        means["steps_per_second"] = rate
        logging.info("step %d: %.2f steps/s, loss %.5f, grad_norm %.4f", done,
                     rate, means["loss"], means["grad_norm"])
        if writer is not None:
          for name, value in means.items():
            writer.add_scalar(f"train/{name}", value, done)
          writer.flush()
          with open(os.path.join(workdir, METRICS_FILE), "a") as f:
            f.write(json.dumps(dict(step=done, **means)) + "\n")
      if done % ckpt_every == 0 or done == num_steps:
        checkpointing.save_train_state(manager, state, force=True)
  finally:
    manager.wait_until_finished()
    manager.close()
    if writer is not None:
      writer.close()
  return state
