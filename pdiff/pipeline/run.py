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
   policy of every test task, then rollouts (independent seeds and rows run
   in threads at once, :mod:`pdiff.pipeline.concurrency`, with the same
   numbers);
5. ``results/results.{json,md}`` and ``results/returns.png``: statistics over
   seeds, paired differences to the plain few-shot prompt, provenance.

The config is checked in full before anything is written
(:func:`pdiff.pipeline.validate.check_run_config`).
"""

from __future__ import annotations

import os
import threading
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
from pdiff.pipeline import concurrency, prepare, tuning_runs
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
    self._lock = threading.Lock()

  def __call__(self, name: str, fn, *args, **kwargs):
    logging.info("== %s", name)
    start = time.time()
    out = fn(*args, **kwargs)
    with self._lock:
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
  plm, plm_fp = timer("pretrain", prepare.ensure_pretrained, config, family,
                      workdir, digests[config.pretrain.quality])
  return with_split(config, Setup(plm, plm_fp, digests, [], None), family,
                    workdir)


def with_split(config, base: Setup, family, workdir: str) -> Setup:
  """``base`` (its datasets and PLM) with the test trajectories and the
  tuning context of ``family``'s split of the tasks (e.g. validation tasks
  held out of the training tasks)."""
  root = os.path.join(workdir, "datasets")
  test_trajs = tuning_runs.load_split(family, root, config.few_shot_quality,
                                      list(family.test_tasks))
  train = loading.pooled(tuning_runs.load_split(
      family, root, config.pretrain.quality, list(family.train_tasks)))
  return base._replace(test_trajs=test_trajs, context=tuning_runs.make_context(
      base.plm, family, train))


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
  started_with = provenance.provenance()  # the code that runs
  timer = _Timer()
  family = envs.make(config.family, backend=config.backend)
  rows = method_rows(config)
  plm, plm_fp, digests, test_trajs, context = setup(config, family, workdir,
                                                    timer)
  prepare_inputs = tuning_runs.prepare_inputs(config, plm_fp, digests)
  root = os.path.join(workdir, "datasets")
  run_inputs = tuning_runs.run_inputs(config, family, root, plm_fp, digests)
  pools = tuning_runs.few_shot_pools(config, family, root, test_trajs)
  results_dir = workdir if results_dir is None else results_dir
  threads = concurrency.run_threads()
  gate = concurrency.FirstCallGate()
  prepared = timer("prepare", _prepare_all, config, rows, context, workdir,
                   prepare_inputs, gate, threads)
  runs, pending = plan_units(config, rows, lambda *unit: prepared[unit],
                             run_inputs, results_dir,
                             success=has_success_metric(family))
  if pending:
    logging.info("%d runs to tune and evaluate, %d at once (%s)",
                 len(pending), min(threads, len(pending)),
                 concurrency.ENV_VAR)

  def data_of(seed: int, method: registry.Method) -> Trajectories:
    if method.data != "few_shot":
      return tuning_runs.stacked(test_trajs)
    return tuning_runs.stacked(tuning_runs.draw_few_shot(
        pools, config.num_shots, tuning_runs.seed_key(config, seed)))

  done_runs = timer("tune_and_evaluate", tune_and_evaluate_all, config,
                    context, pending, data_of, gate=gate, threads=threads)
  for unit, run_ in zip(pending, done_runs, strict=True):
    runs[unit.label][unit.seed] = run_
  runs = {label: {s: by_seed[s] for s in config.seeds}
          for label, by_seed in runs.items()}
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
                       dict(plm=plm_fp, datasets=digests), started_with)


def plan_units(config, rows, prepared_of, inputs: dict[str, str],
               results_dir: str, *, success: bool = False
               ) -> tuple[dict[str, dict[int, dict]], list[Unit]]:
  """Every row's seed, found complete in ``results_dir`` or still to run.

  Args:
    config: the run config (its seeds).
    rows: ``(label, method, method config)`` of each row.
    prepared_of: ``(label, seed) -> (value, fingerprint)`` of a row whose
      method has a ``prepare``.
    inputs: the inputs every run shares (PLM, datasets, ...).
    results_dir: where the runs are cached (:func:`tuning_runs.run_path`).
    success: the family has a success metric (:func:`tuning_runs.run_record`).

  Returns:
    ``({label: {seed: complete run record}}, units to run)``, the units
    seed-major, so that threads start on different rows.
  """
  done_runs: dict[str, dict[int, dict]] = {label: {} for label, _, _ in rows}
  pending: list[Unit] = []
  for seed in config.seeds:
    for label, method, mconf in rows:
      run_inputs = dict(inputs)
      value = None
      if method.prepare is not None:
        value, run_inputs["prepare"] = prepared_of(label, seed)
      record = tuning_runs.run_record(config, label, method, mconf, seed,
                                      run_inputs, success=success)
      path = tuning_runs.run_path(results_dir, label, seed,
                                  record["fingerprint"])
      done = stages.read_record(path)
      if stages.is_complete(done, record["fingerprint"]):
        done_runs[label][seed] = done
      else:
        pending.append(Unit(label, method, mconf, seed, value, record, path))
  return done_runs, pending


class Unit(NamedTuple):
  """One row's seed to tune and evaluate."""

  label: str
  method: registry.Method
  mconf: ml_collections.ConfigDict
  seed: int
  prepared: object  # the seed's ``prepare`` output (None without one)
  record: dict  # the run's stage record (tuning_runs.run_record)
  path: str  # where the run is written


