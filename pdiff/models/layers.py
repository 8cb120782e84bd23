"""Transformer building blocks shared by the models.

A GPT-2 style pre-LayerNorm block (causal self-attention and an MLP, each in a
residual branch), optional bottleneck adapters inside each branch (applied
whenever their parameters are present), the attention-mask helper that
combines causality with token padding, and dropout (a layer, and attention)
whose keep masks are those of `flax.linen`'s, drawn several times faster on a
CPU. The block can compute some tokens' outputs alone, and attend to cached
keys and values of tokens before its own (`pdiff.models.prompt_cache`); the
dropout masks can be drawn for a section of a larger array (a microbatch of
a batch, some tokens of a sequence) as that array would get them.

Shapes use: B batch, L tokens, H hidden size.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from pdiff.models.prompt_cache import KeyValuePrefix, attention_with_prefix

# GPT-2 initialises every transformer weight with N(0, 0.02) and scales the
# residual output projections by 1 / sqrt(2 * num_layers).
GPT2_INIT_STDDEV = 0.02
# GPT-2's LayerNorm epsilon (PyTorch's default), used by the public Prompt-DT;
# Flax's default is 1e-6.
LAYER_NORM_EPSILON = 1e-5

_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nn.relu,
    "gelu": nn.gelu,
}


def activation_by_name(name: str) -> Callable[[jax.Array], jax.Array]:
  """Returns the activation function called `name` ('relu' or 'gelu').

  Raises:
    ValueError: if `name` is not a known activation.
  """
  if name not in _ACTIVATIONS:
    raise ValueError(
        f"activation must be one of {sorted(_ACTIVATIONS)}, got {name!r}")
  return _ACTIVATIONS[name]


# Threefry-2x32 (Salmon et al., 2011) as JAX's default PRNG uses it: rotation
# constants of the even and odd groups of four rounds, and the key-schedule
# parity constant.
_THREEFRY_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_THREEFRY_PARITY = np.uint32(0x1BD11BDA)


def _rotate_left(x: jax.Array, bits: int) -> jax.Array:
  return (x << np.uint32(bits)) | (x >> np.uint32(32 - bits))


def threefry_2x32(key1, key2, x1, x2) -> tuple[jax.Array, jax.Array]:
  """The Threefry-2x32 block function, 20 rounds, written out unrolled.

  The same function as JAX's `threefry2x32` primitive, whose CPU lowering runs
  the rounds in a loop that writes every intermediate array to memory; written
  out, XLA fuses all rounds into one pass (about 4x faster on a CPU).

  Args:
    key1, key2: the two uint32 key words (scalars).
    x1, x2: uint32 counter words, of one shape.

  Returns:
    The two uint32 output words, of the counters' shape.
  """
  keys = (key1, key2, key1 ^ key2 ^ _THREEFRY_PARITY)
  x1 = x1 + keys[0]
  x2 = x2 + keys[1]
  for i in range(5):
    for rotation in _THREEFRY_ROTATIONS[i % 2]:
      x1 = x1 + x2
      x2 = _rotate_left(x2, rotation) ^ x1
    x1 = x1 + keys[(i + 1) % 3]
    x2 = x2 + keys[(i + 2) % 3] + np.uint32(i + 1)
  return x1, x2


def _is_threefry_key(key: jax.Array) -> bool:
  if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
    return (key.shape == ()
            and str(jax.random.key_impl(key)) == "threefry2x32")
  return (key.shape == (2,) and key.dtype == jnp.uint32
          and jax.config.jax_default_prng_impl == "threefry2x32")


# Where an array lies in a larger one, per axis: `(offset, stride, size)`
# says that index i of the axis is index `offset + stride * i` of an axis of
# `size` (the offset may be traced).
AxisSection = tuple[jax.Array | int, int, int]


def whole_axis(size: int) -> AxisSection:
  """The section of an axis that is all of an axis of `size`."""
  return (0, 1, size)


def bernoulli(key: jax.Array, p: float, shape: Sequence[int],
              section: Sequence[AxisSection] | None = None) -> jax.Array:
  """`jax.random.bernoulli(key, p, shape)`, bit for bit, faster on a CPU.

  For a threefry key (JAX's default) under JAX's default partitionable
  threefry, this draws the same bits as `jax.random.bits(key, shape)` (one
  Threefry-2x32 block per element, counter = the element's row-major index,
  the two output words xor-ed), turns them into the same float32 uniforms in
  [0, 1) and compares them with `p`, so the result equals
  `jax.random.bernoulli`'s; only the rounds are fused (`threefry_2x32`).
  Other keys and settings go to `jax.random.bernoulli` itself.

  Args:
    key: a PRNG key (typed, or a raw uint32[2] key of the default impl).
    p: probability of True, a Python float.
    shape: result shape.
    section: one `AxisSection` per axis: the result is then that section of
      `jax.random.bernoulli(key, p, sizes)` (e.g. rows `j, j + c, ...` of a
      `c` times taller draw), computed without drawing the rest. None: the
      whole draw.

  Returns:
    bool array of `shape`.
  """
  shape = tuple(int(d) for d in shape)
  if section is None:
    section = [whole_axis(d) for d in shape]
  section = [(offset, int(stride), int(size))
             for offset, stride, size in section]
  if len(section) != len(shape) or any(
      stride < 1 or (offset if isinstance(offset, int) else 0)
      + stride * (n - 1) >= size
      for n, (offset, stride, size) in zip(shape, section, strict=True)):
    raise ValueError(f"section {section} does not fit shape {shape}: one "
                     "(offset, stride, size) per axis, stride >= 1")
  full = tuple(size for _, _, size in section)
  if (not _is_threefry_key(key) or not jax.config.jax_threefry_partitionable
      or math.prod(full) >= 2**32 or not shape):
    mask = jax.random.bernoulli(key, p, full)
    for axis, (n, (offset, stride, size)) in enumerate(
        zip(shape, section, strict=True)):
      if not (isinstance(offset, int) and offset == 0 and stride == 1
              and n == size):
        mask = lax.dynamic_slice_in_dim(mask, offset, stride * (n - 1) + 1,
                                        axis)
        mask = lax.slice_in_dim(mask, 0, None, stride, axis)
    return mask
  if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
    key = jax.random.key_data(key)
  # Row-major index in `full` of every element (below 2**32, so the high
  # word is 0), built from per-axis iotas as JAX builds it, which keeps it
  # partitionable.
  strides = np.cumprod((1,) + full[:0:-1])[::-1]
  counts = sum(lax.broadcasted_iota(jnp.uint32, shape, axis)
               * np.uint32(stride * s)
               for axis, ((_, stride, _), s) in enumerate(
                   zip(section, strides, strict=True)))
  offset = sum(jnp.asarray(o, jnp.uint32) * np.uint32(s)
               for (o, _, _), s in zip(section, strides, strict=True)
               if not (isinstance(o, int) and o == 0))
  counts = counts + offset
  bits1, bits2 = threefry_2x32(key[0], key[1], jnp.zeros_like(counts), counts)
  bits = bits1 ^ bits2
  # jax.random.uniform: 23 random mantissa bits under the exponent of 1.0.
  mantissa = (bits >> np.uint32(9)) | np.uint32(0x3F800000)
  uniform = lax.bitcast_convert_type(mantissa, jnp.float32) - np.float32(1.0)
  return uniform < np.float32(p)


class Dropout(nn.Dropout):
  """`flax.linen.Dropout` with the keep mask drawn by `bernoulli`.

  Same keys, masks and outputs as `flax.linen.Dropout` (give it the name
  flax would give, e.g. `Dropout_0`, so that `make_rng` derives the same key
  from the module path); the mask is drawn several times faster on a CPU,
  where drawing dropout masks is a large share of a training step.
  """

  @nn.compact
  def __call__(self, inputs, deterministic: bool | None = None,
               rng: jax.Array | None = None,
               section: Sequence[AxisSection] | None = None):
    """Zeroes each element of `inputs` with probability `rate` and scales
    the rest by `1 / (1 - rate)`; the identity when deterministic.

    `section` (one `AxisSection` per axis of `inputs`) says where `inputs`
    lie in a larger array: the mask is then that section of the mask the
    larger array would get, so that e.g. a batch split into microbatches is
    masked exactly as the whole batch.
    """
    deterministic = nn.merge_param(
        "deterministic", self.deterministic, deterministic)
    if self.rate == 0.0 or deterministic:
      return inputs
    if self.rate == 1.0:
      return jnp.zeros_like(inputs)
    keep_prob = 1.0 - self.rate
    if rng is None:
      rng = self.make_rng(self.rng_collection)
    shape = list(inputs.shape)
    broadcast = [d % inputs.ndim for d in self.broadcast_dims]
    for dim in broadcast:
      shape[dim] = 1
    if section is not None:  # a mask shared along an axis is whole there
      section = [whole_axis(1) if axis in broadcast else s
                 for axis, s in enumerate(section)]
    mask = bernoulli(rng, keep_prob, shape, section)
    mask = jnp.broadcast_to(mask, inputs.shape)
    return lax.select(mask, inputs / keep_prob, jnp.zeros_like(inputs))


def dot_product_attention(
    query: jax.Array, key: jax.Array, value: jax.Array,
    mask: jax.Array | None = None, dropout_rng: jax.Array | None = None,
    dropout_rate: float = 0.0, broadcast_dropout: bool = True,
    deterministic: bool = False, dtype=None, precision=None,
    query_section: AxisSection | None = None) -> jax.Array:
  """`flax.linen.dot_product_attention`, the same operations, with the
  attention dropout mask drawn by `bernoulli`.

  `query_section` says where the queries lie among a longer sequence's
  (e.g. every third token): the attention dropout mask (one `[Lq, Lk]`
  mask shared over batch and heads) is then those rows of the mask that
  sequence's attention would get.

  Args:
    query: [B, Lq, heads, d].
    key: [B, Lk, heads, d].
    value: [B, Lk, heads, dv].
    mask: [B, heads or 1, Lq, Lk] bool, False where attention is masked.
    dropout_rng: key of the attention dropout.
    dropout_rate: attention dropout rate.
    broadcast_dropout: must be True (one mask for all rows and heads).
    deterministic: disables the attention dropout.
    dtype: computation dtype; the inputs' by default.
    precision: matmul precision.
    query_section: see above; None: the queries are the whole sequence.

  Returns:
    [B, Lq, heads, dv].
  """
  if not broadcast_dropout:
    raise ValueError("dot_product_attention draws one dropout mask for all "
                     "rows and heads (broadcast_dropout=True)")
  query, key, value = nn.dtypes.promote_dtype(query, key, value, dtype=dtype)
  dtype = query.dtype
  query = query / jnp.sqrt(query.shape[-1]).astype(dtype)
  weights = jnp.einsum("...qhd,...khd->...hqk", query, key,
                       precision=precision)  # [B, heads, Lq, Lk]
  if mask is not None:
    weights = jnp.where(mask, weights, jnp.finfo(dtype).min)
  weights = jax.nn.softmax(weights).astype(dtype)
  if not deterministic and dropout_rate > 0.0:
    keep_prob = 1.0 - dropout_rate
    lq, lk = weights.shape[-2:]
    section = None
    if query_section is not None:
      section = [whole_axis(1)] * (weights.ndim - 2) + [
          query_section, whole_axis(lk)]
    keep = bernoulli(dropout_rng, keep_prob,
                     (1,) * (weights.ndim - 2) + (lq, lk), section)
    weights = weights * (keep.astype(dtype) / jnp.asarray(keep_prob, dtype))
  return jnp.einsum("...hqk,...khd->...qhd", weights, value,
                    precision=precision)


def causal_padding_mask(token_mask: jax.Array) -> jax.Array:
  """Attention mask for causal self-attention over padded token sequences.

  Token `i` may attend to token `j` when `j <= i` and `j` is a real token.
  Every token may also attend to itself, so that rows of padded tokens are
  never empty; real tokens never attend to padded ones, so their outputs do not
  depend on what the padded tokens hold.

  Args:
    token_mask: [B, L] array, nonzero on real tokens.

  Returns:
    [B, 1, L, L] bool mask (queries on axis 2, keys on axis 3), broadcast over
    heads.
  """
  length = token_mask.shape[-1]
  causal = jnp.tril(jnp.ones((length, length), dtype=bool))  # [L, L]
  keys_real = (token_mask > 0)[:, None, None, :]  # [B, 1, 1, L]
  itself = jnp.eye(length, dtype=bool)  # [L, L]
  return (causal & keys_real) | itself  # [B, 1, L, L]


class BottleneckAdapter(nn.Module):
  """Houlsby-style adapter: `x + up(relu(down(x)))`.

  The up-projection is zero-initialised, so a freshly initialised adapter is
  the identity and leaves a pre-trained network's outputs unchanged.

  Attributes:
    bottleneck_dim: width of the bottleneck.
  """

  bottleneck_dim: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Applies the adapter to `x` [..., H]; returns [..., H]."""
    hidden = x.shape[-1]
    h = nn.Dense(
        self.bottleneck_dim,
        kernel_init=nn.initializers.normal(GPT2_INIT_STDDEV),
        name="down")(x)  # [..., bottleneck]
    h = nn.relu(h)
    h = nn.Dense(
        hidden,
        kernel_init=nn.initializers.zeros,
        bias_init=nn.initializers.zeros,
        name="up")(h)  # [..., H]
    return x + h


class BlockAdapters(nn.Module):
  """The two adapters of one transformer block, under one parameter subtree.

  Keeping them together (the block names this module `adapter`) lets an
  optimizer select all adapter parameters by the path component `adapter`.

  Attributes:
    bottleneck_dim: width of each adapter's bottleneck.
  """

  bottleneck_dim: int

  def setup(self):
    self.attention = BottleneckAdapter(self.bottleneck_dim)
    self.mlp = BottleneckAdapter(self.bottleneck_dim)

  def after_attention(self, x: jax.Array) -> jax.Array:
    """Adapts the attention branch output [B, L, H]."""
    return self.attention(x)

  def after_mlp(self, x: jax.Array) -> jax.Array:
    """Adapts the MLP branch output [B, L, H]."""
    return self.mlp(x)


def adapter_width(adapter_params) -> int:
  """Bottleneck width of one block's adapter parameters (`BlockAdapters`):
  the output size of the attention adapter's `down` kernel `[H, width]`."""
  return int(adapter_params["attention"]["down"]["kernel"].shape[-1])


class Mlp(nn.Module):
  """Two-layer feed-forward network of a transformer block.

  Attributes:
    mlp_dim: width of the hidden layer.
    activation: 'relu' or 'gelu'.
    out_init_stddev: standard deviation of the output projection's init.
  """

  mlp_dim: int
  activation: str = "relu"
  out_init_stddev: float = GPT2_INIT_STDDEV

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Maps [..., H] to [..., H]."""
    hidden = x.shape[-1]
    h = nn.Dense(
        self.mlp_dim,
        kernel_init=nn.initializers.normal(GPT2_INIT_STDDEV),
        name="fc")(x)  # [..., mlp_dim]
    h = activation_by_name(self.activation)(h)
    return nn.Dense(
        hidden,
        kernel_init=nn.initializers.normal(self.out_init_stddev),
        name="proj")(h)  # [..., H]


class CausalTransformerBlock(nn.Module):
  """GPT-2 block: `x + attn(ln(x))`, then `x + mlp(ln(x))`.

  Bottleneck adapters (parameter subtree `adapter`) transform each branch
  output before it is added to the residual stream:
  `x + A_attn(attn(ln(x)))`, then `x + A_mlp(mlp(ln(x)))` with
  `A(h) = h + W_up relu(W_down h + b_down) + b_up`. They apply whenever the
  block's parameters hold an `adapter` subtree, whatever `adapter_dim` is,
  with the width of those parameters; `adapter_dim > 0` only makes `init`
  create them. So a model initialised without adapters (the pre-trained
  policy) runs adapters merged into its parameters later, and without them
  keeps its parameter structure and outputs.

  Attributes:
    num_heads: attention heads.
    mlp_dim: width of the MLP hidden layer.
    num_layers: depth of the whole stack (scales the output projections' init).
    dropout_rate: dropout on attention weights and on both branch outputs.
    activation: MLP activation, 'relu' or 'gelu'.
    adapter_dim: adapter bottleneck width `init` creates; 0 means none.
  """

  num_heads: int
  mlp_dim: int
  num_layers: int
  dropout_rate: float = 0.1
  activation: str = "relu"
  adapter_dim: int = 0

  @nn.compact
  def __call__(
      self, x: jax.Array, mask: jax.Array, *, deterministic: bool,
      dropout_rows: tuple[jax.Array | int, int] | None = None,
      query_tokens: tuple[int, int] | None = None,
      prefix: KeyValuePrefix | None = None,
      return_key_values: bool = False,
  ) -> jax.Array | tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    """Applies the block.

    Args:
      x: [B, L, H] token features.
      mask: [B, 1, L, L] bool attention mask (see `causal_padding_mask`).
      deterministic: disables dropout when true; otherwise draws from the
        'dropout' rng stream.
      dropout_rows: `(j, c)`: `x` holds rows `j, j + c, ...` of a `c` times
        larger batch, and gets those rows' dropout masks (see `Dropout`).
      query_tokens: `(start, stride)`: compute the outputs of tokens
        `start, start + stride, ...` only (all tokens are still attended
        to): the same values as the rows of the whole output, with the same
        dropout masks, for a fraction of the work. None: all tokens.
      prefix: keys, values and mask of tokens that come before `x`'s (a
        `PromptCache.prefix`), which every token of `x` may attend to;
        `mask` then covers `x`'s tokens only. Needs `deterministic`.
      return_key_values: also return the attention keys and values of `x`'s
        tokens (what a `PromptCache` holds). Needs `deterministic`.

    Returns:
      [B, L, H] token features, or [B, Lq, H] with `query_tokens` (Lq of
      them); with `return_key_values`, a pair of those and `(keys, values)`,
      each [B, L, heads, H / heads].

    Raises:
      ValueError: on `prefix` or `return_key_values` with dropout on.
    """
    batch, length, hidden = x.shape
    cached = prefix is not None or return_key_values
    if cached and not deterministic and self.dropout_rate > 0.0:
      raise ValueError("prefix and return_key_values need deterministic=True")
    out_stddev = GPT2_INIT_STDDEV / math.sqrt(2 * self.num_layers)
    adapter_dim = self.adapter_dim
    if self.has_variable("params", "adapter"):  # merged in after init
      adapter_dim = adapter_width(self.get_variable("params", "adapter"))
    adapters = (
        BlockAdapters(adapter_dim, name="adapter") if adapter_dim > 0 else None)
    # Where the outputs lie in those of the whole batch and sequence: the
    # dropout masks are the matching sections of the whole one's.
    index, count = (0, 1) if dropout_rows is None else dropout_rows
    tokens = whole_axis(length)
    if query_tokens is not None:
      first, stride = query_tokens
      tokens = (first, stride, length)
    section = [(index, count, count * batch), tokens, whole_axis(hidden)]

    h = nn.LayerNorm(epsilon=LAYER_NORM_EPSILON, name="ln_attention")(x)  # [B, L, H]
    queries, query_mask = h, mask
    if query_tokens is not None:
      x = x[:, first::stride]  # [B, Lq, H]
      queries, query_mask = h[:, first::stride], mask[:, :, first::stride]
    record = [] if return_key_values else None
    if cached:
      attention_fn = functools.partial(attention_with_prefix, prefix=prefix,
                                       record=record)
    else:
      attention_fn = functools.partial(dot_product_attention,
                                       query_section=tokens)
    h = nn.MultiHeadDotProductAttention(
        num_heads=self.num_heads,
        qkv_features=hidden,
        out_features=hidden,
        dropout_rate=self.dropout_rate,
        broadcast_dropout=True,  # one [L, L] mask for all rows
        kernel_init=nn.initializers.normal(GPT2_INIT_STDDEV),
        out_kernel_init=nn.initializers.normal(out_stddev),
        attention_fn=attention_fn,
        name="attention")(queries, h, mask=query_mask,
                          deterministic=deterministic)
    # Named as flax names nn.Dropout modules: the dropout keys derive from
    # the module path.
    h = Dropout(self.dropout_rate, name="Dropout_0")(
        h, deterministic=deterministic, section=section)
    if adapters is not None:
      h = adapters.after_attention(h)
    x = x + h  # [B, L or Lq, H]

    h = nn.LayerNorm(epsilon=LAYER_NORM_EPSILON, name="ln_mlp")(x)
    h = Mlp(self.mlp_dim, self.activation, out_stddev, name="mlp")(h)
    h = Dropout(self.dropout_rate, name="Dropout_1")(
        h, deterministic=deterministic, section=section)
    if adapters is not None:
      h = adapters.after_mlp(h)
    if return_key_values:
      return x + h, record[0]  # [B, L or Lq, H], ([B, L, heads, d],) * 2
    return x + h  # [B, L or Lq, H]
