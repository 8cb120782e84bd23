"""Offline data collection: behaviour-policy rollouts vectorised in Brax.

All tasks x trajectories of one quality are stepped together by one
``lax.scan`` (``pdiff.envs.rollout.scan_episode``) under one jit (in chunks
of tasks to bound memory). Steps after an early termination are zero padding
(``lengths`` says how many are real).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from pdiff.envs.rollout import scan_episode
from pdiff.types import Trajectories

# policy(obs_with_task [B, ds + P], key) -> actions [B, da]; None = random.
Policy = Callable[[jax.Array, jax.Array], jax.Array] | None

QUALITIES = ("expert", "medium", "random")


def make_collector(family, policy: Policy, num_trajectories: int, *,
                   action_noise: float = 0.0):
  """Builds ``collect(task_indices [M], keys [M]) -> Trajectories [M, N, T, ...]``.

  Args:
    family: a task family of :mod:`pdiff.envs`.
    policy: a task-conditioned policy (sees the observation with the task
      parameters appended), or ``None`` for uniform random actions in
      ``[-1, 1]``.
    num_trajectories: N, trajectories per task.
    action_noise: standard deviation of Gaussian noise added to the policy's
      actions (then clipped to ``[-1, 1]``).
  """
  if num_trajectories < 1:
    raise ValueError(f"num_trajectories must be >= 1, got {num_trajectories}.")
  if action_noise < 0:
    raise ValueError(f"action_noise must be >= 0, got {action_noise}.")
  n, da = num_trajectories, family.action_size

  def policy_step(carry, state, key):
    k_pol, k_noise = jax.random.split(key)
    if policy is None:
      action = jax.random.uniform(k_noise, (n, da), minval=-1.0, maxval=1.0)
    else:
      obs_task = jnp.concatenate([state.obs, state.task.params], axis=-1)
      action = policy(obs_task, k_pol)
      action = action + action_noise * jax.random.normal(k_noise, action.shape)
      action = jnp.clip(action, -1.0, 1.0)
    return action, carry  # [n, da]

  def one_task(task, key):
    tasks = jax.tree.map(lambda x: jnp.broadcast_to(x, (n, *x.shape)), task)
    _, _, trajs = scan_episode(family, policy_step, None, tasks, key)
    return trajs

  @jax.jit
  def collect(task_indices, keys) -> Trajectories:
    return jax.vmap(one_task)(family.tasks(task_indices), keys)

  return collect


def collect_tasks(family, policy: Policy, task_indices: Sequence[int],
                  num_trajectories: int, key: jax.Array, *,
                  action_noise: float = 0.0, tasks_per_chunk: int = 8,
                  on_chunk: Callable[[int, int], None] | None = None
                  ) -> dict[int, Trajectories]:
  """Collects ``num_trajectories`` per task, a chunk of tasks per call.

  Every chunk has the same size (the last is padded with repeats), so the
  collector compiles once. Each task's key is ``fold_in(key, task_index)``,
  so a task's data does not depend on the chunking.

  Returns:
    ``{task_index: Trajectories [N, T, ...]}`` as NumPy arrays.
  """
  if tasks_per_chunk < 1:
    raise ValueError(f"tasks_per_chunk must be >= 1, got {tasks_per_chunk}.")
  indices = [int(i) for i in task_indices]
  if not indices:
    return {}
  collect = make_collector(family, policy, num_trajectories,
                           action_noise=action_noise)

  out: dict[int, Trajectories] = {}
  chunk = min(tasks_per_chunk, len(indices))
  for start in range(0, len(indices), chunk):
    part = indices[start:start + chunk]
    padded = part + [part[-1]] * (chunk - len(part))
    keys = jnp.stack([jax.random.fold_in(key, i) for i in padded])
    trajs = jax.device_get(collect(jnp.asarray(padded), keys))
    for j, index in enumerate(part):
      out[index] = jax.tree.map(lambda x, j=j: np.asarray(x[j]), trajs)
    if on_chunk is not None:
      on_chunk(min(start + chunk, len(indices)), len(indices))
  return out


def collect_family_datasets(family, quality: str, root: str, *,
                            num_trajectories: int, seed: int,
                            action_noise: float = 0.0,
                            policy_dir: str | None = None,
                            task_indices: Sequence[int] | None = None,
                            overwrite: bool = False,
                            tasks_per_chunk: int = 8,
                            progress: Callable[[str], None] | None = None
                            ) -> list[str]:
  """Collects and writes ``{root}/{family}/{quality}/task_XX.npz`` files.

  Args:
    family: a task family of :mod:`pdiff.envs`.
    quality: "expert", "medium" (behaviour-policy checkpoints, or the
      family's ``scripted_behavior()`` where it has one) or "random".
    root: dataset root directory.
    num_trajectories: trajectories per task.
    seed: collection seed (each task's key is derived from it and the task).
    action_noise: Gaussian action-noise std for policy qualities.
    policy_dir: checkpoint directory; defaults to the family's scripted
      policy if it has one, else the checkpoint shipped for
      ``family.behavior_family``/``quality``.
    task_indices: tasks to collect (default: all of the family's tasks).
    overwrite: rewrite files that already exist (otherwise they are kept,
      which makes an interrupted collection resumable).
    tasks_per_chunk: tasks stepped together per jitted call.
    progress: called with a one-line message after each chunk.

  Returns:
    The paths of the dataset files of ``task_indices`` for ``quality``.
  """
  from pdiff.data import behavior, storage  # behaviour imports Brax trainers

  if quality not in QUALITIES:
    raise ValueError(f"quality must be one of {QUALITIES}, got {quality!r}.")
  indices = list(range(family.num_tasks)) if task_indices is None else [
      int(i) for i in task_indices]
  paths = {i: storage.dataset_path(root, family.name, quality, i)
           for i in indices}
  todo = [i for i in indices if overwrite or not os.path.exists(paths[i])]
  if not todo:
    return [str(paths[i]) for i in indices]
  scripted = getattr(family, "scripted_behavior", None)
  if quality == "random":
    policy, source = None, "uniform random actions"
  elif scripted is not None and policy_dir is None:
    policy, source = scripted()  # e.g. Meta-World's scripted expert
  else:
    policy_dir = policy_dir or behavior.shipped_policy_dir(
        family.behavior_family, quality)
    policy, info = behavior.load_policy(policy_dir)
    if info.get("backend") not in (None, family.backend):
      raise ValueError(
          f"{policy_dir}/policy.json: backend {info.get('backend')!r} differs "
          f"from the family's backend {family.backend!r}; datasets must be "
          "collected on the backend the policy was trained on.")
    source = f"{info['algorithm']} policy {policy_dir} step {info.get('step')}"
  start = time.time()

  def on_chunk(done, total):
    if progress is not None:
      progress(f"{family.name}/{quality}: {done}/{total} tasks "
               f"({time.time() - start:.0f}s)")

  key = jax.random.fold_in(jax.random.key(seed), QUALITIES.index(quality))
  trajs = collect_tasks(family, policy, todo, num_trajectories, key,
                        action_noise=action_noise,
                        tasks_per_chunk=tasks_per_chunk, on_chunk=on_chunk)
  params = np.asarray(family.task_params)
  for index, t in trajs.items():
    dataset = storage.make_task_dataset(
        t, family=family.name, task_index=index,
        task_params=[float(v) for v in params[index]], quality=quality,
        source=source, seed=seed)
    storage.save_task_dataset(paths[index], dataset)
  return [str(paths[i]) for i in indices]


def collect_from_config(config, workdir: str, *, overwrite: bool = False,
                        progress=None) -> dict[str, list[str]]:
  """Collects every quality of ``config`` for the family's training and test
  tasks (``family.split_tasks``); returns the paths per quality."""
  from pdiff import envs

  family = envs.make(config.family, backend=config.backend)
  root = os.path.join(workdir, "datasets")
  noise = {"expert": config.expert_noise, "medium": config.medium_noise,
           "random": 0.0}
  from pdiff.data import storage

  complete = all(  # every file already there: nothing to collect or summarise
      os.path.exists(storage.dataset_path(root, family.name, q, i))
      for q in config.qualities for i in family.split_tasks)
  out = {}
  for quality in config.qualities:
    policy_dir = (os.path.join(config.policy_dir, quality)
                  if config.policy_dir else None)
    out[quality] = collect_family_datasets(
        family, quality, root, num_trajectories=config.num_trajectories,
        seed=config.seed, action_noise=noise.get(quality, 0.0), policy_dir=policy_dir,
        task_indices=family.split_tasks, overwrite=overwrite,
        tasks_per_chunk=config.tasks_per_chunk, progress=progress)
  summary_path = os.path.join(root, family.name, "returns.json")
  if not complete or not _summary_covers(summary_path, config.qualities):
    summary = dataset_return_summary(root, family, config.qualities)
    _write_json(summary_path, summary)
    if progress is not None:
      progress("mean return per task:\n" + return_summary_markdown(summary))
  return out


def _write_json(path: str, data) -> None:
  """Writes JSON through a temporary file and ``os.replace``."""
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(data, f, indent=1, sort_keys=True)
  os.replace(tmp, path)


def _summary_covers(path: str, qualities) -> bool:
  if not os.path.exists(path):
    return False
  with open(path) as f:
    return sorted(json.load(f)) == sorted(qualities)


def dataset_return_summary(root: str, family, qualities) -> dict:
  """``{quality: {task_index: mean return}}`` of the stored datasets of the
  family's training and test tasks (``family.split_tasks``)."""
  from pdiff.data import loading

  out = {}
  for quality in qualities:
    data = loading.load_family_datasets(root, family.name, quality,
                                        list(family.split_tasks))
    out[quality] = {}
    for index, d in data.items():
      t = d.trajectories
      valid = np.arange(t.rewards.shape[1])[None] < t.lengths[:, None]
      out[quality][index] = float((t.rewards * valid).sum(1).mean())
  return out


def return_summary_markdown(summary: dict) -> str:
  qualities = list(summary)
  tasks = sorted(next(iter(summary.values()))) if summary else []
  lines = ["| task | " + " | ".join(qualities) + " |",
           "|---|" + "---|" * len(qualities)]
  for t in tasks:
    lines.append(f"| {t} | " + " | ".join(f"{summary[q][t]:.1f}"
                                        for q in qualities) + " |")
  lines.append("| **mean** | " + " | ".join(
      f"{np.mean(list(summary[q].values())):.1f}" for q in qualities) + " |")
  return "\n".join(lines)
