"""Tests of the statistics over seeds against values computed by hand."""

import json
import math

import numpy as np
import pytest

from pdiff.evaluation import statistics

T_975_2 = 4.3026527  # t_{0.975, 2}: 95% two-sided, 3 seeds
T_975_4 = 2.7764451  # t_{0.975, 4}: 95% two-sided, 5 seeds

# Three seeds x two tasks. Per-seed task means of the baseline are
# [13, 14, 14.5]; ``flat`` adds [[2, 2], [1, 1], [2, 5]] (per-seed
# differences [2, 1, 3.5]); ``up`` adds [[3, 1], [4, 2], [3, 3]] (per-seed
# differences [2, 3, 3]); ``down`` subtracts the same.
BASE = [[8.0, 18.0], [11.0, 17.0], [9.0, 20.0]]
FLAT = [[10.0, 20.0], [12.0, 18.0], [11.0, 25.0]]
UP = [[11.0, 19.0], [15.0, 19.0], [12.0, 23.0]]
DOWN = [[5.0, 17.0], [7.0, 15.0], [6.0, 17.0]]


def strict(data):
  """Round trip through strict JSON (no NaN or Infinity)."""
  return json.loads(json.dumps(data, allow_nan=False))


def test_t_quantile_known_values():
  assert statistics.t_quantile(0.95, 4) == pytest.approx(T_975_4, abs=1e-7)
  assert statistics.t_quantile(0.95, 2) == pytest.approx(T_975_2, abs=1e-7)
  with pytest.raises(ValueError, match="dof"):
    statistics.t_quantile(0.95, 0)
  with pytest.raises(ValueError, match="confidence"):
    statistics.t_quantile(1.0, 3)


def test_summarize_five_seeds_by_hand():
  # Per-seed task means 1..5: mean 3, ddof=1 variance (4+1+0+1+4)/4 = 2.5.
  returns = [[0.0, 2.0], [1.0, 3.0], [2.0, 4.0], [3.0, 5.0], [4.0, 6.0]]
  s = statistics.summarize(returns)
  assert s == strict(s)
  assert s["num_seeds"] == 5 and s["num_tasks"] == 2
  assert s["confidence"] == 0.95
  assert s["per_seed"] == pytest.approx([1.0, 2.0, 3.0, 4.0, 5.0])
  assert s["mean"] == pytest.approx(3.0)
  assert s["std"] == pytest.approx(math.sqrt(2.5))
  assert s["sem"] == pytest.approx(math.sqrt(0.5))
  half = T_975_4 * math.sqrt(0.5)  # 1.9632...
  assert s["ci_low"] == pytest.approx(3.0 - half, abs=1e-6)
  assert s["ci_high"] == pytest.approx(3.0 + half, abs=1e-6)
  assert s["per_task"] == pytest.approx([2.0, 4.0])
  assert s["per_task_std"] == pytest.approx([math.sqrt(2.5)] * 2)


def test_summarize_other_confidence_is_wider():
  returns = [[0.0, 2.0], [1.0, 3.0], [2.0, 4.0], [3.0, 5.0], [4.0, 6.0]]
  s = statistics.summarize(returns, confidence=0.99)
  # t_{0.995, 4} = 4.6040949.
  assert s["ci_high"] - 3.0 == pytest.approx(4.6040949 * math.sqrt(0.5),
                                             abs=1e-6)
  assert s["confidence"] == 0.99


def test_summarize_one_seed_gives_none_not_nan():
  s = statistics.summarize([[1.0, 3.0]])
  assert s == strict(s)
  assert s["mean"] == 2.0 and s["per_task"] == [1.0, 3.0]
  for key in ("std", "sem", "ci_low", "ci_high", "per_task_std"):
    assert s[key] is None, key


@pytest.mark.parametrize("bad", [[], [1.0, 2.0], [[]], [[[1.0]]]])
def test_summarize_rejects_bad_shapes(bad):
  with pytest.raises(ValueError, match="returns_by_seed"):
    statistics.summarize(bad)


def test_summarize_rejects_non_finite():
  with pytest.raises(ValueError, match="non-finite"):
    statistics.summarize([[1.0, float("nan")], [2.0, 3.0]])


