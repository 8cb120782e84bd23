"""point_robot: a 2-D point reaching a goal on a half circle, in pure JAX.

The dense-reward variant of PEARL's ``PointEnv``: the state is the position,
the action a displacement clipped to ``[-max_action, max_action]^2``, the
reward the negative distance to the goal after the move, the horizon 20
steps. Goals lie on the upper half of the unit circle at evenly spaced
angles in [0, pi]; every fifth goal (from the third) is held out for
testing, so test goals sit between training goals.

Compiles in well under a second: the family for fast tests and demos.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from pdiff.envs import base

# Pure-JAX dynamics: the only backend of this family.
POINT_ROBOT_BACKENDS = ("jax",)
# Goals on the half circle, and which of them are test goals.
NUM_GOALS = 25
TEST_GOALS = (2, 7, 12, 17, 22)


def half_circle_goals(
    num_goals: int, radius: float = 1.0
) -> tuple[tuple[float, float], ...]:
  """``num_goals`` points at evenly spaced angles in [0, pi] on a circle."""
  angles = np.linspace(0.0, np.pi, num_goals)
  return tuple(
      (float(radius * np.cos(a)), float(radius * np.sin(a))) for a in angles
  )


@dataclasses.dataclass(frozen=True, kw_only=True)
class PointRobot(base.TaskFamily):
  """A point in the plane asked to reach a goal; no physics engine.

  ``pipeline_state`` is None: the observation is the whole state. The best
  return is between -4.5 (goals on the x axis) and -3.04 (at 45 degrees),
  a uniformly random policy scores about -20.

  Attributes:
    max_action: bound of each action coordinate (actions are clipped).
    reset_noise_scale: half-width of the uniform noise on the start position
      (0: every episode starts at the origin, as in PEARL).
  """

  metric_names: ClassVar[tuple[str, ...]] = ("distance",)

  name: str = "point_robot"
  backend: str = "jax"
  episode_length: int = 20
  return_target: float = -3.0
  return_scale: float = 10.0
  task_parameter_name: str = "goal"
  task_values: tuple[tuple[float, ...], ...] = dataclasses.field(
      default_factory=lambda: half_circle_goals(NUM_GOALS), repr=False
  )
  train_tasks: tuple[int, ...] = tuple(
      i for i in range(NUM_GOALS) if i not in TEST_GOALS
  )
  test_tasks: tuple[int, ...] = TEST_GOALS
  max_action: float = 0.1
  reset_noise_scale: float = 0.0

  def __post_init__(self):
    if self.backend not in POINT_ROBOT_BACKENDS:
      raise ValueError(
          f"{self.name}: unknown backend {self.backend!r}; valid backends "
          f"are {POINT_ROBOT_BACKENDS}."
      )
    if self.max_action <= 0:
      raise ValueError(
          f"{self.name}: max_action must be positive, got {self.max_action}."
      )
    if self.reset_noise_scale < 0:
      raise ValueError(
          f"{self.name}: reset_noise_scale must be >= 0, got "
          f"{self.reset_noise_scale}."
      )
    super().__post_init__()

  @property
  def observation_size(self) -> int:
    return 2

  @property
  def action_size(self) -> int:
    return 2

  def reset_physics(self, key: jax.Array) -> tuple[None, jax.Array]:
    scale = self.reset_noise_scale
    position = jax.random.uniform(key, (2,), minval=-scale, maxval=scale)
    return None, position  # [2]

  def transition(self, pipeline_state, obs, action, params):
    del pipeline_state  # None: the observation is the position.
    move = jnp.clip(action, -self.max_action, self.max_action)  # [2]
    position = obs + move  # [2]
    distance = jnp.linalg.norm(position - params)
    metrics = {"distance": distance}
    return None, position, -distance, jnp.zeros((), bool), metrics
