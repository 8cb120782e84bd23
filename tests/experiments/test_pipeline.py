"""End-to-end tests of the whole pipeline (``pdiff.pipeline.run``) on
point_robot with the ``tiny`` presets: outputs, resumption, fingerprints.

One run is shared by the module; the other tests resume it, change its
config, interrupt it, or call single stages on its outputs.
"""

import dataclasses
import glob
import importlib
import json
import os
import shutil
import threading
import time
import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from experiments.configs import run as run_configs
from pdiff import envs, pipeline, serialization, stages
from pdiff.data import collect, loading, storage
from pdiff.evaluation.rollout import RolloutResult
from pdiff.pipeline import prepare, tuning_runs
from pdiff.training import loop
from pdiff.training import pretrain as pretrain_lib
from pdiff.tuning import prompt_diffuser as pd
from pdiff.tuning import registry

# One worker runs this module, so its shared run is computed once.
pytestmark = pytest.mark.xdist_group("pipeline")

LABELS = ("prompt_dt", "prompt_diffuser[dm_only]")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Rewritten by every run (resumed or not); everything else must not change.
REWRITTEN = ("results/results.json", "results/results.md",
             "results/returns.png", "datasets/point_robot/returns.json")
# Keys of results.json that hold the numbers (not timings or provenance).
NUMBERS = ("methods", "statistics", "test_tasks", "seeds", "fingerprint")


def tiny_config():
  c = run_configs.get_config("point_robot,tiny")
  c.methods = ("prompt_dt", "prompt_diffuser")
  c.tuning.prompt_diffuser.modes = ("dm_only",)
  c.seeds = (0, 1)
  c.pretrain.num_steps = 4
  c.pretrain.ckpt_every = 4
  c.pretrain.log_every = 2
  return c


def numbers(results):
  """The figures of a results dict, without timings."""
  out = {k: results[k] for k in NUMBERS}
  out["methods"] = {
      label: {k: v for k, v in row.items() if not k.endswith("_seconds")}
      for label, row in results["methods"].items()}
  return out


def file_times(workdir):
  """``{relative path: (mode, mtime_ns)}`` of the files a resumed run must
  keep."""
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


def run_files(workdir, label):
  directory = os.path.join(workdir, "results", "runs", label)
  return sorted(os.listdir(directory))


def test_outputs(first_run):
  workdir, results, _ = first_run
  family = envs.make("point_robot")
  tests = list(family.test_tasks)
  saved = strict_json(os.path.join(workdir, "results", "results.json"))
  assert saved == json.loads(json.dumps(results))
  assert saved["family"] == "point_robot" and saved["test_tasks"] == tests
  assert saved["seeds"] == [0, 1]
  assert tuple(results["methods"]) == LABELS  # in table order
  assert saved["row_order"] == list(LABELS)  # the file sorts its keys
  for label in LABELS:
    row = saved["methods"][label]
    runs = [strict_json(os.path.join(workdir, "results", "runs", label, name))
            for name in run_files(workdir, label)]
    assert sorted(r["seed"] for r in runs) == [0, 1]
    by_seed = {r["seed"]: r for r in runs}
    means = np.array([by_seed[s]["task_means"] for s in (0, 1)])
    np.testing.assert_allclose(row["per_task"], means.mean(0), rtol=1e-12)
    np.testing.assert_allclose(row["per_seed"], means.mean(1), rtol=1e-12)
    assert row["std"] == pytest.approx(np.std(means.mean(1), ddof=1))
    assert row["run_fingerprints"] == [by_seed[s]["fingerprint"]
                                       for s in (0, 1)]
    for r in runs:
      assert r["status"] == "complete" and r["tasks"] == tests
      assert all(-60 < m < 0 for m in r["task_means"])  # point_robot range
  assert "paired" in saved["methods"]["prompt_diffuser[dm_only]"]
  assert saved["statistics"]["baseline"] == "prompt_dt"
  prov = saved["provenance"]
  assert prov["versions"]["jax"] == jax.__version__
  assert prov["commit"] and prov["machine"]
  assert prov["load_average_1min"] is None or prov["load_average_1min"] >= 0
  assert prov["matmul_gflops_per_s"] > 0
  assert set(saved["stage_seconds"]) == {"datasets", "pretrain", "prepare",
                                         "tune_and_evaluate"}
  md = open(os.path.join(workdir, "results", "results.md")).read()
  for label in LABELS:
    assert f"| {label} | " in md
  assert "standard error of a difference" in md
  with open(os.path.join(workdir, "results", "returns.png"), "rb") as f:
    assert f.read(8) == PNG_MAGIC
  names = os.listdir(os.path.join(workdir, "datasets", "point_robot",
                                  "expert"))
  assert sorted(names) == sorted([f"task_{i:02d}.npz"
                                  for i in range(family.num_tasks)]
                                 + [stages.RECORD_FILE])
  stage1 = os.listdir(os.path.join(workdir, "tuning", "prompt_diffuser"))
  assert len(stage1) == 2  # one stage-1 model per seed
  for label in LABELS:
    row = saved["methods"][label]
    assert row["information"] == "few-shot"
    assert 0 <= row["parameter_share"] <= 1
  assert saved["methods"]["prompt_dt"]["trainable_parameters"] == 0
  assert saved["methods"]["prompt_diffuser[dm_only]"][
      "trainable_parameters"] > 0


