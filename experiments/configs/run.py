"""Whole-pipeline config (``experiments/run.py``), the README's main job.

Usage: ``--config=experiments/configs/run.py`` (cheetah-vel, finishes in about
15 minutes on 2 CPU cores from the shipped pre-trained PLM) or
``--config=experiments/configs/run.py:FAMILY,PRESET`` with a pre-training
preset of ``experiments/configs/pretrain.py`` (``tiny`` is a smoke run).
"""

import ml_collections

from experiments.configs import collect as collect_configs
from experiments.configs import pretrain as pretrain_configs
from pdiff.tuning import prompt_diffuser


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
  # Seeds of tuning + evaluation; results are mean +- std over them.
  c.seeds = (0, 1, 2)
  # Methods: "prompt_dt" (the plain few-shot prompt), "prompt_diffuser".
  c.methods = ("prompt_dt", "prompt_diffuser")
  # Prompt Diffuser's gradient combinations, one row each (the ablation).
  c.prompt_diffuser_modes = ("dm_only", "sum", "projection")
  # Few-shot trajectories per test task and their quality.
  c.num_shots = 5
  c.few_shot_quality = "expert"
  # Evaluation episodes per test task and seed.
  c.eval_episodes = 20
  # Shipped pre-trained PLM to start from (pdiff/assets/pretrained/NAME);
  # empty = pre-train with c.pretrain (resuming if stopped).
  c.pretrained = f"{family}_{preset}" if preset == "cpu" else ""
  # Dataset collection (experiments/configs/collect.py).
  c.collect = collect_configs.get_config(family)
  # PLM pre-training (experiments/configs/pretrain.py).
  c.pretrain = pretrain_configs.get_config(f"{family},{preset}")
  # Prompt Diffuser (pdiff.tuning.prompt_diffuser.get_config).
  c.prompt_diffuser = prompt_diffuser.get_config()
  if preset == "tiny":
    c.seeds = (0,)
    c.num_shots = 2
    c.eval_episodes = 2
    c.collect.num_trajectories = 3
    c.prompt_diffuser.pretrain_steps = 4
    c.prompt_diffuser.finetune_steps = 2
    c.prompt_diffuser.pretrain_batch = 8
    c.prompt_diffuser.finetune_batch = 4
    c.prompt_diffuser.guidance_batch = 2
    c.prompt_diffuser.hidden_sizes = (16, 16)
    c.prompt_diffuser.num_diffusion_steps = 4
    c.prompt_diffuser.ddim_steps = 2
    c.prompt_diffuser.num_candidates = 2
    c.prompt_diffuser.selection_batch = 4
  return c
