"""Rollouts with an encoded prompt (``make_prompted_rollout``'s
``encode_prompt``) and the Prompt-DT policy with its prompt cached
(``prompt_dt_policy``)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdiff.evaluation.rollout import make_prompted_rollout, prompt_dt_policy
from pdiff.tuning.base import few_shot_prompt, stack_tuned
from pdiff.types import Segments
from tests.evaluation.test_rollout import (
  DS,
  FAMILY,
  KP,
  NUM_EPISODES,
  TASKS,
  K,
  dummy_prompts,
  window_policy,
)
from tests.tuning import tiny_plm


@pytest.fixture(scope="module")
def plm_and_prompts():
  """The tiny PLM, its family, two test tasks and their few-shot prompts."""
  plm, family, data = tiny_plm.tiny_plm(), tiny_plm.family(), (
      tiny_plm.trajectories())
  tasks = list(family.test_tasks[:2])
  return plm, family, tasks, [
      few_shot_prompt(plm, data[i], None, jax.random.key(i)) for i in tasks]


def test_encoded_prompt_reaches_the_policy():
  """With ``encode_prompt`` the policy gets each task's encoding of its
  prompt ``[1, KP, ...]`` in place of the prompt: encoding the prompt's mean
  state gives ``window_policy``'s returns."""
  def encode(params, prompt):
    assert prompt.states.shape == (1, KP, DS)
    return prompt.states.mean(axis=1, keepdims=True)  # [1, 1, ds]

  def encoded_policy(params, segments, encoded):
    states = jnp.broadcast_to(encoded, (segments.mask.shape[0], 1, DS))
    return window_policy(params, segments, Segments(
        states, *(None,) * (len(Segments._fields) - 1)))

  kwargs = dict(context_len=K, num_episodes=NUM_EPISODES,
                state_mean=jnp.zeros(DS), state_std=jnp.ones(DS))
  prompts, key = dummy_prompts(len(TASKS), seed=2), jax.random.key(9)
  encoded = make_prompted_rollout(FAMILY, encoded_policy,
                                  encode_prompt=encode, **kwargs)
  plain = make_prompted_rollout(FAMILY, window_policy, **kwargs)
  np.testing.assert_allclose(encoded(None, prompts, TASKS, key).returns,
                             plain(None, prompts, TASKS, key).returns,
                             rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("params_per_task", [False, True])
def test_cached_prompt_dt_rollout_matches_uncached(plm_and_prompts,
                                                   params_per_task):
  """The PLM rolled out with its prompt's keys and values cached plays the
  episodes the whole forward pass plays (its actions agree to float
  rounding); per-task parameters are encoded with their own task's."""
  plm, family, tasks, results = plm_and_prompts
  tuned = stack_tuned(results)
  if params_per_task:  # the second task's parameters perturbed
    noise = jax.tree.map(
        lambda x: 0.2 * jax.random.normal(jax.random.key(x.size), x.shape),
        plm.params)
    tuned = tuned.replace(params=jax.tree.map(
        lambda x, n: jnp.stack([x, x + n]), plm.params, noise))
  kwargs = dict(context_len=plm.context_len, num_episodes=3,
                state_mean=plm.state_mean, state_std=plm.state_std,
                max_ep_len=plm.max_ep_len, params_per_task=params_per_task)
  out = {}
  for cache_prompt in (True, False):
    rollout = make_prompted_rollout(
        family, **prompt_dt_policy(plm.model,
                                   cache_prompt=cache_prompt)._asdict(),
        **kwargs)
    out[cache_prompt] = rollout(tuned.params, tuned.prompt,
                                jnp.asarray(tasks), jax.random.key(2))
  np.testing.assert_allclose(out[True].returns, out[False].returns,
                             rtol=1e-4, atol=1e-4)
  assert np.all(np.abs(out[True].returns + family.episode_length) > 1e-2)
