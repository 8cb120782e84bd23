"""Tests of the shared tuning interface (``pdiff.tuning.base``)."""

import jax
import numpy as np
import pytest

from pdiff.tuning.base import TunedPolicy, few_shot_prompt, stack_tuned
from pdiff.types import Trajectories
from tests.tuning import tiny_plm

LENGTHS = (20, 12, 7)  # few-shot trajectories of different lengths


@pytest.fixture(scope="module")
def plm():
  return tiny_plm.tiny_plm()


@pytest.fixture(scope="module")
def few_shot():
  """Three random point_robot trajectories cut to LENGTHS (zero padding)."""
  t = tiny_plm.trajectories()[2]
  lengths = np.asarray(LENGTHS, np.int32)
  valid = np.arange(t.rewards.shape[1])[None] < lengths[:, None]  # [3, T]
  cut = lambda x: np.where(valid.reshape(valid.shape + (1,) * (x.ndim - 2)),
                           x[:3], np.zeros((), x.dtype))
  return Trajectories(
      observations=cut(t.observations), actions=cut(t.actions),
      rewards=cut(t.rewards), dones=cut(t.dones), timeouts=cut(t.timeouts),
      lengths=lengths)


def expected_last_window(plm, trajs, j):
  """Prompt-DT's evaluation prompt of trajectory j, in NumPy: the K* steps
  before the final one, normalised."""
  k, length = plm.prompt_len, int(trajs.lengths[j])
  steps = np.arange(length - k - 1, length - 1)
  mean, std = np.asarray(plm.state_mean), np.asarray(plm.state_std)
  rtg = np.array([trajs.rewards[j, t:length].sum() for t in steps])
  return dict(states=(trajs.observations[j, steps] - mean) / std,
              actions=trajs.actions[j, steps], rewards=trajs.rewards[j, steps],
              returns_to_go=rtg / plm.return_scale, timesteps=steps,
              mask=np.ones(k))


def test_few_shot_prompt_is_a_last_window(plm, few_shot):
  picked = set()
  for seed in range(6):
    tuned = few_shot_prompt(plm, few_shot, None, jax.random.key(seed))
    assert tuned.params is plm.params
    prompt = tuned.prompt
    assert prompt.states.shape == (plm.prompt_len, 2)
    assert prompt.mask.shape == (plm.prompt_len,)
    matches = []
    for j in range(len(LENGTHS)):
      want = expected_last_window(plm, few_shot, j)
      if np.allclose(prompt.states, want["states"], atol=1e-5):
        matches.append(j)
        for field, value in want.items():
          np.testing.assert_allclose(getattr(prompt, field), value, rtol=1e-5,
                                     atol=1e-6, err_msg=field)
    assert len(matches) == 1, matches
    picked.add(matches[0])
  assert len(picked) >= 2  # the trajectory is drawn at random


def test_stack_tuned_shapes(plm, few_shot):
  results = [few_shot_prompt(plm, few_shot, None, jax.random.key(i))
             for i in range(3)]
  stacked = stack_tuned(results)
  assert stacked.params is results[0].params
  assert stacked.prompt.states.shape == (3, plm.prompt_len, 2)
  assert stacked.prompt.timesteps.shape == (3, plm.prompt_len)
  for i, r in enumerate(results):
    jax.tree.map(lambda a, b, i=i: np.testing.assert_array_equal(a[i], b),
                 stacked.prompt, r.prompt)
  copies = stack_tuned(results, share_params=False)
  jax.tree.map(lambda s, p: np.testing.assert_array_equal(
      s, np.broadcast_to(p, (3,) + p.shape)), copies.params, plm.params)
  with pytest.raises(ValueError, match="at least one"):
    stack_tuned([])


def test_tuned_policy_is_a_pytree(plm, few_shot):
  tuned = few_shot_prompt(plm, few_shot, None, jax.random.key(0))
  doubled = jax.tree.map(lambda x: 2 * x, tuned)
  assert isinstance(doubled, TunedPolicy)
  np.testing.assert_allclose(doubled.prompt.states, 2 * tuned.prompt.states)


def test_pretrained_policy_apply_reads_the_prompt(plm, few_shot):
  segments, prompt = jax.jit(lambda k1, k2: (
      plm.sample_segments(k1, few_shot, 4), plm.sample_prompts(k2, few_shot, 4)
  ))(jax.random.key(0), jax.random.key(1))
  apply = jax.jit(plm.apply)
  actions = apply(plm.params, segments, prompt)
  assert actions.shape == (4, plm.context_len, 2)
  assert np.all(np.abs(actions) <= 1.0)
  np.testing.assert_array_equal(apply(plm.params, segments, prompt), actions)
  other = prompt._replace(states=prompt.states + 1.0)
  assert not np.allclose(apply(plm.params, segments, other), actions)
