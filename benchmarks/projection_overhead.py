"""Time per update of project_conflicting + AdamW against plain AdamW.

The parameters are an MLP-shaped dict of about 1.05M float32 values. Every
update is jitted (optionally with the optimiser state donated), fed a cycle
of distinct gradients (independent ones, and correlated ones as between
successive training steps), and timed after a warm-up over repeats of a
block of updates. The machine's load is not controlled, so the table reports
the fastest repeat (the least disturbed) and the JSON also the median.

Usage:
  python benchmarks/projection_overhead.py [--iters 50] [--repeats 7] [--donate]

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


def time_updates(
    tx: optax.GradientTransformation,
    params: optax.Params,
    grads: list[optax.Updates],
    guidance: list[optax.Updates] | None,
    iters: int,
    repeats: int,
    donate: bool,
) -> list[float]:
  """Seconds per jitted ``tx.update`` call in each repeat, cycling the grads."""

  def step(state, grads, extra):
    return tx.update(grads, state, params, **extra)

  step = jax.jit(step, donate_argnums=0 if donate else ())
  extras = [{} if guidance is None else {"guidance": d} for d in guidance or grads]
  state = tx.init(params)
  for i in range(len(grads)):  # compile, warm up and fill the memory
    updates, state = step(state, grads[i], extras[i])
  jax.block_until_ready((updates, state))
  per_update = []
  for _ in range(repeats):
    start = time.perf_counter()
    for i in range(iters):
      updates, state = step(state, grads[i % len(grads)], extras[i % len(grads)])
    jax.block_until_ready((updates, state))
    per_update.append((time.perf_counter() - start) / iters)
  return per_update


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--iters", type=int, default=50, help="updates per repeat")
  parser.add_argument("--repeats", type=int, default=7, help="timed repeats")
  parser.add_argument(
      "--donate", action="store_true", help="donate the optimiser state to jit"
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
  grads = streams["independent"][0]
  times = time_updates(
      adamw, params, grads, None, args.iters, args.repeats, args.donate
  )
  baseline = min(times)
  rows = [{"name": "adamw", "gradients": "independent", "num_bases": None,
           "per_leaf": None, "ms_per_update": 1e3 * baseline,
           "ms_per_update_median": 1e3 * statistics.median(times),
           "overhead_vs_adamw": 1.0}]
  for gradients, (grads, guidance) in streams.items():
    for num_bases in (1, 8):
      for per_leaf in (False, True):
        tx = optax.chain(
            project_conflicting(1.0, num_bases, per_leaf=per_leaf), adamw
        )
        times = time_updates(
            tx, params, grads, guidance, args.iters, args.repeats, args.donate
        )
        seconds = min(times)
        rows.append({
            "name": "project_conflicting+adamw",
            "gradients": gradients,
            "num_bases": num_bases,
            "per_leaf": per_leaf,
            "ms_per_update": 1e3 * seconds,
            "ms_per_update_median": 1e3 * statistics.median(times),
            "overhead_vs_adamw": seconds / baseline,
        })

  print(f"{num_params:,} parameters, {jax.devices()[0].platform}, "
        f"fastest of {args.repeats} x {args.iters} updates, "
        f"state {'donated' if args.donate else 'not donated'}")
  print(f"{'transform':<27}{'gradients':>12}{'M':>3}{'per_leaf':>9}"
        f"{'ms/update':>11}{'x adamw':>9}")
  for row in rows:
    num_bases = "-" if row["num_bases"] is None else row["num_bases"]
    per_leaf = "-" if row["per_leaf"] is None else row["per_leaf"]
    print(f"{row['name']:<27}{row['gradients']:>12}{num_bases:>3}{per_leaf!s:>9}"
          f"{row['ms_per_update']:>11.3f}{row['overhead_vs_adamw']:>9.2f}")

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
      "jax_version": jax.__version__,
      "optax_version": optax.__version__,
      "iters": args.iters,
      "repeats": args.repeats,
      "donate_state": args.donate,
      "rows": rows,
  }
  path = RESULTS / "projection_overhead.json"
  path.write_text(json.dumps(result, indent=2) + "\n")
  print(f"wrote {path}")


if __name__ == "__main__":
  main()
