"""pdiff.models: the pre-trained policy, the prompt denoiser, shared layers."""

from pdiff.models.denoiser import PromptDenoiser, sinusoidal_embedding
from pdiff.models.policy import (
    PretrainedPolicy,
    TunedPolicy,
    masked_action_mse,
    stack_tuned,
)
from pdiff.models.prompt_cache import PromptCache
from pdiff.models.prompt_dt import PromptDT, make_prompt_dt

__all__ = [
    "PretrainedPolicy",
    "PromptCache",
    "PromptDT",
    "PromptDenoiser",
    "TunedPolicy",
    "make_prompt_dt",
    "masked_action_mse",
    "sinusoidal_embedding",
    "stack_tuned",
]
