"""Task-conditioned behaviour policies, trained with Brax's own PPO or SAC.

One policy per task family sees the observation with the task parameter
appended (``TaskFamily.as_brax_env``). Training saves two checkpoints: the
final ``expert`` and an early ``medium`` one (the first evaluation whose mean
return passes a fraction of the way from the first to the best evaluation).

A checkpoint is a directory with ``params.msgpack`` (the observation
normaliser and the policy network, flax-serialised) and ``policy.json`` (the
network shape, the algorithm, the training config and the evaluation
returns). Shipped checkpoints live in ``pdiff/assets/behavior/{family}/``.
"""

from __future__ import annotations

import functools
import json
import math
import os
import time
from collections.abc import Callable
from typing import Any

import flax.serialization
import jax
import jax.numpy as jnp
from absl import logging

from pdiff import atomic
from pdiff.data import behavior_resume as resume
from pdiff.envs import quiet_brax  # noqa: F401 (before Brax: imports it quietly)

# isort: split
from brax.training.acme import running_statistics, specs
from brax.training.agents.ppo import networks as ppo_networks
from brax.training.agents.ppo import train as ppo
from brax.training.agents.sac import networks as sac_networks
from brax.training.agents.sac import train as sac

ASSETS_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "assets",
                          "behavior")
QUALITIES = ("expert", "medium")
ALGORITHMS = ("ppo", "sac")
# How the expert checkpoint is chosen among the evaluated snapshots.
EXPERT_SELECTIONS = ("last", "best")

# policy(obs_with_task [B, ds + P], key) -> actions [B, da] in [-1, 1]
Policy = Callable[[jax.Array, jax.Array], jax.Array]


def shipped_policy_dir(family: str, quality: str) -> str:
  """Where the package's checkpoint of ``family``/``quality`` lives."""
  return os.path.join(ASSETS_DIR, family, quality)


def _networks(algorithm: str, obs_size: int, action_size: int, hidden):
  normalize = running_statistics.normalize
  if algorithm == "ppo":
    return ppo_networks.make_ppo_networks(
        obs_size, action_size, preprocess_observations_fn=normalize,
        policy_hidden_layer_sizes=tuple(hidden))
  if algorithm == "sac":
    return sac_networks.make_sac_networks(
        obs_size, action_size, preprocess_observations_fn=normalize,
        hidden_layer_sizes=tuple(hidden))
  raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}.")


def _template(algorithm, obs_size, action_size, hidden):
  nets = _networks(algorithm, obs_size, action_size, hidden)
  normalizer = running_statistics.init_state(
      specs.Array((obs_size,), jnp.dtype("float32")))
  policy = nets.policy_network.init(jax.random.PRNGKey(0))
  return nets, (normalizer, policy)


def save_policy(directory: str, params, info: dict[str, Any]) -> None:
  """Writes ``(normalizer, policy)`` params and ``info`` (must hold
  ``algorithm``, ``observation_size``, ``action_size``, ``hidden``)."""
  for field in ("algorithm", "observation_size", "action_size", "hidden"):
    if field not in info:
      raise ValueError(f"policy info needs field {field!r}; got {sorted(info)}.")
  state = flax.serialization.to_state_dict(jax.device_get(params[:2]))
  atomic.write_bytes_atomic(os.path.join(directory, "params.msgpack"),
                flax.serialization.msgpack_serialize(state))
  atomic.write_bytes_atomic(os.path.join(directory, "policy.json"),
                json.dumps(info, indent=1, sort_keys=True).encode())


def load_policy(directory: str, *, deterministic: bool = True
                ) -> tuple[Policy, dict[str, Any]]:
  """Loads a checkpoint written by :func:`save_policy`.

  Returns:
    ``(policy, info)``; ``policy(obs_with_task, key) -> actions``.
  """
  info_path = os.path.join(directory, "policy.json")
  params_path = os.path.join(directory, "params.msgpack")
  for path in (info_path, params_path):
    if not os.path.exists(path):
      raise FileNotFoundError(f"behaviour policy file missing: {path}")
  with open(info_path) as f:
    try:
      info = json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f"{info_path}: not valid JSON ({e}).") from e
  missing = [k for k in ("algorithm", "observation_size", "action_size",
                         "hidden") if k not in info]
  if missing:
    raise ValueError(f"{info_path}: missing fields {missing}.")
  nets, template = _template(info["algorithm"], info["observation_size"],
                             info["action_size"], info["hidden"])
  with open(params_path, "rb") as f:
    try:
      state = flax.serialization.msgpack_restore(f.read())
      params = flax.serialization.from_state_dict(template, state)
    except Exception as e:  # noqa: BLE001
      raise ValueError(f"{params_path}: cannot restore policy parameters "
                       f"({type(e).__name__}: {e}).") from e
  for (path, got), want in zip(jax.tree_util.tree_leaves_with_path(params),
                               jax.tree.leaves(template), strict=True):
    if jnp.shape(got) != jnp.shape(want):
      raise ValueError(
          f"{params_path}: parameter {jax.tree_util.keystr(path)} has shape "
          f"{jnp.shape(got)}, expected {jnp.shape(want)} from {info_path} "
          f"(observation_size {info['observation_size']}, action_size "
          f"{info['action_size']}, hidden {info['hidden']}).")
  if info["algorithm"] == "ppo":
    make = ppo_networks.make_inference_fn(nets)
  else:
    make = sac_networks.make_inference_fn(nets)
  inference = make(params, deterministic=deterministic)
  return (lambda obs, key: inference(obs, key)[0]), info


