"""Cached keys and values of a Prompt-DT's prompt tokens.

Prompt-DT's prompt tokens come first in its sequence and, under the causal
mask, attend only to one another: in every block their keys and values do
not depend on the window that follows them. `PromptDT.prompt_cache` computes
them once per prompt (a `PromptCache`); `PromptDT.predict_with_cache` then
runs the blocks over the window's tokens alone, every window token attending
to `[cached prompt keys and values ; window keys and values]` with the masks
of the full forward pass, so that it predicts the same actions up to float
rounding for a fraction of the work. One cache (batch 1) may serve a whole
batch of windows, e.g. a task's episodes.

This path is deterministic (no dropout): it serves evaluation, while training
runs the whole sequence through `PromptDT.__call__`.

Shapes use: B batch, Bp prompt batch (B or 1), P prompt tokens, Lq query
tokens, L window tokens, h heads, d head size.
"""

from __future__ import annotations

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp

# Keys, values and mask of the tokens before a block's own: `([Bp, P, h, d],
# [Bp, P, h, d], [Bp, P])`, the mask nonzero on real tokens.
KeyValuePrefix = tuple[jax.Array, jax.Array, jax.Array]


@flax.struct.dataclass
class PromptCache:
  """Per-block keys and values of a prompt's tokens.

  Attributes:
    keys: one `[Bp, P, h, d]` array per block, the attention keys of the
      prompt tokens (the block's input, layer-normalised and projected).
    values: one `[Bp, P, h, d]` array per block, their attention values.
    mask: `[Bp, P]` float32, 1 on real prompt tokens.
  """

  keys: tuple[jax.Array, ...]
  values: tuple[jax.Array, ...]
  mask: jax.Array

  @property
  def num_tokens(self) -> int:
    """P, the prompt's tokens."""
    return self.mask.shape[-1]

  def prefix(self, block: int) -> KeyValuePrefix:
    """What block `block` attends to before the window's tokens."""
    return self.keys[block], self.values[block], self.mask


def attention_with_prefix(
    query: jax.Array, key: jax.Array, value: jax.Array,
    mask: jax.Array | None = None, dtype=None, precision=None, *,
    prefix: KeyValuePrefix | None = None,
    record: list | None = None) -> jax.Array:
  """Deterministic dot-product attention over `[prefix ; own]` keys.

  The same operations as `pdiff.models.layers.dot_product_attention` without
  dropout, the keys and values of `prefix` (e.g. a `PromptCache`'s) placed
  before the block's own: every query may attend to the real prefix tokens.
  A prefix of batch 1 is broadcast to every row and concatenated with the
  own keys and values (on a CPU, a few per cent faster than scoring it
  apart). An `attention_fn` of `flax.linen.MultiHeadDotProductAttention`,
  bound with `functools.partial`.

  Args:
    query: [B, Lq, h, d].
    key: [B, L, h, d].
    value: [B, L, h, d].
    mask: [B, 1 or h, Lq, L] bool over the own keys, False where masked.
    dtype: computation dtype; the inputs' by default.
    precision: matmul precision.
    prefix: `(keys [Bp, P, h, d], values [Bp, P, h, d], mask [Bp, P])`;
      None: no prefix.
    record: if given, `(key, value)` is appended to it (how a block hands
      out its keys and values).

  Returns:
    [B, Lq, h, d].
  """
  if record is not None:
    record.append((key, value))
  if prefix is not None:
    prefix_key, prefix_value, prefix_mask = prefix
    batch, num_queries, length = query.shape[0], query.shape[1], key.shape[1]
    rows = lambda x: jnp.broadcast_to(x, (batch, *x.shape[1:]))
    key = jnp.concatenate([rows(prefix_key).astype(key.dtype), key], axis=1)
    value = jnp.concatenate([rows(prefix_value).astype(value.dtype), value],
                            axis=1)  # [B, P + L, h, d]
    if mask is None:
      mask = jnp.ones((batch, 1, num_queries, length), bool)
    mask = jnp.broadcast_to(mask, (batch, *mask.shape[1:]))
    prefix_mask = jnp.broadcast_to(
        (prefix_mask > 0)[:, None, None, :],
        (batch, *mask.shape[1:3], prefix_mask.shape[-1]))
    mask = jnp.concatenate([prefix_mask, mask], axis=-1)  # [B, ., Lq, P + L]
  query, key, value = nn.dtypes.promote_dtype(query, key, value, dtype=dtype)
  dtype = query.dtype
  query = query / jnp.sqrt(query.shape[-1]).astype(dtype)
  weights = jnp.einsum("...qhd,...khd->...hqk", query, key,
                       precision=precision)  # [B, h, Lq, P + L]
  if mask is not None:
    weights = jnp.where(mask, weights, jnp.finfo(dtype).min)
  weights = jax.nn.softmax(weights).astype(dtype)
  return jnp.einsum("...hqk,...khd->...qhd", weights, value,
                    precision=precision)
