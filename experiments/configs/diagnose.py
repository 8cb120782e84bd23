"""Config of ``experiments/diagnose.py``: why guidance does not beat the
few-shot prompt (``pdiff.pipeline.diagnose``).

Usage: ``--config=experiments/configs/diagnose.py:FAMILY[,PRESET]``
(cheetah_vel on its shipped PLM by default; ``tiny`` is a smoke run). The
run config (family, PLM, data, seeds, Prompt Diffuser) is ``run``; the
diagnosis's own fields are ``diagnose``.
"""

import ml_collections

from experiments.configs import run as run_configs


def get_config(arg: str = "cheetah_vel,cpu") -> ml_collections.ConfigDict:
  family, _, preset = arg.partition(",")
  preset = preset or "cpu"
  c = ml_collections.ConfigDict()
  # The pipeline config whose data, PLM, seeds and Prompt Diffuser are
  # diagnosed (experiments/configs/run.py:FAMILY,PRESET).
  c.run = run_configs.get_config(f"{family},{preset}")
  c.run.seeds = (0, 1, 2)
  d = ml_collections.ConfigDict()
  # Real windows per test task (last-K* windows of distinct trajectories of
  # its full dataset).
  d.real_windows = 20
  # Candidates generated per test task and mode.
  d.candidates = 16
  # Rollout episodes per prompt (one shared key: common random numbers).
  d.episodes = 10
  # Few-shot segments scoring L_DT (shared by every prompt of a task).
  d.segments = 256
  # Prompt Diffuser modes whose candidates and gradients are measured.
  d.modes = ("dm_only", "projection")
  # Worst features listed per task and mode (generated vs real windows).
  d.top_features = 5
  # Variants of Prompt Diffuser compared as pipeline runs (name -> fields of
  # the prompt_diffuser config). Empty: none.
  d.variants = ml_collections.ConfigDict({
      "projection": dict(mode="projection"),
      "dm_only": dict(mode="dm_only"),
      "projection_scale_0p1": dict(mode="projection", guidance_scale=0.1),
      "projection_scale_10": dict(mode="projection", guidance_scale=10.0),
      "projection_one_step": dict(mode="projection",
                                  guidance_path="one_step"),
      "projection_ddim": dict(mode="projection", sampler="ddim"),
      "projection_600_steps": dict(mode="projection", finetune_steps=600),
      "projection_guidance_batch_64": dict(mode="projection",
                                           guidance_batch=64),
  })
  # The variant every other is compared with (paired by seed), as is the
  # plain few-shot prompt.
  d.reference_variant = "projection"
  if preset == "tiny":
    c.run.seeds = (0,)
    d.real_windows = 3
    d.candidates = 3
    d.episodes = 1
    d.segments = 8
    d.variants = ml_collections.ConfigDict({
        "projection": dict(mode="projection"),
        "one_step": dict(mode="projection", guidance_path="one_step")})
  c.diagnose = d
  return c
