"""Results: summaries over seeds, JSON, markdown tables and bar charts.

The statistics (t-intervals over seeds, differences paired by seed) are in
:mod:`pdiff.evaluation.statistics`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence

from pdiff import atomic
from pdiff.evaluation import statistics


def write_json_atomic(path: str, data) -> None:
  """Writes JSON through a temporary file and ``os.replace``."""
  atomic.write_json_atomic(path, data)


# The per-method summary; kept here for callers of ``report.summarize``.
summarize = statistics.summarize

# Header of the success-rate column, for families with a success metric.
SUCCESS_HEADER = "success rate (%)"
SUCCESS_CAPTION = ("The success rate is the share of episodes in which the "
                   "success flag was set at any step (Meta-World's "
                   "convention), averaged over tasks and then over seeds, in "
                   "%.")


def has_success(rows: Mapping[str, Mapping]) -> bool:
  """Whether any row holds a success rate (``row["success_rate"]``, only
  families with a success metric have one)."""
  return any(r.get("success_rate") is not None for r in rows.values())


def success_cell(row: Mapping) -> str:
  """The row's success rate, mean over seeds in % (``n/a`` without)."""
  rate = row.get("success_rate")
  return statistics.format_percent(None if rate is None else rate["mean"])


def summarize_methods(per_method: Mapping[str, Sequence[Sequence[float]]],
                      baseline: str | None = statistics.BASELINE, *,
                      confidence: float = 0.95,
                      success_rates: Mapping[str, Sequence[Sequence[float]]]
                      | None = None) -> dict:
  """Summaries of all methods, paired with the baseline, in one call.

  Args:
    per_method: ``{label: [num_seeds, num_tasks] returns}`` in table order;
      all methods share seeds and tasks (in the same order).
    baseline: label of the reference row (the plain few-shot prompt).
    confidence: level of every interval.
    success_rates: ``{label: [num_seeds, num_tasks]}`` share of successful
      episodes in ``[0, 1]``, for a family with a success metric; a label
      absent here gets no success rate.

  Returns:
    ``{"methods": {label: row}, "statistics": {...}}``. A row is
    :func:`statistics.summarize`'s dict; every row but the baseline's also
    holds ``paired``, :func:`statistics.paired_difference` of that method
    minus the baseline plus ``"baseline": baseline``. Without the baseline
    among ``per_method`` no row holds ``paired``. A row of
    ``success_rates`` also holds ``success_rate``,
    :func:`statistics.summarize` of its rates (fractions, not %: ``mean``
    is the mean over seeds of the task-averaged rate). ``statistics`` holds
    ``baseline`` (``None`` when absent), ``confidence``, ``num_seeds``,
    ``num_pairs``, ``difference_se`` and ``min_resolvable_difference`` (see
    :func:`statistics.difference_standard_error`) and ``sentence``
    (:func:`statistics.significance_sentence`).
  """
  rows = {k: statistics.summarize(v, confidence=confidence)
          for k, v in per_method.items()}
  has_baseline = baseline is not None and baseline in per_method
  if has_baseline:
    for k in rows:
      if k != baseline:
        paired = statistics.paired_difference(
            per_method[k], per_method[baseline], confidence=confidence)
        rows[k]["paired"] = dict(paired, baseline=baseline)
  for k, rates in (success_rates or {}).items():
    if k not in rows:
      raise ValueError(f"success_rates of {k!r}, which has no returns "
                       f"(methods: {list(rows)}).")
    rows[k]["success_rate"] = statistics.summarize(rates,
                                                   confidence=confidence)
  stats = statistics.difference_standard_error(per_method,
                                               confidence=confidence)
  stats.update(baseline=baseline if has_baseline else None,
               sentence=statistics.significance_sentence(rows, baseline))
  return dict(methods=rows, statistics=stats)


def _baseline_of(rows: Mapping[str, dict]) -> str | None:
  for row in rows.values():
    if row.get("paired", {}).get("baseline"):
      return row["paired"]["baseline"]
  return None


