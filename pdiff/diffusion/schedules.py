"""Noise schedules of a discrete-time DDPM and the constants derived from them.

Step convention used throughout ``pdiff.diffusion``: a chain of ``N`` steps is
indexed in code by ``n = 0, ..., N - 1``, where code index ``n`` is step
``n + 1`` of the paper (Ho et al., 2020). Every array below is indexed by that
code index, so ``alphas_cumprod[n]`` is the paper's ``abar_{n+1}``:

  alphas[n]                = 1 - betas[n]
  alphas_cumprod[n]        = prod_{i <= n} alphas[i]           (abar)
  alphas_cumprod_prev[n]   = alphas_cumprod[n - 1], and 1 at n = 0
  q(x_n | x_0)             = N(sqrt(abar[n]) x_0, (1 - abar[n]) I)
  q(x_{n-1} | x_n, x_0)    = N(coef1[n] x_0 + coef2[n] x_n, posterior_variance[n] I)

with ``x_{-1}`` meaning the clean sample ``x_0`` (the last reverse step).
The constants are computed in float64 with NumPy and stored as float32.
"""

from __future__ import annotations

import math

import flax
import jax
import jax.numpy as jnp
import numpy as np

SCHEDULE_KINDS = ("cosine", "linear")


@flax.struct.dataclass
class DiffusionSchedule:
  """Per-step constants of a DDPM chain, each an array of shape ``[N]``.

  ``num_steps`` is static (not a pytree leaf), so a schedule can be passed to
  a jitted function and still fix the length of ``lax.scan`` loops.
  """

  betas: jax.Array  # [N] forward noise variances beta_n
  alphas: jax.Array  # [N] 1 - beta_n
  alphas_cumprod: jax.Array  # [N] abar_n = prod_{i<=n} alpha_i
  alphas_cumprod_prev: jax.Array  # [N] abar_{n-1}, 1 at n = 0
  sqrt_alphas_cumprod: jax.Array  # [N] sqrt(abar_n)
  sqrt_one_minus_alphas_cumprod: jax.Array  # [N] sqrt(1 - abar_n)
  posterior_variance: jax.Array  # [N] variance of q(x_{n-1} | x_n, x_0)
  posterior_log_variance_clipped: jax.Array  # [N] its log, entry 0 replaced
  posterior_mean_coef1: jax.Array  # [N] weight of x_0 in the posterior mean
  posterior_mean_coef2: jax.Array  # [N] weight of x_n in the posterior mean
  num_steps: int = flax.struct.field(pytree_node=False)  # N


def schedule_from_betas(betas: np.ndarray) -> DiffusionSchedule:
  """Derives every DDPM constant from a vector of betas.

  Args:
    betas: ``[N]`` forward-process variances, each in ``(0, 1)``.

  Returns:
    The ``DiffusionSchedule`` of ``N = len(betas)`` steps.

  Raises:
    ValueError: if ``betas`` is not a non-empty vector with values in (0, 1).
  """
  betas = np.asarray(betas, dtype=np.float64)
  if betas.ndim != 1 or betas.shape[0] < 1:
    raise ValueError(
        f"betas must be a non-empty vector, got shape {betas.shape}."
    )
  if not np.all((betas > 0.0) & (betas < 1.0)):
    raise ValueError(
        f"betas must lie in (0, 1), got min {betas.min()} max {betas.max()}."
    )
  alphas = 1.0 - betas
  alphas_cumprod = np.cumprod(alphas)
  alphas_cumprod_prev = np.concatenate([[1.0], alphas_cumprod[:-1]])
  posterior_variance = betas * (1.0 - alphas_cumprod_prev) / (
      1.0 - alphas_cumprod
  )
  # posterior_variance[0] is 0 (x_0 is known exactly given x_0); the log uses
  # the next step's variance there, as in Ho et al.'s reference code. The
  # reverse chain adds no noise at n = 0, so the entry only avoids log(0).
  first = posterior_variance[1] if betas.shape[0] > 1 else betas[0]
  posterior_log_variance_clipped = np.log(
      np.concatenate([[first], posterior_variance[1:]])
  )
  posterior_mean_coef1 = (
      betas * np.sqrt(alphas_cumprod_prev) / (1.0 - alphas_cumprod)
  )
  posterior_mean_coef2 = (
      (1.0 - alphas_cumprod_prev) * np.sqrt(alphas) / (1.0 - alphas_cumprod)
  )
  f32 = lambda a: jnp.asarray(a, dtype=jnp.float32)
  return DiffusionSchedule(
      betas=f32(betas),
      alphas=f32(alphas),
      alphas_cumprod=f32(alphas_cumprod),
      alphas_cumprod_prev=f32(alphas_cumprod_prev),
      sqrt_alphas_cumprod=f32(np.sqrt(alphas_cumprod)),
      sqrt_one_minus_alphas_cumprod=f32(np.sqrt(1.0 - alphas_cumprod)),
      posterior_variance=f32(posterior_variance),
      posterior_log_variance_clipped=f32(posterior_log_variance_clipped),
      posterior_mean_coef1=f32(posterior_mean_coef1),
      posterior_mean_coef2=f32(posterior_mean_coef2),
      num_steps=int(betas.shape[0]),
  )


