"""``pdiff.pipeline.concurrency``: the thread count, the first-call gate and
the threaded map the pipeline runs its seeds and rows with."""

import threading
import time

import pytest

from pdiff.pipeline import concurrency


@pytest.mark.parametrize("text,expected", [
    ("auto", None), ("", None), (" AUTO ", None), ("1", 1), ("3", 3)])
def test_requested_threads(monkeypatch, text, expected):
  monkeypatch.setenv(concurrency.ENV_VAR, text)
  assert concurrency.requested_threads() == expected


@pytest.mark.parametrize("text", ["0", "-2", "two", "1.5"])
def test_bad_thread_count_names_the_variable(monkeypatch, text):
  monkeypatch.setenv(concurrency.ENV_VAR, text)
  with pytest.raises(ValueError, match=f"PDIFF_RUN_THREADS={text!r}"):
    concurrency.run_threads()


def test_auto_uses_the_cores_on_cpu_up_to_the_cap(monkeypatch):
  monkeypatch.delenv(concurrency.ENV_VAR, raising=False)
  monkeypatch.setattr(concurrency, "available_cores", lambda: 64)
  assert concurrency.run_threads() == concurrency.AUTO_MAX_THREADS
  monkeypatch.setattr(concurrency, "available_cores", lambda: 2)
  assert concurrency.run_threads() == 2
  monkeypatch.setattr(concurrency.jax, "default_backend", lambda: "gpu")
  assert concurrency.run_threads() == 1
  monkeypatch.setenv(concurrency.ENV_VAR, "3")
  assert concurrency.run_threads() == 3


class Probe:
  """Records which calls were running at once."""

  def __init__(self):
    self.lock = threading.Lock()
    self.active: set[str] = set()
    self.overlaps: list[tuple[str, frozenset]] = []

  def call(self, name, seconds=0.05):
    with self.lock:
      self.overlaps.append((name, frozenset(self.active)))
      self.active.add(name)
    time.sleep(seconds)
    with self.lock:
      self.active.discard(name)
    return name


def test_gate_runs_a_keys_first_call_alone():
  gate, probe = concurrency.FirstCallGate(), Probe()
  items = [("a", "a0"), ("a", "a1"), ("a", "a2"), ("b", "b0")]
  out = concurrency.map_in_threads(
      lambda item: gate(item[0], probe.call, item[1], 0.2), items, threads=4)
  assert out == ["a0", "a1", "a2", "b0"]
  seen = dict(probe.overlaps)
  order = [name for name, _ in probe.overlaps if name.startswith("a")]
  first, later = order[0], order[1:]
  # a's first call ran with no other a running; the others started after it.
  assert not any(n.startswith("a") for n in seen[first])
  assert all(first not in seen[n] for n in later)
  # Another key does not wait for a's first call.
  assert first in seen["b0"] or "b0" in seen[first]
  # After the first call, the key's calls run at once.
  assert later[0] in seen[later[1]]


def test_gate_reopens_after_a_failed_first_call():
  gate, calls = concurrency.FirstCallGate(), []

  def fails():
    calls.append("fails")
    raise RuntimeError("compile error")

  with pytest.raises(RuntimeError, match="compile error"):
    gate("k", fails)
  assert gate("k", lambda: calls.append("second") or 7) == 7
  assert calls == ["fails", "second"]


@pytest.mark.parametrize("threads", [1, 2, 5])
def test_map_keeps_the_order_of_items(threads):
  out = concurrency.map_in_threads(lambda x: (time.sleep(0.01 * (5 - x)), x)[1],
                                   range(5), threads)
  assert out == [0, 1, 2, 3, 4]


def test_map_runs_items_at_once():
  probe = Probe()
  concurrency.map_in_threads(lambda n: probe.call(n, 0.2), ["x", "y"], 2)
  assert any(others for _, others in probe.overlaps)


def test_map_stops_starting_items_after_an_error():
  started = []

  def fn(x):
    started.append(x)
    if x == 1:
      raise ValueError("item 1 failed")
    time.sleep(0.1)
    return x

  with pytest.raises(ValueError, match="item 1 failed"):
    concurrency.map_in_threads(fn, range(10), threads=2)
  assert len(started) < 10


def test_map_rejects_no_threads():
  with pytest.raises(ValueError, match="threads must be >= 1"):
    concurrency.map_in_threads(lambda x: x, [1, 2], 0)


def test_an_interrupt_lets_running_items_finish_and_starts_no_more(
    monkeypatch):
  started, finished = [], []
  wait = concurrency.concurrent.futures.wait

  def interrupted(futures):
    time.sleep(0.1)  # the first items are running
    raise KeyboardInterrupt

  def fn(x):
    started.append(x)
    time.sleep(0.3)
    finished.append(x)
    return x

  monkeypatch.setattr(concurrency.concurrent.futures, "wait", interrupted)
  with pytest.raises(KeyboardInterrupt):
    concurrency.map_in_threads(fn, range(10), threads=2)
  monkeypatch.setattr(concurrency.concurrent.futures, "wait", wait)
  assert sorted(started) == [0, 1]
  assert sorted(finished) == [0, 1]
