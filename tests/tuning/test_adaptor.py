"""Bottleneck adapters on the frozen PLM (``pdiff.tuning.adaptor``)."""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import tuning as tuning_configs
from pdiff.evaluation.rollout import evaluate_tuned
from pdiff.tuning import adaptor, registry
from tests.tuning import gradient_tuning as gt
from tests.tuning import tiny_plm

LR = 1e-2  # large, so that 20 steps lower the loss clearly
DIM = 4  # adapter width of the tests


@pytest.fixture(scope="module")
def setup():
  plm = gt.plm()
  before = jax.tree.map(np.array, plm.params)  # copies
  method = registry.get("adaptor")
  config = gt.tiny_config("adaptor", learning_rate=LR, adapter_dim=DIM)
  method.check_config(config)
  data, _ = gt.few_shot_data()
  tuned, metrics = method.make_tune(gt.context(), config)(None, data,
                                                          gt.keys())
  return plm, before, tuned, metrics


def is_adapter(path) -> bool:
  return adaptor.ADAPTER in path


def test_fresh_adapters_give_the_plms_outputs_exactly():
  plm = tiny_plm.tiny_plm()
  assert plm.model.adapter_dim == 0
  assert not any(is_adapter(k) for k in
                 flax.traverse_util.flatten_dict(plm.params))
  data, _ = tiny_plm.stacked_test_trajectories(1)
  trajs = jax.tree.map(lambda x: jnp.asarray(x[0]), data)
  segments = plm.sample_segments(jax.random.key(0), trajs, 4)
  prompt = jax.tree.map(lambda x: x[None],
                        plm.few_shot_prompt(jax.random.key(1), trajs).prompt)
  adapters = adaptor.init_adapters(plm, DIM, jax.random.key(2))
  params = adaptor.with_adapters(plm.params, adapters)
  flat = flax.traverse_util.flatten_dict(params)
  assert {k for k in flat if not is_adapter(k)} == set(
      flax.traverse_util.flatten_dict(plm.params))
  expected = plm.model.apply({"params": plm.params}, segments, prompt)
  np.testing.assert_array_equal(
      plm.model.apply({"params": params}, segments, prompt), expected)
  # The module built without adapters does run them: a non-zero
  # up-projection moves the actions.
  key = ("blocks_0", "adapter", "mlp", "up", "bias")
  flat[key] = jax.random.normal(jax.random.key(3), flat[key].shape)
  changed = flax.traverse_util.unflatten_dict(flat)
  assert not np.allclose(
      plm.model.apply({"params": changed}, segments, prompt), expected)


def test_training_loss_falls(setup):
  _, _, _, metrics = setup
  assert metrics["loss"].shape == (gt.NUM_TASKS, 20)
  first, last = gt.first_and_last(metrics["loss"])
  assert np.all(last < 0.7 * first), (first, last)


def test_only_the_adapters_are_trained(setup):
  plm, before, tuned, _ = setup
  jax.tree.map(np.testing.assert_array_equal, plm.params, before)
  flat = flax.traverse_util.flatten_dict(tuned.params)
  flat_before = flax.traverse_util.flatten_dict(before)
  assert {k for k in flat if not is_adapter(k)} == set(flat_before)
  for k, v in flat.items():
    assert v.shape[0] == gt.NUM_TASKS
    if not is_adapter(k):
      for i in range(gt.NUM_TASKS):
        np.testing.assert_array_equal(v[i], flat_before[k])
  ups = [np.asarray(v) for k, v in flat.items()
         if is_adapter(k) and "up" in k and k[-1] == "kernel"]
  assert ups and all(np.abs(u).max() > 0 for u in ups)  # trained from 0


def test_rollout_uses_the_plms_own_module(setup):
  plm, _, tuned, _ = setup
  _, tasks = gt.full_data()
  result = evaluate_tuned(plm, gt.context().family, tuned, tasks,
                          jax.random.key(1), num_episodes=2,
                          params_per_task=True)
  assert result.returns.shape == (gt.NUM_TASKS, 2)
  assert np.all(np.isfinite(np.asarray(result.returns)))


def test_trainable_parameters_are_the_adapter_leaves():
  context = gt.context()
  plm = context.plm
  config = tuning_configs.get_config("adaptor")
  config.adapter_dim = DIM
  adapters = adaptor.init_adapters(plm, DIM, jax.random.key(0))
  size = sum(x.size for x in jax.tree.leaves(adapters))
  h, layers = plm.model.hidden_dim, plm.model.num_layers
  assert size == layers * 2 * (2 * h * DIM + DIM + h)
  assert registry.get("adaptor").trainable_parameters(context, config) == size


@pytest.mark.parametrize("field,value", [
    ("adapter_dim", 0), ("steps", 0), ("batch_size", 0),
    ("learning_rate", -1.0), ("weight_decay", -1.0)])
def test_bad_field_is_named(field, value):
  c = tuning_configs.get_config("adaptor")
  registry.get("adaptor").check_config(c)
  c[field] = value
  with pytest.raises(ValueError, match=f"adaptor config: {field}"):
    registry.get("adaptor").check_config(c)