def train_behavior_policy(family, config, out_dir: str) -> dict[str, Any]:
  """Trains the family's task-conditioned policy and saves expert and medium.

  Progress is checkpointed at every evaluation in ``{out_dir}/resume``: the
  full PPO parameters (value network included), the curve so far and a
  snapshot of the policy per evaluation. Calling this again with the same
  ``out_dir`` continues from the last evaluation, so a stopped run loses at
  most one evaluation interval, and raising ``trainer.num_timesteps`` extends
  a finished run. A continued segment starts with fresh optimiser moments,
  fresh environments and the seed ``config.seed + segment`` (Brax restores
  parameters only); ``policy.json`` records every segment.

  Args:
    family: a Brax task family of :mod:`pdiff.envs`.
    config: ``experiments/configs/behavior.py``'s config (algorithm, budget
      and the trainer's keyword arguments).
    out_dir: checkpoints go to ``{out_dir}/expert`` and ``{out_dir}/medium``.

  Returns:
    A summary: evaluation curve, chosen expert and medium steps, wall time,
    segments.
  """
  algorithm = config.algorithm
  if config.expert not in EXPERT_SELECTIONS:
    raise ValueError(f"config.expert must be one of {EXPERT_SELECTIONS}, got "
                     f"{config.expert!r}.")
  hidden = tuple(config.hidden)
  env = family.as_brax_env(family.train_tasks, append_task=True)
  obs_size, action_size = env.observation_size, env.action_size
  trainer_kwargs = dict(config.trainer.to_dict())
  if algorithm == "ppo":
    trainer, factory = ppo.train, functools.partial(
        ppo_networks.make_ppo_networks, policy_hidden_layer_sizes=hidden,
        value_hidden_layer_sizes=tuple(config.value_hidden))
  elif algorithm == "sac":
    trainer, factory = sac.train, functools.partial(
        sac_networks.make_sac_networks, hidden_layer_sizes=hidden)
    # SAC's critic shares ``hidden``; ``value_hidden`` is PPO's alone.
  else:
    raise ValueError(f"config.algorithm must be one of {ALGORITHMS}, "
                     f"got {algorithm!r}.")

  progress = resume.load(out_dir, config)
  total = int(trainer_kwargs["num_timesteps"])
  offset = progress.steps
  curve: list[tuple[int, float]] = list(progress.curve)
  segments = list(progress.segments)
  restored = None
  if offset:
    if algorithm != "ppo":
      raise ValueError(f"{resume.directory(out_dir)}: continuing a run is "
                       f"supported for ppo only, config.algorithm is "
                       f"{algorithm!r}; remove the directory to start over.")
    restored = resume.load_params(out_dir, progress, _full_template(
        config, obs_size, action_size))
    logging.info("%s: continuing from step %d of %d (segment %d)",
                 family.name, offset, total, len(segments))
  remaining = total - offset
  if remaining < 0 and segments and (
      segments[-1]["first_step"] + segments[-1]["num_timesteps"] == total):
    # Brax rounds a budget up to whole training iterations: the run was
    # asked for this budget and finished past it.
    remaining = 0
  if remaining < 0:
    raise ValueError(
        f"{resume.directory(out_dir)}: the run already reached step {offset}, "
        f"beyond config.trainer.num_timesteps = {total}; ask at least {offset} "
        f"(equal finishes it without training).")
  start = time.time()
  params = restored
  if remaining > 0:
    evals = int(trainer_kwargs["num_evals"])
    trainer_kwargs.update(num_timesteps=remaining, num_evals=(
        1 + math.ceil(max(evals - 1, 1) * remaining / total)))
    if restored is not None:
      trainer_kwargs.update(restore_params=restored, restore_value_fn=True)
    segments.append(dict(first_step=offset, seed=config.seed + len(segments),
                         num_timesteps=remaining))
    # Brax reports an evaluation and its parameters in either order; a
    # resume point is written once both have arrived.
    pending_params: dict[int, Any] = {}
    evaluated: set[int] = set()

    def checkpoint(step):
      if step in pending_params and step in evaluated:
        resume.save(out_dir, config, offset + step, pending_params.pop(step),
                    curve, segments, progress.train_seconds
                    + time.time() - start)

    def on_progress(step, metrics):
      step = int(step)
      if restored is not None and step == 0:
        return  # the restored policy, already on the curve
      ret = float(metrics.get("eval/episode_reward", float("nan")))
      curve.append((offset + step, ret))
      evaluated.add(step)
      checkpoint(step)
      logging.info("%s %s: step %d  eval return %.1f  (%.0fs)", family.name,
                   algorithm, offset + step, ret, time.time() - start)

    def keep_params(step, make_policy, params):
      del make_policy
      step = int(step)
      if restored is not None and step == 0:
        return
      pending_params[step] = jax.device_get(params)
      checkpoint(step)

    _, params, _ = trainer(
        environment=env, episode_length=family.episode_length,
        network_factory=factory, progress_fn=on_progress,
        policy_params_fn=keep_params, seed=segments[-1]["seed"],
        **trainer_kwargs)
  wall = time.time() - start if remaining > 0 else 0.0
  train_seconds = progress.train_seconds + wall

  snapshots = resume.load_snapshots(out_dir, curve, _template(
      algorithm, obs_size, action_size, hidden)[1])
  medium_step, medium_params = _pick_medium(curve, snapshots,
                                            config.medium_fraction)
  expert_step, expert_params = curve[-1][0], params
  if config.expert == "best":
    expert_step, expert_params = _pick_best(curve, snapshots)
  base = dict(algorithm=algorithm, observation_size=obs_size,
              action_size=action_size, hidden=list(hidden),
              family=family.name, backend=family.backend,
              config=config.to_dict(), curve=curve, segments=segments,
              train_seconds=train_seconds)
  save_policy(os.path.join(out_dir, "expert"), expert_params,
              dict(base, quality="expert", step=expert_step))
  save_policy(os.path.join(out_dir, "medium"), medium_params,
              dict(base, quality="medium", step=medium_step))
  return dict(curve=curve, expert_step=expert_step, medium_step=medium_step,
              train_seconds=train_seconds, segments=segments)


