"""Resume points of behaviour-policy training (``{out_dir}/resume``).

At every evaluation the trainer's progress is written here, whole or not at
all:

* ``params_{step}.msgpack``: PPO's ``(normalizer, policy, value)`` at the
  last evaluation (older ones are removed once the state names the new one);
* ``snapshots/{step}.msgpack``: ``(normalizer, policy)`` of every evaluation,
  from which the medium checkpoint is picked when training ends;
* ``state.json``: the step reached, the evaluation curve, the segments run so
  far, the training seconds and the config, written last.

A run continues only under the config it started with; the budget
(``trainer.num_timesteps`` and ``trainer.num_evals``) may grow, and the fields
that choose the expert and medium snapshots (``expert``,
``medium_fraction``) may change.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
from typing import Any

import flax.serialization
import jax

from pdiff import atomic

# Trainer fields that may change between the segments of one run.
CONTINUABLE = ("num_timesteps", "num_evals")
# Fields that only choose among the snapshots once training ends; they may
# change at any time.
SELECTION = ("expert", "medium_fraction")


@dataclasses.dataclass(frozen=True)
class Progress:
  """What a stopped run had reached (all zero/empty for a fresh run)."""
  steps: int = 0
  curve: tuple[tuple[int, float], ...] = ()
  segments: tuple[dict[str, Any], ...] = ()
  train_seconds: float = 0.0
  params_file: str | None = None


def directory(out_dir: str) -> str:
  return os.path.join(out_dir, "resume")


def _state_path(out_dir: str) -> str:
  return os.path.join(directory(out_dir), "state.json")


def _comparable(config) -> dict[str, Any]:
  """The config as JSON values, without the fields a continuation may raise."""
  data = {k: v for k, v in json.loads(json.dumps(config.to_dict())).items()
          if k not in SELECTION}
  data["trainer"] = {k: v for k, v in data["trainer"].items()
                     if k not in CONTINUABLE}
  return data


def _first_difference(recorded, wanted, prefix=""):
  if isinstance(recorded, dict) and isinstance(wanted, dict):
    for key in sorted(set(recorded) | set(wanted)):
      found = _first_difference(recorded.get(key, "<absent>"),
                                wanted.get(key, "<absent>"),
                                f"{prefix}{key}.")
      if found:
        return found
    return None
  if recorded != wanted:
    return prefix.rstrip("."), recorded, wanted
  return None


def load(out_dir: str, config) -> Progress:
  """The progress saved in ``out_dir``, or a fresh :class:`Progress`.

  Raises:
    ValueError: the state file is unreadable, or it was written under a
      config that differs in a field other than :data:`CONTINUABLE`.
  """
  path = _state_path(out_dir)
  if not os.path.exists(path):
    return Progress()
  with open(path) as f:
    try:
      state = json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f"{path}: not valid JSON ({e}).") from e
  missing = [k for k in ("steps", "curve", "segments", "config", "params_file",
                         "train_seconds") if k not in state]
  if missing:
    raise ValueError(f"{path}: missing fields {missing}.")
  recorded = {k: v for k, v in state["config"].items() if k not in SELECTION}
  difference = _first_difference(recorded, _comparable(config))
  if difference:
    field, recorded, wanted = difference
    raise ValueError(
        f"{path}: the run was started with {field} = {recorded!r}, the config "
        f"asks {wanted!r}. Only trainer.{' and trainer.'.join(CONTINUABLE)} "
        f"(and {' and '.join(SELECTION)}) may change when a run continues; "
        f"use another out_dir or remove "
        f"{directory(out_dir)} to start over.")
  return Progress(steps=int(state["steps"]),
                  curve=tuple((int(s), float(r)) for s, r in state["curve"]),
                  segments=tuple(state["segments"]),
                  train_seconds=float(state["train_seconds"]),
                  params_file=state["params_file"])


def _write_params(path: str, params) -> None:
  state = flax.serialization.to_state_dict(jax.device_get(params))
  atomic.write_bytes_atomic(path, flax.serialization.msgpack_serialize(state))


def _read_params(path: str, template):
  with open(path, "rb") as f:
    try:
      state = flax.serialization.msgpack_restore(f.read())
      return flax.serialization.from_state_dict(template, state)
    except Exception as e:  # noqa: BLE001
      raise ValueError(f"{path}: cannot restore parameters "
                       f"({type(e).__name__}: {e}).") from e


def save(out_dir: str, config, step: int, params, curve, segments,
         train_seconds: float) -> None:
  """Writes the resume point of evaluation ``step`` (params, snapshot, state).

  ``params`` is ``(normalizer, policy, value)`` (SAC's: ``(normalizer,
  policy, ...)``; only the first two are snapshotted).
  """
  root = directory(out_dir)
  params_file = f"params_{step}.msgpack"
  _write_params(os.path.join(root, params_file), params)
  _write_params(os.path.join(root, "snapshots", f"{step}.msgpack"),
                tuple(params[:2]))
  atomic.write_json_atomic(_state_path(out_dir), dict(
      steps=step, params_file=params_file, curve=[list(p) for p in curve],
      segments=list(segments), train_seconds=train_seconds,
      config=_comparable(config)))
  for old in glob.glob(os.path.join(root, "params_*.msgpack")):
    if os.path.basename(old) != params_file:
      os.remove(old)


def load_params(out_dir: str, progress: Progress, template):
  """The full parameters of the last resume point, shaped like ``template``."""
  path = os.path.join(directory(out_dir), progress.params_file)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{_state_path(out_dir)} names {path}, which is "
                            f"missing; remove {directory(out_dir)} to start "
                            f"over.")
  return _read_params(path, template)


def load_snapshots(out_dir: str, curve, template) -> list[tuple[int, Any]]:
  """``(step, (normalizer, policy))`` of every evaluation on ``curve`` whose
  snapshot was written, in step order."""
  snapshots = []
  for step, _ in curve:
    path = os.path.join(directory(out_dir), "snapshots", f"{step}.msgpack")
    if os.path.exists(path):
      snapshots.append((int(step), _read_params(path, template)))
  return snapshots
