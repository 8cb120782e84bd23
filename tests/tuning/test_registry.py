"""The method registry: names, rows, information, the contract of tune."""

import jax
import ml_collections
import numpy as np
import pytest

from experiments.configs import tuning as tuning_configs
from pdiff.tuning import registry
from tests.tuning import tiny_plm


def test_every_registered_method_has_a_default_config_that_passes():
  names = registry.registered()
  assert names[:2] == ("prompt_dt", "prompt_diffuser")
  for name in names:
    method = registry.get(name)
    assert method.name == name
    for preset in ("default", "tiny"):
      method.check_config(tuning_configs.get_config(name, preset))
  assert set(tuning_configs.DEFAULT_METHODS) <= set(names)
  assert set(tuning_configs.ALL_METHODS) == {
      n for n in names if not registry.get(n).diagnostic}
  assert not any(registry.get(n).diagnostic
                 for n in tuning_configs.DEFAULT_METHODS)


def test_unknown_method_and_duplicate_registration_are_refused():
  with pytest.raises(ValueError, match=r"unknown tuning method 'soft_promt'"):
    registry.get("soft_promt")
  with pytest.raises(ValueError, match="registered already"):
    registry.register(registry.get("prompt_dt"))


def test_method_fields_are_checked():
  base = dict(name="m", check_config=lambda c: None,
              make_tune=lambda ctx, c: None,
              trainable_parameters=lambda ctx, c: 0)
  with pytest.raises(ValueError, match="data must be one of"):
    registry.Method(**base, data="all")
  with pytest.raises(ValueError, match="prepare and prepare_template"):
    registry.Method(**base, prepare=lambda ctx, c: None)


def test_rows_and_information():
  pd = registry.get("prompt_diffuser")
  config = tuning_configs.get_config("prompt_diffuser")
  rows = pd.rows(config)
  assert [label for label, _ in rows] == [
      f"prompt_diffuser[{m}]" for m in config.modes]
  assert [c.mode for _, c in rows] == list(config.modes)
  assert registry.get("prompt_dt").rows(ml_collections.ConfigDict(
      {"name": "prompt_dt"}))[0][0] == "prompt_dt"
  online = registry.Method(
      name="m", check_config=lambda c: None, make_tune=lambda ctx, c: None,
      trainable_parameters=lambda ctx, c: 0, data="full_dataset",
      online_episodes=lambda c: 40)
  assert online.information(None) == "full dataset + 40 online episodes"
  assert registry.get("prompt_dt").information(None) == "few-shot"
  assert registry.get("prompt_dt").information(None, "training_tasks") == (
      "zero-shot (training tasks' trajectories)")
  assert online.information(None, "training_tasks") == (
      "full dataset + 40 online episodes")
  with pytest.raises(ValueError, match="few_shot_source"):
    registry.get("prompt_dt").information(None, "test_tasks")


def test_prompt_dt_tunes_every_task_at_once():
  plm = tiny_plm.tiny_plm()
  data, tasks = tiny_plm.stacked_test_trajectories(2)
  context = registry.TuningContext(plm=plm, family=tiny_plm.family(),
                                   train_trajs=None, test_tasks=tasks)
  method = registry.get("prompt_dt")
  tune = method.make_tune(context, tuning_configs.get_config("prompt_dt"))
  keys = jax.random.split(jax.random.key(0), 2)
  tuned, metrics = tune(None, data, keys)
  assert tuned.prompt.states.shape[:2] == (2, plm.prompt_len)
  assert metrics == {}
  # The same prompt as the few-shot baseline builds task by task (up to
  # float rounding between the jitted batch and eager calls).
  for i in range(2):
    one = plm.few_shot_prompt(keys[i], jax.tree.map(lambda x, i=i: x[i], data))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6),
                 jax.tree.map(lambda x, i=i: x[i], tuned.prompt), one.prompt)
  assert method.trainable_parameters(context, None) == 0