def _check_num_steps(num_steps: int) -> None:
  if not isinstance(num_steps, (int, np.integer)) or num_steps < 1:
    raise ValueError(
        f"num_steps must be an integer >= 1, got {num_steps!r}."
    )


def cosine_schedule(
    num_steps: int, s: float = 0.008, max_beta: float = 0.999
) -> DiffusionSchedule:
  """The cosine schedule of Nichol & Dhariwal (2021).

  ``abar(t) = f(t) / f(0)`` with ``f(t) = cos((t + s) / (1 + s) * pi / 2)^2``
  for ``t = (n + 1) / N``, obtained through
  ``beta_n = min(1 - f((n + 1) / N) / f(n / N), max_beta)``.

  Args:
    num_steps: number of diffusion steps ``N >= 1``.
    s: small offset that keeps ``beta`` away from 0 near ``t = 0``.
    max_beta: upper clip of every beta (the last unclipped beta is 1).

  Returns:
    The ``DiffusionSchedule``.

  Raises:
    ValueError: on ``num_steps < 1``, ``s < 0`` or ``max_beta`` not in (0, 1).
  """
  _check_num_steps(num_steps)
  if s < 0.0:
    raise ValueError(f"s must be >= 0, got {s}.")
  if not 0.0 < max_beta < 1.0:
    raise ValueError(f"max_beta must lie in (0, 1), got {max_beta}.")
  f = lambda t: np.cos((t + s) / (1.0 + s) * math.pi / 2.0) ** 2
  t = np.arange(num_steps + 1, dtype=np.float64) / num_steps  # [N + 1]
  betas = np.minimum(1.0 - f(t[1:]) / f(t[:-1]), max_beta)
  return schedule_from_betas(betas)


def linear_schedule(
    num_steps: int, beta_start: float = 1e-4, beta_end: float = 2e-2
) -> DiffusionSchedule:
  """The linear schedule of Ho et al. (2020): betas evenly spaced.

  Args:
    num_steps: number of diffusion steps ``N >= 1``.
    beta_start: ``beta`` of the first step.
    beta_end: ``beta`` of the last step.

  Returns:
    The ``DiffusionSchedule``.

  Raises:
    ValueError: on ``num_steps < 1`` or betas outside (0, 1).
  """
  _check_num_steps(num_steps)
  for name, value in (("beta_start", beta_start), ("beta_end", beta_end)):
    if not 0.0 < value < 1.0:
      raise ValueError(f"{name} must lie in (0, 1), got {value}.")
  return schedule_from_betas(
      np.linspace(beta_start, beta_end, num_steps, dtype=np.float64)
  )


def make_schedule(kind: str, num_steps: int) -> DiffusionSchedule:
  """Builds a schedule by name with its default parameters.

  Args:
    kind: ``"cosine"`` or ``"linear"``.
    num_steps: number of diffusion steps ``N >= 1``.

  Returns:
    The ``DiffusionSchedule``.

  Raises:
    ValueError: on an unknown ``kind`` or ``num_steps < 1``.
  """
  if kind == "cosine":
    return cosine_schedule(num_steps)
  if kind == "linear":
    return linear_schedule(num_steps)
  raise ValueError(
      f"schedule kind must be one of {SCHEDULE_KINDS}, got {kind!r}."
  )
