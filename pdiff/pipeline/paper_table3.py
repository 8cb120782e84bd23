"""The paper's Table 3: ant-dir out of distribution, few-shot and zero-shot.

The family (``ant_dir_10``: Prompt-DT's out-of-distribution split of
ant-dir's goal directions, 8 training and 3 test tasks) runs the pipeline
once per setting:

* ``few_shot``: every method gets ``num_shots`` trajectories of each test
  task (``few_shot_source="test_task"``), as in Table 1;
* ``zero_shot``: no data of the test tasks. Every method gets, per test
  task, ``num_shots`` trajectories drawn from the pooled training tasks'
  datasets (``few_shot_source="training_tasks"``, the same seeded draw for
  every method of a seed); methods that would read a test task's dataset
  or play online episodes on it are refused.

Each setting's method x seed runs and table live in
``{family dir}/table3/{setting}/results/``; the datasets, the PLM and Prompt
Diffuser's stage-1 models are the family's (``{family dir}``), computed once
and found by fingerprint by both settings and by the other experiments.

The section has, per row, three columns per setting: the mean return with
its interval over seeds, the difference to ``prompt_dt`` of the same
setting (paired by seed) and the published figure.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import ml_collections
from absl import logging

from pdiff.pipeline import paper_cells as cells
from pdiff.pipeline.run import run as run_pipeline

# The settings of the table, in column order.
SETTINGS = ("few_shot", "zero_shot")
# The run config's few_shot_source of each setting.
SOURCES = {"few_shot": "test_task", "zero_shot": "training_tasks"}
# How the table names each setting.
NAMES = {"few_shot": "few-shot", "zero_shot": "zero-shot"}
# Whose trajectories each setting's few-shot data are.
DATA = {"few_shot": "the test tasks (few-shot)",
        "zero_shot": "the training tasks (zero-shot)"}


def check_settings(settings: Sequence[str]) -> None:
  """Raises ``pdiff.pipeline.validate.ConfigError`` naming
  ``config.settings`` unless ``settings`` are distinct :data:`SETTINGS`."""
  cells.check_distinct("settings", settings, SETTINGS)


def setting_config(config: ml_collections.ConfigDict,
                   setting: str) -> ml_collections.ConfigDict:
  """A family's run config with the few-shot source of ``setting``."""
  c = config.copy_and_resolve_references()
  c.few_shot_source = SOURCES[setting]
  return c


def results_dir(family_dir: str, setting: str) -> str:
  """Where ``setting``'s ``results/`` (runs and table) go."""
  return os.path.join(family_dir, "table3", setting)


def published_figure(published: Mapping, setting: str, method: str,
                     label: str) -> dict | None:
  """The published figure beside row ``label`` of ``setting``.

  Args:
    published: the published JSON's ``table3``.
    setting: one of :data:`SETTINGS`.
    method: the row's method.
    label: the row's label; only the row standing for the paper's method
      (:func:`paper_cells.paper_row`) gets its figure.

  Returns:
    ``{"mean", "plus_minus"?}`` of the method, or of ``"baselines"`` (then
    with ``group="baselines"``) for a row other than Prompt Diffuser's where
    the paper quotes the baselines as a group; None without a figure.
  """
  if cells.paper_row(method) != label:
    return None
  quoted = published.get("settings", {}).get(setting, {})
  figure = quoted.get("methods", {}).get(method)
  if figure is not None:
    return dict(figure)
  if method != "prompt_diffuser" and "baselines" in quoted:
    return dict(quoted["baselines"], group="baselines")
  return None


def _published_text(figure: Mapping | None) -> str:
  text = cells.published_cell(figure)
  return f"{text} (baselines)" if figure and figure.get("group") else text


