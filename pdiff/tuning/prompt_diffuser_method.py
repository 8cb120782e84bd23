"""``prompt_diffuser`` in the method registry: stage 1 per seed, stages 2-3
per test task (:mod:`pdiff.tuning.prompt_diffuser` holds the maths).

``prepare`` pre-trains the denoiser on the training tasks' prompt windows
(stage 1, from the seed's key; the pipeline caches it under its
fingerprint); ``tune`` fine-tunes a copy per test task with ``L_DM`` and,
unless ``mode="dm_only"``, the guidance ``L_DT``, then generates the prompt.
One row of the table per entry of ``config.modes``, and one per entry of
``config.named_settings`` (:data:`NAMED_SETTINGS`: pdiff's settings, beyond
the paper's).
"""

from __future__ import annotations

import time
import weakref
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from pdiff import stages
from pdiff.models.denoiser import PromptDenoiser
from pdiff.models.policy import TunedPolicy
from pdiff.tuning import prompt_diffuser as pd
from pdiff.tuning import registry

# Fields that only stages 2-3 (fine-tuning, generation) read; every other
# field is part of the stage-1 fingerprint.
STAGE2_FIELDS = ("mode", "modes", "guidance_scale", "num_bases", "per_leaf",
                 "sampler", "ddim_steps", "num_candidates", "selection_batch",
                 "guidance_path", "clip_denoised", "condition_position",
                 "guidance_position", "finetune_steps", "finetune_batch",
                 "guidance_batch", "finetune_lr", "selection_holdout",
                 "guidance_returns", "named_settings",
                 "allow_unread_positions")
CHUNK = 250  # stage-1 steps per jitted call (progress lines in between)


class Setting(NamedTuple):
  """A named setting beyond the paper's (a row ``prompt_diffuser[NAME]``)."""

  overrides: dict  # stage-2 fields only: every row shares stage 1
  origin: str  # how it was chosen, for the tables' captions


NAMED_SETTINGS = {
    "evaluation_returns_scale_10": Setting(
        dict(mode="projection", guidance_returns="evaluation",
             guidance_scale=10.0),
        "chosen among five settings on cheetah-vel's validation tasks, "
        "training tasks held out of tuning (experiments/selection.py, "
        "docs/diagnosis.md); on another family it is that choice carried "
        "over, not one made on its own tasks"),
}


def check_config(config: ml_collections.ConfigDict) -> None:
  modes = tuple(config.modes)
  if not modes or len(set(modes)) != len(modes) or any(
      m not in pd.MODES for m in modes):
    raise ValueError(f"prompt_diffuser config: modes must be a non-empty "
                     f"subset of {pd.MODES}, got {modes!r}.")
  settings = tuple(config.get("named_settings", ()))
  if len(set(settings)) != len(settings) or any(
      name not in NAMED_SETTINGS for name in settings):
    raise ValueError(f"prompt_diffuser config: named_settings must be distinct "
                     f"names among {tuple(NAMED_SETTINGS)}, got {settings!r}.")
  pd.check_config(config)
  for name in settings:
    pd.check_config(_row_config(config, NAMED_SETTINGS[name].overrides))


# Built models by (id of the context, stage-1 config): (weak reference to the
# context, model). Entries go when their context is garbage collected.
_MODELS: dict[tuple[int, str], tuple[weakref.ref, pd.PromptDiffuser]] = {}


def stage1_config(config) -> dict:
  """The fields of ``config`` that stage 1 (and the model) read."""
  return {k: v for k, v in config.to_dict().items() if k not in STAGE2_FIELDS}


def _model(context: registry.TuningContext, config) -> pd.PromptDiffuser:
  """The model every seed and row of ``context`` shares.

  The x0 statistics use a fixed key, so that every seed shares the model
  (and the compiled functions); seeds differ in the denoiser's parameters.
  Rows that differ in stage-2 fields only (the modes) share one model:
  built once per context and stage-1 config (``pd.make_model``: its
  statistics are computed once, and no parameters are initialised).
  """
  pd.check_config(config)
  pd.check_positions(config, context.plm.prompt_position)
  key = (id(context), stages.canonical_json(stage1_config(config)))
  hit = _MODELS.get(key)
  if hit is not None and hit[0]() is context:
    return hit[1]
  model = pd.make_model(context.plm, context.train_trajs, config,
                        jax.random.key(0))
  forget = lambda _, key=key: _MODELS.pop(key, None)
  _MODELS[key] = (weakref.ref(context, forget), model)
  return model


