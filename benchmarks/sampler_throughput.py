"""Throughput of the jitted multi-task Prompt-DT batch sampler.

Samples the batch Prompt-DT trains on (16 rows per task x 35 tasks, K = 20
context steps, prompts of K* = 5 steps from J = 1 episode) from synthetic data
shaped like cheetah-vel (ds = 17, da = 6, 20 trajectories of 200 steps per
task), and compares with a per-row numpy loop written like Prompt-DT's
``get_batch``/``get_prompt``.

Usage:
  PYTHONPATH=. python benchmarks/sampler_throughput.py [--iters=200]

Prints the figures and writes benchmarks/results/sampler_throughput.json.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from pdiff.data import samplers
from pdiff.evaluation.report import write_json_atomic
from pdiff.types import Trajectories

_TASKS = flags.DEFINE_integer("tasks", 35, "Number of training tasks M.")
_BATCH = flags.DEFINE_integer("batch_per_task", 16, "Rows per task B.")
_SEQ_LEN = flags.DEFINE_integer("seq_len", 20, "Context length K.")
_PROMPT_LEN = flags.DEFINE_integer("prompt_len", 5, "Prompt steps K*.")
_EPISODES = flags.DEFINE_integer("prompt_episodes", 1, "Prompt episodes J.")
_TRAJS = flags.DEFINE_integer("trajectories", 20, "Trajectories per task N.")
_STEPS = flags.DEFINE_integer("steps", 200, "Steps per trajectory T.")
_STATE_DIM = flags.DEFINE_integer("state_dim", 17, "State dimension ds.")
_ACTION_DIM = flags.DEFINE_integer("action_dim", 6, "Action dimension da.")
_ITERS = flags.DEFINE_integer("iters", 200, "Timed batches of the jitted sampler.")
_NUMPY_ITERS = flags.DEFINE_integer("numpy_iters", 5, "Timed numpy batches.")
_OUT = flags.DEFINE_string(
    "out", os.path.join(os.path.dirname(__file__), "results",
                        "sampler_throughput.json"), "JSON output path.")


def synthetic_tasks(key: jax.Array) -> tuple[Trajectories, jax.Array, jax.Array]:
  """Random trajectories [M, N, T, ...] and per-task statistics [M, ds]."""
  m, n, t = _TASKS.value, _TRAJS.value, _STEPS.value
  k_obs, k_act, k_rew = jax.random.split(key, 3)
  trajs = Trajectories(
      observations=jax.random.normal(k_obs, (m, n, t, _STATE_DIM.value)),
      actions=jax.random.uniform(k_act, (m, n, t, _ACTION_DIM.value),
                                 minval=-1, maxval=1),
      rewards=jax.random.normal(k_rew, (m, n, t)),
      dones=jnp.zeros((m, n, t), bool),
      timeouts=jnp.zeros((m, n, t), bool).at[:, :, -1].set(True),
      lengths=jnp.full((m, n), t, jnp.int32))
  mean = jnp.zeros((m, _STATE_DIM.value))
  std = jnp.ones((m, _STATE_DIM.value))
  return trajs, mean, std


def numpy_reference_batch(rng, trajs, mean, std):
  """One batch built row by row, the way Prompt-DT's numpy code does."""

  def window(obs, act, rew, si, k, mu, sigma):
    s, a, r = obs[si:si + k], act[si:si + k], rew[si:si + k]
    rtg = np.cumsum(rew[si:][::-1])[::-1][:len(s)]
    pad = k - len(s)
    return (np.concatenate([np.zeros((pad, obs.shape[1])), (s - mu) / sigma]),
            np.concatenate([np.full((pad, act.shape[1]), -10.0), a]),
            np.concatenate([np.zeros(pad), r]),
            np.concatenate([np.zeros(pad), rtg]) / 500.0,
            np.concatenate([np.zeros(pad), np.arange(si, si + len(s))]),
            np.concatenate([np.zeros(pad), np.ones(len(s))]))

  rows, prompts = [], []
  for m in range(trajs.lengths.shape[0]):
    for _ in range(_BATCH.value):
      i = rng.integers(trajs.lengths.shape[1])
      length = trajs.lengths[m, i]
      obs, act = trajs.observations[m, i, :length], trajs.actions[m, i, :length]
      rew = trajs.rewards[m, i, :length]
      rows.append(window(obs, act, rew, rng.integers(length), _SEQ_LEN.value,
                         mean[m], std[m]))
      for _ in range(_EPISODES.value):
        j = rng.integers(trajs.lengths.shape[1])
        length = trajs.lengths[m, j]
        si = max(0, length - _PROMPT_LEN.value - 1)
        prompts.append(window(
            trajs.observations[m, j, :length], trajs.actions[m, j, :length],
            trajs.rewards[m, j, :length], si, _PROMPT_LEN.value, mean[m],
            std[m]))
  return [np.stack(x) for x in zip(*rows, strict=True)], [
      np.stack(x) for x in zip(*prompts, strict=True)]


