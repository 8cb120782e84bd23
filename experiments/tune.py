r"""Tunes prompts for every test task of a family with one method and seed.

  python experiments/tune.py --workdir=runs/cheetah_vel --method=prompt_diffuser \
      --mode=projection --seed=0

Needs ``{workdir}/datasets`` and ``{workdir}/pretrain`` (experiments/collect.py
and experiments/pretrain.py, or a first experiments/run.py). Writes the
prompts, one per test task, to
``{workdir}/tuning/{label}/seed{seed}/prompts.npz`` (``Segments`` fields with
a leading task axis) and the tuning metrics beside them as ``metrics.json``.
"""

import os

import jax
import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from pdiff import envs, pipeline
from pdiff.evaluation import write_json_atomic
from pdiff.training import pretrain

_CONFIG = config_flags.DEFINE_config_file(
    "config", "experiments/configs/run.py", "Pipeline config (tuning part).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Work directory.",
                               required=True)
_METHOD = flags.DEFINE_enum("method", "prompt_diffuser", pipeline.METHODS,
                            "Tuning method.")
_MODE = flags.DEFINE_enum("mode", "projection", ("dm_only", "sum",
                                                 "projection"),
                          "Prompt Diffuser's gradient combination.")
_SEED = flags.DEFINE_integer("seed", 0, "Tuning seed.")


def main(argv):
  del argv
  config, workdir = _CONFIG.value, _WORKDIR.value
  family = envs.make(config.family, backend=config.backend)
  root = os.path.join(workdir, "datasets")
  plm = pretrain.load_pretrained_policy(os.path.join(workdir, "pretrain"))
  model = params = None
  mode = _MODE.value if _METHOD.value == "prompt_diffuser" else None
  if _METHOD.value == "prompt_diffuser":
    model, params = pipeline.ensure_diffuser(config, plm, family, workdir, root)
  few_shot = pipeline.load_few_shot(config, family, root)
  tune = pipeline.make_tuner(_METHOD.value, config, plm, model, mode)
  key = jax.random.fold_in(jax.random.key(config.seed), _SEED.value)
  tuned, metrics = tune(few_shot, params, key)
  label = f"{_METHOD.value}[{mode}]" if mode else _METHOD.value
  out = os.path.join(workdir, "tuning", label, f"seed{_SEED.value}")
  os.makedirs(out, exist_ok=True)
  arrays = {k: np.asarray(v) for k, v in tuned.prompt._asdict().items()}
  np.savez(os.path.join(out, "prompts.tmp.npz"), **arrays)
  os.replace(os.path.join(out, "prompts.tmp.npz"),
             os.path.join(out, "prompts.npz"))
  write_json_atomic(os.path.join(out, "metrics.json"),
                    dict(tasks=list(family.test_tasks), metrics=metrics))
  logging.info("wrote %s", out)


if __name__ == "__main__":
  app.run(main)