def test_seeds_draw_their_own_few_shot_data(first_run):
  workdir, *_ = first_run
  config = tiny_config()
  family = envs.make("point_robot")
  tests = tuning_runs.load_split(family, os.path.join(workdir, "datasets"),
                                 "expert", list(family.test_tasks))
  a, b = (tuning_runs.draw_few_shot(tests, config.num_shots,
                                    tuning_runs.seed_key(config, s))
          for s in (0, 1))
  again = tuning_runs.draw_few_shot(tests, config.num_shots,
                                    tuning_runs.seed_key(config, 0))
  jax.tree.map(np.testing.assert_array_equal, a, again)
  assert any(not np.array_equal(x.observations, y.observations)
             for x, y in zip(a, b, strict=True))
  assert a[0].lengths.shape == (config.num_shots,)


def matching_rows(trajs, pool):
  """Per trajectory of ``trajs``, the indices of ``pool``'s trajectories
  equal to it (observations, actions, rewards and length)."""
  out = []
  for n in range(trajs.lengths.shape[0]):
    same = np.ones(pool.lengths.shape[0], bool)
    for field in ("observations", "actions", "rewards", "lengths"):
      a = np.asarray(getattr(trajs, field))[n]
      b = np.asarray(getattr(pool, field))
      same &= np.all((b == a).reshape(b.shape[0], -1), axis=1)
    out.append(np.flatnonzero(same))
  return out


def test_zero_shot_draws_only_training_task_trajectories(first_run):
  workdir, *_ = first_run
  config = tiny_config()
  config.few_shot_source = "training_tasks"
  family = envs.make("point_robot")
  root = os.path.join(workdir, "datasets")
  tests = tuning_runs.load_split(family, root, "expert",
                                 list(family.test_tasks))
  train = tuning_runs.load_split(family, root, "expert",
                                 list(family.train_tasks))
  pools = tuning_runs.few_shot_pools(config, family, root, tests)
  assert len(pools) == len(tests)
  assert pools[0].lengths.shape[0] == sum(t.lengths.shape[0] for t in train)
  drawn = tuning_runs.draw_few_shot(pools, config.num_shots,
                                    tuning_runs.seed_key(config, 0))
  all_test = loading.pooled(tests)
  for shots in drawn:
    assert shots.lengths.shape == (config.num_shots,)
    for n, (in_train, in_test) in enumerate(zip(
        matching_rows(shots, loading.pooled(train)),
        matching_rows(shots, all_test), strict=True)):
      assert in_train.size > 0, f"shot {n} is no training-task trajectory"
      assert in_test.size == 0, f"shot {n} is a test-task trajectory"
  # Each test task draws with its own key; the default draws test data.
  assert any(not np.array_equal(a.observations, b.observations)
             for a, b in zip(drawn, drawn[1:], strict=False))
  config.few_shot_source = "test_task"
  assert tuning_runs.few_shot_pools(config, family, root, tests) is tests


