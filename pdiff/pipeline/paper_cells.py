"""Cells and row figures shared by the paper's tables
(:mod:`pdiff.pipeline.paper`, :mod:`pdiff.pipeline.paper_table2`,
:mod:`pdiff.pipeline.paper_table3`).

A table's row is one label of a pipeline run's results
(:func:`pdiff.pipeline.run`'s dict); its cells are formatted here the same
way in every table: a mean with its interval over seeds, a paired
difference, a published figure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pdiff.evaluation import statistics
from pdiff.pipeline.validate import ConfigError

BASELINE = statistics.BASELINE
# The row whose mean return is a family's normalised score of 1.
UPPER_BOUND = "upper_bound"
# The row standing for a paper's method where a method has several rows:
# the paper's Prompt Diffuser projects conflicting gradients.
PAPER_ROWS = {"prompt_diffuser": "prompt_diffuser[projection]"}
_fmt = statistics.format_number


def check_distinct(field: str, values: Sequence[str],
                   allowed: Sequence[str]) -> None:
  """Raises :class:`ConfigError` naming ``config.{field}`` unless ``values``
  are distinct members of ``allowed`` (a table's column groups)."""
  values = tuple(values)
  if (not values or len(set(values)) != len(values)
      or any(v not in allowed for v in values)):
    raise ConfigError(f"config.{field} = {values!r}: expected distinct "
                      f"{field} among {tuple(allowed)}.")


def paper_row(method: str) -> str:
  """The table row (label) that stands for the paper's ``method``."""
  return PAPER_ROWS.get(method, method)


def seed_difference(row: Mapping, reference: Mapping, *,
                    confidence: float = 0.95) -> dict:
  """``row - reference`` paired by seed, from their ``per_seed`` means.

  Returns:
    :func:`statistics.paired_difference`'s ``mean``, ``std``, ``sem``,
    ``ci_low``, ``ci_high``, ``significant``, ``confidence``, ``num_seeds``
    and ``per_seed``.
  """
  d = statistics.paired_difference([[x] for x in row["per_seed"]],
                                   [[x] for x in reference["per_seed"]],
                                   confidence=confidence)
  return {k: v for k, v in d.items() if not k.startswith("per_task")}


def significance_phrase(d: Mapping) -> str:
  """``significant at 95%``, ``not significant at 95%`` or ``not testable
  with 1 seed``, for a :func:`seed_difference`."""
  if d["significant"] is None:
    n = d["num_seeds"]
    return f"not testable with {n} seed" + ("" if n == 1 else "s")
  return (("significant" if d["significant"] else "not significant")
          + f" at {statistics.confidence_label(d['confidence'])}")


def cell(d: Mapping, sign: bool = False) -> str:
  """``mean [ci_low, ci_high]`` (``[n/a]`` without an interval)."""
  interval = statistics.format_interval(d.get("ci_low"), d.get("ci_high"))
  return (f"{_fmt(d['mean'], sign=sign)} "
          + (interval if d.get("ci_low") is not None else "[n/a]"))


def difference(row: Mapping) -> dict | None:
  """A row's paired difference to the baseline without its per-task parts
  (None for a row without one: the baseline itself)."""
  paired = row.get("paired")
  return ({k: v for k, v in paired.items() if not k.startswith("per_task")}
          if paired else None)


def difference_cell(label: str, diff: Mapping | None) -> str:
  """The difference column's cell of row ``label``."""
  if diff:
    return cell(diff, sign=True)
  return "baseline" if label == BASELINE else "n/a"


def published_cell(figure: Mapping | None) -> str:
  """``mean +- plus_minus``, ``mean`` where no spread is published, or
  ``-`` without a figure."""
  if not figure:
    return "-"
  if figure.get("plus_minus") is None:
    return f"{figure['mean']:.1f}"
  return f"{figure['mean']:.1f} +- {figure['plus_minus']:.1f}"


def figures(row: Mapping, success: bool = False) -> dict:
  """A row's return figures, and its success rate's with ``success``."""
  out = {k: row.get(k) for k in ("mean", "std", "ci_low", "ci_high",
                                 "per_seed")}
  if success:
    rate = row.get("success_rate")
    out["success_rate"] = None if rate is None else {
        k: rate.get(k) for k in ("mean", "std", "ci_low", "ci_high",
                                 "per_seed")}
  return out


def confidence_level(rows: Mapping[str, Mapping]) -> str:
  """The label of the rows' confidence level (``"95%"``): the first row's
  ``confidence``, 0.95 where it has none."""
  return statistics.confidence_label(
      next(iter(rows.values())).get("confidence", 0.95))


def table_rows(results: Mapping) -> dict:
  """``{label: row}`` of a results dict, in table order."""
  order = results.get("row_order") or list(results["methods"])
  return {label: results["methods"][label] for label in order}


def compute_seconds(*results: Mapping) -> dict:
  """``tune_seconds`` and ``eval_seconds``: the tuning and evaluation time
  of every row and seed of the runs' results, summed, each run's time as
  its record holds it (when it was computed, not when it was found
  again)."""
  rows = [row for r in results for row in r["methods"].values()]
  return {k: float(sum(sum(row.get(k) or ()) for row in rows))
          for k in ("tune_seconds", "eval_seconds")}


def common(results: Mapping, *more: Mapping) -> dict:
  """What every table's family section repeats from its run's results, and
  the :func:`compute_seconds` of its rows and of those of ``more`` runs
  (a table built from several runs of the family)."""
  return dict({k: results.get(k) for k in ("family", "test_tasks", "seeds",
                                            "num_shots", "few_shot_quality",
                                            "fingerprint", "inputs",
                                            "provenance", "wall_seconds")},
              **compute_seconds(results, *more))


def significance_sentence(results: Mapping, rows: Mapping) -> str:
  """The run's sentence on which differences to the baseline are
  significant (derived from ``rows`` when the results have none)."""
  return ((results.get("statistics") or {}).get("sentence")
          or statistics.significance_sentence(rows, BASELINE))
