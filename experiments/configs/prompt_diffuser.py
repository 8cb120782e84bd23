"""Prompt Diffuser config (``pdiff.tuning.prompt_diffuser``).

``experiments/configs/run.py`` holds one under ``prompt_diffuser``;
``pdiff.tuning.prompt_diffuser.check_config`` validates it, and
``check_positions`` / ``check_num_shots`` check it against the PLM and the
number of few-shot trajectories.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  """Prompt Diffuser's defaults (docs/tuning.md, "Prompt Diffuser")."""
  c = ml_collections.ConfigDict()
  c.mode = "projection"  # gradient combination: dm_only | sum | projection
  c.guidance_scale = 1.0  # lambda, weight of the guidance gradient g_DT
  c.num_bases = 4  # M, past g_DM spanning the projected-out subspace
  c.per_leaf = False  # conflict test and projection per leaf, not global
  c.schedule = "cosine"  # noise schedule: cosine | linear
  c.num_diffusion_steps = 20  # N, DDPM steps
  c.sampler = "ddpm"  # prompt sampler at generation: ddpm | ddim
  c.ddim_steps = 5  # denoiser calls of the DDIM sampler
  # G, prompts sampled at generation. 1 (the paper): the one generated prompt
  # is kept. G > 1: the one with the lowest L_DT on segments of held-out
  # few-shot trajectories is kept.
  c.num_candidates = 1
  # h, few-shot trajectories held out of fine-tuning (L_DM and L_DT) to score
  # the candidates, the last h of the N; 1 <= h < N. Read only when
  # num_candidates > 1.
  c.selection_holdout = 1
  c.selection_batch = 256  # held-out segments scoring each candidate
  c.guidance_path = "chain"  # x0 for L_DT: full reverse chain | one_step
  # Returns-to-go of the segments L_DT scores (guidance and selection):
  # "data", sum(r[t:]) as stored (the paper), or "evaluation" (pdiff's
  # variant): target - sum(r[:t]), as an evaluation rollout feeds them.
  c.guidance_returns = "data"
  c.clip_denoised = 5.0  # clip standardised x0 estimates to +-this (0 = off)
  c.hidden_sizes = (256, 256, 256)  # denoiser MLP widths
  c.time_embed_dim = 16  # sinusoidal step-embedding size
  c.cond_embed_dim = 32  # condition embedding size
  # Where prompt windows sit in their trajectories: last | random. Each must
  # be the PLM's prompt position (policy.json's prompt_position; "last", the
  # last K* steps, for Prompt-DT's pre-training): the PLM was not trained to
  # read prompts placed otherwise.
  c.train_position = "last"  # windows L_DM trains the denoiser on
  c.guidance_position = "last"  # windows whose y generates L_DT's prompts
  c.condition_position = "last"  # window whose y conditions the final prompt
  # True lets the three positions differ from the PLM's: for diagnostics
  # only (the PLM then reads prompts unlike those it was trained on).
  c.allow_unread_positions = False
  c.pretrain_steps = 5000  # stage 1 steps on the training tasks
  c.pretrain_batch = 256  # stage 1 windows per step
  c.pretrain_lr = 1e-3  # stage 1 Adam learning rate
  c.finetune_steps = 300  # stage 2 steps per test task
  c.finetune_batch = 64  # stage 2 windows per step for L_DM
  c.guidance_batch = 16  # stage 2 generated prompts / PLM segments for L_DT
  c.finetune_lr = 3e-4  # stage 2 Adam learning rate
  return c
