"""Independent units of a run (a seed's stage-1 model, a row's seed) run in
threads at once.

Most of a results table is many small XLA programs (a denoiser of a few
256-wide layers, a Prompt-DT of 64-wide embeddings) that leave cores idle:
on the CPU one of them keeps about one and a half cores of 2 busy. Units of
work that do not depend on each other, run from several Python threads (JAX
releases the interpreter lock while a program runs), fill the idle cores;
each unit computes exactly what it computes alone, so the results are the
same bit for bit and the setting enters no config or fingerprint.

``PDIFF_RUN_THREADS`` sets how many threads: a positive integer, or ``auto``
(the default): on the CPU backend the cores available, at most
``AUTO_MAX_THREADS``; on accelerators 1.

Two threads that call a jitted function for the first time at once would
both compile it (JAX does not share a compilation in progress), so
:class:`FirstCallGate` lets the first call of each program run alone and the
others wait for it.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import TypeVar

import jax

from pdiff import env_vars
from pdiff.envs.host_pool import available_cores

ENV_VAR = "PDIFF_RUN_THREADS"
# ``auto`` uses at most this many threads, however many cores there are.
AUTO_MAX_THREADS = 8

T = TypeVar("T")
R = TypeVar("R")


def requested_threads() -> int | None:
  """``PDIFF_RUN_THREADS`` as a positive integer, or None for ``auto``.

  Raises:
    ValueError: the variable holds anything else.
  """
  return env_vars.count_or_auto(
      ENV_VAR, "threads that run independent seeds and rows at once; 1 runs "
      "them one after the other", f"the CPU cores available, at most "
      f"{AUTO_MAX_THREADS}, on the CPU backend; 1 on accelerators")


def run_threads() -> int:
  """Threads for independent units: ``PDIFF_RUN_THREADS``, or ``auto``'s
  choice (see the module's docstring)."""
  requested = requested_threads()
  if requested is not None:
    return requested
  if jax.default_backend() != "cpu":
    return 1
  return max(1, min(available_cores(), AUTO_MAX_THREADS))


class FirstCallGate:
  """Runs the first call of each key alone; later calls run at once.

  ``gate(key, fn, *args)`` calls ``fn(*args)``. While the first call of
  ``key`` runs (compiling ``key``'s programs), other calls of the same key
  wait for it to finish; calls of other keys do not wait. A first call that
  raises leaves the key closed, so the next call of that key is again a
  first call.
  """

  def __init__(self):
    self._lock = threading.Lock()
    self._key_locks: dict[Hashable, threading.Lock] = {}
    self._opened: set[Hashable] = set()

  def __call__(self, key: Hashable, fn: Callable[..., R], *args, **kwargs
               ) -> R:
    if key in self._opened:
      return fn(*args, **kwargs)
    with self._lock:
      key_lock = self._key_locks.setdefault(key, threading.Lock())
    with key_lock:
      if key not in self._opened:
        out = fn(*args, **kwargs)
        self._opened.add(key)
        return out
    return fn(*args, **kwargs)


def map_in_threads(fn: Callable[[T], R], items: Iterable[T], threads: int
                   ) -> list[R]:
  """``[fn(item) for item in items]``, up to ``threads`` items at once.

  Items start in order. If one raises, no further item starts, the items
  already running finish, and the first error (in item order) is raised;
  an interrupt of the calling thread (Ctrl-C) also lets the running items
  finish and starts no other.
  """
  items = list(items)
  if threads < 1:
    raise ValueError(f"threads must be >= 1, got {threads}.")
  if threads == 1 or len(items) <= 1:
    return [fn(item) for item in items]
  stop = threading.Event()

  def guarded(item):
    if stop.is_set():
      raise _NotStarted()
    try:
      return fn(item)
    except BaseException:
      stop.set()
      raise

  with concurrent.futures.ThreadPoolExecutor(
      max_workers=min(threads, len(items)),
      thread_name_prefix="pdiff-run") as pool:
    futures: Sequence[concurrent.futures.Future] = [
        pool.submit(guarded, item) for item in items]
    try:
      concurrent.futures.wait(futures)
    except BaseException:  # e.g. KeyboardInterrupt: start nothing more
      stop.set()
      for future in futures:
        future.cancel()
      raise
  for future in futures:
    error = future.exception()
    if error is not None and not isinstance(error, _NotStarted):
      raise error
  return [f.result() for f in futures]


class _NotStarted(Exception):
  """An item left out after another item's error."""
