"""``prompt_dt_ft`` and ``upper_bound``: every PLM weight fine-tuned per task.

Prompt-DT-FT (the public Prompt-DT's ``--finetune`` option) starts each test
task from a copy of the frozen PLM's parameters ``theta_0`` and takes
``steps`` AdamW steps on the task's few-shot data,

  theta_{i+1} = AdamW(theta_i, clip(grad L(theta_i; B_i), grad_clip_norm)),
  L(theta; B) = sum_{b,t} m_bt ||a_hat_theta(tau_b, P)_t - a_bt||^2
                / (da sum_{b,t} m_bt),

the masked action MSE (``pdiff.models.policy.masked_action_mse``) of a batch
``B_i`` of ``batch_size`` windows ``tau_b`` of the few-shot trajectories
(mask ``m``), prompted with the task's few-shot prompt ``P``: the last ``K*``
steps of a few-shot trajectory drawn at random, the prompt that is then
rolled out (drawn as ``prompt_dt`` draws it, from the same key, so both rows
of a seed roll out the same prompt). As in Prompt-DT the model is in training
mode (dropout at the pre-training rate) and gradients are clipped to the
global norm 0.25. The rolled-out policy is ``(theta_steps, P)``: one
parameter copy per task.

``upper_bound`` is the same trainer on the test task's whole dataset
(``data="full_dataset"``) with more steps: the paper's full-data upper
bound, which no few-shot method is expected to beat.

:func:`make_trainer` is the loop every gradient-tuning method shares
(``soft_prompt`` and ``adaptor`` train other parameters with it): one jitted
``lax.scan`` over steps, pure, so it ``vmap``s over test tasks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import numpy as np
import optax

from pdiff.models.policy import (
    PretrainedPolicy,
    TunedPolicy,
    masked_action_mse,
)
from pdiff.tuning import registry
from pdiff.types import Segments, Trajectories

# Fields of every gradient-tuning config read by :func:`make_trainer`.
TRAINER_FIELDS = ("steps", "batch_size", "learning_rate", "weight_decay",
                  "grad_clip_norm", "dropout")
# Where training windows come from: "uniform": K-step windows at uniform
# starts (Prompt-DT's pre-training batches); "last": the last K* steps before
# the final step of each drawn trajectory (the public Prompt-DT's
# fine-tuning batches, the prompt's own window).
SEGMENT_POSITIONS = ("uniform", "last")
# Fields of the prompt_dt_ft and upper_bound configs.
FINETUNE_FIELDS = ("name",) + TRAINER_FIELDS + ("segment_position",
                                                "fixed_prompt")

# train(trainable, data [N, T, ...], prompt [Kp, ...], key)
#   -> (trainable, {metric: [steps]})
TrainFn = Callable[[Any, Trajectories, Segments, jax.Array],
                   tuple[Any, dict[str, jax.Array]]]


def check_fields(config: ml_collections.ConfigDict, what: str,
                 fields: tuple[str, ...]) -> None:
  """Raises ValueError naming a field missing from or unknown to ``config``."""
  keys = set(config.keys())
  missing, unknown = sorted(set(fields) - keys), sorted(keys - set(fields))
  if missing:
    raise ValueError(f"{what} config: missing fields {missing}.")
  if unknown:
    raise ValueError(f"{what} config: unknown fields {unknown}.")


def check_trainer_config(config: ml_collections.ConfigDict, what: str) -> None:
  """Checks the :data:`TRAINER_FIELDS` of ``config``; ValueError naming the
  field."""
  for field in ("steps", "batch_size"):
    value = config[field]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      raise ValueError(f"{what} config: {field} must be a positive int, got "
                       f"{value!r}.")
  for field in ("learning_rate", "grad_clip_norm"):
    if not float(config[field]) > 0:
      raise ValueError(f"{what} config: {field} must be positive, got "
                       f"{config[field]!r}.")
  if not float(config.weight_decay) >= 0:
    raise ValueError(f"{what} config: weight_decay must be >= 0, got "
                     f"{config.weight_decay!r}.")
  if not isinstance(config.dropout, bool):
    raise ValueError(f"{what} config: dropout must be a bool, got "
                     f"{config.dropout!r}.")


def make_optimizer(config) -> optax.GradientTransformation:
  """Prompt-DT's fine-tuning optimiser: global-norm clipping, then AdamW at a
  constant learning rate with decoupled weight decay."""
  return optax.chain(
      optax.clip_by_global_norm(float(config.grad_clip_norm)),
      optax.adamw(float(config.learning_rate),
                  weight_decay=float(config.weight_decay)))


def make_trainer(plm: PretrainedPolicy, config,
                 combine: Callable[[Any], Any], *,
                 segment_position: str = "uniform",
                 fixed_prompt: bool = True) -> TrainFn:
  """The gradient loop of the fine-tuning methods, for one task.

  Only ``trainable`` gets gradients: the PLM's module is applied with
  ``combine(trainable)`` (all its parameters for fine-tuning; the frozen
  PLM's with a soft prompt or adapters merged in otherwise). Step ``i`` draws
  ``batch_size`` windows of ``data`` (``segment_position``), prompts every
  one with ``prompt`` (``fixed_prompt``) or with its own ``K*``-step prompt
  of ``data`` at the PLM's prompt position, and takes one clipped AdamW step
  on the masked action MSE, with dropout at the model's rate when
  ``config.dropout`` (from a key of the step), deterministic otherwise.

  Args:
    plm: the frozen pre-trained policy (module, statistics, K, K*).
    config: a config with :data:`TRAINER_FIELDS`.
    combine: ``trainable -> params`` of ``plm.model``.
    segment_position: one of :data:`SEGMENT_POSITIONS`.
    fixed_prompt: prompt every window with the given ``prompt``.

  Returns:
    ``train(trainable, data [N, T, ...], prompt [Kp, ...], key)
    -> (trainable, {"loss": [steps], "grad_norm": [steps]})``, pure (jit
    and vmap it); ``loss`` is each step's batch loss before its update and
    ``grad_norm`` its gradient's global norm before clipping.
  """
  if segment_position not in SEGMENT_POSITIONS:
    raise ValueError(f"segment_position must be one of {SEGMENT_POSITIONS}, "
                     f"got {segment_position!r}.")
  optimizer = make_optimizer(config)
  steps, batch_size = int(config.steps), int(config.batch_size)
  dropout = bool(config.dropout)

  def sample_batch(data, prompt, key) -> tuple[Segments, Segments]:
    k_segments, k_prompts = jax.random.split(key)
    if segment_position == "uniform":
      segments = plm.sample_segments(k_segments, data, batch_size)  # [B, K]
    else:
      segments = plm.sample_prompts(k_segments, data, batch_size,
                                    position="last")  # [B, K*]
    if fixed_prompt:
      prompts = jax.tree.map(lambda x: x[None], prompt)  # [1, Kp], shared
    else:
      prompts = plm.sample_prompts(k_prompts, data, batch_size,
                                   position=plm.prompt_position)  # [B, K*]
    return segments, prompts

  def loss_fn(trainable, segments, prompts, key):
    predicted = plm.model.apply(
        {"params": combine(trainable)}, segments, prompts,
        deterministic=not dropout,
        rngs={"dropout": key} if dropout else None)  # [B, K, da]
    return masked_action_mse(predicted, segments.actions, segments.mask)

  def train(trainable, data: Trajectories, prompt: Segments, key):
    def step(carry, k):
      trainable, opt_state = carry
      k_batch, k_dropout = jax.random.split(k)
      segments, prompts = sample_batch(data, prompt, k_batch)
      loss, grads = jax.value_and_grad(loss_fn)(trainable, segments, prompts,
                                                k_dropout)
      updates, opt_state = optimizer.update(grads, opt_state, trainable)
      trainable = optax.apply_updates(trainable, updates)
      return (trainable, opt_state), (loss, optax.tree.norm(grads))

    carry = (trainable, optimizer.init(trainable))
    (trainable, _), (losses, norms) = jax.lax.scan(
        step, carry, jax.random.split(key, steps))
    return trainable, {"loss": losses, "grad_norm": norms}

  return train


def prompt_and_train_keys(key: jax.Array) -> tuple[jax.Array, jax.Array]:
  """A task's key split into the few-shot prompt's (the key itself, as
  ``prompt_dt`` uses it, so both roll out the same prompt) and training's."""
  return key, jax.random.fold_in(key, 1)


def make_task_tuner(plm: PretrainedPolicy, train: TrainFn,
                    init: Callable[[jax.Array], Any],
                    combine: Callable[[Any], Any]):
  """``tune(prepared, data [M, N, T, ...], keys [M])`` of a gradient method.

  Per task: the few-shot prompt ``P`` (``plm.few_shot_prompt``), trainable
  parameters ``init(key)``, ``train`` on the task's data; the tuned policy is
  ``(combine(trainable), P)``. One jit, ``vmap``ped over tasks, so the
  returned params carry a leading task axis ``[M, ...]``.
  """

  def one(data, key):
    k_prompt, k_train = prompt_and_train_keys(key)
    prompt = plm.few_shot_prompt(k_prompt, data).prompt  # [K*, ...]
    k_init, k_train = jax.random.split(k_train)
    trainable, metrics = train(init(k_init), data, prompt, k_train)
    return TunedPolicy(params=combine(trainable), prompt=prompt), metrics

  tune_tasks = jax.jit(jax.vmap(one))

  def tune(prepared, data, keys):
    del prepared
    return tune_tasks(data, keys)

  return tune


def _checker(what: str):
  def check_config(config: ml_collections.ConfigDict) -> None:
    check_fields(config, what, FINETUNE_FIELDS)
    check_trainer_config(config, what)
    if config.segment_position not in SEGMENT_POSITIONS:
      raise ValueError(f"{what} config: segment_position must be one of "
                       f"{SEGMENT_POSITIONS}, got {config.segment_position!r}.")
    if not isinstance(config.fixed_prompt, bool):
      raise ValueError(f"{what} config: fixed_prompt must be a bool, got "
                       f"{config.fixed_prompt!r}.")
  return check_config


check_config = _checker("prompt_dt_ft")
check_upper_bound_config = _checker("upper_bound")


def make_tune(context: registry.TuningContext, config) -> registry.TuneFn:
  """``tune(None, data [M, N, T, ...], keys [M])``: every PLM weight
  fine-tuned on each task's data; params ``[M, ...]``."""
  plm = context.plm
  identity = lambda params: params
  train = make_trainer(plm, config, identity,
                       segment_position=config.segment_position,
                       fixed_prompt=config.fixed_prompt)
  return make_task_tuner(plm, train, lambda key: plm.params, identity)


def trainable_parameters(context: registry.TuningContext, config) -> int:
  """Every PLM parameter, per task."""
  del config
  return int(sum(np.size(x) for x in jax.tree.leaves(context.plm.params)))


METHOD = registry.register(registry.Method(
    name="prompt_dt_ft", check_config=check_config, make_tune=make_tune,
    trainable_parameters=trainable_parameters, params_per_task=True))

# Registered by ``pdiff.tuning.upper_bound`` (last in the table).
UPPER_BOUND = registry.Method(
    name="upper_bound", check_config=check_upper_bound_config,
    make_tune=make_tune, trainable_parameters=trainable_parameters,
    data="full_dataset", params_per_task=True)
