"""DDIM sampling (Song et al., 2021) over a subsequence of the DDPM steps.

A model trained with the DDPM loss on ``N`` steps can be sampled in
``S <= N`` steps: with ``tau`` a decreasing subsequence of the code step
indices ``0..N-1`` (see ``pdiff.diffusion.schedules`` for the convention)
and ``abar_prev`` the ``abar`` of the next index in ``tau`` (1 after the
last), each step computes

  x0_hat   = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)
  sigma_t  = eta sqrt((1 - abar_prev) / (1 - abar_t)) sqrt(1 - abar_t / abar_prev)
  x_prev   = sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev - sigma_t^2) eps + sigma_t z

``eta = 0`` is the deterministic DDIM sampler; ``eta = 1`` with ``S = N`` is
the DDPM ancestral sampler (its posterior variance, unclipped).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from pdiff.diffusion.ddpm import DenoiseFn, extract, predict_x0_from_noise
from pdiff.diffusion.schedules import DiffusionSchedule


def ddim_timesteps(num_train_steps: int, num_steps: int) -> np.ndarray:
  """Evenly spaced decreasing code step indices from ``N - 1`` down to 0.

  Args:
    num_train_steps: steps ``N`` of the schedule the model was trained on.
    num_steps: sampling steps ``S``, ``1 <= S <= N``.

  Returns:
    int32 ``[S]``, strictly decreasing, starting at ``N - 1`` and, when
    ``S >= 2``, ending at 0.

  Raises:
    ValueError: if ``num_steps`` is not in ``[1, num_train_steps]``.
  """
  if not 1 <= num_steps <= num_train_steps:
    raise ValueError(
        f"num_steps must lie in [1, {num_train_steps}] (the schedule's "
        f"num_steps), got {num_steps}."
    )
  # Consecutive values are at least 1 apart, so rounding keeps them distinct.
  return np.round(np.linspace(num_train_steps - 1, 0, num_steps)).astype(
      np.int32
  )


def ddim_step(
    schedule: DiffusionSchedule,
    x_t: jax.Array,
    eps: jax.Array,
    t: jax.Array,
    t_prev: jax.Array,
    noise: jax.Array,
    *,
    eta: float = 0.0,
    clip_denoised: float | None = None,
) -> tuple[jax.Array, jax.Array]:
  """One DDIM update from code step ``t`` to code step ``t_prev < t``.

  Args:
    schedule: the diffusion schedule.
    x_t: current samples, ``[B, ...]``.
    eps: predicted noise at ``(x_t, t)``, shape of ``x_t``.
    t: int32 step indices, ``[B]``.
    t_prev: int32 target step indices, ``[B]``; ``-1`` means the clean
      sample (``abar_prev = 1``).
    noise: standard normal noise with the shape of ``x_t`` (used iff
      ``eta > 0``).
    eta: stochasticity, 0 (deterministic) to 1 (DDPM-like).
    clip_denoised: optional bound on ``|x0_hat|``; the noise is then
      recomputed from the clipped ``x0_hat``.

  Returns:
    ``(x_prev, x0_hat)``, both with the shape of ``x_t``.
  """
  ndim = x_t.ndim
  abar_t = extract(schedule.alphas_cumprod, t, ndim)
  # abar with a trailing 1, so that index -1 reads abar_prev = 1.
  abar_ext = jnp.concatenate([schedule.alphas_cumprod, jnp.ones((1,))])  # [N+1]
  abar_prev = extract(abar_ext, t_prev, ndim)
  x0_hat = predict_x0_from_noise(schedule, x_t, t, eps)
  if clip_denoised is not None:
    x0_hat = jnp.clip(x0_hat, -clip_denoised, clip_denoised)
    eps = (x_t - jnp.sqrt(abar_t) * x0_hat) / jnp.sqrt(1.0 - abar_t)
  sigma = eta * jnp.sqrt(
      (1.0 - abar_prev) / (1.0 - abar_t) * (1.0 - abar_t / abar_prev)
  )
  direction = jnp.sqrt(jnp.maximum(1.0 - abar_prev - sigma**2, 0.0))
  x_prev = jnp.sqrt(abar_prev) * x0_hat + direction * eps + sigma * noise
  return x_prev, x0_hat


def ddim_sample(
    denoise_fn: DenoiseFn,
    schedule: DiffusionSchedule,
    y: jax.Array,
    key: jax.Array,
    shape: tuple[int, ...],
    *,
    num_steps: int,
    eta: float = 0.0,
    clip_denoised: float | None = None,
) -> jax.Array:
  """Samples with DDIM in ``num_steps`` denoiser calls (a ``lax.scan``).

  Differentiable w.r.t. parameters captured in ``denoise_fn``.

  Args:
    denoise_fn: ``(x_n, y, n) -> eps``, see ``pdiff.diffusion.ddpm``.
    schedule: the schedule the denoiser was trained with (``N`` steps).
    y: conditions, ``[B, ...]`` (prompts: ``[B, K*, 2]``).
    key: PRNG key for the initial noise and, when ``eta > 0``, step noise.
    shape: shape of the samples, ``(B, ...)`` (prompts: ``(B, K*, D)``).
    num_steps: sampling steps ``S``, ``1 <= S <= N``.
    eta: stochasticity in ``[0, 1]``; 0 is deterministic given ``key``.
    clip_denoised: optional bound on ``|x0_hat|`` at every step.

  Returns:
    ``x0`` of shape ``shape``.

  Raises:
    ValueError: on ``num_steps`` outside ``[1, N]``, ``eta < 0``,
      ``clip_denoised <= 0`` or a batch mismatch between ``y`` and ``shape``.
  """
  shape = tuple(shape)
  timesteps = ddim_timesteps(schedule.num_steps, num_steps)  # [S]
  if eta < 0.0:
    raise ValueError(f"eta must be >= 0, got {eta}.")
  if clip_denoised is not None and not clip_denoised > 0:
    raise ValueError(f"clip_denoised must be None or > 0, got {clip_denoised}.")
  if y.ndim < 1 or y.shape[0] != shape[0]:
    raise ValueError(
        f"y must have leading (batch) dimension {shape[0]}, got shape {y.shape}."
    )
  prev_timesteps = np.concatenate([timesteps[1:], [-1]]).astype(np.int32)
  init_key, chain_key = jax.random.split(key)
  x = jax.random.normal(init_key, shape)  # [B, ...]
  step_keys = jax.random.split(chain_key, num_steps)
  batch = shape[0]

  def reverse_step(x_t, inputs):
    step, prev_step, step_key = inputs
    t = jnp.full((batch,), step, dtype=jnp.int32)  # [B]
    t_prev = jnp.full((batch,), prev_step, dtype=jnp.int32)  # [B]
    eps = denoise_fn(x_t, y, t)
    noise = jax.random.normal(step_key, shape, x_t.dtype)
    x_prev, _ = ddim_step(
        schedule, x_t, eps, t, t_prev, noise, eta=eta,
        clip_denoised=clip_denoised,
    )
    return x_prev, None

  x0, _ = jax.lax.scan(
      reverse_step,
      x,
      (jnp.asarray(timesteps), jnp.asarray(prev_timesteps), step_keys),
  )
  return x0