def _full_template(config, obs_size, action_size):
  """``(normalizer, policy, value)`` of PPO, for restoring a resume point."""
  nets = ppo_networks.make_ppo_networks(
      obs_size, action_size,
      preprocess_observations_fn=running_statistics.normalize,
      policy_hidden_layer_sizes=tuple(config.hidden),
      value_hidden_layer_sizes=tuple(config.value_hidden))
  normalizer = running_statistics.init_state(
      specs.Array((obs_size,), jnp.dtype("float32")))
  return (normalizer, nets.policy_network.init(jax.random.PRNGKey(0)),
          nets.value_network.init(jax.random.PRNGKey(0)))


def _pick_best(curve, snapshots):
  """The snapshot with the highest evaluation return (the earliest on ties).

  Brax evaluates on the training tasks only, so this choice never looks at a
  test task.
  """
  returns = {s: r for s, r in curve if math.isfinite(r)}
  evaluated = [(step, params) for step, params in snapshots if step in returns]
  if not evaluated:
    raise ValueError("no parameter snapshot has a finite evaluation return; "
                     "cannot choose the best one (config.expert = 'best').")
  return max(evaluated, key=lambda item: (returns[item[0]], -item[0]))


def _pick_medium(curve, snapshots, fraction):
  """First snapshot whose eval return reaches ``fraction`` of the way from the
  first evaluation to the best one (Prompt-DT's "medium": an early policy)."""
  if not snapshots:
    raise ValueError("the trainer produced no parameter snapshots.")
  returns = dict(curve)
  first = curve[0][1]
  best = max(r for _, r in curve)
  goal = first + fraction * (best - first)
  for step, params in snapshots:
    if step in returns and returns[step] >= goal and step > 0:
      return step, params
  step, params = snapshots[len(snapshots) // 2]
  logging.warning("no evaluation reached %.1f (medium_fraction %.2f of the way "
                  "from %.1f to %.1f); medium = the middle snapshot, step %d",
                  goal, fraction, first, best, step)
  return step, params
