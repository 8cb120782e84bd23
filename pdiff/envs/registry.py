"""Task families by name: ``make("cheetah_vel")``."""

from __future__ import annotations

import functools

from pdiff.envs.ant_dir import AntDir, AntDir10
from pdiff.envs.base import TaskFamily
from pdiff.envs.locomotion import (
    BRAX_BACKENDS,
    DEFAULT_BACKEND,
    CheetahDir,
    CheetahVel,
)
from pdiff.envs.metaworld_reach import METAWORLD_BACKENDS, MetaWorldReach
from pdiff.envs.point_robot import POINT_ROBOT_BACKENDS, PointRobot

_FAMILY_CLASSES: dict[str, type[TaskFamily]] = {
    "cheetah_vel": CheetahVel,
    "cheetah_dir": CheetahDir,
    "ant_dir": AntDir,
    "ant_dir_10": AntDir10,
    "point_robot": PointRobot,
    "metaworld_reach": MetaWorldReach,
}
# Names accepted by ``make``.
FAMILIES: tuple[str, ...] = tuple(_FAMILY_CLASSES)
# Names of the families simulated with Brax.
BRAX_FAMILIES: tuple[str, ...] = ("cheetah_vel", "cheetah_dir", "ant_dir",
                                  "ant_dir_10")
# Backends each family accepts; the first is its default.
FAMILY_BACKENDS: dict[str, tuple[str, ...]] = {
    **{
        name: (DEFAULT_BACKEND,)
        + tuple(b for b in BRAX_BACKENDS if b != DEFAULT_BACKEND)
        for name in BRAX_FAMILIES
    },
    "point_robot": POINT_ROBOT_BACKENDS,
    "metaworld_reach": METAWORLD_BACKENDS,
}


def canonical_name(name: str) -> str:
  """``"cheetah-vel"`` -> ``"cheetah_vel"``; ValueError for unknown names."""
  canonical = name.strip().lower().replace("-", "_")
  if canonical not in _FAMILY_CLASSES:
    raise ValueError(
        f"Unknown task family {name!r}; valid families are {FAMILIES} "
        "(hyphens are accepted for underscores)."
    )
  return canonical


def make(name: str, *, backend: str | None = None) -> TaskFamily:
  """Returns the task family ``name`` with its default configuration.

  Args:
    name: one of ``FAMILIES``, or the same with hyphens (``"cheetah-vel"``).
    backend: physics backend; None for the family's default
      (``DEFAULT_BACKEND`` for Brax families, ``"jax"`` for point_robot,
      ``"mujoco"`` for metaworld_reach, which Meta-World steps on the host).

  Returns:
    The ``TaskFamily``. Families are immutable; use ``dataclasses.replace``
    to change a field (e.g. ``episode_length``).

  Raises:
    ValueError: for an unknown family, or a backend it does not support.
  """
  canonical = canonical_name(name)
  valid = FAMILY_BACKENDS[canonical]
  backend = valid[0] if backend is None else backend
  if backend not in valid:
    raise ValueError(
        f"Unknown backend {backend!r} for task family {canonical!r}; valid "
        f"backends are {valid}."
    )
  return _make_cached(canonical, backend)


@functools.cache
def _make_cached(name: str, backend: str) -> TaskFamily:
  # Building a Brax family parses its MJCF model: do it once per process.
  return _FAMILY_CLASSES[name](backend=backend)
