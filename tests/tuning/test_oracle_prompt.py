"""Tests of the oracle prompt diagnostic (``pdiff.tuning.oracle_prompt``).

A fake rollout with a return per candidate checks the selection; the
batched rollout of a tiny untrained PLM on point_robot checks that the chosen
window's measured return is the best candidate's.
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from experiments.configs import run as run_configs
from experiments.configs import tuning as tuning_configs
from pdiff.data.prompts import last_segment_prompt
from pdiff.evaluation.rollout import evaluate_tuned
from pdiff.models.policy import TunedPolicy
from pdiff.tuning import oracle_prompt as op
from pdiff.tuning import registry
from tests.tuning import tiny_plm

EPISODES = 2  # episodes per candidate of every real rollout (one compilation)


def tiny_config(**overrides) -> ml_collections.ConfigDict:
  c = tuning_configs.get_config("oracle_prompt")
  c.max_candidates = 4
  c.episodes_per_candidate = EPISODES
  c.update(overrides)
  return c


@pytest.fixture(scope="module")
def setup():
  plm = tiny_plm.tiny_plm()
  stacked, tasks = tiny_plm.stacked_test_trajectories(2)
  stacked = jax.tree.map(jnp.asarray, stacked)  # [2, N, T, ...]
  keys = jax.random.split(jax.random.key(7), 2)
  return plm, stacked, tasks, keys


def context_with(plm, tasks, rollout):
  return registry.TuningContext(plm=plm, family=tiny_plm.family(),
                                train_trajs=None, test_tasks=tuple(tasks),
                                rollout=rollout)


class LoggedRollout:
  """The tiny PLM's batched rollout on the test tasks, logging each call."""

  def __init__(self, plm, tasks):
    self.plm, self.tasks, self.calls = plm, list(tasks), []

  def __call__(self, params, prompts, key, num_episodes, params_per_task):
    self.calls.append((num_episodes, key))
    return evaluate_tuned(self.plm, tiny_plm.family(),
                          TunedPolicy(params=params, prompt=prompts),
                          self.tasks, key, num_episodes=num_episodes,
                          params_per_task=params_per_task).returns


def test_registered_as_a_diagnostic():
  method = registry.get("oracle_prompt")
  assert method.diagnostic and method.data == "full_dataset"
  assert method.online_episodes(tiny_config(max_candidates=20,
                                            episodes_per_candidate=5)) == 100
  assert method.trainable_parameters(None, tiny_config()) == 0
  assert "oracle_prompt" not in tuning_configs.DEFAULT_METHODS
  for preset in ("cpu", "tiny"):
    config = run_configs.get_config(f"point_robot,{preset}")
    assert "oracle_prompt" not in tuple(config.methods)


@pytest.mark.parametrize("field,value", [
    ("max_candidates", 0), ("episodes_per_candidate", 0),
    ("max_candidates", 1.5), ("episodes_per_candidate", True),
])
def test_bad_field_is_named(field, value):
  c = ml_collections.ConfigDict({**tiny_config().to_dict(), field: value})
  with pytest.raises(ValueError, match=field):
    op.check_config(c)


def test_unknown_field_is_named():
  c = tiny_config()
  c.budget = 3
  with pytest.raises(ValueError, match="budget"):
    op.check_config(c)


def test_candidates_are_last_windows_of_distinct_trajectories(setup):
  plm, stacked, _, keys = setup
  trajs = jax.tree.map(lambda x: x[0], stacked)
  n = int(trajs.lengths.shape[0])
  # an empty (padding) trajectory is ordered last and never valid
  trajs = trajs._replace(lengths=trajs.lengths.at[1].set(0))
  candidates = jax.jit(op.candidates, static_argnums=3)
  prompts, valid, index = candidates(plm, trajs, keys[0], n)
  index = np.asarray(index)
  assert sorted(index.tolist()) == list(range(n)) and index[-1] == 1
  np.testing.assert_array_equal(np.asarray(valid), [True] * (n - 1) + [False])
  for c in range(n - 1):
    want = last_segment_prompt(
        trajs, jnp.array([index[c]]), plm.prompt_len,
        return_scale=plm.return_scale, state_mean=plm.state_mean,
        state_std=plm.state_std, max_ep_len=plm.max_ep_len)
    for got, ref in zip(prompts, want, strict=True):
      np.testing.assert_allclose(np.asarray(got[c]), np.asarray(ref[0]),
                                 rtol=1e-6, atol=1e-6)
  # fewer candidates than trajectories: a subset
  _, _, index = candidates(plm, trajs, keys[0], 2)
  assert index.shape == (2,) and 1 not in np.asarray(index).tolist()


def test_picks_the_argmax(setup):
  plm, stacked, tasks, keys = setup
  arms, valid, _ = op.task_candidates(plm, stacked, keys, 4)
  assert bool(np.all(valid))
  values = np.array([[-3.0, -1.0, -2.0, -1.0],   # tie: the first wins
                     [-5.0, -4.0, -6.0, -0.5]])
  calls = []

  def fake(params, prompts, key, num_episodes, params_per_task):
    c = len(calls)
    calls.append((num_episodes, key))
    for got, want in zip(prompts, arms, strict=True):
      np.testing.assert_array_equal(np.asarray(got), np.asarray(want[:, c]))
    return jnp.broadcast_to(jnp.asarray(values[:, c, None], jnp.float32),
                            (2, num_episodes))

  tune = op.make_tune(context_with(plm, tasks, fake), tiny_config())
  tuned, metrics = tune(None, stacked, keys)
  assert [n for n, _ in calls] == [EPISODES] * 4  # one call per candidate
  for _, key in calls:  # common random numbers
    np.testing.assert_array_equal(jax.random.key_data(key),
                                  jax.random.key_data(op.rollout_key(keys)))
  for got, want in zip(tuned.prompt, arms, strict=True):
    np.testing.assert_array_equal(np.asarray(got),
                                  np.asarray(want[np.arange(2), [1, 3]]))
  np.testing.assert_array_equal(metrics["candidate_return"], values)
  np.testing.assert_array_equal(metrics["best_return"],
                                np.maximum.accumulate(values, axis=1))


def test_one_candidate_is_returned(setup):
  plm, stacked, tasks, keys = setup
  rollout = LoggedRollout(plm, tasks)
  tune = op.make_tune(context_with(plm, tasks, rollout),
                      tiny_config(max_candidates=1))
  tuned, metrics = tune(None, stacked, keys)
  arms, _, _ = op.task_candidates(plm, stacked, keys, 1)
  for got, want in zip(tuned.prompt, arms, strict=True):
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want[:, 0]))
  assert len(rollout.calls) == 1
  assert metrics["candidate_return"].shape == (2, 1)


def test_chosen_window_has_the_max_measured_return(setup):
  plm, stacked, tasks, keys = setup
  rollout = LoggedRollout(plm, tasks)
  tune = op.make_tune(context_with(plm, tasks, rollout), tiny_config())
  tuned, metrics = tune(None, stacked, keys)
  returns = np.asarray(metrics["candidate_return"])  # [2, 4]
  assert returns.shape == (2, 4) and np.all(np.isfinite(returns))
  assert sum(n for n, _ in rollout.calls) == 4 * EPISODES
  # measured again with the same key, the chosen window scores the maximum
  again = evaluate_tuned(plm, tiny_plm.family(), tuned, list(tasks),
                         op.rollout_key(keys), num_episodes=EPISODES)
  np.testing.assert_allclose(np.asarray(again.mean), returns.max(axis=1),
                             rtol=1e-6)
