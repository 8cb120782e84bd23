"""Decision-Transformer windows of padded trajectories, as Prompt-DT builds them.

Every function is pure in an explicit key and a padded ``Trajectories`` stack;
window lengths are static, everything else may be traced, so they run inside
``jax.jit`` (gathers with index arithmetic, no Python loop over the batch).

A window of K steps starting at step ``s`` of a trajectory of length L holds
the real steps ``s .. min(s + K, L) - 1``, right-aligned, with the rest padded
on the LEFT, as in Prompt-DT's ``get_batch``/``get_prompt``:

=============  ===========================================  =============
field          real step t                                  padding
=============  ===========================================  =============
states         ``(obs[t] - mean) / std``                    0
actions        ``act[t]``                                   -10 (``ACTION_PAD``)
rewards        ``rew[t]``                                   0
returns_to_go  ``sum(rew[t:L]) / return_scale``             0
timesteps      ``min(t, max_ep_len - 1)``                   0
mask           1                                            0
=============  ===========================================  =============

Prompt-DT pads states with 0 *before* normalising (so its padded states are
``-mean / std``); here they are 0 after normalisation. The mask hides them
from attention and from the loss either way.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from pdiff.data.normalization import normalize_states
from pdiff.types import Segments, Trajectories

# Value of padded actions (Prompt-DT pads actions with -10).
ACTION_PAD = -10.0


def returns_to_go(rewards: jax.Array, lengths: jax.Array) -> jax.Array:
  """Undiscounted returns-to-go of each trajectory, 0 on padding.

  Args:
    rewards: [..., N, T] rewards (padding values are ignored).
    lengths: [..., N] valid steps of each trajectory.

  Returns:
    [..., N, T] float32, ``rtg[i, t] = sum(rewards[i, t:lengths[i]])``.
  """
  rewards = jnp.asarray(rewards, jnp.float32)
  valid = jnp.arange(rewards.shape[-1]) < jnp.asarray(lengths)[..., None]
  rewards = jnp.where(valid, rewards, 0.0)
  return jnp.flip(jnp.cumsum(jnp.flip(rewards, -1), axis=-1), -1)


def trajectory_windows(
    trajs: Trajectories,
    traj_indices: jax.Array,
    starts: jax.Array,
    window: int,
    *,
    return_scale: float,
    state_mean: jax.Array | None,
    state_std: jax.Array | None,
    max_ep_len: int,
    rtg: jax.Array | None = None,
) -> Segments:
  """Left-padded windows at given trajectories and start steps.

  A start at or beyond a trajectory's length yields a window of padding only.

  Args:
    trajs: padded stack, observations [N, T, ds].
    traj_indices: [B] int, trajectory of each window.
    starts: [B] int, first step of each window.
    window: K, static window length.
    return_scale: returns-to-go are divided by it.
    state_mean: [ds] or None (no normalisation).
    state_std: [ds] or None.
    max_ep_len: timesteps are clipped to ``max_ep_len - 1``.
    rtg: optional precomputed ``returns_to_go(trajs.rewards, trajs.lengths)``.

  Returns:
    Segments with fields [B, K, ...].
  """
  traj_indices = jnp.asarray(traj_indices, jnp.int32)  # [B]
  starts = jnp.asarray(starts, jnp.int32)  # [B]
  num_steps = trajs.rewards.shape[-1]
  if rtg is None:
    rtg = returns_to_go(trajs.rewards, trajs.lengths)  # [N, T]
  lengths = jnp.asarray(trajs.lengths)[traj_indices]  # [B]
  num_real = jnp.clip(lengths - starts, 0, window)  # [B]
  pad = window - num_real  # [B]
  offsets = jnp.arange(window)  # [K]
  real = offsets[None, :] >= pad[:, None]  # [B, K]
  steps = starts[:, None] + offsets[None, :] - pad[:, None]  # [B, K]
  steps = jnp.clip(steps, 0, num_steps - 1)
  rows = traj_indices[:, None]  # [B, 1]

  states = jnp.asarray(trajs.observations, jnp.float32)[rows, steps]  # [B, K, ds]
  if state_mean is not None:
    states = normalize_states(states, state_mean, state_std)
  states = jnp.where(real[..., None], states, 0.0)
  actions = jnp.asarray(trajs.actions, jnp.float32)[rows, steps]  # [B, K, da]
  actions = jnp.where(real[..., None], actions, ACTION_PAD)
  rewards = jnp.where(real, jnp.asarray(trajs.rewards, jnp.float32)[rows, steps],
                      0.0)  # [B, K]
  window_rtg = jnp.where(real, rtg[rows, steps] / return_scale, 0.0)  # [B, K]
  timesteps = jnp.where(real, jnp.minimum(steps, max_ep_len - 1), 0)  # [B, K]
  return Segments(
      states=states.astype(jnp.float32),
      actions=actions.astype(jnp.float32),
      rewards=rewards.astype(jnp.float32),
      returns_to_go=window_rtg.astype(jnp.float32),
      timesteps=timesteps.astype(jnp.int32),
      mask=real.astype(jnp.float32),
  )


def choose_trajectories(
    key: jax.Array,
    lengths: jax.Array,
    shape: Sequence[int],
    weight_by_length: bool = False,
) -> jax.Array:
  """Draws trajectory indices with replacement among non-empty trajectories.

  Args:
    key: PRNG key.
    lengths: [N] valid steps; trajectories of length 0 are never drawn.
    shape: output shape (static).
    weight_by_length: if true, draw proportionally to length (Prompt-DT's
      ``p_sample`` for training batches); else uniformly.

  Returns:
    int32 indices of the given shape.
  """
  lengths = jnp.asarray(lengths)
  weights = (lengths.astype(jnp.float32) if weight_by_length
             else (lengths > 0).astype(jnp.float32))  # [N]
  return jax.random.choice(key, lengths.shape[0], shape=tuple(shape),
                           p=weights / jnp.sum(weights)).astype(jnp.int32)
