"""Throughput of the Prompt-DT train step at Prompt-DT's training shape.

Shape: global batch 560 (16 segments x 35 training tasks), K = 20 context
steps, K* = 5 prompt steps, embed 128, 3 layers, 1 head, MLP 512, ds = 17,
da = 6, dropout on; a synthetic batch (the data pipeline is not timed).

Three runs, each in its own subprocess because the number of (forced host)
devices is fixed when JAX starts:

  plain      1 device, the jitted `train_step` without a mesh
  sharded_1  1 device, the data-parallel step over a 1-device mesh
  sharded_8  8 forced host devices, the data-parallel step over an 8-way mesh

Usage:
  PYTHONPATH=. python benchmarks/train_step.py [--steps 5]

Prints a table and writes benchmarks/results/train_step.json. On a CPU, the
8 forced host devices share the same cores, so `sharded_8` measures the
overhead of the sharded program, not a speed-up.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

BATCH, STEPS, PROMPT_STEPS, STATE_DIM, ACT_DIM = 560, 20, 5, 17, 6
RUNS = {"plain": (1, False), "sharded_1": (1, True), "sharded_8": (8, True)}
RESULTS = os.path.join(os.path.dirname(__file__), "results", "train_step.json")


def synthetic_batch(key, batch: int, steps: int):
  """Random `Segments` of the benchmark shape, all steps real."""
  import jax
  import jax.numpy as jnp

  from pdiff.types import Segments

  ks = jax.random.split(key, 4)
  return Segments(
      states=jax.random.normal(ks[0], (batch, steps, STATE_DIM)),
      actions=jax.random.uniform(ks[1], (batch, steps, ACT_DIM), minval=-1.0),
      rewards=jnp.zeros((batch, steps)),
      returns_to_go=jax.random.uniform(ks[2], (batch, steps)),
      timesteps=jax.random.randint(ks[3], (batch, steps), 0, 200),
      mask=jnp.ones((batch, steps)),
  )


def measure(sharded: bool, num_steps: int) -> dict:
  """Times `num_steps` train steps after one compiling step (in-process)."""
  import jax

  from experiments.configs import pretrain as pretrain_config
  from pdiff import parallel
  from pdiff.models import make_prompt_dt
  from pdiff.training import create_train_state, make_optimizer, train_step
  from pdiff.training.train_state import count_params

  config = pretrain_config.get_train_config()
  model = make_prompt_dt(config.model, state_dim=STATE_DIM, act_dim=ACT_DIM)
  k_seg, k_prompt, k_init = jax.random.split(jax.random.key(0), 3)
  batch = (synthetic_batch(k_seg, BATCH, STEPS),
           synthetic_batch(k_prompt, BATCH, PROMPT_STEPS))
  state = create_train_state(model, make_optimizer(config), k_init, batch)
  step_fn = train_step
  if sharded:
    mesh = parallel.make_mesh()
    batch = parallel.shard_batch(batch, mesh)
    state = parallel.replicate(state, mesh)
    step_fn = jax.jit(train_step,
                      out_shardings=parallel.replicated_sharding(mesh),
                      donate_argnums=0)

  start = time.perf_counter()
  state, metrics = step_fn(state, batch, jax.random.key(1))
  jax.block_until_ready(metrics)
  compile_s = time.perf_counter() - start
  start = time.perf_counter()
  for i in range(num_steps):
    state, metrics = step_fn(state, batch, jax.random.key(2 + i))
  jax.block_until_ready((state, metrics))
  elapsed = time.perf_counter() - start
  return {
      "devices": jax.device_count(),
      "backend": jax.default_backend(),
      "num_params": count_params(state.params),
      "first_step_s": round(compile_s, 3),
      "step_ms": round(1e3 * elapsed / num_steps, 2),
      "steps_per_s": round(num_steps / elapsed, 4),
      "samples_per_s": round(BATCH * num_steps / elapsed, 1),
      "timed_steps": num_steps,
  }


def run_worker(name: str, num_steps: int) -> dict:
  """Runs one measurement in a subprocess with its own device count."""
  devices, _ = RUNS[name]
  env = dict(os.environ)
  env["JAX_PLATFORMS"] = env.get("JAX_PLATFORMS", "cpu")
  flags = [f for f in env.get("XLA_FLAGS", "").split()
           if not f.startswith("--xla_force_host_platform_device_count")]
  flags.append(f"--xla_force_host_platform_device_count={devices}")
  env["XLA_FLAGS"] = " ".join(flags)
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env["PYTHONPATH"] = os.pathsep.join(
      p for p in (root, env.get("PYTHONPATH")) if p)
  out = subprocess.run(
      [sys.executable, __file__, "--worker", name, "--steps", str(num_steps)],
      env=env, check=True, capture_output=True, text=True)
  return json.loads(out.stdout.strip().splitlines()[-1])


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=5, help="timed steps")
  parser.add_argument("--worker", choices=sorted(RUNS), help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.steps < 1:
    raise ValueError(f"--steps must be >= 1, got {args.steps}")
  if args.worker:
    print(json.dumps(measure(RUNS[args.worker][1], args.steps)))
    return

  load_before = os.getloadavg()[0]
  results = {}
  for name in RUNS:
    results[name] = run_worker(name, args.steps)
    r = results[name]
    print(f"{name:10s} devices={r['devices']} step={r['step_ms']:9.1f} ms  "
          f"{r['samples_per_s']:8.1f} samples/s  (first step "
          f"{r['first_step_s']:.1f} s)", flush=True)
  report = {
      "shape": {"batch": BATCH, "K": STEPS, "K_prompt": PROMPT_STEPS,
                "hidden_dim": 128, "num_layers": 3, "state_dim": STATE_DIM,
                "act_dim": ACT_DIM},
      "machine": {"processor": platform.processor() or platform.machine(),
                  "cpu_count": os.cpu_count(), "python": sys.version.split()[0],
                  "load_average_1min_before": load_before,
                  "load_average_1min_after": os.getloadavg()[0]},
      "runs": results,
  }
  from pdiff.evaluation.report import write_json_atomic

  write_json_atomic(RESULTS, report)
  print(f"wrote {RESULTS}")


if __name__ == "__main__":
  main()
