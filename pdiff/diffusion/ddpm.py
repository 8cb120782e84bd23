"""DDPM forward process, noise-prediction loss and reverse chain.

Conventions (see ``pdiff.diffusion.schedules``):

* Step indices ``n`` are code indices ``0, ..., N - 1``; code index ``n`` is
  the paper's step ``n + 1``. ``n = N - 1`` is (almost) pure noise and the
  reverse step at ``n = 0`` returns the clean sample.
* A denoiser is a function ``denoise_fn(x_n, y, n) -> eps`` with ``x_n`` of
  shape ``[B, ...]``, the condition ``y`` of shape ``[B, ...]`` and ``n`` an
  int32 array ``[B]`` of code step indices; it returns the predicted noise
  with the shape of ``x_n``. Parameters are captured by closure, e.g.
  ``lambda x, y, n: model.apply(params, x, y, n)``; every function here is
  differentiable w.r.t. them (the reverse chain included, as Diffusion-QL
  needs to back-propagate a downstream loss through sampling).

For Prompt Diffuser, ``x0`` is a trajectory prompt ``[B, K*, ds + da + 1]``
and ``y`` its conditions ``[B, K*, 2]`` (returns-to-go, timesteps).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from pdiff.diffusion.schedules import DiffusionSchedule

DenoiseFn = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]


def extract(coefs: jax.Array, n: jax.Array, ndim: int) -> jax.Array:
  """Gathers per-step constants and shapes them to broadcast over a batch.

  Args:
    coefs: ``[N]`` per-step constants of a schedule.
    n: int step indices, ``[B]`` or a scalar.
    ndim: rank of the array the result multiplies, ``[B, ...]``.

  Returns:
    ``coefs[n]`` of shape ``[B, 1, ..., 1]`` (``ndim`` axes), or a scalar
    when ``n`` is a scalar.
  """
  values = coefs[n]
  if values.ndim == 0:
    return values
  return values.reshape(values.shape + (1,) * (ndim - values.ndim))


def q_sample(
    schedule: DiffusionSchedule, x0: jax.Array, n: jax.Array, noise: jax.Array
) -> jax.Array:
  """Draws ``x_n ~ q(x_n | x_0) = N(sqrt(abar_n) x_0, (1 - abar_n) I)``.

  Args:
    schedule: the diffusion schedule.
    x0: clean samples, ``[B, ...]``.
    n: int step indices, ``[B]`` (or a scalar).
    noise: standard normal noise with the shape of ``x0``.

  Returns:
    ``x_n = sqrt(abar_n) x0 + sqrt(1 - abar_n) noise``, shape of ``x0``.
  """
  return (
      extract(schedule.sqrt_alphas_cumprod, n, x0.ndim) * x0
      + extract(schedule.sqrt_one_minus_alphas_cumprod, n, x0.ndim) * noise
  )


def predict_x0_from_noise(
    schedule: DiffusionSchedule, x_n: jax.Array, n: jax.Array, eps: jax.Array
) -> jax.Array:
  """Inverts ``q_sample`` given the noise: ``(x_n - sqrt(1 - abar) eps) / sqrt(abar)``.

  Args:
    schedule: the diffusion schedule.
    x_n: noised samples, ``[B, ...]``.
    n: int step indices, ``[B]`` (or a scalar).
    eps: (predicted) noise with the shape of ``x_n``.

  Returns:
    The estimate of ``x_0``, shape of ``x_n``.
  """
  return (
      x_n - extract(schedule.sqrt_one_minus_alphas_cumprod, n, x_n.ndim) * eps
  ) / extract(schedule.sqrt_alphas_cumprod, n, x_n.ndim)


def q_posterior(
    schedule: DiffusionSchedule, x0: jax.Array, x_n: jax.Array, n: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Mean and variance of the forward posterior ``q(x_{n-1} | x_n, x_0)``.

  Args:
    schedule: the diffusion schedule.
    x0: clean (or predicted clean) samples, ``[B, ...]``.
    x_n: noised samples at step ``n``, shape of ``x0``.
    n: int step indices, ``[B]`` (or a scalar).

  Returns:
    ``(mean, variance, log_variance)``: the mean has the shape of ``x0``;
    the variance and its (clipped) log are ``[B, 1, ..., 1]``.
  """
  mean = (
      extract(schedule.posterior_mean_coef1, n, x0.ndim) * x0
      + extract(schedule.posterior_mean_coef2, n, x0.ndim) * x_n
  )
  variance = extract(schedule.posterior_variance, n, x0.ndim)
  log_variance = extract(schedule.posterior_log_variance_clipped, n, x0.ndim)
  return mean, variance, log_variance


