"""Tests of the result summaries, tables, JSON and charts."""

import json
import os

import numpy as np
import pytest

from pdiff.data.types import Trajectories
from pdiff.evaluation import pretrained, report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_summarize_matches_numpy():
  rng = np.random.default_rng(0)
  returns = rng.normal(size=(3, 5))  # [seeds, tasks]
  s = report.summarize(returns.tolist())
  per_seed = returns.mean(axis=1)
  np.testing.assert_allclose(s["per_seed"], per_seed, rtol=1e-12)
  np.testing.assert_allclose(s["per_task"], returns.mean(axis=0), rtol=1e-12)
  np.testing.assert_allclose(s["mean"], np.mean(per_seed), rtol=1e-12)
  np.testing.assert_allclose(s["std"], np.std(per_seed), rtol=1e-12)
  assert json.loads(json.dumps(s)) == s  # plain Python types only


def test_summarize_single_seed_has_zero_std():
  s = report.summarize([[1.0, 3.0]])
  assert (s["mean"], s["std"], s["per_task"]) == (2.0, 0.0, [1.0, 3.0])


@pytest.mark.parametrize("bad", [[], [1.0, 2.0], [[]], [[[1.0]]]])
def test_summarize_rejects_bad_shapes(bad):
  with pytest.raises(ValueError, match="returns_by_seed"):
    report.summarize(bad)


def test_markdown_table_contents():
  rows = {"prompt_dt": dict(mean=-10.04, std=1.26, per_task=[-9.0, -11.08]),
          "prompt_diffuser[projection]": dict(mean=-8.5, std=0.04,
                                              per_task=[-8.0, -9.0])}
  md = report.markdown_table(rows, title="point_robot",
                             task_labels=["task 2", "task 7"])
  lines = md.rstrip("\n").split("\n")
  assert lines[0] == "### point_robot"
  assert lines[2] == ("| method | return (mean +- std over seeds) | task 2 | "
                      "task 7 |")
  assert lines[3] == "|---|---|---|---|"
  assert lines[4] == "| prompt_dt | -10.0 +- 1.3 | -9.0 | -11.1 |"
  assert lines[5] == ("| prompt_diffuser[projection] | -8.5 +- 0.0 | -8.0 | "
                      "-9.0 |")
  assert len(lines) == 6
  # Without title and task labels: header and one row per method only.
  plain = report.markdown_table(rows).rstrip("\n").split("\n")
  assert plain[0] == "| method | return (mean +- std over seeds) |"
  assert len(plain) == 2 + len(rows)


def test_write_json_atomic_creates_dirs_and_leaves_no_tmp(tmp_path):
  path = tmp_path / "a" / "b" / "results.json"
  report.write_json_atomic(str(path), {"x": [1, 2.5], "y": "z"})
  assert json.loads(path.read_text()) == {"x": [1, 2.5], "y": "z"}
  report.write_json_atomic(str(path), {"x": 3})  # overwrite
  assert json.loads(path.read_text()) == {"x": 3}
  assert os.listdir(path.parent) == ["results.json"]
  # Readable by others, like a file written with open().
  assert os.stat(path).st_mode & 0o777 == 0o644


def test_write_json_atomic_failure_keeps_old_file(tmp_path):
  path = tmp_path / "results.json"
  report.write_json_atomic(str(path), {"ok": True})
  with pytest.raises(TypeError):
    report.write_json_atomic(str(path), {"bad": object()})
  assert json.loads(path.read_text()) == {"ok": True}
  assert os.listdir(tmp_path) == ["results.json"]


def test_save_bar_chart_writes_png(tmp_path):
  rows = {"a": dict(mean=-10.0, std=1.0), "b": dict(mean=-5.0, std=0.5)}
  path = tmp_path / "plots" / "returns.png"
  report.save_bar_chart(str(path), rows, title="returns")
  data = path.read_bytes()
  assert data.startswith(PNG_MAGIC) and len(data) > 1000
  assert os.listdir(path.parent) == ["returns.png"]


def _trajectories(rewards, lengths):
  rewards = np.asarray(rewards, np.float32)
  n, t = rewards.shape
  return Trajectories(
      observations=np.zeros((n, t, 2), np.float32),
      actions=np.zeros((n, t, 2), np.float32), rewards=rewards,
      dones=np.zeros((n, t), bool), timeouts=np.zeros((n, t), bool),
      lengths=np.asarray(lengths, np.int32))


def test_dataset_returns_ignores_padding():
  # Padding steps hold junk (7.0) that must not count.
  trajs = _trajectories([[1.0, 2.0, 7.0], [3.0, 7.0, 7.0]], [2, 1])
  assert pretrained.dataset_returns(trajs) == pytest.approx((3.0 + 3.0) / 2)


def test_markdown_report_rows_and_means():
  results = {"test": dict(tasks=[2, 7], return_mean=[-10.0, -20.0],
                          return_std=[1.0, 2.0], dataset_return=[-5.0, -6.0],
                          seconds=1.0)}
  md = pretrained.markdown_report(results, family="point_robot",
                                  quality="expert")
  assert md.startswith("## Prompt-DT on point_robot (few-shot prompts from "
                       "expert data)")
  assert "| 2 | -10.0 +- 1.0 | -5.0 |" in md
  assert "| 7 | -20.0 +- 2.0 | -6.0 |" in md
  assert "| **mean** | -15.0 | -5.5 |" in md
