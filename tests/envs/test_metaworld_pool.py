"""Tests of the host workers that step Meta-World reach batches
(``pdiff.envs.host_pool``, ``PDIFF_HOST_WORKERS``).

The pool's tests need the ``metaworld`` extra and are skipped, with the
reason, without it; the variable's parsing is tested either way.
"""

import dataclasses
import os
import signal
import threading
import time

import jax
import numpy as np
import pytest

from pdiff import envs
from pdiff.envs import host_pool, metaworld_reach

needs_metaworld = pytest.mark.skipif(
    not metaworld_reach.metaworld_available(),
    reason="the metaworld extra is not installed: "
    + metaworld_reach.EXTRA_HINT)

STEPS = 3
INDICES = np.array([0, 5, 5, 19, 8, 3])  # 6 episodes of 5 tasks


@pytest.fixture(scope="module")
def family():
  return dataclasses.replace(envs.make("metaworld_reach"),
                             episode_length=STEPS)


@pytest.fixture(scope="module")
def pool(family):
  pool = metaworld_reach.worker_pool(family.task_values)
  yield pool
  pool.close()


@pytest.mark.parametrize("value, batch, expected", [
    ("1", 100, 1), ("2", 6, 2), (" 3 ", 6, 3), ("3", 5, 2), ("4", 3, 1),
    ("auto", 100, 8), ("AUTO", 6, 3), ("auto", 1, 1), ("", 100, 8)])
def test_workers_follow_the_variable(monkeypatch, value, batch, expected):
  monkeypatch.setattr(host_pool, "available_cores", lambda: 8)
  monkeypatch.setenv("PDIFF_HOST_WORKERS", value)
  assert host_pool.workers_for(batch) == expected


def test_auto_is_the_default_and_counts_the_cores_we_may_use(monkeypatch):
  monkeypatch.delenv("PDIFF_HOST_WORKERS", raising=False)
  assert host_pool.requested_workers() is None
  assert host_pool.available_cores() == len(os.sched_getaffinity(0))
  assert host_pool.workers_for(10**6) == min(host_pool.available_cores(),
                                              host_pool.AUTO_MAX_WORKERS)
  monkeypatch.setattr(host_pool, "available_cores", lambda: 64)
  assert host_pool.workers_for(10**6) == host_pool.AUTO_MAX_WORKERS
  monkeypatch.setenv(host_pool.ENV_VAR, "64")
  assert host_pool.workers_for(10**6) == 64  # an explicit count is kept


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5", "auto2"])
def test_a_bad_variable_is_refused(monkeypatch, value):
  monkeypatch.setenv("PDIFF_HOST_WORKERS", value)
  with pytest.raises(ValueError, match=(
      rf"PDIFF_HOST_WORKERS='{value}': expected a positive integer .* or "
      r"'auto'")):
    host_pool.workers_for(10)


