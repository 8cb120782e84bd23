r"""Chooses Prompt Diffuser's settings on validation tasks, then reports the
paper's setting and the chosen one on the test tasks.

  python experiments/selection.py \
      --config=experiments/configs/selection.py:cheetah_vel \
      --workdir=runs/cheetah_vel

Validation tasks are training tasks held out of tuning's training split
(``pdiff.pipeline.selection``); no test task is read before the choice is
made. Datasets, the PLM and the test split's stage-1 models are shared by
fingerprint with ``experiments/run.py`` in the same work directory. Writes
``{workdir}/select/select.{json,md}`` (docs/diagnosis.md). Append ``,tiny``
to the config argument for a smoke run.
"""

from absl import app, flags, logging

from experiments import launch
from pdiff.pipeline import selection
from pdiff.pipeline.validate import check_run_config

_CONFIG = launch.define_config("experiments/configs/selection.py",
                               "Selection config.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Work directory (resumed "
                               "when it exists).", required=True)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  config = _CONFIG.value
  check_run_config(config.run)
  report = selection.select(config.run, config.select, _WORKDIR.value)
  logging.info("\n%s", selection.markdown(report))
  logging.info("report: %s/select/select.{json,md}", _WORKDIR.value)


if __name__ == "__main__":
  launch.run(main)
