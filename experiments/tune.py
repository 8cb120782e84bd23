r"""Tunes prompts for every test task of a family with one method and seed.

  python experiments/tune.py --workdir=runs/cheetah_vel --method=prompt_diffuser \
      --variant=projection --seed=0

Needs ``{workdir}/datasets`` and ``{workdir}/pretrain`` (experiments/collect.py
and experiments/pretrain.py, or a first experiments/run.py); both must match
the config (their stage records are checked). Draws the seed's few-shot
trajectories as experiments/run.py does (``few_shot_source`` included), and
writes the prompts, one per test task, to
``{workdir}/tuning/{label}/seed{seed}/prompts.npz`` (``Segments``
fields with a leading task axis), per-task parameters of fine-tuning methods
as ``params.msgpack``, and the tuning metrics and fingerprints beside them as
``metrics.json``.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags, logging

from experiments import launch
from pdiff import envs, pipeline, serialization, stages
from pdiff.data import loading
from pdiff.evaluation import write_json_atomic
from pdiff.pipeline import tuning_runs
from pdiff.tuning import registry

_CONFIG = launch.define_config("experiments/configs/run.py",
                               "Pipeline config (tuning part).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Work directory.",
                               required=True)
_METHOD = flags.DEFINE_string(
    "method", "prompt_diffuser",
    "Tuning method (a name of pdiff.tuning.registry.registered()).")
_VARIANT = flags.DEFINE_string(
    "variant", None, "Row of a method with variants, e.g. 'projection' for "
    "prompt_diffuser[projection]; default: its first.")
_SEED = flags.DEFINE_integer("seed", 0, "Tuning seed.")


def main(argv):
  del argv
  config, workdir = _CONFIG.value, _WORKDIR.value
  if _METHOD.value not in registry.registered():
    raise pipeline.ConfigError(
        f"--method={_METHOD.value!r}: expected one of "
        f"{registry.registered()}.")
  config.methods = (_METHOD.value,)
  pipeline.check_run_config(config)
  family = envs.make(config.family, backend=config.backend)
  qualities = sorted({config.pretrain.quality, config.few_shot_quality})
  digests = pipeline.ensure_datasets(config, family, workdir, qualities)
  train_quality = config.pretrain.quality
  plm, plm_fp = pipeline.ensure_pretrained(config, family, workdir,
                                           digests[train_quality])
  root = os.path.join(workdir, "datasets")
  seed, method = _SEED.value, registry.get(_METHOD.value)
  rows = dict(method.rows(config.tuning[method.name]))
  label = (f"{method.name}[{_VARIANT.value}]" if _VARIANT.value
           else next(iter(rows)))
  if label not in rows:
    raise pipeline.ConfigError(f"--variant={_VARIANT.value!r}: {method.name} "
                               f"has the rows {sorted(rows)}.")
  mconf = rows[label]
  train = loading.pooled(pipeline.load_split(
      family, root, train_quality, list(family.train_tasks)))
  context = pipeline.make_context(plm, family, train)
  inputs = {"plm": plm_fp}
  prepared = None
  if method.prepare is not None:
    prepared, inputs["prepare"] = pipeline.ensure_prepared(
        config, method, mconf, context, workdir, seed,
        tuning_runs.prepare_inputs(config, plm_fp, digests),
        method.prepare(context, mconf))
  tests = pipeline.load_split(family, root, config.few_shot_quality,
                              list(family.test_tasks))
  pools = tuning_runs.few_shot_pools(config, family, root, tests)
  few_shot = pipeline.draw_few_shot(pools, config.num_shots,
                                    pipeline.seed_key(config, seed))
  data = pipeline.stacked(few_shot if method.data == "few_shot" else tests)
  tune = method.make_tune(context, mconf)
  keys = jax.random.split(pipeline.run_keys(config, seed)[0], len(tests))
  tuned, metrics = tune(prepared, jax.tree.map(jnp.asarray, data), keys)
  out = os.path.join(workdir, "tuning", label, f"seed{seed}")
  os.makedirs(out, exist_ok=True)
  arrays = {k: np.asarray(v) for k, v in tuned.prompt._asdict().items()}
  np.savez(os.path.join(out, "prompts.tmp.npz"), **arrays)
  os.replace(os.path.join(out, "prompts.tmp.npz"),
             os.path.join(out, "prompts.npz"))
  if method.params_per_task:
    serialization.save_params(os.path.join(out, "params.msgpack"),
                              tuned.params)
  subtree = dict(label=label, seed=seed, root_seed=config.seed,
                 num_shots=config.num_shots,
                 few_shot_quality=config.few_shot_quality,
                 config=mconf.to_dict())
  if tuning_runs.few_shot_source(config) != "test_task":
    subtree["few_shot_source"] = tuning_runs.few_shot_source(config)
  record = stages.make_record("tune", 1, subtree, inputs)
  write_json_atomic(os.path.join(out, "metrics.json"),
                    dict(record, tasks=list(family.test_tasks),
                         metrics={k: np.asarray(v).tolist()
                                  for k, v in metrics.items()}))
  logging.info("wrote %s", out)


if __name__ == "__main__":
  launch.run(main)
