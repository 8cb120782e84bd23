"""Decision-Transformer segments and trajectory prompts, as Prompt-DT builds them.

Every sampler is a pure function of an explicit key and a padded
``Trajectories`` stack; batch size and window lengths are static, everything
else may be traced, so the samplers run inside ``jax.jit`` (gathers with index
arithmetic, no Python loop over the batch).

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
import numpy as np

from pdiff.data.normalization import normalize_states
from pdiff.data.types import Segments, Trajectories

# Value of padded actions (Prompt-DT pads actions with -10).
ACTION_PAD = -10.0
# Ways to place a prompt window inside a trajectory.
PROMPT_POSITIONS = ("last", "random")


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


def sample_segments(
    key: jax.Array,
    trajs: Trajectories,
    batch_size: int,
    seq_len: int,
    *,
    return_scale: float,
    state_mean: jax.Array | None,
    state_std: jax.Array | None,
    max_ep_len: int,
    weight_by_length: bool = False,
) -> Segments:
  """Decision-Transformer training windows (Prompt-DT's ``get_batch``).

  Each row picks a trajectory (uniformly, or by length), a start step
  uniformly in ``[0, length - 1]`` and takes up to ``seq_len`` steps from it;
  windows near the end of a trajectory are left-padded.

  Args:
    key: PRNG key.
    trajs: padded stack of one task, observations [N, T, ds].
    batch_size: B (static).
    seq_len: K (static).
    return_scale: returns-to-go are divided by it.
    state_mean: [ds] or None (no normalisation).
    state_std: [ds] or None.
    max_ep_len: timesteps are clipped to ``max_ep_len - 1``.
    weight_by_length: draw trajectories proportionally to their length, as
      Prompt-DT does; the default draws them uniformly.

  Returns:
    Segments with fields [B, K, ...].
  """
  key_traj, key_start = jax.random.split(key)
  traj_indices = choose_trajectories(
      key_traj, trajs.lengths, (batch_size,), weight_by_length)  # [B]
  lengths = jnp.asarray(trajs.lengths)[traj_indices]  # [B]
  starts = jax.random.randint(
      key_start, (batch_size,), 0, jnp.maximum(lengths, 1))  # [B]
  return trajectory_windows(
      trajs, traj_indices, starts, seq_len, return_scale=return_scale,
      state_mean=state_mean, state_std=state_std, max_ep_len=max_ep_len)


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
  _check_position(position)
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


def few_shot_split(trajs: Trajectories, num_shots: int) -> Trajectories:
  """The first ``num_shots`` trajectories (the few-shot data of a task).

  Args:
    trajs: padded stack [N, T, ...].
    num_shots: how many trajectories to keep.

  Returns:
    Trajectories [num_shots, T, ...].

  Raises:
    ValueError: if ``num_shots < 1`` or more than N.
  """
  available = trajs.lengths.shape[0]
  if not 1 <= num_shots <= available:
    raise ValueError(f"few_shot_split: num_shots is {num_shots}, expected "
                     f"1 <= num_shots <= {available} (trajectories available)")
  return jax.tree.map(lambda x: x[:num_shots], trajs)


def stack_tasks(trajs_list: Sequence[Trajectories]) -> Trajectories:
  """Stacks tasks into one [M, N, T, ...] batch, padding N and T.

  Missing trajectories get length 0, which the samplers never draw, and
  missing steps are zeros.

  Args:
    trajs_list: M stacks of shapes [N_m, T_m, ...] with equal ds and da.

  Returns:
    Trajectories [M, max N_m, max T_m, ...] as numpy arrays.
  """
  if not trajs_list:
    raise ValueError("stack_tasks: got no task, expected at least one")
  num = max(int(t.lengths.shape[0]) for t in trajs_list)
  steps = max(int(t.rewards.shape[1]) for t in trajs_list)

  def pad(x: jax.Array) -> np.ndarray:
    x = np.asarray(x)
    widths = [(0, num - x.shape[0])]
    if x.ndim >= 2:
      widths.append((0, steps - x.shape[1]))
    widths += [(0, 0)] * (x.ndim - len(widths))
    return np.pad(x, widths)

  padded = [jax.tree.map(pad, t) for t in trajs_list]
  return jax.tree.map(lambda *xs: np.stack(xs), *padded)


def sample_multitask_segments(
    key: jax.Array,
    trajs_by_task: Trajectories,
    batch_per_task: int,
    seq_len: int,
    prompt_len: int,
    num_prompt_episodes: int = 1,
    *,
    return_scale: float,
    state_mean: jax.Array | None,
    state_std: jax.Array | None,
    max_ep_len: int,
    prompt_trajs_by_task: Trajectories | None = None,
    prompt_position: str = "last",
    weight_by_length: bool = False,
) -> tuple[Segments, Segments]:
  """The multi-task Prompt-DT batch (``get_prompt_batch``), vmapped over tasks.

  Rows ``m * B .. (m + 1) * B - 1`` come from task m; each row's prompt is
  drawn from that task's prompt trajectories.

  Args:
    key: PRNG key.
    trajs_by_task: Trajectories [M, N, T, ...] (see :func:`stack_tasks`).
    batch_per_task: B (static).
    seq_len: K (static).
    prompt_len: K* (static).
    num_prompt_episodes: J (static).
    return_scale: returns-to-go are divided by it.
    state_mean: [ds] shared or [M, ds] per task (Prompt-DT uses per-task
      statistics), or None.
    state_std: same shape as ``state_mean``.
    max_ep_len: timesteps are clipped to ``max_ep_len - 1``.
    prompt_trajs_by_task: [M, N', T', ...] separate prompt trajectories
      (Prompt-DT's ``-prompt-`` files); defaults to ``trajs_by_task``.
    prompt_position: see :func:`prompt_starts`.
    weight_by_length: draw training trajectories proportionally to length.

  Returns:
    (segments [M * B, K, ...], prompts [M * B, J * K*, ...]).
  """
  _check_position(prompt_position)
  if prompt_trajs_by_task is None:
    prompt_trajs_by_task = trajs_by_task
  num_tasks = trajs_by_task.lengths.shape[0]
  stats_axis = None
  if state_mean is not None:
    stats_axis = 0 if jnp.ndim(state_mean) == 2 else None

  def one_task(key, trajs, prompt_trajs, mean, std):
    key_segments, key_prompt = jax.random.split(key)
    segments = sample_segments(
        key_segments, trajs, batch_per_task, seq_len, return_scale=return_scale,
        state_mean=mean, state_std=std, max_ep_len=max_ep_len,
        weight_by_length=weight_by_length)
    prompts = sample_prompt(
        key_prompt, prompt_trajs, batch_per_task, prompt_len,
        num_prompt_episodes, return_scale=return_scale, state_mean=mean,
        state_std=std, max_ep_len=max_ep_len, position=prompt_position)
    return segments, prompts

  keys = jax.random.split(key, num_tasks)
  segments, prompts = jax.vmap(
      one_task, in_axes=(0, 0, 0, stats_axis, stats_axis))(
          keys, trajs_by_task, prompt_trajs_by_task, state_mean, state_std)
  merge = lambda x: x.reshape((num_tasks * batch_per_task,) + x.shape[2:])
  return jax.tree.map(merge, segments), jax.tree.map(merge, prompts)


def _check_position(position: str) -> None:
  if position not in PROMPT_POSITIONS:
    raise ValueError(f"prompt position is {position!r}, expected one of "
                     f"{PROMPT_POSITIONS}")
