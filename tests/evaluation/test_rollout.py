"""Tests of the prompted rollouts (``pdiff.evaluation.rollout``) on point_robot.

Hand-written policies make the expected returns computable by a plain Python
loop over ``family.reset``/``family.step``; a tiny untrained Prompt-DT checks
the PLM entry points.
"""

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdiff import envs
from pdiff.data import storage
from pdiff.evaluation import pretrained
from pdiff.evaluation import rollout as rollout_lib
from pdiff.evaluation.rollout import (
  RolloutResult,
  evaluate_tuned,
  has_success_metric,
  make_prompted_rollout,
  over_seeds,
)
from pdiff.tuning.base import few_shot_prompt, stack_tuned
from pdiff.types import Segments
from tests.tuning import tiny_plm

# Start positions are random, so episode keys matter.
FAMILY = dataclasses.replace(envs.make("point_robot"), reset_noise_scale=0.3)
TASKS = np.array([2, 7, 11])
NUM_EPISODES = 2
K = 3  # context window
KP = 2  # prompt steps
DS = DA = 2


def dummy_prompts(num_tasks: int, seed: int = 0) -> Segments:
  """Random prompts [num_tasks, KP, ...] (only read by window_policy)."""
  k1, k2 = jax.random.split(jax.random.key(seed))
  return Segments(
      states=jax.random.normal(k1, (num_tasks, KP, DS)),
      actions=jax.random.uniform(k2, (num_tasks, KP, DA), minval=-1.0),
      rewards=jnp.zeros((num_tasks, KP)),
      returns_to_go=jnp.zeros((num_tasks, KP)),
      timesteps=jnp.zeros((num_tasks, KP), jnp.int32),
      mask=jnp.ones((num_tasks, KP)))


def constant_policy(params, segments, prompt):
  """Ignores window and prompt: the action ``params`` [da] at every step."""
  del prompt
  return jnp.broadcast_to(params, segments.actions.shape)


WEIGHTS = jax.random.normal(jax.random.key(42), (K * (DS + DA + 4) + DS, DA))


def window_policy(params, segments, prompt):
  """An action that depends on every field of the window and on the prompt.

  ``0.1 tanh(features @ W)`` stays inside point_robot's action bound, so
  the env applies it unclipped and every feature moves the robot.
  """
  del params
  b = segments.mask.shape[0]
  features = jnp.concatenate([
      segments.states.reshape(b, -1), segments.actions.reshape(b, -1),
      segments.rewards, segments.returns_to_go,
      segments.timesteps.astype(jnp.float32) / 10.0, segments.mask,
      prompt.states.mean(axis=1)], axis=-1)
  action = 0.1 * jnp.tanh(features @ WEIGHTS)  # [B, da]
  return jnp.broadcast_to(action[:, None], segments.actions.shape)


@pytest.fixture(scope="module")
def constant_rollout():
  return make_prompted_rollout(
      FAMILY, constant_policy, context_len=K, num_episodes=NUM_EPISODES,
      state_mean=jnp.zeros(DS), state_std=jnp.ones(DS))


@pytest.fixture(scope="module")
def per_task_rollout():
  return make_prompted_rollout(
      FAMILY, constant_policy, context_len=K, num_episodes=NUM_EPISODES,
      state_mean=jnp.zeros(DS), state_std=jnp.ones(DS), params_per_task=True)


def reference_returns(policy, params_per_task, prompts, tasks, key, *,
                      state_mean, state_std, target, max_ep_len):
  """Python loop over reset/step keeping the window as Prompt-DT's evaluation
  does: last K steps, left padding, current action zero."""
  step = jax.jit(FAMILY.step)
  reset = jax.jit(FAMILY.reset)
  act = jax.jit(policy)
  scale = FAMILY.return_scale
  returns = np.zeros((len(tasks), NUM_EPISODES))
  for m, (task, task_key) in enumerate(
      zip(tasks, jax.random.split(key, len(tasks)), strict=True)):
    prompt = jax.tree.map(lambda x, m=m: x[m:m + 1], prompts)
    for e, ep_key in enumerate(jax.random.split(task_key, NUM_EPISODES)):
      state = reset(ep_key, FAMILY.task(int(task)))
      hist = dict(s=[], a=[], r=[], rtg=[], t=[])
      rtg = target / scale
      for t in range(FAMILY.episode_length):
        hist["s"].append((np.asarray(state.obs) - state_mean) / state_std)
        hist["a"].append(np.zeros(DA))
        hist["r"].append(0.0)
        hist["rtg"].append(rtg)
        hist["t"].append(min(t, max_ep_len - 1))
        n = min(len(hist["s"]), K)
        pad = K - n

        def window(name, shape=(), n=n, pad=pad, hist=hist):
          real = np.asarray(hist[name][-n:], np.float32).reshape((n,) + shape)
          return np.concatenate([np.zeros((pad,) + shape, np.float32), real])

        segments = Segments(
            states=window("s", (DS,))[None], actions=window("a", (DA,))[None],
            rewards=window("r")[None], returns_to_go=window("rtg")[None],
            timesteps=window("t").astype(np.int32)[None],
            mask=np.concatenate([np.zeros(pad), np.ones(n)])[None].astype(
                np.float32))
        p = params_per_task[m] if params_per_task is not None else None
        action = np.asarray(act(p, segments, prompt))[0, -1]
        state = step(state, action)
        reward = float(state.reward)
        hist["a"][-1], hist["r"][-1] = action, reward
        returns[m, e] += reward
        rtg -= reward / scale
  return returns



