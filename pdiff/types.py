"""Containers shared by every layer: envs, data, models, tuning, evaluation.

Shapes use: N trajectories, T steps, B batch, K context steps, ds state dim,
da action dim.
"""

from __future__ import annotations

from typing import NamedTuple

import jax


class Trajectories(NamedTuple):
  """A padded stack of trajectories of one task.

  Steps at index ``>= lengths[i]`` are padding (zeros).
  """

  observations: jax.Array  # [N, T, ds] float32
  actions: jax.Array  # [N, T, da] float32
  rewards: jax.Array  # [N, T] float32
  dones: jax.Array  # [N, T] bool, true on a terminal (not time-limit) step
  timeouts: jax.Array  # [N, T] bool, true on the last step of a truncated episode
  lengths: jax.Array  # [N] int32, number of valid steps


class Segments(NamedTuple):
  """Decision-Transformer input windows (or trajectory prompts).

  Padding is on the left, as in Prompt-DT: ``mask`` is 0 on padded steps.
  ``returns_to_go`` is already divided by the family's return scale and
  ``states`` already normalised when the sampler is given statistics.
  """

  states: jax.Array  # [B, K, ds] float32
  actions: jax.Array  # [B, K, da] float32
  rewards: jax.Array  # [B, K] float32
  returns_to_go: jax.Array  # [B, K] float32
  timesteps: jax.Array  # [B, K] int32
  mask: jax.Array  # [B, K] float32, 1 on real steps