def test_zero_shot_runs_fingerprint_their_source_and_training_data(first_run):
  workdir, *_ = first_run
  config = tiny_config()
  family = envs.make("point_robot")
  root = os.path.join(workdir, "datasets")
  digests = {"expert": "d" * 64}
  method = registry.get("prompt_dt")
  default = tuning_runs.run_inputs(config, family, root, "plm", digests)
  assert default == {"plm": "plm", "datasets/expert": "d" * 64}
  plain = tuning_runs.run_record(config, "prompt_dt", method,
                                 config.tuning.prompt_dt, 0, default)
  assert "few_shot_source" not in plain["config"]
  config.few_shot_source = "training_tasks"
  inputs = tuning_runs.run_inputs(config, family, root, "plm", digests)
  train_files = [str(storage.dataset_path(root, "point_robot", "expert", i))
                 for i in family.train_tasks]
  assert inputs == dict(default, **{
      "training_tasks/datasets/expert": stages.file_digest(train_files)})
  zero = tuning_runs.run_record(config, "prompt_dt", method,
                                config.tuning.prompt_dt, 0, inputs)
  assert zero["config"]["few_shot_source"] == "training_tasks"
  assert zero["fingerprint"] != tuning_runs.run_record(
      config, "prompt_dt", method, config.tuning.prompt_dt, 0,
      default)["fingerprint"] != plain["fingerprint"]


@pytest.mark.parametrize("name", sorted(
    os.path.basename(os.path.dirname(p)) for p in glob.glob(os.path.join(
        os.path.dirname(__file__), "..", "..", "results", "*",
        "results.json"))))
def test_committed_runs_keep_their_fingerprints(name):
  """The committed results' runs are found again: a default config (with or
  without ``few_shot_source``) gives their recorded fingerprints."""
  root = os.path.join(os.path.dirname(__file__), "..", "..", "results")
  results = strict_json(os.path.join(root, name, "results.json"))
  saved = results["config"]
  config = ml_collections.ConfigDict(saved)
  quality = config.few_shot_quality
  inputs = {"plm": results["inputs"]["plm"],
            f"datasets/{quality}": results["inputs"]["datasets"][quality]}
  method = registry.get("prompt_dt")
  row = results["methods"]["prompt_dt"]
  success = row.get("success_rate") is not None  # a family with a metric
  for source in ("absent", "test_task"):
    if source != "absent":
      with config.unlocked():
        config.few_shot_source = source
    fps = [tuning_runs.run_record(config, "prompt_dt", method,
                                  config.tuning.prompt_dt, s, inputs,
                                  success=success)["fingerprint"]
           for s in results["seeds"]]
    assert fps == row["run_fingerprints"], source


def test_resplit_family_datasets_name_their_behavior_policies():
  """ant_dir_10's datasets record ant_dir's shipped behaviour policies."""
  ood = prepare.dataset_record(run_configs.get_config("ant_dir_10,tiny"),
                               envs.make("ant_dir_10"), "expert")
  ant = prepare.dataset_record(run_configs.get_config("ant_dir,tiny"),
                               envs.make("ant_dir"), "expert")
  assert ood["config"]["family"] == "ant_dir_10"
  assert ood["inputs"] == ant["inputs"]
  assert ood["fingerprint"] != ant["fingerprint"]


def test_resume_does_not_redo_any_stage(first_run, monkeypatch):
  workdir, results, times = first_run

  def forbidden(what):
    def fail(*args, **kwargs):
      raise AssertionError(f"a resumed run must not {what}")
    return fail

  monkeypatch.setattr(collect, "collect_tasks", forbidden("collect data"))
  monkeypatch.setattr(loop, "train_step", forbidden("train the PLM"))
  monkeypatch.setattr(pd, "make_pretrain", forbidden("pre-train the DM"))
  monkeypatch.setattr(pd, "make_tune_tasks",
                      lambda *a, **k: forbidden("tune prompts"))
  monkeypatch.setattr(tuning_runs, "evaluate_tuned", forbidden("roll out"))
  again = pipeline.run(tiny_config(), workdir)
  assert numbers(again) == numbers(results)
  assert file_times(workdir) == times


def test_changed_tuning_field_equals_a_fresh_workdir(first_run, tmp_path):
  """A rerun with another fine-tuning budget recomputes exactly what depends
  on it, keeps the old outputs, and matches a fresh work directory."""
  workdir, results, _ = first_run
  reused = str(tmp_path / "reused")
  shutil.copytree(workdir, reused)
  config = tiny_config()
  config.tuning.prompt_diffuser.finetune_steps += 1
  changed = pipeline.run(config, reused)
  fresh = pipeline.run(config, str(tmp_path / "fresh"))
  assert numbers(changed) == numbers(fresh)
  assert (changed["methods"]["prompt_dt"]["mean"]
          == results["methods"]["prompt_dt"]["mean"])
  assert changed["fingerprint"] != results["fingerprint"]
  # Both configs' runs are kept; stage 1 did not depend on the change.
  assert len(run_files(reused, "prompt_diffuser[dm_only]")) == 4
  assert len(run_files(reused, "prompt_dt")) == 2
  assert len(os.listdir(os.path.join(reused, "tuning", "prompt_diffuser"))) == 2
  # Changing it back finds the first numbers again without recomputing.
  back = pipeline.run(tiny_config(), reused)
  assert numbers(back) == numbers(results)