def main(argv):
  del argv
  trajs, mean, std = synthetic_tasks(jax.random.key(0))
  sample = functools.partial(
      samplers.sample_multitask_segments, batch_per_task=_BATCH.value,
      seq_len=_SEQ_LEN.value, prompt_len=_PROMPT_LEN.value,
      num_prompt_episodes=_EPISODES.value, return_scale=500.0, max_ep_len=1000)

  @jax.jit
  def step(key, trajs, mean, std):
    key, sample_key = jax.random.split(key)
    return key, sample(sample_key, trajs, state_mean=mean, state_std=std)

  key = jax.random.key(1)
  start = time.perf_counter()
  key, batch = jax.block_until_ready(step(key, trajs, mean, std))
  compile_s = time.perf_counter() - start
  for _ in range(10):
    key, batch = jax.block_until_ready(step(key, trajs, mean, std))
  start = time.perf_counter()
  for _ in range(_ITERS.value):
    key, batch = jax.block_until_ready(step(key, trajs, mean, std))
  jit_s = (time.perf_counter() - start) / _ITERS.value

  np_trajs = jax.tree.map(np.asarray, trajs)
  np_mean, np_std = np.asarray(mean), np.asarray(std)
  rng = np.random.default_rng(0)
  start = time.perf_counter()
  for _ in range(_NUMPY_ITERS.value):
    numpy_reference_batch(rng, np_trajs, np_mean, np_std)
  numpy_s = (time.perf_counter() - start) / _NUMPY_ITERS.value

  rows = _TASKS.value * _BATCH.value
  segments, prompts = batch
  results = {
      "config": {
          "tasks": _TASKS.value, "batch_per_task": _BATCH.value,
          "seq_len": _SEQ_LEN.value, "prompt_len": _PROMPT_LEN.value,
          "prompt_episodes": _EPISODES.value, "trajectories": _TRAJS.value,
          "steps": _STEPS.value, "state_dim": _STATE_DIM.value,
          "action_dim": _ACTION_DIM.value, "iters": _ITERS.value,
      },
      "segments_shape": list(segments.states.shape),
      "prompts_shape": list(prompts.states.shape),
      "device": str(jax.devices()[0].device_kind),
      "platform": jax.default_backend(),
      "host": platform.processor() or platform.machine(),
      "jax_version": jax.__version__,
      "compile_s": compile_s,
      "jit_ms_per_batch": 1e3 * jit_s,
      "jit_batches_per_s": 1.0 / jit_s,
      "jit_rows_per_s": rows / jit_s,
      "numpy_reference_ms_per_batch": 1e3 * numpy_s,
      "numpy_reference_batches_per_s": 1.0 / numpy_s,
      "speedup_vs_numpy_reference": numpy_s / jit_s,
  }
  print(json.dumps(results, indent=2))
  write_json_atomic(_OUT.value, results)


if __name__ == "__main__":
  app.run(main)
