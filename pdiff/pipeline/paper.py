"""The paper's experiments over task families: Tables 1 to 3, the ablation.

:func:`run_experiment` runs :func:`pdiff.pipeline.run` for each family in
``{workdir}/{family}``, shared by the experiments (each finds the other's
datasets, PLM, Prompt Diffuser stage-1 models and runs of the same config
through their fingerprints), then writes
``{workdir}/paper/{experiment}.{json,md,png}``:

* ``table1``: per family, every method's return with its interval over
  seeds, its difference to the few-shot prompt (``prompt_dt``) paired by
  seed, the normalised score ``(R - R_random) / (R_upper - R_random)`` and
  the published figure beside it; then which differences are significant
  and whether the paper's orderings hold; with two families or more, the
  orderings and normalised scores across them
  (:mod:`pdiff.pipeline.paper_across`);
* ``ablation``: per family, each of Prompt Diffuser's gradient combinations
  with its difference to ``prompt_diffuser[dm_only]``, paired by seed;
* ``table2``: per family, every method with few-shot data (and so initial
  prompts) of each quality in ``config.qualities``: its return with its
  interval and its difference to the few-shot prompt of the same quality,
  and each row's change from the first quality to the others
  (:mod:`pdiff.pipeline.paper_table2`);
* ``table3``: per family, every method in each setting of
  ``config.settings``, few-shot (the test tasks' data) and zero-shot (the
  training tasks' data), each setting a pipeline run of its own
  (:mod:`pdiff.pipeline.paper_table3`), with the published figures.

A family with a success metric also has each row's success rate (mean over
seeds, in %) beside its return. With ``config.merge`` naming an earlier
report of the same experiment, its other families are kept beside the ones
computed (:mod:`pdiff.pipeline.paper_merge`): a table can be computed family
by family.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence

import ml_collections
import numpy as np
from absl import logging

from pdiff import atomic, envs, stages
from pdiff.evaluation import report as report_lib
from pdiff.evaluation import statistics
from pdiff.pipeline import (
  paper_across,
  paper_cells,
  paper_merge,
  paper_table2,
  paper_table3,
  prepare,
)
from pdiff.pipeline.paper_cells import (
  BASELINE,
  UPPER_BOUND,
  paper_row,
  seed_difference,
)
from pdiff.pipeline.paper_cells import cell as _cell
from pdiff.pipeline.paper_cells import common as _common
from pdiff.pipeline.paper_cells import figures as _figures
from pdiff.pipeline.paper_cells import table_rows as _rows
from pdiff.pipeline.run import run as run_pipeline
from pdiff.pipeline.validate import ConfigError, check_run_config
from pdiff.tuning.prompt_diffuser_method import NAMED_SETTINGS

EXPERIMENTS = ("table1", "ablation", "table2", "table3")
PUBLISHED = os.path.join(os.path.dirname(os.path.dirname(__file__)), "assets",
                         "published", "prompt_diffuser.json")
ABLATION_REFERENCE = "prompt_diffuser[dm_only]"
# Families' charts per row of an experiment's figure.
FIGURE_COLUMNS = 2
# (higher, lower): the orderings of the paper's Table 1, in every environment.
PAPER_ORDERINGS = (("prompt_diffuser", "prompt_tuning_dt"),
                   ("prompt_diffuser", "prompt_dt"),
                   ("prompt_tuning_dt", "prompt_dt"))
_fmt = statistics.format_number


def load_published(path: str = PUBLISHED) -> dict:
  """The published figures (``pdiff/assets/published/prompt_diffuser.json``)."""
  with open(path) as f:
    return json.load(f)


def check_config(config: ml_collections.ConfigDict) -> None:
  """Raises :class:`ConfigError` naming the first bad field of ``config``."""
  if config.experiment not in EXPERIMENTS:
    raise ConfigError(f"config.experiment = {config.experiment!r}: expected "
                      f"one of {EXPERIMENTS}.")
  families = tuple(config.families)
  known = sorted(config.runs.keys())
  if (not families or len(set(families)) != len(families)
      or any(f not in known for f in families)):
    raise ConfigError(f"config.families = {families!r}: expected distinct "
                      f"families with a run config in config.runs ({known}).")
  for family in families:
    if config.runs[family].family != family:
      raise ConfigError(f"config.runs.{family}.family = "
                        f"{config.runs[family].family!r}: expected {family!r}.")
  if config.experiment == "table2":
    paper_table2.check_qualities(config.get("qualities", ()))
  if config.experiment == "table3":
    paper_table3.check_settings(config.get("settings", ()))
  if (config.experiment in ("table2", "table3")
      and BASELINE not in config.methods):
    raise ConfigError(f"config.methods = {tuple(config.methods)!r}: expected "
                      f"{BASELINE!r} among them (the baseline of "
                      f"{config.experiment}'s differences).")
  if config.experiment == "ablation" and "prompt_diffuser" not in config.methods:
    raise ConfigError(f"config.methods = {tuple(config.methods)!r}: expected "
                      "'prompt_diffuser' among them for the ablation.")


def family_config(config: ml_collections.ConfigDict,
                  family: str) -> ml_collections.ConfigDict:
  """``config.runs[family]`` with the experiment's methods, seeds, modes and
  named settings."""
  c = config.runs[family].copy_and_resolve_references()
  c.methods = tuple(config.methods)
  c.seeds = tuple(config.seeds)
  c.tuning.prompt_diffuser.modes = tuple(config.modes)
  c.tuning.prompt_diffuser.named_settings = tuple(
      config.get("named_settings", ()))
  return c


def random_return(summary: Mapping, test_tasks: Sequence[int]) -> float:
  """Mean return of the test tasks' random datasets.

  Args:
    summary: a dataset ``returns.json``: ``{quality: {task index (str):
      mean return}}``.
    test_tasks: the task indices to average over.

  Returns:
    The mean over ``test_tasks`` of ``summary["random"]``.
  """
  if "random" not in summary:
    raise ValueError(f"the dataset summary has no 'random' quality (has "
                     f"{sorted(summary)}).")
  return float(np.mean([summary["random"][str(t)] for t in test_tasks]))


def normalized_score(value: float, random: float, upper: float) -> float | None:
  """``(value - random) / (upper - random)``; ``None`` when upper == random."""
  return None if upper == random else float((value - random) / (upper - random))


def orderings(rows: Mapping[str, Mapping], *,
              confidence: float = 0.95) -> list[dict]:
  """Whether pdiff's means order each pair as the paper does.

  Returns:
    Per pair of :data:`PAPER_ORDERINGS`: ``higher``, ``lower`` (row labels),
    ``measured`` (both rows present) and, when measured, ``difference``
    (:func:`seed_difference` of higher - lower), ``same_order`` (whether its
    mean is positive; ``None`` for equal means) and ``significant``.
  """
  out = []
  for high, low in PAPER_ORDERINGS:
    entry = dict(higher=paper_row(high), lower=paper_row(low))
    entry["measured"] = entry["higher"] in rows and entry["lower"] in rows
    if entry["measured"]:
      d = seed_difference(rows[entry["higher"]], rows[entry["lower"]],
                          confidence=confidence)
      entry.update(difference=d, same_order=(None if d["mean"] == 0
                                             else d["mean"] > 0),
                   significant=d["significant"])
    out.append(entry)
  return out


def ordering_sentence(family: str, pairs: Sequence[Mapping]) -> str:
  """One sentence on :func:`orderings`' pairs of ``family``."""
  parts = []
  for p in pairs:
    claim = f"{p['higher']} above {p['lower']}"
    if not p["measured"]:
      parts.append(f"{claim} is not measured (a row is missing)")
      continue
    d = p["difference"]
    sig = paper_cells.significance_phrase(d)
    order = {True: "holds", False: "is reversed",
             None: "is a tie"}[p["same_order"]]
    interval = statistics.format_interval(d["ci_low"], d["ci_high"])
    parts.append(f"{claim} {order} ({_fmt(d['mean'], sign=True)}, CI "
                 f"{interval}, {sig})")
  return (f"On {family}, of the paper's orderings: " + "; ".join(parts) + ".")


