"""host_pool: steps a batch of host-side episodes in worker processes.

A family whose physics run in Python on the host (``metaworld_reach``) steps
its whole batch of episodes in one ``jax.pure_callback``, one episode after
the other. A ``HostPool`` splits such a batch into contiguous chunks, one per
worker process; each worker runs the same per-episode code on its own copy of
the host environments, and the chunks' results are concatenated in order, so
they equal the in-process results bit for bit.

The number of workers is an execution setting, read from the environment
variable ``PDIFF_HOST_WORKERS`` at every call: a positive integer, or
``auto`` (the default) for the number of CPU cores available to the process,
at most ``AUTO_MAX_WORKERS`` (each worker holds its own copy of the
environments and imports, about 250 MB). Each worker gets at least
``MIN_EPISODES_PER_WORKER`` episodes; a batch too small for two workers,
or ``PDIFF_HOST_WORKERS=1``, steps in this process without starting any.
Workers are started (with ``spawn``: the parent runs JAX's threads, so it
never forks) on first use and stopped at exit or by ``close``. Calls from
several threads (a pipeline runs seeds and rows in threads, and an online
method's episodes may meet another unit's evaluation) step one batch at a
time, in this process as in the workers: the host environments are shared.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import pickle
import signal
import threading
import time
import traceback
import weakref
from collections.abc import Callable
from multiprocessing import connection as mp_connection

import numpy as np

from pdiff import env_vars

ENV_VAR = "PDIFF_HOST_WORKERS"
# Fewer episodes per worker do not pay for the exchange with the worker.
MIN_EPISODES_PER_WORKER = 2
# ``auto`` uses at most this many workers, however many cores there are.
AUTO_MAX_WORKERS = 16
_JOIN_TIMEOUT_S = 5.0

# ``{op: fn(index, *args) -> tuple of arrays}``, each fn over leading batch
# axes; a picklable callable (a module-level function or a partial of one)
# builds it in every worker and in this process.
MakeOps = Callable[[], dict[str, Callable[..., tuple[np.ndarray, ...]]]]

_POOLS: weakref.WeakSet[HostPool] = weakref.WeakSet()


def requested_workers() -> int | None:
  """``PDIFF_HOST_WORKERS`` as a positive integer, or None for ``auto``.

  Raises:
    ValueError: the variable holds anything else.
  """
  return env_vars.count_or_auto(
      ENV_VAR, "worker processes that step host environments; 1 steps them "
      "in this process", "the number of CPU cores available to the process")


def available_cores() -> int:
  """CPU cores this process may run on."""
  if hasattr(os, "sched_getaffinity"):
    return len(os.sched_getaffinity(0))
  return os.cpu_count() or 1


def workers_for(batch_size: int) -> int:
  """Worker processes for a batch of ``batch_size`` episodes (1: in-process).

  ``PDIFF_HOST_WORKERS`` (or, for ``auto``, the available cores, at most
  ``AUTO_MAX_WORKERS``), capped so that each worker gets at least
  ``MIN_EPISODES_PER_WORKER`` episodes.
  """
  requested = requested_workers()
  workers = (min(available_cores(), AUTO_MAX_WORKERS) if requested is None
             else requested)
  return max(1, min(workers, batch_size // MIN_EPISODES_PER_WORKER))


def _serve(conn, make_ops: MakeOps) -> None:
  """A worker's loop: ``(op, flat args)`` in, ``("ok", outputs)`` or
  ``("error", exception, traceback)`` out, until ``None`` or a closed pipe."""
  signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
  ops, failure = None, None
  try:
    ops = make_ops()
  except Exception as e:  # noqa: BLE001 (reported with each request)
    failure = e
  while True:
    try:
      request = conn.recv()
    except EOFError:
      return
    if request is None:
      return
    op, args = request
    try:
      if ops is None:
        raise failure
      reply = ("ok", ops[op](*args))
    except Exception as e:  # noqa: BLE001 (the parent raises it)
      reply = ("error", _portable(e), traceback.format_exc())
    conn.send(reply)


def _portable(error: Exception) -> Exception:
  """``error`` if it survives pickling, else a RuntimeError with its text."""
  try:
    return pickle.loads(pickle.dumps(error))
  except Exception:  # noqa: BLE001
    return RuntimeError(f"{type(error).__name__}: {error}")


class HostPool:
  """Worker processes that run a family's batched host operations.

  Args:
    name: the task family, for messages.
    make_ops: builds ``{op: fn}`` (see ``MakeOps``); must be picklable.
  """

  def __init__(self, name: str, make_ops: MakeOps):
    self.name = name
    self._make_ops = make_ops
    self._workers: list[tuple[multiprocessing.process.BaseProcess,
                              mp_connection.Connection]] = []
    self._lock = threading.RLock()
    _POOLS.add(self)

  @property
  def num_started(self) -> int:
    """Worker processes running now."""
    return len(self._workers)

  @property
  def pids(self) -> list[int]:
    """Process ids of the running workers."""
    return [process.pid for process, _ in self._workers]

  def callback(self, op: str) -> Callable[..., tuple[np.ndarray, ...]]:
    """``run`` of one operation, for ``jax.pure_callback``."""
    def run(index, *args):
      return self.run(op, index, *args)
    return run

  def run(self, op: str, index, *args) -> tuple[np.ndarray, ...]:
    """Runs ``op`` over a batch, in this process or split over workers.

    Args:
      op: a key of ``make_ops()``.
      index: task indices, of the batch's shape.
      *args: per-episode arguments, each with the batch's leading shape.

    Returns:
      ``make_ops()[op](index, *args)``, bit for bit.

    Raises:
      RuntimeError: a worker exited (the pool is closed and restarts on its
        next use).
    """
    index = np.asarray(index)
    workers = workers_for(index.size)
    if workers <= 1:
      # The process's host environments are shared by its threads (a
      # pipeline runs units in threads): one batch steps at a time.
      with self._lock:
        return self._make_ops()[op](index, *args)
    return self._run_in_workers(workers, op, index, args)

  def _run_in_workers(self, workers: int, op: str, index: np.ndarray,
                      args) -> tuple[np.ndarray, ...]:
    batch, size = index.shape, index.size
    flat = [index.reshape(size)] + [
        np.ascontiguousarray(a).reshape((size,) + np.shape(a)[len(batch):])
        for a in args]
    bounds = np.cumsum([0] + [size // workers + (k < size % workers)
                              for k in range(workers)])
    with self._lock:
      try:
        self._start(workers)
        for k in range(workers):
          lo, hi = bounds[k], bounds[k + 1]
          self._send(k, (op, [a[lo:hi] for a in flat]))
        replies = [self._receive(k) for k in range(workers)]
      except BaseException:
        # Unanswered requests would desynchronise the pipes: start afresh.
        self._stop(wait_s=0.0)
        raise
    for reply in replies:  # the first failing chunk, as in-process
      if reply[0] == "error":
        _, error, worker_traceback = reply
        error.add_note(f"Raised in a {self.name} host worker:\n"
                       f"{worker_traceback}")
        raise error
    outs = []
    for parts in zip(*(reply[1] for reply in replies), strict=True):
      out = np.concatenate(parts)
      outs.append(out.reshape(batch + out.shape[1:]))
    return tuple(outs)

  def _start(self, workers: int) -> None:
    context = multiprocessing.get_context("spawn")
    while len(self._workers) < workers:
      parent_conn, child_conn = context.Pipe()
      process = context.Process(
          target=_serve, args=(child_conn, self._make_ops), daemon=True,
          name=f"{self.name}-host-worker-{len(self._workers)}")
      process.start()
      child_conn.close()  # the worker holds it: EOF here once it exits
      self._workers.append((process, parent_conn))

  def _send(self, k: int, message) -> None:
    try:
      self._workers[k][1].send(message)
    except OSError:  # BrokenPipeError: the worker is gone
      raise self._exited(k) from None

  def _receive(self, k: int):
    process, conn = self._workers[k]
    if conn in mp_connection.wait([conn, process.sentinel]):
      try:
        return conn.recv()
      except (EOFError, OSError):
        pass
    raise self._exited(k)

  def _exited(self, k: int) -> RuntimeError:
    process = self._workers[k][0]
    process.join(_JOIN_TIMEOUT_S)
    workers = len(self._workers)
    self._stop(wait_s=0.0)
    return RuntimeError(
        f"{self.name}: host worker {k} of {workers} (pid {process.pid}) "
        f"exited with code {process.exitcode} before replying; the pool was "
        f"shut down and starts again on its next use ({ENV_VAR}=1 steps "
        f"the environments in this process).")

  def close(self) -> None:
    """Stops the workers (a later ``run`` starts new ones)."""
    self._stop(wait_s=_JOIN_TIMEOUT_S)

  def _stop(self, wait_s: float) -> None:
    """Asks the workers to exit, waits up to ``wait_s`` for them all, then
    terminates those still running."""
    with self._lock:
      workers, self._workers = self._workers, []
      for _, conn in workers:
        try:
          conn.send(None)
        except OSError:
          pass
      deadline = time.monotonic() + wait_s
      for process, _ in workers:
        process.join(max(0.0, deadline - time.monotonic()))
      for process, conn in workers:
        if process.is_alive():
          process.terminate()
          process.join(_JOIN_TIMEOUT_S)
        conn.close()


@atexit.register
def close_all() -> None:
  """Stops every pool's workers (also run at interpreter exit)."""
  for pool in list(_POOLS):
    pool.close()
