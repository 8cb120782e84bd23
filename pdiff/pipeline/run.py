"""The whole experiment: data -> PLM -> prompt tuning -> evaluation -> table.

Every stage writes under the work directory (WORKSPACE.md) with a
fingerprint of what it was computed from (:mod:`pdiff.stages`), so a stopped
run resumes where it stopped and a changed config never reuses a stale
output:

1. datasets of the family (collected with the shipped behaviour policies);
2. the pre-trained Prompt-DT (``{workdir}/pretrain``; trained, or copied from
   the package's shipped checkpoint when ``config.pretrained`` names one);
3. per seed: few-shot trajectories of every test task (drawn from its own
   dataset, or from the training tasks' with ``few_shot_source =
   "training_tasks"``, the zero-shot setting), and each method's one-off
   work (``prepare``, e.g. Prompt Diffuser's stage-1 model);
4. per registered method (``pdiff.tuning.registry``) and seed: the tuned
   policy of every test task, then rollouts;
5. ``results/results.{json,md}`` and ``results/returns.png``: statistics over
   seeds, paired differences to the plain few-shot prompt, provenance.

The config is checked in full before anything is written
(:func:`pdiff.pipeline.validate.check_run_config`).
"""

from __future__ import annotations

import os
import time
from typing import NamedTuple

import jax
import ml_collections
import numpy as np
from absl import logging

from pdiff import envs, provenance, stages
from pdiff.data import loading
from pdiff.evaluation import report
from pdiff.evaluation.rollout import has_success_metric
from pdiff.models.policy import PretrainedPolicy
from pdiff.pipeline import prepare, tuning_runs
from pdiff.pipeline.validate import check_run_config
from pdiff.tuning import registry
from pdiff.types import Trajectories

RESULTS_VERSION = 1


def method_rows(config) -> list[tuple[str, registry.Method, object]]:
  """``(label, method, method config)`` for every row of the results table,
  in ``config.methods`` order (a method's variants, e.g. Prompt Diffuser's
  gradient combinations, are consecutive rows)."""
  rows = []
  for name in config.methods:
    method = registry.get(name)
    rows += [(label, method, c) for label, c in method.rows(config.tuning[name])]
  return rows


class _Timer:
  """Wall time per stage of this invocation."""

  def __init__(self):
    self.seconds: dict[str, float] = {}

  def __call__(self, name: str, fn, *args, **kwargs):
    logging.info("== %s", name)
    start = time.time()
    out = fn(*args, **kwargs)
    self.seconds[name] = self.seconds.get(name, 0.0) + time.time() - start
    return out


class Setup(NamedTuple):
  """What every experiment on a family starts from."""

  plm: PretrainedPolicy
  plm_fingerprint: str
  digests: dict[str, str]  # quality -> digest of its dataset files
  test_trajs: list[Trajectories]  # few-shot quality, per test task
  context: registry.TuningContext  # PLM, family, pooled training data


def setup(config, family, workdir: str, timer=None) -> Setup:
  """The datasets and the PLM (each computed or found by fingerprint), the
  test tasks' trajectories of ``config.few_shot_quality`` and the tuning
  context; ``timer(name, fn, *args)`` times the two stages."""
  timer = timer or (lambda name, fn, *args: fn(*args))
  qualities = sorted({config.pretrain.quality, config.few_shot_quality})
  digests = timer("datasets", prepare.ensure_datasets, config, family,
                  workdir, qualities)
  train_quality = config.pretrain.quality
  plm, plm_fp = timer("pretrain", prepare.ensure_pretrained, config, family,
                      workdir, digests[train_quality])
  root = os.path.join(workdir, "datasets")
  test_trajs = tuning_runs.load_split(family, root, config.few_shot_quality,
                                      list(family.test_tasks))
  train = loading.pooled(tuning_runs.load_split(
      family, root, train_quality, list(family.train_tasks)))
  return Setup(plm, plm_fp, digests, test_trajs,
               tuning_runs.make_context(plm, family, train))


