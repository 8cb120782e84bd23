"""Schedules against NumPy reimplementations of their closed forms."""

import math

import jax
import numpy as np
import pytest

from pdiff.diffusion import schedules


def _cosine_f(t, s=0.008):
  return np.cos((t + s) / (1.0 + s) * math.pi / 2.0) ** 2


@pytest.mark.parametrize("num_steps", [1, 5, 20, 100])
def test_cosine_alphas_cumprod_is_the_telescoped_closed_form(num_steps):
  # Without clipping, prod_i (f(t_{i+1}) / f(t_i)) telescopes to f(t_{n+1}) / f(0).
  sched = schedules.cosine_schedule(num_steps)
  n = np.arange(num_steps)
  expected = _cosine_f((n + 1) / num_steps) / _cosine_f(0.0)
  # Only the last beta is clipped (to 0.999): compare the others exactly.
  np.testing.assert_allclose(
      np.asarray(sched.alphas_cumprod)[:-1], expected[:-1], rtol=1e-5
  )
  last_prev = expected[-2] if num_steps > 1 else 1.0
  np.testing.assert_allclose(
      sched.alphas_cumprod[-1], last_prev * (1.0 - 0.999), rtol=1e-4
  )
  np.testing.assert_allclose(sched.betas[-1], 0.999, rtol=1e-6)


@pytest.mark.parametrize("max_beta", [0.5, 0.9])
def test_cosine_betas_are_clipped(max_beta):
  sched = schedules.cosine_schedule(20, max_beta=max_beta)
  raw = 1.0 - _cosine_f(np.arange(1, 21) / 20) / _cosine_f(np.arange(20) / 20)
  np.testing.assert_allclose(sched.betas, np.minimum(raw, max_beta), rtol=1e-5)
  assert float(np.max(sched.betas)) <= max_beta + 1e-7


@pytest.mark.parametrize("num_steps", [1, 10, 1000])
def test_linear_alphas_cumprod(num_steps):
  sched = schedules.linear_schedule(num_steps, beta_start=1e-4, beta_end=2e-2)
  if num_steps == 1:
    betas = np.array([1e-4])
  else:
    betas = 1e-4 + (2e-2 - 1e-4) * np.arange(num_steps) / (num_steps - 1)
  abar = np.array([np.prod(1.0 - betas[: i + 1]) for i in range(num_steps)])
  np.testing.assert_allclose(sched.betas, betas, rtol=1e-5)
  np.testing.assert_allclose(sched.alphas_cumprod, abar, rtol=1e-5)


@pytest.mark.parametrize("kind", ["cosine", "linear"])
@pytest.mark.parametrize("num_steps", [2, 20])
def test_schedule_invariants(kind, num_steps):
  sched = schedules.make_schedule(kind, num_steps)
  betas = np.asarray(sched.betas, np.float64)
  abar = np.asarray(sched.alphas_cumprod, np.float64)
  assert sched.num_steps == num_steps
  for leaf in jax.tree.leaves(sched):
    assert leaf.shape == (num_steps,)
  assert np.all((betas > 0.0) & (betas < 1.0))
  assert np.all(np.diff(abar) < 0.0) and abar[0] < 1.0 and abar[-1] > 0.0
  np.testing.assert_allclose(sched.alphas, 1.0 - betas, rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(
      sched.alphas_cumprod_prev, np.concatenate([[1.0], abar[:-1]]), rtol=1e-6
  )
  np.testing.assert_allclose(sched.sqrt_alphas_cumprod ** 2, abar, rtol=1e-5)
  np.testing.assert_allclose(
      sched.sqrt_one_minus_alphas_cumprod ** 2, 1.0 - abar, rtol=1e-4, atol=1e-7
  )
  # The posterior variance lies below the forward beta and is 0 at n = 0.
  var = np.asarray(sched.posterior_variance)
  assert var[0] == 0.0 and np.all(var[1:] > 0.0)
  assert np.all(var <= betas * (1.0 + 1e-6))
  np.testing.assert_allclose(
      np.exp(sched.posterior_log_variance_clipped[1:]), var[1:], rtol=1e-5
  )
  assert np.isfinite(sched.posterior_log_variance_clipped[0])


def test_schedule_is_a_pytree_with_static_num_steps():
  sched = schedules.cosine_schedule(7)
  doubled = jax.jit(lambda s: jax.tree.map(lambda a: 2 * a, s))(sched)
  assert doubled.num_steps == 7
  np.testing.assert_allclose(doubled.betas, 2 * sched.betas)
  assert len(jax.tree.leaves(sched)) == 10


@pytest.mark.parametrize(
    "kind, num_steps, match",
    [
        ("sigmoid", 20, "schedule kind"),
        ("cosine", 0, "num_steps"),
        ("linear", -3, "num_steps"),
        ("cosine", 2.5, "num_steps"),
    ],
)
def test_make_schedule_rejects_bad_input(kind, num_steps, match):
  with pytest.raises(ValueError, match=match):
    schedules.make_schedule(kind, num_steps)


def test_bad_schedule_parameters_raise():
  with pytest.raises(ValueError, match="max_beta"):
    schedules.cosine_schedule(10, max_beta=1.0)
  with pytest.raises(ValueError, match="beta_end"):
    schedules.linear_schedule(10, beta_end=1.5)
  with pytest.raises(ValueError, match="betas"):
    schedules.schedule_from_betas(np.array([0.1, 0.0]))
