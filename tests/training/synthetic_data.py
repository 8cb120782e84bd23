"""Synthetic behaviour-cloning data for the training tests.

The dataset's action is a fixed function of the state, `tanh(s @ W)`, so a
policy can fit it and the loss must fall.
"""

import functools

import jax
import jax.numpy as jnp
import ml_collections

from experiments.configs import pretrain as pretrain_configs
from pdiff.types import Segments

STATE_DIM, ACT_DIM, STEPS, PROMPT_STEPS = 3, 2, 4, 2
BEHAVIOUR = jnp.array([[1.5, -1.0], [0.5, 2.0], [-1.0, 0.5]])  # [ds, da]


def synthetic_segments(key, batch: int, steps: int) -> Segments:
  """[batch, steps] windows with up to one left-padded step."""
  k_states, k_time, k_rtg, k_pad = jax.random.split(key, 4)
  states = jax.random.normal(k_states, (batch, steps, STATE_DIM))
  start = jax.random.randint(k_time, (batch, 1), 0, 40)
  num_padded = jax.random.randint(k_pad, (batch, 1), 0, 2)
  mask = (jnp.arange(steps)[None] >= num_padded).astype(jnp.float32)
  return Segments(
      states=states * mask[..., None],
      actions=jnp.tanh(states @ BEHAVIOUR) * mask[..., None],
      rewards=jnp.zeros((batch, steps)),
      returns_to_go=jax.random.uniform(k_rtg, (batch, steps)) * mask,
      timesteps=((start + jnp.arange(steps)) * mask).astype(jnp.int32),
      mask=mask,
  )


@functools.partial(jax.jit, static_argnums=1)
def synthetic_batch(key, batch: int) -> tuple[Segments, Segments]:
  """`(segments [batch, K], prompts [batch, K*])` of the synthetic task."""
  k_seg, k_prompt = jax.random.split(key)
  return (synthetic_segments(k_seg, batch, STEPS),
          synthetic_segments(k_prompt, batch, PROMPT_STEPS))


def tiny_config(learning_rate=1e-3, warmup_steps=0) -> ml_collections.ConfigDict:
  """The training config with a tiny model and no dropout warm-up."""
  config = pretrain_configs.get_train_config()
  config.model.hidden_dim = 16
  config.model.num_layers = 1
  config.model.num_heads = 1
  config.model.mlp_dim = 32
  config.model.max_ep_len = 64
  config.learning_rate = learning_rate
  config.warmup_steps = warmup_steps
  return config

