"""Prompt-tuning methods behind one registry (``pdiff.tuning.registry``).

Importing this package imports every method module, which registers it:
``registry.registered()`` lists them in table order.
"""

from pdiff.tuning import few_shot, prompt_diffuser_method  # noqa: F401

# isort: split
from pdiff.tuning import finetune, soft_prompt, adaptor, upper_bound  # noqa: F401, I001

# isort: split
from pdiff.tuning import prompt_tuning_dt, prompt_bandit, oracle_prompt  # noqa: F401, I001
from pdiff.tuning.base import (
    PretrainedPolicy,
    TunedPolicy,
    TuningMethod,
    few_shot_prompt,
    masked_action_mse,
    stack_tuned,
)
from pdiff.tuning.registry import Method, TuningContext, get, registered

__all__ = [
    "Method",
    "PretrainedPolicy",
    "TunedPolicy",
    "TuningContext",
    "TuningMethod",
    "few_shot_prompt",
    "get",
    "masked_action_mse",
    "registered",
    "stack_tuned",
]
