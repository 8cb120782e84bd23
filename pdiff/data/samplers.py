"""Decision-Transformer training batches: segments, few-shot data, task stacks.

Segments are windows (:mod:`pdiff.data.windows`) at random starts of random
trajectories, Prompt-DT's ``get_batch``; the multi-task batch pairs each
task's segments with prompts of the same task (:mod:`pdiff.data.prompts`),
Prompt-DT's ``get_prompt_batch``. Samplers are pure functions of an explicit
key; batch sizes and window lengths are static, so they run inside
``jax.jit``.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from pdiff.data.prompts import check_position, sample_prompt
from pdiff.data.windows import choose_trajectories, trajectory_windows
from pdiff.types import Segments, Trajectories


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
    rtg: jax.Array | None = None,
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
    rtg: optional ``[N, T]`` unscaled returns-to-go to read instead of the
      data's (``sum(rewards[t:])``), e.g. those an evaluation would feed.

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
      state_mean=state_mean, state_std=state_std, max_ep_len=max_ep_len,
      rtg=rtg)


def evaluation_returns_to_go(trajs: Trajectories, target: float) -> jax.Array:
  r"""``[N, T]`` unscaled returns-to-go as an evaluation rollout feeds them.

  A rollout starts from the target and subtracts each reward it receives:
  :math:`\hat R_t = R_{\text{target}} - \sum_{t' < t} r_{t'}` (0 after a
  trajectory's end), whereas the data's are :math:`\sum_{t' \ge t} r_{t'}`.
  Passed as ``rtg`` to :func:`sample_segments`, it puts a dataset's windows
  in the conditioning regime the policy acts in when it is evaluated.

  >>> import numpy as np
  >>> from pdiff.types import Trajectories
  >>> z = np.zeros((1, 3))
  >>> t = Trajectories(observations=z[..., None], actions=z[..., None],
  ...                  rewards=np.array([[1., 2., 3.]]), dones=z > 0,
  ...                  timeouts=z > 0, lengths=np.array([2]))
  >>> np.asarray(evaluation_returns_to_go(t, 10.0)).tolist()
  [[10.0, 9.0, 0.0]]
  """
  rewards = jnp.asarray(trajs.rewards, jnp.float32)  # [N, T]
  before = jnp.cumsum(rewards, axis=-1) - rewards  # sum(r[:t])
  valid = jnp.arange(rewards.shape[-1]) < jnp.asarray(trajs.lengths)[:, None]
  return jnp.where(valid, target - before, 0.0)


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
  check_position(prompt_position)
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
