"""The soft prompt (``pdiff.tuning.soft_prompt``) and the Prompt-DT's
optional ``soft_prompt`` parameter."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import tuning as tuning_configs
from pdiff.evaluation.rollout import evaluate_tuned
from pdiff.models.prompt_dt import SOFT_PROMPT
from pdiff.tuning import registry, soft_prompt
from tests.tuning import gradient_tuning as gt
from tests.tuning import tiny_plm

LR = 0.1  # large, so that 20 steps lower the loss clearly


@pytest.fixture(scope="module")
def setup():
  plm = gt.plm()
  before = jax.tree.map(np.array, plm.params)  # copies
  method = registry.get("soft_prompt")
  config = gt.tiny_config("soft_prompt", learning_rate=LR)
  method.check_config(config)
  data, _ = gt.few_shot_data()
  tuned, metrics = method.make_tune(gt.context(), config)(None, data,
                                                          gt.keys())
  return plm, before, tuned, metrics


def windows(plm, seed=0):
  data, _ = tiny_plm.stacked_test_trajectories(1)
  trajs = jax.tree.map(lambda x: jnp.asarray(x[0]), data)
  segments = plm.sample_segments(jax.random.key(seed), trajs, 4)
  prompt = plm.few_shot_prompt(jax.random.key(seed + 1), trajs).prompt
  return segments, jax.tree.map(lambda x: x[None], prompt)


def test_zero_soft_prompt_gives_the_plms_outputs_exactly():
  plm = gt.plm()  # prompt-sensitive, so that an offset visibly matters
  segments, prompt = windows(plm)
  delta = jnp.zeros(soft_prompt.soft_prompt_shape(plm))
  with_delta = soft_prompt.with_soft_prompt(plm.params, delta)
  np.testing.assert_array_equal(
      plm.model.apply({"params": with_delta}, segments, prompt),
      plm.model.apply({"params": plm.params}, segments, prompt))
  # A non-zero offset is used: it moves the actions.
  moved = soft_prompt.with_soft_prompt(
      plm.params, jax.random.normal(jax.random.key(2), delta.shape))
  assert not np.allclose(plm.model.apply({"params": moved}, segments, prompt),
                         plm.model.apply({"params": plm.params}, segments,
                                         prompt))
  # init never makes the entry: the PLM's parameters are unchanged.
  assert SOFT_PROMPT not in plm.params


def test_soft_prompt_of_the_wrong_length_is_refused():
  plm = tiny_plm.tiny_plm()
  segments, prompt = windows(plm)
  rows, hidden = soft_prompt.soft_prompt_shape(plm)
  params = soft_prompt.with_soft_prompt(plm.params,
                                        jnp.zeros((rows + 3, hidden)))
  with pytest.raises(ValueError, match="soft_prompt"):
    plm.model.apply({"params": params}, segments, prompt)


def test_training_loss_falls(setup):
  _, _, _, metrics = setup
  assert metrics["loss"].shape == (gt.NUM_TASKS, 20)
  first, last = gt.first_and_last(metrics["loss"])
  assert np.all(last < 0.7 * first), (first, last)


def test_only_the_soft_prompt_is_trained(setup):
  plm, before, tuned, _ = setup
  # The PLM's own parameters are bitwise unchanged, in every task's copy.
  jax.tree.map(np.testing.assert_array_equal, plm.params, before)
  plm_part = {k: v for k, v in tuned.params.items() if k != SOFT_PROMPT}
  for i in range(gt.NUM_TASKS):
    jax.tree.map(np.testing.assert_array_equal, gt.task(plm_part, i), before)
  delta = np.asarray(tuned.params[SOFT_PROMPT])
  assert delta.shape == (gt.NUM_TASKS,) + soft_prompt.soft_prompt_shape(plm)
  assert np.all(np.abs(delta).max(axis=(1, 2)) > 0)
  assert not np.allclose(delta[0], delta[1])


def test_prompt_is_the_few_shot_prompt(setup):
  plm, _, tuned, _ = setup
  data, _ = gt.few_shot_data()
  for i in range(gt.NUM_TASKS):
    want = plm.few_shot_prompt(gt.keys()[i], gt.task(data, i)).prompt
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6),
                 gt.task(tuned.prompt, i), want)


def test_rollout_uses_the_plms_own_module(setup):
  plm, _, tuned, _ = setup
  _, tasks = gt.full_data()
  result = evaluate_tuned(plm, gt.context().family, tuned, tasks,
                          jax.random.key(1), num_episodes=2,
                          params_per_task=True)
  assert result.returns.shape == (gt.NUM_TASKS, 2)
  assert np.all(np.isfinite(np.asarray(result.returns)))


def test_trainable_parameters_are_the_prompt_tokens():
  context = gt.context()
  plm = context.plm
  config = tuning_configs.get_config("soft_prompt")
  assert registry.get("soft_prompt").trainable_parameters(context, config) == (
      3 * plm.prompt_len * plm.model.hidden_dim)


@pytest.mark.parametrize("field,value", [
    ("steps", 0), ("batch_size", -1), ("learning_rate", 0.0),
    ("weight_decay", -1.0), ("grad_clip_norm", -1.0)])
def test_bad_field_is_named(field, value):
  c = tuning_configs.get_config("soft_prompt")
  registry.get("soft_prompt").check_config(c)
  c[field] = value
  with pytest.raises(ValueError, match=f"soft_prompt config: {field}"):
    registry.get("soft_prompt").check_config(c)
  c = tuning_configs.get_config("soft_prompt")
  c.fixed_prompt = True
  with pytest.raises(ValueError, match="unknown fields.*fixed_prompt"):
    registry.get("soft_prompt").check_config(c)
