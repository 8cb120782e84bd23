"""Tests of the result summaries, tables, JSON and charts."""

import json
import math
import os

import numpy as np
import pytest

from pdiff.evaluation import pretrained, report
from pdiff.types import Trajectories

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


T_975_2 = 4.3026527  # t_{0.975, 2}: 95% two-sided, 3 seeds
# Three seeds x two tasks; per-seed task means [13, 14, 14.5] and [15, 15,
# 18], so the differences are [2, 1, 3.5] (mean 13/6, SE sqrt(19)/6).
BASE = [[8.0, 18.0], [11.0, 17.0], [9.0, 20.0]]
FLAT = [[10.0, 20.0], [12.0, 18.0], [11.0, 25.0]]


def strict(data):
  """Round trip through strict JSON (no NaN or Infinity)."""
  return json.loads(json.dumps(data, allow_nan=False))


def test_summarize_matches_numpy():
  rng = np.random.default_rng(0)
  returns = rng.normal(size=(3, 5))  # [seeds, tasks]
  s = report.summarize(returns.tolist())
  per_seed = returns.mean(axis=1)
  np.testing.assert_allclose(s["per_seed"], per_seed, rtol=1e-12)
  np.testing.assert_allclose(s["per_task"], returns.mean(axis=0), rtol=1e-12)
  np.testing.assert_allclose(s["mean"], np.mean(per_seed), rtol=1e-12)
  np.testing.assert_allclose(s["std"], np.std(per_seed, ddof=1), rtol=1e-12)
  assert s == strict(s)  # plain Python types only


def test_summarize_single_seed_has_no_std():
  s = report.summarize([[1.0, 3.0]])
  assert (s["mean"], s["per_task"]) == (2.0, [1.0, 3.0])
  assert (s["std"], s["sem"], s["ci_low"], s["ci_high"]) == (None,) * 4
  assert s == strict(s)


@pytest.mark.parametrize("bad", [[], [1.0, 2.0], [[]], [[[1.0]]]])
def test_summarize_rejects_bad_shapes(bad):
  with pytest.raises(ValueError, match="returns_by_seed"):
    report.summarize(bad)


def test_summarize_methods_rows_and_statistics():
  out = report.summarize_methods({"prompt_dt": BASE, "flat": FLAT})
  assert out == strict(out)
  assert list(out["methods"]) == ["prompt_dt", "flat"]
  assert "paired" not in out["methods"]["prompt_dt"]
  paired = out["methods"]["flat"]["paired"]
  assert paired["baseline"] == "prompt_dt"
  assert paired["mean"] == pytest.approx(13 / 6)
  assert paired["sem"] == pytest.approx(math.sqrt(19) / 6)
  assert paired["significant"] is False
  stats = out["statistics"]
  assert sorted(stats) == ["baseline", "confidence", "difference_se",
                           "min_resolvable_difference", "num_pairs",
                           "num_seeds", "sentence"]
  assert (stats["baseline"], stats["num_seeds"], stats["num_pairs"]) == (
      "prompt_dt", 3, 1)
  assert stats["difference_se"] == pytest.approx(math.sqrt(19) / 6)
  assert stats["min_resolvable_difference"] == pytest.approx(
      T_975_2 * math.sqrt(19) / 6, abs=1e-6)
  assert stats["sentence"].startswith(
      "At 95% confidence over 3 seeds, no method differs from prompt_dt;")
  # The pipeline adds its timings to a row; the table still renders.
  out["methods"]["flat"]["tune_seconds"] = [1.0, 2.0, 3.0]
  assert "| flat | " in report.markdown_table(out["methods"])


