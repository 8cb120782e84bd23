"""Optimizer, loss and jitted train step of Prompt-DT pre-training."""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax

from pdiff.models.policy import masked_action_mse
from pdiff.training.train_state import TrainState
from pdiff.types import Segments

Batch = tuple[Segments, Segments]  # (segments [B, K], prompts [B or 1, Kp])


def _check_hyperparameters(config: ml_collections.ConfigDict):
  if config.learning_rate <= 0:
    raise ValueError(
        f"learning_rate must be positive, got {config.learning_rate}")
  if config.warmup_steps < 0:
    raise ValueError(f"warmup_steps must be >= 0, got {config.warmup_steps}")
  if config.grad_clip_norm <= 0:
    raise ValueError(
        f"grad_clip_norm must be positive, got {config.grad_clip_norm}")
  if config.weight_decay < 0:
    raise ValueError(f"weight_decay must be >= 0, got {config.weight_decay}")


# Cached on the hyperparameters: equal configs give the same (identical)
# schedule and optimizer, so a train state built twice in one process has the
# same static fields and a jitted step does not recompile.
@functools.cache
def _schedule(peak: float, warmup: int) -> optax.Schedule:
  def schedule(count):
    if warmup == 0:
      return jnp.full_like(count, peak, dtype=jnp.float32)
    return peak * jnp.minimum((count + 1) / warmup, 1.0)

  return schedule


@functools.cache
def _optimizer(peak: float, warmup: int, weight_decay: float,
               grad_clip_norm: float) -> optax.GradientTransformation:
  return optax.chain(
      optax.clip_by_global_norm(grad_clip_norm),
      optax.adamw(_schedule(peak, warmup), weight_decay=weight_decay),
  )


def make_learning_rate_schedule(
    config: ml_collections.ConfigDict) -> optax.Schedule:
  """Linear warm-up to `learning_rate`, then constant.

  As in Prompt-DT, update `t` (from 0) uses
  `learning_rate * min((t + 1) / warmup_steps, 1)`.

  Args:
    config: training config with `learning_rate` and `warmup_steps`.

  Returns:
    A schedule mapping the update count to a learning rate.

  Raises:
    ValueError: naming the field, on a bad hyperparameter.
  """
  _check_hyperparameters(config)
  return _schedule(float(config.learning_rate), int(config.warmup_steps))


def make_optimizer(
    config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """Global-norm clipping, then AdamW with the warm-up schedule.

  Args:
    config: training config with `learning_rate`, `warmup_steps`,
      `weight_decay` and `grad_clip_norm`.

  Returns:
    `optax.chain(clip_by_global_norm, adamw)`.

  Raises:
    ValueError: naming the field, on a bad hyperparameter.
  """
  _check_hyperparameters(config)
  return _optimizer(float(config.learning_rate), int(config.warmup_steps),
                    float(config.weight_decay), float(config.grad_clip_norm))


def action_loss(
    params,
    apply_fn: Callable[..., jax.Array],
    segments: Segments,
    prompts: Segments | None,
    key: jax.Array | None,
    deterministic: bool = False,
) -> jax.Array:
  """Prompt-DT's behaviour-cloning loss: masked action MSE.

  Args:
    params: model parameters.
    apply_fn: the model's `apply`.
    segments: [B, K] input windows; their `actions` are the targets.
    prompts: [B or 1, Kp] trajectory prompts, or None.
    key: dropout key (unused when `deterministic`).
    deterministic: disables dropout.

  Returns:
    Scalar loss.
  """
  rngs = None if deterministic else {"dropout": key}
  predicted = apply_fn({"params": params}, segments, prompts,
                       deterministic=deterministic, rngs=rngs)  # [B, K, da]
  return masked_action_mse(predicted, segments.actions, segments.mask)


@jax.jit
def train_step(
    state: TrainState, batch: Batch, key: jax.Array
) -> tuple[TrainState, dict[str, jax.Array]]:
  """One gradient update on a batch (dropout on).

  Pure: the result depends only on the arguments. Under a mesh, inputs
  sharded on the batch axis make it data-parallel (gradients are averaged
  over the whole global batch).

  Args:
    state: current train state.
    batch: `(segments, prompts)`.
    key: dropout key of this step.

  Returns:
    The new state, and metrics `loss` (before the update) and `grad_norm`
    (before clipping).
  """
  segments, prompts = batch
  loss, grads = jax.value_and_grad(action_loss)(
      state.params, state.apply_fn, segments, prompts, key, False)
  state = state.apply_gradients(grads=grads)
  return state, {"loss": loss, "grad_norm": optax.tree.norm(grads)}


@jax.jit
def eval_step(state: TrainState, batch: Batch) -> jax.Array:
  """Deterministic action loss of `state.params` on a batch (no dropout).

  Args:
    state: train state.
    batch: `(segments, prompts)`.

  Returns:
    Scalar loss.
  """
  segments, prompts = batch
  return action_loss(state.params, state.apply_fn, segments, prompts, None,
                     deterministic=True)
