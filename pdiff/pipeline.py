"""The whole experiment: data -> PLM -> prompt tuning -> evaluation -> table.

Every stage writes its output under the work directory (WORKSPACE.md) and is
skipped when that output is already there, so a stopped run resumes where it
stopped:

1. datasets of the family (collected with the shipped behaviour policies);
2. the pre-trained Prompt-DT (``{workdir}/pretrain``; trained, or copied from
   the package's shipped checkpoint when ``config.pretrained`` names one);
3. Prompt Diffuser's diffusion model pre-trained on the training tasks;
4. per method and seed: prompts for every test task, then rollouts;
5. ``results/results.{json,md}`` and ``results/returns.png``.
"""

from __future__ import annotations

import json
import os
import shutil
import time

import flax.serialization
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from pdiff import envs
from pdiff.data import collect, samplers
from pdiff.evaluation import report
from pdiff.evaluation.rollout import evaluate_tuned
from pdiff.training import pretrain as pretrain_lib
from pdiff.tuning import prompt_diffuser as pd
from pdiff.tuning.base import TunedPolicy, few_shot_prompt, stack_tuned

PRETRAINED_ASSETS = os.path.join(os.path.dirname(__file__), "assets",
                                 "pretrained")
METHODS = ("prompt_dt", "prompt_diffuser")


def _stage(name: str):
  logging.info("== %s", name)
  return time.time()


def ensure_datasets(config, family, workdir) -> str:
  """Collects the qualities the run needs (kept when already there)."""
  c = ml_collections.ConfigDict(config.collect.to_dict())
  c.family, c.backend = family.name, family.backend
  c.qualities = tuple(sorted({config.pretrain.quality, config.few_shot_quality}))
  collect.collect_from_config(c, workdir, progress=logging.info)
  return os.path.join(workdir, "datasets")


def shipped_checkpoint_fits(src: str, config, family) -> str | None:
  """Why the shipped checkpoint at ``src`` does not fit ``config`` (None if it
  does): model fields, K, K*, family, backend and quality must all agree."""
  saved = pretrain_lib.checkpointing.read_config(src).model.to_dict()
  info = pretrain_lib.read_policy_info(src)
  wanted = config.pretrain.train.model.to_dict()
  for field, value in wanted.items():
    if field in ("state_dim", "act_dim") and not value:
      continue  # 0 = taken from the data
    if saved.get(field) != value:
      return f"model.{field} is {saved.get(field)!r}, the config wants {value!r}"
  p = config.pretrain
  for field, value in (("context_len", p.context_len),
                       ("prompt_len", p.prompt_len),
                       ("prompt_episodes", p.prompt_episodes),
                       ("quality", p.quality), ("family", family.name),
                       ("backend", family.backend)):
    if info.get(field) != value:
      return f"{field} is {info.get(field)!r}, the config wants {value!r}"
  return None


def ensure_pretrained(config, family, workdir, dataset_root):
  """The PLM: the shipped checkpoint ``config.pretrained`` when it fits the
  config, else pre-trained here (resumed from the latest checkpoint)."""
  out = os.path.join(workdir, "pretrain")
  shipped = config.pretrained
  if shipped:
    src = os.path.join(PRETRAINED_ASSETS, shipped)
    if not os.path.isdir(src):
      raise ValueError(f"config.pretrained={shipped!r}: no shipped "
                       f"checkpoint at {src}.")
    mismatch = shipped_checkpoint_fits(src, config, family)
    if mismatch:
      logging.warning("shipped PLM %s does not fit the config (%s): "
                      "pre-training instead", src, mismatch)
      shipped = ""
    elif not os.path.exists(os.path.join(out, "policy.json")):
      shutil.copytree(src, out)
      logging.info("using the shipped pre-trained PLM %s", src)
  if shipped:
    return pretrain_lib.load_pretrained_policy(out)
  # Trains, or resumes from the latest checkpoint (no step left: loads it).
  return pretrain_lib.pretrain(config.pretrain, family, dataset_root, out)


