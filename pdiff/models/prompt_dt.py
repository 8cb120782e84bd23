"""Prompt Decision Transformer (Prompt-DT), the pre-trained policy.

Prompt-DT (Xu et al., 2022) is a Decision Transformer over `(R, s, a)` tokens,
three per step, with a trajectory prompt of a few `(R, s, a)` steps of the
same task prepended to the input. The prompt has its own embedding layers. It
is trained by masked action MSE on many tasks at once; the prompt tells it the
task.

Layout of one forward pass (Kp prompt steps, K main steps, H hidden size):

  prompt [B, Kp] --prompt_embed_*--> [B, 3Kp, H] --+
                                                   +-- concat [B, 3Kp+3K, H]
  segments [B, K] --embed_* + LN----> [B, 3K, H] --+
      --> dropout --> num_layers causal GPT-2 blocks --> LN
      --> hidden of the state tokens of the main sequence [B, K, H]
      --> Dense + tanh --> actions [B, K, da]

(The last block computes the outputs of those state tokens alone, attending
to all tokens: the other tokens' last-layer outputs are never read.)

There are no positional embeddings: a learned timestep embedding is added to
each token instead. Padded steps (mask 0, on the left) of both prompt and main
sequence cannot be attended to, so the real outputs ignore what they hold.
The prompt tokens attend only to one another: `prompt_cache` computes their
keys and values once, and `predict_with_cache` runs the blocks over the main
sequence alone with them (evaluation; `pdiff.models.prompt_cache`).

Two optional parameter entries, absent from ``init``'s parameters, serve
prompt tuning without changing the module or its config: a top-level
``soft_prompt`` ``[3Kp, H]`` is added to the embedded prompt tokens, and an
``adapter`` subtree in a block adds bottleneck adapters to it
(``pdiff.models.layers.CausalTransformerBlock``). Zero-initialised, both leave
the outputs exactly as without them.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from pdiff.models.layers import (
    LAYER_NORM_EPSILON,
    CausalTransformerBlock,
    Dropout,
    causal_padding_mask,
    whole_axis,
)
from pdiff.models.prompt_cache import PromptCache
from pdiff.types import Segments

# Tokens per step: return-to-go, state, action.
TOKENS_PER_STEP = 3
# Index of the state token within a step; the action is predicted from it.
STATE_TOKEN = 1
# Name of the optional top-level parameter added to the prompt tokens.
SOFT_PROMPT = "soft_prompt"


class PromptDT(nn.Module):
  """Prompt Decision Transformer.

  Initialise with a prompt (`model.init(key, segments, prompt)`) so that the
  prompt embedding layers get parameters; the same parameters then also serve
  calls without a prompt or with `prompt_embeddings`. Transformer weights use
  GPT-2's N(0, 0.02) initialisation (residual projections scaled by
  1 / sqrt(2 num_layers)); the embedding layers use Flax's defaults.

  Attributes:
    state_dim: observation size ds.
    act_dim: action size da.
    hidden_dim: token embedding width H.
    num_layers: causal transformer blocks.
    num_heads: attention heads per block.
    mlp_dim: MLP hidden width per block.
    activation: MLP activation, 'relu' or 'gelu'.
    dropout_rate: embedding, attention and residual dropout rate.
    max_ep_len: timestep embedding table size; timesteps are clipped to
      `[0, max_ep_len - 1]`.
    action_tanh: squash predicted actions with tanh.
    adapter_dim: if positive, `init` gives every block bottleneck adapters
      of this width (parameters under `.../adapter/...`, zero-initialised
      output). Adapters apply whenever such parameters are present, also in
      a model built with `adapter_dim=0`.

  A top-level parameter `soft_prompt` `[3 Kp, H]`, when present (never made
  by `init`), is added to the embedded prompt tokens (`embed_prompt`).
  """

  state_dim: int
  act_dim: int
  hidden_dim: int = 128
  num_layers: int = 3
  num_heads: int = 1
  mlp_dim: int = 512
  activation: str = "relu"
  dropout_rate: float = 0.1
  max_ep_len: int = 1000
  action_tanh: bool = True
  adapter_dim: int = 0

  def setup(self):
    h = self.hidden_dim
    self.embed_return = nn.Dense(h)
    self.embed_state = nn.Dense(h)
    self.embed_action = nn.Dense(h)
    self.embed_timestep = nn.Embed(self.max_ep_len, h)
    self.prompt_embed_return = nn.Dense(h)
    self.prompt_embed_state = nn.Dense(h)
    self.prompt_embed_action = nn.Dense(h)
    self.prompt_embed_timestep = nn.Embed(self.max_ep_len, h)
    self.embed_ln = nn.LayerNorm(epsilon=LAYER_NORM_EPSILON)
    self.embed_dropout = Dropout(self.dropout_rate)
    self.blocks = [
        CausalTransformerBlock(
            num_heads=self.num_heads,
            mlp_dim=self.mlp_dim,
            num_layers=self.num_layers,
            dropout_rate=self.dropout_rate,
            activation=self.activation,
            adapter_dim=self.adapter_dim,
        ) for _ in range(self.num_layers)
    ]
    self.final_ln = nn.LayerNorm(epsilon=LAYER_NORM_EPSILON)
    self.predict_action = nn.Dense(self.act_dim)

  def _check_segments(self, segments: Segments, what: str):
    if segments.states.shape[-1] != self.state_dim:
      raise ValueError(
          f"{what}.states must have last dim state_dim={self.state_dim}, got "
          f"shape {segments.states.shape}")
    if segments.actions.shape[-1] != self.act_dim:
      raise ValueError(
          f"{what}.actions must have last dim act_dim={self.act_dim}, got "
          f"shape {segments.actions.shape}")

  def _embed_steps(self, segments, embed_return, embed_state, embed_action,
                   embed_timestep):
    """Interleaved `(R, s, a)` token embeddings and their mask."""
    timesteps = jnp.clip(segments.timesteps, 0, self.max_ep_len - 1)
    time = embed_timestep(timesteps)  # [B, K, H]
    returns = embed_return(segments.returns_to_go[..., None]) + time
    states = embed_state(segments.states) + time  # [B, K, H]
    actions = embed_action(segments.actions) + time  # [B, K, H]
    batch, steps = segments.mask.shape
    tokens = jnp.stack([returns, states, actions], axis=2)  # [B, K, 3, H]
    tokens = tokens.reshape(batch, TOKENS_PER_STEP * steps, self.hidden_dim)
    token_mask = jnp.repeat(segments.mask, TOKENS_PER_STEP, axis=1)  # [B, 3K]
    return tokens, token_mask

  def embed_prompt(self, prompt: Segments) -> tuple[jax.Array, jax.Array]:
    """Embeds a trajectory prompt with the prompt embedding layers.

    The result is what `__call__` accepts as `prompt_embeddings`, e.g. to
    initialise a soft prompt from a real one.

    When the parameters hold a `soft_prompt` `delta` [3 Kp, H] (a tuned
    offset, see the class docstring), token `j` of every prompt is
    `e_j + delta_j`: the learned continuous prompt, initialised at
    `delta = 0` from the embedded trajectory prompt `e`.

    Args:
      prompt: [Bp, Kp] prompt steps.

    Returns:
      embeddings: [Bp, 3 Kp, H], zero on padded tokens.
      mask: [Bp, 3 Kp] float32, 1 on real tokens.

    Raises:
      ValueError: if a `soft_prompt` parameter's shape is not [3 Kp, H].
    """
    self._check_segments(prompt, "prompt")
    tokens, mask = self._embed_steps(
        prompt, self.prompt_embed_return, self.prompt_embed_state,
        self.prompt_embed_action, self.prompt_embed_timestep)
    if self.has_variable("params", SOFT_PROMPT):
      delta = self.get_variable("params", SOFT_PROMPT)  # [3Kp, H]
      if delta.shape != tokens.shape[1:]:
        raise ValueError(
            f"params['{SOFT_PROMPT}'] must have shape [3 Kp, hidden_dim] = "
            f"{tokens.shape[1:]} for a prompt of Kp={prompt.mask.shape[-1]} "
            f"steps, got {delta.shape}")
      tokens = tokens + delta
    tokens = jnp.where(mask[..., None] > 0, tokens, 0.0)  # [Bp, 3Kp, H]
    return tokens, mask.astype(jnp.float32)

  def __call__(
      self,
      segments: Segments,
      prompt: Segments | None = None,
      *,
      prompt_embeddings: jax.Array | None = None,
      prompt_mask: jax.Array | None = None,
      deterministic: bool = True,
      dropout_rows: tuple[jax.Array | int, int] | None = None,
  ) -> jax.Array:
    """Predicts an action for every step of `segments`.

    Args:
      segments: [B, K] input windows, left-padded (`mask` 0 on padding).
      prompt: [B or 1, Kp] trajectory prompt, embedded by the prompt layers;
        a batch of 1 is shared by all rows. Kp may be any length (J * K*).
      prompt_embeddings: [B or 1, P, H] prompt token embeddings given
        directly (a soft prompt), instead of `prompt`.
      prompt_mask: [B or 1, P] mask of `prompt_embeddings`, 1 on real
        tokens; all real when omitted.
      deterministic: disables dropout; otherwise uses the 'dropout' rng.
      dropout_rows: `(j, c)`: the rows given are rows `j, j + c, j + 2c, ...`
        of a `c` times larger batch (`j` may be traced), and get the dropout
        masks of those rows of that batch. A batch split so into `c`
        microbatches then trains exactly as the whole batch (the gradient
        accumulation of `pdiff.training.train_step`). None: `(0, 1)`.

    Returns:
      [B, K, da] predicted actions (in [-1, 1] when `action_tanh`).
    """
    batch, steps = segments.mask.shape
    tokens, token_mask = self._embed_window(segments)  # [B, 3K, H], [B, 3K]
    prompt_embeddings, prompt_mask = self._prompt_tokens(
        prompt, prompt_embeddings, prompt_mask)
    if prompt_embeddings is not None:
      num_prompt = prompt_embeddings.shape[1]
      prompt_embeddings = jnp.broadcast_to(
          prompt_embeddings, (batch, num_prompt, self.hidden_dim))
      prompt_mask = jnp.broadcast_to(prompt_mask, (batch, num_prompt))
      tokens = jnp.concatenate([prompt_embeddings, tokens], axis=1)
      token_mask = jnp.concatenate(
          [prompt_mask.astype(token_mask.dtype), token_mask], axis=1)
    # tokens: [B, L, H] with L = P + 3K; token_mask: [B, L]

    attention_mask = causal_padding_mask(token_mask)  # [B, 1, L, L]
    length = tokens.shape[1]
    index, count = (0, 1) if dropout_rows is None else dropout_rows
    x = self.embed_dropout(
        tokens, deterministic=deterministic,
        section=[(index, count, count * batch), whole_axis(length),
                 whole_axis(self.hidden_dim)])
    for block in self.blocks[:-1]:
      x = block(x, attention_mask, deterministic=deterministic,
                dropout_rows=dropout_rows)
    # Actions are read from the state tokens of the main sequence alone: the
    # last block computes only their outputs (attending to all tokens).
    first_state = length - TOKENS_PER_STEP * steps + STATE_TOKEN
    x = self.blocks[-1](x, attention_mask, deterministic=deterministic,
                        dropout_rows=dropout_rows,
                        query_tokens=(first_state, TOKENS_PER_STEP))
    return self._predict(x)

  def _embed_window(self, segments: Segments) -> tuple[jax.Array, jax.Array]:
    """Main-sequence tokens [B, 3K, H] after LN (0 if padded), mask [B, 3K]."""
    self._check_segments(segments, "segments")
    tokens, token_mask = self._embed_steps(
        segments, self.embed_return, self.embed_state, self.embed_action,
        self.embed_timestep)  # [B, 3K, H], [B, 3K]
    tokens = self.embed_ln(tokens)
    return jnp.where(token_mask[..., None] > 0, tokens, 0.0), token_mask

  def _prompt_tokens(self, prompt, prompt_embeddings, prompt_mask):
    """Prompt tokens [Bp, P, H] and mask [Bp, P]; (None, None) if none."""
    if prompt is not None and prompt_embeddings is not None:
      raise ValueError("give either prompt or prompt_embeddings, not both")
    if prompt_mask is not None and prompt_embeddings is None:
      raise ValueError("prompt_mask is only used with prompt_embeddings")
    if prompt is not None:
      return self.embed_prompt(prompt)
    if prompt_embeddings is None:
      return None, None
    if prompt_embeddings.shape[-1:] != (self.hidden_dim,) or (
        prompt_embeddings.ndim != 3):
      raise ValueError(
          "prompt_embeddings must have shape [B, P, hidden_dim="
          f"{self.hidden_dim}], got {prompt_embeddings.shape}")
    if prompt_mask is None:
      prompt_mask = jnp.ones(prompt_embeddings.shape[:2], jnp.float32)
    return prompt_embeddings, prompt_mask

  def _predict(self, x: jax.Array) -> jax.Array:
    """Actions [B, Kq, da] from the last block's state-token outputs."""
    actions = self.predict_action(self.final_ln(x))
    return jnp.tanh(actions) if self.action_tanh else actions

  def prompt_cache(
      self,
      prompt: Segments | None = None,
      *,
      prompt_embeddings: jax.Array | None = None,
      prompt_mask: jax.Array | None = None,
  ) -> PromptCache:
    """Keys and values of the prompt's tokens in every block, dropout off
    (see `pdiff.models.prompt_cache`); the prompt arguments are
    `__call__`'s, batch Bp (1 serves every row of a batch). Raises
    ValueError without a prompt.
    """
    tokens, mask = self._prompt_tokens(prompt, prompt_embeddings, prompt_mask)
    if tokens is None:
      raise ValueError("prompt_cache needs prompt or prompt_embeddings")
    attention_mask = causal_padding_mask(mask)  # [Bp, 1, P, P]
    x, keys_values = tokens, []
    for block in self.blocks:
      x, key_values = block(x, attention_mask, deterministic=True,
                            return_key_values=True)
      keys_values.append(key_values)
    keys, values = zip(*keys_values, strict=True)
    return PromptCache(keys=keys, values=values, mask=mask.astype(jnp.float32))

  def predict_with_cache(self, segments: Segments, cache: PromptCache, *,
                         last_step_only: bool = False) -> jax.Array:
    """`__call__(segments, prompt)`'s actions, dropout off, up to float
    rounding: the blocks run over the window's tokens alone, with the
    prompt's keys and values taken from `cache`.

    Args:
      segments: [B, K] input windows, left-padded.
      cache: `prompt_cache(prompt)`, batch B or 1.
      last_step_only: predict the last step's action alone (what a rollout
        reads): the last block computes one token per row.

    Returns:
      [B, K, da] predicted actions, or [B, 1, da] with `last_step_only`.
    """
    batch, steps = segments.mask.shape
    if len(cache.keys) != self.num_layers or cache.mask.shape[0] not in (
        1, batch):
      raise ValueError(f"cache must hold {self.num_layers} blocks of batch 1 "
                       f"or {batch}, got {jax.tree.map(jnp.shape, cache)}")
    x, token_mask = self._embed_window(segments)  # [B, 3K, H], [B, 3K]
    attention_mask = causal_padding_mask(token_mask)  # [B, 1, 3K, 3K]
    first = STATE_TOKEN + TOKENS_PER_STEP * (steps - 1) * last_step_only
    for i, block in enumerate(self.blocks):
      x = block(x, attention_mask, deterministic=True, prefix=cache.prefix(i),
                query_tokens=((first, TOKENS_PER_STEP)
                              if i == self.num_layers - 1 else None))
    return self._predict(x)  # [B, K or 1, da]


