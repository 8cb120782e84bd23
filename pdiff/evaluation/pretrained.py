"""Evaluation of a pre-trained PLM on a family's train and test tasks."""

from __future__ import annotations

import json
import os
import time

import jax
import numpy as np

from pdiff.data import loading, samplers
from pdiff.evaluation.rollout import evaluate_tuned
from pdiff.models.policy import stack_tuned


def dataset_returns(trajs) -> float:
  """Mean undiscounted return of a dataset's trajectories."""
  t = np.arange(trajs.rewards.shape[1])[None]
  valid = t < np.asarray(trajs.lengths)[:, None]
  return float((np.asarray(trajs.rewards) * valid).sum(1).mean())


def evaluate_pretrained(plm, family, dataset_root: str, *, quality: str,
                        num_shots: int, num_episodes: int, seed: int,
                        splits=("train", "test")) -> dict:
  """Rolls the PLM out on each split's tasks with a few-shot prompt each.

  The prompt of a task is Prompt-DT's: the last ``K*`` steps of one of its
  first ``num_shots`` trajectories of ``quality``.

  Returns:
    ``{split: {"tasks", "return_mean", "return_std", "dataset_return",
    "seconds"}}`` with per-task lists; for a family with a success metric
    also ``"success_rate"``, the share of each task's episodes that
    succeeded, in ``[0, 1]``.
  """
  out = {}
  key = jax.random.key(seed)
  for split in splits:
    tasks = list(family.train_tasks if split == "train" else family.test_tasks)
    data = loading.load_family_datasets(dataset_root, family.name, quality,
                                        tasks)
    key, k_prompt, k_roll = jax.random.split(key, 3)
    tuned = stack_tuned([
        plm.few_shot_prompt(jax.random.fold_in(k_prompt, i),
                            samplers.few_shot_split(jax.tree.map(
                                np.asarray, data[i].trajectories), num_shots))
        for i in tasks])
    start = time.time()
    result = jax.device_get(evaluate_tuned(plm, family, tuned, tasks, k_roll,
                                           num_episodes=num_episodes))
    out[split] = dict(
        tasks=tasks, return_mean=np.asarray(result.mean).tolist(),
        return_std=np.asarray(result.std).tolist(),
        dataset_return=[dataset_returns(data[i].trajectories) for i in tasks],
        seconds=time.time() - start)
    if result.success_rate is not None:
      out[split]["success_rate"] = np.asarray(result.success_rate).tolist()
  return out


def markdown_report(results: dict, *, family: str, quality: str) -> str:
  lines = [f"## Prompt-DT on {family} (few-shot prompts from {quality} data)",
           ""]
  for split, r in results.items():
    success = r.get("success_rate")
    lines += [f"### {split} tasks", "",
              "| task | return (mean +- std over episodes) | "
              + ("success rate (%) | " if success is not None else "")
              + "dataset return |",
              "|---|---|" + ("---|" if success is not None else "") + "---|"]
    for i, (t, m, s, d) in enumerate(zip(
        r["tasks"], r["return_mean"], r["return_std"], r["dataset_return"],
        strict=True)):
      rate = "" if success is None else f" {100 * success[i]:.1f} |"
      lines.append(f"| {t} | {m:.1f} +- {s:.1f} |{rate} {d:.1f} |")
    rate = ("" if success is None
            else f" {100 * float(np.mean(success)):.1f} |")
    lines.append(f"| **mean** | {np.mean(r['return_mean']):.1f} |{rate} "
                 f"{np.mean(r['dataset_return']):.1f} |")
    lines.append("")
  return "\n".join(lines)


def write_report(results: dict, out_prefix: str, *, family: str,
                 quality: str) -> str:
  """Writes ``{out_prefix}.json`` and ``{out_prefix}.md``; returns the table."""
  from pdiff.evaluation.report import write_json_atomic

  write_json_atomic(out_prefix + ".json", results)
  md = markdown_report(results, family=family, quality=quality)
  with open(out_prefix + ".md.tmp", "w") as f:
    f.write(md)
  os.replace(out_prefix + ".md.tmp", out_prefix + ".md")
  return md


# Settings of a return curve: points measured with others do not mix.
CURVE_SETTINGS = ("family", "quality", "num_shots", "num_episodes", "seed",
                  "split")


