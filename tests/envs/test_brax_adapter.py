"""as_brax_env: task sampling, task-conditioned observations, Brax wrappers.

Runs on point_robot (pure JAX, fast to compile) under Brax's own training
wrappers; for the Brax families only the static sizes are checked here.
"""

import brax.envs
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from brax.envs.wrappers import training as brax_training

from pdiff import envs

NUM_ENVS = 64
TASKS = (3, 5)


@pytest.fixture(scope="module")
def family():
  return envs.make("point_robot")


@pytest.fixture(scope="module")
def wrapped_run(family):
  """Brax's trainer wrapping: vmap, 20-step episodes, auto-reset."""
  env = brax_training.wrap(family.as_brax_env(TASKS),
                           episode_length=family.episode_length)
  actions = jax.random.uniform(
      jax.random.key(1), (25, NUM_ENVS, 2), minval=-0.1, maxval=0.1)

  @jax.jit
  def run(key):
    # Brax's wrappers expect raw uint32 keys ([N, 2]), as its trainers pass.
    state = env.reset(jax.random.key_data(jax.random.split(key, NUM_ENVS)))

    def body(state, action):
      state = env.step(state, action)
      return state, (state.obs, state.reward, state.done,
                     state.info["task_index"])

    first = state
    _, steps = jax.lax.scan(body, state, actions)
    return first, steps

  first, steps = run(jax.random.key(0))
  return {"first": first, "steps": jax.tree.map(np.asarray, steps),
          "actions": np.asarray(actions)}


def test_is_a_brax_env_with_task_in_observation(family):
  env = family.as_brax_env(family.train_tasks)
  assert isinstance(env, brax.envs.Env)
  assert env.observation_size == 4 and env.action_size == 2
  plain = family.as_brax_env(family.train_tasks, append_task=False)
  assert plain.observation_size == 2
  state = jax.jit(plain.reset)(jax.random.key(0))
  assert state.obs.shape == (2,)


def test_reset_samples_uniformly_from_given_tasks(family, wrapped_run):
  first = wrapped_run["first"]
  index = np.asarray(first.info["task_index"])
  assert set(index.tolist()) == set(TASKS)
  assert 0.25 < np.mean(index == TASKS[0]) < 0.75
  params = np.asarray(family.task_params)[index]  # [NUM_ENVS, 2]
  np.testing.assert_array_equal(np.asarray(first.obs)[:, 2:], params)


def test_rewards_match_family_step(family, wrapped_run):
  first, steps = wrapped_run["first"], wrapped_run["steps"]
  index = np.asarray(first.info["task_index"])
  state = jax.vmap(family.reset)(
      jax.random.split(jax.random.key(9), NUM_ENVS), family.tasks(index))
  for t in range(family.episode_length):
    state = jax.vmap(family.step)(state, wrapped_run["actions"][t])
    np.testing.assert_allclose(steps[1][t], state.reward, rtol=1e-5)
    if t < family.episode_length - 1:  # the last one is auto-reset
      np.testing.assert_allclose(steps[0][t][:, :2], state.obs, rtol=1e-5)


def test_auto_reset_keeps_task_and_has_no_inner_time_limit(wrapped_run):
  obs, _, done, task_index = wrapped_run["steps"]
  horizon = 20
  np.testing.assert_array_equal(done[: horizon - 1], 0.0)
  np.testing.assert_array_equal(done[horizon - 1], 1.0)  # EpisodeWrapper's
  np.testing.assert_array_equal(task_index, task_index[:1].repeat(25, 0))
  np.testing.assert_array_equal(obs[horizon - 1][:, :2], 0.0)  # reset
  np.testing.assert_array_equal(obs[:, :, 2:], obs[:1, :, 2:].repeat(25, 0))


@pytest.mark.parametrize("bad", [(), (0, 99)])
def test_bad_task_indices(family, bad):
  with pytest.raises(ValueError, match="point_robot"):
    family.as_brax_env(bad)


@pytest.mark.parametrize("name,size", [("cheetah_vel", 18), ("ant_dir", 28)])
def test_brax_family_sizes(name, size):
  family = envs.make(name)
  env = family.as_brax_env(family.train_tasks)
  assert env.observation_size == size
  assert env.action_size == family.action_size
  assert env.backend == family.backend
  assert env.family is family and env.task_indices == family.train_tasks
  assert jnp.shape(family.task_params)[1] == 1