def test_summarize_methods_without_baseline():
  out = report.summarize_methods({"a": BASE, "b": FLAT})
  assert out == strict(out)
  assert all("paired" not in row for row in out["methods"].values())
  assert out["statistics"]["baseline"] is None
  assert out["statistics"]["difference_se"] == pytest.approx(
      math.sqrt(19) / 6)
  assert out["statistics"]["sentence"] == (
      "There is no baseline (prompt_dt) among the methods, so no difference "
      "is tested.")
  md = report.markdown_table(out["methods"])
  assert md.split("\n")[0] == ("| method | return (mean +- std, 3 seeds) | "
                                "95% CI |")


def test_markdown_table_contents():
  rows = report.summarize_methods({"prompt_dt": BASE, "flat": FLAT})["methods"]
  md = report.markdown_table(rows, title="point_robot",
                             task_labels=["task 2", "task 7"])
  lines = md.rstrip("\n").split("\n")
  assert lines[0] == "### point_robot"
  assert lines[2] == ("| method | return (mean +- std, 3 seeds) | 95% CI | "
                      "difference to prompt_dt [95% CI] | task 2 | task 7 |")
  assert lines[3] == "|---|---|---|---|---|---|"
  # prompt_dt: mean 41.5/3, std sqrt(7/12) = 0.76, CI -+ 4.3027 * 0.441.
  assert lines[4] == ("| prompt_dt | 13.8 +- 0.8 | [11.9, 15.7] | baseline | "
                      "9.3 | 18.3 |")
  # flat: mean 16, std sqrt(3), SE 1, CI 16 -+ 4.3027; difference 13/6 -+
  # 3.1258.
  assert lines[5] == ("| flat | 16.0 +- 1.7 | [11.7, 20.3] | +2.2 [-1.0, 5.3] "
                      "| 11.0 | 21.0 |")
  assert len(lines) == 6
  # Without title and task labels: header and one row per method only.
  plain = report.markdown_table(rows).rstrip("\n").split("\n")
  assert plain[0] == ("| method | return (mean +- std, 3 seeds) | 95% CI | "
                      "difference to prompt_dt [95% CI] |")
  assert len(plain) == 2 + len(rows)


def test_markdown_table_one_seed_says_na():
  rows = report.summarize_methods({"prompt_dt": BASE[:1],
                                   "flat": FLAT[:1]})["methods"]
  lines = report.markdown_table(rows).rstrip("\n").split("\n")
  assert lines[0] == ("| method | return (mean +- std, 1 seed) | 95% CI | "
                      "difference to prompt_dt [95% CI] |")
  assert lines[2] == "| prompt_dt | 13.0 +- n/a | n/a | baseline |"
  assert lines[3] == "| flat | 15.0 +- n/a | n/a | +2.0 [n/a] |"


def test_markdown_table_extra_columns_and_mixed_seeds():
  rows = {"a": report.summarize(BASE), "b": report.summarize(FLAT[:2])}
  rows["a"]["tune_seconds"] = [1.0, 2.0, 3.0]
  rows["b"]["tune_seconds"] = [4.0, 5.0]
  md = report.markdown_table(rows, extra_columns={
      "tune s": lambda r: f"{sum(r['tune_seconds']):.0f}"})
  lines = md.rstrip("\n").split("\n")
  assert lines[0] == ("| method | return (mean +- std over seeds) | 95% CI | "
                      "tune s |")
  assert lines[2].startswith("| a | 13.8 +- 0.8 (n=3) | [11.9, 15.7] | 6 |")
  assert lines[3].startswith("| b | 15.0 +- 0.0 (n=2) | [15.0, 15.0] | 9 |")


def results_dict(per_method, seeds):
  return dict(family="point_robot", test_tasks=[2, 7], num_shots=5,
              few_shot_quality="expert", seeds=seeds,
              **report.summarize_methods(per_method))


