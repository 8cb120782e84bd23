"""Prompt-DT architecture config (``pdiff.models.make_prompt_dt``).

The defaults are those of the public Prompt-DT code; pre-training holds one
under ``train.model`` (``experiments/configs/pretrain.py``).
``pdiff.models.make_prompt_dt`` validates it.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  """Prompt-DT's architecture, as in the public Prompt-DT code."""
  config = ml_collections.ConfigDict()
  config.state_dim = 0  # observation size; 0 = taken from the data
  config.act_dim = 0  # action size; 0 = taken from the data
  config.hidden_dim = 128  # token embedding (model) width
  config.num_layers = 3  # causal transformer blocks
  config.num_heads = 1  # attention heads per block
  config.mlp_dim = 512  # hidden width of each block's MLP (4 x hidden_dim)
  config.activation = "relu"  # MLP activation: 'relu' or 'gelu'
  config.dropout_rate = 0.1  # embedding, attention and residual dropout
  config.max_ep_len = 1000  # timestep embedding table size (timesteps clipped)
  config.action_tanh = True  # squash predicted actions into [-1, 1]
  config.adapter_dim = 0  # bottleneck adapter width per block; 0 = none
  return config
