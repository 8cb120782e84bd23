r"""The paper's experiments over task families, resumable.

  python experiments/paper.py --config=experiments/configs/paper.py:table1 \
      --workdir=runs/paper
  python experiments/paper.py --config=experiments/configs/paper.py:ablation \
      --workdir=runs/paper

``table1`` runs every method on cheetah-dir, cheetah-vel and ant-dir;
``ablation`` runs Prompt Diffuser's four gradient combinations on the same
families; ``table2`` compares few-shot data qualities on cheetah-vel;
``table3`` runs ant-dir's out-of-distribution split (ant_dir_10) few-shot
and zero-shot. Each family runs the whole pipeline (``experiments/run.py``)
in ``{workdir}/{family}``, shared by the experiments, so one finds the runs
another computed (table3's settings keep their runs and tables in
``{workdir}/{family}/table3/{setting}``). The tables go to
``{workdir}/paper/{experiment}.{json,md,png}`` (docs/paper.md). Append
``,tiny`` to the config argument for a smoke run on point_robot.
"""

from absl import app, flags, logging

from experiments import launch
from pdiff.pipeline import paper

_CONFIG = launch.define_config("experiments/configs/paper.py",
                               "Paper experiment config.")
_WORKDIR = flags.DEFINE_string("workdir", "runs/paper",
                               "Work directory (resumed when it exists).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  config, workdir = _CONFIG.value, _WORKDIR.value
  paper.run_experiment(config, workdir)
  logging.info("tables: %s/paper/%s.{json,md,png}", workdir, config.experiment)


if __name__ == "__main__":
  launch.run(main)
