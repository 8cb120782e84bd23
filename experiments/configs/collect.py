"""Dataset collection config (``experiments/collect.py``).

Usage: ``--config=experiments/configs/collect.py:cheetah_vel``.
"""

import ml_collections


def get_config(family: str = "cheetah_vel") -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  # Task family (pdiff.envs.make name).
  config.family = family
  # Physics backend; None = the family's default (must match the policy's).
  config.backend = ml_collections.config_dict.placeholder(str)
  # Qualities to collect: any of "expert", "medium", "random".
  config.qualities = ("expert", "medium", "random")
  # Trajectories per task and quality.
  config.num_trajectories = 20
  # Gaussian action-noise std added to the expert's actions (DESIGN.md:
  # "expert: trained policy, small Gaussian action noise").
  config.expert_noise = 0.1
  # Action-noise std for the medium policy. metaworld_reach's medium is its
  # scripted expert with much more noise (actions are clipped to [-1, 1]):
  # 4.0 puts its return about halfway from random to expert (54% on
  # training tasks 0, 3, 6, 9: random 612, medium 2,879, expert 4,840).
  config.medium_noise = 4.0 if family == "metaworld_reach" else 0.1
  # Collection seed.
  config.seed = 0
  # Tasks stepped together per jitted call (bounds memory). Meta-World steps
  # a whole batch in one host call per step, so it takes all 20 tasks.
  config.tasks_per_chunk = 20 if family == "metaworld_reach" else 8
  # Behaviour-policy checkpoint root ({dir}/{quality}); None = shipped ones.
  config.policy_dir = ml_collections.config_dict.placeholder(str)
  return config