def tune_and_evaluate_all(config, context: registry.TuningContext,
                          units: list[Unit], data_of, *,
                          gate: concurrency.FirstCallGate | None = None,
                          threads: int | None = None) -> list[dict]:
  """Tunes, evaluates and writes every unit, ``threads`` at once
  (:func:`concurrency.run_threads` by default); the runs, in unit order.

  ``data_of(seed, method)`` gives the data a unit's ``tune`` reads
  (stacked over test tasks). Each row's ``tune`` is built once and its
  first call, like the first evaluation, runs alone (``gate``); a family
  whose rollouts are not thread-safe evaluates one unit at a time.
  """
  threads = concurrency.run_threads() if threads is None else threads
  gate = concurrency.FirstCallGate() if gate is None else gate
  tunes = _TuneFns(context, gate)
  evaluation_lock = (None if context.family.thread_safe_rollouts
                     else threading.Lock())

  def run_unit(unit: Unit) -> dict:
    method = unit.method

    def evaluation(evaluate):
      if evaluation_lock is None:
        return gate(("evaluate", method.params_per_task), evaluate)
      with evaluation_lock:
        return evaluate()

    return tuning_runs.tune_and_evaluate(
        config, context, method, tunes.get(unit.label, method, unit.mconf),
        data_of(unit.seed, method), unit.prepared, unit.seed, unit.record,
        unit.path, evaluation=evaluation)

  return concurrency.map_in_threads(run_unit, units, threads)


def _prepare_all(config, rows, context, workdir: str, inputs: dict, gate,
                 threads: int) -> dict[str, tuple]:
  """Every seed's ``prepare`` of every row's method, each once (rows that
  share a stage-1 config share it), in threads: ``{(label, seed): (value,
  fingerprint)}`` for the rows with a ``prepare``."""
  jobs = {}  # fingerprint -> (method, mconf, seed, key of its function)
  fingerprints = {}  # (label, seed) -> fingerprint
  for seed in config.seeds:
    for label, method, mconf in rows:
      if method.prepare is not None:
        fp = tuning_runs.prepare_record(config, method, mconf, seed,
                                        inputs)["fingerprint"]
        fn_key = stages.canonical_json([method.name,
                                        method.prepare_config(mconf)])
        jobs.setdefault(fp, (method, mconf, seed, fn_key))
        fingerprints[label, seed] = fp
  fns = {}
  for method, mconf, _, fn_key in jobs.values():
    if fn_key not in fns:
      fn = method.prepare(context, mconf)
      fns[fn_key] = (lambda key, fn=fn, fn_key=fn_key:
                     gate(("prepare", fn_key), fn, key))

  def one(job):
    method, mconf, seed, fn_key = job
    return tuning_runs.ensure_prepared(config, method, mconf, context,
                                       workdir, seed, inputs, fns[fn_key])

  values = dict(zip(jobs, concurrency.map_in_threads(
      one, list(jobs.values()), threads), strict=True))
  return {unit: values[fp] for unit, fp in fingerprints.items()}


class _TuneFns:
  """Each row's ``tune``, built on first use and shared by its seeds; the
  first call of each runs alone (:class:`concurrency.FirstCallGate`)."""

  def __init__(self, context, gate: concurrency.FirstCallGate):
    self._context = context
    self._gate = gate
    self._lock = threading.Lock()
    self._fns: dict[str, object] = {}

  def get(self, label: str, method, mconf):
    with self._lock:
      if label not in self._fns:
        tune = method.make_tune(self._context, mconf)
        self._fns[label] = (lambda *args, tune=tune:
                            self._gate(("tune", label), tune, *args))
      return self._fns[label]


def write_results(config, family, workdir: str, runs, info: dict,
                  plm_parameters: int, stage_seconds: dict,
                  wall_seconds: float, inputs: dict,
                  provenance_record: dict | None = None) -> dict:
  """``results/results.{json,md}`` and ``returns.png`` from the runs.

  ``provenance_record`` (:func:`pdiff.provenance.provenance`) should be
  taken when the computation started, so that it names the code that ran;
  by default it is taken now.

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
      provenance=(provenance.provenance() if provenance_record is None
                  else provenance_record),
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

