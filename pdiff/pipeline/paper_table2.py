"""The paper's Table 2: few-shot data (and initial prompts) of each quality.

The family (cheetah-vel) runs the pipeline once per quality of its few-shot
data (``few_shot_quality``: ``expert``, ``medium``, ``random``): the data
every method sees, so also Prompt-Tuning DT's initial prompt and Prompt
Diffuser's condition. The PLM and Prompt Diffuser's stage-1 models, trained
on the training tasks' expert data, are the family's and serve every
quality; ``few_shot_quality`` enters the runs' fingerprints.

The section has, per row, two columns per quality: the mean return with its
interval over seeds and the difference to ``prompt_dt`` with data of the
same quality, paired by seed. The paper's claim is one of robustness: its
Prompt Diffuser keeps about the same return with expert, medium and random
data, while Prompt-Tuning DT loses return with poorer data. So the section
also measures each row's change from the first quality to each other one,
paired by seed, and for the paper's pair the difference of the two changes
(Prompt Diffuser's minus Prompt-Tuning DT's: positive where Prompt Diffuser
loses less), in one sentence.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import ml_collections
from absl import logging

from pdiff.evaluation import statistics
from pdiff.pipeline import paper_cells as cells
from pdiff.pipeline.run import run as run_pipeline
from pdiff.pipeline.validate import QUALITIES, check_run_config

# The paper's claim: ROBUST loses less return than FRAGILE from the first
# quality to the others.
ROBUST = cells.paper_row("prompt_diffuser")
FRAGILE = cells.paper_row("prompt_tuning_dt")
_fmt = statistics.format_number


def check_qualities(qualities: Sequence[str]) -> None:
  """Raises ``pdiff.pipeline.validate.ConfigError`` naming
  ``config.qualities`` unless ``qualities`` are distinct qualities of
  few-shot data (``pdiff.pipeline.validate.QUALITIES``, best first)."""
  cells.check_distinct("qualities", qualities, QUALITIES)


def quality_config(config: ml_collections.ConfigDict,
                   quality: str) -> ml_collections.ConfigDict:
  """A family's run config with few-shot data of ``quality``."""
  c = config.copy_and_resolve_references()
  c.few_shot_quality = quality
  return c


def run_family(config: ml_collections.ConfigDict, qualities: Sequence[str],
               family_dir: str) -> dict:
  """Runs (or resumes) the family's pipeline once per quality, in
  ``family_dir``, and returns its :func:`section`."""
  configs = {q: quality_config(config, q) for q in qualities}
  for c in configs.values():
    check_run_config(c)
  by_quality = {}
  for quality, c in configs.items():
    logging.info("=== table2: %s, %s few-shot data", c.family, quality)
    by_quality[quality] = run_pipeline(c, family_dir)
  return section(by_quality)


def changes(rows: Mapping[str, Mapping[str, Mapping]]) -> dict:
  """Each row's change of return from the first quality to each other one.

  Args:
    rows: ``{quality: {label: row}}`` (rows with ``per_seed`` means), the
      first quality the reference.

  Returns:
    ``{label: {quality: difference}}`` for every quality after the first,
    each :func:`paper_cells.seed_difference` of the row's per-seed means
    (that quality minus the first).
  """
  qualities = list(rows)
  first = rows[qualities[0]]
  return {label: {q: cells.seed_difference(rows[q][label], first[label])
                  for q in qualities[1:]}
          for label in first}


def robustness(found: Mapping[str, Mapping[str, Mapping]]) -> dict:
  """The paper's claim per quality after the first: :data:`ROBUST`'s change
  minus :data:`FRAGILE`'s, paired by seed (positive where ROBUST loses
  less); ``{}`` when either row is missing.

  Args:
    found: :func:`changes`' result.
  """
  if ROBUST not in found or FRAGILE not in found:
    return {}
  return {q: cells.seed_difference(found[ROBUST][q], found[FRAGILE][q])
          for q in found[ROBUST]}


def _figure(d: Mapping) -> str:
  return (f"{_fmt(d['mean'], sign=True)} "
          f"{statistics.format_interval(d['ci_low'], d['ci_high'])}")