def python_loop(family, key, action, num_episodes, accumulate):
  """``[len(TASKS), num_episodes]``: each episode played step by step in
  Python with the rollout's keys, ``accumulate(value, state)`` folded over
  its states (from 0)."""
  step, reset = jax.jit(family.step), jax.jit(family.reset)
  out = np.zeros((len(TASKS), num_episodes))
  for m, task_key in enumerate(jax.random.split(key, len(TASKS))):
    for e, ep_key in enumerate(jax.random.split(task_key, num_episodes)):
      state = reset(ep_key, family.task(int(TASKS[m])))
      for _ in range(family.episode_length):
        state = step(state, action)
        out[m, e] = accumulate(out[m, e], state)
  return out

def test_constant_policy_matches_python_loop(constant_rollout):
  action = jnp.array([0.05, 0.03])
  key = jax.random.key(3)
  result = constant_rollout(action, dummy_prompts(len(TASKS)), TASKS, key)
  assert result.returns.shape == result.lengths.shape == (len(TASKS),
                                                           NUM_EPISODES)
  np.testing.assert_array_equal(result.lengths, FAMILY.episode_length)
  expected = python_loop(FAMILY, key, action, NUM_EPISODES,
                         lambda total, state: total + float(state.reward))
  np.testing.assert_allclose(result.returns, expected, rtol=1e-5)
  # Episodes start at different random positions.
  assert np.all(np.abs(expected[:, 0] - expected[:, 1]) > 1e-3)


def test_window_holds_last_k_normalised_steps():
  state_mean, state_std = np.array([0.2, -0.1]), np.array([0.5, 2.0])
  target, max_ep_len = -5.0, 10  # timesteps clip at 9 < horizon 20
  rollout = make_prompted_rollout(
      FAMILY, window_policy, context_len=K, num_episodes=NUM_EPISODES,
      state_mean=state_mean, state_std=state_std, target_return=target,
      max_ep_len=max_ep_len)
  tasks = TASKS[:2]
  prompts = dummy_prompts(len(tasks), seed=1)
  key = jax.random.key(5)
  result = rollout(None, prompts, tasks, key)
  expected = reference_returns(
      window_policy, None, prompts, tasks, key, state_mean=state_mean,
      state_std=state_std, target=target, max_ep_len=max_ep_len)
  np.testing.assert_allclose(result.returns, expected, rtol=1e-4, atol=1e-4)
  # The window (not only the current state) drives the actions: a policy on
  # the last state alone would act the same on both tasks' prompts.
  swapped = rollout(None, jax.tree.map(lambda x: x[::-1], prompts), tasks, key)
  assert not np.allclose(swapped.returns, result.returns, atol=1e-3)


def test_per_task_params(constant_rollout, per_task_rollout):
  tasks = TASKS[:2]
  actions = jnp.array([[0.1, 0.0], [-0.05, 0.08]])  # [num_tasks, da]
  prompts = dummy_prompts(len(tasks))
  key = jax.random.key(7)
  per_task = per_task_rollout(actions, prompts, tasks, key)
  for m in range(len(tasks)):
    shared = constant_rollout(actions[m], prompts, tasks, key)
    np.testing.assert_allclose(per_task.returns[m], shared.returns[m],
                               rtol=1e-6)
    other = constant_rollout(actions[1 - m], prompts, tasks, key)
    assert np.all(np.abs(per_task.returns[m] - other.returns[m]) > 1e-2)


def test_same_key_same_result_other_key_differs(constant_rollout):
  args = (jnp.array([0.02, 0.07]), dummy_prompts(len(TASKS)), TASKS)
  a = constant_rollout(*args, jax.random.key(11))
  b = constant_rollout(*args, jax.random.key(11))
  c = constant_rollout(*args, jax.random.key(12))
  np.testing.assert_array_equal(a.returns, b.returns)
  assert not np.allclose(a.returns, c.returns)