def _check_batch(name: str, array: jax.Array, batch: int) -> None:
  if array.ndim < 1 or array.shape[0] != batch:
    raise ValueError(
        f"{name} must have leading (batch) dimension {batch}, got shape "
        f"{array.shape}."
    )


def _masked_mean(values: jax.Array, mask: jax.Array | None) -> jax.Array:
  """Mean of ``values`` over entries where ``mask`` is 1 (all if None)."""
  if mask is None:
    return jnp.mean(values)
  mask = mask.astype(values.dtype)
  mask = mask.reshape(mask.shape + (1,) * (values.ndim - mask.ndim))
  mask = jnp.broadcast_to(mask, values.shape)
  return jnp.sum(values * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def ddpm_loss(
    denoise_fn: DenoiseFn,
    schedule: DiffusionSchedule,
    x0: jax.Array,
    y: jax.Array,
    key: jax.Array,
    *,
    mask: jax.Array | None = None,
) -> jax.Array:
  """The DDPM noise-prediction loss ``L_DM`` (Prompt Diffuser eq. 6).

  ``E_{n ~ U{0..N-1}, eps ~ N(0, I)} ||eps - eps_theta(x_n, y, n)||^2`` with
  ``x_n = sqrt(abar_n) x0 + sqrt(1 - abar_n) eps``, averaged over elements.

  Args:
    denoise_fn: ``(x_n, y, n) -> eps``, see the module docstring.
    schedule: the diffusion schedule.
    x0: clean samples, ``[B, ...]`` (prompts: ``[B, K*, D]``).
    y: conditions, ``[B, ...]`` (prompts: ``[B, K*, 2]``).
    key: PRNG key for the step indices and the noise.
    mask: optional 0/1 weights whose shape is a prefix of ``x0.shape``
      (prompts: ``[B, K*]``, 0 on padded steps) or equal to it; the loss is
      the mean over entries where it is 1.

  Returns:
    The scalar loss.

  Raises:
    ValueError: on a batch mismatch between ``x0``, ``y`` and ``mask`` or a
      ``mask`` shape that is not a prefix of ``x0.shape``.
  """
  batch = x0.shape[0]
  _check_batch("y", y, batch)
  if mask is not None and tuple(mask.shape) != tuple(x0.shape[: mask.ndim]):
    raise ValueError(
        f"mask shape must be a prefix of x0 shape {x0.shape}, got {mask.shape}."
    )
  n_key, noise_key = jax.random.split(key)
  n = jax.random.randint(
      n_key, (batch,), 0, schedule.num_steps, dtype=jnp.int32
  )  # [B]
  noise = jax.random.normal(noise_key, x0.shape, x0.dtype)  # [B, ...]
  x_n = q_sample(schedule, x0, n, noise)
  eps = denoise_fn(x_n, y, n)
  return _masked_mean(jnp.square(eps - noise), mask)


def _clip(x: jax.Array, clip_denoised: float | None) -> jax.Array:
  if clip_denoised is None:
    return x
  return jnp.clip(x, -clip_denoised, clip_denoised)


def _check_clip(clip_denoised: float | None) -> None:
  if clip_denoised is not None and not clip_denoised > 0:
    raise ValueError(
        f"clip_denoised must be None or > 0, got {clip_denoised}."
    )


def p_mean_variance(
    denoise_fn: DenoiseFn,
    schedule: DiffusionSchedule,
    x_n: jax.Array,
    y: jax.Array,
    n: jax.Array,
    *,
    clip_denoised: float | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Mean and log-variance of the learned reverse step ``p(x_{n-1} | x_n, y)``.

  The denoiser's noise gives ``x0_hat`` (optionally clipped to
  ``[-clip_denoised, clip_denoised]``), plugged into ``q_posterior``.

  Args:
    denoise_fn: ``(x_n, y, n) -> eps``.
    schedule: the diffusion schedule.
    x_n: current samples, ``[B, ...]``.
    y: conditions, ``[B, ...]``.
    n: int32 step indices, ``[B]``.
    clip_denoised: optional bound on ``|x0_hat|``.

  Returns:
    ``(mean, log_variance, x0_hat)``; ``log_variance`` is ``[B, 1, ..., 1]``.
  """
  eps = denoise_fn(x_n, y, n)
  x0_hat = _clip(predict_x0_from_noise(schedule, x_n, n, eps), clip_denoised)
  mean, _, log_variance = q_posterior(schedule, x0_hat, x_n, n)
  return mean, log_variance, x0_hat


def ddpm_sample(
    denoise_fn: DenoiseFn,
    schedule: DiffusionSchedule,
    y: jax.Array,
    key: jax.Array,
    shape: tuple[int, ...],
    *,
    clip_denoised: float | None = None,
    return_chain: bool = False,
) -> jax.Array | tuple[jax.Array, jax.Array]:
  """Ancestral sampling through the whole reverse chain (a ``lax.scan``).

  Starts from ``x_{N-1} ~ N(0, I)`` and applies, for ``n = N-1, ..., 0``,
  ``x_{n-1} = mu(x_n, x0_hat) + sigma_n z`` with ``z ~ N(0, I)``; no noise is
  added at the last step (``n = 0``), which returns the posterior mean.

  Args:
    denoise_fn: ``(x_n, y, n) -> eps``.
    schedule: the diffusion schedule.
    y: conditions, ``[B, ...]`` (prompts: ``[B, K*, 2]``).
    key: PRNG key for the initial noise and the per-step noise.
    shape: shape of the samples, ``(B, ...)`` (prompts: ``(B, K*, D)``).
    clip_denoised: optional bound on ``|x0_hat|`` at every step.
    return_chain: also return every intermediate sample.

  Returns:
    ``x0`` of shape ``shape``, and with ``return_chain`` also the chain
    ``[N + 1, *shape]`` from the initial noise (index 0) to ``x0`` (index N).

  Raises:
    ValueError: if ``y``'s batch is not ``shape[0]`` or ``clip_denoised <= 0``.
  """
  shape = tuple(shape)
  _check_batch("y", y, shape[0])
  _check_clip(clip_denoised)
  init_key, chain_key = jax.random.split(key)
  x = jax.random.normal(init_key, shape)  # [B, ...]
  steps = jnp.arange(schedule.num_steps - 1, -1, -1, dtype=jnp.int32)  # [N]
  step_keys = jax.random.split(chain_key, schedule.num_steps)

  def reverse_step(x_n, inputs):
    step, step_key = inputs
    n = jnp.full((shape[0],), step, dtype=jnp.int32)  # [B]
    mean, log_variance, _ = p_mean_variance(
        denoise_fn, schedule, x_n, y, n, clip_denoised=clip_denoised
    )
    noise = jax.random.normal(step_key, shape, x_n.dtype)
    nonzero = (step > 0).astype(x_n.dtype)
    x_prev = mean + nonzero * jnp.exp(0.5 * log_variance) * noise
    return x_prev, x_prev

  x0, chain = jax.lax.scan(reverse_step, x, (steps, step_keys))
  if return_chain:
    return x0, jnp.concatenate([x[None], chain], axis=0)
  return x0


def one_step_x0(
    denoise_fn: DenoiseFn,
    schedule: DiffusionSchedule,
    x0: jax.Array,
    y: jax.Array,
    key: jax.Array,
    *,
    clip_denoised: float | None = None,
) -> jax.Array:
  """One-step estimate of ``x0``: noise it to a random step, denoise once.

  The cheap alternative to back-propagating through the whole reverse
  chain: ``n ~ U{0..N-1}``, ``x_n = q_sample(x0, n, eps)`` and
  ``x0_hat = predict_x0_from_noise(x_n, n, eps_theta(x_n, y, n))``.

  Args:
    denoise_fn: ``(x_n, y, n) -> eps``.
    schedule: the diffusion schedule.
    x0: clean samples, ``[B, ...]``.
    y: conditions, ``[B, ...]``.
    key: PRNG key for the step indices and the noise.
    clip_denoised: optional bound on ``|x0_hat|``.

  Returns:
    ``x0_hat`` with the shape of ``x0``.

  Raises:
    ValueError: if ``y``'s batch is not ``x0``'s or ``clip_denoised <= 0``.
  """
  _check_batch("y", y, x0.shape[0])
  _check_clip(clip_denoised)
  n_key, noise_key = jax.random.split(key)
  n = jax.random.randint(
      n_key, (x0.shape[0],), 0, schedule.num_steps, dtype=jnp.int32
  )  # [B]
  noise = jax.random.normal(noise_key, x0.shape, x0.dtype)
  x_n = q_sample(schedule, x0, n, noise)
  eps = denoise_fn(x_n, y, n)
  return _clip(predict_x0_from_noise(schedule, x_n, n, eps), clip_denoised)
