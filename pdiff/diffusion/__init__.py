"""pdiff.diffusion: DDPM schedules, loss and reverse chains (DDPM, DDIM)."""

from pdiff.diffusion.ddim import ddim_sample, ddim_step, ddim_timesteps
from pdiff.diffusion.ddpm import (
    DenoiseFn,
    ddpm_loss,
    ddpm_sample,
    one_step_x0,
    p_mean_variance,
    predict_x0_from_noise,
    q_posterior,
    q_sample,
)
from pdiff.diffusion.schedules import (
    DiffusionSchedule,
    cosine_schedule,
    linear_schedule,
    make_schedule,
    schedule_from_betas,
)

__all__ = [
    "DenoiseFn",
    "DiffusionSchedule",
    "cosine_schedule",
    "ddim_sample",
    "ddim_step",
    "ddim_timesteps",
    "ddpm_loss",
    "ddpm_sample",
    "linear_schedule",
    "make_schedule",
    "one_step_x0",
    "p_mean_variance",
    "predict_x0_from_noise",
    "q_posterior",
    "q_sample",
    "schedule_from_betas",
]
