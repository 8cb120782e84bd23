r"""Collects a family's offline datasets with its behaviour policies.

  python experiments/collect.py --config=experiments/configs/collect.py:cheetah_vel \
      --workdir=/tmp/pdiff

Writes ``{workdir}/datasets/{family}/{quality}/task_XX.npz`` (see
WORKSPACE.md); files already there are kept, so a stopped run resumes.
"""

import os
import shutil

from absl import flags, logging

from experiments import launch
from experiments.configs import run as run_configs
from pdiff import pipeline
from pdiff.data import collect
from pdiff.pipeline import validate

_CONFIG = launch.define_config("experiments/configs/collect.py",
                               "Collection config.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Work directory.",
                               required=True)
_OVERWRITE = flags.DEFINE_bool(
    "overwrite", False, "Delete the qualities' existing datasets first and "
    "collect them again.")


def main(argv):
  del argv
  config, workdir = _CONFIG.value, _WORKDIR.value
  family = validate.make_family(config)
  validate.check_collect_config(config, family.name, path="")
  # The pipeline's dataset stage (with its stage records), so that
  # experiments/pretrain.py and experiments/run.py with the same collection
  # config reuse these files.
  run_config = run_configs.get_config(family.name)
  run_config.backend = config.backend
  run_config.collect = config
  qualities = list(config.qualities)
  if _OVERWRITE.value:
    for quality in qualities:
      shutil.rmtree(os.path.join(workdir, "datasets", family.name, quality),
                    ignore_errors=True)
  pipeline.ensure_datasets(run_config, family, workdir, qualities,
                           progress=logging.info)
  summary = collect.dataset_return_summary(
      os.path.join(workdir, "datasets"), family, qualities)
  logging.info("mean return per task:\n%s",
               collect.return_summary_markdown(summary))


if __name__ == "__main__":
  launch.run(main)
