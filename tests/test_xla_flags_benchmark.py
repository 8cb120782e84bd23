"""``benchmarks/xla_flags.py``: its measurement, comparison and environment."""

import os

import numpy as np
import pytest

from benchmarks import xla_flags


def test_measure_times_the_tuning_program_and_returns_its_prompts():
  timings, arrays = xla_flags.measure("dm_only", steps=2, num_tasks=2,
                                      repeats=2, tiny=True)
  assert timings["compile_s"] > 0 and timings["wall_s"] > 0
  assert timings["wall_s"] == min(timings["wall_s_runs"])
  assert len(timings["wall_s_runs"]) == 2
  assert timings["wall_ms_per_task_step"] == pytest.approx(
      timings["wall_s"] * 1e3 / 4)
  assert set(arrays) == {f"prompt_{f}" for f in (
      "states", "actions", "rewards", "returns_to_go", "timesteps", "mask")}
  assert arrays["prompt_states"].shape[:1] == (2,)  # one prompt per task
  assert xla_flags.compare(arrays, arrays) == (True, 0.0)


def test_compare_finds_a_difference_and_refuses_other_arrays():
  a = {"x": np.array([1.0, 2.0], np.float32)}
  b = {"x": np.array([1.0, 2.5], np.float32)}
  assert xla_flags.compare(a, b) == (False, 0.5)
  # -0.0 and 0.0 are equal numbers but not the same bits.
  assert xla_flags.compare({"x": np.array([0.0])},
                           {"x": np.array([-0.0])}) == (False, 0.0)
  with pytest.raises(ValueError, match="arrays"):
    xla_flags.compare(a, {"y": a["x"]})
  with pytest.raises(ValueError, match="float32"):
    xla_flags.compare(a, {"x": np.zeros(3, np.float32)})


def test_with_flag_appends_to_the_environment_flags():
  env = xla_flags.with_flag({"XLA_FLAGS": "--a=1", "PYTHONPATH": "/p"},
                            "--b=2")
  assert env["XLA_FLAGS"] == "--a=1 --b=2"
  assert env["PYTHONPATH"].split(os.pathsep) == [xla_flags.REPO, "/p"]
  assert "XLA_FLAGS" not in xla_flags.with_flag({}, None)


def test_summarise_keeps_the_fastest_round_and_every_difference():
  def measured(cpu, same=None, diff=None):
    m = {"accepted": True, "compile_s": 1.0, "wall_s": cpu / 2, "cpu_s": cpu,
         "wall_ms_per_task_step": cpu, "cpu_ms_per_task_step": 2 * cpu,
         "load_average_1min": 1.0}
    if same is not None:
      m.update(same_prompts=same, max_abs_diff=diff)
    return m

  base = xla_flags.summarise(None, [measured(4.0), measured(3.0, True, 0.0)],
                             None)
  assert (base["cpu_s"], base["same_prompts"], len(base["rounds"])) == (
      3.0, True, 2)
  row = xla_flags.summarise("--f", [measured(2.7, True, 0.0),
                                    measured(2.4, False, 1e-5)], base)
  assert row["cpu_s"] == 2.4 and row["cpu_vs_no_flag"] == pytest.approx(0.8)
  assert row["same_prompts"] is False and row["max_abs_diff"] == 1e-5
  assert xla_flags.summarise("--g", [{"accepted": False}], base) == {
      "flag": "--g", "accepted": False}


def test_importing_it_defines_no_flags_that_other_benchmarks_define():
  from absl import flags

  from benchmarks import tuning_profile  # noqa: F401 (defines "output")

  assert "output" in flags.FLAGS
  assert "rounds" not in flags.FLAGS  # defined by the script's __main__ only
