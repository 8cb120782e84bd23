"""Tests of resumable behaviour-policy training (``pdiff.data.behavior_resume``)."""

import json
import os

import flax.serialization
import jax
import numpy as np
import pytest

from experiments.configs import behavior as behavior_configs
from pdiff import envs
from pdiff.data import behavior
from pdiff.data import behavior_resume as resume


def tiny_config(num_timesteps=2000):
  config = behavior_configs.get_config("point_robot")
  config.hidden = (8, 8)
  config.value_hidden = (8, 8)
  config.trainer.update(num_timesteps=num_timesteps, num_envs=16,
                        batch_size=16, unroll_length=5, num_minibatches=2,
                        num_updates_per_batch=1, num_evals=3, num_eval_envs=4)
  return config


class Stop(Exception):
  pass


def test_a_stopped_run_continues_from_its_last_evaluation(tmp_path,
                                                          monkeypatch):
  family = envs.make("point_robot")
  out = str(tmp_path)
  save = resume.save
  calls = []

  def save_then_stop(*args, **kwargs):
    save(*args, **kwargs)
    calls.append(args[2])
    if len(calls) == 2:
      raise Stop  # the run is killed after its second evaluation

  monkeypatch.setattr(resume, "save", save_then_stop)
  with pytest.raises(Stop):
    behavior.train_behavior_policy(family, tiny_config(), out)
  monkeypatch.setattr(resume, "save", save)
  stopped = resume.load(out, tiny_config())
  assert stopped.steps == calls[-1] > 0
  assert [s for s, _ in stopped.curve] == calls
  assert not os.path.exists(os.path.join(out, "expert"))

  summary = behavior.train_behavior_policy(family, tiny_config(), out)
  curve = summary["curve"]
  # The saved prefix is kept as it was, then the run goes on past it.
  assert [tuple(p) for p in curve[:2]] == list(stopped.curve)
  assert len(curve) == 3 and curve[-1][0] >= 2000
  assert [s["first_step"] for s in summary["segments"]] == [0, calls[-1]]
  assert [s["seed"] for s in summary["segments"]] == [0, 1]
  assert summary["segments"][1]["num_timesteps"] == 2000 - calls[-1]
  assert summary["medium_step"] in [s for s, _ in curve]
  info = json.loads((tmp_path / "expert" / "policy.json").read_text())
  assert info["curve"] == [list(p) for p in curve]
  assert info["segments"] == summary["segments"]
  assert info["train_seconds"] > stopped.train_seconds > 0
  # Only the newest full parameters are kept; every snapshot is.
  files = sorted(os.listdir(resume.directory(out)))
  assert files == [f"params_{curve[-1][0]}.msgpack", "snapshots",
                   "state.json"]
  assert len(os.listdir(os.path.join(resume.directory(out), "snapshots"))) == 3

  # A finished run with a raised budget trains only the difference, from
  # the saved parameters (the restored policy's evaluation is not repeated).
  longer = behavior.train_behavior_policy(family, tiny_config(4000), out)
  assert [tuple(p) for p in longer["curve"][:3]] == [tuple(p) for p in curve]
  assert longer["curve"][-1][0] >= 4000
  assert len(longer["segments"]) == 3

  # Choosing the expert and medium again trains nothing: the selection fields
  # may change, and "best" takes the snapshot with the highest evaluation.
  select = tiny_config(4000)
  select.expert, select.medium_fraction = "best", 0.25
  again = behavior.train_behavior_policy(family, select, out)
  assert again["curve"] == longer["curve"]
  assert again["segments"] == longer["segments"]
  assert again["train_seconds"] == resume.load(out, select).train_seconds
  best_step = max(longer["curve"], key=lambda p: (p[1], -p[0]))[0]
  assert again["expert_step"] == best_step
  info = json.loads((tmp_path / "expert" / "policy.json").read_text())
  assert info["step"] == best_step and info["config"]["expert"] == "best"
  saved, snapshot = (
      flax.serialization.msgpack_restore(open(path, "rb").read())
      for path in (tmp_path / "expert" / "params.msgpack",
                   os.path.join(resume.directory(out), "snapshots",
                                f"{best_step}.msgpack")))
  for a, b in zip(jax.tree.leaves(saved), jax.tree.leaves(snapshot),
                  strict=True):
    np.testing.assert_array_equal(a, b)
  with pytest.raises(ValueError, match=r"already reached step \d+, beyond "
                     r"config\.trainer\.num_timesteps = 2000"):
    behavior.train_behavior_policy(family, tiny_config(2000), out)
  # Brax rounds a budget up to whole iterations, so a run may end past the
  # budget its last segment was asked for: the same budget finishes it.
  state_path = os.path.join(resume.directory(out), "state.json")
  state = json.loads(open(state_path).read())
  last = state["segments"][-1]
  assert last["first_step"] + last["num_timesteps"] == 4000
  state["steps"] = 4000 + 96
  with open(state_path, "w") as f:
    json.dump(state, f)
  past = behavior.train_behavior_policy(family, select, out)
  assert past["segments"] == again["segments"]
  assert past["expert_step"] == again["expert_step"]
  assert all(np.isfinite(r) for _, r in longer["curve"])


def test_a_run_continues_only_under_its_own_config(tmp_path):
  config = tiny_config()
  out = str(tmp_path)
  params = tuple(np.zeros(2) for _ in range(3))
  resume.save(out, config, 100, params, [(0, -1.0), (100, -0.5)],
              [dict(first_step=0, seed=0, num_timesteps=2000)], 1.5)
  progress = resume.load(out, tiny_config(num_timesteps=9000))
  assert progress.steps == 100 and progress.curve == ((0, -1.0), (100, -0.5))
  assert progress.train_seconds == 1.5
  changed = tiny_config()
  changed.trainer.learning_rate = 0.5
  with pytest.raises(ValueError, match=r"trainer\.learning_rate = 0\.001.*"
                     r"asks 0\.5.*trainer\.num_timesteps"):
    resume.load(out, changed)
  selection = tiny_config()
  selection.expert, selection.medium_fraction = "best", 0.9
  assert resume.load(out, selection).steps == 100
  changed = tiny_config()
  changed.hidden = (16, 16)
  with pytest.raises(ValueError, match=r"state\.json: the run was started "
                     r"with hidden = \[8, 8\]"):
    resume.load(out, changed)


def test_unreadable_resume_state_is_named(tmp_path):
  path = tmp_path / "resume" / "state.json"
  path.parent.mkdir()
  path.write_text("{")
  with pytest.raises(ValueError, match=r"resume/state\.json: not valid JSON"):
    resume.load(str(tmp_path), tiny_config())
  path.write_text(json.dumps(dict(steps=1)))
  with pytest.raises(ValueError, match=r"missing fields \['curve'"):
    resume.load(str(tmp_path), tiny_config())


def test_resume_state_naming_a_missing_params_file(tmp_path):
  config = tiny_config()
  params = tuple(np.zeros(2) for _ in range(3))
  resume.save(str(tmp_path), config, 100, params, [(100, 0.0)], [], 1.0)
  os.remove(tmp_path / "resume" / "params_100.msgpack")
  progress = resume.load(str(tmp_path), config)
  with pytest.raises(FileNotFoundError, match="params_100.msgpack, which is "
                     "missing"):
    resume.load_params(str(tmp_path), progress, params)
