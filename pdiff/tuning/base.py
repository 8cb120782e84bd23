"""The shared interface of prompt-tuning methods.

A method takes the frozen pre-trained policy, a test task's few-shot
trajectories, its config and a key, and returns what evaluation needs:

  method(plm: PretrainedPolicy, few_shot: Trajectories, config, key)
      -> TunedPolicy(params, prompt)

``params`` are the policy parameters to roll out with (the PLM's own for pure
prompt methods; tuned copies for fine-tuning baselines) and ``prompt`` a
:class:`Segments` of one task, ``[Kp, ...]`` without batch axis. Stacking the
results of several tasks along a new leading axis gives exactly the input of
:func:`pdiff.evaluation.make_prompted_rollout`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections

from pdiff.data import samplers
from pdiff.data.types import Segments, Trajectories


@flax.struct.dataclass
class PretrainedPolicy:
  """The frozen PLM with what is needed to feed it.

  Attributes:
    model: the Prompt-DT module (static).
    params: its parameters (the ``'params'`` collection).
    state_mean: [ds] state normalisation used in pre-training.
    state_std: [ds].
    return_scale: returns-to-go are divided by it.
    max_ep_len: timestep clipping bound.
    context_len: K, the context window.
    prompt_len: K*, steps per prompt episode.
  """

  model: Any = flax.struct.field(pytree_node=False)
  params: Any
  state_mean: jax.Array
  state_std: jax.Array
  return_scale: float = flax.struct.field(pytree_node=False)
  max_ep_len: int = flax.struct.field(pytree_node=False)
  context_len: int = flax.struct.field(pytree_node=False)
  prompt_len: int = flax.struct.field(pytree_node=False)

  def apply(self, params, segments: Segments, prompt: Segments) -> jax.Array:
    """Deterministic action prediction ``[B, K, da]``."""
    return self.model.apply({"params": params}, segments, prompt,
                            deterministic=True)

  def sample_segments(self, key, trajs: Trajectories, batch_size: int
                      ) -> Segments:
    """Training windows of ``trajs`` in the PLM's normalisation."""
    return samplers.sample_segments(
        key, trajs, batch_size, self.context_len,
        return_scale=self.return_scale, state_mean=self.state_mean,
        state_std=self.state_std, max_ep_len=self.max_ep_len)

  def sample_prompts(self, key, trajs: Trajectories, batch_size: int, *,
                     position: str = "last") -> Segments:
    """Trajectory prompts ``[B, K*, ...]`` of ``trajs``."""
    return samplers.sample_prompt(
        key, trajs, batch_size, self.prompt_len,
        return_scale=self.return_scale, state_mean=self.state_mean,
        state_std=self.state_std, max_ep_len=self.max_ep_len,
        position=position)


@flax.struct.dataclass
class TunedPolicy:
  """What a tuning method hands to evaluation for one task."""

  params: Any  # policy parameters to roll out with
  prompt: Segments  # [Kp, ...] the task's prompt


TuningMethod = Callable[
    [PretrainedPolicy, Trajectories, ml_collections.ConfigDict, jax.Array],
    TunedPolicy]


def masked_action_mse(predicted: jax.Array, segments: Segments) -> jax.Array:
  """Mean squared action error over real (unpadded) steps."""
  err = jnp.square(predicted - segments.actions).mean(-1)  # [B, K]
  return (err * segments.mask).sum() / jnp.maximum(segments.mask.sum(), 1.0)


def few_shot_prompt(plm: PretrainedPolicy, few_shot: Trajectories,
                    config: ml_collections.ConfigDict, key: jax.Array
                    ) -> TunedPolicy:
  """Prompt-DT's plain few-shot prompt: no tuning.

  The prompt is the last ``K*`` steps (before the final step) of a few-shot
  trajectory drawn at random, as Prompt-DT builds its evaluation prompts.
  """
  del config
  prompt = plm.sample_prompts(key, few_shot, 1, position="last")
  return TunedPolicy(params=plm.params,
                     prompt=jax.tree.map(lambda x: x[0], prompt))


def stack_tuned(results: list[TunedPolicy], *, share_params: bool = True
                ) -> TunedPolicy:
  """Stacks per-task results along a new leading task axis.

  With ``share_params`` the first result's params are kept unstacked (pure
  prompt methods all hold the same PLM parameters).
  """
  if not results:
    raise ValueError("stack_tuned needs at least one result.")
  prompt = jax.tree.map(lambda *x: jnp.stack(x), *[r.prompt for r in results])
  if share_params:
    params = results[0].params
  else:
    params = jax.tree.map(lambda *x: jnp.stack(x), *[r.params for r in results])
  return TunedPolicy(params=params, prompt=prompt)
