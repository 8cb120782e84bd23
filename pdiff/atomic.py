"""Files written whole or not at all: a temporary file in the same
directory, flushed and fsynced, then renamed over the target
(``os.replace``), so a reader or a rerun never sees half a file."""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any


def write_bytes_atomic(path: str, data: bytes) -> None:
  """Writes ``data`` to ``path`` atomically (readable by all: 0o644)."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.chmod(tmp, 0o644)  # mkstemp's 0o600 would hide results from others
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def write_json_atomic(path: str, data: Any, *, allow_nan: bool = True) -> None:
  """Writes ``data`` as indented JSON with sorted keys, atomically."""
  text = json.dumps(data, indent=1, sort_keys=True, allow_nan=allow_nan)
  write_bytes_atomic(path, text.encode())
