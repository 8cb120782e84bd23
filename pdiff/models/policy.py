"""The frozen pre-trained policy (PLM) and what is rolled out with it.

:class:`PretrainedPolicy` bundles a Prompt-DT with what feeding it needs
(state statistics, return scale, context and prompt lengths), so that
training, tuning and evaluation sample inputs in one normalisation.
:class:`TunedPolicy` is a task's policy parameters and prompt ``[Kp, ...]``;
:func:`stack_tuned` stacks several along a leading task axis, the input of
:func:`pdiff.evaluation.make_prompted_rollout`. :func:`masked_action_mse` is
Prompt-DT's behaviour-cloning loss, used by pre-training and tuning alike.
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

from pdiff.data.prompts import sample_prompt
from pdiff.data.samplers import sample_segments
from pdiff.types import Segments, Trajectories


def masked_action_mse(
    predicted: jax.Array, target: jax.Array, mask: jax.Array) -> jax.Array:
  """Mean squared error over real steps and action dimensions.

  Args:
    predicted: [B, K, da] predicted actions.
    target: [B, K, da] dataset actions.
    mask: [B, K], 1 on real steps.

  Returns:
    Scalar loss; 0 when no step is real.
  """
  num_values = jnp.sum(mask) * target.shape[-1]
  return (masked_squared_error(predicted, target, mask)
          / jnp.maximum(num_values, 1.0))


def masked_squared_error(
    predicted: jax.Array, target: jax.Array, mask: jax.Array) -> jax.Array:
  """Sum of squared errors over real steps and action dimensions: the
  numerator of `masked_action_mse` (shapes as there); scalar."""
  squared = jnp.sum((predicted - target) ** 2, axis=-1)  # [B, K]
  return jnp.sum(squared * mask)


@flax.struct.dataclass
class TunedPolicy:
  """What a tuning method hands to evaluation for one task."""

  params: Any  # policy parameters to roll out with
  prompt: Segments  # [Kp, ...] the task's prompt


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
    prompt_position: where the prompt windows of pre-training sat in their
      trajectories (:data:`pdiff.data.prompts.PROMPT_POSITIONS`); Prompt-DT
      pre-trains on ``"last"`` windows, so the embeddings of prompt timesteps
      found elsewhere stay untrained: prompts fed to the PLM should sit
      there too.
  """

  model: Any = flax.struct.field(pytree_node=False)
  params: Any
  state_mean: jax.Array
  state_std: jax.Array
  return_scale: float = flax.struct.field(pytree_node=False)
  max_ep_len: int = flax.struct.field(pytree_node=False)
  context_len: int = flax.struct.field(pytree_node=False)
  prompt_len: int = flax.struct.field(pytree_node=False)
  prompt_position: str = flax.struct.field(pytree_node=False, default="last")

  def apply(self, params, segments: Segments, prompt: Segments) -> jax.Array:
    """Deterministic action prediction ``[B, K, da]``."""
    return self.model.apply({"params": params}, segments, prompt,
                            deterministic=True)

  def sample_segments(self, key, trajs: Trajectories, batch_size: int, *,
                      rtg: jax.Array | None = None) -> Segments:
    """Training windows ``[B, K, ...]`` of ``trajs`` in the PLM's
    normalisation; ``rtg`` (``[N, T]``, unscaled) replaces the data's
    returns-to-go (:func:`pdiff.data.samplers.sample_segments`)."""
    return sample_segments(
        key, trajs, batch_size, self.context_len,
        return_scale=self.return_scale, state_mean=self.state_mean,
        state_std=self.state_std, max_ep_len=self.max_ep_len, rtg=rtg)

  def sample_prompts(self, key, trajs: Trajectories, batch_size: int, *,
                     position: str = "last") -> Segments:
    """Trajectory prompts ``[B, K*, ...]`` of ``trajs``."""
    return sample_prompt(
        key, trajs, batch_size, self.prompt_len,
        return_scale=self.return_scale, state_mean=self.state_mean,
        state_std=self.state_std, max_ep_len=self.max_ep_len,
        position=position)

  def few_shot_prompt(self, key, few_shot: Trajectories) -> TunedPolicy:
    """The PLM with Prompt-DT's plain few-shot prompt ``[K*, ...]``.

    The prompt is the last ``K*`` steps (before the final step) of a
    trajectory of ``few_shot`` drawn at random, as Prompt-DT builds its
    evaluation prompts.
    """
    prompt = self.sample_prompts(key, few_shot, 1, position="last")
    return TunedPolicy(params=self.params,
                       prompt=jax.tree.map(lambda x: x[0], prompt))


def stack_tuned(results: list[TunedPolicy], *, share_params: bool = True
                ) -> TunedPolicy:
  """Stacks per-task results along a new leading task axis.

  With ``share_params`` the first result's params are kept unstacked (pure
  prompt methods all hold the same PLM parameters).

  Args:
    results: M policies, prompts ``[Kp, ...]``.
    share_params: keep one set of parameters instead of stacking them.

  Returns:
    A ``TunedPolicy`` with prompt ``[M, Kp, ...]`` (and params ``[M, ...]``
    unless shared).
  """
  if not results:
    raise ValueError("stack_tuned needs at least one result.")
  prompt = jax.tree.map(lambda *x: jnp.stack(x), *[r.prompt for r in results])
  if share_params:
    params = results[0].params
  else:
    params = jax.tree.map(lambda *x: jnp.stack(x), *[r.params for r in results])
  return TunedPolicy(params=params, prompt=prompt)
