"""Brax locomotion task families: cheetah_vel, cheetah_dir and ant_dir.

The robots, their physics and their initial-state noise are Brax's own
(``brax.envs.get_environment("halfcheetah" | "ant", backend=...)``); only the
reward and termination are Prompt-DT's, written here on top of Brax's
pipeline. Observations are Brax's: joint positions without the root's
horizontal position (x for the cheetah, x and y for the ant), then joint
velocities.

Actions are used as given: the physics clips them to the actuators' control
range ([-1, 1]) and the control cost is computed on the action itself, as in
Prompt-DT's MuJoCo environments.

The task parameters and splits are Prompt-DT's, read from ``tasks.json``.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.resources
import json
from typing import Any, ClassVar, NamedTuple

import brax.envs
import jax
import jax.numpy as jnp

from pdiff.envs import base

# Brax physics pipelines a family can run on.
BRAX_BACKENDS = ("generalized", "positional", "spring", "mjx")
# The pipeline used unless another is asked for: the fastest with sane
# physics on a CPU (see docs/envs.md and benchmarks/env_throughput.py).
DEFAULT_BACKEND = "spring"


# Prompt-DT's task parameters and train/test splits (Xu et al., 2022), per
# family, shipped beside this file so that results compare with Prompt-DT.
TASKS_FILE = "tasks.json"


class TaskTable(NamedTuple):
  """The tasks of one family."""

  parameter_name: str  # what the parameter is, e.g. "velocity"
  values: tuple[tuple[float, ...], ...]  # [num_tasks][P]
  train_tasks: tuple[int, ...]  # indices of training tasks
  test_tasks: tuple[int, ...]  # indices of test tasks


@functools.cache
def _load_all() -> dict:
  text = (
      importlib.resources.files(__package__).joinpath(TASKS_FILE).read_text()
  )
  return json.loads(text)


def load_task_table(family: str) -> TaskTable:
  """Reads the tasks of ``family`` from the package's ``tasks.json``.

  Args:
    family: a Brax family name, e.g. ``"cheetah_vel"``.

  Returns:
    The family's ``TaskTable``; scalar parameters become 1-tuples.

  Raises:
    ValueError: if ``tasks.json`` has no entry (or a malformed one) for it.
  """
  table = _load_all()
  if family not in table or not isinstance(table[family], dict):
    known = sorted(k for k, v in table.items() if isinstance(v, dict))
    raise ValueError(
        f"{TASKS_FILE} has no entry for {family!r}; it has {known}."
    )
  entry = table[family]
  missing = {"task_parameter", "values", "train_tasks", "test_tasks"} - set(
      entry
  )
  if missing:
    raise ValueError(
        f"{TASKS_FILE}: entry {family!r} lacks fields {sorted(missing)}."
    )
  values = tuple(
      tuple(float(x) for x in v) if isinstance(v, list) else (float(v),)
      for v in entry["values"]
  )
  return TaskTable(
      parameter_name=str(entry["task_parameter"]),
      values=values,
      train_tasks=tuple(int(i) for i in entry["train_tasks"]),
      test_tasks=tuple(int(i) for i in entry["test_tasks"]),
  )


def task_table_field(family: str, what: str) -> Any:
  """A dataclass field whose default is read from the package's tasks.json."""
  def default():
    table = load_task_table(family)
    return {
        "values": table.values,
        "train": table.train_tasks,
        "test": table.test_tasks,
    }[what]
  return dataclasses.field(default_factory=default, repr=what != "values")


