"""Prompt Diffuser's variants as pipeline runs, compared paired by seed.

A variant is a name and overrides of the ``prompt_diffuser`` config (e.g.
``{"guidance_scale": 10.0}``). :func:`run_variants` tunes and evaluates each
one, with the plain few-shot prompt (``prompt_dt``) beside them, exactly as
:func:`pdiff.pipeline.run.run` runs a table's rows: per seed its few-shot
draw, its stage-1 model, its tuning and evaluation keys. Runs are cached
under ``{workdir}/results/runs`` by fingerprint, labelled ``PREFIX/NAME``, so
a stopped comparison resumes. The diagnosis (:mod:`pdiff.pipeline.diagnose`)
and the selection of settings on validation tasks
(:mod:`pdiff.pipeline.selection`) both compare variants this way.
"""

from __future__ import annotations

from collections.abc import Mapping

import ml_collections
import numpy as np

from pdiff.evaluation import statistics
from pdiff.pipeline import concurrency, tuning_runs
from pdiff.pipeline.run import plan_units, tune_and_evaluate_all
from pdiff.tuning import prompt_diffuser as pd
from pdiff.tuning import prompt_diffuser_method, registry

BASELINE = "prompt_dt"  # the row every variant is also compared with


def variant_configs(base: ml_collections.ConfigDict,
                    variants: Mapping[str, Mapping]
                    ) -> dict[str, ml_collections.ConfigDict]:
  """Prompt Diffuser's config under each variant's overrides (unknown fields
  are refused by ConfigDict; bad values by ``pd.check_config``)."""
  out = {}
  fields = prompt_diffuser_method.row_fields(base)
  for name, overrides in variants.items():
    c = ml_collections.ConfigDict(fields)
    c.update(dict(overrides))
    pd.check_config(c)
    out[name] = c
  return out


def stage1_models(config, context: registry.TuningContext, workdir: str,
                  inputs: dict[str, str]) -> dict[int, tuple]:
  """Every seed's stage-1 model of ``config.tuning.prompt_diffuser`` (one per
  seed, shared by every variant: they differ in stage-2 fields only), found
  or trained under its fingerprint, seeds in threads
  (:func:`concurrency.run_threads`; the first training runs alone):
  ``{seed: (params, fingerprint)}``."""
  method = registry.get("prompt_diffuser")
  mconf = ml_collections.ConfigDict(config.tuning.prompt_diffuser.to_dict())
  prepare_fn = method.prepare(context, mconf)
  gate = concurrency.FirstCallGate()

  def one(seed):
    return tuning_runs.ensure_prepared(
        config, method, mconf, context, workdir, seed, inputs,
        lambda key: gate("prepare", prepare_fn, key))

  seeds = list(config.seeds)
  return dict(zip(seeds, concurrency.map_in_threads(
      one, seeds, concurrency.run_threads()), strict=True))


def run_variants(config, context: registry.TuningContext,
                 variants: Mapping[str, Mapping], reference: str,
                 workdir: str, inputs: dict, stage1: Mapping[int, tuple],
                 test_trajs, *, prefix: str = "diagnose") -> dict:
  """Prompt Diffuser under each variant (and the plain few-shot prompt), as
  the pipeline runs them: per seed its few-shot draw, tuning and
  ``config.eval_episodes`` evaluation episodes, cached as runs labelled
  ``PREFIX/NAME`` (resumable, by fingerprint).

  Args:
    config: the run config (seeds, few-shot data, evaluation episodes and
      the base ``tuning.prompt_diffuser``).
    context: the tuning context; its family's test tasks are evaluated.
    variants: name -> overrides of the Prompt Diffuser config.
    reference: the variant every other is compared with.
    workdir: where the runs are cached.
    inputs: the runs' inputs (PLM, datasets, and anything else that makes
      two comparisons differ, e.g. the task split).
    stage1: ``{seed: (params, fingerprint)}`` (:func:`stage1_models`).
    test_trajs: per test task, the trajectories its few-shot draw comes from.
    prefix: the label of the comparison's runs.

  Returns:
    ``{label: {"per_seed_tasks": [seeds][tasks], "mean",
    "difference_to_prompt_dt", "difference_to_PREFIX/REFERENCE"}}``, the
    differences paired by seed.

  Raises:
    ValueError: ``reference`` is not a variant.
  """
  if variants and reference not in variants:
    raise ValueError(f"reference variant {reference!r} is not among the "
                     f"variants {sorted(variants)}.")
  base = ml_collections.ConfigDict(config.tuning.prompt_diffuser.to_dict())
  rows = [(BASELINE, registry.get(BASELINE), config.tuning.prompt_dt)]
  for name, c in variant_configs(base, variants).items():
    c.modes = (c.mode,)
    rows.append((f"{prefix}/{name}", registry.get("prompt_diffuser"), c))
  done, pending = plan_units(config, rows,
                             lambda label, seed: stage1[seed], inputs,
                             workdir)
  per_seed = {label: {seed: run["task_means"] for seed, run in by_seed.items()}
              for label, by_seed in done.items()}

  def data_of(seed, method):
    del method  # every row reads the seed's few-shot draw
    return tuning_runs.stacked(tuning_runs.draw_few_shot(
        test_trajs, config.num_shots, tuning_runs.seed_key(config, seed)))

  for unit, run in zip(pending, tune_and_evaluate_all(
      config, context, pending, data_of), strict=True):
    per_seed[unit.label][unit.seed] = run["task_means"]
  out = {}
  for label, by_seed in per_seed.items():
    tasks = [by_seed[s] for s in config.seeds]
    out[label] = dict(per_seed_tasks=tasks, mean=float(np.mean(tasks)))
  first = f"{prefix}/{reference}" if variants else None
  for label, row in out.items():
    for ref in (BASELINE, first):
      if ref is not None and ref != label:
        d = statistics.paired_difference(row["per_seed_tasks"],
                                         out[ref]["per_seed_tasks"])
        row[f"difference_to_{ref}"] = {
            k: v for k, v in d.items() if not k.startswith("per_task")}
  return out


def comparison_table(comparison: Mapping, reference: str) -> list[str]:
  """Markdown lines of :func:`run_variants`' result: per run its mean return
  and its paired differences (95% CI) to ``prompt_dt`` and to the
  ``reference`` label."""
  lines = [f"| run | mean | difference to {BASELINE} | difference to "
           f"{reference} |", "|---|---|---|---|"]
  for label, v in comparison.items():
    cells = [label, f"{v['mean']:.1f}"]
    for ref in (BASELINE, reference):
      d = v.get(f"difference_to_{ref}")
      interval = (None if d is None else statistics.format_interval(
          d.get("ci_low"), d.get("ci_high")))
      cells.append("n/a" if d is None else f"{d['mean']:+.1f} {interval}")
    lines.append("| " + " | ".join(cells) + " |")
  return lines