def markdown_table(rows: Mapping[str, dict], *, title: str = "",
                   task_labels: Sequence[str] | None = None,
                   baseline: str | None = None,
                   extra_columns: Mapping[str, Callable[[dict], str]]
                   | None = None) -> str:
  """A table of methods x (return, CI, difference to the baseline, tasks).

  Args:
    rows: ``{label: row}`` in table order, each row a
      :func:`statistics.summarize` dict, optionally with ``paired`` (a
      :func:`statistics.paired_difference` dict against the baseline).
    title: a ``###`` heading above the table, if given.
    task_labels: headers of the per-task mean columns; none without them.
    baseline: label of the baseline row; by default ``paired["baseline"]``.
    extra_columns: ``{header: row -> cell}`` put after the difference.

  Columns: ``method``; ``return (mean +- std, n seeds)`` (std with
  ddof=1); the t-interval of the mean (``95% CI``); when a row holds
  ``success_rate`` (families with a success metric), the success rate's
  mean over seeds in % (``n/a`` in a row without); when a row holds
  ``paired``, the paired difference to the baseline with its interval,
  ``baseline`` in the baseline's own row; the extra columns; the mean over
  seeds of each task. Returns have one decimal; ``n/a`` stands for what one
  seed cannot estimate.
  """
  rows = dict(rows)
  if baseline is None:
    baseline = _baseline_of(rows)
  seeds = {row.get("num_seeds") for row in rows.values()}
  common = next(iter(seeds)) if len(seeds) == 1 else None
  level = statistics.confidence_label(
      next((r["confidence"] for r in rows.values() if "confidence" in r), 0.95))
  with_diff = any("paired" in r for r in rows.values())
  if common is None:
    head = ["method", "return (mean +- std over seeds)"]
  else:
    head = ["method", f"return (mean +- std, {common} seed"
            + ("" if common == 1 else "s") + ")"]
  head.append(f"{level} CI")
  with_success = has_success(rows)
  if with_success:
    head.append(SUCCESS_HEADER)
  if with_diff:
    head.append(f"difference to {baseline or 'the baseline'} [{level} CI]")
  head += list(extra_columns or ())
  head += list(task_labels or ())
  lines = [f"### {title}", ""] if title else []
  lines += ["| " + " | ".join(head) + " |",
            "|" + "|".join("---" for _ in head) + "|"]
  fmt = statistics.format_number
  for name, r in rows.items():
    ret = f"{fmt(r['mean'])} +- {fmt(r.get('std'))}"
    if common is None and r.get("num_seeds") is not None:
      ret += f" (n={r['num_seeds']})"
    cells = [name, ret,
             statistics.format_interval(r.get("ci_low"), r.get("ci_high"))]
    if with_success:
      cells.append(success_cell(r))
    if with_diff:
      if "paired" in r:
        p = r["paired"]
        interval = statistics.format_interval(p["ci_low"], p["ci_high"])
        cells.append(f"{fmt(p['mean'], sign=True)} "
                     + (interval if p["ci_low"] is not None else "[n/a]"))
      else:
        cells.append("baseline" if name == baseline else "n/a")
    cells += [cell(r) for cell in (extra_columns or {}).values()]
    if task_labels:
      cells += [fmt(v) for v in r["per_task"]]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def _parameters_cell(row: Mapping) -> str:
  n = row["trainable_parameters"]
  share = row.get("parameter_share")
  text = f"{n:,}"
  if share is not None and n:
    text += f" ({100 * share:.2f}%)"
  return text


def method_columns(rows: Mapping[str, dict]
                   ) -> dict[str, Callable[[dict], str]]:
  """The columns describing each method, for the rows that carry them:
  trainable parameters per task (and their share of the PLM's), the
  information the method used, and its mean tuning time per seed."""
  columns: dict[str, Callable[[dict], str]] = {}
  if all("trainable_parameters" in r for r in rows.values()):
    columns["trained params (share of PLM)"] = _parameters_cell
  if all("information" in r for r in rows.values()):
    columns["information"] = lambda r: (r["information"]
                                        + (" (diagnostic)"
                                           if r.get("diagnostic") else ""))
  if all(r.get("tune_seconds") for r in rows.values()):
    columns["tuning s / seed"] = lambda r: (
        f"{sum(r['tune_seconds']) / len(r['tune_seconds']):.1f}")
  return columns


def _caption(results: Mapping) -> str:
  """The paragraph under the results table: what the numbers are."""
  rows = results["methods"]
  if results.get("row_order"):  # JSON files sort keys: restore table order
    rows = {label: rows[label] for label in results["row_order"]}
  stats = results.get("statistics") or {}
  baseline = stats.get("baseline", _baseline_of(rows))
  first = next(iter(rows.values()), {})
  n = stats.get("num_seeds", first.get("num_seeds"))
  level = statistics.confidence_label(stats.get("confidence",
                                                first.get("confidence", 0.95)))
  seeds = "seeds" if n is None else f"{n} seed" + ("" if n == 1 else "s")
  text = (f"Mean over {seeds} of the task-averaged test return, +- its std "
          f"over seeds (ddof=1); the {level} CI is the Student-t interval "
          "over seeds")
  if baseline is not None:
    text += (f"; differences to {baseline} are paired by seed (all methods "
             "of a seed share its few-shot data)")
  text += ". "
  if has_success(rows):
    text += SUCCESS_CAPTION + " "
  se = stats.get("difference_se")
  if se is None:
    if n is not None and n < 2:
      text += (f"With {seeds} the standard error of a difference between two "
               "rows cannot be estimated (n/a).")
    else:
      text += "The standard error of a difference between two rows is n/a."
  else:
    pairs = stats.get("num_pairs")
    if not pairs:
      pooled = ""
    elif pairs == 1:
      pooled = " (the only pair of rows)"
    else:
      pooled = f" (pooled over the {pairs} pairs of rows)"
    fmt = statistics.format_number
    text += (f"The standard error of a difference between two rows is "
             f"{fmt(se, 2)}{pooled}, so with {seeds} a difference below "
             f"{fmt(stats['min_resolvable_difference'], 2)} is not resolvable "
             f"at {level} confidence.")
  return text


