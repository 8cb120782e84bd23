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

from experiments import launch
from pdiff.pipeline import selection

_CONFIG = launch.define_config("experiments/configs/selection.py",
                               "Selection config.")
_WORKDIR = launch.define_workdir()
main = launch.report_main(
    _CONFIG, _WORKDIR,
    lambda config, workdir: selection.select(config.run, config.select, workdir),
    selection.markdown, "select/select.{json,md}")


if __name__ == "__main__":
  launch.run(main)
