"""pdiff.training: Prompt-DT pre-training (state, step, loop, checkpoints)."""

from pdiff.training.checkpointing import load_pretrained
from pdiff.training.loop import train
from pdiff.training.prompt_dt_step import (
    action_loss,
    eval_step,
    make_learning_rate_schedule,
    make_optimizer,
    train_step,
)
from pdiff.training.train_state import TrainState, create_train_state

__all__ = [
    "TrainState",
    "action_loss",
    "create_train_state",
    "eval_step",
    "load_pretrained",
    "make_learning_rate_schedule",
    "make_optimizer",
    "train",
    "train_step",
]