@pytest.mark.parametrize("field,value,where", [
    ("collect.num_trajectories", 4, "datasets/point_robot/expert"),
    ("pretrain.train.model.hidden_dim", 8, "pretrain"),
    ("pretrain.num_steps", 5, "pretrain"),
])
def test_changed_upstream_field_is_refused_by_name(first_run, tmp_path, field,
                                                   value, where):
  workdir, *_ = first_run
  reused = str(tmp_path / "reused")
  shutil.copytree(workdir, reused)
  before = file_times(reused)
  config = tiny_config()
  node = config
  *parents, leaf = field.split(".")
  for p in parents:
    node = node[p]
  node[leaf] = value
  with pytest.raises(stages.StaleStageError) as e:
    pipeline.run(config, reused)
  assert where in str(e.value) and leaf in str(e.value)
  assert "Delete" in str(e.value)
  assert file_times(reused) == before  # nothing written


class _Killed(BaseException):
  """Stands for a kill: not an Exception, so nothing catches it."""


def _kill_on_call(monkeypatch, module, name, when):
  real = getattr(module, name)
  calls = []

  def wrapper(*args, **kwargs):
    calls.append(1)
    if len(calls) == when:
      raise _Killed(f"killed in {name}")
    return real(*args, **kwargs)

  monkeypatch.setattr(module, name, wrapper)


@pytest.mark.parametrize("target", ["stage1_record", "run_record",
                                    "dataset_record"])
def test_killed_stage_reruns_to_the_uninterrupted_numbers(
    first_run, tmp_path, monkeypatch, target):
  """Killed after a stage wrote its data but before its record: the rerun
  does not trust the data and computes the uninterrupted run's numbers."""
  workdir, results, _ = first_run
  work = str(tmp_path / "work")
  config = tiny_config()
  if target == "dataset_record":  # the 2nd record write marks datasets done
    _kill_on_call(monkeypatch, stages, "write_json_atomic", 2)
  elif target == "stage1_record":  # 1st: the datasets' summary
    _kill_on_call(monkeypatch, stages, "write_json_atomic", 2)
    shutil.copytree(os.path.join(workdir, "datasets"),
                    os.path.join(work, "datasets"))
    shutil.copytree(os.path.join(workdir, "pretrain"),
                    os.path.join(work, "pretrain"))
  else:
    shutil.copytree(workdir, work)
    shutil.rmtree(os.path.join(work, "results"))
    _kill_on_call(monkeypatch, tuning_runs, "evaluate_tuned", 2)
  with pytest.raises(_Killed):
    pipeline.run(config, work)
  monkeypatch.undo()
  again = pipeline.run(config, work)
  assert numbers(again) == numbers(results)


def test_killed_shipped_plm_copy_recovers(tmp_path, monkeypatch):
  family = envs.make("cheetah_vel")
  config = run_configs.get_config()
  src = os.path.join(pipeline.PRETRAINED_ASSETS, config.pretrained)
  real_copytree, copied = shutil.copytree, []

  def copy_then_die(a, b, *args, **kwargs):
    if copied:
      raise _Killed("killed during the copy")
    copied.append(a)
    return shutil.copy2(a, b, *args, **kwargs)

  monkeypatch.setattr(shutil, "copytree", lambda *a, **k: real_copytree(
      *a, **dict(k, copy_function=copy_then_die)))
  with pytest.raises(_Killed):
    prepare.ensure_pretrained(config, family, str(tmp_path), "unused")
  monkeypatch.undo()
  assert copied  # the copy had started
  assert not os.path.exists(tmp_path / "pretrain")  # nothing half-copied
  plm, fp = prepare.ensure_pretrained(config, family, str(tmp_path), "unused")
  shipped = pretrain_lib.load_pretrained_policy(src)
  jax.tree.map(np.testing.assert_array_equal, plm.params, shipped.params)
  assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p]
  again, fp_again = prepare.ensure_pretrained(config, family, str(tmp_path),
                                              "unused")
  assert fp_again == fp


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


