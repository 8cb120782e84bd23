"""The launchers in the README's order, as a user runs them: collect, then
pre-train (reusing the collected datasets) and export a shippable PLM."""

import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from experiments.configs import pretrain as pretrain_configs
from experiments.configs import run as run_configs
from pdiff import envs, stages
from pdiff.data import loading
from pdiff.data.normalization import state_statistics
from pdiff.pipeline import prepare
from pdiff.training import checkpointing
from pdiff.training import pretrain as pretrain_lib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
ENV = dict(os.environ, JAX_PLATFORMS="cpu")


def launch(script, *args):
  proc = subprocess.run([sys.executable, f"experiments/{script}", *args],
                        cwd=ROOT, capture_output=True, text=True, timeout=600,
                        env=ENV)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
  """The launchers' compilation cache, every program written to it."""
  path = tmp_path_factory.mktemp("jax_cache")
  ENV.update(PDIFF_COMPILATION_CACHE=str(path),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
  return path


@pytest.fixture(scope="module")
def collected(tmp_path_factory, cache_dir):
  del cache_dir  # the launchers run with it
  workdir = tmp_path_factory.mktemp("launchers")
  launch("collect.py", "--config=experiments/configs/collect.py:point_robot",
         f"--workdir={workdir}",
         "--config.qualities=('expert','random')")
  return workdir


def test_collect_writes_a_complete_stage_record(collected):
  directory = collected / "datasets" / "point_robot" / "expert"
  record = stages.read_record(str(directory / stages.RECORD_FILE))
  assert record["status"] == "complete"
  assert len(list(directory.glob("task_*.npz"))) == envs.make(
      "point_robot").num_tasks


@pytest.fixture(scope="module")
def exported(collected, tmp_path_factory):
  directory = collected / "datasets" / "point_robot" / "expert"
  before = {p.name: p.stat().st_mtime_ns for p in directory.iterdir()}
  export = tmp_path_factory.mktemp("shipped") / "point_robot_tiny"
  launch("pretrain.py",
         "--config=experiments/configs/pretrain.py:point_robot,tiny",
         f"--workdir={collected}", "--config.eval_episodes=1",
         f"--export_to={export}")
  after = {p.name: p.stat().st_mtime_ns for p in directory.iterdir()}
  return export, before, after


def test_launchers_write_and_reuse_the_compilation_cache(cache_dir, exported,
                                                        tmp_path):
  del exported  # collect.py and pretrain.py have run
  entries = {p.name for p in cache_dir.iterdir()}
  assert any(name.startswith("jit_") for name in entries), sorted(entries)
  # A rerun of collect.py (new work directory) compiles nothing new.
  launch("collect.py", "--config=experiments/configs/collect.py:point_robot",
         f"--workdir={tmp_path}", "--config.qualities=('expert','random')")
  assert {p.name for p in cache_dir.iterdir()} == entries
  # A cache directory that cannot be created is named.
  blocker = tmp_path / "file"
  blocker.write_text("")
  proc = subprocess.run(
      [sys.executable, "experiments/collect.py", f"--workdir={tmp_path}"],
      cwd=ROOT, capture_output=True, text=True, timeout=600,
      env=dict(ENV, PDIFF_COMPILATION_CACHE=str(blocker / "cache")))
  assert proc.returncode == 2
  assert "compilation cache directory" in proc.stderr
  assert "PDIFF_COMPILATION_CACHE" in proc.stderr


def test_pretrain_reuses_the_collected_data_and_exports(collected, exported):
  export, before, after = exported
  assert after == before  # the datasets were read, not collected again
  # Pre-training asked for expert data only; the summary keeps both.
  with open(collected / "datasets" / "point_robot" / "returns.json") as f:
    assert sorted(json.load(f)) == ["expert", "random"]
  assert sorted(os.listdir(export)) == sorted([
      "config.json", "curve.json", "evaluation.json", "evaluation.md",
      "params.msgpack", "policy.json", "pretrain_config.json"])
  with open(export / "curve.json") as f:
    curve = json.load(f)
  assert [r["step"] for r in curve] == [5, 10, 15, 20]
  assert all(np.isfinite(r["loss"]) for r in curve)
  with open(export / "pretrain_config.json") as f:
    assert json.load(f)["num_steps"] == 20
  with open(export / "policy.json") as f:
    info = json.load(f)
  assert info["state_statistics"] == "train_and_test"
  assert info["weight_by_length"] is True
  shipped = pretrain_lib.load_pretrained_policy(str(export))
  trained = pretrain_lib.load_pretrained_policy(str(collected / "pretrain"))
  for a, b in zip(jax.tree.leaves(shipped.params),
                  jax.tree.leaves(trained.params), strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_shipped_fingerprint_covers_the_model_files_only(exported, tmp_path,
                                                         monkeypatch):
  export, _, _ = exported
  assets = tmp_path / "assets"
  shutil.copytree(export, assets / "plm")
  monkeypatch.setattr(prepare, "PRETRAINED_ASSETS", str(assets))
  config = run_configs.get_config("point_robot,tiny")
  family = envs.make("point_robot")

  def fingerprint():
    return prepare.pretrain_record(config, family, "data", "plm")[
        "fingerprint"]

  first = fingerprint()
  (assets / "plm" / "evaluation.md").write_text("re-rendered")
  (assets / "plm" / "notes.txt").write_text("a new document")
  assert fingerprint() == first
  with open(assets / "plm" / "policy.json") as f:
    info = json.load(f)
  info["return_scale"] *= 2
  with open(assets / "plm" / "policy.json", "w") as f:
    json.dump(info, f)
  assert fingerprint() != first


def test_state_statistics_pool_as_configured(collected):
  family = envs.make("point_robot")
  root = str(collected / "datasets")
  config = pretrain_configs.get_config("point_robot,tiny")
  by_task = loading.load_task_trajectories(family, root, "expert",
                                           range(family.num_tasks))

  def stats_of(tasks):
    return state_statistics(loading.pooled([by_task[i] for i in tasks]))

  trajs, mean, std = pretrain_lib.load_training_data(config, family, root)
  assert len(trajs) == len(family.train_tasks)
  want = stats_of(sorted(set(family.train_tasks) | set(family.test_tasks)))
  np.testing.assert_allclose(mean, want[0], rtol=1e-6)
  np.testing.assert_allclose(std, want[1], rtol=1e-6)
  config.state_statistics = "train"
  _, mean_train, std_train = pretrain_lib.load_training_data(config, family,
                                                             root)
  want = stats_of(family.train_tasks)
  np.testing.assert_allclose(mean_train, want[0], rtol=1e-6)
  np.testing.assert_allclose(std_train, want[1], rtol=1e-6)
  assert not np.allclose(mean, mean_train)
  config.state_statistics = "test"
  with pytest.raises(ValueError, match="state_statistics"):
    pretrain_lib.load_training_data(config, family, root)


def test_evaluate_measures_a_return_curve_over_checkpoints(collected,
                                                           exported):
  del exported  # pretrain.py has run in `collected`
  pretrain_dir = str(collected / "pretrain")
  kept = checkpointing.checkpoint_steps(pretrain_dir)
  assert kept == [10, 20]  # the tiny preset: every 10 of 20 steps
  launch("evaluate.py", f"--workdir={collected}", "--curve", "--episodes=1")
  with open(collected / "results" / "return_curve_train.json") as f:
    curve = json.load(f)
  family = envs.make("point_robot")
  assert curve["settings"]["split"] == "train"
  assert [p["step"] for p in curve["points"]] == kept
  for p in curve["points"]:
    assert p["tasks"] == list(family.train_tasks)
    assert np.isfinite(p["task_returns"]).all()
    assert p["return_mean"] == pytest.approx(np.mean(p["task_returns"]))
    assert p["shortfall"] == pytest.approx(
        (p["dataset_return"] - p["return_mean"]) / abs(p["dataset_return"]))
  assert (collected / "results" / "return_curve_train.md").exists()
  proc = subprocess.run(
      [sys.executable, "experiments/evaluate.py", f"--workdir={collected}",
       "--curve", "--steps=15"], cwd=ROOT, capture_output=True, text=True,
      timeout=600, env=ENV)
  assert proc.returncode != 0
  assert "no checkpoint at [15]" in proc.stderr
  # An export ships the curve beside the PLM.
  export = collected / "shipped_with_curve"
  launch("pretrain.py",
         "--config=experiments/configs/pretrain.py:point_robot,tiny",
         f"--workdir={collected}", "--config.eval_episodes=1",
         f"--export_to={export}")
  with open(export / "return_curve_train.json") as f:
    assert json.load(f) == curve
  assert (export / "return_curve_train.md").exists()
  # An earlier checkpoint, exported with its own evaluation and loss curve.
  early = collected / "shipped_step_10"
  launch("pretrain.py",
         "--config=experiments/configs/pretrain.py:point_robot,tiny",
         f"--workdir={collected}", "--config.eval_episodes=1",
         f"--export_to={early}", "--export_step=10")
  with open(early / "curve.json") as f:
    assert [r["step"] for r in json.load(f)] == [5, 10]
  assert (collected / "results" / "pretrain_eval_step_10.json").exists()
  shipped = pretrain_lib.load_pretrained_policy(str(early))
  _, at_10 = checkpointing.load_pretrained(pretrain_dir, 10)
  for a, b in zip(jax.tree.leaves(shipped.params), jax.tree.leaves(at_10),
                  strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