def run(config: ml_collections.ConfigDict, workdir: str, *,
        results_dir: str | None = None) -> dict:
  """Runs (or resumes) the whole pipeline; returns the results dict.

  Args:
    config: ``experiments/configs/run.py``'s config.
    workdir: the work directory (datasets, PLM, preparations).
    results_dir: where ``results/`` (the method x seed runs and the table)
      goes; default ``workdir``. Experiments that compare settings of one
      family (e.g. few-shot and zero-shot) give each its own, sharing the
      family's datasets, PLM and preparations.

  Raises:
    ConfigError: a bad config value (before anything is written).
    StaleStageError: the work directory holds datasets or a PLM computed
      with another config.
  """
  check_run_config(config)
  start = time.time()
  timer = _Timer()
  family = envs.make(config.family, backend=config.backend)
  rows = method_rows(config)
  plm, plm_fp, digests, test_trajs, context = setup(config, family, workdir,
                                                    timer)
  train_quality = config.pretrain.quality
  prepare_inputs = {"plm": plm_fp,
                    f"datasets/{train_quality}": digests[train_quality]}
  root = os.path.join(workdir, "datasets")
  run_inputs = tuning_runs.run_inputs(config, family, root, plm_fp, digests)
  pools = tuning_runs.few_shot_pools(config, family, root, test_trajs)
  results_dir = workdir if results_dir is None else results_dir
  prepared: dict[str, tuple] = {}  # prepare fingerprint -> (value, fp)
  prepare_fns: dict[str, object] = {}
  runs: dict[str, dict[int, dict]] = {label: {} for label, _, _ in rows}
  for label, method, mconf in rows:
    tune = None  # built (and compiled) on first use, shared by the seeds
    for seed in config.seeds:
      inputs = dict(run_inputs)
      value = None
      if method.prepare is not None:
        p_fp = tuning_runs.prepare_record(config, method, mconf, seed,
                                          prepare_inputs)["fingerprint"]
        if p_fp not in prepared:
          fn_key = stages.canonical_json([method.name,
                                          method.prepare_config(mconf)])
          if fn_key not in prepare_fns:
            prepare_fns[fn_key] = method.prepare(context, mconf)
          prepared[p_fp] = timer(
              "prepare", tuning_runs.ensure_prepared, config, method, mconf,
              context, workdir, seed, prepare_inputs, prepare_fns[fn_key])
        value, inputs["prepare"] = prepared[p_fp]
      record = tuning_runs.run_record(config, label, method, mconf, seed,
                                      inputs,
                                      success=has_success_metric(family))
      path = tuning_runs.run_path(results_dir, label, seed,
                                  record["fingerprint"])
      done = stages.read_record(path)
      if stages.is_complete(done, record["fingerprint"]):
        runs[label][seed] = done
        continue
      if tune is None:
        tune = method.make_tune(context, mconf)
      few_shot = tuning_runs.draw_few_shot(
          pools, config.num_shots, tuning_runs.seed_key(config, seed))
      data = tuning_runs.stacked(few_shot if method.data == "few_shot"
                                 else test_trajs)
      runs[label][seed] = timer(
          "tune_and_evaluate", tuning_runs.tune_and_evaluate, config, context,
          method, tune, data, value, seed, record, path)
  info = {label: dict(
      method=method.name,
      trainable_parameters=int(method.trainable_parameters(context, mconf)),
      information=method.information(
          mconf, tuning_runs.few_shot_source(config)),
      online_episodes=int(method.online_episodes(mconf)),
      diagnostic=method.diagnostic) for label, method, mconf in rows}
  plm_size = int(sum(np.size(x) for x in jax.tree.leaves(plm.params)))
  for row in info.values():
    row["parameter_share"] = row["trainable_parameters"] / plm_size
  return write_results(config, family, results_dir, runs, info, plm_size,
                       timer.seconds, time.time() - start,
                       dict(plm=plm_fp, datasets=digests))


def write_results(config, family, workdir: str, runs, info: dict,
                  plm_parameters: int, stage_seconds: dict,
                  wall_seconds: float, inputs: dict) -> dict:
  """``results/results.{json,md}`` and ``returns.png`` from the runs.

  A method whose runs all hold success rates (a family with a success
  metric) gets ``success_rate`` in its row and the table's column.
  """
  seeds = list(config.seeds)
  per_method = {label: [by_seed[s]["task_means"] for s in seeds]
                for label, by_seed in runs.items()}
  success = {label: [tuning_runs.task_success_rates(by_seed[s])
                     for s in seeds] for label, by_seed in runs.items()}
  success = {label: rates for label, rates in success.items()
             if all(r is not None for r in rates)}
  summary = report.summarize_methods(per_method,
                                     success_rates=success or None)
  for label, row in summary["methods"].items():
    row["tune_seconds"] = [runs[label][s]["tune_seconds"] for s in seeds]
    row["eval_seconds"] = [runs[label][s]["eval_seconds"] for s in seeds]
    row["run_fingerprints"] = [runs[label][s]["fingerprint"] for s in seeds]
    row.update(info[label])
  run_fps = {f"{label}/seed{s}": runs[label][s]["fingerprint"]
             for label in runs for s in seeds}
  results = dict(
      family=family.name, backend=family.backend,
      test_tasks=list(family.test_tasks), num_shots=config.num_shots,
      few_shot_quality=config.few_shot_quality,
      few_shot_source=tuning_runs.few_shot_source(config),
      eval_episodes=config.eval_episodes, seeds=seeds,
      plm_parameters=plm_parameters,
      methods=summary["methods"], statistics=summary["statistics"],
      # Table order (the JSON file sorts keys).
      row_order=list(summary["methods"]),
      # Wall time of each stage in this invocation (a stage that was already
      # done takes about 0); per-seed tuning and evaluation times are in
      # ``methods``.
      stage_seconds=stage_seconds, wall_seconds=wall_seconds,
      fingerprint=stages.fingerprint("results", RESULTS_VERSION, {}, run_fps),
      inputs=dict(inputs, runs=run_fps),
      provenance=provenance.provenance(),
      config=config.to_dict())
  out = os.path.join(workdir, "results")
  report.write_json_atomic(os.path.join(out, "results.json"), results)
  md = report.results_table_markdown(results)
  tmp = os.path.join(out, ".tmp-results.md")
  with open(tmp, "w") as f:
    f.write(md)
  os.replace(tmp, os.path.join(out, "results.md"))
  title = (f"{family.name}: test-task return, {config.num_shots}-shot "
           f"{config.few_shot_quality} data{report.source_phrase(results)}, "
           f"{len(seeds)} seeds")
  report.save_bar_chart(os.path.join(out, "returns.png"), summary["methods"],
                        title=title)
  logging.info("\n%s", md)
  return results

