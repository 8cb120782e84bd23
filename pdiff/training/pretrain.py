"""Multi-task Prompt-DT pre-training on a family's training tasks.

Glue between the datasets (``{dataset_root}/{family}/{quality}/``), the
multi-task batch sampler and the training loop. What evaluation and prompt
tuning need besides the parameters (state statistics, return scale, context
and prompt lengths, where the prompt windows sat in their trajectories) is
written to ``{workdir}/policy.json`` and read back by
:func:`load_pretrained_policy`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

from pdiff import serialization
from pdiff.data import samplers
from pdiff.data.loading import load_task_trajectories, pooled
from pdiff.data.normalization import state_statistics
from pdiff.data.prompts import PROMPT_POSITIONS
from pdiff.models.policy import PretrainedPolicy
from pdiff.models.prompt_dt import make_prompt_dt
from pdiff.training import checkpointing, loop
from pdiff.types import Segments, Trajectories

POLICY_FILE = "policy.json"
PARAMS_FILE = "params.msgpack"
# Training loss per log line of an exported PLM ([{"step", "loss"}, ...]).
CURVE_FILE = "curve.json"
# Where pre-training takes each prompt window in its trajectory: Prompt-DT's
# protocol, the last K* steps before the final one. Recorded in policy.json
# as ``prompt_position`` (files written before the field existed read back
# as this value).
PROMPT_POSITION = "last"
# Which datasets the state statistics are pooled over: Prompt-DT's default
# (``--average_state_mean``) pools the states of the training and the test
# tasks' datasets; "train" uses the training tasks' alone (no test-task data
# at all before tuning).
STATE_STATISTICS = ("train_and_test", "train")


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
        state_std=state_std, max_ep_len=config.train.model.max_ep_len,
        prompt_position=PROMPT_POSITION)

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

  With several processes (``jax.distributed``), every process calls this with
  the same arguments and the same shared ``workdir``; each loads the datasets
  and draws the whole global batch (``config.batch_per_task`` segments per
  task, whatever the number of processes), and trains its devices' rows.

  Returns:
    The trained policy, ready for evaluation and tuning.
  """
  trajs, mean, std = load_training_data(config, family, dataset_root)
  stacked = samplers.stack_tasks(trajs)
  sample_batch = make_multitask_sampler(stacked, config, family, mean, std)
  init_batch = sample_batch(jax.random.key(0))
  os.makedirs(workdir, exist_ok=True)
  # With several processes sharing ``workdir``, process 0 writes its files
  # while the others wait.
  if jax.process_index() == 0:
    exported = os.path.join(workdir, PARAMS_FILE)
    if os.path.exists(exported):  # a copied export; checkpoints now rule
      os.remove(exported)
    _write_policy_info(workdir, config, family, mean, std)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices("pdiff.pretrain: policy.json written")
  state = loop.train(config.train, sample_batch, init_batch, workdir,
                     num_steps=config.num_steps, log_every=config.log_every,
                     ckpt_every=config.ckpt_every, mesh=mesh)
  return load_pretrained_policy(workdir, params=jax.device_get(state.params))


def load_training_data(config, family, dataset_root: str):
  """The training tasks' trajectories (a list, in ``family.train_tasks``
  order) and the state statistics ``(mean [ds], std [ds])`` pooled as
  ``config.state_statistics`` says."""
  if config.state_statistics not in STATE_STATISTICS:
    raise ValueError(f"pretrain config: state_statistics is "
                     f"{config.state_statistics!r}, expected one of "
                     f"{STATE_STATISTICS}.")
  by_task = load_task_trajectories(family, dataset_root, config.quality,
                                   family.train_tasks)
  trajs = [by_task[i] for i in family.train_tasks]
  pool = list(trajs)
  if config.state_statistics == "train_and_test":
    extra = [i for i in family.test_tasks if i not in family.train_tasks]
    if extra:
      test = load_task_trajectories(family, dataset_root, config.quality,
                                    tuple(extra))
      pool += [test[i] for i in extra]
  mean, std = state_statistics(pooled(pool))
  return trajs, mean, std


