"""``adaptor``: bottleneck adapters in every transformer block, PLM frozen.

Each block's attention and MLP branch outputs ``h`` pass through an adapter

  A(h) = h + W_up relu(W_down h + b_down) + b_up,
  W_down in R^{H x d} ~ N(0, 0.02^2),  W_up in R^{d x H} = 0,  b = 0,

before the residual sum (``pdiff.models.layers.BottleneckAdapter``), so a
fresh adapter is the identity and the adapted PLM's outputs are exactly the
PLM's. Only the adapters ``phi`` are trained, by ``steps`` clipped AdamW
steps of :func:`pdiff.tuning.finetune.make_trainer` on the masked action MSE
of few-shot windows prompted with the task's few-shot prompt ``P`` (drawn as
``prompt_dt`` draws it, and rolled out).

The adapters are ``adapter`` subtrees merged into the PLM's block parameters;
the PLM's module (built with ``adapter_dim=0``) applies them whenever they
are present, so the tuned policy is ``plm.model`` with params
``theta + phi`` (one copy per task) and prompt ``P``. Trained scalars per
task: ``num_layers * 2 * (2 H d + d + H)``.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from pdiff.models.policy import PretrainedPolicy
from pdiff.tuning import finetune, registry
from pdiff.types import Segments

FIELDS = ("name", "adapter_dim") + finetune.TRAINER_FIELDS
ADAPTER = "adapter"  # name of a block's adapter subtree


def check_config(config: ml_collections.ConfigDict) -> None:
  finetune.check_fields(config, "adaptor", FIELDS)
  dim = config.adapter_dim
  if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
    raise ValueError(f"adaptor config: adapter_dim must be a positive int, "
                     f"got {dim!r}.")
  finetune.check_trainer_config(config, "adaptor")


def _zero_segments(steps: int, plm: PretrainedPolicy) -> Segments:
  model = plm.model
  return Segments(
      states=jnp.zeros((1, steps, model.state_dim), jnp.float32),
      actions=jnp.zeros((1, steps, model.act_dim), jnp.float32),
      rewards=jnp.zeros((1, steps), jnp.float32),
      returns_to_go=jnp.zeros((1, steps), jnp.float32),
      timesteps=jnp.zeros((1, steps), jnp.int32),
      mask=jnp.ones((1, steps), jnp.float32))


def init_adapters(plm: PretrainedPolicy, adapter_dim: int, key: jax.Array):
  """Fresh adapters for the PLM's blocks: ``{"blocks_i": {"adapter": ...}}``.

  They are initialised as ``init`` of the PLM's module with
  ``adapter_dim`` would (zero up-projections), from ``key``.
  """
  model = plm.model.clone(adapter_dim=adapter_dim)
  params = model.init(key, _zero_segments(plm.context_len, plm),
                      _zero_segments(plm.prompt_len, plm))["params"]
  return {name: {ADAPTER: sub[ADAPTER]} for name, sub in params.items()
          if isinstance(sub, Mapping) and ADAPTER in sub}


def with_adapters(params, adapters):
  """The PLM's ``params`` with each block's ``adapter`` subtree merged in."""
  return {name: ({**sub, **adapters[name]} if name in adapters else sub)
          for name, sub in params.items()}


def make_tune(context: registry.TuningContext, config) -> registry.TuneFn:
  """``tune(None, few_shot [M, N, T, ...], keys [M])``: adapters trained per
  task; params ``[M, ...]`` (the PLM's leaves broadcast, unchanged)."""
  plm = context.plm
  dim = int(config.adapter_dim)
  combine = lambda adapters: with_adapters(plm.params, adapters)
  train = finetune.make_trainer(plm, config, combine, fixed_prompt=True)
  return finetune.make_task_tuner(
      plm, train, lambda key: init_adapters(plm, dim, key), combine)


def trainable_parameters(context: registry.TuningContext, config) -> int:
  shapes = jax.eval_shape(lambda key: init_adapters(
      context.plm, int(config.adapter_dim), key), jax.random.key(0))
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(shapes)))


METHOD = registry.register(registry.Method(
    name="adaptor", check_config=check_config, make_tune=make_tune,
    trainable_parameters=trainable_parameters, params_per_task=True))
