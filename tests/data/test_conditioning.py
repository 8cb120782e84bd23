"""The return-conditioning rule and the families' targets and scales."""

import doctest
import json
import os

import pytest

from pdiff import envs
from pdiff.data import conditioning

ASSETS = os.path.join(os.path.dirname(envs.__file__), os.pardir, "assets",
                      "behavior")


@pytest.mark.parametrize("magnitude,scale", [
    (1.0, 1.0), (1.5, 2.0), (2.0, 2.0), (2.01, 5.0), (7.0, 10.0),
    (239.1, 500.0), (411.9, 500.0), (500.0, 500.0), (990.7, 1000.0),
    (1134.0, 2000.0), (0.03, 0.05)])
def test_scale_follows_the_125_series(magnitude, scale):
  assert conditioning.scale_for(magnitude) == pytest.approx(scale)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_scale_refuses_non_positive(bad):
  with pytest.raises(ValueError, match="magnitude"):
    conditioning.scale_for(bad)


def test_target_is_best_train_mean_plus_margin_rounded_up():
  # best 412 + 0.1 * 500 = 462 -> 470; test task 9's 900 is never read.
  target, scale = conditioning.return_conditioning(
      {"0": 412.0, "1": 246.2, "9": 900.0}, (0, 1))
  assert (target, scale) == (470.0, 500.0)


def test_supremum_caps_the_target():
  target, scale = conditioning.return_conditioning(
      {0: -30.1, 1: -239.1}, (0, 1), return_supremum=0.0)
  assert (target, scale) == (0.0, 500.0)
  uncapped, _ = conditioning.return_conditioning({0: -30.1, 1: -239.1}, (0, 1))
  assert uncapped == 20.0


def test_missing_training_task_is_named():
  with pytest.raises(ValueError, match=r"training task\(s\) \[3\]"):
    conditioning.return_conditioning({0: 1.0}, (0, 3))


def shipped_expert_returns(family):
  """The expert dataset returns shipped beside the behaviour policies that
  collect ``family``'s data."""
  path = os.path.join(ASSETS, family.behavior_family, "dataset_returns.json")
  with open(path) as f:
    return json.load(f)["expert"]


@pytest.mark.parametrize("name", ["cheetah_vel", "cheetah_dir", "ant_dir",
                                  "ant_dir_10", "metaworld_reach"])
def test_family_constants_follow_the_rule_on_shipped_data(name):
  family = envs.make(name)
  expert = shipped_expert_returns(family)
  target, scale = conditioning.return_conditioning(
      expert, family.train_tasks, return_supremum=family.return_supremum)
  assert (family.return_target, family.return_scale) == (target, scale), (
      f"{name}: the family's return_target/return_scale "
      f"({family.return_target}, {family.return_scale}) are not the rule's "
      f"({target}, {scale}) on its shipped expert data; update "
      f"pdiff/envs to the rule's values")


def test_ant_dir_10_conditions_on_its_own_training_tasks():
  """ant_dir_10 reads ant_dir's shipped returns, but only those of its 8
  training tasks: a test task's return never enters its target."""
  ood = envs.make("ant_dir_10")
  assert ood.behavior_family == "ant_dir"
  assert envs.make("ant_dir").behavior_family == "ant_dir"
  expert = dict(shipped_expert_returns(ood))
  expert[str(ood.test_tasks[0])] = 5000.0
  assert conditioning.return_conditioning(expert, ood.train_tasks) == (
      ood.return_target, ood.return_scale) == (1070.0, 1000.0)


def test_docstring_examples():
  failures, tried = doctest.testmod(conditioning)
  assert tried >= 2 and failures == 0
