"""JAX's persistent compilation cache, on by default for pdiff's launchers.

A launcher compiles the same programs every time it runs (the rollout, the
train step, the tuning steps); with the cache a rerun or a second launcher on
the same machine loads them from disk instead of compiling them again.
:func:`enable` is called by every launcher (``experiments/launch.py``) before
anything is compiled. The directory is chosen in this order:

1. ``PDIFF_COMPILATION_CACHE``: a directory, or ``off`` (also ``0``,
   ``none`` or empty) to leave the cache disabled;
2. a directory the user already gave JAX (``JAX_COMPILATION_CACHE_DIR`` or
   ``jax.config.update("jax_compilation_cache_dir", ...)``), left as it is;
3. ``$XDG_CACHE_HOME/pdiff/jax``, by default ``~/.cache/pdiff/jax``.

Only programs whose compilation takes at least JAX's
``jax_persistent_cache_min_compile_time_secs`` (1 s unless the user sets
``JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS``) are written, so the
directory stays small. Entries are keyed by the program, the JAX and XLA
versions and the device, so a stale entry is never used; deleting the
directory is always safe.

>>> default_directory().endswith(os.path.join("pdiff", "jax"))
True
"""

from __future__ import annotations

import os

import jax

ENV = "PDIFF_COMPILATION_CACHE"
# Values of ENV that leave the cache disabled.
OFF = ("", "0", "off", "none", "false")


def default_directory() -> str:
  """``$XDG_CACHE_HOME/pdiff/jax`` (``~/.cache/pdiff/jax`` without it)."""
  root = os.environ.get("XDG_CACHE_HOME") or os.path.join(
      os.path.expanduser("~"), ".cache")
  return os.path.join(root, "pdiff", "jax")


def directory() -> str | None:
  """The directory :func:`enable` uses, or None when the cache is off."""
  value = os.environ.get(ENV)
  if value is not None:
    return None if value.strip().lower() in OFF else os.path.expanduser(value)
  return jax.config.jax_compilation_cache_dir or default_directory()


def enable() -> str | None:
  """Turns JAX's persistent compilation cache on; returns its directory.

  Returns None, changing nothing, when ``PDIFF_COMPILATION_CACHE`` turns it
  off. Call it before the first compilation: JAX reads the setting once.

  Raises:
    ValueError: the directory cannot be created, naming it and
      ``PDIFF_COMPILATION_CACHE``.
  """
  path = directory()
  if path is None:
    return None
  try:
    os.makedirs(path, exist_ok=True)
  except OSError as e:
    raise ValueError(
        f"compilation cache directory {path!r} cannot be created ({e}); set "
        f"{ENV} to another directory, or to 'off'.") from e
  jax.config.update("jax_compilation_cache_dir", path)
  return path
