"""Tests of pdiff.data.normalization."""

import jax
import numpy as np
import pytest

from pdiff.data import normalization
from pdiff.types import Trajectories


def _trajectories(lengths, num_steps=6, state_dim=3, pad_value=1e6, seed=0):
  rng = np.random.default_rng(seed)
  n = len(lengths)
  obs = rng.normal(size=(n, num_steps, state_dim)).astype(np.float32)
  valid = np.arange(num_steps) < np.asarray(lengths)[:, None]
  obs = np.where(valid[..., None], obs, pad_value).astype(np.float32)
  zeros = np.zeros((n, num_steps), np.float32)
  return Trajectories(
      observations=obs, actions=np.zeros((n, num_steps, 2), np.float32),
      rewards=zeros, dones=zeros.astype(bool), timeouts=zeros.astype(bool),
      lengths=np.asarray(lengths, np.int32))


def test_statistics_ignore_padding():
  trajs = _trajectories([6, 2, 4])
  # Prompt-DT: concatenate the real states of every trajectory.
  real = np.concatenate(
      [trajs.observations[i, :n] for i, n in enumerate(trajs.lengths)])
  mean, std = normalization.state_statistics(trajs)
  np.testing.assert_allclose(mean, real.mean(0), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(std, real.std(0) + 1e-6, rtol=1e-5, atol=1e-6)
  assert mean.shape == (3,) and mean.dtype == np.float32


def test_constant_dimension_gets_eps_std():
  trajs = _trajectories([3, 3])
  obs = trajs.observations.copy()
  obs[..., 1] = 5.0
  mean, std = normalization.state_statistics(trajs._replace(observations=obs))
  assert float(mean[1]) == pytest.approx(5.0)
  assert float(std[1]) == pytest.approx(1e-6, rel=1e-3)
  normalized = normalization.normalize_states(obs, mean, std)
  assert np.all(np.isfinite(normalized))


def test_no_valid_step_raises():
  with pytest.raises(ValueError, match="no valid step"):
    normalization.state_statistics(_trajectories([0, 0]))


def test_normalize_round_trip_and_jit():
  trajs = _trajectories([5, 3])
  mean, std = jax.jit(normalization.state_statistics)(trajs)
  x = trajs.observations[:, :3]
  z = normalization.normalize_states(x, mean, std)
  np.testing.assert_allclose((x - np.asarray(mean)) / np.asarray(std), z,
                             rtol=1e-6)
  np.testing.assert_allclose(
      normalization.denormalize_states(z, mean, std), x, rtol=1e-5, atol=1e-5)


def test_valid_step_mask():
  mask = normalization.valid_step_mask(np.array([0, 2, 4]), 4)
  np.testing.assert_array_equal(
      mask, [[0, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1]])