def table1_section(results: Mapping, random: float | None,
                   published: Mapping) -> dict:
  """Table 1's part of one family, from its results dict.

  Args:
    results: :func:`pdiff.pipeline.run`'s dict.
    random: the random datasets' mean test return (``None``: no score).
    published: ``{method: {"returns": {family: {"mean", "plus_minus"}}}}``
      (the published JSON's ``table1.methods``).

  Returns:
    ``columns`` and per row (``row_order``) its figures and ``cells`` (the
    markdown's), the significance and ordering sentences, and the run's
    ``fingerprint``, ``provenance`` and ``wall_seconds``. With success
    rates (a family with a success metric) every row also holds
    ``success_rate`` and a success-rate cell after the return's.
  """
  rows = _rows(results)
  family = results["family"]
  upper = rows[UPPER_BOUND]["mean"] if UPPER_BOUND in rows else None
  scored = upper is not None and random is not None
  success = report_lib.has_success(rows)
  level = paper_cells.confidence_level(rows)
  columns = ["method", f"return, mean [{level} CI]"]
  columns += [report_lib.SUCCESS_HEADER] if success else []
  columns += [f"difference to {BASELINE} [{level} CI]"]
  columns += ["normalised score"] if scored else []
  columns += ["published"]
  out_rows = {}
  for label, row in rows.items():
    diff = paper_cells.difference(row)
    score = normalized_score(row["mean"], random, upper) if scored else None
    pub = None
    if paper_row(row["method"]) == label:
      pub = published.get(row["method"], {}).get("returns", {}).get(family)
    cells = [label, _cell(row)]
    cells += [report_lib.success_cell(row)] if success else []
    cells.append(paper_cells.difference_cell(label, diff))
    if scored:
      cells.append(_fmt(score, 2))
    cells.append(paper_cells.published_cell(pub))
    out_rows[label] = dict(_figures(row, success), method=row["method"],
                           difference=diff, normalized_score=score,
                           published=pub, cells=cells)
  sentence = paper_cells.significance_sentence(results, rows)
  pairs = orderings(rows)
  return dict(_common(results), columns=columns, row_order=list(rows),
              rows=out_rows, random_return=random, upper_bound_return=upper,
              significance_sentence=sentence, orderings=pairs,
              ordering_sentence=ordering_sentence(family, pairs))


