r"""Pre-trains Prompt-DT on a family's training tasks, then evaluates it.

  python experiments/pretrain.py \
      --config=experiments/configs/pretrain.py:cheetah_vel,cpu \
      --workdir=/tmp/pdiff

Reads ``{workdir}/datasets`` (collected first if missing), writes
``{workdir}/pretrain/`` (checkpoints, TensorBoard, policy.json) and
``{workdir}/results/pretrain_eval.{json,md}``. A stopped run resumes from its
latest checkpoint. ``--distributed`` calls ``jax.distributed.initialize()``
first (multi-host).
"""

import os

from absl import app, flags, logging
from ml_collections import config_flags

from experiments.configs import collect as collect_configs
from pdiff import envs, parallel
from pdiff.data import collect
from pdiff.evaluation import pretrained as eval_pretrained
from pdiff.training import pretrain

_CONFIG = config_flags.DEFINE_config_file(
    "config", "experiments/configs/pretrain.py", "Pre-training config.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Work directory.",
                               required=True)
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Initialise jax.distributed (multi-host runs).")


def main(argv):
  del argv
  parallel.maybe_initialize_distributed(_DISTRIBUTED.value)
  config, workdir = _CONFIG.value, _WORKDIR.value
  family = envs.make(config.family, backend=config.backend)
  dataset_root = os.path.join(workdir, "datasets")
  collect_config = collect_configs.get_config(config.family)
  collect_config.qualities = (config.quality,)
  collect.collect_from_config(collect_config, workdir, progress=logging.info)
  plm = pretrain.pretrain(config, family, dataset_root,
                          os.path.join(workdir, "pretrain"))
  if config.eval_episodes:
    results = eval_pretrained.evaluate_pretrained(
        plm, family, dataset_root, quality=config.quality, num_shots=5,
        num_episodes=config.eval_episodes, seed=config.train.seed)
    logging.info("\n%s", eval_pretrained.write_report(
        results, os.path.join(workdir, "results", "pretrain_eval"),
        family=family.name, quality=config.quality))


if __name__ == "__main__":
  app.run(main)
