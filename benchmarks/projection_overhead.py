"""Time per update of project_conflicting + AdamW against plain AdamW.

The parameters are an MLP-shaped dict of about 1.05M float32 values. Every
update is jitted with the optimiser state donated, as in a training step that
replaces its state (``--no-donate`` keeps the state, so every update also
copies it: for the projection, a memory of ``num_bases`` times the
parameters). Each configuration is fed a cycle of distinct gradients
(independent ones, and correlated ones as between successive training steps)
and warmed up; then all of them are timed in turns, one block of updates each
per round, so that a change in the machine's load affects them alike. The
table reports the fastest round of each (the least disturbed) and the JSON
also the median, with the ratios to AdamW's time of both.

Goal: with ``num_bases`` = 1 the projection and AdamW together take at most
1.5x AdamW's time, with ``num_bases`` = 8 at most 4x (``GOALS``, checked on
the medians of one run; ``summary`` in the JSON).

Usage:
  python benchmarks/projection_overhead.py [--iters 50] [--repeats 15]
      [--no-donate]

Prints a table and writes benchmarks/results/projection_overhead.json.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import time

import jax
import jax.numpy as jnp
import optax

from pdiff.optim import project_conflicting

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
# An MLP 384 -> 1024 -> 512 -> 256: 1,050,368 parameters.
LAYER_SIZES = (384, 1024, 512, 256)
# Largest time of project_conflicting + AdamW over AdamW's, per num_bases.
GOALS = {1: 1.5, 8: 4.0}


def mlp_shaped_tree(key: jax.Array) -> dict[str, dict[str, jax.Array]]:
  """Random float32 arrays shaped like the parameters of the MLP."""
  tree = {}
  pairs = list(zip(LAYER_SIZES[:-1], LAYER_SIZES[1:], strict=True))
  for i, (key_i, (fan_in, fan_out)) in enumerate(
      zip(jax.random.split(key, len(pairs)), pairs, strict=True)
  ):
    key_w, key_b = jax.random.split(key_i)
    tree[f"dense_{i}"] = {
        "kernel": jax.random.normal(key_w, (fan_in, fan_out)),  # [in, out]
        "bias": jax.random.normal(key_b, (fan_out,)),  # [out]
    }
  return tree


def gradient_stream(
    key: jax.Array, num: int, correlation: float
) -> tuple[list[optax.Updates], list[optax.Updates]]:
  """``num`` primary gradients and conflicting guidance gradients.

  Successive primary gradients share a common direction with weight
  ``correlation`` (0: independent, so the memory is well-conditioned; near 1:
  nearly parallel, as between successive training steps, which triggers the
  second projection pass).
  """
  key_base, *keys = jax.random.split(key, 2 * num + 1)
  base = mlp_shaped_tree(key_base)
  grads, guidance = [], []
  for key_g, key_d in zip(keys[:num], keys[num:], strict=True):
    g = jax.tree.map(
        lambda b, n: correlation * b + (1.0 - correlation) * n,
        base,
        mlp_shaped_tree(key_g),
    )
    grads.append(g)
    # Conflicts with g, leaf by leaf and as a whole.
    guidance.append(jax.tree.map(lambda d, x: d - 2.0 * x, mlp_shaped_tree(key_d), g))
  return grads, guidance


class UpdateTimer:
  """Jitted ``tx.update`` calls on a cycle of gradients, timed in blocks."""

  def __init__(
      self,
      tx: optax.GradientTransformation,
      params: optax.Params,
      grads: list[optax.Updates],
      guidance: list[optax.Updates] | None,
      donate: bool,
  ):
    def step(state, grads, extra):
      updates, state = tx.update(grads, state, params, **extra)
      # The state first: jit gives each donated buffer to the first output
      # of its shape, which is then the same leaf of the new state.
      return state, updates

    self.step = jax.jit(step, donate_argnums=0 if donate else ())
    self.grads = grads
    self.extras = [
        {} if guidance is None else {"guidance": d} for d in guidance or grads
    ]
    self.state = tx.init(params)
    self.run(len(grads))  # compile, warm up and fill the memory
    self.times: list[float] = []

  def run(self, num: int) -> None:
    """``num`` updates, waiting for the last."""
    state, updates = self.state, None
    for i in range(num):
      j = i % len(self.grads)
      state, updates = self.step(state, self.grads[j], self.extras[j])
    self.state = jax.block_until_ready(state)
    jax.block_until_ready(updates)

  def time_block(self, iters: int) -> None:
    """Appends the seconds per update of ``iters`` updates to ``times``."""
    start = time.perf_counter()
    self.run(iters)
    self.times.append((time.perf_counter() - start) / iters)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--iters", type=int, default=50, help="updates per block")
  parser.add_argument("--repeats", type=int, default=15, help="timed rounds")
  parser.add_argument(
      "--donate", action=argparse.BooleanOptionalAction, default=True,
      help="donate the optimiser state to jit",
  )
  args = parser.parse_args()

  key_p, key_g = jax.random.split(jax.random.key(0))
  params = mlp_shaped_tree(key_p)
  num_params = sum(x.size for x in jax.tree.leaves(params))
  # More distinct gradients than the largest memory, so it never holds repeats.
  streams = {
      "independent": gradient_stream(key_g, 9, correlation=0.0),
      "correlated": gradient_stream(key_g, 9, correlation=0.9),
  }

  adamw = optax.adamw(1e-4)
  configs = [("adamw", "independent", None, None)] + [
      ("project_conflicting+adamw", gradients, num_bases, per_leaf)
      for gradients in streams
      for num_bases in GOALS
      for per_leaf in (False, True)
  ]
  timers = []
  for _, gradients, num_bases, per_leaf in configs:
    grads, guidance = streams[gradients]
    if num_bases is None:
      tx, guidance = adamw, None
    else:
      tx = optax.chain(project_conflicting(1.0, num_bases, per_leaf=per_leaf), adamw)
    timers.append(UpdateTimer(tx, params, grads, guidance, args.donate))
  load_before = os.getloadavg()[0]
  for _ in range(args.repeats):
    for timer in timers:
      timer.time_block(args.iters)
  load_after = os.getloadavg()[0]

  baseline, baseline_median = min(timers[0].times), statistics.median(timers[0].times)
  rows = []
  for config, timer in zip(configs, timers, strict=True):
    name, gradients, num_bases, per_leaf = config
    fastest, median = min(timer.times), statistics.median(timer.times)
    rows.append({
        "name": name,
        "gradients": gradients,
        "num_bases": num_bases,
        "per_leaf": per_leaf,
        "ms_per_update": 1e3 * fastest,
        "ms_per_update_median": 1e3 * median,
        "overhead_vs_adamw": fastest / baseline,
        "overhead_vs_adamw_median": median / baseline_median,
    })
  summary = []
  for num_bases, goal in GOALS.items():
    for gradients in streams:
      selected = [
          r for r in rows
          if r["num_bases"] == num_bases and r["gradients"] == gradients
      ]
      worst = max(r["overhead_vs_adamw_median"] for r in selected)
      summary.append({
          "num_bases": num_bases,
          "gradients": gradients,
          "goal_overhead_vs_adamw": goal,
          "max_overhead_vs_adamw_median": worst,
          "max_overhead_vs_adamw": max(r["overhead_vs_adamw"] for r in selected),
          "meets_goal": worst <= goal,
      })

  print(f"{num_params:,} parameters, {jax.devices()[0].platform}, "
        f"{args.repeats} rounds of {args.iters} updates, "
        f"state {'donated' if args.donate else 'not donated'}, "
        f"load average {load_before:.1f} to {load_after:.1f}")
  print(f"{'transform':<27}{'gradients':>12}{'M':>3}{'per_leaf':>9}"
        f"{'ms/update':>11}{'median':>8}{'x adamw':>9}{'median':>8}")
  for row in rows:
    num_bases = "-" if row["num_bases"] is None else row["num_bases"]
    per_leaf = "-" if row["per_leaf"] is None else row["per_leaf"]
    print(f"{row['name']:<27}{row['gradients']:>12}{num_bases:>3}{per_leaf!s:>9}"
          f"{row['ms_per_update']:>11.3f}{row['ms_per_update_median']:>8.3f}"
          f"{row['overhead_vs_adamw']:>9.2f}{row['overhead_vs_adamw_median']:>8.2f}")
  for s in summary:
    print(f"num_bases={s['num_bases']}, {s['gradients']} gradients: at most "
          f"{s['max_overhead_vs_adamw_median']:.2f}x AdamW (median), goal "
          f"{s['goal_overhead_vs_adamw']}x: "
          f"{'met' if s['meets_goal'] else 'not met'}")

  RESULTS.mkdir(parents=True, exist_ok=True)
  result = {
      "benchmark": "projection_overhead",
      "num_params": num_params,
      "layer_sizes": LAYER_SIZES,
      "dtype": jnp.dtype(jnp.float32).name,
      "backend": jax.default_backend(),
      "device": str(jax.devices()[0].device_kind),
      "num_devices": jax.device_count(),
      "cpu_count": os.cpu_count(),
      "load_average": [load_before, load_after],
      "jax_version": jax.__version__,
      "optax_version": optax.__version__,
      "iters": args.iters,
      "repeats": args.repeats,
      "donate_state": args.donate,
      "goal_overhead_vs_adamw": {str(k): v for k, v in GOALS.items()},
      "rows": rows,
      "summary": summary,
  }
  path = RESULTS / "projection_overhead.json"
  path.write_text(json.dumps(result, indent=2) + "\n")
  print(f"wrote {path}")


if __name__ == "__main__":
  main()