@dataclasses.dataclass(frozen=True, kw_only=True)
class BraxTaskFamily(base.TaskFamily):
  """A task family on a Brax robot; subclasses define reward and termination.

  Attributes:
    ctrl_cost_weight: weight of ``sum(action**2)`` in the reward.
  """

  # Name of the robot in Brax's environment registry.
  brax_env_name: ClassVar[str]
  # Leading entries of q (root position) left out of the observation.
  num_hidden_positions: ClassVar[int]

  backend: str = DEFAULT_BACKEND
  episode_length: int = 200
  ctrl_cost_weight: float

  def __post_init__(self):
    if self.backend not in BRAX_BACKENDS:
      raise ValueError(
          f"{self.name}: unknown backend {self.backend!r}; valid backends "
          f"are {BRAX_BACKENDS}."
      )
    super().__post_init__()
    env = brax.envs.get_environment(self.brax_env_name, backend=self.backend)
    object.__setattr__(self, "_brax_env", env)

  @property
  def brax_env(self) -> brax.envs.PipelineEnv:
    """Brax's environment whose system and pipeline this family steps."""
    return self._brax_env

  @property
  def dt(self) -> float:
    """Seconds of simulated time per environment step."""
    return float(self._brax_env.dt)

  @property
  def observation_size(self) -> int:
    sys = self._brax_env.sys
    return sys.q_size() - self.num_hidden_positions + sys.qd_size()

  @property
  def action_size(self) -> int:
    return self._brax_env.sys.act_size()

  def observe(self, pipeline_state: Any) -> jax.Array:
    """Brax's observation of a pipeline state, ``[ds]``."""
    return jnp.concatenate(
        [pipeline_state.q[self.num_hidden_positions:], pipeline_state.qd]
    )

  def reset_physics(self, key: jax.Array) -> tuple[Any, jax.Array]:
    # Brax's own reset: q0 + U(-0.1, 0.1) noise, qd ~ 0.1 * N(0, 1).
    pipeline_state = self._brax_env.reset(key).pipeline_state
    return pipeline_state, self.observe(pipeline_state)

  def control_cost(self, action: jax.Array) -> jax.Array:
    """``ctrl_cost_weight * sum(action**2)`` of an action ``[da]``."""
    return self.ctrl_cost_weight * jnp.sum(jnp.square(action))


@dataclasses.dataclass(frozen=True, kw_only=True)
class _HalfCheetahFamily(BraxTaskFamily):
  """HalfCheetah whose task reward is a function of its forward velocity."""

  brax_env_name: ClassVar[str] = "halfcheetah"
  num_hidden_positions: ClassVar[int] = 1
  metric_names: ClassVar[tuple[str, ...]] = (
      "x_position", "x_velocity", "reward_task", "reward_ctrl",
  )

  ctrl_cost_weight: float = 0.05

  def task_reward(self, x_velocity: jax.Array, params: jax.Array) -> jax.Array:
    """Reward for a forward velocity ``[]`` under task ``params`` ``[1]``."""
    raise NotImplementedError

  def transition(self, pipeline_state, obs, action, params):
    del obs  # The pipeline state holds everything.
    next_state = self._brax_env.pipeline_step(pipeline_state, action)
    x_before = pipeline_state.x.pos[0, 0]  # torso
    x_after = next_state.x.pos[0, 0]
    x_velocity = (x_after - x_before) / self._brax_env.dt
    reward_task = self.task_reward(x_velocity, params)
    reward_ctrl = -self.control_cost(action)
    metrics = {
        "x_position": x_after,
        "x_velocity": x_velocity,
        "reward_task": reward_task,
        "reward_ctrl": reward_ctrl,
    }
    terminated = jnp.zeros((), bool)
    return (next_state, self.observe(next_state), reward_task + reward_ctrl,
            terminated, metrics)


@dataclasses.dataclass(frozen=True, kw_only=True)
class CheetahVel(_HalfCheetahFamily):
  """HalfCheetah asked to run forward at a target velocity.

  Reward: ``-|v - v_goal| - 0.05 * sum(a**2)``, ``v`` the torso's forward
  velocity. 40 tasks, ``v_goal`` in 0.075..3.0 m/s. No termination.
  """

  name: str = "cheetah_vel"
  return_supremum: ClassVar[float | None] = 0.0
  return_target: float = 0.0
  return_scale: float = 200.0
  task_parameter_name: str = "velocity"
  task_values: tuple[tuple[float, ...], ...] = task_table_field(
      "cheetah_vel", "values")
  train_tasks: tuple[int, ...] = task_table_field("cheetah_vel", "train")
  test_tasks: tuple[int, ...] = task_table_field("cheetah_vel", "test")

  def task_reward(self, x_velocity, params):
    return -jnp.abs(x_velocity - params[0])


@dataclasses.dataclass(frozen=True, kw_only=True)
class CheetahDir(_HalfCheetahFamily):
  """HalfCheetah asked to run forward (direction +1) or backward (-1).

  Reward: ``direction * v - 0.05 * sum(a**2)``. 2 tasks, used for both
  training and testing (as in Prompt-DT). No termination.
  """

  name: str = "cheetah_dir"
  return_target: float = 1010.0
  return_scale: float = 1000.0
  task_parameter_name: str = "direction"
  task_values: tuple[tuple[float, ...], ...] = task_table_field(
      "cheetah_dir", "values")
  train_tasks: tuple[int, ...] = task_table_field("cheetah_dir", "train")
  test_tasks: tuple[int, ...] = task_table_field("cheetah_dir", "test")

  def task_reward(self, x_velocity, params):
    return params[0] * x_velocity
