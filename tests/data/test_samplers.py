"""Tests of pdiff.data.samplers against a per-row port of Prompt-DT's code."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdiff.data import prompts as prompt_lib
from pdiff.data import samplers, windows
from pdiff.types import Segments, Trajectories

STATE_DIM, ACTION_DIM, NUM_STEPS = 3, 2, 9
LENGTHS = (9, 3, 6, 1)


def _trajectories(lengths=LENGTHS, num_steps=NUM_STEPS, task_id=0, seed=0):
  """Observations encode (trajectory, step, task) so rows can be traced back."""
  rng = np.random.default_rng(seed)
  n = len(lengths)
  obs = np.zeros((n, num_steps, STATE_DIM), np.float32)
  obs[..., 0] = np.arange(n)[:, None]
  obs[..., 1] = np.arange(num_steps)[None, :]
  obs[..., 2] = task_id
  actions = rng.uniform(-1, 1, (n, num_steps, ACTION_DIM)).astype(np.float32)
  rewards = rng.integers(-3, 4, (n, num_steps)).astype(np.float32)
  valid = np.arange(num_steps) < np.asarray(lengths)[:, None]
  return Trajectories(
      observations=np.where(valid[..., None], obs, 0.0).astype(np.float32),
      actions=np.where(valid[..., None], actions, 0.0).astype(np.float32),
      rewards=np.where(valid, rewards, 0.0).astype(np.float32),
      dones=np.zeros((n, num_steps), bool),
      timeouts=np.zeros((n, num_steps), bool),
      lengths=np.asarray(lengths, np.int32))


def _reference_window(trajs, i, si, max_len, scale, mean, std, max_ep_len):
  """Prompt-DT's get_batch body for one row (slices and concatenation)."""
  n = int(trajs.lengths[i])
  obs, act = trajs.observations[i, :n], trajs.actions[i, :n]
  rew = trajs.rewards[i, :n]
  s = obs[si:si + max_len]
  a = act[si:si + max_len]
  r = rew[si:si + max_len]
  timesteps = np.minimum(np.arange(si, si + len(s)), max_ep_len - 1)
  rtg = np.array([rew[t:].sum() for t in range(si, si + len(s))])
  tlen = len(s)
  if mean is not None:
    s = (s - mean) / std
  pad = max_len - tlen
  return dict(
      states=np.concatenate([np.zeros((pad, obs.shape[1])), s]),
      actions=np.concatenate([np.full((pad, act.shape[1]), -10.0), a]),
      rewards=np.concatenate([np.zeros(pad), r]),
      returns_to_go=np.concatenate([np.zeros(pad), rtg]) / scale,
      timesteps=np.concatenate([np.zeros(pad, int), timesteps]),
      mask=np.concatenate([np.zeros(pad), np.ones(tlen)]))


def _assert_row(segments, b, expected):
  for name, value in expected.items():
    np.testing.assert_allclose(
        np.asarray(getattr(segments, name))[b], value, rtol=1e-6, atol=1e-6,
        err_msg=f"field {name}, row {b}")


def _row_origin(segments, b):
  """(trajectory, start) of a row without normalisation, from encoded states."""
  first = int(np.argmax(np.asarray(segments.mask)[b]))
  state = np.asarray(segments.states)[b, first]
  return int(state[0]), int(state[1])


def _crop(segments, rows, steps):
  return jax.tree.map(lambda x: x[rows, steps], segments)


KW = dict(return_scale=2.0, state_mean=None, state_std=None, max_ep_len=100)


def test_returns_to_go_by_hand():
  rewards = np.array([[1.0, 2.0, 3.0, 99.0], [4.0, -1.0, 50.0, 50.0]])
  rtg = windows.returns_to_go(rewards, np.array([3, 2]))
  np.testing.assert_allclose(rtg, [[6, 5, 3, 0], [3, -1, 0, 0]])


def test_window_values_equal_hand_slice():
  trajs = _trajectories()
  window = windows.trajectory_windows(trajs, np.array([2]), np.array([1]), 3,
                                       **KW)
  # Steps 1..3 of trajectory 2, no padding.
  np.testing.assert_allclose(window.states[0], trajs.observations[2, 1:4])
  np.testing.assert_allclose(window.actions[0], trajs.actions[2, 1:4])
  np.testing.assert_allclose(window.rewards[0], trajs.rewards[2, 1:4])
  np.testing.assert_allclose(
      window.returns_to_go[0],
      [trajs.rewards[2, t:6].sum() / 2.0 for t in (1, 2, 3)], rtol=1e-6)
  np.testing.assert_array_equal(window.timesteps[0], [1, 2, 3])
  np.testing.assert_array_equal(window.mask[0], [1, 1, 1])