def test_rollout_result_mean_std():
  returns = np.arange(12.0).reshape(3, 4) ** 2
  result = RolloutResult(returns=jnp.asarray(returns),
                         lengths=jnp.ones((3, 4), jnp.int32))
  assert result.mean.shape == result.std.shape == (3,)
  np.testing.assert_allclose(result.mean, returns.mean(-1), rtol=1e-6)
  np.testing.assert_allclose(result.std, returns.std(-1), rtol=1e-6)
  assert result.successes is None and result.success_rate is None
  successes = np.array([[1, 0, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]], np.float32)
  result = result.replace(successes=jnp.asarray(successes))
  np.testing.assert_allclose(result.success_rate, [0.25, 1.0, 0.0])


def test_point_robot_has_no_successes(constant_rollout):
  """Without a success metric, successes stay None, over seeds too."""
  assert not has_success_metric(FAMILY)
  args = (jnp.array([0.05, 0.03]), dummy_prompts(len(TASKS)), TASKS)
  result = constant_rollout(*args, jax.random.key(3))
  assert result.successes is None and result.success_rate is None
  keys = jax.random.split(jax.random.key(4), 3)
  seeds = over_seeds(constant_rollout)(*args, keys)
  assert seeds.successes is None
  assert seeds.returns.shape == (3, len(TASKS), NUM_EPISODES)
  np.testing.assert_allclose(seeds.returns[1],
                             constant_rollout(*args, keys[1]).returns,
                             rtol=1e-6)


ZONE_X, ZONE_HALF_WIDTH = 0.5, 0.025


@dataclasses.dataclass(frozen=True, kw_only=True)
class ZonePointRobot(envs.PointRobot):
  """point_robot with a success flag while the robot's x is within
  ``ZONE_HALF_WIDTH`` of ``ZONE_X``: moving right by 0.1 a step from the
  origin, it is on at step 5 only."""

  metric_names: ClassVar[tuple[str, ...]] = ("distance", "success")

  def transition(self, pipeline_state, obs, action, params):
    pipeline_state, position, reward, terminated, metrics = super().transition(
        pipeline_state, obs, action, params)
    inside = jnp.abs(position[0] - ZONE_X) < ZONE_HALF_WIDTH
    metrics = dict(metrics, success=inside.astype(jnp.float32))
    return pipeline_state, position, reward, terminated, metrics


def test_success_is_the_flag_at_any_step():
  """Per-task actions 0.1, 0.05 and 0.02 to the right: x crosses the zone at
  steps 5 and 10, and never reaches it (0.4 after 20 steps)."""
  family = ZonePointRobot()
  assert has_success_metric(family)
  rollout = make_prompted_rollout(
      family, constant_policy, context_len=K, num_episodes=NUM_EPISODES,
      state_mean=jnp.zeros(DS), state_std=jnp.ones(DS), params_per_task=True)
  actions = jnp.array([[0.1, 0.0], [0.05, 0.0], [0.02, 0.0]])
  tasks = TASKS
  result = rollout(actions, dummy_prompts(len(tasks)), tasks,
                   jax.random.key(0))
  assert result.successes.dtype == jnp.float32
  np.testing.assert_array_equal(result.successes, [[1, 1], [1, 1], [0, 0]])
  np.testing.assert_array_equal(result.success_rate, [1, 1, 0])
  # The flag is on at step 5 only, off at the episode's end.
  step = jax.jit(family.step)
  state = family.reset(jax.random.key(0), family.task(int(tasks[0])))
  flags = []
  for _ in range(family.episode_length):
    state = step(state, actions[0])
    flags.append(float(state.metrics["success"]))
  assert flags == [1.0 if t == 5 else 0.0 for t in range(1, 21)]
  # A seeds axis keeps successes (the start is not random here).
  seeds = over_seeds(rollout)(actions, dummy_prompts(len(tasks)), tasks,
                              jax.random.split(jax.random.key(1), 2))
  assert seeds.successes.shape == (2, len(tasks), NUM_EPISODES)
  np.testing.assert_array_equal(seeds.successes[1], result.successes)


