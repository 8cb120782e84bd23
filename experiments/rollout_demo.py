r"""Rolls out uniform random actions on every task of a family.

All episodes of all tasks run vectorised in one compiled ``lax.scan``; the
mean return per task is printed.

  python experiments/rollout_demo.py --family=point_robot --episodes=8
  python experiments/rollout_demo.py --family=cheetah_vel --backend=spring
"""

import jax
import numpy as np
from absl import flags

from experiments import launch
from pdiff import envs
from pdiff.envs.rollout import random_returns

_FAMILY = flags.DEFINE_enum(
    "family", "point_robot",
    list(envs.FAMILIES) + [n.replace("_", "-") for n in envs.FAMILIES],
    "Task family.")
_BACKEND = flags.DEFINE_string(
    "backend", None, "Physics backend (default: the family's default).")
_EPISODES = flags.DEFINE_integer("episodes", 4, "Episodes per task.")
_SEED = flags.DEFINE_integer("seed", 0, "Random seed.")


def main(argv):
  del argv
  family = envs.make(_FAMILY.value, backend=_BACKEND.value)
  returns, lengths = random_returns(
      family, jax.random.key(_SEED.value), _EPISODES.value)
  returns, lengths = np.asarray(returns), np.asarray(lengths)
  test = set(family.test_tasks)
  print(f"{family.name} ({family.backend}): {_EPISODES.value} random "
        f"episode(s) per task, horizon {family.episode_length}")
  print(f"{'task':>4}  {'split':5}  {family.task_parameter_name:>16}  "
        f"{'return':>10}  {'std':>8}  {'length':>6}")
  for index in range(family.num_tasks):
    params = ", ".join(f"{v:.3f}" for v in family.task_values[index])
    split = "test" if index in test else "train"
    print(f"{index:>4}  {split:5}  {params:>16}  "
          f"{returns[index].mean():>10.2f}  {returns[index].std():>8.2f}  "
          f"{lengths[index].mean():>6.1f}")
  print(f"mean return over tasks: {returns.mean():.2f}")


if __name__ == "__main__":
  launch.run(main)
