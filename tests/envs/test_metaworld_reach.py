"""Tests of the Meta-World reach family (``pdiff.envs.metaworld_reach``).

They need the ``metaworld`` extra and are skipped, with the reason, without
it; the README's test command installs it.
"""

import dataclasses
import importlib.metadata
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdiff import envs
from pdiff.envs import metaworld_reach

metaworld = pytest.importorskip(
    "metaworld", reason="the metaworld extra is not installed: "
    + metaworld_reach.EXTRA_HINT)

STEPS = 60  # enough for the arm to move and the reward to vary


@pytest.fixture(scope="module")
def ml1():
  return metaworld.ML1("reach-v3", seed=1)


@pytest.fixture(scope="module")
def family():
  return dataclasses.replace(envs.make("metaworld_reach"),
                             episode_length=STEPS)


def own_env(ml1, index):
  """Meta-World's own environment for task ``index``, as Prompt-DT builds
  it (``ML1.train_classes[...]()`` and ``set_task``)."""
  env = ml1.train_classes["reach-v3"]()
  env.set_task(ml1.train_tasks[index])
  return env


def test_tasks_are_ml1_seed_1_and_prompt_dt_split(ml1):
  family = envs.make("metaworld_reach")
  env = ml1.train_classes["reach-v3"]()
  for index, values in enumerate(family.task_values):
    env.set_task(ml1.train_tasks[index])
    np.testing.assert_array_equal(
        np.asarray(values, np.float64), env._last_rand_vec)
  # Prompt-DT's reach-v2 split, numbered from 1 there.
  assert [i + 1 for i in family.test_tasks] == [6, 9, 15, 16, 20]
  assert [i + 1 for i in family.train_tasks] == [
      1, 2, 3, 4, 5, 7, 8, 10, 11, 12, 13, 14, 17, 18, 19]
  assert family.episode_length == 500 == env.max_path_length
  assert (family.observation_size, family.action_size) == (39, 4)


def test_rewards_and_observations_equal_metaworlds_own_env(ml1, family):
  indices = np.array([0, 5, 5, 19])
  actions = np.random.default_rng(0).uniform(
      -1, 1, (STEPS, len(indices), 4)).astype(np.float32)
  actions[:, 1] = 0.3  # a steady push for one of the two task-5 episodes

  @jax.jit
  def play(acts):
    tasks = family.tasks(indices)
    keys = jax.random.split(jax.random.key(0), len(indices))
    state = jax.vmap(family.reset)(keys, tasks)

    def body(state, action):
      state = jax.vmap(family.step)(state, action)
      return state, (state.obs, state.reward, state.metrics["success"],
                     state.done)

    return state.obs, jax.lax.scan(body, state, acts)[1]

  first_obs, (obs, rewards, success, done) = jax.device_get(play(actions))
  for b, index in enumerate(indices):
    env = own_env(ml1, index)
    o, _ = env.reset()
    np.testing.assert_array_equal(first_obs[b], o.astype(np.float32))
    for t in range(STEPS):
      o, r, terminated, truncated, info = env.step(
          actions[t, b].astype(np.float64))
      assert rewards[t, b] == np.float32(r), (index, t)
      np.testing.assert_array_equal(obs[t, b], o.astype(np.float32))
      assert success[t, b] == info["success"]
      assert not terminated
    assert done[-1, b] == 1.0 and done[-2, b] == 0.0
  assert np.ptp(rewards) > 1.0  # the comparison covered varied rewards


def test_goal_is_hidden_in_the_observation(family):
  state = jax.jit(family.reset)(jax.random.key(0), family.task(3))
  np.testing.assert_array_equal(np.asarray(state.obs[36:]), 0.0)


def test_scripted_expert_succeeds_on_the_test_tasks():
  family = envs.make("metaworld_reach")
  policy, source = family.scripted_behavior()
  version = importlib.metadata.version("metaworld")
  assert source == f"Meta-World {version} scripted SawyerReachV3Policy"
  indices = np.repeat(np.asarray(family.test_tasks), 2)

  @jax.jit
  def play(key):
    tasks = family.tasks(indices)
    state = jax.vmap(family.reset)(jax.random.split(key, len(indices)), tasks)

    def body(state, key):
      obs_task = jnp.concatenate([state.obs, state.task.params], axis=-1)
      noise = 0.1 * jax.random.normal(key, (len(indices), 4))
      action = jnp.clip(policy(obs_task, key) + noise, -1.0, 1.0)
      state = jax.vmap(family.step)(state, action)
      return state, (state.reward, state.metrics["success"])

    keys = jax.random.split(key, family.episode_length)
    return jax.lax.scan(body, state, keys)[1]

  rewards, success = jax.device_get(play(jax.random.key(0)))
  returns = rewards.sum(0)
  assert success[-1].mean() == 1.0, success[-1]  # every episode ends at goal
  assert np.all(returns > 4000), returns  # of at most 5,000
  assert np.all(returns <= family.return_supremum)


def test_importing_pdiff_envs_does_not_import_metaworld():
  code = ("import sys; import pdiff.envs; "
          "assert 'metaworld' not in sys.modules, 'imported'")
  subprocess.run([sys.executable, "-c", code], check=True,
                 env=dict(os.environ, JAX_PLATFORMS="cpu"))


def test_a_missing_extra_is_named(monkeypatch):
  monkeypatch.setitem(sys.modules, "metaworld", None)  # import fails
  with pytest.raises(ImportError, match=r"needs the `metaworld` extra "
                     r"\(pip install .*\[metaworld\]"):
    metaworld_reach.import_metaworld()
  assert not metaworld_reach.metaworld_available()


def test_bad_fields_are_refused():
  family = envs.make("metaworld_reach")
  with pytest.raises(ValueError, match="episode_length must be <= 500"):
    dataclasses.replace(family, episode_length=501)
  with pytest.raises(ValueError, match="Unknown backend 'spring'"):
    envs.make("metaworld_reach", backend="spring")
