"""``prompt_bandit``: online prompt selection by a UCB1 bandit (after
Prompt-Tuning Bandits, Rietz et al., NeurIPS 2025); it uses online episodes,
beyond the few-shot information of the paper.

**Arms.** Real ``K*``-step windows of the task's few-shot trajectories. For
trajectory ``n`` of length ``L_n`` and ``j = 0 .. J - 1`` (``J =
windows_per_trajectory``) the window starts at

  s_{n,j} = L_n - K* - 1 - j * stride   (``stride = arm_stride``, K* if unset),

so ``j = 0`` is exactly the window Prompt-DT reads (the last ``K*`` steps
before the final one, start clamped at 0) and ``j >= 1`` are the windows
ending ``j * stride`` steps earlier. Arm ``a = j * N + n``: the first ``N``
arms are the Prompt-DT windows of the ``N`` few-shot trajectories. An arm is
invalid (never played or returned) when its trajectory is empty (padding of
stacked tasks) or, for ``j >= 1``, when ``s_{n,j} < 0``. The default is
``J = 1`` (``N`` arms): a PLM pre-trained on ``"last"`` prompt windows
(``plm.prompt_position``) never trained the prompt embeddings of the
timesteps of earlier windows, so ``make_tune`` refuses ``J > 1`` for it;
earlier windows are arms for a PLM pre-trained on ``"random"`` windows.

**Bandit.** UCB1 over episodes, with returns divided by the family's
``return_scale``. After ``t`` episodes, of which ``n_a`` with arm ``a``
(mean return ``G_a``), a task plays

  a_t = argmax_a  G_a / return_scale + c * sqrt(2 ln t / n_a)

(``c = exploration``; unplayed valid arms have index ``+inf``, so they are
tried first, in index order; ties go to the lowest index). The budget of
``online_episodes`` episodes per task is spent in ``R = online_episodes //
episodes_per_round`` rounds: in a round every test task plays its chosen arm
for ``episodes_per_round`` episodes, and all ``M`` tasks' rounds are ONE
batched ``context.rollout`` call. The whole method therefore costs ``R``
rollout calls, independent of the number of tasks and arms: pdiff rolls all
tasks x episodes out in one jitted program, so a round costs one episode's
wall time. At most ``R * episodes_per_round <= online_episodes`` episodes
are played per task.

**Result.** The played valid arm with the best mean return (ties: lowest
index). Metric ``chosen_mean_return`` ``[M, R]``: after each round, the mean
return of the arm that would be returned then. The rollout key of round
``r`` is ``fold_in(keys[0], r)``.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import ml_collections

from pdiff.data.prompts import prompt_from_trajectories
from pdiff.models.policy import TunedPolicy
from pdiff.tuning import registry
from pdiff.types import Segments, Trajectories

FIELDS = ("name", "online_episodes", "episodes_per_round",
          "windows_per_trajectory", "arm_stride", "exploration")


def check_int(config, field: str, low: int, *, optional: bool = False
              ) -> None:
  """Raises ``ValueError`` unless ``config[field]`` is an int ``>= low`` (or
  None when ``optional``)."""
  value = config[field]
  if optional and value is None:
    return
  if isinstance(value, bool) or not isinstance(value, int) or value < low:
    raise ValueError(f"{config.name} config: {field} must be an int >= {low}"
                     f"{' or None' if optional else ''}, got {value!r}.")


def check_config(config: ml_collections.ConfigDict) -> None:
  """Raises ``ValueError`` naming the first bad field of ``config``."""
  keys = set(config.keys())
  if keys - set(FIELDS) or set(FIELDS) - keys:
    raise ValueError(
        f"prompt_bandit config: unknown fields {sorted(keys - set(FIELDS))}, "
        f"missing fields {sorted(set(FIELDS) - keys)}.")
  check_int(config, "online_episodes", 1)
  check_int(config, "episodes_per_round", 1)
  if config.episodes_per_round > config.online_episodes:
    raise ValueError(
        f"prompt_bandit config: episodes_per_round "
        f"({config.episodes_per_round}) exceeds online_episodes "
        f"({config.online_episodes}).")
  check_int(config, "windows_per_trajectory", 1)
  check_int(config, "arm_stride", 1, optional=True)
  value = config.exploration
  if (isinstance(value, bool) or not isinstance(value, (int, float))
      or not math.isfinite(value) or value < 0):
    raise ValueError("prompt_bandit config: exploration must be a finite "
                     f"number >= 0, got {value!r}.")


def window_arms(plm, trajs: Trajectories, windows_per_trajectory: int = 1,
                stride: int | None = None) -> tuple[Segments, jax.Array]:
  """The arms of one task: real ``K*``-windows of its trajectories.

  Args:
    plm: the PLM (prompt length, normalisation).
    trajs: the task's trajectories ``[N, T, ...]``.
    windows_per_trajectory: J (static), windows per trajectory.
    stride: steps between consecutive windows of a trajectory (static);
      ``K*`` when None.

  Returns:
    ``(prompts [J * N, K*, ...], valid [J * N] bool)``; arm ``j * N + n`` is
    window ``j`` of trajectory ``n``, starting at ``L_n - K* - 1 - j *
    stride`` (clamped at 0 for ``j = 0``, Prompt-DT's window).
  """
  k = plm.prompt_len
  stride = k if stride is None else stride
  lengths = jnp.asarray(trajs.lengths, jnp.int32)  # [N]
  n = lengths.shape[0]
  j = jnp.arange(windows_per_trajectory)  # [J]
  starts = lengths[None, :] - k - 1 - j[:, None] * stride  # [J, N]
  valid = (lengths[None, :] > 0) & ((j[:, None] == 0) | (starts >= 0))
  traj = jnp.broadcast_to(jnp.arange(n)[None, :], starts.shape)
  prompts = prompt_from_trajectories(
      trajs, traj.reshape(-1), jnp.maximum(starts, 0).reshape(-1), k,
      return_scale=plm.return_scale, state_mean=plm.state_mean,
      state_std=plm.state_std, max_ep_len=plm.max_ep_len)  # [1, J*N*K*, ...]
  prompts = jax.tree.map(
      lambda x: x.reshape((windows_per_trajectory * n, k) + x.shape[2:]),
      prompts)
  return prompts, valid.reshape(-1)


@functools.partial(jax.jit, static_argnames=("windows_per_trajectory",
                                             "stride"))
def task_arms(plm, few_shot: Trajectories, windows_per_trajectory: int = 1,
              stride: int | None = None) -> tuple[Segments, jax.Array]:
  """:func:`window_arms` of every task, jitted: ``few_shot`` ``[M, N, T,
  ...]`` -> ``(prompts [M, A, K*, ...], valid [M, A])``."""
  return jax.vmap(lambda f: window_arms(plm, f, windows_per_trajectory,
                                        stride))(few_shot)


def take_arm(arms: Segments, choice: jax.Array) -> Segments:
  """Each task's chosen arm: ``arms`` ``[M, A, K*, ...]``, ``choice`` ``[M]``
  -> ``[M, K*, ...]``."""
  return jax.tree.map(lambda x: jax.vmap(lambda a, c: a[c])(x, choice), arms)


def best_arm(counts: jax.Array, sums: jax.Array, valid: jax.Array
             ) -> tuple[jax.Array, jax.Array]:
  """The played valid arm of best mean return (ties: lowest index).

  Args:
    counts: ``[M, A]`` episodes played per arm.
    sums: ``[M, A]`` summed returns per arm.
    valid: ``[M, A]``.

  Returns:
    ``(arm [M] int32, its mean return [M])``.
  """
  played = valid & (counts > 0)
  means = jnp.where(played, sums / jnp.maximum(counts, 1.0), -jnp.inf)
  arm = jnp.argmax(means, axis=-1)
  return arm, jnp.take_along_axis(means, arm[:, None], axis=-1)[:, 0]


def ucb_choice(counts: jax.Array, sums: jax.Array, valid: jax.Array,
               return_scale: float, exploration: float) -> jax.Array:
  """UCB1's arm per task: ``argmax G_a / scale + c sqrt(2 ln t / n_a)``.

  Args:
    counts: ``[M, A]`` episodes played per arm (``t`` is their sum).
    sums: ``[M, A]`` summed returns per arm.
    valid: ``[M, A]``.
    return_scale: returns are divided by it.
    exploration: ``c``.

  Returns:
    ``[M]`` int32 arms; unplayed valid arms first (lowest index).
  """
  t = jnp.maximum(jnp.sum(counts, axis=-1, keepdims=True), 1.0)  # [M, 1]
  n = jnp.maximum(counts, 1.0)
  index = sums / n / return_scale + exploration * jnp.sqrt(2 * jnp.log(t) / n)
  index = jnp.where(counts > 0, index, jnp.inf)
  index = jnp.where(valid, index, -jnp.inf)
  return jnp.argmax(index, axis=-1)


def make_tune(context: registry.TuningContext, config) -> registry.TuneFn:
  """``tune(None, few_shot [M, N, T, ...], keys [M])``: ``R`` rounds, one
  batched ``context.rollout`` call each."""
  check_config(config)
  if context.rollout is None:
    raise ValueError("prompt_bandit needs context.rollout (online episodes).")
  plm, rollout = context.plm, context.rollout
  scale = float(context.family.return_scale if context.family is not None
                else plm.return_scale)
  per_round = int(config.episodes_per_round)
  rounds = int(config.online_episodes) // per_round
  exploration = float(config.exploration)
  windows = int(config.windows_per_trajectory)
  stride = config.arm_stride
  if windows > 1 and plm.prompt_position == "last":
    raise ValueError(
        f"prompt_bandit config: windows_per_trajectory is {windows}, but the "
        "PLM was pre-trained on prompt_position='last' windows only; windows "
        "ending earlier sit at prompt timesteps it never read (use 1).")

  @jax.jit
  def choose(arms, counts, sums, valid):
    choice = ucb_choice(counts, sums, valid, scale, exploration)
    return choice, take_arm(arms, choice)

  @jax.jit
  def update(counts, sums, valid, choice, returns):
    played = jax.nn.one_hot(choice, counts.shape[-1])  # [M, A]
    counts = counts + played * returns.shape[-1]
    sums = sums + played * jnp.sum(returns, axis=-1, keepdims=True)
    _, mean = best_arm(counts, sums, valid)
    return counts, sums, mean

  def tune(prepared, few_shot, keys):
    del prepared
    arms, valid = task_arms(plm, jax.tree.map(jnp.asarray, few_shot),
                            windows, stride)  # [M, A, K*, ...], [M, A]
    counts = jnp.zeros(valid.shape, jnp.float32)
    sums = jnp.zeros(valid.shape, jnp.float32)
    chosen = []
    for r in range(rounds):
      choice, prompts = choose(arms, counts, sums, valid)
      returns = jnp.asarray(rollout(plm.params, prompts,
                                    jax.random.fold_in(keys[0], r), per_round,
                                    False), jnp.float32)  # [M, per_round]
      counts, sums, mean = update(counts, sums, valid, choice, returns)
      chosen.append(mean)
    arm, _ = best_arm(counts, sums, valid)
    return (TunedPolicy(params=plm.params, prompt=take_arm(arms, arm)),
            {"chosen_mean_return": jnp.stack(chosen, axis=-1)})

  return tune


METHOD = registry.register(registry.Method(
    name="prompt_bandit", check_config=check_config, make_tune=make_tune,
    trainable_parameters=lambda context, config: 0,
    online_episodes=lambda config: int(config.online_episodes)))
