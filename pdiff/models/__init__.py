"""pdiff.models: the pre-trained policy, the prompt denoiser, shared layers."""

from pdiff.models.denoiser import PromptDenoiser, sinusoidal_embedding
from pdiff.models.prompt_dt import PromptDT, make_prompt_dt
from pdiff.models.prompt_dt import get_config as get_prompt_dt_config

__all__ = ["PromptDT", "PromptDenoiser", "get_prompt_dt_config",
           "make_prompt_dt", "sinusoidal_embedding"]
