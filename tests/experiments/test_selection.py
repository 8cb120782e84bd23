"""Tests of the selection of Prompt Diffuser's settings on validation tasks
(``pdiff.pipeline.selection``, ``experiments/selection.py``)."""

import glob
import json
import os
import pathlib
import shutil

import pytest

from experiments import render_docs
from experiments.configs import selection as selection_configs
from pdiff import envs
from pdiff.pipeline import selection
from pdiff.pipeline.validate import ConfigError


def test_validation_tasks_are_evenly_spaced_training_tasks():
  family = envs.make("cheetah_vel")
  train = sorted(family.train_tasks)
  tasks = selection.validation_tasks(family, 5)
  assert len(set(tasks)) == 5 and set(tasks) <= set(train)
  assert tasks[0] == train[0] and tasks[-1] == train[-1]
  assert not set(tasks) & set(family.test_tasks)
  assert selection.validation_tasks(family, 1) == (train[0],)
  for bad in (0, len(train)):
    with pytest.raises(ConfigError, match="num_validation_tasks"):
      selection.validation_tasks(family, bad)


def test_validation_split_holds_the_tasks_out_of_training():
  family = envs.make("point_robot")
  held = tuple(family.train_tasks[:2])
  split = selection.validation_split(family, held)
  assert split.test_tasks == held
  assert split.train_tasks == tuple(family.train_tasks[2:])
  assert split.return_target == family.return_target
  assert family.test_tasks != held  # the family itself is unchanged
  test_task = family.test_tasks[0]
  for bad in ((test_task,), (held[0], held[0]), ()):
    with pytest.raises(ConfigError, match="validation_tasks"):
      selection.validation_split(family, bad)
  with pytest.raises(ConfigError, match="every training task"):
    selection.validation_split(family, family.train_tasks)


def test_choose_takes_the_best_mean_and_the_reference_on_a_tie():
  def comparison(**means):
    return {f"select-validation/{k}": dict(mean=v) for k, v in means.items()}
  names = ["a", "paper", "b"]
  assert selection.choose(comparison(a=1.0, paper=0.0, b=2.0), names,
                          "paper") == "b"
  assert selection.choose(comparison(a=1.0, paper=1.0, b=1.0), names,
                          "paper") == "paper"
  assert selection.choose(comparison(a=3.0, paper=1.0, b=3.0), names,
                          "paper") == "a"


def test_bad_selection_configs_are_named():
  config = selection_configs.get_config("point_robot,tiny")
  config.select.reference = "other"
  with pytest.raises(ConfigError, match="reference = 'other'"):
    selection.select(config.run, config.select, "/nonexistent")
  config = selection_configs.get_config("point_robot,tiny")
  config.run.few_shot_source = "training_tasks"
  with pytest.raises(ConfigError, match="few_shot_source"):
    selection.select(config.run, config.select, "/nonexistent")


def test_tiny_selection_on_point_robot(tmp_path, monkeypatch):
  config = selection_configs.get_config("point_robot,tiny")
  config.run.pretrain.num_steps = 4
  config.run.pretrain.ckpt_every = 4
  report = selection.select(config.run, config.select, str(tmp_path))
  family = envs.make("point_robot")
  validation = report["validation_tasks"]
  assert validation == list(selection.validation_tasks(family, 2))
  assert report["chosen"] in config.select.variants
  names = list(config.select.variants)
  assert set(report["validation"]) == {"prompt_dt"} | {
      f"select-validation/{n}" for n in names}
  assert set(report["test"]) == {"prompt_dt"} | {
      f"select-test/{n}" for n in {"paper", report["chosen"]}}
  # The validation runs evaluated the validation tasks only; the test runs
  # the test tasks.
  runs = tmp_path / "results" / "runs"
  for path in glob.glob(str(runs / "select-validation-*" / "*.json")):
    assert json.loads(open(path).read())["tasks"] == validation, path
  for path in glob.glob(str(runs / "select-test-*" / "*.json")):
    assert json.loads(open(path).read())["tasks"] == list(
        family.test_tasks), path
  # Stage 1 of the validation split read fewer training tasks: its own model.
  prepared = glob.glob(str(tmp_path / "tuning" / "prompt_diffuser" / "*"))
  assert len(prepared) == 2
  text = (tmp_path / "select" / "select.md").read_text()
  assert f"Chosen on the validation tasks: `{report['chosen']}`" in text
  assert "select-validation/evaluation_returns" in text
  # A rerun resumes: nothing is tuned again, the numbers are the same.
  monkeypatch.setattr("pdiff.pipeline.variants.tune_and_evaluate_all",
                      lambda config, context, units, data_of: (
                          [] if not units else pytest.fail("recomputed")))
  again = selection.select(config.run, config.select, str(tmp_path))
  assert again["validation"] == report["validation"]
  assert again["test"] == report["test"]
  assert os.path.exists(tmp_path / "select" / "select.json")
  # The doc block renders the copied report: the choice and both splits.
  root = tmp_path / "repo"
  (root / "results" / "point_robot").mkdir(parents=True)
  shutil.copy(tmp_path / "select" / "select.json",
              root / "results" / "point_robot" / "select.json")
  block = render_docs.RENDERERS["selection"](
      render_docs.Sources(root=pathlib.Path(root)))
  assert "From `results/point_robot/select.json`: `point_robot`" in block
  assert f"Chosen on validation tasks {validation}: `{report['chosen']}`" in (
      block)
  assert "On the test tasks, against the plain few-shot prompt" not in block
  assert "| select-test/paper |" in block
