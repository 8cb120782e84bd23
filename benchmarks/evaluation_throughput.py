"""Env steps per second of prompted Prompt-DT rollouts against the bare env.

For each (family, model shape, tasks x episodes) it compiles and times these
programs, each one ``jax.jit`` over the whole batch of episodes and a
``lax.scan`` over the episode:

  rollout           ``make_prompted_rollout`` with ``prompt_dt_policy``,
                    as evaluation runs it: each task's prompt keys and
                    values cached once, then the window alone at each step
  rollout_uncached  the same with ``cache_prompt=False``: the whole forward
                    pass over prompt and window at every step
  env               the same family and batch stepped alone with uniform
                    random actions (``lax.scan`` of ``jax.vmap(family.step)``)
  policy            the cached policy's forward passes alone, at the same
                    batch (tasks x episodes, one prompt per task), one per
                    step (its output fed back so that no call is hoisted)
  policy_uncached   the same with the whole forward pass

``rollout / env`` is the slowdown the model brings to evaluation; ``env +
policy`` shows where the rollout's time goes; ``rollout_cache_speedup`` is
the uncached rollout's median time over the cached one's, and
``max_action_difference`` the largest |action| difference of the two
policies on the same windows. The Prompt-DT is randomly initialised (a
trained one costs the same) at the shapes of the pre-training presets of
``experiments/configs/pretrain.py``: ``paper`` (Prompt-DT's: embed 128, 3
layers, MLP 512, K = 20, K* = 5) and ``cpu`` (embed 64, 2 layers, MLP 256,
K = 10, K* = 5). Compile time (trace, lower, compile) is reported apart and
with a run added (``*_total_s``). A setting's programs take turns in each of
``--repeats`` rounds after a warm-up call; run times are the fastest run
(the least disturbed on a shared machine) and the median, as wall time and
as CPU time of this process (not counting time lost to other processes, but
summed over XLA's threads).

  PYTHONPATH=. python benchmarks/evaluation_throughput.py
  PYTHONPATH=. python benchmarks/evaluation_throughput.py \
      --families=cheetah_vel --presets=paper --batches=5x50 --repeats=1

Writes benchmarks/results/evaluation_throughput.json.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from experiments.configs import pretrain as pretrain_config
from pdiff import envs
from pdiff.evaluation.report import write_json_atomic
from pdiff.evaluation.rollout import (
    PromptedPolicy,
    make_prompted_rollout,
    prompt_dt_policy,
)
from pdiff.models.prompt_dt import make_prompt_dt
from pdiff.types import Segments

_FAMILIES = flags.DEFINE_list(
    "families", ["cheetah_vel", "point_robot"],
    "Task families (pdiff.envs.make names, default backend each).")
_PRESETS = flags.DEFINE_list(
    "presets", ["paper", "cpu"],
    "Model shapes: presets of experiments/configs/pretrain.py.")
_BATCHES = flags.DEFINE_list(
    "batches", ["5x10"],
    "Batches as TASKSxEPISODES; tasks cycle over the family's test tasks.")
_NUM_STEPS = flags.DEFINE_integer(
    "num_steps", 0, "Steps per episode scanned; 0 = the family's episode "
    "length. Per-step costs do not depend on it.")
_REPEATS = flags.DEFINE_integer("repeats", 2, "Timed runs per program.")
_SKIP_POLICY = flags.DEFINE_bool(
    "skip_policy", False, "Do not time the policy's forward passes alone.")
_SKIP_UNCACHED = flags.DEFINE_bool(
    "skip_uncached", False, "Do not time the programs without prompt cache.")
_OUTPUT = flags.DEFINE_string(
    "output",
    os.path.join(os.path.dirname(__file__), "results",
                 "evaluation_throughput.json"),
    "Where to write the JSON results.")


def parse_batch(text: str) -> tuple[int, int]:
  """``"5x10"`` -> ``(5, 10)``: tasks and episodes per task."""
  parts = text.lower().split("x")
  if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
    raise ValueError(f"--batches entries must look like TASKSxEPISODES "
                     f"(e.g. 5x10), got {text!r}.")
  tasks, episodes = (int(p) for p in parts)
  if tasks < 1 or episodes < 1:
    raise ValueError(f"--batches entry {text!r}: tasks and episodes must be "
                     ">= 1.")
  return tasks, episodes


@dataclasses.dataclass(frozen=True)
class RandomModel:
  """A randomly initialised Prompt-DT at a pre-training preset's shape for a
  family (a trained one costs the same), with the shapes a rollout needs."""
  model: object
  params: object
  config: object  # the preset's pre-training config
  ds: int  # state size
  da: int  # action size
  k_len: int  # K, context steps
  kp_len: int  # K*, prompt steps
  max_ep_len: int
  prompt_key: jax.Array  # a key for the prompts, apart from the init's


def random_model(family: envs.TaskFamily, preset: str) -> RandomModel:
  """:class:`RandomModel` of ``preset`` for ``family`` (fixed keys)."""
  config = pretrain_config.get_config(f"{family.name},{preset}")
  model_config = config.train.model
  ds, da = family.observation_size, family.action_size
  k_len, kp_len = config.context_len, config.prompt_len
  max_ep_len = model_config.max_ep_len
  model = make_prompt_dt(model_config, state_dim=ds, act_dim=da)
  k_init, k_prompt = jax.random.split(jax.random.key(0))
  params = model.init(
      k_init, random_segments(k_init, 1, k_len, ds, da, max_ep_len),
      random_segments(k_prompt, 1, kp_len, ds, da, max_ep_len))["params"]
  return RandomModel(model, params, config, ds, da, k_len, kp_len, max_ep_len,
                     k_prompt)


def random_segments(key: jax.Array, batch: int, steps: int, ds: int, da: int,
                    max_ep_len: int) -> Segments:
  """Random ``Segments`` ``[batch, steps, ...]``, every step real."""
  k_s, k_a, k_r, k_g, k_t = jax.random.split(key, 5)
  return Segments(
      states=jax.random.normal(k_s, (batch, steps, ds)),
      actions=jax.random.uniform(k_a, (batch, steps, da), minval=-1,
                                 maxval=1),
      rewards=jax.random.normal(k_r, (batch, steps)),
      returns_to_go=jax.random.normal(k_g, (batch, steps)),
      timesteps=jax.random.randint(k_t, (batch, steps), 0, max_ep_len),
      mask=jnp.ones((batch, steps), jnp.float32))


def make_env_only(family: envs.TaskFamily, task_indices: np.ndarray,
                  num_episodes: int, num_steps: int) -> Callable:
  """``run(key) -> returns [tasks * episodes]`` under uniform random actions."""
  indices = np.repeat(task_indices, num_episodes)  # [B]
  batch = indices.shape[0]

  def run(key: jax.Array) -> jax.Array:
    reset_key, action_key = jax.random.split(key)
    state = jax.vmap(family.reset)(jax.random.split(reset_key, batch),
                                   family.tasks(indices))

    def body(carry, step_key):
      state, returns = carry
      action = jax.random.uniform(step_key, (batch, family.action_size),
                                  minval=-1.0, maxval=1.0)  # [B, da]
      state = jax.vmap(family.step)(state, action)
      return (state, returns + state.reward), None

    carry = (state, jnp.zeros((batch,), jnp.float32))
    (_, returns), _ = jax.lax.scan(body, carry,
                                   jax.random.split(action_key, num_steps))
    return returns

  return jax.jit(run)


def make_policy_only(policy: PromptedPolicy, num_tasks: int,
                     num_episodes: int, context_len: int, prompt_len: int,
                     ds: int, da: int, max_ep_len: int,
                     num_steps: int) -> Callable:
  """``run(params, key) -> actions [tasks, episodes, da]``: ``num_steps``
  passes of ``policy`` on random windows and prompts, fed as in a rollout."""

  def one_task(params, segments, prompt):
    if policy.encode_prompt is None:
      context = jax.tree.map(
          lambda x: jnp.broadcast_to(x, (num_episodes, *x.shape[1:])), prompt)
    else:
      context = policy.encode_prompt(params, prompt)

    def body(segments, _):
      action = policy.policy_fn(params, segments, context)[:, -1]  # [E, da]
      return segments._replace(
          actions=segments.actions.at[:, -1].set(action)), None

    segments, _ = jax.lax.scan(body, segments, None, length=num_steps)
    return segments.actions[:, -1]

  def run(params, key: jax.Array) -> jax.Array:
    per_task = lambda key, batch, steps: jax.vmap(lambda k: random_segments(
        k, batch, steps, ds, da, max_ep_len))(jax.random.split(key, num_tasks))
    k_seg, k_prompt = jax.random.split(key)
    segments = per_task(k_seg, num_episodes, context_len)  # [T, E, K, ...]
    prompts = per_task(k_prompt, 1, prompt_len)  # [T, 1, Kp, ...]
    return jax.vmap(one_task, in_axes=(None, 0, 0))(params, segments, prompts)

  return jax.jit(run)


def time_programs(programs: dict[str, tuple[Callable, Callable[[int], tuple]]],
                  repeats: int, min_time_s: float = 0.2
                  ) -> dict[str, dict[str, float]]:
  """Compiles each program ahead of time, warms it up and times ``repeats``
  rounds, each running every program in turn (so that a shared machine's
  load falls on all alike). A run calls a program enough times (a fresh key
  each) to last about ``min_time_s``, not to be timed at the clock's grain.

  Args:
    programs: ``name -> (jitted, args_for_seed)``: a ``jax.jit``-wrapped
      function and ``seed -> args`` (a fresh key per call).
    repeats: timed rounds.
    min_time_s: least duration of a timed run.

  Returns:
    Per program: ``compile_s`` (trace, lower, compile), per call the fastest
    run's wall and CPU times ``run_s`` and ``cpu_s``, their medians
    ``median_s`` and ``cpu_median_s``, and ``calls_per_run``.
  """
  compiled, calls = {}, {}
  out = {name: {"wall": [], "cpu": []} for name in programs}
  for name, (jitted, args_for_seed) in programs.items():
    start = time.perf_counter()
    compiled[name] = jitted.lower(*args_for_seed(0)).compile()
    out[name]["compile_s"] = time.perf_counter() - start
    start = time.perf_counter()
    jax.block_until_ready(compiled[name](*args_for_seed(0)))
    calls[name] = max(1, math.ceil(min_time_s / (time.perf_counter() - start)))
  for repeat in range(repeats):
    for name, (_, args_for_seed) in programs.items():
      n = calls[name]
      args = [args_for_seed(1 + repeat * n + i) for i in range(n)]
      start, cpu_start = time.perf_counter(), time.process_time()
      for a in args:
        jax.block_until_ready(compiled[name](*a))
      out[name]["wall"].append((time.perf_counter() - start) / n)
      out[name]["cpu"].append((time.process_time() - cpu_start) / n)
  return {name: {"compile_s": t["compile_s"], "run_s": min(t["wall"]),
                 "cpu_s": min(t["cpu"]),
                 "median_s": statistics.median(t["wall"]),
                 "cpu_median_s": statistics.median(t["cpu"]),
                 "calls_per_run": calls[name]}
          for name, t in out.items()}


def measure_env(family: envs.TaskFamily, num_tasks: int, num_episodes: int,
                num_steps: int, repeats: int) -> dict[str, float]:
  """Times the family stepped alone, ``num_tasks x num_episodes`` episodes."""
  tasks = np.resize(np.asarray(family.test_tasks), num_tasks)  # [T]
  env_only = make_env_only(family, tasks, num_episodes, num_steps)
  return time_programs(
      {"env": (env_only, lambda s: (jax.random.key(s),))}, repeats)["env"]


def measure(family: envs.TaskFamily, preset: str, num_tasks: int,
            num_episodes: int, num_steps: int, repeats: int,
            env_timing: dict[str, float], time_policy: bool,
            time_uncached: bool = True) -> dict:
  """Times the prompted rollout (and the policy alone) for one setting.

  Args:
    family: the task family (its ``episode_length`` is ``num_steps``).
    preset: model shape, a preset of ``experiments/configs/pretrain.py``.
    num_tasks: tasks, cycling over the family's test tasks.
    num_episodes: episodes per task.
    num_steps: steps per episode.
    repeats: timed rounds.
    env_timing: ``measure_env``'s result for the same batch.
    time_policy: also time the policy's forward passes alone.
    time_uncached: also time the programs without the prompt cache.

  Returns:
    A JSON-ready record.
  """
  m = random_model(family, preset)
  model, params, config = m.model, m.params, m.config
  model_config = config.train.model
  ds, da, k_len, kp_len = m.ds, m.da, m.k_len, m.kp_len
  max_ep_len, k_prompt = m.max_ep_len, m.prompt_key
  num_params = sum(x.size for x in jax.tree.leaves(params))

  tasks = np.resize(np.asarray(family.test_tasks), num_tasks)  # [T]
  task_indices = jnp.asarray(tasks, jnp.int32)
  prompts = random_segments(k_prompt, num_tasks, kp_len, ds, da, max_ep_len)
  policies = {"": prompt_dt_policy(model)}
  if time_uncached:
    policies["_uncached"] = prompt_dt_policy(model, cache_prompt=False)
  programs, policy_only = {}, {}
  for suffix, policy in policies.items():
    rollout = make_prompted_rollout(
        family, **policy._asdict(), context_len=k_len,
        num_episodes=num_episodes, state_mean=jnp.zeros((ds,)),
        state_std=jnp.ones((ds,)), max_ep_len=max_ep_len)
    programs[f"rollout{suffix}"] = (
        rollout, lambda s: (params, prompts, task_indices, jax.random.key(s)))
    if time_policy:
      policy_only[suffix] = make_policy_only(
          policy, num_tasks, num_episodes, k_len, kp_len, ds, da, max_ep_len,
          num_steps)
      programs[f"policy{suffix}"] = (
          policy_only[suffix], lambda s: (params, jax.random.key(s)))
  timings = {**time_programs(programs, repeats), "env": env_timing}
  batch = num_tasks * num_episodes
  env_steps = batch * num_steps
  record = {
      "family": family.name, "backend": family.backend, "preset": preset,
      "hidden_dim": model_config.hidden_dim,
      "num_layers": model_config.num_layers, "mlp_dim": model_config.mlp_dim,
      "context_len": k_len, "prompt_len": kp_len, "num_params": num_params,
      "tasks": num_tasks, "episodes_per_task": num_episodes,
      "parallel_episodes": batch, "steps_per_episode": num_steps,
      "env_steps": env_steps,
  }
  for name, t in timings.items():
    record[f"{name}_compile_s"] = round(t["compile_s"], 2)
    record[f"{name}_run_s"] = float(f"{t['run_s']:.4g}")
    record[f"{name}_run_s_median"] = float(f"{t['median_s']:.4g}")
    record[f"{name}_total_s"] = round(t["compile_s"] + t["median_s"], 2)
    record[f"{name}_calls_per_run"] = t["calls_per_run"]
    record[f"{name}_steps_per_s"] = round(env_steps / t["run_s"], 1)
    record[f"{name}_steps_per_cpu_s"] = round(env_steps / t["cpu_s"], 1)
  for suffix in policies:
    rollout = timings[f"rollout{suffix}"]
    for clock, suffix_clock in (("run_s", ""), ("cpu_s", "_cpu")):
      env_s = timings["env"][clock]
      record[f"rollout{suffix}_over_env{suffix_clock}"] = round(
          rollout[clock] / env_s, 2)
      if time_policy:
        record[f"rollout{suffix}_over_env_plus_policy{suffix_clock}"] = round(
            rollout[clock] / (env_s + timings[f"policy{suffix}"][clock]), 2)
  if time_uncached:
    cached, uncached = timings["rollout"], timings["rollout_uncached"]
    record["rollout_cache_speedup"] = round(
        uncached["median_s"] / cached["median_s"], 2)
    record["rollout_cache_speedup_cpu"] = round(
        uncached["cpu_median_s"] / cached["cpu_median_s"], 2)
    if time_policy:
      key = jax.random.key(1)
      difference = jnp.abs(policy_only[""](params, key)
                           - policy_only["_uncached"](params, key))
      record["max_action_difference"] = float(f"{float(difference.max()):.3g}")
  record["load_average_1min"] = round(os.getloadavg()[0], 2)
  print(json.dumps(record), flush=True)
  return record


def print_table(records: list[dict]) -> None:
  """Env steps per second by wall time and by CPU time of this process, with
  and without the prompt cache."""
  nan = float("nan")
  header = (f"{'family':<12} {'preset':<6} {'TxE':>6} | {'rollout':>8} "
            f"{'uncached':>8} {'env':>10} | {'rollout':>8} {'uncached':>8} "
            f"{'env':>10} {'policy':>8} | {'speedup':>7} {'compile':>7}")
  print(f"{'':<27}| {'steps/s, wall time':^29}| {'steps/s, CPU time':^38}|")
  print(header)
  print("-" * len(header))
  for r in records:
    batch = f"{r['tasks']}x{r['episodes_per_task']}"
    print(f"{r['family']:<12} {r['preset']:<6} {batch:>6} | "
          f"{r['rollout_steps_per_s']:>8.0f} "
          f"{r.get('rollout_uncached_steps_per_s', nan):>8.0f} "
          f"{r['env_steps_per_s']:>10.0f} | "
          f"{r['rollout_steps_per_cpu_s']:>8.0f} "
          f"{r.get('rollout_uncached_steps_per_cpu_s', nan):>8.0f} "
          f"{r['env_steps_per_cpu_s']:>10.0f} "
          f"{r.get('policy_steps_per_cpu_s', nan):>8.0f} | "
          f"{r.get('rollout_cache_speedup', nan):>7.2f} "
          f"{r['rollout_compile_s']:>7.1f}")
  print("rollout: with the prompt cache; speedup: uncached / cached median "
        "wall time; compile: the rollout's, s. CPU time sums XLA's threads.")


def main(argv):
  del argv
  batches = [parse_batch(b) for b in _BATCHES.value]
  for preset in _PRESETS.value:
    if preset not in pretrain_config.PRESETS:
      raise ValueError(f"--presets: {preset!r} is not a preset of "
                       f"experiments/configs/pretrain.py {pretrain_config.PRESETS}.")
  if _REPEATS.value < 1:
    raise ValueError(f"--repeats must be >= 1, got {_REPEATS.value}.")
  load_before = os.getloadavg()
  records = []
  for name in _FAMILIES.value:
    family = envs.make(name)
    num_steps = _NUM_STEPS.value or family.episode_length
    if num_steps > family.episode_length:
      raise ValueError(f"--num_steps={num_steps} exceeds {family.name}'s "
                       f"episode length {family.episode_length}.")
    if num_steps != family.episode_length:
      family = dataclasses.replace(family, episode_length=num_steps)
    for num_tasks, num_episodes in batches:
      env_timing = measure_env(family, num_tasks, num_episodes, num_steps,
                               _REPEATS.value)
      for preset in _PRESETS.value:
        records.append(measure(family, preset, num_tasks, num_episodes,
                               num_steps, _REPEATS.value, env_timing,
                               not _SKIP_POLICY.value,
                               not _SKIP_UNCACHED.value))
  print_table(records)
  result = {
      "machine": {
          "platform": platform.platform(),
          "processor": platform.processor() or platform.machine(),
          "cpu_count": os.cpu_count(),
          "jax_version": jax.__version__,
          "devices": [str(d) for d in jax.devices()],
          "load_average_before": [round(x, 2) for x in load_before],
          "load_average_after": [round(x, 2) for x in os.getloadavg()],
      },
      "repeats": _REPEATS.value,
      "records": records,
  }
  write_json_atomic(_OUTPUT.value, result)
  print(f"Wrote {_OUTPUT.value}")


if __name__ == "__main__":
  app.run(main)
