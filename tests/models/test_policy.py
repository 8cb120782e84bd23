"""Tests of ``pdiff.models.policy``: the masked action loss and the policy
containers shared by pre-training, tuning and evaluation."""

import jax
import jax.numpy as jnp
import numpy as np

from pdiff.models.policy import TunedPolicy, masked_action_mse, stack_tuned
from pdiff.types import Segments


def test_masked_action_mse_ignores_padding():
  rng = np.random.default_rng(0)
  predicted = rng.normal(size=(2, 3, 2)).astype(np.float32)
  target = rng.normal(size=(2, 3, 2)).astype(np.float32)
  mask = np.array([[0, 1, 1], [1, 1, 1]], np.float32)
  real = mask.astype(bool)
  expected = np.mean((predicted[real] - target[real]) ** 2)
  got = masked_action_mse(predicted, target, mask)
  np.testing.assert_allclose(got, expected, rtol=1e-6)
  target[0, 0] += 100.0  # a padded step
  np.testing.assert_allclose(masked_action_mse(predicted, target, mask),
                             expected, rtol=1e-6)
  assert float(masked_action_mse(predicted, target, 0 * mask)) == 0.0


def test_masked_action_mse_ignores_masked_predictions():
  rng = np.random.default_rng(0)
  target = rng.uniform(-1, 1, (3, 4, 2)).astype(np.float32)
  predicted = rng.uniform(-1, 1, (3, 4, 2)).astype(np.float32)
  mask = np.array([[0, 0, 1, 1], [0, 1, 1, 1], [1, 1, 1, 1]], np.float32)
  real = mask > 0
  expected = np.square(predicted - target)[real].mean()
  np.testing.assert_allclose(masked_action_mse(predicted, target, mask),
                             expected, rtol=1e-6)
  junk = np.where(real[..., None], predicted, 100.0)  # change masked steps
  np.testing.assert_allclose(masked_action_mse(junk, target, mask), expected,
                             rtol=1e-6)


def _prompt(value: float, steps: int = 2) -> Segments:
  return Segments(states=jnp.full((steps, 3), value),
                  actions=jnp.full((steps, 2), value),
                  rewards=jnp.zeros((steps,)), returns_to_go=jnp.zeros((steps,)),
                  timesteps=jnp.arange(steps, dtype=jnp.int32),
                  mask=jnp.ones((steps,)))


def test_stack_tuned_stacks_prompts_and_optionally_params():
  params = {"w": jnp.arange(4.0)}
  results = [TunedPolicy(params=jax.tree.map(lambda x, i=i: x + i, params),
                         prompt=_prompt(float(i))) for i in range(3)]
  shared = stack_tuned(results)
  assert shared.params is results[0].params
  assert shared.prompt.states.shape == (3, 2, 3)
  np.testing.assert_array_equal(shared.prompt.actions[:, 0, 0], [0.0, 1.0, 2.0])
  copies = stack_tuned(results, share_params=False)
  np.testing.assert_array_equal(copies.params["w"],
                                np.arange(4.0)[None] + np.arange(3.0)[:, None])
