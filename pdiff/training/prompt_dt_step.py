"""Optimizer, loss and jitted train step of Prompt-DT pre-training.

The train step can split its batch into microbatches whose gradients it sums
(gradient accumulation in a `lax.scan`): the same update as the whole batch
at once, dropout masks included, computed on a working set that fits the
caches. On a CPU that is much faster, so the launchers split by default
there (`default_microbatches`); on accelerators they do not.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax

from pdiff.models.policy import masked_action_mse, masked_squared_error
from pdiff.models.prompt_dt import TOKENS_PER_STEP
from pdiff.training.train_state import TrainState
from pdiff.types import Segments

Batch = tuple[Segments, Segments]  # (segments [B, K], prompts [B or 1, Kp])

# Tokens (prompt and segment, per device) in a microbatch of the default
# split on a CPU: the train step at Prompt-DT's shape (H = 128, MLP 512) is
# fastest at about this size, where a block's activations stay in the caches.
CPU_MICROBATCH_TOKENS = 1536


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


def tokens_per_row(batch: Batch) -> int:
  """Transformer tokens of one row of `batch`: prompt and segment steps,
  `TOKENS_PER_STEP` tokens each."""
  segments, prompts = batch
  steps = segments.mask.shape[1] + (0 if prompts is None
                                    else prompts.mask.shape[1])
  return TOKENS_PER_STEP * steps


def default_microbatches(batch_size: int, row_tokens: int, *,
                         devices: int = 1, backend: str | None = None) -> int:
  """Microbatches per train step that the launchers use.

  On a CPU, the fewest that divide each device's rows into microbatches of
  at most `CPU_MICROBATCH_TOKENS` tokens (one row each if a row is larger);
  elsewhere, and when `devices` does not divide the batch, 1.

  Args:
    batch_size: rows of the global batch.
    row_tokens: tokens per row (`tokens_per_row`).
    devices: data-parallel devices the batch is sharded over.
    backend: JAX backend; `jax.default_backend()` when None.

  Returns:
    A divisor of `batch_size // devices`.
  """
  backend = backend or jax.default_backend()
  if backend != "cpu" or devices < 1 or batch_size % devices:
    return 1
  local = batch_size // devices
  for count in range(1, local + 1):
    if local % count == 0 and (local // count) * row_tokens <= (
        CPU_MICROBATCH_TOKENS):
      return count
  return local


def _split_rows(x: jax.Array, count: int) -> jax.Array:
  """[B, ...] -> [count, B / count, ...], microbatch j = rows j::count."""
  x = x.reshape((x.shape[0] // count, count) + x.shape[1:])
  return jnp.swapaxes(x, 0, 1)


def _accumulated_loss_and_grads(params, apply_fn, segments, prompts, key,
                                count):
  """Loss and gradients of `action_loss` (dropout on) summed over `count`
  microbatches; microbatch j is rows j::count with those rows' dropout
  masks, so the sums equal the whole batch's loss and gradients."""
  # The loss's denominator is the whole batch's number of real values.
  denominator = jnp.maximum(
      jnp.sum(segments.mask) * segments.actions.shape[-1], 1.0)

  def microbatch_loss(params, segs, prompts, index):
    predicted = apply_fn({"params": params}, segs, prompts,
                         deterministic=False, rngs={"dropout": key},
                         dropout_rows=(index, count))  # [b, K, da]
    return (masked_squared_error(predicted, segs.actions, segs.mask)
            / denominator)

  # A batch-1 prompt is shared by all rows: every microbatch gets it whole.
  split_prompts = prompts is not None and prompts.mask.shape[0] > 1
  xs = (jnp.arange(count),
        jax.tree.map(lambda x: _split_rows(x, count), segments),
        jax.tree.map(lambda x: _split_rows(x, count), prompts)
        if split_prompts else None)

  def body(carry, x):
    index, segs, prompt_rows = x
    loss, grads = jax.value_and_grad(microbatch_loss)(
        params, segs, prompts if prompt_rows is None else prompt_rows, index)
    return jax.tree.map(jnp.add, carry, (loss, grads)), None

  zeros = (jnp.zeros((), jnp.float32), jax.tree.map(jnp.zeros_like, params))
  # Two microbatches per loop iteration: their computations are independent,
  # and XLA's CPU runtime runs independent operations concurrently.
  (loss, grads), _ = jax.lax.scan(body, zeros, xs, unroll=min(2, count))
  return loss, grads


@functools.partial(jax.jit, static_argnames="microbatches")
def train_step(
    state: TrainState, batch: Batch, key: jax.Array,
    microbatches: int | None = None,
) -> tuple[TrainState, dict[str, jax.Array]]:
  """One gradient update on a batch (dropout on).

  Pure: the result depends only on the arguments. Under a mesh, inputs
  sharded on the batch axis make it data-parallel (gradients are averaged
  over the whole global batch).

  Args:
    state: current train state.
    batch: `(segments, prompts)`.
    key: dropout key of this step.
    microbatches: split the batch into this many microbatches (rows
      `j, j + c, ...` form microbatch j) and sum their gradients: the same
      update as the whole batch at once, with the same dropout masks (only
      the order of the sums differs), on a smaller working set. Must divide
      the batch (and, under a mesh, each device's rows). None:
      `default_microbatches` for one device.

  Returns:
    The new state, and metrics `loss` (before the update) and `grad_norm`
    (before clipping).

  Raises:
    ValueError: if `microbatches` does not divide the batch.
  """
  segments, prompts = batch
  rows = segments.mask.shape[0]
  if microbatches is None:
    microbatches = default_microbatches(rows, tokens_per_row(batch))
  if microbatches < 1 or rows % microbatches:
    raise ValueError(f"microbatches={microbatches} must be a positive "
                     f"divisor of the batch size {rows}")
  if microbatches == 1:
    loss, grads = jax.value_and_grad(action_loss)(
        state.params, state.apply_fn, segments, prompts, key, False)
  else:
    loss, grads = _accumulated_loss_and_grads(
        state.params, state.apply_fn, segments, prompts, key, microbatches)
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
