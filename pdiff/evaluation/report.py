"""Results: summaries over seeds, JSON, markdown tables and bar charts."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence

import numpy as np


def write_json_atomic(path: str, data) -> None:
  """Writes JSON through a temporary file and ``os.replace``."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".json")
  try:
    with os.fdopen(fd, "w") as f:
      json.dump(data, f, indent=1, sort_keys=True)
    os.chmod(tmp, 0o644)  # mkstemp's 0o600 would hide results from others
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def summarize(returns_by_seed: Sequence[Sequence[float]]) -> dict:
  """Per-seed mean returns over test tasks -> mean and std over seeds.

  Args:
    returns_by_seed: ``[num_seeds][num_tasks]`` mean return of each task.

  Returns:
    ``{"mean", "std", "per_seed", "per_task"}`` where ``per_seed`` is the
    average over tasks of each seed and ``per_task`` the average over seeds.
  """
  r = np.asarray(returns_by_seed, np.float64)
  if r.ndim != 2 or r.size == 0:
    raise ValueError(f"returns_by_seed must be [seeds, tasks], got {r.shape}.")
  per_seed = r.mean(axis=1)
  return dict(mean=float(per_seed.mean()), std=float(per_seed.std()),
              per_seed=per_seed.tolist(), per_task=r.mean(axis=0).tolist())


def markdown_table(rows: Mapping[str, dict], *, title: str = "",
                   task_labels: Sequence[str] | None = None) -> str:
  """A table of methods x (mean +- std over seeds, per-task means)."""
  head = ["method", "return (mean +- std over seeds)"]
  if task_labels:
    head += list(task_labels)
  lines = [f"### {title}", ""] if title else []
  lines += ["| " + " | ".join(head) + " |",
            "|" + "|".join("---" for _ in head) + "|"]
  for name, s in rows.items():
    cells = [name, f"{s['mean']:.1f} +- {s['std']:.1f}"]
    if task_labels:
      cells += [f"{v:.1f}" for v in s["per_task"]]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def save_bar_chart(path: str, rows: Mapping[str, dict], *, title: str) -> None:
  """Bar chart of mean +- std per method, saved as PNG."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  names = list(rows)
  means = [rows[n]["mean"] for n in names]
  stds = [rows[n]["std"] for n in names]
  fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(names), 3.6))
  ax.bar(range(len(names)), means, yerr=stds, capsize=4,
         color=[f"C{i}" for i in range(len(names))])
  ax.set_xticks(range(len(names)), names, rotation=20, ha="right")
  ax.set_ylabel("test return")
  ax.set_title(title)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = path + ".tmp.png"
  fig.savefig(tmp, dpi=120)
  plt.close(fig)
  os.replace(tmp, path)