def ablation_section(results: Mapping) -> dict:
  """The ablation's part of one family: Prompt Diffuser's rows, each with
  its difference to :data:`ABLATION_REFERENCE`, paired by seed."""
  rows = {k: r for k, r in _rows(results).items()
          if r["method"] == "prompt_diffuser"}
  ref = ABLATION_REFERENCE if ABLATION_REFERENCE in rows else None
  success = report_lib.has_success(rows)
  level = paper_cells.confidence_level(rows)
  columns = ["mode", f"return, mean [{level} CI]"]
  columns += [report_lib.SUCCESS_HEADER] if success else []
  columns += [f"difference to {ref or 'the reference'} [{level} CI]"]
  out_rows, compared = {}, {}
  for label, row in rows.items():
    diff = (seed_difference(row, rows[ref], confidence=row["confidence"])
            if ref is not None and label != ref else None)
    compared[label] = dict(row, paired=diff) if diff else dict(row)
    cells = [label, _cell(row)]
    cells += [report_lib.success_cell(row)] if success else []
    cells.append(_cell(diff, sign=True) if diff else
                 ("baseline" if label == ref else "n/a"))
    out_rows[label] = dict(_figures(row, success), difference=diff,
                           cells=cells)
  return dict(_common(results), columns=columns, row_order=list(rows),
              rows=out_rows, reference=ref,
              significance_sentence=statistics.significance_sentence(
                  compared, ref))


def named_settings_text(names: Sequence[str]) -> str:
  """The sentence naming Prompt Diffuser's rows of pdiff's named settings
  (``prompt_diffuser_method.NAMED_SETTINGS``), or ``""`` without any."""
  if not names:
    return ""
  described = "; ".join(
      f"`prompt_diffuser[{name}]` ("
      + ", ".join(f"{k} = {v}"
                  for k, v in NAMED_SETTINGS[name].overrides.items())
      + f") was {NAMED_SETTINGS[name].origin}" for name in names)
  return (" Rows of named settings are pdiff's, not the paper's, and have no "
          f"published figure: {described}.")


