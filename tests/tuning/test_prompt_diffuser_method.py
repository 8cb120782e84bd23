"""``prompt_diffuser`` in the registry: what it builds, and how often.

The pipeline builds one ``tune`` per row of the table (one per mode) and
calls it once per seed; a ``prepare`` per stage-1 config, called only for
seeds whose stage-1 model is not cached. These tests pin that each row's
tune program is traced once whatever the seeds, that the rows share one model
(its x0 statistics computed once) and that the shared model gives exactly
what building it afresh gives.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import tuning as tuning_configs
from pdiff.tuning import prompt_diffuser as pd
from pdiff.tuning import prompt_diffuser_method as pdm
from pdiff.tuning import registry
from tests.tuning import tiny_plm


def rows(**overrides):
  config = tuning_configs.get_config("prompt_diffuser", preset="tiny")
  config.modes = ("dm_only", "sum", "projection")
  config.finetune_steps = 2
  config.update(overrides)
  return dict(pdm.variants(config))


def new_context() -> registry.TuningContext:
  """A fresh context (the model cache is per context)."""
  family = tiny_plm.family()
  return registry.TuningContext(
      plm=tiny_plm.tiny_plm(), family=family,
      train_trajs=tiny_plm.pooled_train_trajectories(),
      test_tasks=tuple(family.test_tasks[:2]))


def built(context, config, key):
  """``make_prompt_diffuser`` under jit (one compilation, not many eager
  ops)."""
  return jax.jit(lambda key: pd.make_prompt_diffuser(
      context.plm, context.train_trajs, config, key))(key)


def stage1_params(context, config, seed):
  """Parameters of the stage-1 template's shapes (as a cached seed's)."""
  return built(context, config, jax.random.key(seed))[1]


@pytest.fixture(scope="module")
def data():
  stacked, _ = tiny_plm.stacked_test_trajectories(2)
  return jax.tree.map(jnp.asarray, stacked)  # [2 tasks, N, T, ...]


@pytest.fixture
def count_builds(monkeypatch):
  calls = []
  make_model = pd.make_model

  def counting(*args, **kwargs):
    calls.append(args[2].to_dict())
    return make_model(*args, **kwargs)

  monkeypatch.setattr(pd, "make_model", counting)
  return calls


def test_make_model_is_the_model_of_make_prompt_diffuser():
  context = new_context()
  config = rows()["sum"]
  key = jax.random.key(3)
  model = pd.make_model(context.plm, context.train_trajs, config, key)
  full, _ = built(context, config, key)
  np.testing.assert_array_equal(model.x_mean, full.x_mean)
  np.testing.assert_array_equal(model.x_std, full.x_std)
  assert model.denoiser == full.denoiser
  assert model.max_ep_len == full.max_ep_len


def test_rows_share_one_model_built_once(count_builds):
  """Three modes, one stage-1 config: one model; a prepare builds nothing
  until it is called (a pipeline whose stage-1 models are cached never
  calls it)."""
  context = new_context()
  by_mode = rows()
  pdm.make_prepare(context, by_mode["dm_only"])
  assert count_builds == []
  for config in by_mode.values():
    pdm.make_tune(context, config)
  assert len(count_builds) == 1
  # Another stage-1 field, or another context, is another model.
  pdm.make_tune(context, rows(hidden_sizes=(16,))["sum"])
  pdm.make_tune(new_context(), by_mode["sum"])
  assert len(count_builds) == 3


def test_tune_is_traced_once_and_equals_a_model_built_afresh(monkeypatch,
                                                              data):
  """The row's tune program is traced (so compiled) once: both tasks are one
  vmapped program, and a second seed reuses it. Its prompts and metrics
  equal, bit for bit, those of ``make_tune_tasks`` on a model built by
  ``make_prompt_diffuser`` with the method's key (how each row built its
  model before the rows shared one)."""
  traces = []
  dm_loss = pd._dm_loss

  def counting(*args, **kwargs):  # runs only while tracing
    traces.append(1)
    return dm_loss(*args, **kwargs)

  monkeypatch.setattr(pd, "_dm_loss", counting)
  context = new_context()
  config = rows()["dm_only"]
  pdm.make_tune(context, rows()["sum"])  # the shared model is built first
  tune = pdm.make_tune(context, config)
  for seed in (0, 1):
    params = stage1_params(context, config, seed)
    keys = jax.random.split(jax.random.key(10 + seed), 2)
    tuned, metrics = jax.block_until_ready(tune(params, data, keys))
    if seed == 0:
      first = len(traces)
  assert first >= 1
  assert len(traces) == first
  assert metrics["dm_loss"].shape == (2, config.finetune_steps)
  assert tuned.params is context.plm.params

  model, _ = pd.make_prompt_diffuser(context.plm, context.train_trajs, config,
                                     jax.random.key(0))  # the method's key
  prompts, expected = pd.make_tune_tasks(model, context.plm, config)(
      params, data, keys)
  jax.tree.map(np.testing.assert_array_equal, tuned.prompt, prompts)
  jax.tree.map(np.testing.assert_array_equal, metrics, expected)