def table3_section(by_setting: Mapping[str, Mapping],
                   published: Mapping) -> dict:
  """Table 3's part of one family.

  Args:
    by_setting: ``{setting: pdiff.pipeline.run's results dict}``, in column
      order; every setting has the same rows.
    published: the published JSON's ``table3``.

  Returns:
    ``columns``; per row (``row_order``) its ``cells`` and, per setting,
    its figures, ``difference`` to ``prompt_dt`` (paired by seed) and
    ``published`` figure; ``settings``, each setting's ``few_shot_sources``,
    ``fingerprints`` and ``wall_seconds_by_setting``, and one significance
    sentence per setting.
  """
  settings = list(by_setting)
  rows = {s: cells.table_rows(r) for s, r in by_setting.items()}
  labels = list(rows[settings[0]])
  level = cells.confidence_level(rows[settings[0]])
  columns = ["method"]
  for s in settings:
    columns += [f"{NAMES[s]}: return [{level} CI]",
                f"{NAMES[s]}: difference to {cells.BASELINE} [{level} CI]",
                f"{NAMES[s]}: published"]
  out_rows = {}
  for label in labels:
    row_cells, per_setting = [label], {}
    for s in settings:
      row = rows[s][label]
      diff = cells.difference(row)
      pub = published_figure(published, s, row["method"], label)
      row_cells += [cells.cell(row), cells.difference_cell(label, diff),
                    _published_text(pub)]
      per_setting[s] = dict(cells.figures(row), difference=diff,
                            published=pub)
    out_rows[label] = dict(method=rows[settings[0]][label]["method"],
                           settings=per_setting, cells=row_cells)
  sentences = [f"{NAMES[s].capitalize()}: "
               + cells.significance_sentence(by_setting[s], rows[s])
               for s in settings]
  return dict(cells.common(*(by_setting[s] for s in settings)),
              columns=columns,
              row_order=labels, rows=out_rows, settings=settings,
              few_shot_sources={s: SOURCES[s] for s in settings},
              fingerprints={s: r.get("fingerprint")
                            for s, r in by_setting.items()},
              wall_seconds_by_setting={s: r.get("wall_seconds")
                                       for s, r in by_setting.items()},
              significance_sentence=" ".join(sentences))


def data_phrase(section: Mapping) -> str:
  """Whose few-shot data a section's settings use, for its heading."""
  return (f"{section['few_shot_quality']} data of "
          + " or ".join(DATA[s] for s in section["settings"]))


def caption_text(published: Mapping) -> str:
  """Table 3's part of the caption: the protocol, then the published
  figures (``published``: the whole published JSON)."""
  table3 = published["table3"]
  names = {m: v["paper_name"]
           for m, v in published["table1"]["methods"].items()}
  parts = []
  for setting in SETTINGS:
    quoted = table3["settings"].get(setting, {})
    figures = [f"{names.get(m, m)} {cells.published_cell(f)}"
               for m, f in quoted.get("methods", {}).items()]
    if "baselines" in quoted:
      figures.append("the baselines "
                     + cells.published_cell(quoted["baselines"]))
    parts.append(f"{NAMES[setting]} " + ", ".join(figures))
  return (
      " Few-shot: every method gets the same num_shots trajectories of each "
      "test task. Zero-shot: no data of the test tasks; every method gets, "
      "per test task, num_shots trajectories drawn at random from the pooled "
      "training tasks' datasets (the same draw for every method of a seed), "
      "and no method may read a test task's dataset or play online episodes "
      "on it (docs/paper.md). The PLM and Prompt Diffuser's stage-1 model "
      f"are the same in both settings. Published ({table3['source']}): "
      + "; ".join(parts) + ". pdiff's physics and data differ (Brax, not "
      "MuJoCo), so only the orderings and the drop from few-shot to "
      "zero-shot compare.")


def run_family(configs: Mapping[str, ml_collections.ConfigDict],
               family_dir: str, published: Mapping) -> dict:
  """Runs (or resumes) every setting of one family; returns its section.

  Args:
    configs: ``{setting: run config}`` (:func:`setting_config`), checked.
    family_dir: the family's work directory (datasets, PLM, stage-1
      models); each setting's results go to :func:`results_dir`.
    published: the published JSON's ``table3``.
  """
  by_setting = {}
  for setting, c in configs.items():
    logging.info("=== table3: %s, %s", c.family, NAMES[setting])
    by_setting[setting] = run_pipeline(
        c, family_dir, results_dir=results_dir(family_dir, setting))
  return table3_section(by_setting, published)
