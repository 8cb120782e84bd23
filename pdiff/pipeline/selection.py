"""Choose Prompt Diffuser's settings on validation tasks, then report them on
the test tasks.

Settings chosen by looking at test-task returns overstate what a method
gives on new tasks. The protocol here never reads a test task before the
choice is made:

1. **Validation tasks.** ``num_validation_tasks`` training tasks, evenly
   spaced over the sorted training tasks (:func:`validation_tasks`), or an
   explicit list. They leave the training split of tuning: Prompt Diffuser's
   stage-1 model is pre-trained on the other training tasks. The PLM stays
   the family's (pre-trained on every training task, so it has seen the
   validation tasks' data, never the test tasks'): validation returns run
   higher than test returns, and only the ordering of the settings is used.
2. **Validation runs.** Every variant (a name and overrides of the
   ``prompt_diffuser`` config) and the plain few-shot prompt are tuned and
   evaluated on the validation tasks, for every seed, exactly as the
   pipeline runs a table's rows (:func:`pdiff.pipeline.variants.run_variants`).
3. **Choice.** The variant of the highest mean validation return over tasks
   and seeds (the reference, the paper's setting, on a tie).
4. **Test runs.** The reference and the chosen variant run on the test
   tasks; both rows are reported, with paired differences to the few-shot
   prompt and to each other.

Runs, stage-1 models and the report are cached by fingerprint in the work
directory (shared with ``experiments/run.py``'s datasets and PLM), so a
stopped selection resumes. The report is ``{workdir}/select/select.{json,md}``.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Mapping, Sequence

import numpy as np
from absl import logging

from pdiff import atomic, envs, provenance, stages
from pdiff.pipeline import tuning_runs
from pdiff.pipeline import variants as variants_lib
from pdiff.pipeline.run import setup as setup_experiment
from pdiff.pipeline.run import with_split
from pdiff.pipeline.validate import FEW_SHOT_SOURCES, ConfigError

SPLITS = ("validation", "test")


def validation_tasks(family, count: int) -> tuple[int, ...]:
  """``count`` training tasks evenly spaced over the sorted training tasks
  (the first and the last included when ``count >= 2``).

  Raises:
    ConfigError: ``count`` is not in ``[1, number of training tasks - 1]``
      (at least one training task must stay).
  """
  train = sorted(int(t) for t in family.train_tasks)
  if not 1 <= count < len(train):
    raise ConfigError(
        f"select config: num_validation_tasks = {count}; expected 1 to "
        f"{len(train) - 1} ({family.name} has {len(train)} training tasks, "
        "and at least one must stay for training).")
  positions = np.round(np.linspace(0, len(train) - 1, count)).astype(int)
  return tuple(train[p] for p in positions)


def validation_split(family, tasks: Sequence[int]):
  """``family`` whose test tasks are ``tasks`` (training tasks held out)
  and whose training tasks are the remaining ones.

  Raises:
    ConfigError: a task is not a training task, is repeated, or none is left
      for training.
  """
  tasks = tuple(int(t) for t in tasks)
  train = tuple(int(t) for t in family.train_tasks)
  unknown = sorted(set(tasks) - set(train))
  if not tasks or unknown or len(set(tasks)) != len(tasks):
    raise ConfigError(
        f"select config: validation_tasks = {list(tasks)}; expected distinct "
        f"training tasks of {family.name} ({list(train)}); not training "
        f"tasks: {unknown}.")
  rest = tuple(t for t in train if t not in tasks)
  if not rest:
    raise ConfigError("select config: validation_tasks hold out every "
                      "training task; at least one must stay for training.")
  return dataclasses.replace(family, train_tasks=rest, test_tasks=tasks)


def check_select_config(sconf) -> None:
  """Raises ConfigError naming the first bad field of the selection config."""
  names = list(sconf.variants.keys())
  if not names:
    raise ConfigError("select config: variants is empty; expected at least "
                      "the reference.")
  if sconf.reference not in names:
    raise ConfigError(f"select config: reference = {sconf.reference!r} is "
                      f"not among the variants {names}.")


def select(config, sconf, workdir: str) -> dict:
  """Runs (or resumes) the selection; returns the report (module doc).

  Args:
    config: the run config (``experiments/configs/run.py``): family, PLM,
      data, seeds and the base Prompt Diffuser config.
    sconf: the selection's fields (``experiments/configs/selection.py``).
    workdir: the work directory.

  Raises:
    ConfigError: a bad field, or ``few_shot_source`` other than the test
      tasks' own data.
  """
  check_select_config(sconf)
  source = tuning_runs.few_shot_source(config)
  if source != FEW_SHOT_SOURCES[0]:
    raise ConfigError(f"config.few_shot_source = {source!r}: the selection "
                      f"runs the few-shot setting; expected "
                      f"{FEW_SHOT_SOURCES[0]!r}.")
  start = time.time()
  started_with = provenance.provenance()  # the code that runs
  family = envs.make(config.family, backend=config.backend)
  chosen_tasks = (tuple(sconf.validation_tasks or ()) or
                  validation_tasks(family, int(sconf.num_validation_tasks)))
  split_family = validation_split(family, chosen_tasks)
  reference = sconf.reference
  given = sconf.variants.to_dict()
  variants = {k: dict(given[k])  # the reference first
              for k in [reference] + [k for k in given if k != reference]}
  report = dict(family=family.name, seeds=list(config.seeds),
                validation_tasks=list(split_family.test_tasks),
                validation_training_tasks=list(split_family.train_tasks),
                test_tasks=list(family.test_tasks), variants=variants,
                reference=reference)
  base = setup_experiment(config, family, workdir)
  for split, tuned in (("validation", split_family), ("test", family)):
    if split == "test":
      # Only the reference and the choice run on the test tasks.
      names = dict.fromkeys([reference, report["chosen"]])
      compared = {k: variants[k] for k in names}
    else:
      compared = variants
    logging.info("selection, %s tasks %s: %d variants", split,
                 list(tuned.test_tasks), len(compared))
    _, plm_fp, digests, test_trajs, context = (
        base if tuned is family else with_split(config, base, tuned, workdir))
    inputs = tuning_runs.prepare_inputs(config, plm_fp, digests)
    run_inputs = tuning_runs.run_inputs(
        config, tuned, os.path.join(workdir, "datasets"), plm_fp, digests)
    if split == "validation":  # the test split's are the pipeline's own
      tasks = dict(train_tasks=list(tuned.train_tasks),
                   test_tasks=list(tuned.test_tasks))
      inputs["tasks"] = run_inputs["tasks"] = stages.canonical_json(tasks)
    stage1 = variants_lib.stage1_models(config, context, workdir, inputs)
    report[split] = variants_lib.run_variants(
        config, context, compared, reference, workdir, run_inputs, stage1,
        test_trajs, prefix=f"select-{split}")
    if split == "validation":
      report["chosen"] = choose(report[split], list(variants), reference)
      logging.info("selection: chose %r on the validation tasks",
                   report["chosen"])
  report.update(wall_seconds=time.time() - start, provenance=started_with,
                config=config.to_dict(), select_config=sconf.to_dict())
  out = os.path.join(workdir, "select")
  stages.write_json_atomic(os.path.join(out, "select.json"), report)
  atomic.write_bytes_atomic(os.path.join(out, "select.md"),
                            markdown(report).encode())
  return report


def choose(comparison: Mapping, names: Sequence[str], reference: str) -> str:
  """The variant of the highest mean return (``select-validation/NAME``
  rows of ``comparison``); the reference wins ties, then the first listed.
  """
  order = [reference] + [n for n in names if n != reference]
  means = {n: comparison[f"select-validation/{n}"]["mean"] for n in order}
  return max(order, key=lambda n: (means[n], -order.index(n)))


def markdown(report: Mapping) -> str:
  """The report's two tables and the choice, in plain words."""
  n = len(report["seeds"])
  seeds = f"{n} seed{'' if n == 1 else 's'}"
  lines = [f"## Settings chosen on validation tasks: {report['family']} "
           f"({seeds})", "",
           f"Validation tasks {report['validation_tasks']} (held out of the "
           f"training tasks; the PLM was pre-trained on them); test tasks "
           f"{report['test_tasks']}. Variants of the Prompt Diffuser config:",
           ""]
  for name, overrides in report["variants"].items():
    what = ", ".join(f"{k}={v!r}" for k, v in overrides.items()) or "as is"
    lines.append(f"- `{name}`: {what}")
  for split in SPLITS:
    prefix = f"select-{split}"
    lines += ["", f"Mean {split} return over tasks and seeds; paired "
              "differences by seed, 95% CI:", ""]
    lines += variants_lib.comparison_table(
        report[split], f"{prefix}/{report['reference']}")
  chosen, reference = report["chosen"], report["reference"]
  lines += ["", f"Chosen on the validation tasks: `{chosen}`"
            + (" (the reference)." if chosen == reference else
               f" (over the reference `{reference}`)."), ""]
  return "\n".join(lines)
