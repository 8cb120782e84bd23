"""Prompt Diffuser: prompts generated per second, and fine-tune steps per second.

Prompt generation. For each batch size B it times ``PromptDiffuser.sample``
(the library's sampling path) with the DDPM chain of N = 20 steps
(``pdiff.diffusion.ddpm_sample``) and with DDIM in 5 steps
(``pdiff.diffusion.ddim_sample``), both clipping x0 as the default config
does, against the ideal: the same number of bare denoiser calls at the same
batch, chained in one ``lax.scan`` inside one jit. ``chain / bare`` is the
sampler's overhead (noise, schedule gathers, clipping). One jitted denoiser
call timed alone, times the number of steps, shows what a chain driven from
Python would cost.

Fine-tuning. ``make_finetune`` (stage 2, one ``lax.scan`` over the steps) is
timed for each combination of ``mode`` (``dm_only``, ``sum``,
``projection``) and ``guidance_path`` (``chain``: L_DT back-propagated
through the whole reverse chain; ``one_step``), with the default batches (64
windows for L_DM, 16 generated prompts and PLM segments for L_DT).

Where a guided step's time goes (``--parts``). The parts of a ``sum`` step
through the chain are timed apart, each as one ``lax.scan`` over the steps
with the parameters held fixed: L_DM with its gradient; L_DT alone and with
its gradient; the reverse chain alone (the 16 prompts generated) and with its
gradient in the denoiser's parameters (a cotangent of ones); the PLM's
action loss with its gradient in the generated prompt (the PLM's forward and
backward, without the chain). The rest of a step (the optimiser, the
gradients' norms and cosine) is the step's time minus L_DM's and L_DT's.

Shapes: prompts of K* = 5 steps with D = ds + da + 1 = 17 + 6 + 1 features
(cheetah-vel), the default denoiser (MLP 3 x 256, ~0.2M parameters),
randomly initialised; the frozen PLM is a randomly initialised Prompt-DT of
the ``cpu`` pre-training preset's shape (embed 64, 2 layers, MLP 256, K =
10); the few-shot data are 5 synthetic trajectories of 200 steps. Compile
time (trace, lower, compile) is reported apart; run times are the fastest of
``--repeats`` runs (the least disturbed on a shared machine; the JSON also
has the median), each run long enough to be timed reliably. The machine's
float32 matmul rate (2048 x 2048 in XLA) is measured first and written with
the results, so that runs on different machines can be compared.

  PYTHONPATH=. python benchmarks/prompt_generation.py
  PYTHONPATH=. python benchmarks/prompt_generation.py --batch_sizes=1,64 \
      --finetune_modes=projection:chain --finetune_steps=50

Writes benchmarks/results/prompt_generation.json.
"""

from __future__ import annotations

import functools
import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
from absl import app, flags

from benchmarks import guided_step
from experiments.configs import prompt_diffuser as prompt_diffuser_config
from pdiff import provenance
from pdiff.evaluation.report import write_json_atomic
from pdiff.models.policy import PretrainedPolicy
from pdiff.tuning import prompt_diffuser as pd
from pdiff.types import Trajectories

_BATCH_SIZES = flags.DEFINE_list(
    "batch_sizes", ["1", "16", "256"], "Prompts generated per call.")
_STATE_DIM = flags.DEFINE_integer("state_dim", 17, "State size ds.")
_ACTION_DIM = flags.DEFINE_integer("action_dim", 6, "Action size da.")
_FINETUNE_MODES = flags.DEFINE_list(
    "finetune_modes",
    ["dm_only", "sum:chain", "sum:one_step", "projection:chain",
     "projection:one_step"],
    "Fine-tune variants as MODE or MODE:GUIDANCE_PATH.")
_FINETUNE_STEPS = flags.DEFINE_integer(
    "finetune_steps", 20, "Fine-tune steps per timed call (one lax.scan).")
_FEW_SHOT = flags.DEFINE_integer("few_shot", 5, "Few-shot trajectories.")
_STEPS = flags.DEFINE_integer("steps", 200, "Steps per trajectory.")
_PARTS = flags.DEFINE_boolean(
    "parts", True, "Also time the parts of a guided step through the chain.")
