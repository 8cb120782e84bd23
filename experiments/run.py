r"""The whole Prompt Diffuser experiment on one task family, resumable.

  python experiments/run.py --workdir=runs/cheetah_vel

datasets (if missing) -> pre-trained Prompt-DT (if none) -> Prompt Diffuser
and the plain few-shot prompt on every test task, for every seed -> rollouts
-> ``{workdir}/results/results.{json,md}`` and ``returns.png`` (WORKSPACE.md).
"""

from absl import app, flags
from ml_collections import config_flags

from pdiff import parallel, pipeline

_CONFIG = config_flags.DEFINE_config_file(
    "config", "experiments/configs/run.py", "Pipeline config.")
_WORKDIR = flags.DEFINE_string("workdir", "runs/cheetah_vel",
                               "Work directory (resumed when it exists).")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Initialise jax.distributed (multi-host runs).")


def main(argv):
  del argv
  parallel.maybe_initialize_distributed(_DISTRIBUTED.value)
  pipeline.run(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  app.run(main)
