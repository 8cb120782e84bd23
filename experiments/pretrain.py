r"""Pre-trains Prompt-DT on a family's training tasks, then evaluates it.

  python experiments/pretrain.py \
      --config=experiments/configs/pretrain.py:cheetah_vel,cpu \
      --workdir=/tmp/pdiff

Reads ``{workdir}/datasets`` (collected first if missing), writes
``{workdir}/pretrain/`` (checkpoints, TensorBoard, policy.json, and the stage
record experiments/run.py checks) and
``{workdir}/results/pretrain_eval.{json,md}`` (and, with ``--export_to``, a
shippable copy of the PLM; ``--export_step`` evaluates and exports an
earlier checkpoint instead of the latest, into
``pretrain_eval_step_{STEP}.{json,md}``). A stopped run resumes from its
latest checkpoint; a work directory pre-trained with another config is
refused, naming the fields that differ. ``--distributed`` calls
``jax.distributed.initialize()`` first (multi-host; see docs/training.md,
"Multiple devices and hosts").
"""

import glob
import os

import jax
from absl import flags, logging

from experiments import launch
from experiments.configs import run as run_configs
from pdiff import parallel, pipeline, stages
from pdiff.evaluation import pretrained as eval_pretrained
from pdiff.pipeline import validate
from pdiff.training import pretrain as pretrain_lib

_CONFIG = launch.define_config("experiments/configs/pretrain.py",
                               "Pre-training config.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Work directory.",
                               required=True)
_EXPORT_TO = flags.DEFINE_string(
    "export_to", None,
    "Also write a compact copy of the PLM there (params.msgpack, config.json,"
    " policy.json, curve.json, the evaluation, the pre-training config and"
    " the return curve of evaluate.py --curve where measured),"
    " e.g. pdiff/assets/pretrained/FAMILY_PRESET to ship it.")
_EXPORT_STEP = flags.DEFINE_integer(
    "export_step", None,
    "With --export_to: the checkpoint to evaluate and export (default the"
    " latest), e.g. one chosen on the training tasks' return curve of"
    " evaluate.py --curve.")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Initialise jax.distributed (multi-host runs).")


def main(argv):
  del argv
  parallel.maybe_initialize_distributed(_DISTRIBUTED.value)
  config, workdir = _CONFIG.value, _WORKDIR.value
  family = validate.make_family(config)
  validate.check_pretrain_config(config, family.name, path="")
  # The pipeline's stages, so that experiments/run.py with the same
  # pre-training config and pretrained="" reuses this PLM.
  run_config = run_configs.get_config(family.name)
  run_config.backend = config.backend
  run_config.collect.backend = config.backend
  run_config.collect.qualities = (config.quality,)
  run_config.pretrain = config
  run_config.pretrained = ""
  dataset_root = os.path.join(workdir, "datasets")
  digests = pipeline.ensure_datasets(run_config, family, workdir,
                                     [config.quality])
  plm, _ = pipeline.ensure_pretrained(run_config, family, workdir,
                                      digests[config.quality])
  report = os.path.join(workdir, "results", "pretrain_eval")
  step = _EXPORT_STEP.value
  if step is not None:
    if not _EXPORT_TO.value:
      raise ValueError("--export_step needs --export_to.")
    # Raises naming the kept steps when there is no such checkpoint.
    plm = pretrain_lib.load_pretrained_policy(
        os.path.join(workdir, "pretrain"), step=step)
    report += f"_step_{step}"
  if config.eval_episodes:
    # Every process evaluates (the same episodes); process 0 writes.
    results = eval_pretrained.evaluate_pretrained(
        plm, family, dataset_root, quality=config.quality, num_shots=5,
        num_episodes=config.eval_episodes, seed=config.train.seed)
    if jax.process_index() == 0:
      logging.info("\n%s", eval_pretrained.write_report(
          results, report, family=family.name, quality=config.quality))
  if _EXPORT_TO.value and jax.process_index() == 0:
    config_file = os.path.join(workdir, "pretrain", "pretrain_config.json")
    stages.write_json_atomic(config_file, config.to_dict())
    extra = {"pretrain_config.json": config_file}
    if config.eval_episodes:
      extra.update({"evaluation.md": report + ".md",
                    "evaluation.json": report + ".json"})
    # The return over checkpoints, where measured (experiments/evaluate.py
    # --curve; return_curve_*.json of other seeds may be put beside it).
    for curve in sorted(glob.glob(os.path.join(workdir, "results",
                                               "return_curve_*"))):
      extra[os.path.basename(curve)] = curve
    pretrain_lib.export_pretrained(os.path.join(workdir, "pretrain"),
                                   _EXPORT_TO.value, step=step,
                                   extra_files=extra)
    logging.info("exported the PLM to %s", _EXPORT_TO.value)


if __name__ == "__main__":
  launch.run(main)
