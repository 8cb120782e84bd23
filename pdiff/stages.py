"""Fingerprinted stage outputs: a rerun never trusts a stale or partial one.

Every stage of an experiment (datasets, the pre-trained Prompt-DT, Prompt
Diffuser's stage-1 model, each method x seed run, the tables) records what it
was computed from in a small JSON *stage record*::

  {"stage": "...", "fingerprint": "<sha256>", "inputs": {...},
   "version": N, "status": "started" | "complete"}

The fingerprint is the SHA-256 of the canonical JSON of the stage's name, its
``version`` (bumped by maintainers when a stage's results change, even in the
last bits; see ``pdiff.provenance.RESULT_CHANGES``), the config
subtree it depends on and the fingerprints of its inputs (dataset manifests,
PLM, stage-1 model). Two runs with the same fingerprint compute the same
output; a rerun whose fingerprint differs from the record

* recomputes into a path keyed by the new fingerprint (cheap stages: stage-1
  models and method x seed runs), keeping the old output for the old config,
* or stops with :class:`StaleStageError` naming every config field that
  changed, old and new value, and how to proceed (expensive stages that live
  at fixed paths other launchers read: datasets and the PLM).

A record is written atomically; an output counts as done only when its record
says ``complete`` and the fingerprints agree, so a stage killed at any moment
leaves nothing that a rerun trusts.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from typing import Any

from pdiff import atomic

RECORD_FILE = "stage.json"


class StaleStageError(RuntimeError):
  """A stage output exists but was computed from a different config."""


def canonical_json(value: Any) -> str:
  """JSON with sorted keys and tuples as lists: equal values, equal text."""
  return json.dumps(_plain(value), sort_keys=True, separators=(",", ":"),
                    allow_nan=False)


def _plain(value: Any) -> Any:
  if hasattr(value, "to_dict"):  # ml_collections.ConfigDict
    value = value.to_dict()
  if isinstance(value, Mapping):
    return {str(k): _plain(v) for k, v in value.items()}
  if isinstance(value, list | tuple):
    return [_plain(v) for v in value]
  if hasattr(value, "item") and hasattr(value, "dtype"):  # numpy scalars
    return value.item()
  return value


def fingerprint(stage: str, version: int, config: Any,
                inputs: Mapping[str, str] | None = None) -> str:
  """SHA-256 (hex) of a stage's name, version, config subtree and inputs."""
  text = canonical_json(dict(stage=stage, version=version, config=config,
                             inputs=dict(inputs or {})))
  return hashlib.sha256(text.encode()).hexdigest()


def file_digest(paths: Iterable[str]) -> str:
  """SHA-256 over the names and bytes of ``paths`` (a manifest's identity)."""
  h = hashlib.sha256()
  for path in sorted(paths):
    h.update(os.path.basename(path).encode() + b"\0")
    with open(path, "rb") as f:
      for block in iter(lambda f=f: f.read(1 << 20), b""):
        h.update(block)
  return h.hexdigest()


def write_json_atomic(path: str, data: Any) -> None:
  """Writes standard JSON (no NaN) atomically: a stage record or output."""
  atomic.write_json_atomic(path, _plain(data), allow_nan=False)


def make_record(stage: str, version: int, config: Any,
                inputs: Mapping[str, str] | None = None, *,
                status: str = "complete", **extra) -> dict:
  """A stage record (see the module docstring); ``extra`` fields are kept."""
  return dict(stage=stage, version=version, config=_plain(config),
              inputs=dict(inputs or {}),
              fingerprint=fingerprint(stage, version, config, inputs),
              status=status, **extra)


def read_record(path: str) -> dict | None:
  """The record at ``path``; None if absent or unreadable (a rerun redoes
  the stage rather than trusting a damaged record)."""
  try:
    with open(path) as f:
      record = json.load(f)
  except (OSError, ValueError):
    return None
  if not isinstance(record, dict) or "fingerprint" not in record:
    return None
  return record


def is_complete(record: dict | None, fp: str) -> bool:
  return (record is not None and record.get("fingerprint") == fp
          and record.get("status") == "complete")


def config_changes(old: Any, new: Any, prefix: str = "") -> list[str]:
  """``"field: old -> new"`` for every leaf that differs between two config
  trees (a field present in one only counts as changed)."""
  old, new = _plain(old), _plain(new)
  if isinstance(old, dict) and isinstance(new, dict):
    out = []
    for key in sorted(set(old) | set(new)):
      name = f"{prefix}.{key}" if prefix else key
      if key not in old:
        out.append(f"{name}: (absent) -> {new[key]!r}")
      elif key not in new:
        out.append(f"{name}: {old[key]!r} -> (absent)")
      else:
        out.extend(config_changes(old[key], new[key], name))
    return out
  if old != new:
    return [f"{prefix or '(value)'}: {old!r} -> {new!r}"]
  return []


def check_fixed_stage(record: dict | None, expected: dict, where: str,
                      remedy: str) -> None:
  """Refuses to reuse a fixed-path stage output computed differently.

  Args:
    record: the record found at the output (None: nothing there).
    expected: the record this run would write (:func:`make_record`).
    where: the output path, for the message.
    remedy: how to proceed, for the message.

  Raises:
    StaleStageError: naming each changed config field or input.
  """
  if record is None or record.get("fingerprint") == expected["fingerprint"]:
    return
  changes = config_changes(record.get("config"), expected["config"], "config")
  changes += config_changes(record.get("inputs"), expected["inputs"], "input")
  if record.get("version") != expected["version"]:
    changes.append(f"stage version: {record.get('version')} -> "
                   f"{expected['version']}")
  detail = "; ".join(changes) or "fingerprint differs"
  raise StaleStageError(
      f"{where} holds the {expected['stage']} stage of a different run "
      f"({detail}). {remedy}")