def test_left_padding_near_the_end():
  trajs = _trajectories()
  # Trajectory 1 has 3 steps: a window of 5 from step 1 keeps steps 1 and 2.
  window = windows.trajectory_windows(trajs, np.array([1]), np.array([1]), 5,
                                       **KW)
  np.testing.assert_array_equal(window.mask[0], [0, 0, 0, 1, 1])
  np.testing.assert_array_equal(window.timesteps[0], [0, 0, 0, 1, 2])
  np.testing.assert_array_equal(window.actions[0, :3], -10.0)
  np.testing.assert_array_equal(window.states[0, :3], 0.0)
  np.testing.assert_array_equal(window.returns_to_go[0, :3], 0.0)
  np.testing.assert_allclose(window.states[0, 3:], trajs.observations[1, 1:3])


@pytest.mark.parametrize("window", [1, 4, 12])
def test_all_windows_match_reference(window):
  trajs = _trajectories()
  mean = np.array([1.0, 2.0, -1.0], np.float32)
  std = np.array([2.0, 0.5, 4.0], np.float32)
  pairs = [(i, s) for i, n in enumerate(LENGTHS) for s in range(n)]
  idx, starts = map(np.array, zip(*pairs, strict=True))
  segments = windows.trajectory_windows(
      trajs, idx, starts, window, return_scale=3.0, state_mean=mean,
      state_std=std, max_ep_len=5)
  for b, (i, s) in enumerate(pairs):
    _assert_row(segments, b, _reference_window(
        trajs, i, s, window, 3.0, mean, std, max_ep_len=5))
  assert int(np.max(segments.timesteps)) == 4  # Clipped to max_ep_len - 1.


def test_sample_segments_rows_are_prompt_dt_windows():
  trajs = _trajectories()
  segments = samplers.sample_segments(jax.random.key(0), trajs, 256, 4, **KW)
  segments = jax.tree.map(np.asarray, segments)
  origins = [_row_origin(segments, b) for b in range(256)]
  for b, (i, s) in enumerate(origins):
    assert 0 <= s < LENGTHS[i]
    _assert_row(segments, b, _reference_window(trajs, i, s, 4, 2.0, None, None,
                                               100))
  # Every trajectory and every start of the longest one is drawn.
  assert {i for i, _ in origins} == set(range(len(LENGTHS)))
  assert {s for i, s in origins if i == 0} == set(range(LENGTHS[0]))


def test_same_key_same_batch_different_keys_differ():
  trajs = _trajectories()
  sample = functools.partial(samplers.sample_segments, trajs=trajs,
                             batch_size=8, seq_len=4, **KW)
  a, b = sample(jax.random.key(3)), sample(jax.random.key(3))
  c = sample(jax.random.key(4))
  jax.tree.map(np.testing.assert_array_equal, a, b)
  assert not np.array_equal(a.states, c.states)


@pytest.mark.parametrize("weight_by_length, expected_first", [
    (False, 0.5), (True, 10 / 11)])
def test_trajectory_weights(weight_by_length, expected_first):
  lengths = np.array([10, 1, 0], np.int32)  # The empty one is never drawn.
  idx = windows.choose_trajectories(jax.random.key(0), lengths, (4000,),
                                     weight_by_length)
  counts = np.bincount(np.asarray(idx), minlength=3)
  assert counts[2] == 0
  assert counts[0] / 4000 == pytest.approx(expected_first, abs=0.03)


def test_prompt_last_position_is_prompt_dt():
  trajs = _trajectories()
  prompts = prompt_lib.sample_prompt(jax.random.key(1), trajs, 64, 2,
                                   num_episodes=1, **KW)
  for b in range(64):
    i, s = _row_origin(prompts, b)
    # Prompt-DT: si = max(0, L - K* - 1).
    assert s == max(0, LENGTHS[i] - 2 - 1)
    _assert_row(prompts, b, _reference_window(trajs, i, s, 2, 2.0, None, None,
                                              100))


def test_prompt_random_position_and_episodes_concatenated():
  trajs = _trajectories()
  num_episodes, prompt_len = 3, 2
  prompts = prompt_lib.sample_prompt(
      jax.random.key(2), trajs, 32, prompt_len, num_episodes, position="random",
      **KW)
  prompts = jax.tree.map(np.asarray, prompts)
  assert prompts.states.shape == (32, num_episodes * prompt_len, STATE_DIM)
  starts = set()
  for b in range(32):
    for j in range(num_episodes):
      chunk = _crop(prompts, slice(b, b + 1),
                    slice(j * prompt_len, (j + 1) * prompt_len))
      i, s = _row_origin(chunk, 0)
      assert 0 <= s <= max(LENGTHS[i] - prompt_len, 0)
      if LENGTHS[i] >= prompt_len:
        np.testing.assert_array_equal(chunk.mask, 1.0)  # Always a full window.
      _assert_row(chunk, 0, _reference_window(trajs, i, s, prompt_len, 2.0,
                                              None, None, 100))
      starts.add((i, s))
  assert len({s for i, s in starts if i == 0}) > 1


