"""Env steps per second of Meta-World reach: one env alone, batched, prompted.

Meta-World steps on the host (``pdiff.envs.metaworld_reach``): its physics,
reward and success are its own Python code, called once per step for the
whole batch of episodes from inside the jitted rollout. This times:

  single    Meta-World's own environment (as Prompt-DT builds it:
            ``ML1("reach-v3", seed=1)``, ``set_task``) stepped in a Python
            loop with uniform random actions: the anchor
  env       pdiff's family, ``tasks x episodes`` episodes stepped together
            (``jax.jit`` of a ``lax.scan`` over ``jax.vmap(family.step)``)
  rollout   the prompted Prompt-DT rollout of ``pdiff.evaluation`` on the
            same batch (a randomly initialised model at the ``cpu``
            pre-training preset's shape; a trained one costs the same)

Each setting is timed twice in the same run: with the batch stepped in this
process (``PDIFF_HOST_WORKERS=1``: the record's plain fields) and split over
host worker processes (``--pool_workers``, default ``auto``: the fields
ending in ``_pool``; ``workers`` is how many the batch got, ``pool_start_s``
the time to start them, which the timed runs leave out). Compile times are
reported apart; run times are the fastest of ``--timed_runs`` (the least
disturbed on a shared machine).

  PYTHONPATH=. python benchmarks/metaworld_throughput.py
  PYTHONPATH=. python benchmarks/metaworld_throughput.py --settings=5x20

Writes benchmarks/results/metaworld_throughput.json. Needs the ``metaworld``
extra.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import sys
import time

import jax
import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(__file__))
import evaluation_throughput as evaluation  # noqa: E402

from pdiff import envs  # noqa: E402
from pdiff.envs import host_pool, metaworld_reach  # noqa: E402
from pdiff.evaluation.report import write_json_atomic  # noqa: E402

_SETTINGS = flags.DEFINE_list(
    "settings", ["1x1", "5x4", "5x20"],
    "Settings as TASKSxEPISODES (tasks cycle over the test tasks).")
_EPISODE_STEPS = flags.DEFINE_integer(
    "episode_steps", 100, "Steps per episode (Meta-World's own episodes: 500).")
_SINGLE_STEPS = flags.DEFINE_integer(
    "single_steps", 2000, "Steps of the single-env anchor per repeat.")
_TIMED_RUNS = flags.DEFINE_integer("timed_runs", 3, "Timed runs per program.")
_PRESET = flags.DEFINE_string("model_preset", "cpu", "Model shape (pretrain preset).")
_POOL_WORKERS = flags.DEFINE_string(
    "pool_workers", "auto",
    f"{host_pool.ENV_VAR} for the timings with host workers (a positive "
    "integer or auto: the available cores, capped by the batch).")
_JSON_OUTPUT = flags.DEFINE_string(
    "json_output", os.path.join(os.path.dirname(__file__), "results",
                           "metaworld_throughput.json"),
    "Where to write the JSON results.")


def measure_single(num_steps: int, repeats: int) -> dict:
  """Meta-World's own env in a Python loop (resets every 500 steps)."""
  metaworld, _ = metaworld_reach.import_metaworld()
  ml1 = metaworld.ML1(metaworld_reach.ENV_NAME, seed=1)
  env = ml1.train_classes[metaworld_reach.ENV_NAME]()
  env.set_task(ml1.train_tasks[0])
  rng = np.random.default_rng(0)
  actions = rng.uniform(-1, 1, (num_steps, metaworld_reach.ACTION_SIZE))
  times = []
  for _ in range(repeats):
    env.reset()
    start = time.perf_counter()
    for t in range(num_steps):
      if env.curr_path_length >= env.max_path_length:
        env.reset()
      env.step(actions[t])
    times.append(time.perf_counter() - start)
  return {"single_env_steps": num_steps,
          "single_steps_per_s": round(num_steps / min(times), 1)}


def measure_setting(family, num_tasks: int, num_episodes: int) -> dict:
  """The batched env and the rollout, timed under the current
  ``PDIFF_HOST_WORKERS``; the host workers are started before the timing."""
  batch = num_tasks * num_episodes
  indices = np.resize(np.asarray(family.test_tasks), batch)
  start = time.perf_counter()
  metaworld_reach.worker_pool(family.task_values).run("reset", indices)
  pool_start_s = time.perf_counter() - start
  env_timing = evaluation.measure_env(family, num_tasks, num_episodes,
                                      _EPISODE_STEPS.value, _TIMED_RUNS.value)
  record = evaluation.measure(family, _PRESET.value, num_tasks,
                              num_episodes, _EPISODE_STEPS.value,
                              _TIMED_RUNS.value, env_timing, time_policy=False)
  record["workers"] = host_pool.workers_for(batch)
  record["pool_start_s"] = round(pool_start_s, 2)
  return record


def main(argv):
  del argv
  family = dataclasses.replace(envs.make("metaworld_reach"),
                               episode_length=_EPISODE_STEPS.value)
  single = measure_single(_SINGLE_STEPS.value, _TIMED_RUNS.value)
  print(json.dumps(single), flush=True)
  records = []
  for text in _SETTINGS.value:
    num_tasks, num_episodes = evaluation.parse_batch(text)
    os.environ[host_pool.ENV_VAR] = "1"
    record = measure_setting(family, num_tasks, num_episodes)
    os.environ[host_pool.ENV_VAR] = _POOL_WORKERS.value
    pool = measure_setting(family, num_tasks, num_episodes)
    for name in ("env", "rollout"):
      for field in ("run_s", "steps_per_s"):
        record[f"{name}_{field}_pool"] = pool[f"{name}_{field}"]
      record[f"{name}_pool_over_in_process"] = round(
          pool[f"{name}_steps_per_s"] / record[f"{name}_steps_per_s"], 2)
      for suffix in ("", "_pool"):
        record[f"{name}{suffix}_over_single"] = round(
            record[f"{name}_steps_per_s{suffix}"]
            / single["single_steps_per_s"], 2)
    record["workers"] = pool["workers"]
    record["pool_start_s"] = pool["pool_start_s"]
    print(json.dumps({k: v for k, v in record.items()
                      if "pool" in k or k == "workers"}), flush=True)
    records.append(record)
  meta = {
      "jax": jax.__version__, "devices": str(jax.devices()),
      "cpu_count": os.cpu_count(),
      "available_cores": host_pool.available_cores(),
      "pool_workers": _POOL_WORKERS.value, "platform": platform.platform(),
      "python": platform.python_version(),
      "load_average_1min": round(os.getloadavg()[0], 2),
      **single,
  }
  write_json_atomic(_JSON_OUTPUT.value, {"meta": meta, "records": records})
  print(f"wrote {_JSON_OUTPUT.value}")


if __name__ == "__main__":
  app.run(main)
