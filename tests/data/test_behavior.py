"""Tests of behaviour-policy checkpoints and training (``pdiff.data.behavior``)."""

import json
import math
import os
import shutil

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import behavior as behavior_configs
from pdiff import envs
from pdiff.data import behavior

SHIPPED = behavior.shipped_policy_dir("point_robot", "expert")


def shipped_params_and_info():
  """The shipped expert's ``(normalizer, policy)`` params and info."""
  with open(os.path.join(SHIPPED, "policy.json")) as f:
    info = json.load(f)
  _, template = behavior._template(info["algorithm"], info["observation_size"],
                                   info["action_size"], info["hidden"])
  with open(os.path.join(SHIPPED, "params.msgpack"), "rb") as f:
    state = flax.serialization.msgpack_restore(f.read())
  return flax.serialization.from_state_dict(template, state), info


def observations(n=16, seed=0):
  """Point-robot observations with the goal appended, [n, 4]."""
  return jax.random.uniform(jax.random.key(seed), (n, 4), minval=-1.0,
                            maxval=1.0)


def copy_shipped(tmp_path):
  directory = tmp_path / "policy"
  shutil.copytree(SHIPPED, directory)
  return directory


def test_save_load_round_trip_gives_identical_actions(tmp_path):
  params, info = shipped_params_and_info()
  # A third element (PPO's value network) is not saved.
  behavior.save_policy(str(tmp_path), (*params, {"value": 1}), info)
  assert sorted(os.listdir(tmp_path)) == ["params.msgpack", "policy.json"]
  assert json.loads((tmp_path / "policy.json").read_text()) == info
  saved, saved_info = behavior.load_policy(str(tmp_path))
  shipped, _ = behavior.load_policy(SHIPPED)
  assert saved_info == info
  obs, key = observations(), jax.random.key(1)
  actions = np.asarray(saved(obs, key))
  assert actions.shape == (16, 2) and np.all(np.abs(actions) <= 1.0)
  np.testing.assert_array_equal(actions, np.asarray(shipped(obs, key)))
  # Deterministic: the key does not matter; a sampling policy's does.
  np.testing.assert_array_equal(actions, saved(obs, jax.random.key(2)))
  sampling, _ = behavior.load_policy(str(tmp_path), deterministic=False)
  assert not np.allclose(sampling(obs, jax.random.key(1)),
                         sampling(obs, jax.random.key(2)))


def test_save_policy_needs_info_fields(tmp_path):
  params, info = shipped_params_and_info()
  del info["hidden"]
  with pytest.raises(ValueError, match="'hidden'"):
    behavior.save_policy(str(tmp_path), params, info)
  assert not os.path.exists(tmp_path / "params.msgpack")


@pytest.mark.parametrize("name", ["policy.json", "params.msgpack"])
def test_missing_file_is_named(tmp_path, name):
  directory = copy_shipped(tmp_path)
  os.remove(directory / name)
  with pytest.raises(FileNotFoundError, match=str(directory / name)):
    behavior.load_policy(str(directory))


def test_corrupt_params_file_is_named(tmp_path):
  directory = copy_shipped(tmp_path)
  (directory / "params.msgpack").write_bytes(b"\x93not msgpack at all")
  with pytest.raises(ValueError, match=str(directory / "params.msgpack")):
    behavior.load_policy(str(directory))


def test_params_not_matching_the_info_are_rejected(tmp_path):
  directory = copy_shipped(tmp_path)
  info = json.loads((directory / "policy.json").read_text())
  info["hidden"] = [8, 8]  # the stored network is 64 x 64
  (directory / "policy.json").write_text(json.dumps(info))
  with pytest.raises(ValueError, match="params.msgpack.*hidden_0"):
    behavior.load_policy(str(directory))


@pytest.mark.parametrize("text,match", [
    ("{not json", "policy.json: not valid JSON"),
    ('{"algorithm": "ppo"}', "policy.json: missing fields"),
])
def test_bad_info_file_is_named(tmp_path, text, match):
  directory = copy_shipped(tmp_path)
  (directory / "policy.json").write_text(text)
  with pytest.raises(ValueError, match=match):
    behavior.load_policy(str(directory))


CURVE = [(0, -20.0), (10, -16.0), (20, -14.0), (30, -12.0), (40, -10.0)]


def snapshots(steps):
  return [(s, f"params@{s}") for s in steps]


@pytest.mark.parametrize("fraction", [0.0, 0.25, 0.5, 0.6, 0.8, 1.0])
def test_pick_medium_is_first_snapshot_past_the_fraction(fraction):
  first, best = CURVE[0][1], max(r for _, r in CURVE)
  goal = first + fraction * (best - first)
  want = min(s for s, r in CURVE if s > 0 and r >= goal)
  step, params = behavior._pick_medium(CURVE, snapshots(s for s, _ in CURVE),
                                       fraction)
  assert (step, params) == (want, f"params@{want}")


