"""Whole-pipeline config (``experiments/run.py``), the README's main job.

Usage: ``--config=experiments/configs/run.py`` (cheetah-vel from the shipped
pre-trained PLM; its measured wall time is in README.md, under the results
of the default run) or ``--config=experiments/configs/run.py:FAMILY,PRESET``
with a pre-training preset of ``experiments/configs/pretrain.py`` (``tiny``
is a smoke run).
"""

import os

import ml_collections

from experiments.configs import collect as collect_configs
from experiments.configs import pretrain as pretrain_configs
from experiments.configs import tuning
from pdiff.pipeline.validate import PRETRAINED_ASSETS


def get_config(arg: str = "cheetah_vel,cpu") -> ml_collections.ConfigDict:
  family, _, preset = arg.partition(",")
  preset = preset or "cpu"
  c = ml_collections.ConfigDict()
  # Task family (pdiff.envs.make name).
  c.family = family
  # Brax backend; None = pdiff.envs.DEFAULT_BACKEND.
  c.backend = ml_collections.config_dict.placeholder(str)
  # Root seed of tuning and evaluation.
  c.seed = 0
  # Seeds: each draws its own few-shot data, stage-1 model, tuning and
  # evaluation keys; results are statistics over them (at least 5 to rank).
  c.seeds = (0, 1, 2, 3, 4)
  # Tuning methods (names in pdiff.tuning.registry), one or more rows of the
  # table each, in this order; "prompt_dt" (the plain few-shot prompt) is
  # the baseline of the paired differences. Diagnostics (oracle_prompt) are
  # registered but not listed by default.
  c.methods = tuning.DEFAULT_METHODS
  # Few-shot trajectories per test task and their quality.
  c.num_shots = 5
  c.few_shot_quality = "expert"
  # Where each test task's few-shot trajectories come from: "test_task" (its
  # own dataset) or "training_tasks" (the zero-shot setting: drawn from the
  # pooled training tasks' datasets of few_shot_quality; methods that read
  # a test task's full dataset or play online episodes are refused).
  c.few_shot_source = "test_task"
  # Evaluation episodes per test task and seed. metaworld_reach: 1, since
  # its reset puts the hand and the goal at the same places for a task
  # whatever the key, and the PLM acts deterministically, so further
  # episodes repeat the first.
  c.eval_episodes = 1 if family == "metaworld_reach" else 20
  # Shipped pre-trained PLM to start from (pdiff/assets/pretrained/NAME);
  # empty = pre-train with c.pretrain (resuming if stopped).
  shipped = f"{family}_{preset}"
  c.pretrained = shipped if os.path.isdir(
      os.path.join(PRETRAINED_ASSETS, shipped)) else ""
  # Dataset collection (experiments/configs/collect.py).
  c.collect = collect_configs.get_config(family)
  # PLM pre-training (experiments/configs/pretrain.py).
  c.pretrain = pretrain_configs.get_config(f"{family},{preset}")
  # Every registered method's config, by name (experiments/configs/tuning.py).
  c.tuning = tuning.all_configs()
  if preset == "tiny":
    c.seeds = (0,)
    c.num_shots = 2
    c.eval_episodes = 2
    c.collect.num_trajectories = 3
    c.tuning = tuning.all_configs(preset="tiny")
  return c
