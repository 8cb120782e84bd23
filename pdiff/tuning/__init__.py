"""Prompt-tuning methods behind one interface (see ``pdiff.tuning.base``)."""

from pdiff.tuning.base import (
    PretrainedPolicy,
    TunedPolicy,
    TuningMethod,
    few_shot_prompt,
    masked_action_mse,
    stack_tuned,
)

__all__ = [
    "PretrainedPolicy",
    "TunedPolicy",
    "TuningMethod",
    "few_shot_prompt",
    "masked_action_mse",
    "stack_tuned",
]
