"""make(), family attributes, task lookup and input checks (no Brax compile)."""

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdiff import envs
from pdiff.envs.locomotion import load_task_table

# (name, num_tasks, episode_length, return_target, return_scale, P); the
# Brax families' targets and scales follow pdiff.data.conditioning's rule on
# their shipped expert data (tests/data/test_conditioning.py).
EXPECTED = (
    ("cheetah_vel", 40, 200, 0.0, 200.0, 1),
    ("cheetah_dir", 2, 200, 1010.0, 1000.0, 1),
    ("ant_dir", 50, 200, 1100.0, 1000.0, 1),
    ("ant_dir_10", 50, 200, 1070.0, 1000.0, 1),
    ("point_robot", 25, 20, -3.0, 10.0, 2),
)


@pytest.mark.parametrize(
    "name,num_tasks,episode_length,target,scale,num_params", EXPECTED
)
def test_family_attributes(name, num_tasks, episode_length, target, scale,
                           num_params):
  family = envs.make(name)
  assert family.name == name
  assert family.num_tasks == num_tasks
  assert family.episode_length == episode_length
  assert family.return_target == target
  assert family.return_scale == scale
  assert family.task_params.shape == (num_tasks, num_params)
  assert family.task_params.dtype == jnp.float32
  assert isinstance(family.task_parameter_name, str)
  for split in (family.train_tasks, family.test_tasks):
    assert isinstance(split, tuple) and split
    assert all(0 <= i < num_tasks for i in split)


def test_families_and_default_backend():
  assert envs.FAMILIES == ("cheetah_vel", "cheetah_dir", "ant_dir",
                           "ant_dir_10", "point_robot", "metaworld_reach")
  assert envs.DEFAULT_BACKEND in envs.BRAX_BACKENDS
  for name in envs.BRAX_FAMILIES:
    assert envs.make(name).backend == envs.DEFAULT_BACKEND
  assert envs.make("point_robot").backend == "jax"
  assert envs.make("metaworld_reach").backend == "mujoco"


def test_hyphenated_aliases():
  assert envs.make("cheetah-vel") == envs.make("cheetah_vel")
  assert envs.make("ant-dir").name == "ant_dir"
  assert envs.make("point-robot").name == "point_robot"


def test_unknown_family_lists_valid_names():
  with pytest.raises(ValueError, match="cheetah_vel.*point_robot"):
    envs.make("hopper_vel")


def test_unknown_backend_lists_valid_backends():
  with pytest.raises(ValueError, match="generalized"):
    envs.make("cheetah_vel", backend="physx")
  with pytest.raises(ValueError, match="'jax'"):
    envs.make("point_robot", backend="spring")


def test_sizes():
  assert (envs.make("cheetah_vel").observation_size,
          envs.make("cheetah_vel").action_size) == (17, 6)
  assert (envs.make("ant_dir").observation_size,
          envs.make("ant_dir").action_size) == (27, 8)
  assert (envs.make("point_robot").observation_size,
          envs.make("point_robot").action_size) == (2, 2)


def test_prompt_dt_task_values():
  vel = np.asarray(envs.make("cheetah_vel").task_params)[:, 0]
  # Prompt-DT's 40 target velocities: 0.075 m/s apart, from 0.075 to 3.0.
  np.testing.assert_allclose(vel, 0.075 * np.arange(1, 41), rtol=1e-6)
  np.testing.assert_array_equal(
      np.asarray(envs.make("cheetah_dir").task_params)[:, 0], [1.0, -1.0])
  goals = np.asarray(envs.make("ant_dir").task_params)[:, 0]
  assert np.all((goals >= 0) & (goals < 2 * np.pi))
  assert len(np.unique(goals)) == 50