_REPEATS = flags.DEFINE_integer(
    "repeats", 5, "Timed runs per program; the fastest is reported.")
_OUTPUT = flags.DEFINE_string(
    "output",
    os.path.join(os.path.dirname(__file__), "results",
                 "prompt_generation.json"),
    "Where to write the JSON results.")

# Side of the float32 matmul whose rate is recorded with the results.
MATMUL_SIZE = 2048


def time_program(jitted: Callable, args_for_seed: Callable[[int], tuple],
                 repeats: int, min_time_s: float = 0.2) -> dict[str, float]:
  """Compiles ``jitted`` ahead of time, warms it up and times ``repeats`` runs.

  A run calls the program enough times (a fresh key each) to last about
  ``min_time_s``; the result is per call. On a shared machine the fastest
  run is the least disturbed estimate, the median the typical one.

  Args:
    jitted: a ``jax.jit``-wrapped function.
    args_for_seed: ``seed -> args``.
    repeats: timed runs.
    min_time_s: least duration of a timed run.

  Returns:
    ``compile_s`` (trace, lower and compile), ``run_s`` (the fastest run)
    and ``median_s`` per call, and ``calls_per_run``.
  """
  start = time.perf_counter()
  compiled = jitted.lower(*args_for_seed(0)).compile()
  compile_s = time.perf_counter() - start
  start = time.perf_counter()
  jax.block_until_ready(compiled(*args_for_seed(0)))
  calls = max(1, math.ceil(min_time_s / (time.perf_counter() - start)))
  runs, seed = [], 1
  for _ in range(repeats):
    args = [args_for_seed(seed + i) for i in range(calls)]
    seed += calls
    start = time.perf_counter()
    for a in args:
      jax.block_until_ready(compiled(*a))
    runs.append((time.perf_counter() - start) / calls)
  return {"compile_s": compile_s, "run_s": min(runs),
          "median_s": statistics.median(runs), "calls_per_run": calls}


def measure_sampling(model: pd.PromptDiffuser, params, plm: PretrainedPolicy,
                     few_shot: Trajectories, config, batch: int,
                     repeats: int) -> list[dict]:
  """Times DDPM and DDIM generation and the bare denoiser at one batch."""
  windows = plm.sample_prompts(jax.random.key(1), few_shot, batch,
                               position="random")
  _, y = model.encode(windows)  # [B, K*, 2]
  shape = y.shape[:-1] + model.x_mean.shape  # (B, K*, D)
  denoise_fn = model.denoise_fn

  def bare_chain(num_calls):
    @jax.jit
    def run(params, y, key):
      def body(x, n):  # x: [B, K*, D]
        return denoise_fn(params)(x, y, jnp.full((batch,), n)), None
      steps = jnp.arange(num_calls - 1, -1, -1, dtype=jnp.int32)
      x, _ = jax.lax.scan(body, jax.random.normal(key, shape), steps)
      return x
    return run

  single_call = jax.jit(
      lambda params, x, y, n: denoise_fn(params)(x, y, n))
  x = jax.random.normal(jax.random.key(2), shape)
  n = jnp.zeros((batch,), jnp.int32)
  single = time_program(single_call, lambda s: (params, x, y, n), repeats)

  records = []
  for sampler, calls in (("ddpm", config.num_diffusion_steps),
                         ("ddim", config.ddim_steps)):
    sampler_config = config.copy_and_resolve_references()
    sampler_config.sampler = sampler
    chain = jax.jit(functools.partial(model.sample, config=sampler_config))
    args = lambda s: (params, y, jax.random.key(s))
    chain_t = time_program(chain, args, repeats)
    bare_t = time_program(bare_chain(calls), args, repeats)
    record = {
        "sampler": sampler, "batch": batch, "denoiser_calls": calls,
        "chain_compile_s": round(chain_t["compile_s"], 3),
        "chain_ms": float(f"{1e3 * chain_t['run_s']:.4g}"),
        "chain_ms_median": float(f"{1e3 * chain_t['median_s']:.4g}"),
        "prompts_per_s": round(batch / chain_t["run_s"], 1),
        "bare_denoiser_scan_ms": float(f"{1e3 * bare_t['run_s']:.4g}"),
        "bare_denoiser_scan_ms_median": float(
            f"{1e3 * bare_t['median_s']:.4g}"),
        "bare_prompts_per_s": round(batch / bare_t["run_s"], 1),
        "chain_over_bare": round(chain_t["run_s"] / bare_t["run_s"], 2),
        "single_call_ms_times_calls": float(
            f"{1e3 * single['run_s'] * calls:.4g}"),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(record), flush=True)
    records.append(record)
  return records


