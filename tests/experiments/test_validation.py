"""Bad inputs: every one is a named error raised before anything is written."""

import os
import subprocess
import sys

import pytest

from experiments import launch
from experiments.configs import run as run_configs
from pdiff import pipeline
from pdiff.pipeline import validate

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


def tiny():
  c = run_configs.get_config("point_robot,tiny")
  c.pretrain.num_steps = 4
  return c


def assign(config, field, value):
  *parents, leaf = field.split(".")
  node = config
  for p in parents:
    node = node[p]
  node[leaf] = value


# (field, bad value, a fragment the message must hold)
BAD = [
    ("family", "hopper", "hopper"),
    ("backend", "warp", "warp"),
    ("seed", -1, "config.seed = -1"),
    ("seeds", (), "config.seeds"),
    ("seeds", (0, 0), "distinct"),
    ("methods", ("prompt_dt", "soft_promt"), "soft_promt"),
    ("methods", (), "config.methods"),
    ("tuning.prompt_diffuser.modes", ("projektion",), "projektion"),
    ("num_shots", 0, "config.num_shots = 0"),
    ("num_shots", 4, "collect.num_trajectories"),
    ("few_shot_quality", "great", "config.few_shot_quality = 'great'"),
    ("few_shot_quality", "medium", "collect.qualities"),
    ("few_shot_source", "test_tasks", "config.few_shot_source = 'test_tasks'"),
    ("eval_episodes", 0, "config.eval_episodes = 0"),
    ("pretrained", "no_such_plm", "no_such_plm"),
    ("collect.num_trajectories", 0, "collect.num_trajectories = 0"),
    ("collect.expert_noise", -0.1, "collect.expert_noise"),
    ("collect.family", "cheetah_vel", "collect.family"),
    ("collect.policy_dir", "/nonexistent/policies", "policy_dir"),
    ("pretrain.batch_per_task", 0, "pretrain.batch_per_task = 0"),
    ("pretrain.num_steps", 0, "pretrain.num_steps = 0"),
    ("pretrain.context_len", 0, "pretrain.context_len"),
    ("pretrain.quality", "best", "pretrain.quality"),
    ("pretrain.state_statistics", "test", "pretrain.state_statistics"),
    ("pretrain.train.learning_rate", 0.0, "pretrain.train.learning_rate"),
    ("pretrain.train.model.hidden_dim", 0, "hidden_dim"),
    ("pretrain.train.model.state_dim", 5, "point_robot's 2"),
    ("pretrain.train.model.max_ep_len", 10, "episode length"),
    ("pretrain.train.model.dropout_rate", 1.0, "dropout_rate"),
    ("tuning.prompt_diffuser.num_diffusion_steps", 0, "num_diffusion_steps"),
    ("tuning.prompt_diffuser.guidance_position", "middle",
     "guidance_position"),
    ("tuning.prompt_diffuser.ddim_steps", 50, "ddim_steps"),
    ("tuning.prompt_diffuser.finetune_steps", -1, "finetune_steps"),
    ("tuning.prompt_diffuser.train_position", "random",
     "train_position is 'random', but the PLM was pre-trained on prompts at "
     "position 'last'"),
    ("tuning.prompt_diffuser.selection_holdout", 2, "selection_holdout"),
]


@pytest.mark.parametrize("field,value,fragment", BAD,
                         ids=[f"{f}={v!r}" for f, v, _ in BAD])
def test_bad_value_is_named_and_nothing_is_written(tmp_path, field, value,
                                                   fragment):
  config = tiny()
  if field == "few_shot_quality" and value == "medium":
    config.collect.qualities = ("expert",)
  if field.endswith("selection_holdout"):  # holding out all 2 shots
    config.tuning.prompt_diffuser.num_candidates = 2
  assign(config, field, value)
  workdir = tmp_path / "run"
  with pytest.raises(validate.ConfigError) as e:
    pipeline.run(config, str(workdir))
  assert fragment in str(e.value)
  assert not workdir.exists()