def test_pick_medium_skips_snapshots_without_evaluation():
  # Step 20 passes the goal (-15) but has no snapshot; 25 has no evaluation.
  step, _ = behavior._pick_medium(CURVE, snapshots([0, 10, 25, 30]), 0.5)
  assert step == 30


def test_pick_best_is_the_highest_evaluated_snapshot():
  assert behavior._pick_best(CURVE, snapshots(s for s, _ in CURVE)) == (
      40, "params@40")
  # 40 has no snapshot; NaN evaluations never win; ties go to the earliest.
  curve = [(0, -20.0), (10, -5.0), (20, math.nan), (30, -5.0), (40, 0.0)]
  assert behavior._pick_best(curve, snapshots([0, 10, 20, 30]))[0] == 10
  with pytest.raises(ValueError, match="no parameter snapshot has a finite"):
    behavior._pick_best([(0, math.nan)], snapshots([0]))


def test_unknown_expert_selection_is_refused(tmp_path):
  config = behavior_configs.get_config("point_robot")
  config.expert = "median"
  with pytest.raises(ValueError, match=r"config\.expert must be one of "
                     r"\('last', 'best'\), got 'median'"):
    behavior.train_behavior_policy(envs.make("point_robot"), config,
                                   str(tmp_path))


def test_pick_medium_fallback_and_errors():
  # No evaluated snapshot reaches the goal: the middle snapshot.
  curve = [(0, -20.0), (10, math.nan), (20, math.nan)]
  assert behavior._pick_medium(curve, snapshots([0, 10, 20]), 0.5)[0] == 10
  with pytest.raises(ValueError, match="no parameter snapshots"):
    behavior._pick_medium(CURVE, [], 0.5)


def test_train_behavior_policy_tiny_budget(tmp_path):
  family = envs.make("point_robot")
  config = behavior_configs.get_config("point_robot")
  config.hidden = (8, 8)
  config.value_hidden = (8, 8)
  config.trainer.update(num_timesteps=2000, num_envs=16, batch_size=16,
                        unroll_length=5, num_minibatches=2,
                        num_updates_per_batch=1, num_evals=2, num_eval_envs=4)
  summary = behavior.train_behavior_policy(family, config, str(tmp_path))
  curve = summary["curve"]
  assert len(curve) == 2 and curve[0][0] == 0 and curve[1][0] >= 2000
  assert all(np.isfinite(r) for _, r in curve)
  obs = observations(4)
  for quality in ("expert", "medium"):
    policy, info = behavior.load_policy(str(tmp_path / quality))
    assert info["quality"] == quality
    assert (info["family"], info["backend"]) == ("point_robot", "jax")
    assert (info["observation_size"], info["action_size"]) == (4, 2)
    assert info["hidden"] == [8, 8]
    assert info["curve"] == [list(p) for p in curve]
    actions = np.asarray(policy(obs, jax.random.key(0)))
    assert actions.shape == (4, 2) and np.all(np.abs(actions) <= 1.0)
  expert_info = json.loads((tmp_path / "expert" / "policy.json").read_text())
  medium_info = json.loads((tmp_path / "medium" / "policy.json").read_text())
  assert expert_info["step"] == curve[-1][0]
  assert medium_info["step"] == summary["medium_step"]
  assert summary["medium_step"] in [s for s, _ in curve]


def test_behavior_config_trainer_fields_are_brax_arguments():
  import inspect

  from brax.training.agents.ppo import train as ppo

  accepted = set(inspect.signature(ppo.train).parameters)
  for family in ("point_robot", "cheetah_vel", "cheetah_dir", "ant_dir"):
    config = behavior_configs.get_config(family)
    assert set(config.trainer) <= accepted, set(config.trainer) - accepted
  with pytest.raises(ValueError, match="'hopper'"):
    behavior_configs.get_config("hopper")


def test_jnp_actions_are_float32():
  policy, _ = behavior.load_policy(SHIPPED)
  assert policy(jnp.zeros((2, 4)), jax.random.key(0)).dtype == jnp.float32


@pytest.mark.parametrize("family", ["cheetah_vel", "cheetah_dir", "ant_dir"])
def test_shipped_policies_ran_with_the_committed_config(family):
  committed = behavior_configs.get_config(family).to_dict()
  for quality in ("expert", "medium"):
    path = os.path.join(behavior.shipped_policy_dir(family, quality),
                        "policy.json")
    with open(path) as f:
      recorded = json.load(f)["config"]
    for field in ("algorithm", "hidden", "value_hidden", "trainer", "seed"):
      want = committed[field]
      want = list(want) if isinstance(want, tuple) else want
      assert recorded[field] == want, (path, field)
    # Policies trained before the field existed took the last parameters.
    assert recorded.get("expert", "last") == committed["expert"], path
