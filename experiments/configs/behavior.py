"""Behaviour-policy training config (``experiments/train_behavior.py``).

Usage: ``--config=experiments/configs/behavior.py:cheetah_vel``. The argument
picks the family and its preset; every field can be overridden from the
command line (``--config.trainer.num_timesteps=...``).
"""

import ml_collections

# Brax PPO settings per family, sized for a 2-core CPU: the budgets of the
# shipped policies (their policy.json records the config they ran with).
# Field names are brax.training.agents.ppo.train's keyword arguments.
_PPO_PRESETS = {
    "cheetah_vel": dict(num_timesteps=25_600_000, num_envs=256, batch_size=256,
                        unroll_length=20, num_minibatches=8,
                        num_updates_per_batch=4, discounting=0.95,
                        learning_rate=3e-4, entropy_cost=1e-3,
                        reward_scaling=1.0, num_evals=26),
    # Brax's own halfcheetah PPO settings (more envs, larger batches and
    # more updates per batch than the presets above), which the smaller
    # settings did not converge with in 16M steps (346 at 16M).
    "cheetah_dir": dict(num_timesteps=40_000_000, num_envs=1024,
                        batch_size=512, unroll_length=20, num_minibatches=16,
                        num_updates_per_batch=8, discounting=0.95,
                        learning_rate=3e-4, entropy_cost=1e-3,
                        reward_scaling=1.0, num_evals=41),
    "ant_dir": dict(num_timesteps=12_000_000, num_envs=256, batch_size=256,
                    unroll_length=10, num_minibatches=16,
                    num_updates_per_batch=4, discounting=0.97,
                    learning_rate=3e-4, entropy_cost=1e-2,
                    reward_scaling=1.0, num_evals=25),
    "point_robot": dict(num_timesteps=200_000, num_envs=128, batch_size=128,
                        unroll_length=10, num_minibatches=4,
                        num_updates_per_batch=4, discounting=0.95,
                        learning_rate=1e-3, entropy_cost=1e-3,
                        reward_scaling=1.0, num_evals=5),
}


# Families whose expert is the best evaluated snapshot rather than the last
# (PPO's return on cheetah-vel and cheetah-dir peaks and then oscillates).
_EXPERT = {"cheetah_vel": "best", "cheetah_dir": "best"}

# Hidden layer sizes of the policy network where a family needs more than
# the default (64, 64).
_HIDDEN = {"cheetah_dir": (128, 128)}


def get_config(family: str = "cheetah_vel") -> ml_collections.ConfigDict:
  if family not in _PPO_PRESETS:
    raise ValueError(f"behaviour config: unknown family {family!r}; expected "
                     f"one of {sorted(_PPO_PRESETS)}.")
  config = ml_collections.ConfigDict()
  # Task family to train on (pdiff.envs.make name).
  config.family = family
  # Brax physics backend; None uses pdiff.envs.DEFAULT_BACKEND. Datasets and
  # evaluation must use the same backend as the behaviour policy.
  config.backend = ml_collections.config_dict.placeholder(str)
  # Brax trainer: "ppo" (brax.training.agents.ppo) or "sac".
  config.algorithm = "ppo"
  # Hidden layer sizes of the policy network (kept small: it ships in the
  # package).
  config.hidden = _HIDDEN.get(family, (64, 64))
  # Hidden layer sizes of PPO's value network (training only, not shipped;
  # Brax's default of 5 x 256 dominates the cost on a CPU).
  config.value_hidden = (128, 128)
  # Seed of the trainer.
  config.seed = 0
  # The medium checkpoint is the first evaluation reaching this fraction of
  # the way from the first evaluation's return to the best one.
  config.medium_fraction = 0.5
  # The expert checkpoint: "last" (the trainer's final parameters) or "best"
  # (the snapshot with the highest evaluation return, on training tasks).
  config.expert = _EXPERT.get(family, "last")
  # Keyword arguments passed to the Brax trainer as they are.
  config.trainer = ml_collections.ConfigDict(dict(
      _PPO_PRESETS[family], normalize_observations=True,
      num_eval_envs=64))
  return config
