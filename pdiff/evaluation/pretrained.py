"""Evaluation of a pre-trained PLM on a family's train and test tasks."""

from __future__ import annotations

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
