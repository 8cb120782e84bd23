"""The cheap, fingerprint-keyed stages: each method's per-seed preparation
and each method x seed run (tuning + evaluation).

Each seed draws its own few-shot trajectories of every test task (the same
for every method of that seed): from the test task's dataset, or, with
``few_shot_source="training_tasks"`` (the zero-shot setting), from the
pooled training tasks' datasets (:func:`few_shot_pools`). A method's one-off
work of the seed (``prepare``, e.g. Prompt Diffuser's stage-1 model) starts
from the seed's key. Outputs live at paths keyed by their fingerprint
(``tuning/{method}/prepare-{fp}/``, ``results/runs/{label}/seed{s}-{fp}.json``),
so a changed config computes new outputs beside the old ones and a config
changed back finds its old outputs again.
"""

from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from pdiff import serialization, stages
from pdiff.data import loading, samplers, storage
from pdiff.evaluation.rollout import evaluate_tuned
from pdiff.models.policy import TunedPolicy
from pdiff.pipeline.validate import FEW_SHOT_SOURCES
from pdiff.tuning import registry
from pdiff.types import Trajectories

PREPARE_VERSION = 1
RUN_VERSION = 2
SHORT = 16  # hex digits of a fingerprint in a path
CURVE_POINTS = 100  # at most this many points of a loss curve are kept


def seed_key(config, seed: int) -> jax.Array:
  """The root key of one seed: its few-shot draw, preparation, tuning and
  rollouts."""
  return jax.random.fold_in(jax.random.key(config.seed), seed)


def run_keys(config, seed: int) -> tuple[jax.Array, jax.Array]:
  """``(tune_key, eval_key)`` of one seed's method runs."""
  k_tune, k_eval = jax.random.split(jax.random.fold_in(seed_key(config, seed),
                                                       2))
  return k_tune, k_eval


def prepare_key(config, seed: int) -> jax.Array:
  return jax.random.fold_in(seed_key(config, seed), 1)


def draw_few_shot(test_trajs: list[Trajectories], num_shots: int,
                  key: jax.Array) -> list[Trajectories]:
  """``num_shots`` distinct trajectories of each test task, drawn at random
  (task ``i`` with ``fold_in(key, i)``), in the random order of the draw
  (so that a method holding out the last few sees a random subset); every
  method of a seed gets these. ``test_trajs[i]`` is what task ``i`` draws
  from (:func:`few_shot_pools`)."""
  out = []
  for i, trajs in enumerate(test_trajs):
    n = trajs.lengths.shape[0]
    if num_shots > n:
      raise ValueError(f"num_shots={num_shots} but a test task has only {n} "
                       "trajectories.")
    idx = np.asarray(jax.random.choice(
        jax.random.fold_in(key, i), n, (num_shots,), replace=False))
    out.append(jax.tree.map(lambda x, idx=idx: np.asarray(x)[idx], trajs))
  return out


def load_split(family, root: str, quality: str, tasks) -> list[Trajectories]:
  by_task = loading.load_task_trajectories(family, root, quality, tasks)
  return [by_task[i] for i in tasks]


def few_shot_source(config) -> str:
  """``config.few_shot_source`` (the default, ``"test_task"``, when the
  config has no such field)."""
  return config.get("few_shot_source", FEW_SHOT_SOURCES[0])


def training_pool(family, root: str, quality: str) -> Trajectories:
  """Every trajectory of the training tasks' ``quality`` datasets, pooled
  ``[N, T, ...]`` (without the padding trajectories of pooling)."""
  pooled = loading.pooled(load_split(family, root, quality,
                                     list(family.train_tasks)))
  real = np.asarray(pooled.lengths) > 0
  return jax.tree.map(lambda x: np.asarray(x)[real], pooled)


def few_shot_pools(config, family, root: str,
                   test_trajs: list[Trajectories]) -> list[Trajectories]:
  """Per test task, the trajectories its few-shot draw comes from: its own
  (``test_trajs``), or with ``few_shot_source="training_tasks"`` the pooled
  training tasks' datasets of ``config.few_shot_quality`` (the same pool for
  every test task; :func:`draw_few_shot` still draws each task's shots with
  its own key)."""
  if few_shot_source(config) == FEW_SHOT_SOURCES[0]:
    return test_trajs
  pool = training_pool(family, root, config.few_shot_quality)
  return [pool] * len(test_trajs)


