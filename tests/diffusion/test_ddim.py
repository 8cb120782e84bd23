"""DDIM sampling: timestep subsequence, update rule and oracle recovery."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdiff.diffusion import ddim, ddpm, schedules
from pdiff.models.denoiser import PromptDenoiser

B, K, D = 4, 3, 5  # batch, prompt steps, features per step


def _oracle(sched, x0):
  """A denoiser that returns the exact noise of x_n for a known x0."""

  def denoise_fn(x_n, y, n):
    del y
    abar = sched.alphas_cumprod[n][:, None, None]  # [B, 1, 1]
    return (x_n - jnp.sqrt(abar) * x0) / jnp.sqrt(1.0 - abar)

  return denoise_fn


def _x0_y(seed=0):
  x_key, y_key = jax.random.split(jax.random.key(seed))
  x0 = jax.random.uniform(x_key, (B, K, D), minval=-1.0, maxval=1.0)
  return x0, jax.random.normal(y_key, (B, K, 2))


@pytest.mark.parametrize("num_train, num_steps", [(20, 1), (20, 2), (20, 7),
                                                  (20, 20), (100, 10)])
def test_ddim_timesteps(num_train, num_steps):
  steps = ddim.ddim_timesteps(num_train, num_steps)
  assert steps.shape == (num_steps,) and steps.dtype == np.int32
  assert steps[0] == num_train - 1
  assert np.all(np.diff(steps) < 0) and steps.min() >= 0
  if num_steps >= 2:
    assert steps[-1] == 0
  if num_steps == num_train:
    np.testing.assert_array_equal(steps, np.arange(num_train)[::-1])


@pytest.mark.parametrize("num_steps", [0, 21, -1])
def test_ddim_rejects_bad_num_steps(num_steps):
  sched = schedules.cosine_schedule(20)
  x0, y = _x0_y()
  with pytest.raises(ValueError, match="num_steps must lie in"):
    ddim.ddim_sample(
        _oracle(sched, x0), sched, y, jax.random.key(0), x0.shape,
        num_steps=num_steps,
    )


def test_ddim_rejects_bad_eta_and_batch():
  sched = schedules.cosine_schedule(20)
  x0, y = _x0_y()
  with pytest.raises(ValueError, match="eta"):
    ddim.ddim_sample(
        _oracle(sched, x0), sched, y, jax.random.key(0), x0.shape,
        num_steps=5, eta=-0.5,
    )
  with pytest.raises(ValueError, match="y must have leading"):
    ddim.ddim_sample(
        _oracle(sched, x0), sched, y[:1], jax.random.key(0), x0.shape,
        num_steps=5,
    )


@pytest.mark.parametrize("kind", ["cosine", "linear"])
@pytest.mark.parametrize("num_steps, eta, clip", [(1, 0.0, None), (5, 0.0, None),
                                                  (20, 0.0, 1.0), (5, 1.0, None),
                                                  (20, 0.5, None)])
def test_ddim_with_oracle_recovers_x0(kind, num_steps, eta, clip):
  sched = schedules.make_schedule(kind, 20)
  x0, y = _x0_y()
  sample = ddim.ddim_sample(
      _oracle(sched, x0), sched, y, jax.random.key(3), x0.shape,
      num_steps=num_steps, eta=eta, clip_denoised=clip,
  )
  # One step divides float32 rounding by sqrt(abar_{N-1}) (about 2e-3 for the
  # cosine schedule); more steps end with a well-conditioned abar.
  np.testing.assert_allclose(sample, x0, atol=1e-5 if num_steps > 1 else 2e-4)


@pytest.mark.parametrize("step", [1, 7, 19])
def test_ddim_step_with_eta_one_is_the_ddpm_posterior(step):
  # With t_prev = t - 1 and eta = 1, the DDIM mean and sigma^2 equal the
  # DDPM posterior mean (at x0_hat) and posterior variance.
  sched = schedules.cosine_schedule(20)
  x_t = jax.random.normal(jax.random.key(0), (B, K, D))
  eps = jax.random.normal(jax.random.key(1), (B, K, D))
  t = jnp.full((B,), step, jnp.int32)
  zeros, ones = jnp.zeros_like(x_t), jnp.ones_like(x_t)
  mean, x0_hat = ddim.ddim_step(sched, x_t, eps, t, t - 1, zeros, eta=1.0)
  shifted, _ = ddim.ddim_step(sched, x_t, eps, t, t - 1, ones, eta=1.0)
  post_mean, post_var, _ = ddpm.q_posterior(sched, x0_hat, x_t, t)
  np.testing.assert_allclose(mean, post_mean, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(
      jnp.square(shifted - mean), jnp.broadcast_to(post_var, x_t.shape),
      rtol=1e-3, atol=1e-6,
  )


def test_ddim_step_to_clean_sample_returns_x0_hat():
  sched = schedules.cosine_schedule(20)
  x_t = jax.random.normal(jax.random.key(0), (B, K, D))
  eps = jax.random.normal(jax.random.key(1), (B, K, D))
  t = jnp.full((B,), 4, jnp.int32)
  x_prev, x0_hat = ddim.ddim_step(
      sched, x_t, eps, t, jnp.full((B,), -1, jnp.int32), eps, eta=1.0
  )
  np.testing.assert_allclose(x_prev, x0_hat, atol=1e-6)
  np.testing.assert_allclose(
      x0_hat, ddpm.predict_x0_from_noise(sched, x_t, t, eps), atol=1e-6
  )


def test_ddim_sample_determinism_and_gradients_under_jit():
  sched = schedules.cosine_schedule(20)
  model = PromptDenoiser(
      horizon=K, transition_dim=D, hidden_sizes=(32, 32), cond_embed_dim=8
  )
  x0, y = _x0_y()
  params = jax.jit(model.init)(jax.random.key(1), x0, y, jnp.zeros((B,), jnp.int32))

  def sample(params, key, eta):
    fn = lambda x, y, n: model.apply(params, x, y, n)
    return ddim.ddim_sample(fn, sched, y, key, x0.shape, num_steps=4, eta=eta)

  jitted = jax.jit(sample, static_argnums=2)
  first = jitted(params, jax.random.key(0), 0.0)
  np.testing.assert_array_equal(first, jitted(params, jax.random.key(0), 0.0))
  assert not np.allclose(first, jitted(params, jax.random.key(1), 0.0))
  assert np.all(np.isfinite(first))
  grads = jax.jit(jax.grad(
      lambda p: jnp.mean(jnp.square(sample(p, jax.random.key(0), 1.0) - x0))
  ))(params)
  norms = [float(jnp.linalg.norm(g)) for g in jax.tree.leaves(grads)]
  assert all(np.isfinite(norms)) and all(norm > 0.0 for norm in norms)