def prepare_template(context: registry.TuningContext, config):
  """Shapes and dtypes of stage 1's parameters, without the x0 statistics
  that :func:`_model` computes (nothing but the shapes is needed here)."""
  trajs = context.train_trajs
  denoiser = PromptDenoiser(
      horizon=context.plm.prompt_len,
      transition_dim=trajs.observations.shape[-1] + trajs.actions.shape[-1] + 1,
      hidden_sizes=tuple(config.hidden_sizes),
      time_embed_dim=config.time_embed_dim,
      cond_embed_dim=config.cond_embed_dim)
  x = jnp.zeros((2, denoiser.horizon, denoiser.transition_dim), jnp.float32)
  y = jnp.zeros((2, denoiser.horizon, 2), jnp.float32)
  return jax.eval_shape(lambda: denoiser.init(
      jax.random.key(0), x, y, jnp.zeros((2,), jnp.int32))["params"])


def make_prepare(context: registry.TuningContext, config):
  """``prepare(key) -> params``: stage 1, initialised and trained from
  ``key`` (compiled once, reused over seeds). Nothing is built before the
  first call: a pipeline whose seeds' stage-1 models are all cached never
  calls it."""
  plm = context.plm
  built = {}  # "init", "train" (on device), and make_pretrain's by steps

  def init(key):
    if "init" not in built:
      model = _model(context, config)
      k = model.denoiser.horizon
      x = jnp.zeros((2, k, model.x_mean.shape[0]), jnp.float32)
      y = jnp.zeros((2, k, 2), jnp.float32)
      built["init"] = jax.jit(lambda key: model.denoiser.init(
          key, x, y, jnp.zeros((2,), jnp.int32))["params"])
    return built["init"](key)

  def chunk_fn(steps):
    if steps not in built:
      built[steps] = pd.make_pretrain(_model(context, config), plm, config,
                                      steps)
    return built[steps]

  def prepare(key):
    if "train" not in built:
      built["train"] = jax.tree.map(jnp.asarray, context.train_trajs)
    train = built["train"]
    k_init, key = jax.random.split(key)
    params = init(k_init)
    total = config.pretrain_steps
    chunk = max(1, min(total, CHUNK))
    pretrain, optimizer = chunk_fn(chunk)
    opt_state = optimizer.init(params)
    start = time.time()
    for i in range(0, total, chunk):
      if total - i < chunk:  # the last, shorter chunk
        pretrain, _ = chunk_fn(total - i)
      params, opt_state, losses = pretrain(params, opt_state, train,
                                           jax.random.fold_in(key, i))
      logging.info("diffusion pre-training %d/%d  L_DM %.4f  (%.0fs)",
                   min(i + chunk, total), total, float(losses[-1]),
                   time.time() - start)
    return params

  return prepare


def make_tune(context: registry.TuningContext, config) -> registry.TuneFn:
  """``tune(stage-1 params, few_shot [M, N, T, ...], keys [M])``."""
  model = _model(context, config)
  tune_tasks = pd.make_tune_tasks(
      model, context.plm, config,
      return_target=float(context.family.return_target))

  def tune(prepared, few_shot, keys):
    prompts, metrics = tune_tasks(prepared, few_shot, keys)
    return TunedPolicy(params=context.plm.params, prompt=prompts), metrics

  return tune


def row_fields(config) -> dict:
  """``config``'s fields without ``named_settings``: which rows a table
  lists is never part of one row's (or one compared variant's) config."""
  fields = config.to_dict()
  fields.pop("named_settings", None)
  return fields


def _row_config(config, overrides) -> ml_collections.ConfigDict:
  """One row's config: ``config`` under ``overrides``, naming its own mode
  only and no named settings (:func:`row_fields`), so that its run's
  fingerprint is shared by every list of modes and settings the row appears
  in."""
  c = ml_collections.ConfigDict(row_fields(config))
  c.update(dict(overrides))
  c.modes = (c.mode,)
  return c


def variants(config):
  rows = [(mode, _row_config(config, dict(mode=mode)))
          for mode in config.modes]
  rows += [(name, _row_config(config, NAMED_SETTINGS[name].overrides))
           for name in config.get("named_settings", ())]
  return rows


def trainable_parameters(context: registry.TuningContext, config) -> int:
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(
      prepare_template(context, config))))


METHOD = registry.register(registry.Method(
    name="prompt_diffuser", check_config=check_config, make_tune=make_tune,
    trainable_parameters=trainable_parameters, prepare=make_prepare,
    prepare_template=prepare_template,
    prepare_config=stage1_config,
    variants=variants))
