"""Parameter files that are checked on load and never written half.

:func:`save_params` writes flax-msgpack bytes through a temporary file and
``os.replace``; :func:`load_params` restores them into a template and checks
the tree structure, every leaf's shape and dtype, and raises
:class:`ParamsFileError` naming the file and the first mismatch, instead of a
library traceback (``flax.serialization.from_bytes`` checks no shapes).
"""

from __future__ import annotations

import os
from typing import Any

import flax.serialization
import jax
import numpy as np

from pdiff import atomic


class ParamsFileError(ValueError):
  """A parameter file is missing, damaged or does not fit its template."""


def save_params(path: str, params: Any) -> None:
  """Writes ``params`` (any pytree of arrays) to ``path`` atomically."""
  atomic.write_bytes_atomic(
      path, flax.serialization.to_bytes(jax.device_get(params)))


def load_params(path: str, template: Any, *, what: str = "parameters") -> Any:
  """Reads parameters written by :func:`save_params` into ``template``'s
  structure, checking structure, shapes and dtypes.

  Args:
    path: the file.
    template: a pytree of arrays or ``jax.ShapeDtypeStruct`` with the
      expected structure, shapes and dtypes.
    what: what the file holds, for messages.

  Raises:
    ParamsFileError: naming ``path`` and the first problem.
  """
  if not os.path.exists(path):
    raise ParamsFileError(f"{path}: {what} file missing.")
  with open(path, "rb") as f:
    data = f.read()
  try:
    state = flax.serialization.msgpack_restore(data)
  except Exception as e:  # noqa: BLE001  (msgpack raises many kinds)
    raise ParamsFileError(f"{path}: not a readable {what} file, truncated or "
                          f"damaged ({type(e).__name__}: {e}).") from e
  want = flax.serialization.to_state_dict(template)
  _check_tree(path, what, state, want, "")
  return flax.serialization.from_state_dict(
      template, jax.tree.map(np.asarray, state))


def _check_tree(path, what, got, want, where):
  if isinstance(want, dict):
    if not isinstance(got, dict):
      raise ParamsFileError(f"{path}: {what} at {where or '/'} is a "
                            f"{type(got).__name__}, expected a mapping.")
    if set(got) != set(want):
      missing = sorted(set(want) - set(got))
      extra = sorted(set(got) - set(want))
      raise ParamsFileError(
          f"{path}: {what} at {where or '/'} do not match the model: missing "
          f"{missing}, unexpected {extra}.")
    for key in want:
      _check_tree(path, what, got[key], want[key], f"{where}/{key}")
    return
  got_shape, want_shape = np.shape(got), tuple(want.shape)
  if got_shape != want_shape:
    raise ParamsFileError(f"{path}: {what} {where} has shape {got_shape}, "
                          f"expected {want_shape}.")
  got_dtype = np.asarray(got).dtype
  if got_dtype != np.dtype(want.dtype):
    raise ParamsFileError(f"{path}: {what} {where} has dtype {got_dtype}, "
                          f"expected {np.dtype(want.dtype)}.")
