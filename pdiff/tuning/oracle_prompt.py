"""``oracle_prompt``: the best real window of the test task's dataset, chosen
by rollout return; a diagnostic, not a prompt-tuning method.

It measures the headroom any prompt method has on this PLM: how well the
frozen policy does with the best prompt that real data of the task offers.
It reads each test task's *full* dataset (``data="full_dataset"``) and rolls
candidates out on the test task itself, so it is not in any default method
list.

**Candidates.** For task ``m`` with ``N`` trajectories, ``C = min(
max_candidates, N)`` of them, drawn without replacement from the non-empty
ones (a random order from the task's key, empty padding trajectories last),
each giving the window Prompt-DT reads: its last ``K*`` steps before the
final one (:func:`pdiff.tuning.prompt_bandit.window_arms` with one window).

**Selection.** Candidate ``c`` of every task is rolled out for
``episodes_per_candidate`` episodes in ONE batched ``context.rollout`` call
(``C`` calls in all), every call with the same key (common random numbers:
all candidates of a task meet the same initial states), and the candidate of
best mean return ``G_c`` is kept (ties: lowest ``c``; empty candidates never
win):

  c* = argmax_c G_c,   at most C * episodes_per_candidate online episodes.

Metrics ``[M, C]``: ``candidate_return`` (``G_c``) and ``best_return`` (the
running maximum ``max_{c' <= c} G_c'`` over non-empty candidates).
``G_{c*}`` is biased upwards (the maximum of noisy means); the pipeline
measures the chosen prompt on fresh episodes.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import ml_collections

from pdiff.models.policy import TunedPolicy
from pdiff.tuning import registry
from pdiff.tuning.prompt_bandit import check_int, take_arm, window_arms

FIELDS = ("name", "max_candidates", "episodes_per_candidate")


def check_config(config: ml_collections.ConfigDict) -> None:
  """Raises ``ValueError`` naming the first bad field of ``config``."""
  keys = set(config.keys())
  if keys - set(FIELDS) or set(FIELDS) - keys:
    raise ValueError(
        f"oracle_prompt config: unknown fields {sorted(keys - set(FIELDS))}, "
        f"missing fields {sorted(set(FIELDS) - keys)}.")
  check_int(config, "max_candidates", 1)
  check_int(config, "episodes_per_candidate", 1)


def rollout_key(keys: jax.Array) -> jax.Array:
  """The one rollout key shared by every candidate (from ``keys[0]``)."""
  return jax.random.fold_in(keys[0], 1)


def candidates(plm, trajs, key, max_candidates: int):
  """One task's candidate windows.

  Args:
    plm: the PLM.
    trajs: the task's dataset ``[N, T, ...]``.
    key: orders the trajectories.
    max_candidates: C at most (static).

  Returns:
    ``(prompts [C, K*, ...], valid [C] bool, trajectory indices [C])`` with
    ``C = min(max_candidates, N)``.
  """
  lengths = jnp.asarray(trajs.lengths)
  n = lengths.shape[0]
  order = jnp.argsort(jnp.where(lengths > 0,
                                jax.random.uniform(key, (n,)), 2.0))
  index = order[:min(max_candidates, n)]  # [C]
  chosen = jax.tree.map(lambda x: jnp.asarray(x)[index], trajs)
  prompts, valid = window_arms(plm, chosen, 1)
  return prompts, valid, index


@functools.partial(jax.jit, static_argnames=("max_candidates",))
def task_candidates(plm, dataset, keys, max_candidates: int):
  """:func:`candidates` of every task, jitted: ``dataset`` ``[M, N, T, ...]``,
  ``keys`` ``[M]`` -> ``(prompts [M, C, K*, ...], valid [M, C], indices
  [M, C])``."""
  return jax.vmap(lambda trajs, key: candidates(plm, trajs, key,
                                                max_candidates))(dataset, keys)


def make_tune(context: registry.TuningContext, config) -> registry.TuneFn:
  """``tune(None, dataset [M, N, T, ...], keys [M])``: ``C`` batched rollout
  calls, one per candidate index."""
  check_config(config)
  if context.rollout is None:
    raise ValueError("oracle_prompt needs context.rollout (online episodes).")
  plm, rollout = context.plm, context.rollout
  max_candidates = int(config.max_candidates)
  episodes = int(config.episodes_per_candidate)

  @jax.jit
  def select(arms, valid, returns):
    means = jnp.where(valid, returns, -jnp.inf)  # [M, C]
    best = jnp.argmax(means, axis=-1)
    return take_arm(arms, best), jax.lax.cummax(means, axis=1)

  def tune(prepared, dataset, keys):
    del prepared
    arms, valid, _ = task_candidates(plm, jax.tree.map(jnp.asarray, dataset),
                                     keys, max_candidates)  # [M, C, ...]
    key = rollout_key(keys)
    returns = []
    for c in range(valid.shape[1]):
      prompts = jax.tree.map(lambda x, c=c: x[:, c], arms)
      returns.append(jnp.mean(jnp.asarray(
          rollout(plm.params, prompts, key, episodes, False), jnp.float32),
          axis=-1))
    returns = jnp.stack(returns, axis=-1)  # [M, C]
    prompt, best = select(arms, valid, returns)
    return (TunedPolicy(params=plm.params, prompt=prompt),
            {"candidate_return": returns, "best_return": best})

  return tune


METHOD = registry.register(registry.Method(
    name="oracle_prompt", check_config=check_config, make_tune=make_tune,
    trainable_parameters=lambda context, config: 0, data="full_dataset",
    online_episodes=lambda config: (int(config.max_candidates)
                                    * int(config.episodes_per_candidate)),
    diagnostic=True))
