"""The whole pipeline (``pdiff.pipeline.run``) on Meta-World reach, tiny.

Episodes are cut to a few steps so that collection and evaluation, which
step Meta-World's own env on the host, take seconds; everything else is the
``metaworld_reach,tiny`` config. Needs the ``metaworld`` extra and is
skipped, with the reason, without it.
"""

import dataclasses
import json
import os

import numpy as np
import pytest

from experiments.configs import run as run_configs
from pdiff import envs, pipeline
from pdiff.envs import metaworld_reach

pytest.importorskip("metaworld", reason="the metaworld extra is not "
                    "installed: " + metaworld_reach.EXTRA_HINT)

STEPS = 12  # episode length of the test (Meta-World's is 500)
LABELS = ("prompt_dt", "prompt_diffuser[projection]")


@pytest.fixture
def short_episodes(monkeypatch):
  """Every ``envs.make("metaworld_reach")`` gives STEPS-step episodes."""
  make = envs.make

  def short(name, *, backend=None):
    family = make(name, backend=backend)
    if family.name == "metaworld_reach":
      family = dataclasses.replace(family, episode_length=STEPS)
    return family

  monkeypatch.setattr(envs, "make", short)


def test_tiny_run_on_reach(short_episodes, tmp_path):
  # Reach episodes repeat for a given task, so the default runs one.
  assert run_configs.get_config("metaworld_reach").eval_episodes == 1
  config = run_configs.get_config("metaworld_reach,tiny")
  assert not config.pretrained  # the tiny preset pre-trains its own PLM
  config.methods = ("prompt_dt", "prompt_diffuser")
  config.tuning.prompt_diffuser.modes = ("projection",)
  config.pretrain.num_steps = 4
  # 15 training tasks: a global batch of 120 splits over the 8 test devices.
  config.pretrain.batch_per_task = 8
  config.pretrain.ckpt_every = 4
  config.eval_episodes = 1
  workdir = str(tmp_path)
  results = pipeline.run(config, workdir)

  family = envs.make("metaworld_reach")
  assert family.episode_length == STEPS
  with open(os.path.join(workdir, "results", "results.json")) as f:
    saved = json.load(f)
  assert saved["family"] == "metaworld_reach"
  assert saved["test_tasks"] == list(family.test_tasks) == [5, 8, 14, 15, 19]
  assert tuple(results["methods"]) == LABELS
  for label in LABELS:
    row = saved["methods"][label]
    per_task = np.asarray(row["per_task"])
    # Meta-World's reward lies in [0, 10] per step.
    assert per_task.shape == (5,)
    assert np.all((per_task >= 0) & (per_task <= 10 * STEPS)), per_task
    rates = np.asarray(row["success_rate"]["per_task"])
    assert rates.shape == (5,) and np.all((rates >= 0) & (rates <= 1))
  # The data came from Meta-World's scripted expert, cut to STEPS steps.
  data = np.load(os.path.join(workdir, "datasets", "metaworld_reach",
                              "expert", "task_05.npz"))
  assert data["rewards"].shape[1] == STEPS
  md = open(os.path.join(workdir, "results", "results.md")).read()
  assert "success rate (%)" in md
  for label in LABELS:
    assert f"| {label} | " in md
