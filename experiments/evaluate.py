r"""Evaluates a pre-trained Prompt-DT on a family's train and test tasks.

  python experiments/evaluate.py --workdir=runs/cheetah_vel

Reads ``{workdir}/pretrain`` (or ``--pretrain_dir``) and
``{workdir}/datasets``; writes ``{workdir}/results/evaluate.{json,md}``: per
task, the mean +- std return over episodes with a few-shot prompt, next to the
mean return of the dataset the prompt comes from.
"""

import os

from absl import flags, logging

from experiments import launch
from pdiff import envs
from pdiff.evaluation import pretrained as eval_pretrained
from pdiff.training import pretrain

_WORKDIR = flags.DEFINE_string("workdir", None, "Work directory.",
                               required=True)
_PRETRAIN_DIR = flags.DEFINE_string(
    "pretrain_dir", None, "Pre-training directory (default {workdir}/pretrain).")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default latest).")
_QUALITY = flags.DEFINE_string("quality", "expert",
                               "Dataset quality of the prompts.")
_NUM_SHOTS = flags.DEFINE_integer("num_shots", 5, "Few-shot trajectories.")
_EPISODES = flags.DEFINE_integer("episodes", 10, "Episodes per task.")
_SEED = flags.DEFINE_integer("seed", 0, "Evaluation seed.")
_SPLITS = flags.DEFINE_list("splits", ["train", "test"], "Task splits.")


def main(argv):
  del argv
  workdir = _WORKDIR.value
  pretrain_dir = _PRETRAIN_DIR.value or os.path.join(workdir, "pretrain")
  info = pretrain.read_policy_info(pretrain_dir)
  family = envs.make(info["family"], backend=info.get("backend"))
  plm = pretrain.load_pretrained_policy(pretrain_dir, step=_STEP.value)
  results = eval_pretrained.evaluate_pretrained(
      plm, family, os.path.join(workdir, "datasets"), quality=_QUALITY.value,
      num_shots=_NUM_SHOTS.value, num_episodes=_EPISODES.value,
      seed=_SEED.value, splits=tuple(_SPLITS.value))
  logging.info("\n%s", eval_pretrained.write_report(
      results, os.path.join(workdir, "results", "evaluate"),
      family=family.name, quality=_QUALITY.value))


if __name__ == "__main__":
  launch.run(main)
