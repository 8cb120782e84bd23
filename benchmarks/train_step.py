"""Throughput of the Prompt-DT train step, beside the public PyTorch Prompt-DT.

Shape: Prompt-DT's training batch, 560 rows (16 segments x 35 training
tasks), K = 20 context steps, K* = 5 prompt steps, embed 128, 3 layers,
1 head, MLP 512, dropout 0.1 on, ds = 20, da = 6 (cheetah-vel's sizes in
Prompt-DT); a synthetic batch already in memory (no data pipeline is timed,
on either side).

Every measurement runs in a worker subprocess that compiles (or builds) its
step once and then times `--steps` steps each time it is asked. The main
process asks the workers in turn, `--repeats` rounds, rotating their order
every round, so that all of them see the same load on a shared machine
(paired alternation); figures are medians over the rounds. Workers:

  launcher     pdiff's step as the pre-training launcher builds it
               (`pdiff.training.loop.make_step_fn` on the default mesh):
               the package's default settings
  whole_batch  the same step without the microbatch split (microbatches=1)
  sharded_8    the launcher's step on 8 forced host devices (they share the
               same cores: the sharded program's overhead, not a speed-up)
  reference    the public Prompt-DT (github.com/mxu34/prompt-dt), imported
               from the checkout given by --reference: its
               `PromptDecisionTransformer` and its own trainer step
               (`PromptSequenceTrainer.pure_train_iteration_mix`: AdamW
               lr 1e-4, weight decay 1e-4, gradient clip 0.25, action MSE,
               warm-up LambdaLR), configured as its `pdt_main.py`
  ceiling      a float32 matmul in XLA (2048^3), the machine's matmul rate

The FLOPs per sample are XLA's cost analysis of the whole-batch step with
dropout off (the microbatched step does the same arithmetic in a loop, whose
body the analysis counts once; drawing dropout masks is integer work); the
fraction of the ceiling is `samples/s * FLOPs per sample / matmul FLOP/s`.

Usage:
  PYTHONPATH=. python benchmarks/train_step.py --reference=PATH \
      [--repeats 5] [--steps 2] [--runs launcher,whole_batch,reference]

The reference needs torch and transformers (`pip install -e ".[reference]"`);
without them, or without --reference, pdiff is timed alone and the JSON says
why. Writes benchmarks/results/train_step.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

if __package__ in (None, ""):  # run as a script: the repository's root
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
      __file__))))
from benchmarks import prompt_dt_reference  # noqa: E402

BATCH, STEPS, PROMPT_STEPS, STATE_DIM, ACT_DIM = 560, 20, 5, 20, 6
HIDDEN, LAYERS, HEADS, DROPOUT = 128, 3, 1, 0.1
MATMUL_SIZE = 2048
# name: (forced host devices, microbatches: None = the launcher's default).
PDIFF_RUNS = {"launcher": (1, None), "whole_batch": (1, 1),
              "sharded_8": (8, None)}
RUNS = (*PDIFF_RUNS, "reference", "ceiling")
DEFAULT_RUNS = ("launcher", "whole_batch", "reference", "ceiling")
RESULTS = os.path.join(os.path.dirname(__file__), "results", "train_step.json")
# Lines of the worker protocol start with this; anything else a library
# prints is ignored.
TAG = "@@train_step "


def _say(obj) -> None:
  print(TAG + json.dumps(obj), flush=True)


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


def _serve(step, info: dict) -> None:
  """Worker loop: announces `info`, then for each `run N` line times N
  calls of `step()` (which blocks until done) and answers the seconds."""
  _say(info)
  for line in sys.stdin:
    times = []
    for _ in range(int(line.split()[1])):
      start = time.perf_counter()
      step()
      times.append(time.perf_counter() - start)
    _say(times)


def pdiff_worker(name: str) -> None:
  """Builds the pdiff step of run `name` and serves timing requests."""
  import jax

  from experiments.configs import pretrain as pretrain_config
  from pdiff import parallel
  from pdiff.models import make_prompt_dt
  from pdiff.training import create_train_state, loop, make_optimizer
  from pdiff.training.prompt_dt_step import train_step
  from pdiff.training.train_state import count_params

  config = pretrain_config.get_train_config()
  model = make_prompt_dt(config.model, state_dim=STATE_DIM, act_dim=ACT_DIM)
  k_seg, k_prompt, k_init = jax.random.split(jax.random.key(0), 3)
  batch = (synthetic_batch(k_seg, BATCH, STEPS),
           synthetic_batch(k_prompt, BATCH, PROMPT_STEPS))
  state = create_train_state(model, make_optimizer(config), k_init, batch)
  mesh = parallel.make_mesh()
  step_fn, microbatches = loop.make_step_fn(mesh, batch)
  if PDIFF_RUNS[name][1] is not None:
    microbatches = PDIFF_RUNS[name][1]
    step_fn = jax.jit(
        lambda s, b, k: train_step(s, b, k, microbatches=microbatches),
        out_shardings=parallel.replicated_sharding(mesh), donate_argnums=0)
  batch = loop.place_batch(batch, mesh)
  state = parallel.replicate(state, mesh)
  info = {"devices": jax.device_count(), "backend": jax.default_backend(),
          "microbatches": microbatches, "num_params": count_params(
              state.params), "xla_flags": os.environ.get("XLA_FLAGS", "")}
  if name == "whole_batch":
    info["flops_per_sample"] = _flops_per_sample(state, batch)
  keys = iter(range(1, 1 << 30))
  holder = {"state": state}

  def step():
    holder["state"], metrics = step_fn(holder["state"], batch,
                                       jax.random.key(next(keys)))
    jax.block_until_ready(metrics)

  start = time.perf_counter()
  step()
  info["first_step_s"] = time.perf_counter() - start
  _serve(step, info)


def _flops_per_sample(state, batch) -> float:
  """XLA's cost analysis of the step's floating-point work, per sample.

  Counted on the whole-batch step (a microbatched step runs the same
  arithmetic in a loop, whose body the analysis counts once) with dropout
  off: the dropout masks' integer hashing is not floating-point work.
  """
  import jax
  import optax

  from pdiff.training.prompt_dt_step import action_loss

  def step(state, batch):
    segments, prompts = batch
    loss, grads = jax.value_and_grad(action_loss)(
        state.params, state.apply_fn, segments, prompts, None, True)
    return state.apply_gradients(grads=grads), (loss, optax.tree.norm(grads))

  cost = jax.jit(step).lower(state, batch).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, list) else cost
  return float(cost["flops"]) / BATCH


def ceiling_worker() -> None:
  """Serves timings of one float32 MATMUL_SIZE^3 matmul in XLA."""
  import jax
  import jax.numpy as jnp

  ka, kb = jax.random.split(jax.random.key(0))
  a = jax.random.normal(ka, (MATMUL_SIZE, MATMUL_SIZE), jnp.float32)
  b = jax.random.normal(kb, (MATMUL_SIZE, MATMUL_SIZE), jnp.float32)
  matmul = jax.jit(jnp.matmul)
  jax.block_until_ready(matmul(a, b))
  _serve(lambda: jax.block_until_ready(matmul(a, b)),
         {"flops_per_call": 2.0 * MATMUL_SIZE**3})


def reference_worker(path: str) -> None:
  """Builds the reference model and trainer and serves timing requests."""
  import torch
  import transformers

  model_cls, trainer_cls, notes = prompt_dt_reference.import_reference(path)
  torch.manual_seed(0)
  model = prompt_dt_reference.build_model(
      model_cls, state_dim=STATE_DIM, act_dim=ACT_DIM, hidden=HIDDEN,
      layers=LAYERS, heads=HEADS, context_len=STEPS, dropout=DROPOUT)
  optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4,
                                weight_decay=1e-4)
  scheduler = torch.optim.lr_scheduler.LambdaLR(
      optimizer, lambda steps: min((steps + 1) / 10_000, 1))

  def tensors(steps):
    """(s, a, r, d, rtg, timesteps, mask) as its get_batch returns them:
    rtg has one step more."""
    return (torch.randn(BATCH, steps, STATE_DIM),
            torch.rand(BATCH, steps, ACT_DIM) * 2 - 1,
            torch.zeros(BATCH, steps, 1),
            torch.zeros(BATCH, steps, dtype=torch.long),
            torch.rand(BATCH, steps + 1, 1),
            torch.randint(0, 200, (BATCH, steps)),
            torch.ones(BATCH, steps))

  batch = tensors(STEPS)
  prompt = tensors(PROMPT_STEPS)
  prompt = prompt[:4] + (prompt[4][:, :-1],) + prompt[5:]  # flatten_prompt
  trainer = trainer_cls(
      model=model, optimizer=optimizer, batch_size=16, get_batch=None,
      loss_fn=lambda s_hat, a_hat, r_hat, s, a, r: torch.mean((a_hat - a)**2),
      scheduler=scheduler, get_prompt=lambda: None,
      get_prompt_batch=lambda: (prompt, batch))

  def step():
    trainer.pure_train_iteration_mix(num_steps=1)

  start = time.perf_counter()
  step()
  info = {"first_step_s": time.perf_counter() - start,
          "num_params": sum(p.numel() for p in model.parameters()),
          "torch": torch.__version__, "transformers": transformers.__version__,
          "threads": torch.get_num_threads(),
          "interop_threads": torch.get_num_interop_threads(),
          "trainer": "prompt_dt.prompt_seq_trainer.PromptSequenceTrainer."
                     "pure_train_iteration_mix(num_steps=1)",
          "adaptations": notes, "commit": _git_commit(path)}
  _serve(step, info)


def _git_commit(path: str) -> str | None:
  try:
    out = subprocess.run(["git", "-C", path, "rev-parse", "HEAD"],
                         capture_output=True, text=True, check=True)
  except (OSError, subprocess.CalledProcessError):
    return None
  return out.stdout.strip() or None


class Worker:
  """A worker subprocess and its answers."""

  def __init__(self, name: str, reference: str | None):
    env = dict(os.environ)
    env["JAX_PLATFORMS"] = env.get("JAX_PLATFORMS", "cpu")
    devices = PDIFF_RUNS.get(name, (1,))[0]
    flags = [f for f in env.get("XLA_FLAGS", "").split()
             if not f.startswith("--xla_force_host_platform_device_count")]
    if devices > 1:
      flags.append(f"--xla_force_host_platform_device_count={devices}")
    env["XLA_FLAGS"] = " ".join(flags)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (root, env.get("PYTHONPATH")) if p)
    command = [sys.executable, os.path.abspath(__file__), "--worker", name]
    if reference:
      command.append(f"--reference={reference}")
    self.name = name
    self.process = subprocess.Popen(command, env=env, stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, text=True)
    self.info = self._read()
    self.times: list[list[float]] = []

  def _read(self):
    for line in self.process.stdout:
      if line.startswith(TAG):
        return json.loads(line[len(TAG):])
    raise RuntimeError(f"worker {self.name} exited with code "
                       f"{self.process.wait()} (its stderr is above)")

  def run(self, steps: int) -> None:
    self.process.stdin.write(f"run {steps}\n")
    self.process.stdin.flush()
    self.times.append(self._read())

  def close(self) -> None:
    self.process.stdin.close()
    self.process.wait()


def _rate_stats(worker: Worker, units: float) -> dict:
  """Median per-round rates (units per second) and per-step seconds."""
  rates = [units * len(t) / sum(t) for t in worker.times]
  steps = [s for t in worker.times for s in t]
  return {"per_s": statistics.median(rates), "per_s_rounds": rates,
          "step_ms": 1e3 * statistics.median(steps),
          "timed_steps": len(steps)}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=2,
                      help="timed steps per worker and round")
  parser.add_argument("--repeats", type=int, default=5,
                      help="rounds of paired alternation")
  parser.add_argument("--reference", default=None,
                      help="checkout of github.com/mxu34/prompt-dt")
  parser.add_argument("--runs", default=",".join(DEFAULT_RUNS),
                      help=f"comma-separated, of {', '.join(RUNS)}")
  parser.add_argument("--out", default=RESULTS, help="JSON file to write")
  parser.add_argument("--worker", choices=RUNS, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker == "reference":
    return reference_worker(args.reference)
  if args.worker == "ceiling":
    return ceiling_worker()
  if args.worker:
    return pdiff_worker(args.worker)
  if args.steps < 1 or args.repeats < 1:
    raise ValueError("--steps and --repeats must be >= 1")
  names = [n for n in args.runs.split(",") if n]
  unknown = sorted(set(names) - set(RUNS))
  if unknown:
    raise ValueError(f"unknown runs {unknown}; choose from {RUNS}")

  reference_problem = None
  if "reference" in names:
    reference_problem = prompt_dt_reference.reference_problem(args.reference)
    if reference_problem:
      print(f"Not timing the PyTorch reference: {reference_problem}. "
            "Timing pdiff alone.", flush=True)
      names.remove("reference")
  cores = len(os.sched_getaffinity(0)) if hasattr(
      os, "sched_getaffinity") else os.cpu_count()
  load_before = os.getloadavg()
  workers = {}
  for name in names:  # also pays every compile before the timed rounds
    workers[name] = Worker(name, args.reference)
    print(f"{name}: ready ({workers[name].info})", flush=True)
  loads = []
  for round_ in range(args.repeats):
    order = names[round_ % len(names):] + names[:round_ % len(names)]
    for name in order:
      workers[name].run(args.steps)
    loads.append(os.getloadavg()[0])
    print(f"round {round_ + 1}/{args.repeats} done, load {loads[-1]:.1f}",
          flush=True)
  load_after = os.getloadavg()
  for worker in workers.values():
    worker.close()

  import jax

  report = {
      "shape": {"batch": BATCH, "K": STEPS, "K_prompt": PROMPT_STEPS,
                "hidden_dim": HIDDEN, "num_layers": LAYERS,
                "num_heads": HEADS, "mlp_dim": 4 * HIDDEN,
                "dropout": DROPOUT, "state_dim": STATE_DIM,
                "act_dim": ACT_DIM},
      "method": {"repeats": args.repeats, "steps_per_round": args.steps,
                 "order": "workers in turn, order rotated every round",
                 "statistic": "median over rounds"},
      "machine": {"processor": platform.processor() or platform.machine(),
                  "cpu_count": os.cpu_count(), "cores_available": cores,
                  "python": sys.version.split()[0],
                  "load_average_1min_before": load_before[0],
                  "load_average_1min_after": load_after[0],
                  "load_average_1min_rounds": loads},
      "versions": {"jax": jax.__version__},
      "runs": {},
  }
  flops = workers["whole_batch"].info["flops_per_sample"] if (
      "whole_batch" in workers) else None
  if flops:
    report["flops_per_sample"] = flops
  if "ceiling" in workers:
    c = _rate_stats(workers["ceiling"], workers["ceiling"].info[
        "flops_per_call"])
    report["ceiling"] = {
        "matmul": f"float32 {MATMUL_SIZE}x{MATMUL_SIZE} @ "
                  f"{MATMUL_SIZE}x{MATMUL_SIZE} in XLA",
        "gflops_per_s": c["per_s"] / 1e9,
        "gflops_per_s_rounds": [r / 1e9 for r in c["per_s_rounds"]]}
    if flops:
      report["ceiling"]["samples_per_s"] = c["per_s"] / flops
  for name in names:
    if name not in PDIFF_RUNS:
      continue
    info, stats = workers[name].info, _rate_stats(workers[name], BATCH)
    run = {"devices": info["devices"], "backend": info["backend"],
           "microbatches": info["microbatches"],
           "num_params": info["num_params"],
           "first_step_s": round(info["first_step_s"], 3),
           "step_ms": round(stats["step_ms"], 2),
           "samples_per_s": round(stats["per_s"], 1),
           "samples_per_s_rounds": [round(r, 1)
                                    for r in stats["per_s_rounds"]],
           "timed_steps": stats["timed_steps"]}
    if flops and "ceiling" in report:
      run["fraction_of_ceiling"] = round(
          stats["per_s"] * flops / (1e9 * report["ceiling"]["gflops_per_s"]),
          4)
    report["runs"][name] = run
  if "reference" in workers:
    info = workers["reference"].info
    stats = _rate_stats(workers["reference"], BATCH)
    report["reference"] = {
        "code": "github.com/mxu34/prompt-dt", "commit": info["commit"],
        "trainer": info["trainer"], "adaptations": info["adaptations"],
        "num_params": info["num_params"], "threads": info["threads"],
        "interop_threads": info["interop_threads"],
        "first_step_s": round(info["first_step_s"], 3),
        "step_ms": round(stats["step_ms"], 2),
        "samples_per_s": round(stats["per_s"], 1),
        "samples_per_s_rounds": [round(r, 1) for r in stats["per_s_rounds"]],
        "timed_steps": stats["timed_steps"]}
    report["versions"].update(torch=info["torch"],
                              transformers=info["transformers"])
    if "launcher" in workers:
      mine = _rate_stats(workers["launcher"], BATCH)["per_s_rounds"]
      pairs = [a / b for a, b in zip(mine, stats["per_s_rounds"], strict=True)]
      report["launcher_over_reference"] = round(statistics.median(pairs), 3)
      report["launcher_over_reference_rounds"] = [round(p, 3) for p in pairs]
  else:
    report["reference"] = {"code": "github.com/mxu34/prompt-dt",
                           "not_timed": reference_problem
                           or "not among --runs"}

  for name, run in report["runs"].items():
    print(f"{name:12s} devices={run['devices']} microbatches="
          f"{run['microbatches']:<3d} {run['samples_per_s']:8.1f} samples/s "
          f"(step {run['step_ms']:.0f} ms)" + (
              f", {100 * run['fraction_of_ceiling']:.0f}% of the matmul "
              "ceiling" if "fraction_of_ceiling" in run else ""))
  if "samples_per_s" in report["reference"]:
    r = report["reference"]
    print(f"{'reference':12s} threads={r['threads']} "
          f"{r['samples_per_s']:8.1f} samples/s (step {r['step_ms']:.0f} ms)")
  if "launcher_over_reference" in report:
    print(f"launcher / reference: {report['launcher_over_reference']:.2f}x "
          "(median of the rounds' ratios)")
  if "ceiling" in report:
    print(f"matmul ceiling: {report['ceiling']['gflops_per_s']:.0f} GFLOP/s")
  print(f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after")
  from pdiff.evaluation.report import write_json_atomic

  write_json_atomic(args.out, report)
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