def test_successes_match_python_loop():
  """Random starts: some episodes cross the zone, some jump over it."""
  family = dataclasses.replace(ZonePointRobot(), reset_noise_scale=0.3)
  num_episodes = 4
  rollout = make_prompted_rollout(
      family, constant_policy, context_len=K, num_episodes=num_episodes,
      state_mean=jnp.zeros(DS), state_std=jnp.ones(DS))
  action, key = jnp.array([0.1, 0.0]), jax.random.key(5)
  result = rollout(action, dummy_prompts(len(TASKS)), TASKS, key)
  expected = python_loop(
      family, key, action, num_episodes,
      lambda seen, state: max(seen, float(state.metrics["success"])))
  assert 0 < expected.mean() < 1  # both outcomes occur
  np.testing.assert_array_equal(result.successes, expected)
  np.testing.assert_allclose(result.success_rate, expected.mean(axis=1))


@pytest.mark.parametrize("field,kwargs", [
    ("context_len", dict(context_len=0, num_episodes=1)),
    ("num_episodes", dict(context_len=2, num_episodes=0)),
])
def test_bad_arguments(field, kwargs):
  with pytest.raises(ValueError, match=field):
    make_prompted_rollout(FAMILY, constant_policy, state_mean=jnp.zeros(DS),
                          state_std=jnp.ones(DS), **kwargs)


@pytest.fixture(scope="module")
def plm_and_prompts():
  plm = tiny_plm.tiny_plm()
  family = tiny_plm.family()
  data = tiny_plm.trajectories()
  tasks = list(family.test_tasks[:2])
  results = [few_shot_prompt(plm, data[i], None, jax.random.key(i))
             for i in tasks]
  return plm, family, tasks, results


def test_evaluate_tuned_with_per_task_params(plm_and_prompts):
  """Task 0 keeps the PLM's parameters, task 1 gets all-zero ones, whose
  action is tanh(0) = 0: the robot stays at the origin, at distance 1 from
  its goal for all 20 steps."""
  plm, family, tasks, results = plm_and_prompts
  zero = jax.tree.map(jnp.zeros_like, plm.params)
  results = [results[0], results[1].replace(params=zero)]
  out = evaluate_tuned(plm, family, stack_tuned(results, share_params=False),
                       tasks, jax.random.key(0), num_episodes=2,
                       params_per_task=True)
  assert out.returns.shape == (len(tasks), 2)
  np.testing.assert_array_equal(out.lengths, family.episode_length)
  np.testing.assert_allclose(out.returns[1], -1.0 * family.episode_length,
                             rtol=1e-5)
  assert np.all(np.abs(out.returns[0] + family.episode_length) > 1e-2)
  # Untrained PLM near the origin: returns within the reachable range.
  assert np.all(out.returns[0] < 0) and np.all(out.returns[0] > -60)


def test_evaluate_tuned_builds_one_rollout_per_setting(plm_and_prompts):
  plm, family, tasks, results = plm_and_prompts
  tuned = stack_tuned(results)
  cache = rollout_lib._cached_rollout
  cache.cache_clear()
  first = evaluate_tuned(plm, family, tuned, tasks, jax.random.key(1),
                         num_episodes=2)
  again = evaluate_tuned(plm, family, tuned, tasks, jax.random.key(1),
                         num_episodes=2)
  assert cache.cache_info().misses == 1 and cache.cache_info().hits == 1
  np.testing.assert_array_equal(first.returns, again.returns)
  evaluate_tuned(plm, family, tuned, tasks, jax.random.key(1), num_episodes=3)
  assert cache.cache_info().misses == 2  # another setting, another rollout


def test_evaluate_pretrained_on_saved_datasets(tmp_path):
  plm = tiny_plm.tiny_plm()
  family = tiny_plm.family()
  data = tiny_plm.trajectories()
  params = np.asarray(family.task_params)
  for i in family.test_tasks:
    dataset = storage.make_task_dataset(
        data[i], family=family.name, task_index=i,
        task_params=params[i].tolist(), quality="random", source="test")
    storage.save_task_dataset(
        storage.dataset_path(tmp_path, family.name, "random", i), dataset)
  out = pretrained.evaluate_pretrained(
      plm, family, str(tmp_path), quality="random", num_shots=2,
      num_episodes=2, seed=0, splits=("test",))
  assert list(out) == ["test"]
  r = out["test"]
  assert r["tasks"] == list(family.test_tasks)
  assert len(r["return_mean"]) == len(r["return_std"]) == len(family.test_tasks)
  assert np.all(np.isfinite(r["return_mean"]))
  assert np.all(np.asarray(r["return_std"]) >= 0)
  assert "success_rate" not in r  # point_robot has no success metric
  for i, d in zip(family.test_tasks, r["dataset_return"], strict=True):
    t = data[i]
    assert d == pytest.approx(float(t.rewards.sum(1).mean()), rel=1e-5)
  md = pretrained.markdown_report(out, family=family.name, quality="random")
  assert md.count("\n| ") == len(family.test_tasks) + 2  # rows + mean + rule