def test_results_table_markdown():
  results = results_dict({"prompt_dt": BASE, "flat": FLAT}, [0, 1, 2])
  assert results == strict(results)
  md = report.results_table_markdown(results)
  lines = md.rstrip("\n").split("\n")
  assert lines[0] == ("### point_robot: test-task return, 5-shot expert data, "
                      "3 seeds")
  assert lines[2] == ("| method | return (mean +- std, 3 seeds) | 95% CI | "
                      "difference to prompt_dt [95% CI] | task 2 | task 7 |")
  assert lines[5] == ("| flat | 16.0 +- 1.7 | [11.7, 20.3] | +2.2 [-1.0, 5.3] "
                      "| 11.0 | 21.0 |")
  assert lines[6] == ""
  caption = lines[7]
  assert caption.startswith("Mean over 3 seeds of the task-averaged test "
                            "return, +- its std over seeds (ddof=1); the 95% "
                            "CI is the Student-t interval over seeds; "
                            "differences to prompt_dt are paired by seed")
  # SE sqrt(19)/6 = 0.726, times t_{0.975, 2}: 3.126.
  assert caption.endswith(
      "The standard error of a difference between two rows is 0.73 (the only "
      "pair of rows), so with 3 seeds a difference below 3.13 is not "
      "resolvable at 95% confidence.")
  assert lines[8] == ""
  assert lines[9] == (
      "At 95% confidence over 3 seeds, no method differs from prompt_dt; the "
      "interval of flat (+2.2, CI [-1.0, 5.3]) includes 0.")
  assert len(lines) == 10
  assert report.results_table_markdown(strict(results)) == md


def test_results_table_markdown_pools_pairs_and_one_seed():
  three = results_dict({"prompt_dt": BASE, "flat": FLAT, "b": BASE},
                       [0, 1, 2])
  assert "(pooled over the 3 pairs of rows)" in (
      report.results_table_markdown(three))
  one = results_dict({"prompt_dt": BASE[:1], "flat": FLAT[:1]}, [0])
  assert one == strict(one)
  md = report.results_table_markdown(one)
  assert md.startswith("### point_robot: test-task return, 5-shot expert "
                       "data, 1 seed\n")
  assert "| flat | 15.0 +- n/a | n/a | +2.0 [n/a] | 10.0 | 20.0 |" in md
  assert ("With 1 seed the standard error of a difference between two rows "
          "cannot be estimated (n/a).") in md
  assert md.endswith("With 1 seed no difference to prompt_dt can be "
                     "tested.\n")


# Success rates of the same seeds and tasks, in [0, 1].
BASE_SUCCESS = [[0.5, 1.0], [0.25, 0.75], [0.5, 1.0]]
FLAT_SUCCESS = [[1.0, 1.0], [0.75, 1.0], [1.0, 1.0]]


def test_rows_without_success_rates_have_no_column():
  results = results_dict({"prompt_dt": BASE, "flat": FLAT}, [0, 1, 2])
  assert not any("success_rate" in r for r in results["methods"].values())
  assert not report.has_success(results["methods"])
  md = report.results_table_markdown(results)
  assert "success" not in md


