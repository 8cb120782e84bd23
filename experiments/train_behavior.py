r"""Trains a family's task-conditioned behaviour policy with Brax's trainers.

  python experiments/train_behavior.py \
      --config=experiments/configs/behavior.py:cheetah_vel \
      --out_dir=/tmp/behavior/cheetah_vel

Writes ``{out_dir}/expert`` and ``{out_dir}/medium`` checkpoints and
``{out_dir}/summary.json``. ``--out_dir=package`` overwrites the checkpoints
shipped in ``pdiff/assets/behavior/{family}``.

Progress is saved at every evaluation in ``{out_dir}/resume``: the same
command continues a stopped run, and a larger
``--config.trainer.num_timesteps`` extends a finished one. With
``--out_dir=package`` the resume state is removed once training ends.
"""

import os
import shutil

from absl import flags, logging

from experiments import launch
from pdiff import atomic, envs
from pdiff.data import behavior
from pdiff.data import behavior_resume as resume
from pdiff.pipeline.validate import ConfigError

_CONFIG = launch.define_config("experiments/configs/behavior.py",
                               "Behaviour-policy config.")
_OUT_DIR = flags.DEFINE_string(
    "out_dir", None, "Output directory, or 'package' for the shipped assets.",
    required=True)


def main(argv):
  del argv
  config = _CONFIG.value
  family = envs.make(config.family, backend=config.backend)
  if family.behavior_family != family.name:
    raise ConfigError(
        f"config.family = {config.family!r}: its data are collected with "
        f"{family.behavior_family}'s behaviour policies; train those "
        f"(--config=experiments/configs/behavior.py:{family.behavior_family}).")
  out_dir = _OUT_DIR.value
  if out_dir == "package":
    out_dir = os.path.join(behavior.ASSETS_DIR, family.behavior_family)
  summary = behavior.train_behavior_policy(family, config, out_dir)
  atomic.write_json_atomic(os.path.join(out_dir, "summary.json"), summary)
  if _OUT_DIR.value == "package":
    # The package ships the policies, not the training state.
    shutil.rmtree(resume.directory(out_dir))
  logging.info("trained in %.0fs; curve %s", summary["train_seconds"],
               summary["curve"])


if __name__ == "__main__":
  launch.run(main)
