"""PromptDenoiser and the sinusoidal step embedding."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdiff.models.denoiser import PromptDenoiser, sinusoidal_embedding

B, K, D = 3, 4, 6  # batch, prompt steps, features per step


def _inputs(seed=0, batch=B, horizon=K, dim=D):
  x_key, y_key, n_key = jax.random.split(jax.random.key(seed), 3)
  x = jax.random.normal(x_key, (batch, horizon, dim))
  y = jax.random.normal(y_key, (batch, horizon, 2))
  n = jax.random.randint(n_key, (batch,), 0, 20)
  return x, y, n


def _small(horizon=K, dim=D):
  return PromptDenoiser(
      horizon=horizon, transition_dim=dim, hidden_sizes=(32, 32), cond_embed_dim=8
  )


@pytest.fixture(scope="module")
def small_model_and_params():
  model = _small()
  x, y, n = _inputs()
  return model, jax.jit(model.init)(jax.random.key(0), x, y, n)


def _dense_params(fan_in, fan_out):
  return fan_in * fan_out + fan_out


@pytest.mark.parametrize(
    "horizon, dim, hidden, t_dim, e_dim",
    [(5, 24, (256, 256, 256), 16, 32), (4, 6, (32, 32), 8, 8), (1, 3, (16,), 32, 4)],
)
def test_output_shape_and_parameter_count(horizon, dim, hidden, t_dim, e_dim):
  model = PromptDenoiser(
      horizon=horizon, transition_dim=dim, hidden_sizes=hidden,
      time_embed_dim=t_dim, cond_embed_dim=e_dim,
  )
  x, y, n = _inputs(horizon=horizon, dim=dim)
  params = jax.eval_shape(model.init, jax.random.key(0), x, y, n)
  out = jax.eval_shape(model.apply, params, x, y, n)
  assert out.shape == x.shape and out.dtype == jnp.float32
  # Time MLP T -> 2T -> T, condition MLP K*2 -> 2E -> E, main MLP over
  # [K*D, E, T] -> hidden... -> K*D.
  widths = [horizon * dim + e_dim + t_dim, *hidden, horizon * dim]
  expected = (
      _dense_params(t_dim, 2 * t_dim) + _dense_params(2 * t_dim, t_dim)
      + _dense_params(horizon * 2, 2 * e_dim) + _dense_params(2 * e_dim, e_dim)
      + sum(_dense_params(a, b) for a, b in itertools.pairwise(widths))
  )
  count = sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(params))
  assert count == expected


def test_halfcheetah_default_is_about_two_hundred_thousand_parameters():
  model = PromptDenoiser(horizon=5, transition_dim=17 + 6 + 1)
  x, y, n = _inputs(horizon=5, dim=24)
  shapes = jax.eval_shape(model.init, jax.random.key(0), x, y, n)
  count = sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(shapes))
  assert 150_000 < count < 250_000


def test_output_depends_on_x_y_and_n(small_model_and_params):
  model, params = small_model_and_params
  x, y, n = _inputs()
  apply = jax.jit(model.apply)
  base = apply(params, x, y, n)
  for changed in (
      apply(params, x + 0.5, y, n),
      apply(params, x, y + 0.5, n),
      apply(params, x, y, n + 1),
  ):
    assert np.all(np.abs(np.asarray(changed - base)).max(axis=(1, 2)) > 1e-6)


def test_samples_are_independent(small_model_and_params):
  model, params = small_model_and_params
  x, y, n = _inputs()
  apply = jax.jit(model.apply)
  base = apply(params, x, y, n)
  out = apply(params, x.at[0].add(1.0), y.at[0].add(1.0), n.at[0].add(3))
  np.testing.assert_array_equal(out[1:], base[1:])
  assert not np.allclose(out[0], base[0])


def test_scalar_step_int_conditions_and_jit(small_model_and_params):
  model, params = small_model_and_params
  x, y, _ = _inputs()
  n = jnp.full((B,), 7, jnp.int32)
  base = model.apply(params, x, y, n)
  np.testing.assert_allclose(model.apply(params, x, y, 7), base, rtol=1e-6)
  y_int = jnp.round(y * 10).astype(jnp.int32)
  np.testing.assert_allclose(
      model.apply(params, x, y_int, n),
      model.apply(params, x, y_int.astype(jnp.float32), n),
      rtol=1e-6,
  )
  np.testing.assert_allclose(
      jax.jit(model.apply)(params, x, y, n), base, rtol=1e-5, atol=1e-6
  )


def test_bad_shapes_and_fields_raise(small_model_and_params):
  model, params = small_model_and_params
  x, y, n = _inputs()
  with pytest.raises(ValueError, match="x_n must have shape"):
    model.apply(params, x[:, :-1], y, n)
  with pytest.raises(ValueError, match="y must have shape"):
    model.apply(params, x, y[..., :1], n)
  with pytest.raises(ValueError, match="horizon"):
    PromptDenoiser(horizon=0, transition_dim=D)
  with pytest.raises(ValueError, match="time_embed_dim"):
    PromptDenoiser(horizon=K, transition_dim=D, time_embed_dim=15)
  with pytest.raises(ValueError, match="hidden_sizes"):
    PromptDenoiser(horizon=K, transition_dim=D, hidden_sizes=())


@pytest.mark.parametrize("dim", [4, 16, 32])
def test_sinusoidal_embedding_matches_formula(dim):
  n = np.array([0, 1, 7, 19])
  half = dim // 2
  freqs = 10000.0 ** (-np.arange(half) / (half - 1))
  expected = np.concatenate(
      [np.sin(n[:, None] * freqs), np.cos(n[:, None] * freqs)], axis=1
  )
  emb = sinusoidal_embedding(jnp.asarray(n), dim)
  assert emb.shape == (4, dim)
  np.testing.assert_allclose(emb, expected, rtol=1e-5, atol=1e-5)
  # Distinct steps get distinct embeddings.
  emb = np.asarray(emb)
  gaps = np.linalg.norm(emb[:, None] - emb[None], axis=-1)
  assert np.all(gaps[~np.eye(4, dtype=bool)] > 1e-3)
  np.testing.assert_allclose(np.linalg.norm(emb, axis=1), np.sqrt(half), rtol=1e-5)


@pytest.mark.parametrize("dim", [3, 2, 17])
def test_sinusoidal_embedding_rejects_bad_dim(dim):
  with pytest.raises(ValueError, match="even and >= 4"):
    sinusoidal_embedding(jnp.arange(3), dim)