def test_success_rate_column_beside_the_return():
  per_method = {"prompt_dt": BASE, "flat": FLAT, "other": BASE}
  results = dict(family="metaworld_reach", test_tasks=[2, 7], num_shots=5,
                 few_shot_quality="expert", seeds=[0, 1, 2],
                 **report.summarize_methods(
                     per_method, success_rates={"prompt_dt": BASE_SUCCESS,
                                                "flat": FLAT_SUCCESS}))
  assert results == strict(results)
  rows = results["methods"]
  rate = rows["prompt_dt"]["success_rate"]
  # Task means per seed 0.75, 0.5, 0.75: mean 2/3; per task 5/12 and 11/12.
  assert rate["mean"] == pytest.approx(2 / 3)
  np.testing.assert_allclose(rate["per_seed"], [0.75, 0.5, 0.75])
  np.testing.assert_allclose(rate["per_task"], [5 / 12, 11 / 12])
  assert rows["flat"]["success_rate"]["mean"] == pytest.approx(23 / 24)
  assert "success_rate" not in rows["other"]
  # The returns' figures do not depend on the success rates.
  plain = report.summarize_methods(per_method)
  for label, row in rows.items():
    assert {k: v for k, v in row.items() if k != "success_rate"} == (
        plain["methods"][label])
  lines = report.results_table_markdown(results).rstrip("\n").split("\n")
  assert lines[2] == ("| method | return (mean +- std, 3 seeds) | 95% CI | "
                      "success rate (%) | difference to prompt_dt [95% CI] | "
                      "task 2 | task 7 |")
  assert lines[4] == ("| prompt_dt | 13.8 +- 0.8 | [11.9, 15.7] | 66.7 | "
                      "baseline | 9.3 | 18.3 |")
  assert lines[5] == ("| flat | 16.0 +- 1.7 | [11.7, 20.3] | 95.8 | "
                      "+2.2 [-1.0, 5.3] | 11.0 | 21.0 |")
  assert lines[6].startswith("| other | 13.8 +- 0.8 | [11.9, 15.7] | n/a | ")
  caption = lines[8]
  assert (" The success rate is the share of episodes in which the success "
          "flag was set at any step (Meta-World's convention), averaged over "
          "tasks and then over seeds, in %. ") in caption
  assert report.results_table_markdown(strict(results)) == (
      report.results_table_markdown(results))
  with pytest.raises(ValueError, match="missing"):
    report.summarize_methods(per_method, success_rates={"missing": BASE})


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


@pytest.mark.parametrize("seeds", [3, 1])
def test_save_bar_chart_writes_png(tmp_path, seeds):
  rows = report.summarize_methods({"a": BASE[:seeds],
                                   "b": FLAT[:seeds]})["methods"]
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
  assert "success" not in md
  results["test"]["success_rate"] = [0.5, 0.25]
  md = pretrained.markdown_report(results, family="metaworld_reach",
                                  quality="expert")
  assert ("| task | return (mean +- std over episodes) | success rate (%) | "
          "dataset return |\n|---|---|---|---|") in md
  assert "| 2 | -10.0 +- 1.0 | 50.0 | -5.0 |" in md
  assert "| **mean** | -15.0 | 37.5 | -5.5 |" in md


def test_method_columns_describe_each_method():
  rows = {
      "prompt_dt": dict(trainable_parameters=0, parameter_share=0.0,
                        information="few-shot", tune_seconds=[0.5, 1.5]),
      "oracle_prompt": dict(trainable_parameters=0, parameter_share=0.0,
                            information="full dataset + 20 online episodes",
                            diagnostic=True, tune_seconds=[3.0, 5.0]),
      "adaptor": dict(trainable_parameters=1234, parameter_share=0.01234,
                      information="few-shot", tune_seconds=[2.0, 2.0]),
  }
  columns = report.method_columns(rows)
  cells = {k: [f(r) for r in rows.values()] for k, f in columns.items()}
  assert cells["trained params (share of PLM)"] == ["0", "0", "1,234 (1.23%)"]
  assert cells["information"] == [
      "few-shot", "full dataset + 20 online episodes (diagnostic)",
      "few-shot"]
  assert cells["tuning s / seed"] == ["1.0", "4.0", "2.0"]
  assert report.method_columns({"x": {"mean": 1.0}}) == {}


def test_results_table_keeps_row_order_of_a_sorted_json_file():
  rows = report.summarize_methods({"prompt_dt": [[1.0, 2.0], [2.0, 3.0]],
                                   "b_method": [[2.0, 2.0], [3.0, 3.0]]})
  results = dict(methods=rows["methods"], statistics=rows["statistics"],
                 test_tasks=[0, 1], row_order=["prompt_dt", "b_method"])
  reloaded = json.loads(json.dumps(results, sort_keys=True))
  md = report.results_table_markdown(reloaded)
  assert md.index("| prompt_dt |") < md.index("| b_method |")
