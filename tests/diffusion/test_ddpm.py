"""DDPM forward process, loss and reverse chain against closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdiff.diffusion import ddpm, schedules
from pdiff.models.denoiser import PromptDenoiser

B, K, D = 4, 3, 5  # batch, prompt steps, features per step


def _abar(sched):
  """abar_n recomputed in float64 from the betas."""
  return np.cumprod(1.0 - np.asarray(sched.betas, np.float64))


def _oracle(sched, x0):
  """A denoiser that returns the exact noise of x_n for a known x0."""

  def denoise_fn(x_n, y, n):
    del y
    abar = sched.alphas_cumprod[n][:, None, None]  # [B, 1, 1]
    return (x_n - jnp.sqrt(abar) * x0) / jnp.sqrt(1.0 - abar)

  return denoise_fn


def _zero_denoiser(x_n, y, n):
  del y, n
  return jnp.zeros_like(x_n)


def _x0_y(seed=0, batch=B):
  x_key, y_key = jax.random.split(jax.random.key(seed))
  x0 = jax.random.uniform(x_key, (batch, K, D), minval=-1.0, maxval=1.0)
  y = jax.random.normal(y_key, (batch, K, 2))
  return x0, y


@pytest.fixture(scope="module")
def small_denoiser():
  """A small PromptDenoiser and its parameters."""
  model = PromptDenoiser(
      horizon=K, transition_dim=D, hidden_sizes=(32, 32), cond_embed_dim=8
  )
  x0, y = _x0_y()
  params = jax.jit(model.init)(jax.random.key(1), x0, y, jnp.zeros((B,), jnp.int32))
  return model, params


@pytest.fixture(scope="module")
def cosine():
  return schedules.cosine_schedule(20)


def test_q_sample_matches_formula(cosine):
  x0, _ = _x0_y()
  noise = jax.random.normal(jax.random.key(3), x0.shape)
  n = jnp.array([0, 5, 12, 19])
  x_n = ddpm.q_sample(cosine, x0, n, noise)
  abar = _abar(cosine)[np.asarray(n)][:, None, None]
  expected = np.sqrt(abar) * np.asarray(x0) + np.sqrt(1 - abar) * np.asarray(noise)
  np.testing.assert_allclose(x_n, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("step", [0, 9, 19])
def test_q_sample_moments(cosine, step):
  num = 20000
  x0 = jnp.broadcast_to(jnp.linspace(-1.0, 1.0, K * D).reshape(K, D), (num, K, D))
  noise = jax.random.normal(jax.random.key(step), x0.shape)
  x_n = np.asarray(ddpm.q_sample(cosine, x0, jnp.full((num,), step), noise))
  abar = _abar(cosine)[step]
  np.testing.assert_allclose(
      x_n.mean(0), np.sqrt(abar) * np.asarray(x0[0]), atol=4.5 / np.sqrt(num)
  )
  np.testing.assert_allclose(x_n.var(0), 1.0 - abar, atol=0.05 * (1 - abar) + 1e-6)


@pytest.mark.parametrize("kind", ["cosine", "linear"])
def test_q_posterior_is_bayes_rule(kind):
  # q(x_{n-1} | x_n, x0) is proportional to the product of Gaussians in x_{n-1}
  # N(x_n; sqrt(a_n) x_{n-1}, b_n) N(x_{n-1}; sqrt(abar_{n-1}) x0, 1 - abar_{n-1}).
  sched = schedules.make_schedule(kind, 20)
  betas = np.asarray(sched.betas, np.float64)
  abar = _abar(sched)
  x0, _ = _x0_y(seed=5)
  x_n = jax.random.normal(jax.random.key(6), x0.shape)
  n = np.array([1, 4, 10, 19])
  mean, var, log_var = ddpm.q_posterior(sched, x0, x_n, jnp.asarray(n))
  prior_var = 1.0 - abar[n - 1]
  precision = 1.0 / prior_var + (1.0 - betas[n]) / betas[n]
  bayes_var = (1.0 / precision)[:, None, None]
  bayes_mean = bayes_var * (
      np.sqrt(abar[n - 1])[:, None, None] * np.asarray(x0) / prior_var[:, None, None]
      + np.sqrt(1.0 - betas[n])[:, None, None] * np.asarray(x_n)
      / betas[n][:, None, None]
  )
  np.testing.assert_allclose(mean, bayes_mean, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(var, bayes_var, rtol=1e-4)
  np.testing.assert_allclose(np.exp(log_var), bayes_var, rtol=1e-4)


def test_q_posterior_at_first_step_returns_x0(cosine):
  x0, _ = _x0_y()
  x_n = jax.random.normal(jax.random.key(2), x0.shape)
  mean, var, _ = ddpm.q_posterior(cosine, x0, x_n, jnp.zeros((B,), jnp.int32))
  np.testing.assert_allclose(mean, x0, atol=1e-6)
  np.testing.assert_array_equal(var, 0.0)


@pytest.mark.parametrize("kind", ["cosine", "linear"])
def test_predict_x0_from_noise_inverts_q_sample(kind):
  sched = schedules.make_schedule(kind, 20)
  x0, _ = _x0_y(batch=20)
  noise = jax.random.normal(jax.random.key(4), x0.shape)
  n = jnp.arange(20)
  x_n = ddpm.q_sample(sched, x0, n, noise)
  np.testing.assert_allclose(
      ddpm.predict_x0_from_noise(sched, x_n, n, noise), x0, atol=1e-4
  )


@pytest.mark.parametrize(
    "kind, num_steps, clip", [("cosine", 20, None), ("cosine", 20, 1.0),
                              ("linear", 50, None), ("cosine", 1, None)]
)
def test_ddpm_sample_with_oracle_recovers_x0(kind, num_steps, clip):
  sched = schedules.make_schedule(kind, num_steps)
  x0, y = _x0_y()
  sample = ddpm.ddpm_sample(
      _oracle(sched, x0), sched, y, jax.random.key(0), x0.shape,
      clip_denoised=clip,
  )
  np.testing.assert_allclose(sample, x0, atol=1e-5)


def test_ddpm_chain_marginals_match_forward_process(cosine):
  # With the exact posterior, x_n of the reverse chain is distributed as
  # q(x_n | x0) = N(sqrt(abar_n) x0, 1 - abar_n) (x_{N-1} ~ N(0, I) ~ q).
  num = 4000
  x0 = jnp.broadcast_to(jnp.linspace(-1.0, 1.0, K * D).reshape(K, D), (num, K, D))
  y = jnp.zeros((num, K, 2))
  _, chain = ddpm.ddpm_sample(
      _oracle(cosine, x0), cosine, y, jax.random.key(7), x0.shape,
      return_chain=True,
  )
  assert chain.shape == (21, num, K, D)
  abar = _abar(cosine)
  for index in (5, 10, 15, 19):
    step = 19 - index  # chain[index] is the sample at code step 19 - index
    samples = np.asarray(chain[index])
    np.testing.assert_allclose(
        samples.mean(0), np.sqrt(abar[step]) * np.asarray(x0[0]), atol=0.07
    )
    np.testing.assert_allclose(
        samples.var(0).mean(), 1.0 - abar[step], rtol=0.05, atol=1e-4
    )
  np.testing.assert_allclose(chain[-1], x0, atol=1e-5)


def test_ddpm_sample_same_key_same_sample_and_jit(small_denoiser):
  sched = schedules.cosine_schedule(8)
  model, params = small_denoiser
  _, y = _x0_y()

  def sample(params, key):
    fn = lambda x, y, n: model.apply(params, x, y, n)
    return ddpm.ddpm_sample(fn, sched, y, key, (B, K, D))

  jitted = jax.jit(sample)
  first = jitted(params, jax.random.key(0))
  np.testing.assert_array_equal(first, jitted(params, jax.random.key(0)))
  assert not np.allclose(first, jitted(params, jax.random.key(1)))
  np.testing.assert_allclose(
      sample(params, jax.random.key(0)), first, rtol=1e-4, atol=1e-5
  )
  assert np.all(np.isfinite(first))


def _leaf_norms(grads):
  return [float(jnp.linalg.norm(g)) for g in jax.tree.leaves(grads)]


def test_gradients_through_the_reverse_chain_and_one_step(small_denoiser):
  sched = schedules.cosine_schedule(5)
  model, params = small_denoiser
  x0, y = _x0_y()

  def chain_loss(params):
    fn = lambda x, y, n: model.apply(params, x, y, n)
    sample = ddpm.ddpm_sample(fn, sched, y, jax.random.key(0), x0.shape)
    return jnp.mean(jnp.square(sample - x0))

  def one_step_loss(params):
    fn = lambda x, y, n: model.apply(params, x, y, n)
    estimate = ddpm.one_step_x0(fn, sched, x0, y, jax.random.key(0))
    return jnp.mean(jnp.square(estimate - x0))

  for loss_fn in (chain_loss, one_step_loss):
    norms = _leaf_norms(jax.jit(jax.grad(loss_fn))(params))
    assert len(norms) == 14
    assert all(np.isfinite(norms)) and all(norm > 0.0 for norm in norms)


def test_ddpm_loss_oracle_zero_and_baselines(cosine, small_denoiser):
  x0, y = _x0_y(batch=512)
  key = jax.random.key(11)
  assert float(ddpm.ddpm_loss(_oracle(cosine, x0), cosine, x0, y, key)) < 1e-8
  # A zero prediction costs E[eps^2] = 1.
  zero = float(ddpm.ddpm_loss(_zero_denoiser, cosine, x0, y, key))
  assert abs(zero - 1.0) < 0.05
  # An untrained network has a clearly positive loss.
  model, params = small_denoiser
  x0_small, y_small = _x0_y()
  loss = jax.jit(
      lambda p, k: ddpm.ddpm_loss(
          lambda x, y, n: model.apply(p, x, y, n), cosine, x0_small, y_small, k
      )
  )(params, key)
  assert float(loss) > 1e-3


def test_ddpm_loss_mask_ignores_padded_steps(cosine):
  x0, y = _x0_y()
  mask = jnp.array([[1, 1, 1], [0, 1, 1], [0, 0, 1], [1, 1, 1]], jnp.float32)
  oracle = _oracle(cosine, x0)
  wrong_on_padding = lambda x, y, n: oracle(x, y, n) + 5.0 * (1.0 - mask[..., None])
  key = jax.random.key(2)
  assert float(ddpm.ddpm_loss(wrong_on_padding, cosine, x0, y, key, mask=mask)) < 1e-8
  # Without the mask the 3 padded steps of 12 cost 25 per element.
  np.testing.assert_allclose(
      ddpm.ddpm_loss(wrong_on_padding, cosine, x0, y, key), 25.0 * 3 / 12, rtol=1e-4
  )
  # A full-shape mask gives the same loss as the per-step one.
  full = jnp.broadcast_to(mask[..., None], x0.shape)
  np.testing.assert_allclose(
      ddpm.ddpm_loss(_zero_denoiser, cosine, x0, y, key, mask=mask),
      ddpm.ddpm_loss(_zero_denoiser, cosine, x0, y, key, mask=full),
      rtol=1e-6,
  )


def test_one_step_x0(cosine):
  x0, y = _x0_y()
  key = jax.random.key(9)
  np.testing.assert_allclose(
      ddpm.one_step_x0(_oracle(cosine, x0), cosine, x0, y, key), x0, atol=1e-4
  )
  clipped = ddpm.one_step_x0(_zero_denoiser, cosine, x0, y, key, clip_denoised=0.5)
  assert float(jnp.max(jnp.abs(clipped))) <= 0.5


def test_bad_input_raises(cosine):
  x0, y = _x0_y()
  with pytest.raises(ValueError, match="y must have leading"):
    ddpm.ddpm_sample(_zero_denoiser, cosine, y[:2], jax.random.key(0), x0.shape)
  with pytest.raises(ValueError, match="clip_denoised"):
    ddpm.ddpm_sample(
        _zero_denoiser, cosine, y, jax.random.key(0), x0.shape, clip_denoised=0.0
    )
  with pytest.raises(ValueError, match="mask shape"):
    ddpm.ddpm_loss(
        _zero_denoiser, cosine, x0, y, jax.random.key(0), mask=jnp.ones((B, D))
    )
  with pytest.raises(ValueError, match="y must have leading"):
    ddpm.one_step_x0(_zero_denoiser, cosine, x0, y[:1], jax.random.key(0))
