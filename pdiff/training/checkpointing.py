"""Checkpoints of the pre-trained policy (orbax), and loading it back.

A training run's work directory holds:

  {workdir}/config.json          the training config, model dims filled in
  {workdir}/checkpoints/<step>/  orbax checkpoints of the `TrainState`
  {workdir}/tensorboard/         TensorBoard event files
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp

from pdiff.models.prompt_dt import PromptDT, make_prompt_dt
from pdiff.training.train_state import TrainState

CHECKPOINT_SUBDIR = "checkpoints"
TENSORBOARD_SUBDIR = "tensorboard"
CONFIG_FILE = "config.json"


def make_checkpoint_manager(
    workdir: str, max_to_keep: int | None = 3) -> ocp.CheckpointManager:
  """Checkpoint manager for `{workdir}/checkpoints`.

  Args:
    workdir: the run's work directory.
    max_to_keep: most recent checkpoints to keep; None keeps all.

  Returns:
    An `ocp.CheckpointManager` (saves asynchronously; close it when done).
  """
  if max_to_keep is not None and max_to_keep < 1:
    raise ValueError(f"max_to_keep must be >= 1 or None, got {max_to_keep}")
  directory = os.path.join(os.path.abspath(workdir), CHECKPOINT_SUBDIR)
  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
  return ocp.CheckpointManager(directory, options=options)


def save_train_state(
    manager: ocp.CheckpointManager, state: TrainState, *, force: bool = False
) -> bool:
  """Saves `state` under its own step number; returns whether it saved."""
  return manager.save(int(state.step), args=ocp.args.StandardSave(state),
                      force=force)


def restore_latest_train_state(
    manager: ocp.CheckpointManager, like: TrainState) -> TrainState | None:
  """Restores the latest checkpoint into the structure of `like`.

  Args:
    manager: the run's checkpoint manager.
    like: a train state with the target structure, dtypes and shardings
      (e.g. the freshly initialised one); its values are not used.

  Returns:
    The restored state (same shardings as `like`), or None when there is no
    checkpoint yet.
  """
  step = manager.latest_step()
  if step is None:
    return None
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
  try:
    state = manager.restore(step, args=ocp.args.StandardRestore(abstract))
  except Exception as e:  # noqa: BLE001  (orbax and tensorstore raise many)
    raise ValueError(
        f"{manager.directory}/{step}: cannot restore the checkpoint, damaged "
        f"or of another model ({type(e).__name__}: {str(e)[:300]}); delete "
        "that step's directory to resume from an earlier one.") from e
  if int(state.step) != step:
    raise ValueError(f"checkpoint {step} in {manager.directory} holds a "
                     f"train state at step {int(state.step)}")
  return state


def write_config(workdir: str, config: ml_collections.ConfigDict) -> None:
  """Writes the run's config as JSON to `{workdir}/config.json`."""
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, CONFIG_FILE), "w") as f:
    f.write(config.to_json_best_effort(indent=2, sort_keys=True))


# Training fields that may change between a run and its resumption.
_RESUMABLE_FIELDS = ("max_to_keep",)


def check_config_unchanged(workdir: str,
                           config: ml_collections.ConfigDict) -> None:
  """Raises ValueError when ``{workdir}`` holds checkpoints of a run whose
  ``config.json`` differs from ``config`` (model, optimiser or seed), naming
  each changed field; nothing is written."""
  path = os.path.join(workdir, CONFIG_FILE)
  checkpoints = os.path.join(workdir, CHECKPOINT_SUBDIR)
  if not (os.path.exists(path) and os.path.isdir(checkpoints)
          and os.listdir(checkpoints)):
    return
  old = json.loads(read_config(workdir).to_json_best_effort())
  new = json.loads(config.to_json_best_effort())
  changes = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}"
             for k in sorted(set(old) | set(new))
             if k not in _RESUMABLE_FIELDS and old.get(k) != new.get(k)]
  if changes:
    raise ValueError(
        f"{workdir} holds checkpoints of a training run with another config "
        f"({'; '.join(changes)}); delete {workdir} to train anew or use "
        "another directory.")


def read_config(workdir: str) -> ml_collections.ConfigDict:
  """Reads `{workdir}/config.json` written by `write_config`."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    raise ValueError(f"no training config at {path}: is {workdir!r} the work "
                     "directory of a Prompt-DT training run?")
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def checkpoint_steps(workdir: str) -> list[int]:
  """The steps of the checkpoints kept in ``{workdir}/checkpoints``, in
  increasing order (empty when there are none)."""
  directory = os.path.join(os.path.abspath(workdir), CHECKPOINT_SUBDIR)
  if not os.path.isdir(directory):
    return []
  manager = ocp.CheckpointManager(
      directory, options=ocp.CheckpointManagerOptions(
          read_only=True, create=False, save_interval_steps=0))
  try:
    return sorted(int(s) for s in manager.all_steps())
  finally:
    manager.close()


def load_pretrained(
    workdir: str,
    step: int | None = None,
    sharding: jax.sharding.Sharding | None = None,
) -> tuple[PromptDT, Any]:
  """Loads a trained policy: the module and its parameters.

  Works whatever the device layout of the run that saved it (e.g. a
  checkpoint written by 8 devices loads on 1).

  Args:
    workdir: work directory of a `pdiff.training.loop.train` run.
    step: checkpoint to load; the latest by default.
    sharding: where to put the parameters; the first device by default
      (pass `pdiff.parallel.replicated_sharding(mesh)` to replicate them).

  Returns:
    `(model, params)`, ready for `model.apply({'params': params}, ...)`.

  Raises:
    ValueError: if the directory has no config or no such checkpoint.
  """
  config = read_config(workdir)
  model = make_prompt_dt(config.model)
  if sharding is None:
    sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  directory = os.path.join(os.path.abspath(workdir), CHECKPOINT_SUBDIR)
  manager = ocp.CheckpointManager(
      directory, item_handlers=ocp.StandardCheckpointHandler(),
      options=ocp.CheckpointManagerOptions(
          read_only=True, create=False, save_interval_steps=0))
  try:
    step = manager.latest_step() if step is None else step
    if step is None or step not in manager.all_steps():
      raise ValueError(f"no checkpoint {'(any)' if step is None else step} in "
                       f"{directory}; found {list(manager.all_steps())}")
    try:
      # The saved arrays' shapes and dtypes, placed with `sharding`.
      metadata = dict(manager.item_metadata(step).tree)
      abstract = jax.tree.map(
          lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=sharding),
          metadata)
      restored = manager.restore(step,
                                 args=ocp.args.StandardRestore(abstract))
    except Exception as e:  # noqa: BLE001  (orbax and tensorstore raise many)
      raise ValueError(
          f"{directory}/{step}: cannot restore the checkpoint, damaged "
          f"({type(e).__name__}: {str(e)[:300]}).") from e
  finally:
    manager.close()
  return model, restored["params"]
