"""``benchmarks/tuning_profile.py``'s bookkeeping: compile spans, reading a
table's run files, and the comparison of measurements."""

import json

import pytest

from benchmarks import tuning_profile


@pytest.mark.parametrize("spans,expected", [
    ([], 0.0),
    ([(0.0, 1.0)], 1.0),
    ([(0.0, 1.0), (2.0, 3.5)], 2.5),
    ([(0.0, 2.0), (1.0, 3.0)], 3.0),  # overlapping: counted once
    ([(1.0, 3.0), (0.0, 4.0)], 4.0),  # nested, in any order
])
def test_union_seconds(spans, expected):
  assert tuning_profile.union_seconds(spans) == pytest.approx(expected)


def test_run_files_returns_reads_every_row_and_seed(tmp_path):
  for label, seed, means in [("prompt_dt", 1, [1.0, 2.0]),
                             ("prompt_dt", 0, [3.0, 4.0]),
                             ("prompt_diffuser[sum]", 0, [5.0, 6.0])]:
    directory = tmp_path / "results" / "runs" / label
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / f"seed{seed}-abc.json", "w") as f:
      json.dump({"method": label, "seed": seed, "task_means": means}, f)
  out = tuning_profile.run_files_returns(str(tmp_path))
  assert out == {"prompt_dt": {"0": [3.0, 4.0], "1": [1.0, 2.0]},
                 "prompt_diffuser[sum]": {"0": [5.0, 6.0]}}
  assert list(out["prompt_dt"]) == ["0", "1"]  # seeds in order


def measurement(label, loop_s, returns, digests=None, threads=1):
  m = {"label": label, "loop_s": loop_s, "loop_compile_s": 1.0,
       "loop_cpu_s": 2 * loop_s, "threads": threads,
       "load_average_before": [0.5, 0.5, 0.5], "returns": returns}
  if digests is not None:
    m["prompt_digests"] = digests
  return m


def test_compare_ratios_to_before_and_agreement():
  same = {"prompt_dt": {"0": [1.0]}}
  out = tuning_profile.compare([
      measurement("before", 400.0, same, {"a": "x"}),
      measurement("before", 200.0, same, {"a": "x"}),
      measurement("after", 150.0, same, threads=2),
      measurement("after", 100.0, same, {"a": "x"})])
  assert out["labels"]["before"]["mean_loop_s"] == 300.0
  assert out["labels"]["after"]["speedup_vs_before"] == [2.0, 3.0]
  assert out["labels"]["after"]["threads"] == [2, 1]
  assert out["same_returns"] and out["same_prompts"]
  assert out["prompts_compared"] == 3


def test_compare_flags_different_returns_and_prompts():
  out = tuning_profile.compare([
      measurement("before", 10.0, {"r": {"0": [1.0]}}, {"a": "x"}),
      measurement("after", 5.0, {"r": {"0": [1.5]}}, {"a": "y"})])
  assert not out["same_returns"]
  assert not out["same_prompts"]


def test_compare_without_before_has_no_ratios():
  out = tuning_profile.compare([measurement("current", 10.0, {})])
  assert "speedup_vs_before" not in out["labels"]["current"]
  assert out["labels"]["current"]["mean_loop_s"] == 10.0
