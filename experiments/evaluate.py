r"""Evaluates a pre-trained Prompt-DT on a family's train and test tasks.

  python experiments/evaluate.py --workdir=runs/cheetah_vel

Reads ``{workdir}/pretrain`` (or ``--pretrain_dir``) and
``{workdir}/datasets``; writes ``{workdir}/results/evaluate.{json,md}``: per
task, the mean +- std return over episodes with a few-shot prompt, next to the
mean return of the dataset the prompt comes from.

With ``--curve`` it evaluates every kept checkpoint instead (or those of
``--steps``), on the training tasks unless ``--splits`` says otherwise, and
writes ``{workdir}/results/return_curve_{split}[_seed_{seed}].{json,md}``
(the suffix for a seed other than 0): the PLM's return
against its data over pre-training, to choose the number of steps (and
compare sizes and K) on training tasks. A stopped curve resumes; one measured
with other settings is refused.

  python experiments/evaluate.py --workdir=runs/cheetah_vel --curve
"""

import os

from absl import flags, logging

from experiments import launch
from pdiff import envs
from pdiff.evaluation import pretrained as eval_pretrained
from pdiff.training import checkpointing, pretrain

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
_SPLITS = flags.DEFINE_list(
    "splits", ["train", "test"],
    "Task splits (with --curve: default train only).")
_CURVE = flags.DEFINE_bool(
    "curve", False, "Evaluate every kept checkpoint (a return curve).")
_STEPS = flags.DEFINE_list(
    "steps", None, "With --curve: checkpoint steps (default all kept).")


def main(argv):
  del argv
  workdir = _WORKDIR.value
  pretrain_dir = _PRETRAIN_DIR.value or os.path.join(workdir, "pretrain")
  info = pretrain.read_policy_info(pretrain_dir)
  family = envs.make(info["family"], backend=info.get("backend"))
  if _CURVE.value:
    return _curve(workdir, pretrain_dir, family)
  plm = pretrain.load_pretrained_policy(pretrain_dir, step=_STEP.value)
  results = eval_pretrained.evaluate_pretrained(
      plm, family, os.path.join(workdir, "datasets"), quality=_QUALITY.value,
      num_shots=_NUM_SHOTS.value, num_episodes=_EPISODES.value,
      seed=_SEED.value, splits=tuple(_SPLITS.value))
  logging.info("\n%s", eval_pretrained.write_report(
      results, os.path.join(workdir, "results", "evaluate"),
      family=family.name, quality=_QUALITY.value))


def _curve(workdir: str, pretrain_dir: str, family) -> None:
  kept = checkpointing.checkpoint_steps(pretrain_dir)
  if not kept:
    raise ValueError(f"{pretrain_dir}: no checkpoints to evaluate (--curve "
                     "reads a pre-training directory, not an exported PLM).")
  steps = kept
  if _STEPS.value:
    try:
      steps = sorted({int(s) for s in _STEPS.value})
    except ValueError as e:
      raise ValueError(f"--steps: integers expected, got {_STEPS.value}") from e
    missing = sorted(set(steps) - set(kept))
    if missing:
      raise ValueError(f"--steps: no checkpoint at {missing} in "
                       f"{pretrain_dir}; kept: {kept}.")
  splits = _SPLITS.value if _SPLITS.present else ["train"]
  for split in splits:
    suffix = f"_seed_{_SEED.value}" if _SEED.value else ""
    out = os.path.join(workdir, "results", f"return_curve_{split}{suffix}")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    curve = eval_pretrained.return_curve(
        lambda step: pretrain.load_pretrained_policy(pretrain_dir, step=step),
        steps, family,
        os.path.join(workdir, "datasets"), path=out + ".json",
        quality=_QUALITY.value, num_shots=_NUM_SHOTS.value,
        num_episodes=_EPISODES.value, seed=_SEED.value, split=split,
        log=logging.info)
    md = eval_pretrained.curve_markdown(curve)
    with open(out + ".md.tmp", "w") as f:
      f.write(md)
    os.replace(out + ".md.tmp", out + ".md")
    logging.info("\n%s", md)


if __name__ == "__main__":
  launch.run(main)
