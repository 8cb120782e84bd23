"""Trajectory prompts: where a prompt window sits and how prompts are drawn.

A prompt is ``J`` windows of ``K*`` steps (see :mod:`pdiff.data.windows`),
one per prompt episode, concatenated along the step axis: ``[B, J * K*]``.
Prompt-DT's evaluation prompt is the last ``K*`` steps before the final step
of a trajectory (position ``"last"``); ``"random"`` places the window
uniformly where it fits.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from pdiff.data.windows import choose_trajectories, trajectory_windows
from pdiff.types import Segments, Trajectories

# Ways to place a prompt window inside a trajectory.
PROMPT_POSITIONS = ("last", "random")


def check_position(position: str) -> None:
  """Raises ValueError unless ``position`` is one of ``PROMPT_POSITIONS``."""
  if position not in PROMPT_POSITIONS:
    raise ValueError(f"prompt position is {position!r}, expected one of "
                     f"{PROMPT_POSITIONS}")


def prompt_starts(
    key: jax.Array | None, lengths: jax.Array, prompt_len: int, position: str
) -> jax.Array:
  """First step of a prompt window in trajectories of the given lengths.

  Args:
    key: PRNG key, used by ``"random"`` only.
    lengths: [...] lengths of the chosen trajectories.
    prompt_len: K* (static).
    position: ``"last"``: Prompt-DT's ``max(0, L - K* - 1)``, the last K*
      steps before the final one; ``"random"``: uniform in
      ``[0, max(L - K*, 0)]``, so the window is full whenever ``L >= K*``.

  Returns:
    int32 start steps, same shape as ``lengths``.
  """
  lengths = jnp.asarray(lengths, jnp.int32)
  if position == "last":
    return jnp.maximum(lengths - prompt_len - 1, 0)
  if position == "random":
    if key is None:
      raise ValueError("prompt_starts: position='random' needs a key, got None")
    return jax.random.randint(key, lengths.shape, 0,
                              jnp.maximum(lengths - prompt_len, 0) + 1)
  raise ValueError(f"prompt position is {position!r}, expected one of "
                   f"{PROMPT_POSITIONS}")


def sample_prompt(
    key: jax.Array,
    trajs: Trajectories,
    batch_size: int,
    prompt_len: int,
    num_episodes: int = 1,
    *,
    return_scale: float,
    state_mean: jax.Array | None,
    state_std: jax.Array | None,
    max_ep_len: int,
    position: str = "last",
) -> Segments:
  """Trajectory prompts (Prompt-DT's ``get_prompt`` with a stochastic prompt).

  Each prompt concatenates ``num_episodes`` windows of ``prompt_len`` steps,
  each from a trajectory drawn uniformly (with replacement).

  Args:
    key: PRNG key.
    trajs: padded stack of the task's prompt trajectories [N, T, ...].
    batch_size: B (static).
    prompt_len: K* (static), steps per episode.
    num_episodes: J (static), episodes per prompt.
    return_scale: returns-to-go are divided by it.
    state_mean: [ds] or None.
    state_std: [ds] or None.
    max_ep_len: timesteps are clipped to ``max_ep_len - 1``.
    position: where the window sits in its trajectory, see
      :func:`prompt_starts`; ``"last"`` is what Prompt-DT does.

  Returns:
    Segments with fields [B, J * K*, ...].
  """
  check_position(position)
  key_traj, key_start = jax.random.split(key)
  traj_indices = choose_trajectories(
      key_traj, trajs.lengths, (batch_size * num_episodes,))  # [B * J]
  lengths = jnp.asarray(trajs.lengths)[traj_indices]  # [B * J]
  starts = prompt_starts(key_start, lengths, prompt_len, position)  # [B * J]
  windows = trajectory_windows(
      trajs, traj_indices, starts, prompt_len, return_scale=return_scale,
      state_mean=state_mean, state_std=state_std, max_ep_len=max_ep_len)
  return jax.tree.map(
      lambda x: x.reshape((batch_size, num_episodes * prompt_len) + x.shape[2:]),
      windows)


def prompt_from_trajectories(
    trajs: Trajectories,
    traj_indices: jax.Array,
    starts: jax.Array,
    prompt_len: int,
    *,
    return_scale: float,
    state_mean: jax.Array | None,
    state_std: jax.Array | None,
    max_ep_len: int,
) -> Segments:
  """A deterministic prompt: the windows at given trajectories and starts.

  Args:
    trajs: padded stack [N, T, ...].
    traj_indices: [J] trajectory of each episode of the prompt.
    starts: [J] first step of each episode's window.
    prompt_len: K* (static).
    return_scale: returns-to-go are divided by it.
    state_mean: [ds] or None.
    state_std: [ds] or None.
    max_ep_len: timesteps are clipped to ``max_ep_len - 1``.

  Returns:
    Segments with fields [1, J * K*, ...].
  """
  windows = trajectory_windows(
      trajs, jnp.atleast_1d(traj_indices), jnp.atleast_1d(starts), prompt_len,
      return_scale=return_scale, state_mean=state_mean, state_std=state_std,
      max_ep_len=max_ep_len)
  return jax.tree.map(lambda x: x.reshape((1, -1) + x.shape[2:]), windows)


def last_segment_prompt(
    trajs: Trajectories,
    traj_indices: jax.Array,
    prompt_len: int,
    *,
    return_scale: float,
    state_mean: jax.Array | None,
    state_std: jax.Array | None,
    max_ep_len: int,
) -> Segments:
  """Evaluation prompt: the last window of each given trajectory, as Prompt-DT.

  Args:
    trajs: padded stack [N, T, ...].
    traj_indices: [J] trajectory of each episode of the prompt.
    prompt_len: K* (static).
    return_scale: returns-to-go are divided by it.
    state_mean: [ds] or None.
    state_std: [ds] or None.
    max_ep_len: timesteps are clipped to ``max_ep_len - 1``.

  Returns:
    Segments with fields [1, J * K*, ...].
  """
  traj_indices = jnp.atleast_1d(jnp.asarray(traj_indices, jnp.int32))  # [J]
  lengths = jnp.asarray(trajs.lengths)[traj_indices]
  starts = prompt_starts(None, lengths, prompt_len, "last")
  return prompt_from_trajectories(
      trajs, traj_indices, starts, prompt_len, return_scale=return_scale,
      state_mean=state_mean, state_std=state_std, max_ep_len=max_ep_len)