def _load_split(family, root, quality, tasks):
  by_task = pretrain_lib.load_task_trajectories(family, root, quality, tasks)
  return [by_task[i] for i in tasks]


def load_few_shot(config, family, dataset_root):
  """The first ``config.num_shots`` trajectories of every test task."""
  return [samplers.few_shot_split(t, config.num_shots)
          for t in _load_split(family, dataset_root, config.few_shot_quality,
                               list(family.test_tasks))]


def ensure_diffuser(config, plm, family, workdir, dataset_root):
  """Stage-1 diffusion model (cached in ``tuning/prompt_diffuser``)."""
  c = config.prompt_diffuser
  path = os.path.join(workdir, "tuning", "prompt_diffuser", "pretrained.msgpack")
  train = pretrain_lib.pooled(_load_split(
      family, dataset_root, config.pretrain.quality, family.train_tasks))
  key = jax.random.key(config.seed)
  model, params = pd.make_prompt_diffuser(plm, train, c, key)
  if os.path.exists(path):
    with open(path, "rb") as f:
      return model, flax.serialization.from_bytes(params, f.read())
  chunk = max(1, min(c.pretrain_steps, 250))
  pretrain, optimizer = pd.make_pretrain(model, plm, c, chunk)
  opt_state = optimizer.init(params)
  train = jax.tree.map(jnp.asarray, train)
  start = time.time()
  for i in range(0, c.pretrain_steps, chunk):
    if c.pretrain_steps - i < chunk:  # the last, shorter chunk
      pretrain, _ = pd.make_pretrain(model, plm, c, c.pretrain_steps - i)
    params, opt_state, losses = pretrain(params, opt_state, train,
                                         jax.random.fold_in(key, i))
    logging.info("diffusion pre-training %d/%d  L_DM %.4f  (%.0fs)",
                 min(i + chunk, c.pretrain_steps), c.pretrain_steps,
                 float(losses[-1]), time.time() - start)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path + ".tmp", "wb") as f:
    f.write(flax.serialization.to_bytes(params))
  os.replace(path + ".tmp", path)
  return model, params


def make_tuner(method: str, config, plm, model, mode: str | None = None):
  """``tune(few_shot: list[Trajectories], diffuser_params, key) ->
  (TunedPolicy stacked over tasks, metrics)``; compiled once, reused over
  seeds."""
  if method == "prompt_dt":
    def tune_prompt_dt(few_shot, diffuser_params, key):
      del diffuser_params
      keys = jax.random.split(key, len(few_shot))
      return stack_tuned([few_shot_prompt(plm, f, None, k)
                          for f, k in zip(few_shot, keys, strict=True)]), {}
    return tune_prompt_dt
  if method == "prompt_diffuser":
    c = ml_collections.ConfigDict(config.prompt_diffuser.to_dict())
    c.mode = mode
    tune = pd.make_tune_tasks(model, plm, c)

    def tune_prompt_diffuser(few_shot, diffuser_params, key):
      keys = jax.random.split(key, len(few_shot))
      stacked = jax.tree.map(jnp.asarray, samplers.stack_tasks(few_shot))
      prompts, metrics = tune(diffuser_params, stacked, keys)
      # Per task, the mean of the last 10 steps; None where undefined (the
      # dt_loss of "dm_only" is NaN), so that the JSON stays standard.
      summary = {k: [float(m) if np.isfinite(m) else None
                     for m in np.asarray(v)[:, -10:].mean(axis=1)]
                 for k, v in metrics.items()}
      return TunedPolicy(params=plm.params, prompt=prompts), summary
    return tune_prompt_diffuser
  raise ValueError(f"unknown method {method!r}; expected one of {METHODS}.")


