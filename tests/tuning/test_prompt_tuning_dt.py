"""Tests of Prompt-Tuning DT (``pdiff.tuning.prompt_tuning_dt``) on point_robot.

The PLM is a tiny untrained Prompt-DT: its action loss still depends on the
prompt, which is all a rank-based search needs.
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from experiments.configs import tuning as tuning_configs
from pdiff.tuning import prompt_tuning_dt as ptdt
from pdiff.tuning import registry
from tests.tuning import tiny_plm

ITERATIONS = 12


def tiny_config(**overrides) -> ml_collections.ConfigDict:
  c = tuning_configs.get_config("prompt_tuning_dt")
  c.iterations = ITERATIONS
  c.num_candidates = 6
  c.segment_batch = 8
  c.noise_scale = 0.3
  c.learning_rate = 0.3
  c.update(overrides)
  return c


@pytest.fixture(scope="module")
def setup():
  plm = tiny_plm.tiny_plm()
  stacked, tasks = tiny_plm.stacked_test_trajectories(2)
  stacked = jax.tree.map(jnp.asarray, stacked)  # [2, N, T, ...]
  context = registry.TuningContext(plm=plm, family=tiny_plm.family(),
                                   train_trajs=None, test_tasks=tasks)
  keys = jax.random.split(jax.random.key(3), 2)
  return plm, context, stacked, keys


def initial_prompts(plm, few_shot, keys):
  return ptdt.initial_prompts(plm, few_shot, keys)


def test_registered():
  method = registry.get("prompt_tuning_dt")
  assert method.online_episodes(tiny_config()) == 0
  assert not method.diagnostic and method.data == "few_shot"


def test_trainable_parameters_are_the_prompt_values(setup):
  plm, context, _, _ = setup
  fam = tiny_plm.family()
  expected = plm.prompt_len * (fam.observation_size + fam.action_size + 1)
  assert registry.get("prompt_tuning_dt").trainable_parameters(
      context, tiny_config()) == expected


@pytest.mark.parametrize("field,value", [
    ("iterations", 0), ("num_candidates", 1), ("segment_batch", 0),
    ("noise_scale", -0.1), ("learning_rate", float("nan")),
    ("action_clip", 0.0), ("resample_segments", 1), ("iterations", 2.5),
])
def test_bad_field_is_named(field, value):
  # a fresh ConfigDict, so that values of another type are accepted
  c = ml_collections.ConfigDict({**tiny_config().to_dict(), field: value})
  with pytest.raises(ValueError, match=field):
    ptdt.check_config(c)


def test_unknown_field_is_named():
  c = tiny_config()
  c.step_size = 0.1
  with pytest.raises(ValueError, match="step_size"):
    ptdt.check_config(c)


def test_rank_gradient_weights_and_ties():
  u = jnp.eye(3)  # direction k is the k-th unit vector
  # candidate 1 best, then 2, then 0: weights -(m-1) .. (m-1) by rank, / 3
  g = ptdt.rank_gradient(jnp.array([3.0, 1.0, 2.0]), u)
  np.testing.assert_allclose(g, np.array([2.0, -2.0, 0.0]) / 3.0, atol=1e-6)
  # the pairwise definition, sum over i better than j of (u_j - u_i)
  losses = np.array([0.5, -1.0, 2.0, 0.1], np.float32)
  v = np.random.default_rng(0).normal(size=(4, 5)).astype(np.float32)
  pairs = [(i, j) for i in range(4) for j in range(4) if losses[i] < losses[j]]
  expected = sum(v[j] - v[i] for i, j in pairs) / len(pairs)
  np.testing.assert_allclose(ptdt.rank_gradient(jnp.asarray(losses), v),
                             expected, atol=1e-5)
  # all tied: no comparison, no step
  np.testing.assert_array_equal(ptdt.rank_gradient(jnp.ones(4), v),
                                np.zeros(5))


def test_zero_noise_returns_the_initial_prompt(setup):
  plm, context, stacked, keys = setup
  tune = ptdt.make_tune(context, tiny_config(noise_scale=0.0,
                                            resample_segments=False))
  tuned, _ = tune(None, stacked, keys)
  start = initial_prompts(plm, stacked, keys)
  for got, want in zip(tuned.prompt, start, strict=True):
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_tune_over_two_tasks(setup):
  plm, context, stacked, keys = setup
  tune = ptdt.make_tune(context, tiny_config(resample_segments=False))
  tuned, metrics = tune(None, stacked, keys)
  k = plm.prompt_len
  assert tuned.prompt.states.shape == (2, k, stacked.observations.shape[-1])
  assert tuned.prompt.actions.shape == (2, k, stacked.actions.shape[-1])
  assert tuned.params is plm.params
  assert set(metrics) == {"best_candidate_loss"}
  best = np.asarray(metrics["best_candidate_loss"])
  assert best.shape == (2, ITERATIONS) and np.all(np.isfinite(best))
  # the search moved the values but kept returns-to-go, timesteps and mask
  start = initial_prompts(plm, stacked, keys)
  assert not np.allclose(tuned.prompt.states, start.states)
  for field in ("returns_to_go", "timesteps", "mask"):
    np.testing.assert_array_equal(getattr(tuned.prompt, field),
                                  getattr(start, field))
  real = np.asarray(start.mask) > 0
  actions = np.asarray(tuned.prompt.actions)
  assert np.all(np.abs(actions[real]) <= 1.0)
  np.testing.assert_array_equal(actions[~real], np.asarray(start.actions)[~real])
  # with one segment batch for the whole search the loss does not rise
  assert np.all(best[:, -1] <= best[:, 0]), best