def test_ant_dir_10_is_prompt_dts_ood_split_of_ant_dirs_goals():
  ood, ant = envs.make("ant_dir_10"), envs.make("ant_dir")
  assert ood.task_values == ant.task_values
  np.testing.assert_array_equal(ood.task_params, ant.task_params)
  assert ood.train_tasks == (8, 13, 16, 20, 22, 26, 32, 37)
  assert ood.test_tasks == (1, 4, 41)
  assert set(ood.train_tasks).isdisjoint(ood.test_tasks)
  assert (ood.observation_size, ood.action_size) == (ant.observation_size,
                                                     ant.action_size)
  assert ood.backend == ant.backend
  assert envs.FAMILY_BACKENDS["ant_dir_10"] == envs.FAMILY_BACKENDS["ant_dir"]
  assert envs.make("ant-dir-10").name == "ant_dir_10"
  with open(os.path.join(os.path.dirname(envs.__file__), "tasks.json")) as f:
    note = json.load(f)["ant_dir_10"]["note"]
  assert "config/ant_dir/ant_dir_10.json" in note


def test_behavior_family_is_the_familys_own_unless_it_resplits_another():
  assert envs.make("ant_dir_10").behavior_family == "ant_dir"
  for name in ("cheetah_vel", "cheetah_dir", "ant_dir", "point_robot"):
    assert envs.make(name).behavior_family == name


@pytest.mark.parametrize("name,num_test", [("cheetah_vel", 5),
                                           ("ant_dir", 5)])
def test_splits_partition_tasks(name, num_test):
  family = envs.make(name)
  assert len(family.test_tasks) == num_test
  assert set(family.train_tasks).isdisjoint(family.test_tasks)
  assert (set(family.train_tasks) | set(family.test_tasks)
          == set(range(family.num_tasks)))


def test_families_are_hashable_and_immutable():
  family = envs.make("cheetah_dir")
  assert hash(family) == hash(envs.make("cheetah-dir"))
  with pytest.raises(dataclasses.FrozenInstanceError):
    family.episode_length = 10


def test_task_and_tasks():
  family = envs.make("cheetah_vel")
  task = family.task(np.int64(7))
  assert task.index.dtype == jnp.int32 and task.index.shape == ()
  np.testing.assert_allclose(task.params, [0.6], rtol=1e-6)
  tasks = family.tasks(family.test_tasks)
  np.testing.assert_array_equal(tasks.index, family.test_tasks)
  assert tasks.params.shape == (5, 1)
  traced = jax.jit(lambda i: family.task(i).params)(jnp.int32(7))
  np.testing.assert_allclose(traced, task.params)


@pytest.mark.parametrize("index", [40, -1, np.int32(100)])
def test_task_index_out_of_range(index):
  family = envs.make("cheetah_vel")
  with pytest.raises(ValueError, match=r"cheetah_vel.*out of range.*0\.\.39"):
    family.task(index)
  with pytest.raises(ValueError, match="cheetah_vel"):
    family.tasks([0, index])


def test_bad_splits_are_rejected():
  family = envs.make("point_robot")
  with pytest.raises(ValueError, match="test_tasks"):
    dataclasses.replace(family, test_tasks=(30,))
  with pytest.raises(ValueError, match="episode_length"):
    dataclasses.replace(family, episode_length=0)


@pytest.mark.parametrize("name", envs.FAMILIES)
def test_wrong_action_shape_is_rejected_at_trace_time(name):
  if name == "metaworld_reach":
    pytest.importorskip("metaworld", reason="the metaworld extra is not "
                        "installed")
  family = envs.make(name)
  state = jax.eval_shape(family.reset, jax.random.key(0), family.task(0))
  bad = jnp.zeros(family.action_size + 1)
  with pytest.raises(ValueError, match=rf"\({family.action_size},\)"):
    jax.eval_shape(family.step, state, bad)
  with pytest.raises(ValueError, match="shape"):
    jax.eval_shape(family.step, state, jnp.zeros((2, family.action_size)))


@pytest.mark.parametrize("name", envs.BRAX_FAMILIES)
def test_task_table_matches_family(name):
  table = load_task_table(name)
  family = envs.make(name)
  assert table.parameter_name == family.task_parameter_name
  assert table.values == family.task_values
  assert (table.train_tasks, table.test_tasks) == (family.train_tasks,
                                                   family.test_tasks)
  with pytest.raises(ValueError, match="tasks.json.*hopper_vel"):
    load_task_table("hopper_vel")