def test_damaged_stage1_parameters_name_the_file(first_run, tmp_path):
  workdir, *_ = first_run
  work = str(tmp_path / "work")
  shutil.copytree(workdir, work)
  directory = os.path.join(work, "tuning", "prompt_diffuser")
  path = os.path.join(directory, sorted(os.listdir(directory))[0],
                      "prepared.msgpack")
  with open(path, "r+b") as f:
    f.truncate(os.path.getsize(path) // 2)
  shutil.rmtree(os.path.join(work, "results"))
  with pytest.raises(serialization.ParamsFileError, match=path):
    pipeline.run(tiny_config(), work)


def test_diffusion_pretraining_runs_exactly_the_configured_steps(
    first_run, monkeypatch):
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
  config = tiny_config().tuning.prompt_diffuser
  config.pretrain_steps = 260
  family = envs.make("point_robot")
  train = loading.pooled(tuning_runs.load_split(
      family, os.path.join(workdir, "datasets"), "expert",
      list(family.train_tasks)))
  context = tuning_runs.make_context(plm, family, train)
  method = registry.get("prompt_diffuser")
  params = method.prepare(context, config)(jax.random.key(0))
  assert [n for n, _ in chunks] == [250, 10]
  assert chunks[0][1] != chunks[1][1]  # a fresh key per chunk
  template = method.prepare_template(context, config)
  assert jax.tree.structure(params) == jax.tree.structure(template)


def test_shipped_checkpoint_fits_the_default_config_only():
  config = run_configs.get_config()  # cheetah_vel, cpu preset
  family = envs.make(config.family)
  src = os.path.join(pipeline.PRETRAINED_ASSETS, config.pretrained)
  assert pipeline.shipped_checkpoint_fits(src, config, family) is None
  config.pretrain.train.model.hidden_dim *= 2
  assert "model.hidden_dim" in pipeline.shipped_checkpoint_fits(
      src, config, family)
  config = run_configs.get_config()
  config.pretrain.context_len += 1
  assert "context_len" in pipeline.shipped_checkpoint_fits(src, config, family)


def test_every_registered_method_in_one_tiny_run(first_run, tmp_path):
  """One table with every registered method (the diagnostic included),
  each row stating its trained parameters and the information it used."""
  workdir, *_ = first_run
  work = str(tmp_path / "work")
  shutil.copytree(workdir, work)  # same datasets and PLM: reused
  config = tiny_config()
  config.seeds = (0,)
  config.methods = registry.registered()
  results = pipeline.run(config, work)
  expected = [f"{name}[dm_only]" if name == "prompt_diffuser" else name
              for name in registry.registered()]
  assert list(results["methods"]) == expected
  md = open(os.path.join(work, "results", "results.md")).read()
  for label in expected:
    row = results["methods"][label]
    assert f"| {label} | " in md
    method = registry.get(row["method"])
    assert row["information"] == method.information(
        config.tuning[method.name])
    assert row["diagnostic"] == method.diagnostic
    assert np.isfinite(row["mean"])
  assert results["methods"]["prompt_dt_ft"]["parameter_share"] == 1.0
  assert results["methods"]["upper_bound"]["information"] == "full dataset"
  assert "online episodes" in results["methods"]["prompt_bandit"][
      "information"]
  assert "(diagnostic)" in md


def test_success_rates_only_change_a_success_familys_fingerprints():
  config = tiny_config()
  method = registry.get("prompt_dt")
  args = (config, "prompt_dt", method, config.tuning.prompt_dt, 0,
          {"plm": "abc"})
  plain = tuning_runs.run_record(*args)
  assert "success_rates" not in plain["config"]
  assert tuning_runs.run_record(*args, success=False) == plain
  success = tuning_runs.run_record(*args, success=True)
  assert success["config"]["success_rates"] is True
  assert success["fingerprint"] != plain["fingerprint"]


@pytest.mark.parametrize("with_success", [False, True])
def test_run_json_holds_task_success_rates(tmp_path, monkeypatch,
                                           with_success):
  """A rollout with successes puts them in the run's JSON, per task; one
  without leaves no key (the evaluation is faked here)."""
  config = tiny_config()
  tests = (2, 7)
  successes = (jnp.array([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
               if with_success else None)
  result = RolloutResult(returns=jnp.array([[-5.0] * 4, [-7.0] * 4]),
                         lengths=jnp.full((2, 4), 20, jnp.int32),
                         successes=successes)
  monkeypatch.setattr(tuning_runs, "evaluate_tuned",
                      lambda *args, **kwargs: result)
  context = types.SimpleNamespace(plm=None, family=None, test_tasks=tests)
  method = registry.get("prompt_dt")
  record = tuning_runs.run_record(config, "prompt_dt", method,
                                  config.tuning.prompt_dt, 0, {},
                                  success=with_success)

  def tune(prepared, data, keys):
    return jnp.zeros(len(tests)), {"loss": jnp.zeros((len(tests), 3))}

  path = str(tmp_path / "run.json")
  run = tuning_runs.tune_and_evaluate(config, context, method, tune,
                                      {"x": np.zeros(2)}, None, 0, record,
                                      path)
  saved = strict_json(path)
  assert saved == json.loads(json.dumps(run))
  assert saved["task_means"] == [-5.0, -7.0]
  if with_success:
    assert saved["task_success_rates"] == [0.5, 1.0]
    assert tuning_runs.task_success_rates(saved) == [0.5, 1.0]
  else:
    assert "task_success_rates" not in saved
    assert tuning_runs.task_success_rates(saved) is None


def fake_runs(without):
  """Two seeds' runs of two methods; the ``(label, seed)`` pairs in
  ``without`` have no success rates."""
  means = {"prompt_dt": [[-10.0, -12.0], [-11.0, -13.0]],
           "adaptor": [[-8.0, -9.0], [-9.0, -10.0]]}
  rates = {"prompt_dt": [[0.5, 0.25], [0.75, 0.5]],
           "adaptor": [[1.0, 0.5], [1.0, 1.0]]}
  runs = {}
  for label in means:
    runs[label] = {}
    for s in (0, 1):
      run = dict(task_means=means[label][s], tune_seconds=1.0,
                 eval_seconds=2.0, fingerprint=f"{label}{s}")
      if (label, s) not in without:
        run["task_success_rates"] = rates[label][s]
      runs[label][s] = run
  return runs


@pytest.mark.parametrize("case", ["none", "all", "one_run_without"])
def test_results_table_success_column(tmp_path, case):
  """Success rates of every run: a column beside the return and a summary
  in each row; a method with a run without them: n/a; runs without any
  (a family without a success metric): neither."""
  without = {"none": {("prompt_dt", 0), ("prompt_dt", 1), ("adaptor", 0),
                      ("adaptor", 1)},
             "all": set(), "one_run_without": {("adaptor", 1)}}[case]
  config = tiny_config()
  family = types.SimpleNamespace(name="point_robot", backend="jax",
                                 test_tasks=(2, 7))
  runs = fake_runs(without)
  info = {label: {} for label in runs}
  results = pipeline.write_results(config, family, str(tmp_path), runs, info,
                                   100, {}, 1.0, {})
  saved = strict_json(tmp_path / "results" / "results.json")
  md = open(tmp_path / "results" / "results.md").read()
  rows = saved["methods"]
  assert rows == json.loads(json.dumps(results["methods"]))
  assert "| prompt_dt | -11.5 +- 0.7 | [-17.9, -5.1] |" in md
  if case == "none":
    assert not any("success_rate" in r for r in rows.values())
    assert "success" not in md
    return
  assert rows["prompt_dt"]["success_rate"]["mean"] == pytest.approx(0.5)
  np.testing.assert_allclose(rows["prompt_dt"]["success_rate"]["per_task"],
                             [0.625, 0.375])
  assert "| 95% CI | success rate (%) | difference to prompt_dt" in md
  assert "| prompt_dt | -11.5 +- 0.7 | [-17.9, -5.1] | 50.0 | baseline |" in md
  if case == "one_run_without":
    assert "success_rate" not in rows["adaptor"]
    assert "| adaptor | -9.0 +- 0.7 | [-15.4, -2.6] | n/a | " in md
  else:
    assert rows["adaptor"]["success_rate"]["mean"] == pytest.approx(0.875)
    assert "| adaptor | -9.0 +- 0.7 | [-15.4, -2.6] | 87.5 | " in md


def fresh_tuning_copy(workdir, destination):
  """``workdir`` with its datasets and PLM, without stage-1 models or runs."""
  shutil.copytree(workdir, destination)
  shutil.rmtree(os.path.join(destination, "tuning"))
  shutil.rmtree(os.path.join(destination, "results"))
  return destination


def run_numbers(workdir):
  """Each run file's returns and tuning metrics, by file name."""
  out = {}
  for path in sorted(glob.glob(os.path.join(workdir, "results", "runs", "*",
                                            "*.json"))):
    run = json.load(open(path))
    out[os.path.relpath(path, workdir)] = (run["task_means"], run["task_stds"],
                                           run["tune_metrics"])
  return out


def test_one_thread_gives_the_threaded_numbers(first_run, tmp_path,
                                               monkeypatch):
  """Seeds and rows run one after the other compute exactly what the
  default (threads, on this machine's cores) computed."""
  workdir, results, _ = first_run
  serial = fresh_tuning_copy(workdir, str(tmp_path / "serial"))
  monkeypatch.setenv("PDIFF_RUN_THREADS", "1")
  assert numbers(pipeline.run(tiny_config(), serial)) == numbers(results)
  assert run_numbers(serial) == run_numbers(workdir)


def test_host_state_families_evaluate_one_at_a_time(first_run, tmp_path,
                                                    monkeypatch):
  """A family whose rollouts are not thread-safe has its evaluations run
  one at a time, while tuning still runs in threads, with the same
  numbers."""
  workdir, results, _ = first_run
  work = fresh_tuning_copy(workdir, str(tmp_path / "work"))
  monkeypatch.setenv("PDIFF_RUN_THREADS", "3")
  monkeypatch.setattr(envs.point_robot.PointRobot, "thread_safe_rollouts",
                      False)
  lock, active, most = threading.Lock(), [0], [0]
  evaluate_tuned = tuning_runs.evaluate_tuned

  def probed(*args, **kwargs):
    with lock:
      active[0] += 1
      most[0] = max(most[0], active[0])
    try:
      time.sleep(0.2)  # long enough for another thread to arrive
      return evaluate_tuned(*args, **kwargs)
    finally:
      with lock:
        active[0] -= 1

  monkeypatch.setattr(tuning_runs, "evaluate_tuned", probed)
  assert numbers(pipeline.run(tiny_config(), work)) == numbers(results)
  assert most[0] == 1
  assert run_numbers(work) == run_numbers(workdir)


def test_results_name_the_code_at_the_start_of_the_run(first_run, tmp_path,
                                                       monkeypatch):
  """Provenance is taken when the run starts (the code that ran), not when
  the results are written, when the work tree may have moved on."""
  workdir, results, _ = first_run
  work = str(tmp_path / "work")
  shutil.copytree(workdir, work)
  phase = ["running"]
  run_module = importlib.import_module("pdiff.pipeline.run")
  write_results = run_module.write_results

  def writing(*args, **kwargs):
    phase[0] = "writing"
    return write_results(*args, **kwargs)

  monkeypatch.setattr(run_module, "write_results", writing)
  monkeypatch.setattr(run_module.provenance, "provenance",
                      lambda: {"taken_while": phase[0]})
  resumed = pipeline.run(tiny_config(), work)
  assert phase[0] == "writing"
  assert resumed["provenance"] == {"taken_while": "running"}
  assert numbers(resumed) == numbers(results)


def test_datasets_cover_the_split_tasks_only(tmp_path):
  """A split that leaves tasks out (as ant_dir_10 does) collects, digests
  and summarises the datasets of its training and test tasks alone."""
  family = dataclasses.replace(envs.make("point_robot"), train_tasks=(3, 1),
                               test_tasks=(7,))
  assert family.split_tasks == (1, 3, 7)
  config = tiny_config()
  digests = prepare.ensure_datasets(config, family, str(tmp_path), ["random"])
  directory = tmp_path / "datasets" / "point_robot" / "random"
  assert sorted(p.name for p in directory.glob("task_*.npz")) == [
      "task_01.npz", "task_03.npz", "task_07.npz"]
  assert digests["random"] == stages.file_digest(
      [str(directory / f"task_{i:02d}.npz") for i in (1, 3, 7)])
  summary = strict_json(tmp_path / "datasets" / "point_robot" /
                        "returns.json")
  assert sorted(summary["random"]) == ["1", "3", "7"]
  # Found complete again: nothing is collected, the digest is the same.
  assert prepare.ensure_datasets(config, family, str(tmp_path),
                                 ["random"]) == digests
