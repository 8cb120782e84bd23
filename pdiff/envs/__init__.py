"""Meta-RL task families whose tasks are pytrees, so rollouts vectorise.

``make(name)`` returns a ``TaskFamily``: tasks, pure ``reset``/``step`` that
``jax.vmap`` over tasks and episodes, and ``as_brax_env`` for Brax's trainers.
See docs/envs.md.
"""

from pdiff.envs import quiet_brax  # noqa: F401 (first: imports Brax quietly)
from pdiff.envs.ant_dir import AntDir, AntDir10
from pdiff.envs.base import EnvState, Task, TaskFamily
from pdiff.envs.brax_adapter import TaskConditionedEnv
from pdiff.envs.locomotion import (
    BRAX_BACKENDS,
    DEFAULT_BACKEND,
    BraxTaskFamily,
    CheetahDir,
    CheetahVel,
)
from pdiff.envs.metaworld_reach import MetaWorldReach
from pdiff.envs.point_robot import PointRobot
from pdiff.envs.registry import (
    BRAX_FAMILIES,
    FAMILIES,
    FAMILY_BACKENDS,
    canonical_name,
    make,
)

__all__ = [
    "AntDir",
    "AntDir10",
    "BRAX_BACKENDS",
    "BRAX_FAMILIES",
    "BraxTaskFamily",
    "CheetahDir",
    "CheetahVel",
    "DEFAULT_BACKEND",
    "EnvState",
    "FAMILIES",
    "FAMILY_BACKENDS",
    "MetaWorldReach",
    "PointRobot",
    "Task",
    "TaskConditionedEnv",
    "TaskFamily",
    "canonical_name",
    "make",
]