def shortfall(plm_return: float, data_return: float) -> float:
  """How far the PLM trails its data, as a share of the data's return:
  ``(data - plm) / |data|`` (0 = level, 0.1 = 10% short; negative when the
  PLM does better)."""
  return (data_return - plm_return) / max(abs(data_return), 1e-8)


def return_curve(load_plm, steps, family, dataset_root: str, *, path: str,
                 quality: str, num_shots: int, num_episodes: int, seed: int,
                 split: str = "train", log=print) -> dict:
  """Return of a PLM's checkpoints on one split's tasks, against their data.

  Every checkpoint is evaluated as :func:`evaluate_pretrained` does, with the
  same seed, so the same prompts and keys at every step. ``path`` (JSON) is
  written after each point and read first: steps already measured with the
  same settings are not evaluated again, so a stopped curve resumes.

  Args:
    load_plm: ``step -> PretrainedPolicy`` (e.g. ``functools.partial(
      pdiff.training.pretrain.load_pretrained_policy, pretrain_dir)``).
    steps: checkpoint steps to evaluate.
    family: the PLM's task family.
    dataset_root: where the family's datasets are.
    path: the curve's JSON file.
    quality, num_shots, num_episodes, seed: as :func:`evaluate_pretrained`.
    split: ``"train"`` (choose steps, size and K on these) or ``"test"``.
    log: called with a line per evaluated point.

  Returns:
    ``{"settings": {...}, "points": [{"step", "return_mean",
    "dataset_return", "shortfall", "tasks", "task_returns", "seconds"}]}``,
    points in increasing step order.

  Raises:
    ValueError: if ``path`` holds a curve measured with other settings
      (naming the fields), or ``split`` is unknown.
  """
  from pdiff.evaluation.report import write_json_atomic  # noqa: PLC0415

  if split not in ("train", "test"):
    raise ValueError(f"return curve: split must be 'train' or 'test', got "
                     f"{split!r}.")
  settings = dict(family=family.name, quality=quality, num_shots=num_shots,
                  num_episodes=num_episodes, seed=seed, split=split)
  curve = dict(settings=settings, points=[])
  if os.path.exists(path):
    with open(path) as f:
      curve = json.load(f)
    old = curve.get("settings", {})
    differ = [k for k in CURVE_SETTINGS if old.get(k) != settings[k]]
    if differ:
      raise ValueError(
          f"{path}: a return curve measured with other settings ("
          + ", ".join(f"{k}: {old.get(k)!r}, now {settings[k]!r}"
                      for k in differ)
          + "); move it away or measure with its settings.")
  done = {p["step"] for p in curve["points"]}
  for step in steps:
    if int(step) in done:
      continue
    r = evaluate_pretrained(load_plm(int(step)), family, dataset_root,
                            quality=quality, num_shots=num_shots,
                            num_episodes=num_episodes, seed=seed,
                            splits=(split,))[split]
    ret = float(np.mean(r["return_mean"]))
    data = float(np.mean(r["dataset_return"]))
    curve["points"].append(dict(
        step=int(step), return_mean=ret, dataset_return=data,
        shortfall=shortfall(ret, data), tasks=r["tasks"],
        task_returns=r["return_mean"], seconds=r["seconds"]))
    curve["points"].sort(key=lambda p: p["step"])
    write_json_atomic(path, curve)
    log(f"step {step}: return {ret:.1f}, data {data:.1f} "
        f"({100 * shortfall(ret, data):.1f}% short), {r['seconds']:.0f} s")
  return curve


def curve_markdown(curve: dict) -> str:
  """A return curve as a markdown table."""
  s = curve["settings"]
  lines = [f"## Prompt-DT on {s['family']}'s {s['split']} tasks over "
           f"pre-training", "",
           f"Few-shot prompts from {s['quality']} data ({s['num_shots']} "
           f"shots), {s['num_episodes']} episodes per task, seed {s['seed']}; "
           "shortfall = (data - PLM) / |data|.", "",
           "| step | PLM return | data return | shortfall |",
           "|---:|---:|---:|---:|"]
  lines += [f"| {p['step']} | {p['return_mean']:.1f} | "
            f"{p['dataset_return']:.1f} | {100 * p['shortfall']:.1f}% |"
            for p in curve["points"]]
  return "\n".join(lines) + "\n"
