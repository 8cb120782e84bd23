"""Whether an XLA flag speeds up Prompt Diffuser's tuning without changing it.

pdiff sets no XLA flags. This script is the measurement behind that choice,
to be repeated when jax is upgraded: for each candidate flag it runs the
library's tuning program (:func:`pdiff.tuning.prompt_diffuser.make_tune_tasks`:
guided fine-tuning, then generation, ``vmap``-ed over test tasks) in a fresh
process with the flag added to ``XLA_FLAGS``, and compares it with a process
without it: the time to compile, the wall and CPU time per task and
fine-tuning step, and whether the tuned prompts are the same bit for bit.
A flag that changes them would change every Prompt Diffuser result, so it
cannot be turned on without recomputing them.

The shapes are ``prompt_generation.py``'s: synthetic few-shot data, a
randomly initialised PLM of the ``cpu`` preset and the default Prompt
Diffuser config (mode ``--mode``, ``--steps`` fine-tuning steps). Every
flag, and the process without flags, runs once per round (``--rounds``);
the fastest round counts, and the rounds without flags show the run-to-run
spread on this machine and that the program is deterministic. A flag this
XLA does not know stops its process; it is recorded as not accepted.

  PYTHONPATH=. python benchmarks/xla_flags.py
  PYTHONPATH=. python benchmarks/xla_flags.py \\
      --flags=--xla_cpu_use_xnnpack=true --steps=10

Writes benchmarks/results/xla_flags.json.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import jax
import numpy as np
from absl import app, flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Flags of XLA:CPU that act on how a program runs rather than what it
# computes (threads, scheduling, kernels, code generation), and fast math,
# which changes what it computes, for comparison.
CANDIDATE_FLAGS = (
    "--xla_cpu_multi_thread_eigen=false",
    "--xla_cpu_enable_concurrency_optimized_scheduler=false",
    "--xla_cpu_use_xnnpack=true",
    "--xla_cpu_use_fusion_emitters=false",
    "--xla_cpu_use_thunk_runtime=false",
    "--xla_cpu_enable_fast_math=true",
)
# What XLA prints before it stops on a flag it does not know.
UNKNOWN_FLAG = "Unknown flag in XLA_FLAGS"

def define_flags() -> None:
  """The command line's flags, defined only when the script runs: tests
  import this module beside other benchmarks, whose flags share names."""
  flags.DEFINE_list("flags", list(CANDIDATE_FLAGS),
                    "XLA flags to try, one process each.")
  flags.DEFINE_enum("mode", "projection",
                    ["dm_only", "dt_only", "sum", "projection"],
                    "Prompt Diffuser's gradient combination.")
  flags.DEFINE_integer("steps", 30, "Fine-tuning steps per task.")
  flags.DEFINE_integer("tasks", 5, "Test tasks tuned in one program.")
  flags.DEFINE_integer(
      "repeats", 3, "Timed runs of the compiled program; the fastest counts.")
  flags.DEFINE_integer(
      "rounds", 2, "Rounds over every flag (the process without flags "
      "included), one after the other: each flag's fastest round counts, "
      "and the rounds without flags give the run-to-run spread.")
  flags.DEFINE_string(
      "worker_output", None,
      "Internal: run one measurement in this process and write it here.")
  flags.DEFINE_string(
      "output", os.path.join(REPO, "benchmarks", "results", "xla_flags.json"),
      "Where to write the JSON results.")


def measure(mode: str, steps: int, num_tasks: int, repeats: int, *,
            tiny: bool = False) -> tuple[dict, dict[str, np.ndarray]]:
  """Compiles and times the tuning program in this process.

  Args:
    mode: Prompt Diffuser's ``mode``.
    steps: fine-tuning steps per task.
    num_tasks: tasks tuned at once (the leading axis of the program).
    repeats: timed runs after a first, untimed one.
    tiny: the tests' sizes (the ``tiny`` presets' PLM and denoiser, short
      trajectories) instead of the ``cpu`` PLM and the default config.

  Returns:
    The timings (``compile_s``; ``wall_s`` and ``cpu_s`` of the fastest run,
    the CPU time of this process, XLA's threads included; per task and step
    in ms) and the tuned prompts' arrays by name.
  """
  from benchmarks import guided_step
  from experiments.configs import prompt_diffuser as prompt_diffuser_config
  from experiments.configs import tuning as tuning_config
  from pdiff.tuning import prompt_diffuser as pd

  ds, da, length = 17, 6, (20 if tiny else 200)
  k_plm, k_train, k_few, k_init, k_tune = jax.random.split(jax.random.key(0), 5)
  plm = guided_step.random_plm(k_plm, ds, da, "tiny" if tiny else "cpu")
  train = guided_step.synthetic_trajectories(k_train, 20, length, ds, da)
  few_shot = jax.vmap(
      lambda k: guided_step.synthetic_trajectories(k, 5, length, ds, da))(
          jax.random.split(k_few, num_tasks))
  config = prompt_diffuser_config.get_config()
  if tiny:
    for field, value in tuning_config.TINY.items():
      if field in config:
        config[field] = value
  config.mode, config.finetune_steps = mode, steps
  model, params = pd.make_prompt_diffuser(plm, train, config, k_init)
  keys = jax.random.split(k_tune, num_tasks)
  tune = pd.make_tune_tasks(model, plm, config)

  start = time.perf_counter()
  compiled = tune.lower(params, few_shot, keys).compile()
  compile_s = time.perf_counter() - start
  prompts, _ = jax.block_until_ready(compiled(params, few_shot, keys))
  runs = []
  for _ in range(repeats):
    wall, cpu = time.perf_counter(), time.process_time()
    jax.block_until_ready(compiled(params, few_shot, keys))
    runs.append((time.perf_counter() - wall, time.process_time() - cpu))
  wall_s, cpu_s = min(runs)
  per_step = 1e3 / (num_tasks * max(steps, 1))
  timings = {"compile_s": compile_s, "wall_s": wall_s, "cpu_s": cpu_s,
             "wall_ms_per_task_step": wall_s * per_step,
             "cpu_ms_per_task_step": cpu_s * per_step,
             "wall_s_runs": [w for w, _ in runs]}
  arrays = {f"prompt_{name}": np.asarray(x)
            for name, x in zip(prompts._fields, prompts, strict=True)}
  return timings, arrays


def compare(base: dict[str, np.ndarray], other: dict[str, np.ndarray]
            ) -> tuple[bool, float]:
  """Whether two measurements' arrays are equal bit for bit, and their
  largest absolute difference.

  Raises:
    ValueError: if they do not hold the same arrays with the same shapes.
  """
  if base.keys() != other.keys():
    raise ValueError(f"compare: arrays {sorted(base)} against "
                     f"{sorted(other)}.")
  same, largest = True, 0.0
  for name, a in base.items():
    b = other[name]
    if a.shape != b.shape or a.dtype != b.dtype:
      raise ValueError(f"compare: {name} is {a.dtype}{list(a.shape)} against "
                       f"{b.dtype}{list(b.shape)}.")
    same &= a.tobytes() == b.tobytes()
    diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
    largest = max(largest, float(np.max(diff, initial=0.0)))
  return bool(same), largest


def with_flag(environ: dict[str, str], flag: str | None) -> dict[str, str]:
  """``environ`` with ``flag`` appended to its ``XLA_FLAGS`` (and the
  repository on ``PYTHONPATH``)."""
  env = dict(environ)
  if flag:
    env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {flag}".strip()
  env["PYTHONPATH"] = os.pathsep.join(
      p for p in (REPO, env.get("PYTHONPATH")) if p)
  return env


def run_process(flag: str | None, workdir: str, name: str, args: list[str]
                ) -> tuple[dict, dict[str, np.ndarray] | None]:
  """One measurement in a fresh process with ``flag`` added.

  Returns:
    Its timings (or ``{"accepted": False}`` when XLA does not know the
    flag) and its arrays (None then).

  Raises:
    RuntimeError: if the process fails otherwise, with its last output.
  """
  out = os.path.join(workdir, name)
  proc = subprocess.run(
      [sys.executable, os.path.abspath(__file__), f"--worker_output={out}",
       *args], env=with_flag(os.environ, flag), capture_output=True,
      text=True, check=False)
  if proc.returncode != 0:
    if UNKNOWN_FLAG in proc.stderr:
      return {"accepted": False}, None
    raise RuntimeError(f"xla_flags: the process with {flag or 'no flag'} "
                       f"failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
  with open(out + ".json") as f:
    timings = json.load(f)
  with np.load(out + ".npz") as data:
    arrays = {k: data[k] for k in data.files}
  return {"accepted": True, **timings}, arrays


def summarise(flag: str | None, measured: list[dict],
              base: dict | None) -> dict:
  """A flag's row from its measurements, one per round.

  Args:
    flag: the flag, None for the process without flags.
    measured: per round, :func:`run_process`'s timings with ``same_prompts``
      and ``max_abs_diff`` against the first process without flags (none for
      that process itself).
    base: the row without flags (None when ``flag`` is None).

  Returns:
    The fastest round's timings (by CPU time, the steadier on a shared
    machine), ``same_prompts`` (in every round), the largest difference and
    every round's timings; with ``base``, the CPU and wall time relative to
    its fastest round.
  """
  if not measured[0]["accepted"]:
    return {"flag": flag, "accepted": False}
  best = min(measured, key=lambda m: m["cpu_s"])
  row = {"flag": flag, "accepted": True,
         **{k: best[k] for k in ("compile_s", "wall_s", "cpu_s",
                                 "wall_ms_per_task_step",
                                 "cpu_ms_per_task_step")},
         "rounds": [{k: m[k] for k in ("compile_s", "wall_s", "cpu_s",
                                       "load_average_1min")}
                    for m in measured]}
  compared = [m for m in measured if "same_prompts" in m]
  if compared:
    row["same_prompts"] = all(m["same_prompts"] for m in compared)
    row["max_abs_diff"] = max(m["max_abs_diff"] for m in compared)
  if base is not None:
    row["cpu_vs_no_flag"] = row["cpu_s"] / base["cpu_s"]
    row["wall_vs_no_flag"] = row["wall_s"] / base["wall_s"]
  return row


def main(argv):
  del argv
  F = flags.FLAGS  # noqa: N806
  if min(F.steps, F.tasks, F.repeats, F.rounds) < 1:
    raise ValueError("--steps, --tasks, --repeats and --rounds must be >= 1.")
  if F.worker_output:
    timings, arrays = measure(F.mode, F.steps, F.tasks,
                              F.repeats)
    np.savez(F.worker_output + ".npz", **arrays)
    with open(F.worker_output + ".json", "w") as f:
      json.dump(timings, f)
    return
  args = [f"--mode={F.mode}", f"--steps={F.steps}",
          f"--tasks={F.tasks}", f"--repeats={F.repeats}"]
  load_before = os.getloadavg()
  runs = [None, *F.flags]
  measured = {flag: [] for flag in runs}
  base_arrays = None
  with tempfile.TemporaryDirectory() as workdir:
    for r in range(F.rounds):
      for i, flag in enumerate(runs):
        print(f"[round {r + 1}/{F.rounds}, {i + 1}/{len(runs)}] "
              f"{flag or 'no flag'} ...", flush=True)
        if measured[flag] and not measured[flag][0]["accepted"]:
          print("    not accepted by this XLA", flush=True)
          continue
        timings, arrays = run_process(flag, workdir, f"run{r}_{i}", args)
        timings["load_average_1min"] = round(os.getloadavg()[0], 2)
        if base_arrays is None:
          base_arrays = arrays
        elif arrays is not None:
          same, diff = compare(base_arrays, arrays)
          timings.update(same_prompts=same, max_abs_diff=diff)
        measured[flag].append(timings)
        if not timings["accepted"]:
          print("    not accepted by this XLA", flush=True)
          continue
        print(f"    compile {timings['compile_s']:.1f} s, "
              f"{timings['wall_ms_per_task_step']:.2f} ms per task and step "
              f"(CPU {timings['cpu_ms_per_task_step']:.2f})"
              + ("" if "same_prompts" not in timings else
                 f", same prompts: {timings['same_prompts']}"), flush=True)
  base = summarise(None, measured[None], None)
  rows = [base] + [summarise(f, measured[f], base) for f in F.flags]
  result = {
      "benchmark": "xla_flags",
      "program": "pdiff.tuning.prompt_diffuser.make_tune_tasks",
      "mode": F.mode, "finetune_steps": F.steps,
      "tasks": F.tasks, "repeats": F.repeats,
      "rounds": F.rounds,
      "machine": {
          "processor": platform.processor() or platform.machine(),
          "cpu_count": os.cpu_count(), "jax_version": jax.__version__,
          "xla_flags_of_the_environment": os.environ.get("XLA_FLAGS", ""),
          "load_average_before": [round(x, 2) for x in load_before],
          "load_average_after": [round(x, 2) for x in os.getloadavg()],
      },
      "rows": rows,
  }
  from pdiff.evaluation.report import write_json_atomic
  write_json_atomic(F.output, result)
  print(f"wrote {F.output}")


if __name__ == "__main__":
  define_flags()
  app.run(main)
