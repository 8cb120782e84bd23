"""End-to-end test of the whole pipeline (``pdiff.pipeline.run``) on
point_robot with the ``tiny`` presets, and of its resumption.

One run is shared by the module (about a minute on 2 CPU cores); the other
tests resume it, or call single stages on its outputs.
"""

import json
import os

import jax
import numpy as np
import optax
import pytest

from experiments.configs import behavior as behavior_configs
from experiments.configs import collect as collect_configs
from experiments.configs import pretrain as pretrain_configs
from experiments.configs import run as run_configs
from pdiff import envs, pipeline
from pdiff.training import loop
from pdiff.training import pretrain as pretrain_lib
from pdiff.tuning import prompt_diffuser as pd

LABELS = ("prompt_dt", "prompt_diffuser[dm_only]")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Rewritten by every run (resumed or not); everything else must not change.
REWRITTEN = ("results/results.json", "results/results.md",
             "results/returns.png", "pretrain/config.json",
             "pretrain/policy.json")


def tiny_config():
  c = run_configs.get_config("point_robot,tiny")
  c.methods = ("prompt_dt", "prompt_diffuser")
  c.prompt_diffuser_modes = ("dm_only",)
  c.pretrain.num_steps = 4
  c.pretrain.ckpt_every = 4
  c.pretrain.log_every = 2
  return c


def file_times(workdir):
  """``{relative path: mtime_ns}`` of the files a resumed run must keep."""
  out = {}
  for directory, _, files in os.walk(workdir):
    for name in files:
      path = os.path.join(directory, name)
      rel = os.path.relpath(path, workdir)
      if rel not in REWRITTEN and "tensorboard" not in rel:
        out[rel] = os.stat(path).st_mode, os.stat(path).st_mtime_ns
  return out


def strict_json(path):
  """Loads standard JSON (NaN and Infinity are not)."""
  def reject(token):
    raise ValueError(f"{path}: non-standard JSON constant {token}")
  with open(path) as f:
    return json.load(f, parse_constant=reject)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("pipeline"))
  results = pipeline.run(tiny_config(), workdir)
  return workdir, results, file_times(workdir)


def test_outputs(first_run):
  workdir, results, _ = first_run
  family = envs.make("point_robot")
  tests = list(family.test_tasks)
  saved = strict_json(os.path.join(workdir, "results", "results.json"))
  assert saved == json.loads(json.dumps(results))
  assert saved["family"] == "point_robot" and saved["test_tasks"] == tests
  assert saved["seeds"] == [0]
  assert sorted(saved["methods"]) == sorted(LABELS)
  assert tuple(results["methods"]) == LABELS  # in table order
  for label in LABELS:
    row = saved["methods"][label]
    run = strict_json(os.path.join(workdir, "results", "runs",
                                   f"{label}-seed0.json"))
    assert run["method"] == label and run["tasks"] == tests
    # One seed: per-task means are that seed's, and their mean is the score.
    np.testing.assert_allclose(row["per_task"], run["task_means"], rtol=1e-12)
    np.testing.assert_allclose(row["per_seed"], [np.mean(run["task_means"])],
                               rtol=1e-12)
    assert row["mean"] == pytest.approx(np.mean(run["task_means"]))
    assert row["std"] == 0.0
    # point_robot returns lie between the best (about -3) and far off (-60).
    assert all(-60 < m < 0 for m in run["task_means"])
    assert len(run["task_stds"]) == len(tests)
  metrics = strict_json(os.path.join(
      workdir, "results", "runs", "prompt_diffuser[dm_only]-seed0.json"))[
          "tune_metrics"]
  assert all(np.isfinite(metrics["dm_loss"]))
  assert metrics["dt_loss"] == [None] * len(tests)  # no guidance loss
  md = open(os.path.join(workdir, "results", "results.md")).read()
  for label in LABELS:
    assert f"| {label} | " in md
  assert all(f"task {i}" in md for i in tests)
  with open(os.path.join(workdir, "results", "returns.png"), "rb") as f:
    assert f.read(8) == PNG_MAGIC
  for quality in ("expert",):
    names = os.listdir(os.path.join(workdir, "datasets", "point_robot",
                                    quality))
    assert sorted(names) == [f"task_{i:02d}.npz"
                             for i in range(family.num_tasks)]
  assert os.path.exists(os.path.join(workdir, "tuning", "prompt_diffuser",
                                     "pretrained.msgpack"))


def test_resume_does_not_redo_any_stage(first_run, monkeypatch):
  workdir, results, times = first_run

  def forbidden(what):
    def fail(*args, **kwargs):
      raise AssertionError(f"a resumed run must not {what}")
    return fail

  monkeypatch.setattr(pipeline.collect, "collect_tasks",
                      forbidden("collect data"))
  monkeypatch.setattr(loop, "train_step", forbidden("train the PLM"))
  monkeypatch.setattr(pd, "make_pretrain", forbidden("pre-train the DM"))
  monkeypatch.setattr(pd, "make_tune_tasks",
                      lambda *a, **k: forbidden("tune prompts"))
  monkeypatch.setattr(pipeline, "evaluate_tuned", forbidden("roll out"))
  again = pipeline.run(tiny_config(), workdir)
  assert again["methods"] == results["methods"]
  assert file_times(workdir) == times