def make_prompt_dt(
    config: ml_collections.ConfigDict,
    *,
    state_dim: int | None = None,
    act_dim: int | None = None,
) -> PromptDT:
  """Builds a `PromptDT` from an architecture config.

  Args:
    config: model config (the fields of `experiments/configs/prompt_dt.py`).
    state_dim: observation size; overrides `config.state_dim` when given. If
      both are set they must agree.
    act_dim: action size, likewise.

  Returns:
    The (unbound) module.

  Raises:
    ValueError: naming the field, on a missing or inconsistent value.
  """
  dims = {}
  for field, given in (("state_dim", state_dim), ("act_dim", act_dim)):
    configured = int(config[field])
    if given is not None and configured > 0 and configured != given:
      raise ValueError(
          f"model config {field}={configured} does not match the data's "
          f"{field}={given}")
    dims[field] = given if given is not None else configured
    if dims[field] <= 0:
      raise ValueError(f"model config {field} must be positive, got "
                       f"{dims[field]}")
  positive = ("hidden_dim", "num_layers", "num_heads", "mlp_dim", "max_ep_len")
  for field in positive:
    if int(config[field]) <= 0:
      raise ValueError(f"model config {field} must be positive, got "
                       f"{config[field]}")
  if config.hidden_dim % config.num_heads:
    raise ValueError(
        f"model config hidden_dim={config.hidden_dim} must be divisible by "
        f"num_heads={config.num_heads}")
  if not 0.0 <= config.dropout_rate < 1.0:
    raise ValueError(
        f"model config dropout_rate must be in [0, 1), got "
        f"{config.dropout_rate}")
  if config.adapter_dim < 0:
    raise ValueError(
        f"model config adapter_dim must be >= 0, got {config.adapter_dim}")
  if config.activation not in ("relu", "gelu"):
    raise ValueError(
        f"model config activation must be 'relu' or 'gelu', got "
        f"{config.activation!r}")
  return PromptDT(
      state_dim=dims["state_dim"],
      act_dim=dims["act_dim"],
      hidden_dim=config.hidden_dim,
      num_layers=config.num_layers,
      num_heads=config.num_heads,
      mlp_dim=config.mlp_dim,
      activation=config.activation,
      dropout_rate=config.dropout_rate,
      max_ep_len=config.max_ep_len,
      action_tanh=config.action_tanh,
      adapter_dim=config.adapter_dim,
  )
