"""Dataset collection config (``experiments/collect.py``).

Usage: ``--config=experiments/configs/collect.py:cheetah_vel``.
"""

import ml_collections


def get_config(family: str = "cheetah_vel") -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  # Task family (pdiff.envs.make name).
  config.family = family
  # Brax backend; None = pdiff.envs.DEFAULT_BACKEND (must match the policy's).
  config.backend = ml_collections.config_dict.placeholder(str)
  # Qualities to collect: any of "expert", "medium", "random".
  config.qualities = ("expert", "medium", "random")
  # Trajectories per task and quality.
  config.num_trajectories = 20
  # Gaussian action-noise std added to the expert's actions (DESIGN.md:
  # "expert: trained policy, small Gaussian action noise").
  config.expert_noise = 0.1
  # Action-noise std for the medium policy.
  config.medium_noise = 0.1
  # Collection seed.
  config.seed = 0
  # Tasks stepped together per jitted call (bounds memory).
  config.tasks_per_chunk = 8
  # Behaviour-policy checkpoint root ({dir}/{quality}); None = shipped ones.
  config.policy_dir = ml_collections.config_dict.placeholder(str)
  return config
