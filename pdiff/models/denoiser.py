"""The noise-prediction network of Prompt Diffuser.

``eps_theta(x_n, y, n)`` predicts the noise in a noised trajectory prompt
``x_n`` ``[B, K*, D]`` (``D = ds + da + 1``: state, action, reward per step)
given its conditions ``y`` ``[B, K*, C]`` (``C = 2``: scaled returns-to-go
and timesteps) and the diffusion step ``n`` ``[B]`` (code indices
``0..N-1``, see ``pdiff.diffusion.schedules``). As in Diffusion-QL, it is an
MLP over the flattened prompt concatenated with two embeddings:

  t_emb = Dense(T) . mish . Dense(2T) . sinusoidal_embedding(n, T)   # [B, T]
  y_emb = Dense(E) . mish . Dense(2E) . flatten(y)                  # [B, E]
  h     = [flatten(x_n), y_emb, t_emb]                              # [B, K*D + E + T]
  eps   = reshape(Dense(K*D) . (mish . Dense(H))^L (h))             # [B, K*, D]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


def sinusoidal_embedding(n: jax.Array, dim: int) -> jax.Array:
  """Transformer-style sinusoidal embedding of (diffusion) step indices.

  ``emb[:, i] = sin(n w_i)`` and ``emb[:, dim/2 + i] = cos(n w_i)`` with
  ``w_i = 10000^(-i / (dim/2 - 1))``, ``i = 0..dim/2 - 1`` (as in
  Diffuser and Diffusion-QL).

  Args:
    n: step indices, ``[B]``, int or float.
    dim: embedding size, even and ``>= 4``.

  Returns:
    float32 ``[B, dim]``.

  Raises:
    ValueError: if ``dim`` is odd or smaller than 4.
  """
  if dim < 4 or dim % 2:
    raise ValueError(f"sinusoidal embedding dim must be even and >= 4, got {dim}.")
  half = dim // 2
  freqs = jnp.exp(
      -math.log(10000.0) * jnp.arange(half, dtype=jnp.float32) / (half - 1)
  )  # [dim / 2]
  angles = jnp.asarray(n, jnp.float32)[:, None] * freqs[None, :]  # [B, dim / 2]
  return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)


class PromptDenoiser(nn.Module):
  """MLP noise predictor ``eps_theta(x_n, y, n)`` for trajectory prompts.

  Attributes:
    horizon: prompt length ``K*`` (steps per prompt).
    transition_dim: features per prompt step ``D = ds + da + 1``.
    cond_dim: condition features per step ``C`` (returns-to-go, timestep).
    hidden_sizes: widths of the hidden layers of the main MLP.
    time_embed_dim: size ``T`` of the step embedding (even, >= 4).
    cond_embed_dim: size ``E`` of the condition embedding.
  """

  horizon: int
  transition_dim: int
  cond_dim: int = 2
  hidden_sizes: Sequence[int] = (256, 256, 256)
  time_embed_dim: int = 16
  cond_embed_dim: int = 32

  def __post_init__(self):
    for name in ("horizon", "transition_dim", "cond_dim", "cond_embed_dim"):
      value = getattr(self, name)
      if not isinstance(value, int) or value < 1:
        raise ValueError(f"PromptDenoiser.{name} must be an int >= 1, got {value!r}.")
    if self.time_embed_dim < 4 or self.time_embed_dim % 2:
      raise ValueError(
          "PromptDenoiser.time_embed_dim must be even and >= 4, got "
          f"{self.time_embed_dim}."
      )
    if not self.hidden_sizes or any(h < 1 for h in self.hidden_sizes):
      raise ValueError(
          "PromptDenoiser.hidden_sizes must be a non-empty sequence of "
          f"positive ints, got {self.hidden_sizes!r}."
      )
    super().__post_init__()

  @nn.compact
  def __call__(self, x_n: jax.Array, y: jax.Array, n: jax.Array) -> jax.Array:
    """Predicts the noise in ``x_n``.

    Args:
      x_n: noised prompts, ``[B, K*, D]``.
      y: conditions, ``[B, K*, C]`` (int timesteps are cast to float).
      n: diffusion step indices, ``[B]`` (or a scalar, shared by the batch).

    Returns:
      The predicted noise, ``[B, K*, D]``.

    Raises:
      ValueError: if a shape does not match the module's fields.
    """
    batch = x_n.shape[0]
    if x_n.shape[1:] != (self.horizon, self.transition_dim):
      raise ValueError(
          f"x_n must have shape [B, {self.horizon}, {self.transition_dim}] "
          f"(horizon, transition_dim), got {x_n.shape}."
      )
    if y.shape != (batch, self.horizon, self.cond_dim):
      raise ValueError(
          f"y must have shape [{batch}, {self.horizon}, {self.cond_dim}] "
          f"(batch, horizon, cond_dim), got {y.shape}."
      )
    n = jnp.broadcast_to(jnp.asarray(n), (batch,))  # [B]

    t_emb = sinusoidal_embedding(n, self.time_embed_dim)  # [B, T]
    t_emb = nn.Dense(2 * self.time_embed_dim, name="time_hidden")(t_emb)
    t_emb = nn.Dense(self.time_embed_dim, name="time_out")(jax.nn.mish(t_emb))

    y_flat = y.reshape(batch, -1).astype(jnp.float32)  # [B, K* C]
    y_emb = nn.Dense(2 * self.cond_embed_dim, name="cond_hidden")(y_flat)
    y_emb = nn.Dense(self.cond_embed_dim, name="cond_out")(jax.nn.mish(y_emb))

    h = jnp.concatenate(
        [x_n.reshape(batch, -1), y_emb, t_emb], axis=-1
    )  # [B, K* D + E + T]
    for i, width in enumerate(self.hidden_sizes):
      h = jax.nn.mish(nn.Dense(width, name=f"hidden_{i}")(h))
    eps = nn.Dense(self.horizon * self.transition_dim, name="out")(h)
    return eps.reshape(x_n.shape)  # [B, K*, D]
