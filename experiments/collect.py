r"""Collects a family's offline datasets with its behaviour policies.

  python experiments/collect.py --config=experiments/configs/collect.py:cheetah_vel \
      --workdir=/tmp/pdiff

Writes ``{workdir}/datasets/{family}/{quality}/task_XX.npz`` (see
WORKSPACE.md); files already there are kept, so a stopped run resumes.
"""

from absl import flags, logging

from experiments import launch
from pdiff import envs
from pdiff.data import collect
from pdiff.pipeline import validate

_CONFIG = launch.define_config("experiments/configs/collect.py",
                               "Collection config.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Work directory.",
                               required=True)
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Rewrite existing files.")


def main(argv):
  del argv
  config = _CONFIG.value
  try:
    family = envs.make(config.family, backend=config.backend)
  except ValueError as e:
    raise validate.ConfigError(f"config.family / config.backend: {e}") from e
  validate.check_collect_config(config, family.name, path="")
  collect.collect_from_config(_CONFIG.value, _WORKDIR.value, overwrite=_OVERWRITE.value,
                              progress=logging.info)


if __name__ == "__main__":
  launch.run(main)
