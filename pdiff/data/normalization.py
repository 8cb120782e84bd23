"""State normalisation statistics over the valid steps of padded trajectories.

Prompt-DT normalises states per task with the mean and standard deviation of
all states in that task's dataset, with ``1e-6`` added to the standard
deviation. Here the statistics are computed on a padded ``Trajectories``
stack, so padding steps (index ``>= lengths[i]``) are excluded explicitly.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from pdiff.types import Trajectories

# Added to the standard deviation, as in Prompt-DT (`np.std(states) + 1e-6`).
STD_EPS = 1e-6


def valid_step_mask(lengths: jax.Array, num_steps: int) -> jax.Array:
  """Boolean mask of the real (non-padding) steps.

  Args:
    lengths: [...] number of valid steps of each trajectory.
    num_steps: T, the padded length.

  Returns:
    [..., T] bool, true where the step index is below the length.
  """
  return jnp.arange(num_steps) < jnp.asarray(lengths)[..., None]


def state_statistics(
    trajs: Trajectories, eps: float = STD_EPS
) -> tuple[jax.Array, jax.Array]:
  """Mean and standard deviation of the states on valid steps only.

  Matches Prompt-DT's ``np.mean(states, 0), np.std(states, 0) + eps`` over
  the concatenation of all trajectories (population standard deviation),
  ignoring the padding.

  Args:
    trajs: a padded stack with observations [N, T, ds] and lengths [N].
    eps: added to the standard deviation so that constant dimensions do not
      divide by zero.

  Returns:
    (mean [ds], std [ds]) as float32.

  Raises:
    ValueError: if there is no valid step at all (checked when the lengths are
      concrete).
  """
  obs = jnp.asarray(trajs.observations, jnp.float32)  # [N, T, ds]
  valid = valid_step_mask(trajs.lengths, obs.shape[1])  # [N, T]
  count = jnp.sum(valid)
  if not isinstance(count, jax.core.Tracer) and int(count) == 0:
    raise ValueError("state_statistics: trajectories have no valid step "
                     "(all lengths are 0); expected at least one")
  weights = valid[..., None].astype(jnp.float32)  # [N, T, 1]
  mean = jnp.sum(obs * weights, axis=(0, 1)) / count  # [ds]
  var = jnp.sum(jnp.square(obs - mean) * weights, axis=(0, 1)) / count  # [ds]
  return mean, jnp.sqrt(var) + eps


def normalize_states(
    states: jax.Array, mean: jax.Array, std: jax.Array
) -> jax.Array:
  """Standardises states: ``(states - mean) / std``.

  Args:
    states: [..., ds] states.
    mean: [ds] mean (broadcast against the leading dimensions).
    std: [ds] standard deviation, already strictly positive.

  Returns:
    [..., ds] normalised states.
  """
  return (states - mean) / std


def denormalize_states(
    states: jax.Array, mean: jax.Array, std: jax.Array
) -> jax.Array:
  """Inverse of :func:`normalize_states`: ``states * std + mean``.

  Args:
    states: [..., ds] normalised states.
    mean: [ds] mean.
    std: [ds] standard deviation.

  Returns:
    [..., ds] states in the original units.
  """
  return states * std + mean