def test_deterministic_prompts():
  trajs = _trajectories()
  prompt = prompt_lib.prompt_from_trajectories(
      trajs, np.array([0, 2]), np.array([4, 5]), 3, **KW)
  assert prompt.states.shape == (1, 6, STATE_DIM)
  _assert_row(_crop(prompt, slice(None), slice(0, 3)), 0,
              _reference_window(trajs, 0, 4, 3, 2.0, None, None, 100))
  _assert_row(_crop(prompt, slice(None), slice(3, None)), 0,
              _reference_window(trajs, 2, 5, 3, 2.0, None, None, 100))
  last = prompt_lib.last_segment_prompt(trajs, np.array([0, 1]), 3, **KW)
  _assert_row(_crop(last, slice(None), slice(0, 3)), 0,
              _reference_window(trajs, 0, 9 - 3 - 1, 3, 2.0, None, None, 100))
  _assert_row(_crop(last, slice(None), slice(3, None)), 0,
              _reference_window(trajs, 1, 0, 3, 2.0, None, None, 100))


def test_bad_prompt_position():
  with pytest.raises(ValueError, match="expected one of"):
    prompt_lib.sample_prompt(jax.random.key(0), _trajectories(), 2, 2,
                           position="first", **KW)


def test_few_shot_split():
  trajs = _trajectories()
  few = samplers.few_shot_split(trajs, 2)
  np.testing.assert_array_equal(few.lengths, LENGTHS[:2])
  np.testing.assert_array_equal(few.observations, trajs.observations[:2])
  for bad in (0, len(LENGTHS) + 1):
    with pytest.raises(ValueError, match="num_shots"):
      samplers.few_shot_split(trajs, bad)


def test_stack_tasks_pads_with_empty_trajectories():
  stacked = samplers.stack_tasks([_trajectories(), _trajectories((2, 4), 5)])
  assert stacked.observations.shape == (2, 4, NUM_STEPS, STATE_DIM)
  np.testing.assert_array_equal(stacked.lengths, [LENGTHS, (2, 4, 0, 0)])
  np.testing.assert_array_equal(stacked.rewards[1, :, 5:], 0.0)


def test_multitask_batch_under_jit():
  num_tasks, batch, seq_len, prompt_len, episodes = 3, 5, 4, 2, 2
  tasks = samplers.stack_tasks(
      [_trajectories(task_id=m, seed=m) for m in range(num_tasks)])
  prompt_tasks = samplers.stack_tasks(
      [_trajectories((3, 3), task_id=m, seed=10 + m) for m in range(num_tasks)])
  mean = np.zeros((num_tasks, STATE_DIM), np.float32)
  std = np.ones((num_tasks, STATE_DIM), np.float32)
  std[:, 2] = np.array([1.0, 2.0, 4.0])  # Per-task statistics: task m -> m/s.
  sample = jax.jit(functools.partial(
      samplers.sample_multitask_segments, batch_per_task=batch,
      seq_len=seq_len, prompt_len=prompt_len, num_prompt_episodes=episodes,
      return_scale=2.0, max_ep_len=100, prompt_position="random"))
  segments, prompts = sample(jax.random.key(0), tasks, state_mean=mean,
                             state_std=std, prompt_trajs_by_task=prompt_tasks)
  assert isinstance(segments, Segments) and isinstance(prompts, Segments)
  rows = num_tasks * batch
  expected = Segments(
      states=((rows, seq_len, STATE_DIM), jnp.float32),
      actions=((rows, seq_len, ACTION_DIM), jnp.float32),
      rewards=((rows, seq_len), jnp.float32),
      returns_to_go=((rows, seq_len), jnp.float32),
      timesteps=((rows, seq_len), jnp.int32),
      mask=((rows, seq_len), jnp.float32))
  assert jax.tree.map(lambda x: (x.shape, x.dtype), segments) == expected
  assert prompts.states.shape == (rows, episodes * prompt_len, STATE_DIM)
  assert prompts.timesteps.dtype == jnp.int32
  task_of_row = np.repeat(np.arange(num_tasks), batch)
  for stack, out in ((tasks, segments), (prompt_tasks, prompts)):
    real = np.asarray(out.mask) > 0
    third = np.asarray(out.states)[..., 2]
    expected_third = (task_of_row / std[task_of_row, 2])[:, None]
    np.testing.assert_allclose(np.where(real, third, expected_third),
                               np.broadcast_to(expected_third, real.shape))
    # Rows stay inside their task's trajectories.
    traj = np.asarray(out.states)[..., 0]
    n = stack.lengths.shape[1]
    assert np.all(traj[real] < n)
  # Prompts come from the prompt set: its trajectories have 3 steps.
  assert int(np.max(np.asarray(prompts.timesteps))) <= 2