def parse_variant(text: str) -> tuple[str, str]:
  """``"sum:one_step"`` -> ``("sum", "one_step")``; MODE alone -> chain."""
  mode, _, path = text.partition(":")
  path = path or "chain"
  if mode not in pd.MODES or path not in pd.GUIDANCE_PATHS:
    raise ValueError(f"--finetune_modes entry {text!r}: expected MODE[:PATH] "
                     f"with MODE in {pd.MODES} and PATH in "
                     f"{pd.GUIDANCE_PATHS}.")
  return mode, path


def measure_finetune(model: pd.PromptDiffuser, params,
                     plm: PretrainedPolicy, few_shot: Trajectories, config,
                     mode: str, path: str, repeats: int) -> dict:
  """Times ``make_finetune`` for one mode and guidance path."""
  ft_config = config.copy_and_resolve_references()
  ft_config.mode = mode
  ft_config.guidance_path = path
  finetune = jax.jit(pd.make_finetune(model, plm, ft_config))
  t = time_program(finetune,
                   lambda s: (params, few_shot, jax.random.key(s)), repeats,
                   min_time_s=0.5)
  steps = ft_config.finetune_steps
  record = {
      "mode": mode, "guidance_path": path if mode != "dm_only" else None,
      "finetune_steps": steps, "finetune_batch": ft_config.finetune_batch,
      "guidance_batch": ft_config.guidance_batch,
      "compile_s": round(t["compile_s"], 2),
      "ms_per_step": float(f"{1e3 * t['run_s'] / steps:.4g}"),
      "ms_per_step_median": float(f"{1e3 * t['median_s'] / steps:.4g}"),
      "steps_per_s": round(steps / t["run_s"], 1),
      "load_average_1min": round(os.getloadavg()[0], 2),
  }
  print(json.dumps(record), flush=True)
  return record


def measure_guided_parts(model: pd.PromptDiffuser, params,
                         plm: PretrainedPolicy, few_shot: Trajectories,
                         config, repeats: int) -> list[dict]:
  """Times each of ``guided_step.guided_step_parts`` for
  ``config.finetune_steps`` keys in one ``lax.scan``, the parameters fixed."""
  steps = config.finetune_steps
  records = []
  parts = guided_step.guided_step_parts(model, plm, few_shot, config)
  for name, part in parts.items():
    @jax.jit
    def program(p, key, part=part):
      return jax.lax.scan(lambda _, k: (None, part(p, k)), None,
                          jax.random.split(key, steps))[1]
    t = time_program(program, lambda s: (params, jax.random.key(s)), repeats,
                     min_time_s=0.5)
    record = {
        "part": name, "steps": steps,
        "compile_s": round(t["compile_s"], 2),
        "ms_per_step": float(f"{1e3 * t['run_s'] / steps:.4g}"),
        "ms_per_step_median": float(f"{1e3 * t['median_s'] / steps:.4g}"),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(record), flush=True)
    records.append(record)
  return records