def method_variants(config) -> list[tuple[str, str, str | None]]:
  """``(label, method, mode)`` for every row of the results table."""
  rows = []
  for method in config.methods:
    if method == "prompt_diffuser":
      rows += [(f"prompt_diffuser[{m}]", method, m)
               for m in config.prompt_diffuser_modes]
    elif method in METHODS:
      rows.append((method, method, None))
    else:
      raise ValueError(f"config.methods: unknown method {method!r}; expected "
                       f"a subset of {METHODS}.")
  return rows


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs (or resumes) the whole pipeline; returns the results dict."""
  rows = method_variants(config)
  family = envs.make(config.family, backend=config.backend)
  timings = {}
  t = _stage("datasets")
  root = ensure_datasets(config, family, workdir)
  timings["datasets"] = time.time() - t
  t = _stage("pre-trained Prompt-DT")
  plm = ensure_pretrained(config, family, workdir, root)
  timings["pretrain"] = time.time() - t
  model = diffuser_params = None
  if "prompt_diffuser" in config.methods:
    t = _stage("diffusion pre-training")
    model, diffuser_params = ensure_diffuser(config, plm, family, workdir, root)
    timings["diffusion_pretrain"] = time.time() - t
  tests = list(family.test_tasks)
  few_shot = load_few_shot(config, family, root)
  results_dir = os.path.join(workdir, "results", "runs")
  table = {}
  for label, method, mode in rows:
    tune = make_tuner(method, config, plm, model, mode)
    per_seed, seconds = [], []
    for seed in config.seeds:
      path = os.path.join(results_dir, f"{label}-seed{seed}.json")
      if os.path.exists(path):
        with open(path) as f:
          done = json.load(f)
        per_seed.append(done["task_means"])
        seconds.append([done["tune_seconds"], done["eval_seconds"]])
        continue
      t = _stage(f"{label} seed {seed}")
      key = jax.random.fold_in(jax.random.key(config.seed), seed)
      k_tune, k_eval = jax.random.split(key)
      tuned, tune_metrics = tune(few_shot, diffuser_params, k_tune)
      t_tune = time.time() - t
      result = jax.device_get(evaluate_tuned(
          plm, family, tuned, tests, k_eval,
          num_episodes=config.eval_episodes))
      means = np.asarray(result.mean).tolist()
      t_eval = time.time() - t - t_tune
      report.write_json_atomic(path, dict(
          method=label, seed=seed, tasks=tests, task_means=means,
          task_stds=np.asarray(result.std).tolist(), tune_metrics=tune_metrics,
          tune_seconds=t_tune, eval_seconds=t_eval))
      logging.info("%s seed %d: mean test return %.1f (tune %.0fs, total "
                   "%.0fs)", label, seed, np.mean(means), t_tune,
                   time.time() - t)
      per_seed.append(means)
      seconds.append([t_tune, t_eval])
    table[label] = report.summarize(per_seed)
    table[label]["tune_seconds"] = [x[0] for x in seconds]
    table[label]["eval_seconds"] = [x[1] for x in seconds]
  results = dict(family=family.name, backend=family.backend,
                 test_tasks=tests, num_shots=config.num_shots,
                 few_shot_quality=config.few_shot_quality,
                 seeds=list(config.seeds), methods=table,
                 # Wall time of each stage in this invocation (a stage that
                 # was already done takes ~0); per-seed tuning and evaluation
                 # times are in ``methods``.
                 stage_seconds=timings,
                 config=config.to_dict())
  out = os.path.join(workdir, "results")
  report.write_json_atomic(os.path.join(out, "results.json"), results)
  title = (f"{family.name}: test-task return, {config.num_shots}-shot "
           f"{config.few_shot_quality} data, {len(config.seeds)} seeds")
  md = report.markdown_table(table, title=title,
                             task_labels=[f"task {i}" for i in tests])
  with open(os.path.join(out, "results.md.tmp"), "w") as f:
    f.write(md)
  os.replace(os.path.join(out, "results.md.tmp"), os.path.join(out, "results.md"))
  report.save_bar_chart(os.path.join(out, "returns.png"), table, title=title)
  logging.info("\n%s", md)
  return results