def source_phrase(results: Mapping) -> str:
  """``" of the training tasks (zero-shot)"`` for results whose few-shot
  trajectories were drawn from the training tasks, else ``""``."""
  if results.get("few_shot_source") == "training_tasks":
    return " of the training tasks (zero-shot)"
  return ""


def results_table_markdown(results: Mapping) -> str:
  """The markdown of a results dict (``results.json``): title, table,
  caption and significance sentence.

  Args:
    results: with ``methods`` (``{label: row}``, as from
      :func:`summarize_methods`; rows in ``row_order`` when given),
      ``test_tasks`` and optionally ``family``,
      ``num_shots``, ``few_shot_quality``, ``few_shot_source``, ``seeds``
      and ``statistics`` (as
      from :func:`summarize_methods`; without it the sentence is derived
      from the rows and the caption says n/a). Rows with ``success_rate``
      add the success-rate column and its sentence to the caption.
  """
  rows = results["methods"]
  if results.get("row_order"):  # JSON files sort keys: restore table order
    rows = {label: rows[label] for label in results["row_order"]}
  stats = results.get("statistics") or {}
  first = next(iter(rows.values()), {})
  seeds = results.get("seeds")
  n = len(seeds) if seeds is not None else first.get("num_seeds")
  title = f"{results.get('family', 'results')}: test-task return"
  if results.get("num_shots") is not None:
    quality = results.get("few_shot_quality")
    title += f", {results['num_shots']}-shot" + (f" {quality}" if quality
                                                 else "") + " data"
    title += source_phrase(results)
  if n is not None:
    title += f", {n} seed" + ("" if n == 1 else "s")
  tasks = results.get("test_tasks")
  baseline = stats.get("baseline", _baseline_of(rows))
  table = markdown_table(rows, title=title, baseline=baseline,
                         task_labels=[f"task {i}" for i in tasks]
                         if tasks else None,
                         extra_columns=method_columns(rows))
  sentence = stats.get("sentence") or statistics.significance_sentence(
      rows, baseline if baseline is not None else statistics.BASELINE)
  return table + "\n" + _caption(results) + "\n\n" + sentence + "\n"


def save_bar_chart(path: str, rows: Mapping[str, dict], *, title: str) -> None:
  """Bar chart of the mean per method, saved as PNG.

  Error bars are the half-width of each row's t-interval over seeds when it
  has one; a row without (one seed) has none.
  """
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  names = list(rows)
  means = [rows[n]["mean"] for n in names]
  half = [0.5 * (rows[n]["ci_high"] - rows[n]["ci_low"])
          if rows[n].get("ci_low") is not None
          and rows[n].get("ci_high") is not None else None for n in names]
  fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(names), 3.6))
  ax.bar(range(len(names)), means, color=[f"C{i}" for i in range(len(names))])
  with_bars = [i for i, h in enumerate(half) if h is not None]
  if with_bars:
    ax.errorbar(with_bars, [means[i] for i in with_bars],
                yerr=[half[i] for i in with_bars], fmt="none", ecolor="black",
                capsize=4)
  level = statistics.confidence_label(
      next((r["confidence"] for r in rows.values() if "confidence" in r), 0.95))
  ax.set_xticks(range(len(names)), names, rotation=20, ha="right")
  ax.set_ylabel(f"test return (mean, {level} CI)" if with_bars
                else "test return (mean)")
  ax.set_title(title)
  save_figure_atomic(fig, path, dpi=120)


def save_figure_atomic(fig, path: str, *, dpi: int) -> None:
  """Writes a matplotlib figure to ``path`` through a temporary file and a
  rename (a killed run leaves no half-written image), then closes it."""
  import matplotlib.pyplot as plt

  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = path + ".tmp.png"
  fig.savefig(tmp, dpi=dpi)
  plt.close(fig)
  os.replace(tmp, path)