def test_paired_difference_three_seeds_two_tasks_by_hand():
  p = statistics.paired_difference(FLAT, BASE)
  assert p == strict(p)
  # d = [2, 1, 3.5]: mean 13/6, ddof=1 variance 19/12, SE sqrt(19)/6.
  assert p["per_seed"] == pytest.approx([2.0, 1.0, 3.5])
  assert p["mean"] == pytest.approx(13 / 6)
  assert p["std"] == pytest.approx(math.sqrt(19 / 12))
  assert p["sem"] == pytest.approx(math.sqrt(19) / 6)
  half = T_975_2 * math.sqrt(19) / 6  # 3.1258
  assert p["ci_low"] == pytest.approx(13 / 6 - half, abs=1e-6)
  assert p["ci_high"] == pytest.approx(13 / 6 + half, abs=1e-6)
  assert p["significant"] is False and p["num_seeds"] == 3
  # Per task: [2, 1, 2] (mean 5/3, variance 1/3) and [2, 1, 5] (mean 8/3,
  # variance 13/3).
  assert p["per_task_mean"] == pytest.approx([5 / 3, 8 / 3])
  assert p["per_task_std"] == pytest.approx([math.sqrt(1 / 3),
                                             math.sqrt(13 / 3)])
  half_k = [T_975_2 * math.sqrt(1 / 9), T_975_2 * math.sqrt(13 / 9)]
  assert p["per_task_ci_low"] == pytest.approx(
      [5 / 3 - half_k[0], 8 / 3 - half_k[1]], abs=1e-6)
  assert p["per_task_ci_high"] == pytest.approx(
      [5 / 3 + half_k[0], 8 / 3 + half_k[1]], abs=1e-6)


def test_paired_difference_significant_both_ways():
  # d = [2, 3, 3]: mean 8/3, variance 1/3, SE 1/3; CI [1.23, 4.10].
  up = statistics.paired_difference(UP, BASE)
  assert up["mean"] == pytest.approx(8 / 3)
  assert up["ci_low"] == pytest.approx(8 / 3 - T_975_2 / 3, abs=1e-6)
  assert up["significant"] is True
  down = statistics.paired_difference(DOWN, BASE)
  assert down["ci_high"] == pytest.approx(-8 / 3 + T_975_2 / 3, abs=1e-6)
  assert down["significant"] is True
  # A method against itself: zero difference, zero spread, not significant.
  same = statistics.paired_difference(BASE, BASE)
  assert (same["mean"], same["std"], same["significant"]) == (0.0, 0.0, False)


def test_paired_difference_one_seed():
  p = statistics.paired_difference([[3.0, 5.0]], [[1.0, 2.0]])
  assert p == strict(p)
  assert p["mean"] == 2.5 and p["per_task_mean"] == [2.0, 3.0]
  for key in ("std", "sem", "ci_low", "ci_high", "significant",
              "per_task_std", "per_task_ci_low", "per_task_ci_high"):
    assert p[key] is None, key


def test_paired_difference_shape_mismatch_names_both_shapes():
  with pytest.raises(ValueError, match=r"method \(3, 2\) vs baseline \(2, 2\)"):
    statistics.paired_difference(FLAT, BASE[:2])


def test_difference_standard_error_one_pair_is_the_paired_sem():
  d = statistics.difference_standard_error({"a": BASE, "b": FLAT})
  assert d == strict(d)
  assert d["difference_se"] == pytest.approx(math.sqrt(19) / 6)
  assert d["min_resolvable_difference"] == pytest.approx(
      T_975_2 * math.sqrt(19) / 6, abs=1e-6)
  assert (d["num_pairs"], d["num_seeds"], d["confidence"]) == (3 - 2, 3, 0.95)


def test_difference_standard_error_pools_all_pairs():
  # Pair variances of the per-seed differences: base-up 1/3, base-flat
  # 19/12, up-flat ([0, -2, 0.5]) 7/4; their mean is 11/9.
  d = statistics.difference_standard_error(
      {"base": BASE, "up": UP, "flat": FLAT})
  assert d["num_pairs"] == 3
  assert d["difference_se"] == pytest.approx(math.sqrt(11 / 9 / 3))
  assert d["min_resolvable_difference"] == pytest.approx(
      T_975_2 * math.sqrt(11 / 27), abs=1e-6)


def test_difference_standard_error_undefined_cases():
  one_seed = statistics.difference_standard_error({"a": BASE[:1],
                                                   "b": FLAT[:1]})
  one_method = statistics.difference_standard_error({"a": BASE})
  for d in (one_seed, one_method):
    assert d == strict(d)
    assert d["difference_se"] is None
    assert d["min_resolvable_difference"] is None
  assert one_method["num_pairs"] == 0
  with pytest.raises(ValueError, match=r"'a': \(3, 2\).*'b': \(2, 2\)"):
    statistics.difference_standard_error({"a": BASE, "b": FLAT[:2]})


