r"""Collects a family's offline datasets with its behaviour policies.

  python experiments/collect.py --config=experiments/configs/collect.py:cheetah_vel \
      --workdir=/tmp/pdiff

Writes ``{workdir}/datasets/{family}/{quality}/task_XX.npz`` (see
WORKSPACE.md); files already there are kept, so a stopped run resumes.
"""

from absl import app, flags, logging
from ml_collections import config_flags

from pdiff.data import collect

_CONFIG = config_flags.DEFINE_config_file(
    "config", "experiments/configs/collect.py", "Collection config.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Work directory.",
                               required=True)
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Rewrite existing files.")


def main(argv):
  del argv
  collect.collect_from_config(_CONFIG.value, _WORKDIR.value, overwrite=_OVERWRITE.value,
                              progress=logging.info)


if __name__ == "__main__":
  app.run(main)