def caption(experiment: str, source: str | None = None, *,
            success: bool = False, quoted: Mapping | None = None,
            published: Mapping | None = None,
            named_settings: Sequence[str] = ()) -> str:
  """The paragraph under an experiment's tables (``success``: a table has a
  success-rate column; ``quoted``: table2's published summary per method,
  the published JSON's ``table2.quoted``; ``published``: the whole
  published JSON, for table3; ``named_settings``: Prompt Diffuser's named
  settings with a row)."""
  text = ("Mean over seeds of pdiff's task-averaged test return, with its "
          "Student-t interval over seeds; differences are paired by seed.")
  if success:
    text += " " + report_lib.SUCCESS_CAPTION
  text += named_settings_text(named_settings)
  if experiment == "ablation":
    return text + (" The paper's Figure 3 gives no numbers, so there is no "
                   "published column.")
  if experiment == "table3":
    return text + paper_table3.caption_text(published or load_published())
  if experiment == "table2":
    return text + paper_table2.caption_text(source, quoted)
  return text + (
      " The normalised score is (R - R_random) / (R_upper - R_random): "
      "R_random is the mean return of the test tasks' random datasets, "
      f"R_upper the mean of the {UPPER_BOUND} row. pdiff's physics and data "
      "differ from the paper's (Brax, not MuJoCo; its own behaviour policies "
      "and datasets), so its returns do not compare with the published "
      "ones: only orderings and ratios to each family's upper bound do. "
      f"Published figures: {source}; the paper's Prompt Diffuser stands "
      f"beside {paper_row('prompt_diffuser')}. The paper's averages are "
      "over its four environments, Meta-World reach among them "
      "(pdiff/assets/published/prompt_diffuser.json); pdiff's reach family "
      "(metaworld_reach) runs Meta-World's own environment, reach-v3 with "
      "the v2 reward.")


def markdown(report: Mapping) -> str:
  """The markdown of an experiment's report (:func:`run_experiment`)."""
  title = {"table1": "Table 1: few-shot prompt tuning, every method",
           "ablation": "Ablation: Prompt Diffuser's gradient combinations",
           "table2": "Table 2: quality of the few-shot data and prompts",
           "table3": "Table 3: ant-dir out of distribution, few-shot and "
                     "zero-shot"}
  lines = [f"## {title[report['experiment']]}", ""]
  for family in report["family_order"]:
    s = report["families"][family]
    n = len(s["seeds"])
    data = ("data of each quality" if "qualities" in s
            else paper_table3.data_phrase(s) if "settings" in s
            else f"{s['few_shot_quality']} data")
    lines += [f"### {family} ({n} seed{'' if n == 1 else 's'}, "
              f"{s['num_shots']}-shot {data})", "",
              "| " + " | ".join(s["columns"]) + " |",
              "|" + "|".join("---" for _ in s["columns"]) + "|"]
    lines += ["| " + " | ".join(s["rows"][label]["cells"]) + " |"
              for label in s["row_order"]]
    lines += ["", s["significance_sentence"]]
    if "ordering_sentence" in s:
      lines += ["", s["ordering_sentence"]]
    lines.append("")
  # Recomputed rather than read from the report: its JSON holds the methods
  # with sorted keys, and the table follows the rows' order.
  across = across_families(report)
  if across is not None:
    lines += paper_across.markdown_lines(across) + [""]
  return "\n".join(lines + [report["caption"], ""])


def across_families(report: Mapping) -> dict | None:
  """Table 1's :func:`pdiff.pipeline.paper_across.summary` of a report with
  two families or more, with the published averages; ``None`` otherwise."""
  if report["experiment"] != "table1":
    return None
  return paper_across.summary(report, load_published()["table1"]["methods"])


def _groups(section: Mapping) -> tuple[str | None, list]:
  """``(key, names)`` of a section's column groups: table2's qualities,
  table3's settings, or ``(None, [])``."""
  for key in ("qualities", "settings"):
    if key in section:
      return key, list(section[key])
  return None, []