def _write_policy_info(workdir, config, family, mean, std):
  info = dict(family=family.name, backend=family.backend,
              quality=config.quality, return_scale=float(family.return_scale),
              max_ep_len=int(config.train.model.max_ep_len),
              context_len=int(config.context_len),
              prompt_len=int(config.prompt_len),
              prompt_episodes=int(config.prompt_episodes),
              prompt_position=PROMPT_POSITION,
              state_statistics=config.state_statistics,
              weight_by_length=bool(config.weight_by_length),
              state_mean=np.asarray(mean).tolist(),
              state_std=np.asarray(std).tolist())
  path = os.path.join(workdir, POLICY_FILE)
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(info, f, indent=1)
  os.replace(tmp, path)


def read_policy_info(workdir: str) -> dict:
  """``{workdir}/policy.json`` as a dict; ``prompt_position`` defaults to
  ``"last"`` (files written before it was recorded)."""
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
  info.setdefault("prompt_position", "last")
  if info["prompt_position"] not in PROMPT_POSITIONS:
    raise ValueError(f"{path}: prompt_position is {info['prompt_position']!r},"
                     f" expected one of {PROMPT_POSITIONS}.")
  return info


def export_pretrained(workdir: str, out_dir: str, *,
                      step: int | None = None,
                      extra_files: dict[str, str] | None = None) -> None:
  """Writes a compact copy of a pre-training directory: ``config.json``,
  ``policy.json``, the parameters alone as ``params.msgpack`` (no optimiser
  state), which :func:`load_pretrained_policy` reads, and ``curve.json``
  (the training loss per log line up to the exported step, when
  ``metrics.jsonl`` exists).

  The copy is assembled in a temporary directory beside ``out_dir`` and
  renamed into place, so an interrupted export leaves ``out_dir`` as it was.

  Args:
    workdir: the pre-training directory.
    out_dir: the export's directory (replaced as a whole if it exists).
    step: checkpoint step; the latest by default.
    extra_files: ``{name: source path}`` copied into the export as well.
  """
  _, params = checkpointing.load_pretrained(workdir, step)
  parent = os.path.dirname(os.path.abspath(out_dir))
  os.makedirs(parent, exist_ok=True)
  staging = tempfile.mkdtemp(dir=parent, prefix=".export-")
  try:
    sources = {name: os.path.join(workdir, name)
               for name in ("config.json", POLICY_FILE)}
    sources.update(extra_files or {})
    for name, src in sources.items():
      shutil.copyfile(src, os.path.join(staging, name))
    curve = [dict(step=r["step"], loss=r["loss"])
             for r in loop.read_metrics(workdir)
             if step is None or r["step"] <= step]
    if curve:
      with open(os.path.join(staging, CURVE_FILE), "w") as f:
        json.dump(curve, f, indent=0)
    serialization.save_params(os.path.join(staging, PARAMS_FILE), params)
    os.chmod(staging, 0o755)
    old = None
    if os.path.exists(out_dir):
      old = tempfile.mkdtemp(dir=parent, prefix=".replaced-")
      os.rmdir(old)
      os.replace(out_dir, old)
    os.replace(staging, out_dir)
    if old is not None:
      shutil.rmtree(old)
  finally:
    if os.path.exists(staging):
      shutil.rmtree(staging)


def _load_exported_params(workdir: str, model):
  info = read_policy_info(workdir)
  ds, da = len(info["state_mean"]), model.act_dim
  k = 2
  seg = Segments(jnp.zeros((1, k, ds)), jnp.zeros((1, k, da)),
                 jnp.zeros((1, k)), jnp.zeros((1, k)),
                 jnp.zeros((1, k), jnp.int32), jnp.ones((1, k)))
  template = jax.eval_shape(
      lambda: model.init(jax.random.key(0), seg, seg)["params"])
  return serialization.load_params(
      os.path.join(workdir, PARAMS_FILE), template,
      what="Prompt-DT parameters (for the model in config.json)")


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
      context_len=info["context_len"], prompt_len=info["prompt_len"],
      prompt_position=info["prompt_position"])
