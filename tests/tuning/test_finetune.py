"""Prompt-DT-FT and the full-data upper bound (``pdiff.tuning.finetune``)."""

import jax
import numpy as np
import pytest

from experiments.configs import tuning as tuning_configs
from pdiff.evaluation.rollout import evaluate_tuned
from pdiff.tuning import finetune, registry
from tests.tuning import gradient_tuning as gt

FT_LR = 1e-2  # large, so that 20 steps lower the loss clearly


@pytest.fixture(scope="module")
def ft():
  method = registry.get("prompt_dt_ft")
  config = gt.tiny_config("prompt_dt_ft", learning_rate=FT_LR)
  method.check_config(config)
  tune = method.make_tune(gt.context(), config)
  data, _ = gt.few_shot_data()
  tuned, metrics = tune(None, data, gt.keys())
  return tune, tuned, metrics


@pytest.fixture(scope="module")
def upper():
  method = registry.get("upper_bound")
  config = gt.tiny_config("upper_bound", learning_rate=FT_LR)
  method.check_config(config)
  data, _ = gt.full_data()
  return method.make_tune(gt.context(), config)(None, data, gt.keys())


def test_registered_in_table_order():
  names = registry.registered()
  order = [names.index(n) for n in ("prompt_dt_ft", "soft_prompt", "adaptor",
                                    "upper_bound")]
  assert order == sorted(order)
  ft, ub = registry.get("prompt_dt_ft"), registry.get("upper_bound")
  assert ft.data == "few_shot" and ub.data == "full_dataset"
  assert ft.params_per_task and ub.params_per_task
  assert ub.information(None) == "full dataset"


def test_defaults_are_prompt_dt_finetune():
  c = tuning_configs.get_config("prompt_dt_ft")
  registry.get("prompt_dt_ft").check_config(c)
  assert (c.steps, c.batch_size, c.learning_rate, c.weight_decay,
          c.grad_clip_norm, c.dropout) == (10, 256, 1e-4, 1e-4, 0.25, True)
  u = tuning_configs.get_config("upper_bound")
  registry.get("upper_bound").check_config(u)
  assert u.name == "upper_bound" and u.steps == 500
  assert {k: v for k, v in u.items() if k not in ("name", "steps")} == {
      k: v for k, v in c.items() if k not in ("name", "steps")}


@pytest.mark.parametrize("name", ["prompt_dt_ft", "upper_bound"])
@pytest.mark.parametrize("field,value", [
    ("steps", 0), ("batch_size", 0), ("learning_rate", 0.0),
    ("weight_decay", -1.0), ("grad_clip_norm", 0.0),
    ("segment_position", "middle")])
def test_bad_field_is_named(name, field, value):
  c = tuning_configs.get_config(name)
  c[field] = value
  with pytest.raises(ValueError, match=f"{name} config: {field}"):
    registry.get(name).check_config(c)


def test_unknown_and_missing_fields_are_named():
  c = tuning_configs.get_config("prompt_dt_ft")
  c.lr = 1.0
  with pytest.raises(ValueError, match="unknown fields.*'lr'"):
    registry.get("prompt_dt_ft").check_config(c)
  c = tuning_configs.get_config("prompt_dt_ft")
  del c["fixed_prompt"]
  with pytest.raises(ValueError, match="missing fields.*'fixed_prompt'"):
    registry.get("prompt_dt_ft").check_config(c)


def test_training_loss_falls(ft, upper):
  for _, _, metrics in (ft, (None,) + tuple(upper)):
    assert metrics["loss"].shape == (gt.NUM_TASKS, 20)
    assert metrics["grad_norm"].shape == (gt.NUM_TASKS, 20)
    first, last = gt.first_and_last(metrics["loss"])
    assert np.all(last < 0.7 * first), (first, last)


def test_params_per_task_with_a_leading_task_axis(ft, upper):
  plm = gt.plm()
  for tuned in (ft[1], upper[0]):
    def check(leaf, base):
      assert leaf.shape == (gt.NUM_TASKS,) + base.shape
    jax.tree.map(check, tuned.params, plm.params)
    moved = [float(np.max(np.abs(leaf - base))) for leaf, base in zip(
        jax.tree.leaves(tuned.params), jax.tree.leaves(plm.params),
        strict=True)]
    assert min(moved) > 0 and max(moved) > 1e-3  # every leaf is trained
    # ... on its own task's data.
    a, b = (jax.tree.leaves(gt.task(tuned.params, i)) for i in range(2))
    assert any(not np.allclose(x, y) for x, y in zip(a, b, strict=True))
    assert tuned.prompt.states.shape[:2] == (gt.NUM_TASKS, plm.prompt_len)


def test_rolled_out_prompt_is_prompt_dts(ft):
  context = gt.context()
  data, _ = gt.few_shot_data()
  baseline, _ = registry.get("prompt_dt").make_tune(
      context, tuning_configs.get_config("prompt_dt"))(None, data, gt.keys())
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6),
               ft[1].prompt, baseline.prompt)


def test_tasks_are_tuned_independently(ft):
  """Swapping the tasks (and their keys) swaps the results: the vmapped
  tasks do not interact (same compiled function)."""
  tune, tuned, metrics = ft
  data, _ = gt.few_shot_data()
  swapped, swapped_metrics = tune(None, jax.tree.map(lambda x: x[::-1], data),
                                  gt.keys()[::-1])
  np.testing.assert_allclose(swapped_metrics["loss"][::-1], metrics["loss"],
                             rtol=1e-5, atol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(
      a[::-1], b, rtol=1e-4, atol=1e-6), swapped.params, tuned.params)


def test_rollout_with_per_task_params(ft, upper):
  _, tasks = gt.full_data()
  for tuned in (ft[1], upper[0]):
    result = evaluate_tuned(gt.plm(), gt.context().family, tuned, tasks,
                            jax.random.key(1), num_episodes=2,
                            params_per_task=True)
    assert result.returns.shape == (gt.NUM_TASKS, 2)
    assert np.all(np.isfinite(np.asarray(result.returns)))


def test_trainable_parameters_are_every_plm_weight():
  context = gt.context()
  total = sum(x.size for x in jax.tree.leaves(context.plm.params))
  for name in ("prompt_dt_ft", "upper_bound"):
    assert registry.get(name).trainable_parameters(
        context, tuning_configs.get_config(name)) == total


def test_other_batches_trace():
  """Prompt-DT's last-K* fine-tuning windows and per-window prompts build a
  loop of the same signature (traced only, not compiled)."""
  plm = gt.plm()
  data, _ = gt.few_shot_data()
  one = gt.task(data, 0)
  prompt = plm.few_shot_prompt(jax.random.key(0), one).prompt
  config = gt.tiny_config("prompt_dt_ft", segment_position="last",
                          fixed_prompt=False)
  registry.get("prompt_dt_ft").check_config(config)
  train = finetune.make_trainer(plm, config, lambda p: p,
                                segment_position="last", fixed_prompt=False)
  params, metrics = jax.eval_shape(train, plm.params, one, prompt,
                                   jax.random.key(1))
  assert jax.tree.map(lambda x: x.shape, params) == jax.tree.map(
      np.shape, plm.params)
  assert metrics["loss"].shape == (20,) and metrics["grad_norm"].shape == (20,)
  with pytest.raises(ValueError, match="segment_position"):
    finetune.make_trainer(plm, config, lambda p: p, segment_position="first")
