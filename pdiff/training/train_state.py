"""Train state of the pre-trained policy, and its creation."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax.training import train_state

from pdiff.types import Segments

# `step`, `params`, `opt_state` (pytree fields) and `apply_fn`, `tx` (static).
# Random keys are not stored: every step's key is derived from (seed, step).
TrainState = train_state.TrainState


@dataclasses.dataclass(frozen=True)
class ModuleApply:
  """`module.apply`, equal (and hashing equal) for equal modules.

  A bound `module.apply` compares by object identity, so a jitted step traced
  with one instance is retraced for an equal, newly built one. This wrapper
  compares by the module's fields, which keeps the compilation cache warm
  across runs in one process.
  """

  module: nn.Module

  def __call__(self, *args, **kwargs) -> Any:
    return self.module.apply(*args, **kwargs)


@functools.partial(jax.jit, static_argnums=0)
def _init_params(module: nn.Module, key: jax.Array, segments: Segments,
                 prompts: Segments):
  return module.init(key, segments, prompts)["params"]


def create_train_state(
    model: nn.Module,
    tx: optax.GradientTransformation,
    key: jax.Array,
    init_batch: tuple[Segments, Segments],
) -> TrainState:
  """Initialises parameters and optimizer state.

  Args:
    model: the policy (a `PromptDT`).
    tx: the optimizer.
    key: initialisation key.
    init_batch: `(segments, prompts)` example; only shapes matter. The prompt
      must be given so that the prompt embedding layers are created.

  Returns:
    A `TrainState` at step 0.
  """
  segments, prompts = init_batch
  params = _init_params(model, key, segments, prompts)
  state = TrainState.create(apply_fn=ModuleApply(model), params=params, tx=tx)
  # A strongly typed step, as restored from a checkpoint (same jit signature).
  return state.replace(step=jnp.zeros((), jnp.int32))


def count_params(params) -> int:
  """Total number of scalars in a parameter pytree."""
  return sum(x.size for x in jax.tree.leaves(params))