def prepare_inputs(config, plm_fp: str,
                   digests: dict[str, str]) -> dict[str, str]:
  """The inputs of a method's one-off preparation (e.g. Prompt Diffuser's
  stage 1): the PLM and the pre-training quality's datasets."""
  quality = config.pretrain.quality
  return {"plm": plm_fp, f"datasets/{quality}": digests[quality]}


def run_inputs(config, family, root: str, plm_fp: str,
               digests: dict[str, str]) -> dict[str, str]:
  """The inputs of every method x seed run: the PLM and the few-shot
  quality's datasets; with ``few_shot_source="training_tasks"`` also the
  digest of the training tasks' files the shots are drawn from."""
  quality = config.few_shot_quality
  inputs = {"plm": plm_fp, f"datasets/{quality}": digests[quality]}
  if few_shot_source(config) != FEW_SHOT_SOURCES[0]:
    inputs[f"training_tasks/datasets/{quality}"] = stages.file_digest(
        [str(storage.dataset_path(root, family.name, quality, i))
         for i in family.train_tasks])
  return inputs


def make_context(plm, family, train_trajs) -> registry.TuningContext:
  """The methods' view of the experiment, with a batched test-task rollout
  for online methods."""
  tests = tuple(int(i) for i in family.test_tasks)

  def rollout(params, prompts, key, num_episodes, params_per_task=False):
    return evaluate_tuned(plm, family, TunedPolicy(params=params,
                                                   prompt=prompts),
                          list(tests), key, num_episodes=int(num_episodes),
                          params_per_task=params_per_task).returns

  return registry.TuningContext(plm=plm, family=family,
                                train_trajs=train_trajs, test_tasks=tests,
                                rollout=rollout)


def prepare_record(config, method: registry.Method, mconf, seed: int,
                   inputs: dict[str, str]) -> dict:
  return stages.make_record(
      "prepare", PREPARE_VERSION,
      dict(method=method.name, config=method.prepare_config(mconf),
           root_seed=config.seed, seed=seed), inputs)


def ensure_prepared(config, method: registry.Method, mconf, context, workdir,
                    seed: int, inputs: dict[str, str], prepare_fn):
  """A method's one-off work of ``seed``, cached under its fingerprint.

  Returns:
    ``(prepared, fingerprint)``.
  """
  record = prepare_record(config, method, mconf, seed, inputs)
  fp = record["fingerprint"]
  directory = os.path.join(workdir, "tuning", method.name,
                           f"prepare-{fp[:SHORT]}")
  path = os.path.join(directory, "prepared.msgpack")
  if stages.is_complete(stages.read_record(
      os.path.join(directory, stages.RECORD_FILE)), fp):
    template = method.prepare_template(context, mconf)
    return serialization.load_params(
        path, template, what=f"{method.name} prepared parameters"), fp
  logging.info("%s: preparing seed %d", method.name, seed)
  prepared = prepare_fn(prepare_key(config, seed))
  serialization.save_params(path, prepared)
  stages.write_json_atomic(os.path.join(directory, stages.RECORD_FILE), record)
  return prepared, fp


def run_record(config, label: str, method: registry.Method, mconf,
               seed: int, inputs: dict[str, str], *,
               success: bool = False) -> dict:
  """The stage record of one method x seed run (tuning + evaluation).

  ``success``: the family has a success metric, so the run records success
  rates. It is part of the fingerprint of such a family's runs only (a run
  of it without success rates is not reused); other families' fingerprints
  do not depend on it. Likewise ``few_shot_source`` enters the subtree only
  when it is not the default ``"test_task"``, so that the runs computed
  before the field existed keep their fingerprints.
  """
  subtree = dict(label=label, method=method.name, config=mconf.to_dict(),
                 seed=seed, root_seed=config.seed, num_shots=config.num_shots,
                 few_shot_quality=config.few_shot_quality,
                 eval_episodes=config.eval_episodes)
  if few_shot_source(config) != FEW_SHOT_SOURCES[0]:
    subtree["few_shot_source"] = few_shot_source(config)
  if success:
    subtree["success_rates"] = True
  return stages.make_record("run", RUN_VERSION, subtree, inputs)


