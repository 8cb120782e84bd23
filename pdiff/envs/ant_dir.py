"""ant_dir: Brax's Ant asked to walk in a goal direction (Prompt-DT's reward).

Reward per step (Prompt-DT / MAML's ``AntDirEnv``)::

  v . (cos g, sin g) - 0.5 * sum(a**2) - contact_cost + 1

with ``v = (torso_xy_after - torso_xy_before) / dt`` and ``g`` the task's
goal angle. The episode terminates (``done = 1``) when the torso height
leaves ``healthy_z_range`` = [0.2, 1.0] (Brax's and Gym's range) or the
observation is not finite; the step that terminates still earns the +1.

Contact cost. Prompt-DT's formula is ``0.5e-3 * sum(clip(cfrc_ext, -1, 1)**2)``
over the external contact forces of every body. What Brax offers:

* ``generalized``, ``positional``, ``spring``: the pipeline state carries
  contact geometry but no contact forces, so the term cannot be computed
  (Brax's own ``ant`` raises NotImplementedError for ``use_contact_forces``).
* ``mjx``: ``mujoco.mjx.rne_postconstraint`` computes ``cfrc_ext``.

The default ``contact_cost_weight`` is 0 on every backend, so that rewards
agree across backends. This is also what Prompt-DT's MuJoCo 2.x environments
effectively computed: MuJoCo 2.0 stopped filling ``cfrc_ext`` unless a force
sensor asks for it (Gym issue 1541), so their contact term was 0. With the
clip, the term is at most ``0.5e-3 * 6 * num_bodies`` (0.03 for Brax's
10-body ant) per step. Set ``contact_cost_weight=5e-4`` on ``mjx`` for the
term as written; other backends reject a non-zero weight.

``ant_dir_10`` (:class:`AntDir10`) is Prompt-DT's out-of-distribution
experiment on the same 50 goal directions: 8 training and 3 test tasks
(``config/ant_dir/ant_dir_10.json``), collected with ant_dir's behaviour
policies.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp

from pdiff.envs.locomotion import BraxTaskFamily, task_table_field

# Backends whose pipeline state yields external contact forces.
CONTACT_FORCE_BACKENDS = ("mjx",)


@dataclasses.dataclass(frozen=True, kw_only=True)
class AntDir(BraxTaskFamily):
  """Brax's Ant rewarded for torso velocity along a goal direction.

  50 tasks, goal angles in [0, 2 pi), Prompt-DT's 45/5 split.

  Attributes:
    ctrl_cost_weight: weight of ``sum(action**2)``.
    contact_cost_weight: weight of ``sum(clip(cfrc_ext, -1, 1)**2)``; must be
      0 unless the backend is in ``CONTACT_FORCE_BACKENDS``.
    healthy_reward: reward for every step taken (alive bonus).
    healthy_z_range: torso heights inside which the ant is healthy.
  """

  brax_env_name: ClassVar[str] = "ant"
  num_hidden_positions: ClassVar[int] = 2
  metric_names: ClassVar[tuple[str, ...]] = (
      "x_position", "y_position", "x_velocity", "y_velocity", "torso_height",
      "reward_task", "reward_ctrl", "reward_contact", "reward_survive",
  )

  name: str = "ant_dir"
  return_target: float = 1100.0
  return_scale: float = 1000.0
  task_parameter_name: str = "goal"
  task_values: tuple[tuple[float, ...], ...] = task_table_field("ant_dir", "values")
  train_tasks: tuple[int, ...] = task_table_field("ant_dir", "train")
  test_tasks: tuple[int, ...] = task_table_field("ant_dir", "test")
  ctrl_cost_weight: float = 0.5
  contact_cost_weight: float = 0.0
  healthy_reward: float = 1.0
  healthy_z_range: tuple[float, float] = (0.2, 1.0)

  def __post_init__(self):
    super().__post_init__()
    if (self.contact_cost_weight != 0.0
        and self.backend not in CONTACT_FORCE_BACKENDS):
      raise ValueError(
          f"{self.name}: contact_cost_weight must be 0 on backend "
          f"{self.backend!r}, which has no contact forces; got "
          f"{self.contact_cost_weight}. Use a backend in "
          f"{CONTACT_FORCE_BACKENDS} for a contact cost."
      )
    low, high = self.healthy_z_range
    if not low < high:
      raise ValueError(
          f"{self.name}: healthy_z_range must be (low, high) with low < high,"
          f" got {self.healthy_z_range}."
      )

  def contact_cost(self, pipeline_state) -> jax.Array:
    """``contact_cost_weight * sum(clip(cfrc_ext, -1, 1)**2)``, or 0."""
    if self.contact_cost_weight == 0.0:
      return jnp.zeros((), jnp.float32)
    from mujoco import mjx  # Only the mjx backend gets here.

    data = mjx.rne_postconstraint(self.brax_env.sys, pipeline_state)
    forces = jnp.clip(data.cfrc_ext, -1.0, 1.0)  # [num_bodies, 6]
    return self.contact_cost_weight * jnp.sum(jnp.square(forces))

  def is_healthy(self, torso_height: jax.Array, obs: jax.Array) -> jax.Array:
    """Whether the torso height ``[]`` is in range and ``obs`` is finite."""
    low, high = self.healthy_z_range
    in_range = (torso_height >= low) & (torso_height <= high)
    return in_range & jnp.all(jnp.isfinite(obs))

  def transition(self, pipeline_state, obs, action, params):
    del obs  # The pipeline state holds everything.
    next_state = self.brax_env.pipeline_step(pipeline_state, action)
    torso_before = pipeline_state.x.pos[0]  # [3]
    torso_after = next_state.x.pos[0]  # [3]
    velocity = (torso_after - torso_before) / self.brax_env.dt  # [3]
    direction = jnp.stack([jnp.cos(params[0]), jnp.sin(params[0])])  # [2]
    reward_task = jnp.dot(velocity[:2], direction)
    reward_ctrl = -self.control_cost(action)
    reward_contact = -self.contact_cost(next_state)
    reward_survive = jnp.asarray(self.healthy_reward, jnp.float32)
    reward = reward_task + reward_ctrl + reward_contact + reward_survive
    next_obs = self.observe(next_state)
    healthy = self.is_healthy(torso_after[2], next_obs)
    # A non-finite state ends the episode; keep its reward finite.
    reward = jnp.where(jnp.isfinite(reward), reward, 0.0)
    metrics = {
        "x_position": torso_after[0],
        "y_position": torso_after[1],
        "x_velocity": velocity[0],
        "y_velocity": velocity[1],
        "torso_height": torso_after[2],
        "reward_task": reward_task,
        "reward_ctrl": reward_ctrl,
        "reward_contact": reward_contact,
        "reward_survive": reward_survive,
    }
    return next_state, next_obs, reward, ~healthy, metrics


@dataclasses.dataclass(frozen=True, kw_only=True)
class AntDir10(AntDir):
  """ant_dir on Prompt-DT's out-of-distribution split ``ant_dir_10``.

  The 50 goal angles, the reward and the physics are ant_dir's; the split
  trains on 8 directions and tests on 3 (Prompt-DT's
  ``config/ant_dir/ant_dir_10.json``). The data come from ant_dir's shipped
  behaviour policies (``behavior_source``), which are task-conditioned on
  the goal; the return target and scale follow pdiff.data.conditioning's
  rule on the 8 training tasks' expert returns.
  """

  behavior_source: ClassVar[str | None] = "ant_dir"

  name: str = "ant_dir_10"
  return_target: float = 1070.0
  return_scale: float = 1000.0
  task_values: tuple[tuple[float, ...], ...] = task_table_field(
      "ant_dir_10", "values")
  train_tasks: tuple[int, ...] = task_table_field("ant_dir_10", "train")
  test_tasks: tuple[int, ...] = task_table_field("ant_dir_10", "test")
