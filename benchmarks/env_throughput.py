"""Environment steps per second of every task family and physics backend.

For each (family, backend, batch size) it compiles one function: reset a
batch of episodes (tasks cycled over the family), then ``lax.scan`` over
``--num_steps`` steps of the vmapped ``step`` with uniform random actions.
Compile time is reported apart; steps/s is ``batch * num_steps`` over the
median of ``--repeats`` timed runs (wall time, and CPU time of this process,
which other processes on a shared machine disturb less). It also reports
physics sanity under random actions: whether everything stayed finite, the
torso height range, the mean return and the fraction of episodes that
terminated early.

  python benchmarks/env_throughput.py
  python benchmarks/env_throughput.py --families=ant_dir --backends=mjx \
      --batch_sizes=64

Writes benchmarks/results/env_throughput.json.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from pdiff import envs
from pdiff.evaluation.report import write_json_atomic

_FAMILIES = flags.DEFINE_list(
    "families", [f for f in envs.FAMILIES
                 if f not in ("metaworld_reach", "ant_dir_10")],
    "Task families to measure (metaworld_reach, stepped on the host, has "
    "its own benchmarks/metaworld_throughput.py; ant_dir_10 steps as "
    "ant_dir does).")
_BACKENDS = flags.DEFINE_list(
    "backends", list(envs.BRAX_BACKENDS),
    "Brax backends to measure (point_robot always runs on its own).")
_BATCH_SIZES = flags.DEFINE_list(
    "batch_sizes", ["1", "64", "512"], "Episodes stepped in parallel.")
_NUM_STEPS = flags.DEFINE_integer("num_steps", 200, "Steps per scan.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed runs per setting.")
_OUTPUT = flags.DEFINE_string(
    "output",
    os.path.join(os.path.dirname(__file__), "results", "env_throughput.json"),
    "Where to write the JSON results.")


def make_random_rollout(family: envs.TaskFamily, batch_size: int,
                        num_steps: int):
  """A jitted ``key -> statistics`` stepping ``batch_size`` episodes."""
  task_indices = np.arange(batch_size) % family.num_tasks  # [B]
  is_brax = isinstance(family, envs.BraxTaskFamily)

  def run(key: jax.Array) -> dict[str, jax.Array]:
    reset_key, action_key = jax.random.split(key)
    state = jax.vmap(family.reset)(
        jax.random.split(reset_key, batch_size), family.tasks(task_indices)
    )

    def body(state, step_key):
      action = jax.random.uniform(
          step_key, (batch_size, family.action_size), minval=-1.0, maxval=1.0
      )  # [B, da]
      state = jax.vmap(family.step)(state, action)
      height = (state.pipeline_state.x.pos[:, 0, 2] if is_brax  # [B], torso
                else jnp.zeros((batch_size,)))
      return state, (state.reward, height)

    step_keys = jax.random.split(action_key, num_steps)
    state, (rewards, heights) = jax.lax.scan(body, state, step_keys)
    stats = {
        "finite": jnp.all(jnp.isfinite(state.obs)),
        "mean_return": rewards.sum(axis=0).mean(),
        "terminated_fraction": jnp.mean(
            (state.done > 0) & (state.truncation == 0)
        ),
    }
    if is_brax:
      stats["min_torso_height"] = heights.min()
      stats["max_torso_height"] = heights.max()
    return stats

  return jax.jit(run)


def measure(name: str, backend: str, batch_size: int, num_steps: int,
            repeats: int) -> dict:
  """Times one setting; returns a JSON-ready record."""
  family = envs.make(name, backend=backend)
  run = make_random_rollout(family, batch_size, num_steps)
  start = time.perf_counter()
  stats = jax.block_until_ready(run(jax.random.key(0)))
  compile_s = time.perf_counter() - start
  times, cpu_times = [], []
  for seed in range(1, repeats + 1):
    start, cpu_start = time.perf_counter(), time.process_time()
    stats = jax.block_until_ready(run(jax.random.key(seed)))
    times.append(time.perf_counter() - start)
    cpu_times.append(time.process_time() - cpu_start)
  run_s, cpu_s = statistics.median(times), statistics.median(cpu_times)
  record = {
      "family": family.name,
      "backend": family.backend,
      "batch_size": batch_size,
      "num_steps": num_steps,
      "compile_s": round(compile_s - run_s, 2),
      "run_s": round(run_s, 4),
      "steps_per_s": round(batch_size * num_steps / run_s, 1),
      # CPU seconds of this process (all threads): less sensitive than wall
      # time to other processes sharing the machine.
      "cpu_s": round(cpu_s, 4),
      "steps_per_cpu_s": round(batch_size * num_steps / cpu_s, 1),
      "load_average_1min": round(os.getloadavg()[0], 2),
      **{k: (bool(v) if v.dtype == bool else round(float(v), 4))
         for k, v in stats.items()},
  }
  print(json.dumps(record), flush=True)
  return record


def main(argv):
  del argv
  records = []
  for name in _FAMILIES.value:
    canonical = envs.canonical_name(name)
    backends = envs.FAMILY_BACKENDS[canonical]
    chosen = [b for b in _BACKENDS.value if b in backends] or [backends[0]]
    for batch_size in _BATCH_SIZES.value:
      for backend in chosen:
        records.append(measure(canonical, backend, int(batch_size),
                               _NUM_STEPS.value, _REPEATS.value))
  result = {
      "machine": {
          "platform": platform.platform(),
          "processor": platform.processor(),
          "cpu_count": os.cpu_count(),
          "jax": jax.__version__,
          "device": str(jax.devices()[0]),
      },
      "default_backend": envs.DEFAULT_BACKEND,
      "records": records,
  }
  write_json_atomic(_OUTPUT.value, result)
  print(f"Wrote {_OUTPUT.value}")


if __name__ == "__main__":
  app.run(main)