@pytest.mark.parametrize("x, kwargs, text", [
    (1.25, {}, "1.2"), (-84.94, {}, "-84.9"), (-0.04, {}, "0.0"),
    (-0.04, dict(sign=True), "+0.0"), (2.16, dict(sign=True), "+2.2"),
    (-2.16, dict(sign=True), "-2.2"), (0.726, dict(digits=2), "0.73"),
    (None, {}, "n/a")])
def test_format_number(x, kwargs, text):
  assert statistics.format_number(x, **kwargs) == text


def test_format_percent():
  assert statistics.format_percent(2 / 3) == "66.7"
  assert statistics.format_percent(1.0) == "100.0"
  assert statistics.format_percent(0.0) == "0.0"
  assert statistics.format_percent(0.12345, digits=2) == "12.35"
  assert statistics.format_percent(None) == "n/a"


def test_format_interval_and_confidence_label():
  assert statistics.format_interval(-0.959, 5.292) == "[-1.0, 5.3]"
  assert statistics.format_interval(None, None) == "n/a"
  assert statistics.confidence_label(0.95) == "95%"
  assert statistics.confidence_label(0.995) == "99.5%"


def rows_of(per_method, baseline="prompt_dt"):
  """Rows as the report builds them: summary plus ``paired``."""
  rows = {k: statistics.summarize(v) for k, v in per_method.items()}
  if baseline in per_method:
    for k in rows:
      if k != baseline:
        rows[k]["paired"] = statistics.paired_difference(
            per_method[k], per_method[baseline])
  return rows


# Differences to the baseline quoted in the sentences, from the values
# above: flat 13/6 -+ 3.1258, up 8/3 -+ 1.4342, down -8/3 -+ 1.4342.
FLAT_Q = "(+2.2, CI [-1.0, 5.3])"
UP_Q = "(+2.7, CI [1.2, 4.1])"
DOWN_Q = "(-2.7, CI [-4.1, -1.2])"


@pytest.mark.parametrize("methods, sentence", [
    (dict(flat=FLAT),
     "At 95% confidence over 3 seeds, no method differs from prompt_dt; the "
     f"interval of flat {FLAT_Q} includes 0."),
    (dict(flat=FLAT, flat2=FLAT),
     "At 95% confidence over 3 seeds, no method differs from prompt_dt; the "
     f"intervals of flat {FLAT_Q} and flat2 {FLAT_Q} include 0."),
    (dict(up=UP),
     f"At 95% confidence over 3 seeds, up is above prompt_dt {UP_Q}."),
    (dict(up=UP, flat=FLAT),
     f"At 95% confidence over 3 seeds, up is above prompt_dt {UP_Q}; flat "
     f"{FLAT_Q} does not differ from it."),
    (dict(down=DOWN, flat=FLAT, up=UP, flat2=FLAT),
     f"At 95% confidence over 3 seeds, down is below prompt_dt {DOWN_Q} and "
     f"up is above it {UP_Q}; flat {FLAT_Q} and flat2 {FLAT_Q} do not differ "
     "from it."),
])
def test_significance_sentence(methods, sentence):
  rows = rows_of(dict(prompt_dt=BASE, **methods))
  assert statistics.significance_sentence(rows) == sentence


def test_significance_sentence_without_a_test():
  assert statistics.significance_sentence(rows_of({"a": BASE})) == (
      "There is no baseline (prompt_dt) among the methods, so no difference "
      "is tested.")
  assert statistics.significance_sentence(rows_of({"prompt_dt": BASE})) == (
      "prompt_dt is the only method, so no difference is tested.")
  one_seed = rows_of({"prompt_dt": BASE[:1], "flat": FLAT[:1]})
  assert statistics.significance_sentence(one_seed) == (
      "With 1 seed no difference to prompt_dt can be tested.")
  # Another baseline label.
  rows = rows_of({"ref": BASE, "up": UP}, baseline="ref")
  assert statistics.significance_sentence(rows, baseline="ref") == (
      f"At 95% confidence over 3 seeds, up is above ref {UP_Q}.")


def test_outputs_are_plain_python():
  rows = rows_of({"prompt_dt": np.asarray(BASE, np.float32),
                  "flat": np.asarray(FLAT, np.float32)})
  for row in rows.values():
    assert row == strict(row)
    assert isinstance(row["mean"], float) and isinstance(row["num_seeds"], int)
