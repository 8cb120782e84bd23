"""Prompted rollouts of a Decision-Transformer policy, vectorised in one jit.

Every prompt-tuning method evaluates through :func:`make_prompted_rollout`:
prompts (and, optionally, per-task policy parameters) come in as data, the
tasks x episodes batch is stepped by one ``lax.scan`` over the episode
(``pdiff.envs.rollout.scan_steps``), and
the context window of the last ``K`` steps lives in fixed-size buffers that
shift left by one slot each step (left padding, as in training).

At step ``t`` the window holds ``(R_{t-K+1..t}, s_{t-K+1..t}, a_{t-K+1..t})``
with ``a_t`` still zero; the policy's prediction at the last slot is ``a_t``.
After the env step, ``R_{t+1} = R_t - r_t / return_scale``.

A task's prompt is fixed over its episodes, so what the policy makes of it
can be computed once per rollout: given ``encode_prompt``, the rollout
encodes each task's prompt before the scan and hands the encoding to the
policy at every step. :func:`prompt_dt_policy` builds a Prompt-DT's policy
this way, the prompt's keys and values cached (``pdiff.models.prompt_cache``);
:func:`evaluate_tuned` rolls out with it.

Families with a ``success`` metric (``TaskFamily.metric_names``, e.g.
``metaworld_reach``) also report successes, as Meta-World's evaluation does
with ``terminate_on_success``: an episode succeeds if the metric is positive
at any of its valid steps.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from pdiff.envs.rollout import Step, scan_steps
from pdiff.types import Segments

# policy_fn(params, segments [B, K, ...], prompt [B, Kp, ...] or its
# encoding) -> actions [B, K or 1, da]; the last step's action is read.
PolicyFn = Callable[[Any, Segments, Any], jax.Array]
# encode_prompt(params, prompt [1, Kp, ...]) -> what policy_fn gets instead
# of the prompt.
PromptEncoder = Callable[[Any, Segments], Any]


# The per-step metric of a family that marks a successful step.
SUCCESS_METRIC = "success"


def has_success_metric(family) -> bool:
  """Whether ``family``'s steps carry a success flag (:data:`SUCCESS_METRIC`
  among its ``metric_names``)."""
  return SUCCESS_METRIC in family.metric_names


@flax.struct.dataclass
class RolloutResult:
  """Undiscounted returns (and successes) of a batch of prompted episodes."""

  returns: jax.Array  # [num_tasks, num_episodes] float32
  lengths: jax.Array  # [num_tasks, num_episodes] int32, steps before done
  # [num_tasks, num_episodes] float32, 1.0 if the success metric was > 0 at
  # a valid step of the episode; None for a family without that metric.
  successes: jax.Array | None = None

  @property
  def mean(self) -> jax.Array:  # [num_tasks]
    return self.returns.mean(axis=-1)

  @property
  def std(self) -> jax.Array:  # [num_tasks]
    return self.returns.std(axis=-1)

  @property
  def success_rate(self) -> jax.Array | None:  # [num_tasks], or None
    """Share of each task's episodes that succeeded (None without
    successes)."""
    return None if self.successes is None else self.successes.mean(axis=-1)


@flax.struct.dataclass
class _Window:
  states: jax.Array  # [E, K, ds]
  actions: jax.Array  # [E, K, da]
  rewards: jax.Array  # [E, K]
  returns_to_go: jax.Array  # [E, K]
  timesteps: jax.Array  # [E, K] int32
  mask: jax.Array  # [E, K]

  def push(self, state, rtg, t) -> _Window:
    """Shifts left by one slot and writes step ``t`` (action still zero)."""
    shift = lambda x, new: jnp.concatenate([x[:, 1:], new[:, None]], axis=1)
    e = state.shape[0]
    return _Window(
        states=shift(self.states, state),
        actions=shift(self.actions, jnp.zeros_like(self.actions[:, 0])),
        rewards=shift(self.rewards, jnp.zeros((e,), self.rewards.dtype)),
        returns_to_go=shift(self.returns_to_go, rtg),
        timesteps=shift(self.timesteps, t),
        mask=shift(self.mask, jnp.ones((e,), self.mask.dtype)),
    )

  def set_last(self, action, reward) -> _Window:
    return self.replace(
        actions=self.actions.at[:, -1].set(action),
        rewards=self.rewards.at[:, -1].set(reward),
    )

  def as_segments(self) -> Segments:
    return Segments(self.states, self.actions, self.rewards,
                    self.returns_to_go, self.timesteps, self.mask)


def make_prompted_rollout(
    family,
    policy_fn: PolicyFn,
    *,
    context_len: int,
    num_episodes: int,
    state_mean: jax.Array,
    state_std: jax.Array,
    target_return: float | None = None,
    params_per_task: bool = False,
    max_ep_len: int | None = None,
    encode_prompt: PromptEncoder | None = None,
) -> Callable[[Any, Segments, jax.Array, jax.Array], RolloutResult]:
  """Builds ``rollout(params, prompts, task_indices, key) -> RolloutResult``.

  Args:
    family: a task family of :mod:`pdiff.envs`.
    policy_fn: ``policy_fn(params, segments, prompt) -> actions [B, K, da]``,
      e.g. ``lambda p, s, q: model.apply(p, s, q)``; only the last step's
      action is read (``[B, 1, da]`` will do).
    context_len: K, the policy's context window.
    num_episodes: episodes per task.
    state_mean: [ds] normalisation statistics used in training.
    state_std: [ds].
    target_return: initial return-to-go (unscaled); defaults to the family's
      ``return_target``.
    params_per_task: if true, ``params`` has a leading task axis (a tuned
      copy per task) instead of being shared.
    max_ep_len: timesteps are clipped to ``max_ep_len - 1``; defaults to the
      family's episode length.
    encode_prompt: if given, ``encode_prompt(params, prompt [1, Kp, ...])``
      runs once per task before the episode and ``policy_fn`` gets its
      result, shared by the task's episodes, instead of the prompt
      (e.g. :func:`prompt_dt_policy`'s cached prompt). None: ``policy_fn``
      gets the prompt, ``[num_episodes, Kp, ...]``.

  Returns:
    A jitted function. ``prompts`` is a :class:`Segments` with a leading task
    axis ``[num_tasks, Kp, ...]``; ``task_indices`` is ``[num_tasks]`` int.
    Its result holds ``successes`` when the family has a success metric
    (:func:`has_success_metric`), else None.
  """
  if context_len < 1:
    raise ValueError(f"context_len must be >= 1, got {context_len}.")
  if num_episodes < 1:
    raise ValueError(f"num_episodes must be >= 1, got {num_episodes}.")
  horizon = family.episode_length
  max_ep_len = max_ep_len or horizon
  target = family.return_target if target_return is None else target_return
  scale = float(family.return_scale)
  ds, da = family.observation_size, family.action_size
  state_mean = jnp.asarray(state_mean, jnp.float32)
  state_std = jnp.asarray(state_std, jnp.float32)
  with_success = has_success_metric(family)

  def one_task(params, prompt, task, key):
    # prompt: Segments [Kp, ...] of one task; task: one Task.
    e = num_episodes
    if encode_prompt is None:
      context = jax.tree.map(lambda x: jnp.broadcast_to(x, (e, *x.shape)),
                             prompt)  # [E, Kp, ...]
    else:  # computed once, before the scan
      context = encode_prompt(params, jax.tree.map(lambda x: x[None], prompt))
    tasks = jax.tree.map(lambda x: jnp.broadcast_to(x, (e, *x.shape)), task)
    env_state = jax.vmap(family.reset)(jax.random.split(key, e), tasks)
    window = _Window(
        states=jnp.zeros((e, context_len, ds), jnp.float32),
        actions=jnp.zeros((e, context_len, da), jnp.float32),
        rewards=jnp.zeros((e, context_len), jnp.float32),
        returns_to_go=jnp.zeros((e, context_len), jnp.float32),
        timesteps=jnp.zeros((e, context_len), jnp.int32),
        mask=jnp.zeros((e, context_len), jnp.float32),
    )
    # carry: window, return-to-go [E], return [E], length [E], success [E]
    # bool (None without a success metric)
    carry = (window, jnp.full((e,), target / scale, jnp.float32),
             jnp.zeros((e,), jnp.float32), jnp.zeros((e,), jnp.int32),
             jnp.zeros((e,), bool) if with_success else None)

    def act(carry, env_state, t):
      window, rtg, ret, length, success = carry
      obs = (env_state.obs - state_mean) / state_std  # [E, ds]
      tt = jnp.full((e,), jnp.minimum(t, max_ep_len - 1), jnp.int32)
      window = window.push(obs, rtg, tt)
      action = policy_fn(params, window.as_segments(), context)[:, -1]  # [E, da]
      return action, (window, rtg, ret, length, success)

    def observe(carry, step: Step):
      window, rtg, ret, length, success = carry
      window = window.set_last(step.action, step.reward)
      if success is not None:
        success = success | (step.valid
                             & (step.metrics[SUCCESS_METRIC] > 0))
      return (window, rtg - step.reward / scale, ret + step.reward,
              length + step.valid.astype(jnp.int32), success)

    carry, _, _ = scan_steps(family, act, carry, env_state, jnp.arange(horizon),
                             observe=observe, record=False)
    _, _, ret, length, success = carry
    return ret, length, (None if success is None
                         else success.astype(jnp.float32))

  params_axis = 0 if params_per_task else None

  @jax.jit
  def rollout(params, prompts: Segments, task_indices, key) -> RolloutResult:
    tasks = family.tasks(task_indices)
    keys = jax.random.split(key, task_indices.shape[0])
    returns, lengths, successes = jax.vmap(
        one_task, in_axes=(params_axis, 0, 0, 0))(params, prompts, tasks, keys)
    return RolloutResult(returns=returns, lengths=lengths, successes=successes)

  return rollout


class PromptedPolicy(NamedTuple):
  """The ``policy_fn`` and ``encode_prompt`` of :func:`make_prompted_rollout`
  (pass them as ``**policy._asdict()``)."""

  policy_fn: PolicyFn
  encode_prompt: PromptEncoder | None = None


def prompt_dt_policy(model, *, cache_prompt: bool = True) -> PromptedPolicy:
  """A Prompt-DT (``pdiff.models.PromptDT``) as a rollout's policy.

  Params are the model's ``'params'`` collection; dropout is off.

  Args:
    model: the Prompt-DT module.
    cache_prompt: encode each task's prompt once into its keys and values
      (``PromptDT.prompt_cache``) and predict only the last step's action
      from them at every step (``PromptDT.predict_with_cache``): the same
      actions up to float rounding, for less work per step. False: the whole
      forward pass over prompt and window at every step.

  Returns:
    The ``PromptedPolicy``.
  """
  if not cache_prompt:
    return PromptedPolicy(
        lambda p, s, q: model.apply({"params": p}, s, q, deterministic=True))
  return PromptedPolicy(
      policy_fn=lambda p, s, cache: model.apply(
          {"params": p}, s, cache, last_step_only=True,
          method="predict_with_cache"),
      encode_prompt=lambda p, q: model.apply({"params": p}, q,
                                             method="prompt_cache"))


def over_seeds(rollout):
  """Adds a seeds axis: ``rollout(params, prompts, task_indices, keys [S])``
  returns a ``RolloutResult`` with fields ``[S, num_tasks, num_episodes]``
  (``successes`` stays None for a family without a success metric);
  everything stays one jitted program."""
  return jax.jit(jax.vmap(rollout, in_axes=(None, None, None, 0)))


@functools.lru_cache(maxsize=16)
def _cached_rollout(family, model, context_len, num_episodes, mean_bytes,
                    std_bytes, max_ep_len, params_per_task):
  """One jitted rollout per distinct setting, so repeated evaluations of the
  same PLM compile once (state statistics are part of the key as bytes)."""
  return make_prompted_rollout(
      family, **prompt_dt_policy(model)._asdict(),
      context_len=context_len, num_episodes=num_episodes,
      state_mean=np.frombuffer(mean_bytes, np.float32),
      state_std=np.frombuffer(std_bytes, np.float32),
      params_per_task=params_per_task, max_ep_len=max_ep_len)


def evaluate_tuned(plm, family, tuned, task_indices, key, *, num_episodes: int,
                   params_per_task: bool = False) -> RolloutResult:
  """Rolls out a PLM (``pdiff.models.PretrainedPolicy``) with tuned prompts.

  The rollout is compiled once per (family, model, statistics, context,
  episodes) and reused by later calls. Each task's prompt is encoded once
  into its keys and values (:func:`prompt_dt_policy`).

  Args:
    plm: the pre-trained policy (model, statistics, context length).
    family: the task family.
    tuned: a ``TunedPolicy`` stacked over tasks (``pdiff.models.stack_tuned``).
    task_indices: [num_tasks] the tasks, in the order of ``tuned``.
    key: rollout key.
    num_episodes: episodes per task.
    params_per_task: ``tuned.params`` has a leading task axis.

  Returns:
    The ``RolloutResult`` ``[num_tasks, num_episodes]``; ``successes`` is
    None unless the family has a success metric.
  """
  rollout = _cached_rollout(
      family, plm.model, plm.context_len, num_episodes,
      np.asarray(plm.state_mean, np.float32).tobytes(),
      np.asarray(plm.state_std, np.float32).tobytes(), plm.max_ep_len,
      params_per_task)
  return rollout(tuned.params, tuned.prompt, jnp.asarray(task_indices), key)
