"""An experiment's table computed family by family: merging an earlier report.

A paper experiment's report (``{workdir}/paper/{experiment}.json``) holds
one section per family. Families can be computed apart (in turn on a small
machine, or on different machines) and put together: with
``config.merge`` naming an earlier report of the same experiment,
:func:`pdiff.pipeline.paper.run_experiment` computes only
``config.families`` and keeps the earlier report's other families, their
sections copied as they are (each keeps its own fingerprint, inputs,
provenance and wall time).

Only reports whose rows mean the same are merged: the earlier report must
be of the same experiment and preset, with the same seeds, methods, Prompt
Diffuser modes and named settings (and, for Table 2 and Table 3, the same
qualities or settings). Anything else is a :class:`ConfigError` that names
the file, the field and both values, raised before any work.

A rerun does not relabel a family's numbers either: a section computed now
from exactly the runs of the report it overwrites (the same fingerprints:
every run was found, none computed) keeps that report's provenance and wall
times (:func:`keep_provenance`), which name the code and the time that
computed them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

import ml_collections

from pdiff.pipeline.validate import ConfigError

# Fields of the experiment config that define a section's rows and columns.
ROW_FIELDS = ("preset", "seeds", "methods", "modes", "named_settings")
# Further such fields, per experiment.
EXPERIMENT_FIELDS = {"table2": ("qualities",), "table3": ("settings",)}
# A section's fields that identify its runs, and those that describe the
# computation of the runs.
IDENTITY_FIELDS = ("fingerprint", "fingerprints", "rows")
COMPUTATION_FIELDS = ("provenance", "wall_seconds", "wall_seconds_by_quality",
                      "wall_seconds_by_setting")


def _as_list(value):
  """JSON's view of a config value (tuples are lists)."""
  return json.loads(json.dumps(value))


def load(path: str, config: ml_collections.ConfigDict) -> dict:
  """The earlier report at ``path``, checked against ``config``.

  Args:
    path: an earlier ``{experiment}.json`` written by
      :func:`pdiff.pipeline.paper.run_experiment`.
    config: the experiment config about to run.

  Returns:
    The earlier report.

  Raises:
    ConfigError: the file is missing or not such a report, or its
      experiment or a field of :data:`ROW_FIELDS` (and the experiment's
      :data:`EXPERIMENT_FIELDS`) differs from ``config``'s.
  """
  where = f"config.merge = {path!r}"
  try:
    with open(path) as f:
      earlier = json.load(f)
  except FileNotFoundError:
    raise ConfigError(f"{where}: no such file (expected an earlier report "
                      f"{{workdir}}/paper/{config.experiment}.json).") from None
  except (OSError, ValueError) as e:
    raise ConfigError(f"{where}: not a readable JSON report ({e}).") from None
  if not isinstance(earlier, dict) or not all(
      k in earlier for k in ("experiment", "families", "family_order",
                             "config")):
    raise ConfigError(f"{where}: not a paper experiment's report (expected "
                      "the fields experiment, families, family_order and "
                      "config).")
  if earlier["experiment"] != config.experiment:
    raise ConfigError(f"{where}: field experiment is "
                      f"{earlier['experiment']!r}, expected "
                      f"{config.experiment!r} (the experiment being run).")
  fields = ROW_FIELDS + EXPERIMENT_FIELDS.get(config.experiment, ())
  for field in fields:
    found = _as_list(earlier["config"].get(field))
    expected = _as_list(config.get(field))
    if found != expected:
      raise ConfigError(f"{where}: field config.{field} is {found!r}, "
                        f"expected {expected!r} (this run's); only tables "
                        "with the same rows are merged.")
  missing = [f for f in earlier["family_order"] if f not in earlier["families"]]
  if missing:
    raise ConfigError(f"{where}: family_order names {missing} without a "
                      "section in families.")
  return earlier


def merge(report: dict, earlier: Mapping, path: str) -> dict:
  """``report`` with the earlier report's other families added.

  The earlier families come first, in their order, a family computed now
  replacing its earlier section in place; this run's other families follow
  in ``report``'s order. The config's ``families`` and ``runs`` cover every
  family of the merged report, and ``merged_from`` records the file and the
  families taken from it.
  """
  computed = list(report["family_order"])
  kept = [f for f in earlier["family_order"] if f not in computed]
  order = list(earlier["family_order"]) + [
      f for f in computed if f not in earlier["family_order"]]
  sections = {f: (report["families"][f] if f in computed
                  else earlier["families"][f]) for f in order}
  config = dict(report["config"])
  runs = dict(earlier["config"].get("runs") or {})
  runs.update(config.get("runs") or {})
  config["runs"] = {f: runs[f] for f in order if f in runs}
  config["families"] = order
  out = dict(report, family_order=order, families=sections, config=config)
  out["merged_from"] = {"path": os.path.normpath(path), "families": kept}
  return out


def keep_provenance(report: dict, path: str) -> dict:
  """``report`` with the computation of each family that is unchanged since
  the report at ``path`` (the file about to be overwritten) taken from it.

  A family's section whose :data:`IDENTITY_FIELDS` equal those of the same
  family at ``path`` (its runs' fingerprints and every figure) was computed
  from the same runs, all of them found in the work directory: its
  :data:`COMPUTATION_FIELDS` (the commit, machine and versions that computed
  them, and their wall time) are the earlier section's, not this
  invocation's. A missing or unreadable file, or another experiment's,
  changes nothing.
  """
  try:
    with open(path) as f:
      earlier = json.load(f)
  except (OSError, ValueError):
    return report
  if (not isinstance(earlier, dict)
      or earlier.get("experiment") != report["experiment"]
      or not isinstance(earlier.get("families"), dict)):
    return report
  sections = dict(report["families"])
  for family, section in sections.items():
    old = earlier["families"].get(family)
    if not isinstance(old, dict) or not section.get("fingerprint") or any(
        _as_list(section.get(k)) != old.get(k) for k in IDENTITY_FIELDS):
      continue
    sections[family] = dict(section, **{k: old[k] for k in COMPUTATION_FIELDS
                                        if k in old})
  return dict(report, families=sections)