def run_path(workdir: str, label: str, seed: int, fp: str) -> str:
  """Where a run is cached; a ``/`` of the label becomes ``-``."""
  return os.path.join(workdir, "results", "runs", label.replace("/", "-"),
                      f"seed{seed}-{fp[:SHORT]}.json")


def _summaries(metrics) -> tuple[dict, dict]:
  """Per task, the mean of the last 10 steps of each metric; and the loss
  curves (mean over tasks, at most ``CURVE_POINTS`` points). Non-finite
  values become None, so that the JSON stays standard."""
  last, curves = {}, {}
  for name, values in metrics.items():
    v = np.asarray(values, np.float64)  # [M, steps]
    if v.ndim != 2 or v.shape[1] == 0:
      continue
    last[name] = [float(m) if np.isfinite(m) else None
                  for m in v[:, -10:].mean(axis=1)]
    mean = v.mean(axis=0)
    idx = np.unique(np.linspace(0, len(mean) - 1, min(CURVE_POINTS,
                                                       len(mean))).astype(int))
    curves[name] = dict(steps=idx.tolist(),
                        values=[float(x) if np.isfinite(x) else None
                                for x in mean[idx]])
  return last, curves


def tune_and_evaluate(config, context: registry.TuningContext,
                      method: registry.Method, tune, data: Trajectories,
                      prepared, seed: int, record: dict, path: str, *,
                      evaluation=None) -> dict:
  """Tunes every test task at once, rolls the tuned policies out, writes
  the run (atomically: the file is its stage record).

  ``evaluation(evaluate)``, when given, calls the zero-argument
  ``evaluate`` (the rollouts) and returns its result: the pipeline's hook to
  let the first evaluation compile alone, or to run one at a time.

  The run holds, per test task (``tasks``), the mean and std over episodes
  of the return (``task_means``, ``task_stds``) and, for a family with a
  success metric, the share of successful episodes in ``[0, 1]``
  (``task_success_rates``; absent for other families).
  """
  k_tune, k_eval = run_keys(config, seed)
  tests = list(context.test_tasks)
  start = time.time()
  keys = jax.random.split(k_tune, len(tests))
  tuned, metrics = tune(prepared, jax.tree.map(jnp.asarray, data), keys)
  jax.block_until_ready((tuned, metrics))
  t_tune = time.time() - start
  def evaluate():
    return jax.device_get(evaluate_tuned(
        context.plm, context.family, tuned, tests, k_eval,
        num_episodes=config.eval_episodes,
        params_per_task=method.params_per_task))

  result = evaluate() if evaluation is None else evaluation(evaluate)
  t_eval = time.time() - start - t_tune
  last, curves = _summaries(metrics)
  run = dict(record, method=record["config"]["label"], seed=seed, tasks=tests,
             task_means=np.asarray(result.mean).tolist(),
             task_stds=np.asarray(result.std).tolist(),
             tune_metrics=last, loss_curves=curves, tune_seconds=t_tune,
             eval_seconds=t_eval)
  success = ""
  if result.success_rate is not None:
    run["task_success_rates"] = np.asarray(result.success_rate).tolist()
    success = f", success rate {100 * np.mean(run['task_success_rates']):.1f}%"
  stages.write_json_atomic(path, run)
  logging.info("%s seed %d: mean test return %.1f%s (tune %.0fs, eval %.0fs)",
               run["method"], seed, np.mean(run["task_means"]), success,
               t_tune, t_eval)
  return run


def task_success_rates(run: dict) -> list[float] | None:
  """A run's per-task success rates; None for a run without (a family
  without a success metric)."""
  return run.get("task_success_rates")


def stacked(trajs: list[Trajectories]) -> Trajectories:
  """Tasks' trajectories ``[M, N, T, ...]`` (padded to a common N and T)."""
  return samplers.stack_tasks(trajs)