def test_pretrained_policy_of_the_run(first_run, tmp_path):
  workdir, *_ = first_run
  plm = pretrain_lib.load_pretrained_policy(os.path.join(workdir, "pretrain"))
  c = tiny_config().pretrain
  assert (plm.context_len, plm.prompt_len) == (c.context_len, c.prompt_len)
  assert plm.max_ep_len == c.train.model.max_ep_len
  assert plm.return_scale == envs.make("point_robot").return_scale
  assert plm.state_mean.shape == plm.state_std.shape == (2,)
  assert np.all(np.asarray(plm.state_std) > 0)
  # The compact export loads the same parameters.
  pretrain_lib.export_pretrained(os.path.join(workdir, "pretrain"),
                                 str(tmp_path / "export"))
  exported = pretrain_lib.load_pretrained_policy(str(tmp_path / "export"))
  jax.tree.map(np.testing.assert_array_equal, exported.params, plm.params)
  np.testing.assert_array_equal(exported.state_mean, plm.state_mean)


def test_read_policy_info_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="policy.json"):
    pretrain_lib.read_policy_info(str(tmp_path))
  (tmp_path / "policy.json").write_text(json.dumps({"return_scale": 1.0}))
  with pytest.raises(ValueError, match="missing fields.*max_ep_len"):
    pretrain_lib.read_policy_info(str(tmp_path))


def test_diffusion_pretraining_runs_exactly_the_configured_steps(
    first_run, tmp_path, monkeypatch):
  """Chunks of at most 250 steps, the last one shorter: 260 steps in all."""
  workdir, *_ = first_run
  plm = pretrain_lib.load_pretrained_policy(os.path.join(workdir, "pretrain"))
  chunks = []

  def fake_make_pretrain(model, plm, config, num_steps):
    def pretrain(params, opt_state, trajs, key):
      chunks.append((num_steps, jax.random.key_data(key).tolist()))
      return params, opt_state, np.zeros(num_steps)
    return pretrain, optax.adam(config.pretrain_lr)

  monkeypatch.setattr(pd, "make_pretrain", fake_make_pretrain)
  config = tiny_config()
  config.prompt_diffuser.pretrain_steps = 260
  pipeline.ensure_diffuser(config, plm, envs.make("point_robot"),
                           str(tmp_path), os.path.join(workdir, "datasets"))
  assert [n for n, _ in chunks] == [250, 10]
  assert chunks[0][1] != chunks[1][1]  # a fresh key per chunk
  assert os.path.exists(tmp_path / "tuning" / "prompt_diffuser" /
                        "pretrained.msgpack")


def test_unknown_method_is_rejected_before_any_work(tmp_path):
  config = tiny_config()
  config.methods = ("prompt_dt", "soft_promt")
  workdir = tmp_path / "run"
  with pytest.raises(ValueError, match="'soft_promt'"):
    pipeline.run(config, str(workdir))
  assert not workdir.exists()


def test_unknown_shipped_plm_is_named(tmp_path):
  config = tiny_config()
  config.pretrained = "no_such_plm"
  with pytest.raises(ValueError, match="no_such_plm"):
    pipeline.ensure_pretrained(config, envs.make("point_robot"), str(tmp_path),
                               str(tmp_path / "datasets"))


def test_configs():
  c = run_configs.get_config("point_robot,tiny")
  assert c.family == c.pretrain.family == c.collect.family == "point_robot"
  assert c.pretrained == ""  # tiny pre-trains instead of loading a PLM
  assert c.pretrain == pretrain_configs.get_config("point_robot,tiny")
  assert set(c.methods) <= set(pipeline.METHODS)
  assert set(c.prompt_diffuser_modes) <= set(pd.MODES)
  pd.check_config(c.prompt_diffuser)
  assert set(collect_configs.get_config("point_robot").qualities) <= {
      "expert", "medium", "random"}
  with pytest.raises(ValueError, match="'huge'"):
    pretrain_configs.get_config("point_robot,huge")
  with pytest.raises(ValueError, match="'hopper'"):
    behavior_configs.get_config("hopper")


def test_shipped_checkpoint_fits_the_default_config_only():
  config = run_configs.get_config()  # cheetah_vel, cpu preset
  family = envs.make(config.family)
  src = os.path.join(pipeline.PRETRAINED_ASSETS, config.pretrained)
  assert pipeline.shipped_checkpoint_fits(src, config, family) is None
  config.pretrain.train.model.hidden_dim = 2 * config.pretrain.train.model.hidden_dim
  assert "model.hidden_dim" in pipeline.shipped_checkpoint_fits(
      src, config, family)
  config = run_configs.get_config()
  config.pretrain.context_len += 1
  assert "context_len" in pipeline.shipped_checkpoint_fits(src, config, family)
