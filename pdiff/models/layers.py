"""Transformer building blocks shared by the models.

A GPT-2 style pre-LayerNorm block (causal self-attention and an MLP, each in a
residual branch), optional bottleneck adapters inside each branch (applied
whenever their parameters are present), and the attention-mask helper that
combines causality with token padding.

Shapes use: B batch, L tokens, H hidden size.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

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
      self, x: jax.Array, mask: jax.Array, *, deterministic: bool
  ) -> jax.Array:
    """Applies the block.

    Args:
      x: [B, L, H] token features.
      mask: [B, 1, L, L] bool attention mask (see `causal_padding_mask`).
      deterministic: disables dropout when true; otherwise draws from the
        'dropout' rng stream.

    Returns:
      [B, L, H] token features.
    """
    hidden = x.shape[-1]
    out_stddev = GPT2_INIT_STDDEV / math.sqrt(2 * self.num_layers)
    adapter_dim = self.adapter_dim
    if self.has_variable("params", "adapter"):  # merged in after init
      adapter_dim = adapter_width(self.get_variable("params", "adapter"))
    adapters = (
        BlockAdapters(adapter_dim, name="adapter") if adapter_dim > 0 else None)

    h = nn.LayerNorm(epsilon=LAYER_NORM_EPSILON, name="ln_attention")(x)  # [B, L, H]
    h = nn.MultiHeadDotProductAttention(
        num_heads=self.num_heads,
        qkv_features=hidden,
        out_features=hidden,
        dropout_rate=self.dropout_rate,
        kernel_init=nn.initializers.normal(GPT2_INIT_STDDEV),
        out_kernel_init=nn.initializers.normal(out_stddev),
        name="attention")(h, h, mask=mask, deterministic=deterministic)
    h = nn.Dropout(self.dropout_rate)(h, deterministic=deterministic)
    if adapters is not None:
      h = adapters.after_attention(h)
    x = x + h  # [B, L, H]

    h = nn.LayerNorm(epsilon=LAYER_NORM_EPSILON, name="ln_mlp")(x)
    h = Mlp(self.mlp_dim, self.activation, out_stddev, name="mlp")(h)
    h = nn.Dropout(self.dropout_rate)(h, deterministic=deterministic)
    if adapters is not None:
      h = adapters.after_mlp(h)
    return x + h  # [B, L, H]