def main(argv):
  del argv
  if _REPEATS.value < 1 or _FINETUNE_STEPS.value < 1:
    raise ValueError("--repeats and --finetune_steps must be >= 1.")
  batches = [int(b) for b in _BATCH_SIZES.value]
  variants = [parse_variant(v) for v in _FINETUNE_MODES.value]
  load_before = os.getloadavg()
  gflops = provenance.matmul_rate(size=MATMUL_SIZE)
  ds, da = _STATE_DIM.value, _ACTION_DIM.value
  k_plm, k_train, k_few, k_init = jax.random.split(jax.random.key(0), 4)
  plm = guided_step.random_plm(k_plm, ds, da)
  train_trajs = guided_step.synthetic_trajectories(k_train, 20, _STEPS.value,
                                                   ds, da)
  few_shot = guided_step.synthetic_trajectories(k_few, _FEW_SHOT.value,
                                                _STEPS.value, ds, da)
  config = prompt_diffuser_config.get_config()
  config.finetune_steps = _FINETUNE_STEPS.value
  model, params = pd.make_prompt_diffuser(plm, train_trajs, config, k_init)
  num_params = sum(x.size for x in jax.tree.leaves(params))

  sampling = []
  for batch in batches:
    sampling += measure_sampling(model, params, plm, few_shot, config, batch,
                                 _REPEATS.value)
  finetune = [measure_finetune(model, params, plm, few_shot, config, mode,
                               path, _REPEATS.value)
              for mode, path in variants]
  parts = (measure_guided_parts(model, params, plm, few_shot, config,
                                _REPEATS.value) if _PARTS.value else [])

  print(f"\nprompt generation (K*={plm.prompt_len}, D={ds + da + 1}, "
        f"denoiser {num_params} params)")
  header = (f"{'sampler':<8} {'calls':>5} {'B':>5} {'ms':>9} {'prompts/s':>11}"
            f" {'bare ms':>9} {'chain/bare':>10} {'1-call ms x n':>13}")
  print(header + "\n" + "-" * len(header))
  for r in sampling:
    print(f"{r['sampler']:<8} {r['denoiser_calls']:>5} {r['batch']:>5} "
          f"{r['chain_ms']:>9.3f} {r['prompts_per_s']:>11.0f} "
          f"{r['bare_denoiser_scan_ms']:>9.3f} {r['chain_over_bare']:>10.2f} "
          f"{r['single_call_ms_times_calls']:>13.3f}")
  print(f"\nfine-tuning ({_FINETUNE_STEPS.value} steps per call)")
  header = (f"{'mode':<11} {'guidance':<9} {'ms/step':>9} {'steps/s':>8} "
            f"{'compile s':>9}")
  print(header + "\n" + "-" * len(header))
  for r in finetune:
    print(f"{r['mode']:<11} {r['guidance_path'] or '-':<9} "
          f"{r['ms_per_step']:>9.2f} {r['steps_per_s']:>8.1f} "
          f"{r['compile_s']:>9.1f}")
  if parts:
    print("\nparts of a guided step through the chain (fixed parameters)")
    for r in parts:
      print(f"{r['part']:<20} {r['ms_per_step']:>9.2f} ms/step")

  result = {
      "machine": {
          "platform": platform.platform(),
          "processor": platform.processor() or platform.machine(),
          "cpu_count": os.cpu_count(),
          "jax_version": jax.__version__,
          "devices": [str(d) for d in jax.devices()],
          "matmul_gflops_per_s": round(gflops),
          "load_average_before": [round(x, 2) for x in load_before],
          "load_average_after": [round(x, 2) for x in os.getloadavg()],
      },
      "shape": {
          "prompt_len": plm.prompt_len, "state_dim": ds, "action_dim": da,
          "transition_dim": ds + da + 1,
          "num_diffusion_steps": config.num_diffusion_steps,
          "ddim_steps": config.ddim_steps, "schedule": config.schedule,
          "clip_denoised": config.clip_denoised,
          "hidden_sizes": list(config.hidden_sizes),
          "denoiser_params": num_params,
          "plm_params": sum(x.size for x in jax.tree.leaves(plm.params)),
          "plm_context_len": plm.context_len,
          "few_shot": [_FEW_SHOT.value, _STEPS.value],
      },
      "repeats": _REPEATS.value,
      "sampling": sampling,
      "finetune": finetune,
      "guided_step_parts": parts,
  }
  write_json_atomic(_OUTPUT.value, result)
  print(f"Wrote {_OUTPUT.value}")


if __name__ == "__main__":
  app.run(main)