def figure_grid(num_families: int) -> tuple[int, int]:
  """``(rows, columns)`` of an experiment's figure: the families' charts
  left to right, at most :data:`FIGURE_COLUMNS` in a row."""
  cols = max(1, min(num_families, FIGURE_COLUMNS))
  return -(-num_families // cols), cols


def save_figure(path: str, report: Mapping) -> None:
  """One bar chart per family (mean return per row, interval bars), at most
  :data:`FIGURE_COLUMNS` side by side."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  families = report["family_order"]
  width = max(len(report["families"][f]["row_order"])
              * len(_groups(report["families"][f])[1] or [None])
              for f in families)
  grid_rows, grid_cols = figure_grid(len(families))
  fig, axes = plt.subplots(
      grid_rows, grid_cols, squeeze=False,
      figsize=(grid_cols * (1.6 + 0.9 * width),
               3.8 if grid_rows == 1 else 4.8 * grid_rows))
  for ax in axes.flat[len(families):]:
    ax.set_visible(False)
  for ax, family in zip(axes.flat[:len(families)], families, strict=True):
    s = report["families"][family]
    labels = s["row_order"]
    rows = [s["rows"][label] for label in labels]
    key, groups = _groups(s)
    if groups:  # table2, table3: one bar per (row, quality or setting)
      labels = [f"{label} ({g})" for label in s["row_order"] for g in groups]
      rows = [s["rows"][label][key][g] for label in s["row_order"]
              for g in groups]
    means = [r["mean"] for r in rows]
    ax.bar(range(len(labels)), means, color=[f"C{i}" for i in range(len(rows))])
    bars = [i for i, r in enumerate(rows) if r["ci_low"] is not None]
    if bars:
      ax.errorbar(bars, [means[i] for i in bars], fmt="none", ecolor="black",
                  capsize=4, yerr=[0.5 * (rows[i]["ci_high"] - rows[i]["ci_low"])
                                   for i in bars])
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    ax.set_title(family)
    ax.set_ylabel("test return (mean, interval over seeds)")
  fig.suptitle(f"pdiff, {report['experiment']}")
  report_lib.save_figure_atomic(fig, path, dpi=110)


def run_experiment(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs (or resumes) every family of ``config``'s experiment.

  Args:
    config: ``experiments/configs/paper.py``'s config.
    workdir: root of the families' work directories and of ``paper/``.

  Returns:
    The report written to ``{workdir}/paper/{experiment}.json``.

  Raises:
    ConfigError: a bad config value, or an earlier report in
      ``config.merge`` that does not match (before anything is written).
  """
  check_config(config)
  merge_path = config.get("merge") or ""
  earlier = paper_merge.load(merge_path, config) if merge_path else None
  configs = {f: family_config(config, f) for f in config.families}
  for c in configs.values():
    check_run_config(c)
  settings = {}  # table3: {family: {setting: run config}}, checked in full
  if config.experiment == "table3":
    settings = {f: {s: paper_table3.setting_config(c, s)
                    for s in config.settings} for f, c in configs.items()}
    for by_setting in settings.values():
      for c in by_setting.values():
        check_run_config(c)
  everything = load_published()
  published = everything["table1"]
  table2 = everything["table2"]
  source = {"table2": table2["source"],
            "table3": everything["table3"]["source"]}.get(
                config.experiment, published["source"])
  sections = {}
  for family, c in configs.items():
    fdir = os.path.join(workdir, family)
    logging.info("=== %s: %s", config.experiment, family)
    if config.experiment == "table3":
      sections[family] = paper_table3.run_family(settings[family], fdir,
                                                 everything["table3"])
      continue
    if config.experiment == "table2":
      sections[family] = paper_table2.run_family(c, config.qualities, fdir)
      continue
    results = run_pipeline(c, fdir)
    if config.experiment == "ablation":
      sections[family] = ablation_section(results)
      continue
    random = None
    if UPPER_BOUND in c.methods:  # the score needs the random datasets
      prepare.ensure_datasets(c, envs.make(c.family, backend=c.backend), fdir,
                              ["random"])
      with open(os.path.join(fdir, "datasets", family, "returns.json")) as f:
        random = random_return(json.load(f), results["test_tasks"])
    sections[family] = table1_section(results, random, published["methods"])
  report = dict(experiment=config.experiment, preset=config.preset,
                family_order=list(config.families), families=sections,
                config=config.to_dict())
  if earlier is not None:
    report = paper_merge.merge(report, earlier, merge_path)
  success = any(report_lib.SUCCESS_HEADER in s["columns"]
                for s in report["families"].values())
  report["caption"] = caption(config.experiment, source, success=success,
                              quoted=table2["quoted"], published=everything,
                              named_settings=tuple(
                                  config.get("named_settings", ())))
  if config.experiment in ("table1", "table2", "table3"):
    report["published_source"] = source
  base = os.path.join(workdir, "paper", config.experiment)
  report = paper_merge.keep_provenance(report, base + ".json")
  across = across_families(report)
  if across is not None:
    report["across_families"] = across
  stages.write_json_atomic(base + ".json", report)
  atomic.write_bytes_atomic(base + ".md", markdown(report).encode())
  save_figure(base + ".png", report)
  return report
