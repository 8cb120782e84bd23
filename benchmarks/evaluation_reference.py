"""Prompt-DT evaluation: the public PyTorch loop beside pdiff's batched rollout.

Times, in one process on one machine, at Prompt-DT's paper shape (embed 128,
3 layers, 1 head, MLP 512, K = 20, K* = 5, max_ep_len 1000; a randomly
initialised model on both sides, which costs what a trained one does):

  reference  the public Prompt-DT (github.com/mxu34/prompt-dt), imported
             from the checkout given by --reference: its own evaluation
             loop, ``prompt_dt.prompt_evaluate_episodes.
             prompt_evaluate_episode_rtg``, run as its ``eval_episodes``
             runs it (``torch.no_grad()``, ``model.eval()``, one episode at
             a time, ``model.get_action`` at every step on the growing
             history with the task's prompt, batch 1). Its MuJoCo env is
             replaced by a stand-in returning random normal states and
             rewards, so the reference's side is the model and the loop's
             bookkeeping alone (the stand-in's own cost is measured and
             reported: microseconds a step). ``--reference_episodes`` whole
             episodes are timed (half before pdiff's timings, half after, to
             bracket the machine's load) after one untimed warm-up episode;
             the time of ``tasks x episodes`` episodes is extrapolated from
             the mean time per decision. Also timed: ``get_action`` alone on
             a full window (the model's cost per decision, batch 1). Torch
             runs with the fastest of 1 to --threads threads for
             ``get_action`` (on a loaded machine, more threads than free
             cores can make it several times slower).
  pdiff      ``pdiff.evaluation.make_prompted_rollout`` with
             ``prompt_dt_policy`` (each task's prompt keys and values cached)
             on cheetah_vel (its Brax ``spring`` env included: 17 state
             dims where the reference's MuJoCo env has 20), all
             ``tasks x episodes`` episodes at once in one ``jax.jit``: its
             compilation (trace, lower, compile, measured with the
             persistent compilation cache off) and its runs, timed apart.
             Also the policy's forward passes alone at the same batch
             (``evaluation_throughput.make_policy_only``, no env) and the
             env alone under random actions (``make_env_only``).

Ratios (reference seconds over pdiff's): over pdiff's run, over its run plus
compilation, and over its policy alone. The first two put pdiff's env
inside its time and no env inside the reference's, which favours the
reference; so does leaving out the reference's warm-up episode.

Usage:
  PYTHONPATH=. python benchmarks/evaluation_reference.py \
      --reference=/tmp/prompt-dt [--tasks 5 --episodes 50 --steps 200]

The reference needs torch and transformers (``pip install -e ".[reference]"``);
without them, or without --reference, pdiff is timed alone and the JSON says
why. Writes benchmarks/results/evaluation_reference.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import statistics
import sys
import time

# Compilation must really be measured: no persistent cache, pdiff's or JAX's.
os.environ["PDIFF_COMPILATION_CACHE"] = "off"
os.environ.pop("JAX_COMPILATION_CACHE_DIR", None)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for _path in (ROOT, os.path.dirname(os.path.abspath(__file__))):
  if _path not in sys.path:
    sys.path.insert(0, _path)

import evaluation_throughput  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks import prompt_dt_reference  # noqa: E402
from pdiff import envs  # noqa: E402
from pdiff.evaluation.report import write_json_atomic  # noqa: E402
from pdiff.evaluation.rollout import (  # noqa: E402
    make_prompted_rollout,
    prompt_dt_policy,
)

jax.config.update("jax_enable_compilation_cache", False)

# The reference's cheetah-vel sizes and its pdt_main.py model settings.
REF_STATE_DIM, REF_ACT_DIM = 20, 6
HIDDEN, LAYERS, HEADS, CONTEXT, PROMPT, DROPOUT = 128, 3, 1, 20, 5, 0.1
REF_MAX_EP_LEN = 1000  # pdt_main.py builds the model with max_ep_len=1000
REF_SCALE = 500.0  # prompt_utils.gen_env's scale for cheetah_vel
FAMILY, PRESET = "cheetah_vel", "paper"
RESULTS = os.path.join(ROOT, "benchmarks", "results",
                       "evaluation_reference.json")


def _timed(fn):
  """``(result, wall seconds, CPU seconds of this process)`` of ``fn()``."""
  wall, cpu = time.perf_counter(), time.process_time()
  out = fn()
  return out, time.perf_counter() - wall, time.process_time() - cpu


class SyntheticEnv:
  """Stands in for the reference's MuJoCo env in its evaluation loop:
  ``reset`` and ``step`` return random normal states (float64, as gym's) and
  rewards; an episode never ends early."""

  def __init__(self, state_dim: int, seed: int = 0):
    self.state_dim = state_dim
    self.rng = np.random.default_rng(seed)

  def reset(self):
    return self.rng.standard_normal(self.state_dim)

  def step(self, action):
    del action
    return (self.rng.standard_normal(self.state_dim),
            float(self.rng.standard_normal()), False, {})


class Reference:
  """The reference model, a prompt as its evaluation passes it, and timers."""

  def __init__(self, path: str, threads: int, steps: int):
    import torch
    import transformers

    model_cls, _, notes = prompt_dt_reference.import_reference(
        path, trainer=False)
    from prompt_dt.prompt_evaluate_episodes import prompt_evaluate_episode_rtg

    torch.manual_seed(0)
    self.torch, self.steps = torch, steps
    self.evaluate_episode = prompt_evaluate_episode_rtg
    self.model = prompt_dt_reference.build_model(
        model_cls, state_dim=REF_STATE_DIM, act_dim=REF_ACT_DIM,
        hidden=HIDDEN, layers=LAYERS, heads=HEADS, context_len=CONTEXT,
        dropout=DROPOUT, max_ep_len=REF_MAX_EP_LEN)
    self.model.eval()
    # A prompt as flatten_prompt(get_prompt()(), batch_size=1) gives it:
    # (s, a, r, d, rtg, timesteps, mask), [1, K*, ...], with its dtypes.
    g = torch.Generator().manual_seed(1)
    k = PROMPT
    self.prompt = (
        torch.randn(1, k, REF_STATE_DIM, generator=g),
        torch.rand(1, k, REF_ACT_DIM, generator=g) * 2 - 1,
        torch.randn(1, k, 1, generator=g),
        torch.zeros(1, k, dtype=torch.long),
        torch.rand(1, k, 1, generator=g),
        torch.arange(195, 195 + k).reshape(1, k),
        torch.ones(1, k, dtype=torch.float64))
    self.env = SyntheticEnv(REF_STATE_DIM)
    self.info = {
        "code": "github.com/mxu34/prompt-dt", "path": os.path.abspath(path),
        "loop": "prompt_dt.prompt_evaluate_episodes."
                "prompt_evaluate_episode_rtg under torch.no_grad(), one "
                "episode at a time, as prompt_utils.eval_episodes runs it",
        "env": "SyntheticEnv: random normal states and rewards (no MuJoCo)",
        "adaptations": notes,
        "num_params": sum(p.numel() for p in self.model.parameters()),
        "interop_threads": torch.get_num_interop_threads(),
        "torch": torch.__version__, "transformers": transformers.__version__,
    }
    self.choose_threads(threads)

  def choose_threads(self, max_threads: int, calls: int = 30) -> None:
    """Times ``get_action`` with 1 to ``max_threads`` torch threads and keeps
    the fastest count: on a loaded machine more threads than free cores can
    make torch several times slower, which would favour pdiff."""
    per_call = {}
    for n in range(1, max_threads + 1):
      self.torch.set_num_threads(n)
      per_call[n] = self.get_action(calls)
    best = min(per_call, key=per_call.get)
    self.torch.set_num_threads(best)
    self.info["threads"] = best
    self.info["threads_max"] = max_threads
    self.info["get_action_s_by_threads"] = {str(n): t
                                            for n, t in per_call.items()}
    print("reference: get_action "
          + ", ".join(f"{1e3 * t:.1f} ms at {n} thread(s)"
                      for n, t in per_call.items())
          + f"; the loop runs with {best}", flush=True)

  def episode(self) -> tuple[float, float]:
    """Wall and CPU seconds of one whole episode of the reference's loop."""

    def run():
      with self.torch.no_grad():
        return self.evaluate_episode(
            self.env, REF_STATE_DIM, REF_ACT_DIM, self.model,
            max_ep_len=self.steps, scale=REF_SCALE,
            state_mean=np.zeros(REF_STATE_DIM, np.float32),
            state_std=np.ones(REF_STATE_DIM, np.float32), device="cpu",
            target_return=0.0 / REF_SCALE, mode="normal", prompt=self.prompt,
            no_r=False, no_rtg=False, no_state_normalize=False)

    _, wall, cpu = _timed(run)
    return wall, cpu

  def get_action(self, calls: int) -> float:
    """Seconds per ``model.get_action`` on a full window of K steps."""
    torch = self.torch
    g = torch.Generator().manual_seed(2)
    states = torch.randn(CONTEXT, REF_STATE_DIM, generator=g)
    actions = torch.rand(CONTEXT, REF_ACT_DIM, generator=g)
    rewards = torch.randn(CONTEXT, generator=g)
    rtg = torch.rand(1, CONTEXT, generator=g)
    timesteps = torch.arange(CONTEXT).reshape(1, CONTEXT)
    with torch.no_grad():
      self.model.get_action(states, actions, rewards, rtg, timesteps,
                            prompt=self.prompt)
      start = time.perf_counter()
      for _ in range(calls):
        self.model.get_action(states, actions, rewards, rtg, timesteps,
                              prompt=self.prompt)
    return (time.perf_counter() - start) / calls

  def env_step_s(self, calls: int) -> float:
    """Seconds per step of the stand-in env alone."""
    start = time.perf_counter()
    for _ in range(calls):
      self.env.step(None)
    return (time.perf_counter() - start) / calls


def _compile_and_run(jitted, args: tuple, runs: int) -> dict:
  """Compiles ``jitted`` for ``args`` (a fresh ``jax.jit``: trace, lower,
  compile) and times ``runs`` calls, the first right after compiling."""
  compiled, compile_s, compile_cpu = _timed(
      lambda: jitted.lower(*args).compile())
  walls, cpus = [], []
  for _ in range(runs):
    _, wall, cpu = _timed(lambda: jax.block_until_ready(compiled(*args)))
    walls.append(wall)
    cpus.append(cpu)
  return {"compile_s": compile_s, "compile_cpu_s": compile_cpu,
          "first_run_s": walls[0], "run_s": statistics.median(walls),
          "run_cpu_s": statistics.median(cpus), "runs_s": walls,
          "load_average_1min_after": os.getloadavg()[0]}


def _rollout_setup(tasks: int, episodes: int, steps: int):
  """``(out, rollout, args, policy, params, shapes)``: the prompted rollout
  of ``tasks x episodes`` episodes, its arguments and the record's fields."""
  family = envs.make(FAMILY)
  if steps > family.episode_length:
    raise ValueError(f"--steps={steps} exceeds {family.name}'s episode "
                     f"length {family.episode_length}.")
  if steps != family.episode_length:
    family = dataclasses.replace(family, episode_length=steps)
  m = evaluation_throughput.random_model(family, PRESET)
  model, params, config = m.model, m.params, m.config
  model_config = config.train.model
  ds, da, k_len, kp_len = m.ds, m.da, m.k_len, m.kp_len
  max_ep_len, k_prompt = m.max_ep_len, m.prompt_key
  test_tasks = np.resize(np.asarray(family.test_tasks), tasks)  # [T]
  prompts = evaluation_throughput.random_segments(
      k_prompt, tasks, kp_len, ds, da, max_ep_len)  # [T, Kp, ...]
  policy = prompt_dt_policy(model)
  rollout = make_prompted_rollout(
      family, **policy._asdict(), context_len=k_len, num_episodes=episodes,
      state_mean=jnp.zeros((ds,)), state_std=jnp.ones((ds,)),
      max_ep_len=max_ep_len)
  out = {
      "family": family.name, "backend": family.backend, "preset": PRESET,
      "state_dim": ds, "act_dim": da, "hidden_dim": model_config.hidden_dim,
      "num_layers": model_config.num_layers,
      "num_heads": model_config.num_heads, "mlp_dim": model_config.mlp_dim,
      "context_len": k_len, "prompt_len": kp_len, "max_ep_len": max_ep_len,
      "num_params": sum(x.size for x in jax.tree.leaves(params)),
      "policy": "prompt_dt_policy (prompt keys and values cached)",
  }
  args = (params, prompts, jnp.asarray(test_tasks, jnp.int32),
          jax.random.key(1))
  return (out, rollout, args, policy, params,
          (family, test_tasks, k_len, kp_len, ds, da, max_ep_len))


def compile_worker(cache_dir: str, tasks: int, episodes: int,
                   steps: int) -> None:
  """Compiles the rollout with JAX's persistent compilation cache in
  ``cache_dir`` (every program cached, however fast it compiled) and prints
  ``{"compile_s": ...}``: run twice on one directory, the second call is a
  rerun's cost (what the package's default cache gives)."""
  jax.config.update("jax_compilation_cache_dir", cache_dir)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
  jax.config.update("jax_enable_compilation_cache", True)
  _, rollout, args, *_ = _rollout_setup(tasks, episodes, steps)
  _, compile_s, compile_cpu = _timed(lambda: rollout.lower(*args).compile())
  print(json.dumps({"compile_s": compile_s, "compile_cpu_s": compile_cpu}),
        flush=True)


def warm_cache_compiles(tasks: int, episodes: int, steps: int) -> dict:
  """Compile times of the rollout in two fresh processes sharing one
  persistent cache: the first fills it, the second reads it."""
  import subprocess  # noqa: PLC0415
  import tempfile  # noqa: PLC0415

  out = {}
  with tempfile.TemporaryDirectory(prefix="pdiff_jax_cache_") as cache_dir:
    for name in ("cache_filled_by_this_run", "cache_warm"):
      print(f"pdiff: compiling in a new process ({name})", flush=True)
      proc = subprocess.run(
          [sys.executable, os.path.abspath(__file__),
           f"--compile_worker={cache_dir}", f"--tasks={tasks}",
           f"--episodes={episodes}", f"--steps={steps}"],
          capture_output=True, text=True, check=True)
      out[name] = json.loads(proc.stdout.strip().splitlines()[-1])
      print(f"  compile {out[name]['compile_s']:.1f} s", flush=True)
  return out


def time_pdiff(tasks: int, episodes: int, steps: int, runs: int,
               time_env: bool) -> dict:
  """Compiles and times the prompted rollout, the policy alone and (if
  ``time_env``) the env alone for ``tasks x episodes`` episodes."""
  out, rollout, rollout_args, policy, params, shapes = _rollout_setup(
      tasks, episodes, steps)
  family, test_tasks, k_len, kp_len, ds, da, max_ep_len = shapes
  print(f"pdiff: compiling and running the rollout, {tasks}x{episodes} "
        f"episodes x {steps} steps", flush=True)
  out["rollout"] = _compile_and_run(rollout, rollout_args, runs)
  print(f"  compile {out['rollout']['compile_s']:.1f} s, run "
        f"{out['rollout']['run_s']:.1f} s", flush=True)
  policy_only = evaluation_throughput.make_policy_only(
      policy, tasks, episodes, k_len, kp_len, ds, da, max_ep_len, steps)
  print("pdiff: the policy's forward passes alone", flush=True)
  out["policy_only"] = _compile_and_run(
      policy_only, (params, jax.random.key(2)), runs)
  print(f"  compile {out['policy_only']['compile_s']:.1f} s, run "
        f"{out['policy_only']['run_s']:.1f} s", flush=True)
  if time_env:
    env_only = evaluation_throughput.make_env_only(family, test_tasks,
                                                   episodes, steps)
    print("pdiff: the env alone, random actions", flush=True)
    out["env_only"] = _compile_and_run(env_only, (jax.random.key(3),), runs)
    print(f"  compile {out['env_only']['compile_s']:.1f} s, run "
          f"{out['env_only']['run_s']:.1f} s", flush=True)
  return out


def _round(obj, digits: int = 4):
  """Floats to ``digits`` significant digits, recursively."""
  if isinstance(obj, float):
    return float(f"{obj:.{digits}g}")
  if isinstance(obj, dict):
    return {k: _round(v, digits) for k, v in obj.items()}
  if isinstance(obj, list | tuple):
    return [_round(v, digits) for v in obj]
  return obj


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--reference", default=None,
                      help="checkout of github.com/mxu34/prompt-dt")
  parser.add_argument("--tasks", type=int, default=5, help="test tasks")
  parser.add_argument("--episodes", type=int, default=50,
                      help="episodes per task")
  parser.add_argument("--steps", type=int, default=200,
                      help="steps per episode")
  parser.add_argument("--reference_episodes", type=int, default=3,
                      help="whole episodes of the reference's loop timed "
                           "(after one untimed warm-up episode)")
  parser.add_argument("--threads", type=int, default=2,
                      help="most torch threads (the machine's cores); 1 to "
                           "this many are tried and the fastest is used")
  parser.add_argument("--repeats", type=int, default=1,
                      help="timed calls of each pdiff program after "
                           "compiling it (median reported)")
  parser.add_argument("--skip_env", action="store_true",
                      help="do not time pdiff's env alone")
  parser.add_argument("--skip_warm_cache", action="store_true",
                      help="do not time compiling with a warm persistent "
                           "compilation cache (two extra processes)")
  parser.add_argument("--json_output", default=RESULTS,
                      help="JSON file to write")
  parser.add_argument("--compile_worker", default=None,
                      help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.compile_worker:
    return compile_worker(args.compile_worker, args.tasks, args.episodes,
                          args.steps)
  for name in ("tasks", "episodes", "steps", "reference_episodes", "threads",
               "repeats"):
    if getattr(args, name) < 1:
      raise ValueError(f"--{name} must be >= 1, got {getattr(args, name)}.")

  cores = len(os.sched_getaffinity(0)) if hasattr(
      os, "sched_getaffinity") else os.cpu_count()
  load_before = os.getloadavg()
  start_all = time.perf_counter()
  episodes_total = args.tasks * args.episodes
  decisions_total = episodes_total * args.steps

  problem = prompt_dt_reference.reference_problem(args.reference)
  reference = None
  if problem:
    print(f"Not timing the PyTorch reference: {problem}. Timing pdiff alone.",
          flush=True)
  else:
    reference = Reference(args.reference, args.threads, args.steps)
    print(f"reference: warm-up episode ({args.steps} steps)", flush=True)
    warm_up = reference.episode()
    before = math.ceil(args.reference_episodes / 2)
    ref_walls, ref_cpus, ref_phase = [], [], []
    for _ in range(before):
      wall, cpu = reference.episode()
      ref_walls.append(wall)
      ref_cpus.append(cpu)
      ref_phase.append("before")
    print(f"  {before} episode(s): "
          f"{', '.join(f'{w:.2f}' for w in ref_walls)} s", flush=True)

  pdiff = time_pdiff(args.tasks, args.episodes, args.steps, args.repeats,
                     not args.skip_env)
  if not args.skip_warm_cache:
    pdiff["rollout_compile_persistent_cache"] = warm_cache_compiles(
        args.tasks, args.episodes, args.steps)

  if reference is not None:
    for _ in range(args.reference_episodes - before):
      wall, cpu = reference.episode()
      ref_walls.append(wall)
      ref_cpus.append(cpu)
      ref_phase.append("after")
    get_action_s = reference.get_action(args.steps)
    env_step_s = reference.env_step_s(args.steps)
    timed = len(ref_walls) * args.steps
    per_decision = sum(ref_walls) / timed
    ref = {
        **reference.info,
        "warm_up_episode_s": warm_up[0],
        "timed_episodes": len(ref_walls),
        "timed_decisions": timed,
        "episode_s": ref_walls, "episode_cpu_s": ref_cpus,
        "episode_phase": ref_phase,
        "per_decision_s": per_decision,
        "decisions_per_s": 1.0 / per_decision,
        "per_decision_cpu_s": sum(ref_cpus) / timed,
        "get_action_full_window_s": get_action_s,
        "get_action_calls_timed": args.steps,
        "synthetic_env_step_s": env_step_s,
        "extrapolated": True,
        "extrapolated_from": f"mean time per decision over {timed} decisions "
                             f"({len(ref_walls)} whole episodes) x "
                             f"{decisions_total} decisions",
        "total_s": per_decision * decisions_total,
        "total_s_from_fastest_episode": min(ref_walls) / args.steps
                                        * decisions_total,
        "total_s_from_slowest_episode": max(ref_walls) / args.steps
                                        * decisions_total,
    }
  else:
    ref = {"code": "github.com/mxu34/prompt-dt", "not_timed": problem}

  load_after = os.getloadavg()
  roll, pol = pdiff["rollout"], pdiff["policy_only"]
  report = {
      "shape": {"tasks": args.tasks, "episodes_per_task": args.episodes,
                "steps_per_episode": args.steps,
                "episodes": episodes_total, "decisions": decisions_total,
                "hidden_dim": HIDDEN, "num_layers": LAYERS,
                "num_heads": HEADS, "mlp_dim": 4 * HIDDEN, "K": CONTEXT,
                "K_prompt": PROMPT, "max_ep_len": REF_MAX_EP_LEN,
                "reference_state_dim": REF_STATE_DIM,
                "reference_act_dim": REF_ACT_DIM,
                "pdiff_state_dim": pdiff["state_dim"],
                "pdiff_act_dim": pdiff["act_dim"]},
      "machine": {"processor": platform.processor() or platform.machine(),
                  "platform": platform.platform(),
                  "cpu_count": os.cpu_count(), "cores_available": cores,
                  "python": sys.version.split()[0],
                  "load_average_before": list(load_before),
                  "load_average_after": list(load_after)},
      "versions": {"jax": jax.__version__},
      "compilation_cache": "off (PDIFF_COMPILATION_CACHE=off, "
                           "jax_enable_compilation_cache=False)",
      "reference": ref,
      "pdiff": pdiff,
      "pdiff_run_s": roll["run_s"],
      "pdiff_compile_s": roll["compile_s"],
      "pdiff_run_plus_compile_s": roll["run_s"] + roll["compile_s"],
      "pdiff_policy_only_s": pol["run_s"],
      "notes": [
          "Reference side: model and loop only (a random-normal stand-in "
          "for its MuJoCo env); pdiff side: the whole rollout, Brax env "
          "included. This favours the reference.",
          "The reference's time for all episodes is extrapolated from the "
          "timed episodes' mean time per decision; its warm-up episode is "
          "left out (favours the reference).",
          "pdiff's compile_s is trace + lower + compile of a fresh jax.jit "
          "with the persistent compilation cache off; model init and env "
          "construction are outside every figure, on both sides. The "
          "warm-cache compile is the same in a new process whose "
          "persistent cache an earlier process filled: a rerun's cost "
          "with the cache the package enables by default.",
          "Both sides share the machine with other jobs: see the load "
          "averages; CPU times of this process are given beside wall "
          "times (XLA's summed over its threads).",
      ],
      "elapsed_s": time.perf_counter() - start_all,
  }
  if reference is not None:
    report["versions"].update(torch=ref["torch"],
                              transformers=ref["transformers"])
    report["reference_s"] = ref["total_s"]
    report["reference_decisions_per_s"] = ref["decisions_per_s"]
    report["ratios"] = {
        "reference_s / pdiff_run_s": ref["total_s"] / roll["run_s"],
        "reference_s / (pdiff_run_s + compile_s)":
            ref["total_s"] / (roll["run_s"] + roll["compile_s"]),
        "reference_s / pdiff_policy_only_s": ref["total_s"] / pol["run_s"],
    }
    warm = pdiff.get("rollout_compile_persistent_cache", {}).get("cache_warm")
    if warm:
      report["pdiff_run_plus_warm_cache_compile_s"] = (
          roll["run_s"] + warm["compile_s"])
      report["ratios"][
          "reference_s / (pdiff_run_s + warm-cache compile_s)"] = (
              ref["total_s"] / (roll["run_s"] + warm["compile_s"]))
    report["ratio_note"] = (
        "pdiff's env is inside pdiff_run_s, no env is inside reference_s: "
        "the first two ratios favour the reference. The target stated is "
        "reference_s / (pdiff_run_s + compile_s) >= 4.")
  report = _round(report)

  print()
  print(f"{'':34s}{'seconds':>10s}  notes")
  if reference is not None:
    print(f"{'reference, all episodes':34s}{report['reference_s']:10.1f}  "
          f"extrapolated from {ref['timed_decisions']} decisions "
          f"({report['reference_decisions_per_s']:.0f} decisions/s, "
          f"get_action {1e3 * ref['get_action_full_window_s']:.2f} ms)")
  print(f"{'pdiff rollout, run':34s}{roll['run_s']:10.1f}  env included")
  print(f"{'pdiff rollout, compile':34s}{roll['compile_s']:10.1f}")
  if "pdiff_run_plus_warm_cache_compile_s" in report:
    warm_s = pdiff["rollout_compile_persistent_cache"]["cache_warm"][
        "compile_s"]
    print(f"{'pdiff rollout, compile (warm cache)':34s}{warm_s:10.1f}")
  print(f"{'pdiff policy alone, run':34s}{pol['run_s']:10.1f}  "
        f"(compile {pol['compile_s']:.1f} s)")
  if "env_only" in pdiff:
    print(f"{'pdiff env alone, run':34s}{pdiff['env_only']['run_s']:10.1f}"
          f"  (compile {pdiff['env_only']['compile_s']:.1f} s)")
  if reference is not None:
    for name, value in report["ratios"].items():
      print(f"{name:42s}{value:6.2f}x")
  else:
    print(f"no ratios: the reference was not timed ({problem})")
  print(f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} "
        f"after, {cores} cores")
  write_json_atomic(args.json_output, report)
  print(f"wrote {args.json_output}")
  print(json.dumps(report.get("ratios", {})))


if __name__ == "__main__":
  main()
