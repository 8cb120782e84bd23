"""Multi-task Prompt-DT pre-training on a family's training tasks.

Glue between the datasets (``{dataset_root}/{family}/{quality}/``), the
multi-task batch sampler and the training loop. What evaluation and prompt
tuning need besides the parameters (state statistics, return scale, context
and prompt lengths) is written to ``{workdir}/policy.json`` and read back by
:func:`load_pretrained_policy`.
"""

from __future__ import annotations

import json
import os

import flax.serialization
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from pdiff.data import samplers, storage
from pdiff.data.normalization import state_statistics
from pdiff.data.types import Segments, Trajectories
from pdiff.models.prompt_dt import make_prompt_dt
from pdiff.training import checkpointing, loop
from pdiff.tuning.base import PretrainedPolicy

POLICY_FILE = "policy.json"
PARAMS_FILE = "params.msgpack"


def load_task_trajectories(family, dataset_root: str, quality: str,
                           task_indices) -> dict[int, Trajectories]:
  """Loads (and validates) one quality's datasets of ``task_indices``."""
  datasets = storage.load_family_datasets(dataset_root, family.name, quality,
                                          list(task_indices))
  return {i: d.trajectories for i, d in datasets.items()}


def pooled(trajs: list[Trajectories]) -> Trajectories:
  """Concatenates the trajectories of several tasks into one stack."""
  stacked = samplers.stack_tasks(trajs)  # [M, N, T, ...]
  return jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), stacked)


def make_multitask_sampler(trajs_by_task: Trajectories, config, family,
                           state_mean, state_std):
  """``sample_batch(key) -> (segments [M*b, K], prompts [M*b, J*K*])``."""
  trajs_by_task = jax.tree.map(jnp.asarray, trajs_by_task)

  @jax.jit
  def sample_batch(key):
    return samplers.sample_multitask_segments(
        key, trajs_by_task, config.batch_per_task, config.context_len,
        config.prompt_len, config.prompt_episodes,
        return_scale=family.return_scale, state_mean=state_mean,
        state_std=state_std, max_ep_len=config.train.model.max_ep_len)

  return sample_batch


def pretrain(config: ml_collections.ConfigDict, family, dataset_root: str,
             workdir: str, *, mesh=None) -> PretrainedPolicy:
  """Pre-trains Prompt-DT on ``family``'s training tasks; resumes if stopped.

  Args:
    config: ``experiments/configs/pretrain.py``'s config.
    family: the task family (its ``train_tasks`` are used).
    dataset_root: root of the datasets (must exist; see experiments/collect).
    workdir: output directory (``checkpoints/``, ``tensorboard/``,
      ``config.json``, ``policy.json``).
    mesh: device mesh (all devices by default).

  Returns:
    The trained policy, ready for evaluation and tuning.
  """
  by_task = load_task_trajectories(family, dataset_root, config.quality,
                                   family.train_tasks)
  trajs = [by_task[i] for i in family.train_tasks]
  mean, std = state_statistics(pooled(trajs))
  stacked = samplers.stack_tasks(trajs)
  sample_batch = make_multitask_sampler(stacked, config, family, mean, std)
  init_batch = sample_batch(jax.random.key(0))
  os.makedirs(workdir, exist_ok=True)
  exported = os.path.join(workdir, PARAMS_FILE)
  if os.path.exists(exported):  # a copied export; checkpoints now rule
    os.remove(exported)
  _write_policy_info(workdir, config, family, mean, std)
  state = loop.train(config.train, sample_batch, init_batch, workdir,
                     num_steps=config.num_steps, log_every=config.log_every,
                     ckpt_every=config.ckpt_every, mesh=mesh)
  return load_pretrained_policy(workdir, params=jax.device_get(state.params))


def _write_policy_info(workdir, config, family, mean, std):
  info = dict(family=family.name, backend=family.backend,
              quality=config.quality, return_scale=float(family.return_scale),
              max_ep_len=int(config.train.model.max_ep_len),
              context_len=int(config.context_len),
              prompt_len=int(config.prompt_len),
              prompt_episodes=int(config.prompt_episodes),
              state_mean=np.asarray(mean).tolist(),
              state_std=np.asarray(std).tolist())
  path = os.path.join(workdir, POLICY_FILE)
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(info, f, indent=1)
  os.replace(tmp, path)


def read_policy_info(workdir: str) -> dict:
  path = os.path.join(workdir, POLICY_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(
        f"{path} is missing: {workdir} is not a pre-training directory "
        "(run experiments/pretrain.py first).")
  with open(path) as f:
    info = json.load(f)
  required = ("return_scale", "max_ep_len", "context_len", "prompt_len",
              "state_mean", "state_std")
  missing = [k for k in required if k not in info]
  if missing:
    raise ValueError(f"{path}: missing fields {missing}.")
  return info


def export_pretrained(workdir: str, out_dir: str, *,
                      step: int | None = None) -> None:
  """Writes a compact copy of a pre-training directory: ``config.json``,
  ``policy.json`` and the parameters alone as ``params.msgpack`` (no
  optimiser state), which :func:`load_pretrained_policy` reads."""
  _, params = checkpointing.load_pretrained(workdir, step)
  os.makedirs(out_dir, exist_ok=True)
  for name in ("config.json", POLICY_FILE):
    with open(os.path.join(workdir, name)) as src:
      text = src.read()
    with open(os.path.join(out_dir, name), "w") as dst:
      dst.write(text)
  tmp = os.path.join(out_dir, PARAMS_FILE + ".tmp")
  with open(tmp, "wb") as f:
    f.write(flax.serialization.to_bytes(jax.device_get(params)))
  os.replace(tmp, os.path.join(out_dir, PARAMS_FILE))


def _load_exported_params(workdir: str, model):
  info = read_policy_info(workdir)
  ds, da = len(info["state_mean"]), model.act_dim
  k = 2
  seg = Segments(jnp.zeros((1, k, ds)), jnp.zeros((1, k, da)),
                 jnp.zeros((1, k)), jnp.zeros((1, k)),
                 jnp.zeros((1, k), jnp.int32), jnp.ones((1, k)))
  template = jax.eval_shape(
      lambda: model.init(jax.random.key(0), seg, seg)["params"])
  template = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), template)
  path = os.path.join(workdir, PARAMS_FILE)
  with open(path, "rb") as f:
    try:
      return flax.serialization.from_bytes(template, f.read())
    except Exception as e:  # noqa: BLE001
      raise ValueError(f"{path}: cannot restore Prompt-DT parameters for the "
                       f"model in config.json ({type(e).__name__}: {e}).") from e


def load_pretrained_policy(workdir: str, *, step: int | None = None,
                           params=None) -> PretrainedPolicy:
  """The PLM of a pre-training directory (latest checkpoint by default) or
  of a directory written by :func:`export_pretrained`."""
  info = read_policy_info(workdir)
  if params is None and os.path.exists(os.path.join(workdir, PARAMS_FILE)):
    model = make_prompt_dt(checkpointing.read_config(workdir).model)
    params = _load_exported_params(workdir, model)
  elif params is None:
    model, params = checkpointing.load_pretrained(workdir, step)
  else:
    model = make_prompt_dt(checkpointing.read_config(workdir).model)
  return PretrainedPolicy(
      model=model, params=params,
      state_mean=jnp.asarray(info["state_mean"], jnp.float32),
      state_std=jnp.asarray(info["state_std"], jnp.float32),
      return_scale=info["return_scale"], max_ep_len=info["max_ep_len"],
      context_len=info["context_len"], prompt_len=info["prompt_len"])
