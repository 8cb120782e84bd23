"""Task pytrees, environment state and the shared task-family interface.

A task family is a set of related tasks (e.g. one HalfCheetah target velocity
per task) that share dynamics and differ only in a small vector of task
parameters. A ``Task`` is a pytree holding that vector, so ``reset`` and
``step`` vectorise over tasks and episodes alike::

  family = pdiff.envs.make("cheetah_vel")
  tasks = family.tasks(family.train_tasks)                # params [N, 1]
  keys = jax.random.split(jax.random.key(0), len(family.train_tasks))
  state = jax.vmap(family.reset)(keys, tasks)             # obs [N, ds]
  state = jax.vmap(family.step)(state, actions)           # actions [N, da]

Episodes end after ``episode_length`` steps (``done = truncation = 1``) or
earlier on termination (``done = 1``, ``truncation = 0``). A done state is
absorbing: stepping it returns it unchanged, with reward 0, so a fixed-length
``lax.scan`` over a batch of episodes needs no branching; callers that store
transitions mask the steps after ``done``.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, ClassVar

import brax.envs
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np


@flax.struct.dataclass
class Task:
  """One task (or a stack of tasks along a leading axis) of a family."""

  index: jax.Array  # [] int32, position in the family's task list
  params: jax.Array  # [P] float32, the task parameter(s)


@flax.struct.dataclass
class EnvState:
  """The state of one episode of one task."""

  obs: jax.Array  # [ds] float32, without the task parameters
  reward: jax.Array  # [] float32, reward of the step that led here
  done: jax.Array  # [] float32, 1.0 once the episode has ended
  truncation: jax.Array  # [] float32, 1.0 if it ended by the time limit
  step: jax.Array  # [] int32, steps taken in this episode
  task: Task
  pipeline_state: Any  # the physics state (Brax's), or None
  metrics: dict[str, jax.Array]  # per-step reward terms, each []


def _is_concrete(x: Any) -> bool:
  return not isinstance(x, jax.core.Tracer)


@dataclasses.dataclass(frozen=True, kw_only=True)
class TaskFamily(abc.ABC):
  """A family of tasks sharing dynamics, with pure ``reset``/``step``.

  Instances are immutable and hashable, so they can be static arguments of
  ``jax.jit``. Subclasses implement the physics (``reset_physics``,
  ``transition``); this class adds tasks, the time limit and checks.

  Attributes:
    name: the family's name, e.g. ``"cheetah_vel"``.
    backend: the physics backend (a Brax pipeline name, or ``"jax"``).
    episode_length: steps per episode before truncation.
    return_target: return-to-go that prompts a Decision Transformer.
    return_scale: divisor of returns-to-go fed to a Decision Transformer.
      The Brax families' values follow pdiff.data.conditioning's rule on
      their shipped expert data (tests check that they do).
    task_parameter_name: what the task parameter is, e.g. ``"velocity"``.
    task_values: the task parameters, one tuple of ``P`` floats per task.
    train_tasks: indices of the training tasks.
    test_tasks: indices of the held-out test tasks.
  """

  name: str
  backend: str
  episode_length: int
  return_target: float
  return_scale: float
  task_parameter_name: str
  task_values: tuple[tuple[float, ...], ...]
  train_tasks: tuple[int, ...]
  test_tasks: tuple[int, ...]

  # Names of the per-step reward terms in ``EnvState.metrics``.
  metric_names: ClassVar[tuple[str, ...]] = ()
  # The largest episode return the reward allows (None: unbounded); caps the
  # return target of pdiff.data.conditioning's rule.
  return_supremum: ClassVar[float | None] = None
  # The family whose behaviour policies and dataset returns
  # (pdiff/assets/behavior/{family}/) this family's data come from, for a
  # family that only re-splits another's tasks; None: its own (``name``).
  behavior_source: ClassVar[str | None] = None
  # Whether rollouts may run from several threads at once (False: the
  # environments keep state on the host, and rollouts run one at a time).
  thread_safe_rollouts: ClassVar[bool] = True

  def __post_init__(self):
    if self.episode_length <= 0:
      raise ValueError(
          f"{self.name}: episode_length must be positive, got "
          f"{self.episode_length}."
      )
    if self.return_scale <= 0:
      raise ValueError(
          f"{self.name}: return_scale must be positive, got "
          f"{self.return_scale}."
      )
    if not self.task_values or len({len(v) for v in self.task_values}) != 1:
      raise ValueError(
          f"{self.name}: task_values must be a non-empty tuple of equally "
          f"long parameter tuples, got {self.task_values!r}."
      )
    for split in ("train_tasks", "test_tasks"):
      for index in getattr(self, split):
        self._check_index(index, what=split)
    params = np.asarray(self.task_values, np.float32)  # [num_tasks, P]
    object.__setattr__(self, "_task_params", jnp.asarray(params))

  @property
  def behavior_family(self) -> str:
    """The family whose shipped behaviour policies collect this family's
    data (``pdiff/assets/behavior/{behavior_family}/``): ``behavior_source``,
    or the family's own name."""
    return self.behavior_source or self.name

  # ---------------------------------------------------------------- sizes --

  @property
  def num_tasks(self) -> int:
    """Number of tasks in the family."""
    return len(self.task_values)

  @property
  def split_tasks(self) -> tuple[int, ...]:
    """The training and test tasks, sorted: those whose datasets the
    pipeline collects and reads (every task, unless a split leaves some
    out, as ``ant_dir_10`` does)."""
    return tuple(sorted({int(i) for i in self.train_tasks}
                        | {int(i) for i in self.test_tasks}))

  @property
  def task_params(self) -> jax.Array:
    """All task parameters, ``[num_tasks, P]`` float32."""
    return self._task_params

  @property
  @abc.abstractmethod
  def observation_size(self) -> int:
    """Size ``ds`` of ``EnvState.obs`` (task parameters not included)."""

  @property
  @abc.abstractmethod
  def action_size(self) -> int:
    """Size ``da`` of an action."""

  # ---------------------------------------------------------------- tasks --

  def _check_index(self, index: Any, what: str = "task index") -> None:
    if not _is_concrete(index):
      return
    values = np.asarray(index)
    if not np.issubdtype(values.dtype, np.integer):
      raise ValueError(
          f"{self.name}: {what} must be integers, got dtype {values.dtype}."
      )
    bad = values[(values < 0) | (values >= self.num_tasks)]
    if bad.size:
      raise ValueError(
          f"{self.name}: {what} {bad.tolist()} out of range; valid task "
          f"indices are 0..{self.num_tasks - 1}."
      )

  def task(self, index: int | jax.Array) -> Task:
    """Returns task ``index`` (checked when ``index`` is concrete).

    A traced ``index`` is not checked; out-of-range values are clamped by
    the gather, as everywhere in JAX.
    """
    self._check_index(index)
    if _is_concrete(index) and np.ndim(index) != 0:
      raise ValueError(
          f"{self.name}: task() takes a scalar index, got shape "
          f"{np.shape(index)}; use tasks() for several."
      )
    index = jnp.asarray(index, jnp.int32)
    return Task(index=index, params=self.task_params[index])

  def tasks(self, indices: Any) -> Task:
    """Returns the tasks ``indices`` stacked along axis 0 (for ``vmap``)."""
    if _is_concrete(indices):
      indices = np.asarray(indices)
      if indices.ndim != 1:
        raise ValueError(
            f"{self.name}: tasks() takes a 1-D sequence of indices, got "
            f"shape {indices.shape}."
        )
    self._check_index(indices, what="task indices")
    indices = jnp.asarray(indices, jnp.int32)  # [N]
    return Task(index=indices, params=self.task_params[indices])

  # -------------------------------------------------------------- physics --

  @abc.abstractmethod
  def reset_physics(self, key: jax.Array) -> tuple[Any, jax.Array]:
    """Samples an initial physics state.

    Args:
      key: a ``jax.random.key``.

    Returns:
      ``(pipeline_state, obs)``, ``obs`` of shape ``[ds]``.
    """

  @abc.abstractmethod
  def transition(
      self,
      pipeline_state: Any,
      obs: jax.Array,
      action: jax.Array,
      params: jax.Array,
  ) -> tuple[Any, jax.Array, jax.Array, jax.Array, dict[str, jax.Array]]:
    """One step of dynamics and reward, without time limit.

    Args:
      pipeline_state: the physics state.
      obs: ``[ds]`` current observation (the state of a pure-JAX family).
      action: ``[da]`` action.
      params: ``[P]`` task parameters.

    Returns:
      ``(pipeline_state, obs [ds], reward [], terminated [] bool, metrics)``.
    """

  # ------------------------------------------------------------- episodes --

  def check_action(self, action: jax.Array) -> jax.Array:
    """Returns ``action`` as float32; ValueError if its shape is not [da]."""
    if jnp.shape(action) != (self.action_size,):
      raise ValueError(
          f"{self.name}: action must have shape ({self.action_size},), got "
          f"{jnp.shape(action)}; vmap step over batches."
      )
    return jnp.asarray(action, jnp.float32)

  def reset(self, key: jax.Array, task: Task) -> EnvState:
    """Starts an episode of ``task``.

    Args:
      key: a ``jax.random.key`` for the initial state noise.
      task: a single (unbatched) ``Task``.

    Returns:
      The initial ``EnvState`` (reward 0, not done, step 0).
    """
    pipeline_state, obs = self.reset_physics(key)
    zero = jnp.zeros((), jnp.float32)
    return EnvState(
        obs=obs,
        reward=zero,
        done=zero,
        truncation=zero,
        step=jnp.zeros((), jnp.int32),
        task=task,
        pipeline_state=pipeline_state,
        metrics={name: zero for name in self.metric_names},
    )

  def step(self, state: EnvState, action: jax.Array) -> EnvState:
    """Advances an episode by one step.

    Args:
      state: the current (unbatched) ``EnvState``.
      action: ``[da]`` action.

    Returns:
      The next state. ``done`` is 1 on termination or when ``step`` reaches
      ``episode_length`` (then ``truncation`` is 1 too, unless the episode
      also terminated). A done ``state`` is returned unchanged, reward 0.
    """
    action = self.check_action(action)  # [da]
    pipeline_state, obs, reward, terminated, metrics = self.transition(
        state.pipeline_state, state.obs, action, state.task.params
    )
    step = state.step + 1
    timeout = step >= self.episode_length
    terminated = jnp.asarray(terminated, bool)
    new_state = state.replace(
        obs=obs,
        reward=jnp.asarray(reward, jnp.float32),
        done=jnp.logical_or(terminated, timeout).astype(jnp.float32),
        truncation=jnp.logical_and(timeout, ~terminated).astype(jnp.float32),
        step=step,
        pipeline_state=pipeline_state,
        metrics=metrics,
    )
    was_done = state.done > 0
    kept = jax.tree.map(
        lambda old, new: jnp.where(was_done, old, new), state, new_state
    )
    return kept.replace(reward=jnp.where(was_done, 0.0, new_state.reward))

  # ----------------------------------------------------------- for Brax --

  def as_brax_env(
      self, task_indices: Any, *, append_task: bool = True
  ) -> brax.envs.Env:
    """This family as a ``brax.envs.Env`` for Brax's PPO and SAC.

    Args:
      task_indices: tasks drawn uniformly at each reset.
      append_task: whether the observation ends with the task parameters.

    Returns:
      A ``TaskConditionedEnv`` with no time limit (see
      ``pdiff.envs.brax_adapter``).
    """
    from pdiff.envs.brax_adapter import TaskConditionedEnv  # Imports base.

    return TaskConditionedEnv(self, task_indices, append_task=append_task)
