"""``prompt_tuning_dt``: Prompt-Tuning DT (Hu et al., 2023), a rank-based
zeroth-order search on the values of the trajectory prompt.

The searched variable is the prompt's ``(s, a, r)`` values in the PLM's
normalised space, ``x in R^{K* x (ds + da + 1)}`` (states normalised with
the PLM's statistics, actions and rewards as in the data); the prompt's
returns-to-go, timesteps and mask stay those of the initial prompt, Prompt-DT's
plain few-shot prompt (:meth:`PretrainedPolicy.few_shot_prompt`). The
objective is the frozen PLM's masked action MSE on few-shot segments,

  f(x) = L_DT(x) = masked_action_mse(PLM(segments | prompt(x)), segments.a),

but the search only uses the *ranking* of candidates by ``f``, as with a
preference oracle. Iteration ``t`` (ZO-RankSGD, Tang et al., 2023):

1. draws ``m = num_candidates`` directions ``u_1 .. u_m ~ N(0, I)`` (zero on
   the prompt's padded steps) and a batch of ``segment_batch`` few-shot
   segments shared by every candidate (common random numbers; a new batch
   each iteration, or one for the whole search with
   ``resample_segments=False``);
2. scores the candidates ``x_t + mu u_i`` (``mu = noise_scale``, actions
   clipped to ``[-action_clip, action_clip]``) and ranks them;
3. forms the rank-based estimate over the comparison graph ``E = {(i, j) :
   f(x_t + mu u_i) < f(x_t + mu u_j)}`` (``i`` strictly better than ``j``),

     g_t = 1 / max(|E|, 1) * sum_{(i, j) in E} (u_j - u_i)
         = 1 / max(|E|, 1) * sum_k (b_k - w_k) u_k,

   with ``b_k`` the number of candidates strictly better than ``k`` and
   ``w_k`` the number strictly worse. Without ties ``|E| = m (m - 1) / 2``
   and ``b_k - w_k = 2 r_k - (m - 1)`` for the rank ``r_k`` (0 = best): the
   best candidate gets weight ``-(m - 1)``, the worst ``m - 1``;
4. steps ``x_{t+1} = clip_a(x_t - lr g_t)`` (``lr = learning_rate``), real
   steps only.

Tied candidates add no edge; with ``mu = 0`` every candidate is ``x_t``, the
ranking carries no information and the step is set to exactly zero, so the
initial prompt comes back bit for bit. The loop over
iterations is one ``lax.scan``, ``vmap``-ed over test tasks, in one jit.
The prompt returned is the last iterate ``x_T``; the metric
``best_candidate_loss`` ``[M, iterations]`` is the lowest candidate loss of
each iteration.

Prompt-DT embeds returns-to-go, states, actions and timesteps of a prompt,
not its rewards, so the reward coordinates of ``x`` do not change ``f``:
they are searched as in the paper but are inert for this PLM.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import ml_collections

from pdiff.models.policy import TunedPolicy, masked_action_mse
from pdiff.tuning import registry
from pdiff.types import Segments

FIELDS = ("name", "iterations", "num_candidates", "noise_scale",
          "learning_rate", "segment_batch", "action_clip", "resample_segments")


def check_config(config: ml_collections.ConfigDict) -> None:
  """Raises ``ValueError`` naming the first bad field of ``config``."""
  keys = set(config.keys())
  if keys - set(FIELDS) or set(FIELDS) - keys:
    raise ValueError(
        f"prompt_tuning_dt config: unknown fields {sorted(keys - set(FIELDS))},"
        f" missing fields {sorted(set(FIELDS) - keys)}.")
  for field, low in (("iterations", 1), ("num_candidates", 2),
                     ("segment_batch", 1)):
    value = config[field]
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
      raise ValueError(f"prompt_tuning_dt config: {field} must be an int >= "
                       f"{low}, got {value!r}.")
  for field, positive in (("noise_scale", False), ("learning_rate", False),
                          ("action_clip", True)):
    value = config[field]
    if (isinstance(value, bool) or not isinstance(value, (int, float))
        or not math.isfinite(value) or value < 0 or (positive and value == 0)):
      raise ValueError(f"prompt_tuning_dt config: {field} must be a finite "
                       f"number {'> 0' if positive else '>= 0'}, got "
                       f"{value!r}.")
  if not isinstance(config.resample_segments, bool):
    raise ValueError("prompt_tuning_dt config: resample_segments must be a "
                     f"bool, got {config.resample_segments!r}.")


def prompt_values(prompt: Segments) -> jax.Array:
  """The searched values ``x = [s; a; r]`` of a prompt.

  Args:
    prompt: Segments ``[K*, ...]`` (states normalised).

  Returns:
    ``[K*, ds + da + 1]`` float32.
  """
  return jnp.concatenate(
      [prompt.states, prompt.actions, prompt.rewards[..., None]], axis=-1)


def with_values(prompt: Segments, x: jax.Array) -> Segments:
  """``prompt`` with its ``(s, a, r)`` replaced by ``x`` ``[K*, ds + da + 1]``;
  returns-to-go, timesteps and mask are kept."""
  ds, da = prompt.states.shape[-1], prompt.actions.shape[-1]
  return prompt._replace(states=x[..., :ds], actions=x[..., ds:ds + da],
                         rewards=x[..., ds + da])


def clip_actions(x: jax.Array, mask: jax.Array, ds: int, da: int,
                 bound: float) -> jax.Array:
  """Clips the action columns of ``x`` ``[..., K*, F]`` to ``[-bound, bound]``
  on real steps (``mask`` ``[K*]``); padded steps keep their values."""
  actions = x[..., ds:ds + da]
  clipped = jnp.where(mask[:, None] > 0, jnp.clip(actions, -bound, bound),
                      actions)
  return x.at[..., ds:ds + da].set(clipped)


def rank_gradient(losses: jax.Array, directions: jax.Array) -> jax.Array:
  """ZO-RankSGD's estimate from the ranking of ``m`` candidates.

  ``g = sum_{(i, j): f_i < f_j} (u_j - u_i) / max(|E|, 1)``; ties add no
  edge.

  Args:
    losses: ``[m]`` the candidates' losses (only their order is used).
    directions: ``[m, ...]`` the directions ``u_i``.

  Returns:
    ``g`` with the shape of one direction.
  """
  better = (losses[:, None] < losses[None, :]).astype(jnp.float32)  # [i, j]
  num_edges = jnp.sum(better)
  # weight of u_k: (# better than k) - (# worse than k)
  weights = jnp.sum(better, axis=0) - jnp.sum(better, axis=1)  # [m]
  return jnp.tensordot(weights, directions, axes=1) / jnp.maximum(num_edges,
                                                                  1.0)


def initial_prompt(plm, few_shot, key) -> Segments:
  """The search's start ``[K*, ...]``: Prompt-DT's few-shot prompt drawn with
  the first of the three keys ``split(key, 3)`` of the task."""
  return plm.few_shot_prompt(jax.random.split(key, 3)[0], few_shot).prompt


@jax.jit
def initial_prompts(plm, few_shot, keys) -> Segments:
  """The initial prompts ``[M, K*, ...]`` of every task (``few_shot`` ``[M, N,
  T, ...]``, ``keys`` ``[M]``), jitted apart from the search so that a zero
  step returns them bit for bit."""
  return jax.vmap(lambda f, k: initial_prompt(plm, f, k))(few_shot, keys)


def search_task(plm, prompt0: Segments, few_shot, key, noise_scale,
                learning_rate, *, iterations: int, num_candidates: int,
                segment_batch: int, action_clip: float,
                resample_segments: bool):
  """The rank-based search of one task (pure).

  Args:
    plm: the frozen PLM.
    prompt0: ``[K*, ...]`` the initial prompt.
    few_shot: the task's few-shot trajectories ``[N, T, ...]``.
    key: the task's key (``split(key, 3)[1:]`` draw segments and steps).
    noise_scale: mu (may be traced).
    learning_rate: lr (may be traced).
    iterations, num_candidates, segment_batch, action_clip,
      resample_segments: the config's fields (static).

  Returns:
    ``(prompt [K*, ...], best candidate loss [iterations])``.
  """
  _, k_segments, k_steps = jax.random.split(key, 3)
  ds, da = prompt0.states.shape[-1], prompt0.actions.shape[-1]
  mask = prompt0.mask  # [K*]
  x0 = prompt_values(prompt0)  # [K*, F]
  fixed = plm.sample_segments(k_segments, few_shot, segment_batch)

  def loss(x, segments):
    prompt = jax.tree.map(lambda v: v[None], with_values(prompt0, x))
    predicted = plm.apply(plm.params, segments, prompt)  # [B, K, da]
    return masked_action_mse(predicted, segments.actions, segments.mask)

  def step(x, key):
    k_u, k_seg = jax.random.split(key)
    u = jax.random.normal(k_u, (num_candidates,) + x.shape)  # [m, K*, F]
    u = u * mask[None, :, None]
    segments = (plm.sample_segments(k_seg, few_shot, segment_batch)
                if resample_segments else fixed)  # [B, K, ...]
    candidates = clip_actions(x[None] + noise_scale * u, mask, ds, da,
                              action_clip)
    losses = jax.vmap(loss, in_axes=(0, None))(candidates, segments)  # [m]
    # mu = 0: equal candidates carry no ranking; the step is exactly zero
    g = jnp.where(noise_scale > 0, rank_gradient(losses, u), 0.0)
    x = clip_actions(x - learning_rate * g, mask, ds, da, action_clip)
    return x, jnp.min(losses)

  x, best = jax.lax.scan(step, x0, jax.random.split(k_steps, iterations))
  return with_values(prompt0, x), best


@functools.partial(jax.jit, static_argnames=(
    "iterations", "num_candidates", "segment_batch", "action_clip",
    "resample_segments"))
def search_tasks(plm, prompts0, few_shot, keys, noise_scale, learning_rate,
                 **static):
  """:func:`search_task` ``vmap``-ed over tasks (``[M, ...]`` inputs), one
  jit; compiled once per PLM structure, shapes and static fields."""
  return jax.vmap(
      lambda p, f, k: search_task(plm, p, f, k, noise_scale, learning_rate,
                                  **static))(prompts0, few_shot, keys)


def make_tune(context: registry.TuningContext, config) -> registry.TuneFn:
  """``tune(None, few_shot [M, N, T, ...], keys [M])``: the initial prompts,
  then one search per task, all tasks in one jitted ``vmap``."""
  check_config(config)
  plm = context.plm
  static = dict(iterations=int(config.iterations),
                num_candidates=int(config.num_candidates),
                segment_batch=int(config.segment_batch),
                action_clip=float(config.action_clip),
                resample_segments=bool(config.resample_segments))
  mu = jnp.float32(config.noise_scale)
  lr = jnp.float32(config.learning_rate)

  def tune(prepared, few_shot, keys):
    del prepared
    few_shot = jax.tree.map(jnp.asarray, few_shot)
    prompts0 = initial_prompts(plm, few_shot, keys)
    prompts, best = search_tasks(plm, prompts0, few_shot, keys, mu, lr,
                                 **static)
    return (TunedPolicy(params=plm.params, prompt=prompts),
            {"best_candidate_loss": best})

  return tune


def trainable_parameters(context: registry.TuningContext, config) -> int:
  """The prompt's ``K* x (ds + da + 1)`` values."""
  del config
  plm = context.plm
  ds = int(plm.state_mean.shape[-1])
  da = int(context.family.action_size)
  return int(plm.prompt_len) * (ds + da + 1)


METHOD = registry.register(registry.Method(
    name="prompt_tuning_dt", check_config=check_config, make_tune=make_tune,
    trainable_parameters=trainable_parameters))