def test_in_process_batches_of_two_threads_step_one_at_a_time(monkeypatch):
  monkeypatch.setenv("PDIFF_HOST_WORKERS", "1")
  spans, lock = [], threading.Lock()

  def op(index):
    start = time.perf_counter()
    time.sleep(0.05)  # long enough for the other thread to come in
    with lock:
      spans.append((start, time.perf_counter()))
    return (np.asarray(index),)

  pool = host_pool.HostPool("test", lambda: {"op": op})
  threads = [threading.Thread(target=pool.run, args=("op", np.arange(2)))
             for _ in range(4)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  spans.sort()
  assert len(spans) == 4 and pool.num_started == 0
  assert all(a[1] <= b[0]  # no overlap
             for a, b in zip(spans, spans[1:], strict=False))


@needs_metaworld
@pytest.mark.parametrize("value, batch", [("1", 6), ("2", 3)])
def test_one_worker_or_a_small_batch_steps_in_process(monkeypatch, family,
                                                      value, batch):
  monkeypatch.setenv("PDIFF_HOST_WORKERS", value)
  pool = host_pool.HostPool("metaworld_reach", lambda: metaworld_reach
                            .batched_ops(family.task_values))  # unpicklable
  words, obs = pool.run("reset", INDICES[:batch])
  assert words.shape == (batch, family.host.state_words)
  assert obs.shape == (batch, 39)
  assert pool.num_started == 0


def rollout(family):
  """``jit(play)``: reset and ``STEPS`` steps of the ``INDICES`` episodes;
  returns the first and every later state's words, observation, reward,
  success and distance."""

  def play(actions):
    tasks = family.tasks(INDICES)
    keys = jax.random.split(jax.random.key(0), len(INDICES))
    state = jax.vmap(family.reset)(keys, tasks)

    def body(state, action):
      state = jax.vmap(family.step)(state, action)
      return state, (state.pipeline_state["words"], state.obs, state.reward,
                     state.metrics["success"],
                     state.metrics["tcp_to_target"])

    first = (state.pipeline_state["words"], state.obs)
    return first, jax.lax.scan(body, state, actions)[1]

  return jax.jit(play)


@needs_metaworld
def test_workers_step_bit_for_bit_like_this_process(monkeypatch, family,
                                                    pool):
  actions = np.random.default_rng(0).uniform(
      -1, 1, (STEPS, len(INDICES), 4)).astype(np.float32)
  play = rollout(family)
  monkeypatch.setenv("PDIFF_HOST_WORKERS", "1")
  expected = jax.device_get(play(actions))
  assert pool.num_started == 0
  monkeypatch.setenv("PDIFF_HOST_WORKERS", "2")
  got = jax.device_get(play(actions))
  assert pool.num_started == 2
  names = ("reset words", "reset obs", "words", "obs", "reward", "success",
           "distance")
  for name, a, b in zip(names, jax.tree.leaves(expected),
                        jax.tree.leaves(got), strict=True):
    assert a.dtype == b.dtype and a.shape == b.shape, name
    np.testing.assert_array_equal(a.view(np.uint8), b.view(np.uint8),
                                  err_msg=name)
  assert np.ptp(expected[1][2]) > 0  # the rewards vary over the episodes


@needs_metaworld
def test_a_workers_error_reaches_the_caller(monkeypatch, family, pool):
  words, _ = metaworld_reach.batched_ops(family.task_values)["reset"](
      INDICES)
  args = (np.r_[INDICES[:5], 99], words, np.zeros(6, np.int32),
          np.zeros((6, 4), np.float32))
  # The workers' environments are reset too, so that both sides fail on the
  # bad index, whichever tests ran before.
  monkeypatch.setenv("PDIFF_HOST_WORKERS", "2")
  pool.run("reset", INDICES)
  monkeypatch.setenv("PDIFF_HOST_WORKERS", "1")
  with pytest.raises(IndexError) as in_process:
    pool.run("step", *args)
  monkeypatch.setenv("PDIFF_HOST_WORKERS", "2")
  with pytest.raises(IndexError) as in_worker:
    pool.run("step", *args)
  assert str(in_worker.value) == str(in_process.value)
  assert "host worker" in "".join(in_worker.value.__notes__)
  # The pool still answers.
  np.testing.assert_array_equal(pool.run("reset", INDICES)[0], words)


@needs_metaworld
def test_a_killed_worker_raises_instead_of_hanging(monkeypatch, pool):
  monkeypatch.setenv("PDIFF_HOST_WORKERS", "2")
  pool.run("reset", INDICES)
  pid = pool.pids[1]
  os.kill(pid, signal.SIGKILL)
  with pytest.raises(RuntimeError, match=(
      rf"metaworld_reach: host worker 1 of 2 \(pid {pid}\) exited with code "
      r"-9 before replying")):
    pool.run("reset", INDICES)
  assert pool.num_started == 0  # shut down; the next use starts a new pool