def change_sentence(first: str, found: Mapping[str, Mapping[str, Mapping]],
                    claim: Mapping[str, Mapping]) -> str:
  """The sentence on :func:`changes` (from quality ``first``) and
  :func:`robustness`."""
  others = list(next(iter(found.values())))
  parts = []
  for label, by_quality in found.items():
    moves = [f"{_figure(d)} ({cells.significance_phrase(d)})"
             for d in by_quality.values()]
    parts.append(f"{label} {' and '.join(moves)}")
  text = (f"Change of return from {first} data to "
          f"{' and '.join(others)} data (paired by seed): "
          + "; ".join(parts) + ".")
  if not claim:
    return text + (f" The paper's claim ({ROBUST} loses less than {FRAGILE}) "
                   "is not measured (a row is missing).")
  verdicts = []
  for q, d in claim.items():
    order = ("holds" if d["mean"] > 0 else "is reversed" if d["mean"] < 0
             else "is a tie")
    verdicts.append(f"with {q} data it {order} ({_figure(d)}, "
                    f"{cells.significance_phrase(d)})")
  return text + (f" The paper's claim that {ROBUST} loses less than "
                 f"{FRAGILE} ({ROBUST}'s change minus {FRAGILE}'s): "
                 + "; ".join(verdicts) + ".")


def section(by_quality: Mapping[str, Mapping]) -> dict:
  """Table 2's part of one family: per row, one cell per few-shot quality
  (return and interval, then the difference to ``prompt_dt`` of the same
  quality, paired by seed), and the rows' changes across qualities.

  Args:
    by_quality: ``{quality: pdiff.pipeline.run's results dict}``, in column
      order; every quality has the same rows.
  """
  qualities = list(by_quality)
  rows = {q: cells.table_rows(r) for q, r in by_quality.items()}
  labels = list(rows[qualities[0]])
  level = cells.confidence_level(rows[qualities[0]])
  columns = ["method"]
  for q in qualities:
    columns += [f"{q}: return [{level} CI]", f"{q}: difference to "
                f"{cells.BASELINE}"]
  out_rows = {}
  for label in labels:
    row_cells, per_quality = [label], {}
    for q in qualities:
      row = rows[q][label]
      diff = cells.difference(row)
      row_cells += [cells.cell(row), cells.difference_cell(label, diff)]
      per_quality[q] = dict(cells.figures(row), difference=diff)
    out_rows[label] = dict(method=rows[qualities[0]][label]["method"],
                           qualities=per_quality, cells=row_cells)
  sentences = [f"{q} data: " + cells.significance_sentence(by_quality[q],
                                                           rows[q])
               for q in qualities]
  out = dict(cells.common(*by_quality.values()), columns=columns, row_order=labels,
             rows=out_rows, qualities=qualities,
             fingerprints={q: r.get("fingerprint")
                           for q, r in by_quality.items()},
             wall_seconds_by_quality={q: r.get("wall_seconds")
                                      for q, r in by_quality.items()},
             significance_sentence=" ".join(sentences))
  if len(qualities) > 1:
    found = changes(rows)
    claim = robustness(found)
    out.update(changes=found, robustness=claim,
               ordering_sentence=change_sentence(qualities[0], found, claim))
  return out


def caption_text(source: str, quoted: Mapping) -> str:
  """The part of the caption that is table2's own (``quoted``: the
  published JSON's ``table2.quoted``)."""
  return (" Each column pair uses few-shot trajectories (and so the initial "
          "prompts of Prompt-Tuning DT and Prompt Diffuser's condition) of "
          "one dataset quality; the PLM is the same. The change of a row's "
          "return between qualities is paired by seed (the seed's tuning "
          "randomness; its few-shot draws differ with the data). Published "
          f"(cheetah-vel, {source}): Prompt Diffuser "
          f"{quoted['prompt_diffuser']}, Prompt-Tuning DT "
          f"{quoted['prompt_tuning_dt']}; pdiff's physics and data differ "
          "(Brax, not MuJoCo), so only the orderings and the changes from "
          "expert to poorer data compare.")
