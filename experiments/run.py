r"""The whole Prompt Diffuser experiment on one task family, resumable.

  python experiments/run.py --workdir=runs/cheetah_vel

datasets (if missing) -> pre-trained Prompt-DT (if none) -> every method on
every test task, for every seed -> rollouts -> ``{workdir}/results/results.
{json,md}`` and ``returns.png`` (WORKSPACE.md). The config is checked in full
before anything is written; a work directory holding outputs of another
config is never reused silently.
"""

from absl import app, flags

from experiments import launch
from pdiff import parallel, pipeline

_CONFIG = launch.define_config("experiments/configs/run.py", "Pipeline config.")
_WORKDIR = flags.DEFINE_string("workdir", "runs/cheetah_vel",
                               "Work directory (resumed when it exists).")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Initialise jax.distributed (multi-host runs).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  parallel.maybe_initialize_distributed(_DISTRIBUTED.value)
  pipeline.run(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  launch.run(main)