def test_unknown_and_missing_method_configs_are_refused():
  config = tiny()
  with config.tuning.unlocked():
    config.tuning.soft_promt = {"steps": 3}
  with pytest.raises(validate.ConfigError, match=r"config.tuning.*soft_promt"):
    validate.check_run_config(config)
  config = tiny()
  del config.tuning["prompt_diffuser"]
  with pytest.raises(validate.ConfigError,
                     match=r"config.tuning.prompt_diffuser is missing"):
    validate.check_run_config(config)


def test_unknown_fields_are_refused():
  config = tiny()
  with config.unlocked():
    config.num_shot = 3
  with pytest.raises(validate.ConfigError, match=r"unknown field.*num_shot"):
    validate.check_run_config(config)
  config = tiny()
  with config.pretrain.unlocked():
    config.pretrain.batch = 3
  with pytest.raises(validate.ConfigError, match=r"pretrain.*'batch'"):
    validate.check_run_config(config)


def test_default_configs_pass():
  for family in ("cheetah_vel", "point_robot", "ant_dir_10"):
    validate.check_run_config(run_configs.get_config(family))
  validate.check_run_config(tiny())


def test_ant_dir_10_pretrains_its_plm_without_a_shipped_one():
  config = run_configs.get_config("ant_dir_10,cpu")
  shipped = os.path.isdir(os.path.join(validate.PRETRAINED_ASSETS,
                                       "ant_dir_10_cpu"))
  assert config.pretrained == ("ant_dir_10_cpu" if shipped else "")
  config.pretrained = ""
  validate.check_run_config(config)
  assert config.pretrain.family == config.collect.family == "ant_dir_10"


ZERO_SHOT_REFUSALS = [
    ("upper_bound", "reads each test task's full dataset"),
    ("oracle_prompt", "reads each test task's full dataset"),
    ("prompt_bandit", "plays 4 online episodes per test task"),
]


@pytest.mark.parametrize("method,fragment", ZERO_SHOT_REFUSALS)
def test_zero_shot_refuses_methods_that_see_test_task_data(tmp_path, method,
                                                          fragment):
  config = tiny()
  config.few_shot_source = "training_tasks"
  config.methods = ("prompt_dt", method)
  workdir = tmp_path / "run"
  with pytest.raises(validate.ConfigError) as e:
    pipeline.run(config, str(workdir))
  assert f"{method!r} {fragment}" in str(e.value)
  assert "few_shot_source = 'training_tasks'" in str(e.value)
  assert not workdir.exists()


def test_zero_shot_allows_the_offline_few_shot_methods():
  config = tiny()
  config.few_shot_source = "training_tasks"
  config.methods = ("prompt_dt", "prompt_dt_ft", "soft_prompt", "adaptor",
                    "prompt_tuning_dt", "prompt_diffuser")
  validate.check_run_config(config)


def test_zero_shot_needs_test_tasks_outside_the_training_tasks():
  config = run_configs.get_config("cheetah_dir,tiny")
  config.few_shot_source = "training_tasks"
  with pytest.raises(validate.ConfigError,
                     match=r"few_shot_source.*test tasks \[0, 1\]"):
    validate.check_run_config(config)


def test_unknown_override_names_the_field_and_its_siblings():
  argv = ["run.py", "--workdir=x",
          "--config.tuning.prompt_diffuser.finetune_step=3"]
  message = launch.unknown_override(argv, "config",
                                    "experiments/configs/run.py")
  assert "'config.tuning.prompt_diffuser.finetune_step'" in message
  assert "finetune_steps" in message
  assert launch.unknown_override(
      ["run.py", "--config.num_shots=3"], "config",
      "experiments/configs/run.py") is None


@pytest.mark.parametrize("args,fragment", [
    (["--config.nonexistent=3"], "unknown config field 'config.nonexistent'"),
    (["--config.num_shots=0"], "config.num_shots = 0"),
])
def test_launcher_reports_one_line_without_traceback(tmp_path, args, fragment):
  workdir = tmp_path / "run"
  proc = subprocess.run(
      [sys.executable, "experiments/run.py", f"--workdir={workdir}",
       "--config=experiments/configs/run.py:point_robot,tiny", *args],
      cwd=ROOT, capture_output=True, text=True, timeout=300,
      env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert proc.returncode != 0
  assert fragment in proc.stderr
  assert "Traceback" not in proc.stderr
  assert not workdir.exists()
