"""The paper's experiments (``pdiff.pipeline.paper``) with the ``tiny``
preset on point_robot: Tables 1 to 3, the ablation, resumption; and the
table's normalised score and ordering sentence on a hand-made results
dict."""

import json
import math
import os
import pathlib

import numpy as np
import pytest

from experiments.configs import paper as paper_configs
from pdiff.data import collect
from pdiff.evaluation import report
from pdiff.pipeline import paper, tuning_runs

# One worker runs this module, so its shared runs are computed once.
pytestmark = pytest.mark.xdist_group("pipeline")

TABLE1_METHODS = ("prompt_dt", "prompt_diffuser", "upper_bound")
# The modes' rows, then the row of pdiff's named setting (the default).
SETTING_LABEL = "prompt_diffuser[evaluation_returns_scale_10]"
ABLATION_LABELS = tuple(f"prompt_diffuser[{m}]"
                        for m in paper_configs.ABLATION_MODES) + (SETTING_LABEL,)
TABLE1_LABELS = ("prompt_dt", *ABLATION_LABELS, "upper_bound")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def table1_config():
  """Table 1's tiny config with fewer methods, and the ablation's modes: the
  ablation then finds every run it needs, which keeps the module's compile
  time down."""
  c = paper_configs.get_config("table1,tiny")
  c.methods = TABLE1_METHODS
  c.modes = paper_configs.ABLATION_MODES
  return c


def forbid_computing(monkeypatch):
  """Makes tuning, rollouts and data collection fail the test."""
  def forbidden(*args, **kwargs):
    raise AssertionError("a resumed experiment must not compute anything")

  monkeypatch.setattr(tuning_runs, "tune_and_evaluate", forbidden)
  monkeypatch.setattr(collect, "collect_tasks", forbidden)


def strict_json(path):
  def reject(token):
    raise ValueError(f"{path}: non-standard JSON constant {token}")
  with open(path) as f:
    return json.load(f, parse_constant=reject)


def outputs(workdir, experiment):
  """The experiment's JSON and markdown; checks that the PNG is one."""
  base = os.path.join(workdir, "paper", experiment)
  with open(base + ".png", "rb") as f:
    assert f.read(8) == PNG_MAGIC
  with open(base + ".md") as f:
    return strict_json(base + ".json"), f.read()


def run_times(workdir):
  """``{path: mtime_ns}`` of point_robot's per-seed run records."""
  root = os.path.join(workdir, "point_robot", "results", "runs")
  return {os.path.join(d, n): os.stat(os.path.join(d, n)).st_mtime_ns
          for d, _, names in os.walk(root) for n in names}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("paper"))


@pytest.fixture(scope="module")
def table1(workdir):
  return paper.run_experiment(table1_config(), workdir)


@pytest.fixture(scope="module")
def ablation(workdir, table1):
  del table1  # the ablation resumes Table 1's work directory
  with pytest.MonkeyPatch.context() as monkeypatch:
    forbid_computing(monkeypatch)  # Table 1 computed the same runs
    return paper.run_experiment(paper_configs.get_config("ablation,tiny"),
                                workdir)


def test_table1_writes_its_three_files(workdir, table1):
  saved, md = outputs(workdir, "table1")
  assert saved == json.loads(json.dumps(table1))
  assert saved["family_order"] == ["point_robot"]
  s = saved["families"]["point_robot"]
  assert s["row_order"] == list(TABLE1_LABELS)
  for label in TABLE1_LABELS:
    row = s["rows"][label]
    assert math.isfinite(row["mean"])
    assert row["published"] is None and row["cells"][-1] == "-"
    assert "| " + " | ".join(row["cells"]) + " |" in md
  assert s["rows"]["prompt_dt"]["cells"][2] == "baseline"
  assert s["rows"]["upper_bound"]["normalized_score"] == 1.0
  with open(os.path.join(workdir, "point_robot", "datasets", "point_robot",
                         "returns.json")) as f:
    summary = json.load(f)
  random = np.mean([summary["random"][str(t)] for t in s["test_tasks"]])
  assert s["random_return"] == pytest.approx(random)
  upper = s["rows"]["upper_bound"]["mean"]
  assert s["rows"]["prompt_dt"]["normalized_score"] == pytest.approx(
      (s["rows"]["prompt_dt"]["mean"] - random) / (upper - random))
  run = strict_json(os.path.join(workdir, "point_robot", "results",
                                 "results.json"))
  assert s["fingerprint"] == run["fingerprint"]
  assert s["provenance"] == run["provenance"]
  assert s["wall_seconds"] == run["wall_seconds"]
  assert saved["config"]["methods"] == list(TABLE1_METHODS)
  assert s["significance_sentence"] in md and s["ordering_sentence"] in md
  assert "prompt_tuning_dt is not measured" in s["ordering_sentence"]
  assert "Brax" in saved["caption"] and "Hu et al." in saved["caption"]
  assert f"`{SETTING_LABEL}` (mode = projection" in saved["caption"]


def test_committed_experiments_render_in_the_docs(workdir, ablation,
                                                  tmp_path):
  import shutil

  from experiments.doc_blocks.common import Sources, _seconds
  from experiments.doc_blocks.paper import render_paper_results, render_paper_summary

  sources = Sources(root=tmp_path)
  assert "No experiment" in render_paper_results(sources)
  assert "No experiment" in render_paper_summary(sources)
  committed = tmp_path / "results" / "paper"
  committed.mkdir(parents=True)
  shutil.copy(os.path.join(workdir, "paper", "ablation.json"), committed)
  assert render_paper_summary(sources).endswith(
      "\n* Ablation: Prompt Diffuser's gradient combinations "
      "(`results/paper/ablation.json`): `point_robot` (1 seed).")
  text = render_paper_results(sources)
  s = ablation["families"]["point_robot"]
  commit = s["provenance"]["commit"][:12]
  assert text.startswith("### Ablation: Prompt Diffuser's gradient")
  assert "From `results/paper/ablation.json` (tiny preset; `point_robot`)" in text
  assert f"* `point_robot`: written at commit `{commit}`" in text
  assert s["tune_seconds"] > 0 and s["eval_seconds"] > 0
  rate = s["provenance"]["matmul_gflops_per_s"]
  assert rate > 0 and f"float32 matmul {rate:.0f} GFLOP/s when its run started" in text
  assert (f"tuning {_seconds(s['tune_seconds'])} and evaluation "
          f"{_seconds(s['eval_seconds'])} summed over its rows and seeds"
          in text)
  assert "#### point_robot (1 seed" in text
  for label in ABLATION_LABELS:
    assert "| " + " | ".join(s["rows"][label]["cells"]) + " |" in text
  assert ablation["caption"] in text


def test_a_table_sums_its_runs_tuning_and_evaluation_time():
  from pdiff.pipeline import paper_cells

  first = {"methods": {"prompt_dt": {"tune_seconds": [0.5, 1.5],
                                     "eval_seconds": [10.0, 12.0]},
                       "prompt_tuning_dt": {"tune_seconds": [90.0, 80.0],
                                            "eval_seconds": [9.0, 8.0]}}}
  second = {"methods": {"prompt_dt": {"tune_seconds": [1.0, 1.0],
                                      "eval_seconds": [7.0, 6.0]}}}
  assert paper_cells.compute_seconds(first) == {"tune_seconds": 172.0,
                                                "eval_seconds": 39.0}
  assert paper_cells.compute_seconds(first, second) == {
      "tune_seconds": 174.0, "eval_seconds": 52.0}
  first["family"] = "cheetah_vel"
  common = paper_cells.common(first, second)
  assert common["family"] == "cheetah_vel"
  assert (common["tune_seconds"], common["eval_seconds"]) == (174.0, 52.0)


@pytest.mark.parametrize("field, parts, expected", [
    (None, None, ("2 min 05 s", "")),
    ("wall_seconds_by_quality", {"expert": 872.0, "medium": 551.0,
                                 "random": 450.0},
     ("31 min 13 s", "expert 14 min 32 s, medium 9 min 11 s, random 7 min 30 s")),
    ("wall_seconds_by_setting", {"few_shot": 2564.0, "zero_shot": 682.0},
     ("54 min 06 s", "few-shot 42 min 44 s, zero-shot 11 min 22 s")),
])
def test_docs_give_a_family_the_wall_time_of_all_its_runs(field, parts,
                                                          expected):
  from experiments.doc_blocks.paper import _wall_time

  section = {"wall_seconds": 125.0}  # table2 and table3: the first run's
  if field:
    section[field] = parts
  assert _wall_time(section) == expected


def test_ablation_rows_differ_from_dm_only(workdir, ablation):
  saved, md = outputs(workdir, "ablation")
  s = saved["families"]["point_robot"]
  assert s["row_order"] == list(ABLATION_LABELS)
  assert s["reference"] == "prompt_diffuser[dm_only]"
  reference = s["rows"]["prompt_diffuser[dm_only]"]
  assert reference["difference"] is None
  assert reference["cells"][2] == "baseline"
  for label in ABLATION_LABELS[1:]:
    row = s["rows"][label]
    assert math.isfinite(row["mean"])
    assert row["difference"]["mean"] == pytest.approx(
        row["mean"] - reference["mean"])
    assert "| " + " | ".join(row["cells"]) + " |" in md
  assert "| " + " | ".join(s["columns"]) + " |" in md
  assert not any("published" in c for c in s["columns"])
  assert s["significance_sentence"] in md


def test_table1_again_recomputes_nothing(workdir, table1, ablation,
                                         monkeypatch):
  del ablation  # its runs are in the work directory too
  before = run_times(workdir)
  forbid_computing(monkeypatch)
  again = paper.run_experiment(table1_config(), workdir)
  first, second = (r["families"]["point_robot"] for r in (table1, again))
  assert second["fingerprint"] == first["fingerprint"]
  assert run_times(workdir) == before
  for label in TABLE1_LABELS:
    assert second["rows"][label]["mean"] == first["rows"][label]["mean"]
  # Nothing was computed: the table keeps the computation that made it.
  assert second["provenance"] == json.loads(json.dumps(first["provenance"]))
  assert second["wall_seconds"] == first["wall_seconds"]


def test_a_rerun_keeps_the_provenance_only_of_unchanged_families(tmp_path):
  from pdiff.pipeline import paper_merge

  def report(mean, commit, wall):
    section = dict(fingerprint="fp", rows={"prompt_dt": {"mean": mean}},
                   provenance={"commit": commit}, wall_seconds=wall,
                   wall_seconds_by_quality={"expert": wall})
    return dict(experiment="table2", families={"cheetah_vel": section})

  path = tmp_path / "table2.json"
  now = report(1.0, "new", 2.0)
  assert paper_merge.keep_provenance(now, str(path)) == now  # no file yet
  path.write_text(json.dumps(report(1.0, "old", 900.0)))
  kept = paper_merge.keep_provenance(now, str(path))["families"]["cheetah_vel"]
  assert kept["provenance"] == {"commit": "old"}
  assert kept["wall_seconds"] == kept["wall_seconds_by_quality"]["expert"] == 900
  for changed in (report(1.5, "new", 2.0),  # another figure: recomputed
                  dict(report(1.0, "new", 2.0), experiment="table3")):
    assert paper_merge.keep_provenance(changed, str(path))["families"][
        "cheetah_vel"]["provenance"] == {"commit": "new"}
  path.write_text("not json")
  assert paper_merge.keep_provenance(now, str(path)) == now


def earlier_report(workdir, tmp_path, family="point_robot_b", **changes):
  """The ablation's report as if computed earlier for ``family`` alone (its
  point_robot section renamed), with config fields replaced by
  ``changes``; returns its path."""
  saved, _ = outputs(workdir, "ablation")
  saved["families"] = {family: dict(saved["families"]["point_robot"],
                                    family=family)}
  saved["family_order"] = [family]
  saved["config"]["families"] = [family]
  saved["config"]["runs"] = {family: saved["config"]["runs"]["point_robot"]}
  saved["config"].update(changes)
  path = tmp_path / "earlier.json"
  path.write_text(json.dumps(saved))
  return str(path), saved


def test_merge_keeps_an_earlier_reports_other_families(workdir, ablation,
                                                       tmp_path, monkeypatch):
  path, earlier = earlier_report(workdir, tmp_path)
  (tmp_path / "merged").mkdir()  # point_robot's runs are found, not computed
  os.symlink(os.path.join(workdir, "point_robot"),
             tmp_path / "merged" / "point_robot")
  forbid_computing(monkeypatch)
  config = paper_configs.get_config("ablation,tiny")
  config.merge = path
  merged = paper.run_experiment(config, str(tmp_path / "merged"))
  saved, md = outputs(str(tmp_path / "merged"), "ablation")
  assert saved == json.loads(json.dumps(merged))
  assert saved["family_order"] == ["point_robot_b", "point_robot"]
  assert saved["families"]["point_robot_b"] == earlier["families"][
      "point_robot_b"]
  assert saved["families"]["point_robot"]["rows"] == json.loads(json.dumps(
      ablation["families"]["point_robot"]["rows"]))
  assert saved["config"]["families"] == ["point_robot_b", "point_robot"]
  assert set(saved["config"]["runs"]) == {"point_robot_b", "point_robot"}
  assert saved["merged_from"] == {"path": os.path.normpath(path),
                                  "families": ["point_robot_b"]}
  assert "### point_robot_b (1 seed" in md and "### point_robot (1 seed" in md
  # A family computed now replaces its earlier section, in place.
  path, _ = earlier_report(workdir, tmp_path, family="point_robot")
  config.merge = path
  again = paper.run_experiment(config, str(tmp_path / "merged"))
  assert again["family_order"] == ["point_robot"]
  assert again["merged_from"]["families"] == []


@pytest.mark.parametrize("field,value", [("seeds", [0, 1]),
                                         ("modes", ["dm_only"]),
                                         ("named_settings", []),
                                         ("experiment", "table1")])
def test_merge_refuses_a_report_with_other_rows(workdir, ablation, tmp_path,
                                                field, value):
  path, earlier = earlier_report(workdir, tmp_path)
  if field == "experiment":
    earlier["experiment"] = value
    pathlib.Path(path).write_text(json.dumps(earlier))
  else:
    earlier_report(workdir, tmp_path, **{field: value})
  config = paper_configs.get_config("ablation,tiny")
  config.merge = path
  out = tmp_path / "out"
  with pytest.raises(ValueError, match=rf"config\.merge = '{path}'.*{field}"):
    paper.run_experiment(config, str(out))
  assert not out.exists()
  config.merge = str(tmp_path / "missing.json")
  with pytest.raises(ValueError, match="no such file"):
    paper.run_experiment(config, str(out))
  assert not out.exists()


def table2_config():
  """Table 2's tiny config with two qualities and the ablation's Prompt
  Diffuser rows it shares with Table 1 (so most runs are found)."""
  c = paper_configs.get_config("table2,tiny")
  c.methods = ("prompt_dt", "prompt_diffuser")
  c.qualities = ("expert", "random")
  return c


def test_table2_pairs_each_quality_with_its_own_few_shot_prompt(workdir,
                                                                table1):
  del table1  # shares its work directory: datasets, PLM, stage-1 models
  report_ = paper.run_experiment(table2_config(), workdir)
  saved, md = outputs(workdir, "table2")
  assert saved == json.loads(json.dumps(report_))
  s = saved["families"]["point_robot"]
  assert s["qualities"] == ["expert", "random"]
  assert s["row_order"] == ["prompt_dt", "prompt_diffuser[projection]"]
  assert len(s["columns"]) == 1 + 2 * 2
  base = s["rows"]["prompt_dt"]
  assert base["cells"][2] == base["cells"][4] == "baseline"
  pd_row = s["rows"]["prompt_diffuser[projection]"]
  for quality in ("expert", "random"):
    q = pd_row["qualities"][quality]
    assert q["difference"]["mean"] == pytest.approx(
        q["mean"] - base["qualities"][quality]["mean"])
  for row in s["rows"].values():
    assert "| " + " | ".join(row["cells"]) + " |" in md
  assert set(s["fingerprints"]) == {"expert", "random"}
  assert s["fingerprints"]["expert"] != s["fingerprints"]["random"]
  assert "-33.5" in saved["caption"] and "Table 2" in saved["caption"]
  assert "expert data:" in s["significance_sentence"]
  change = s["changes"]["prompt_diffuser[projection]"]["random"]
  assert change["mean"] == pytest.approx(
      pd_row["qualities"]["random"]["mean"]
      - pd_row["qualities"]["expert"]["mean"])
  assert set(s["changes"]["prompt_dt"]) == {"random"}
  assert s["robustness"] == {}  # no prompt_tuning_dt row
  assert s["ordering_sentence"].startswith(
      "Change of return from expert data to random data (paired by seed): ")
  assert "is not measured (a row is missing)" in s["ordering_sentence"]
  assert s["ordering_sentence"] in md


def test_table2_measures_the_papers_robustness_claim():
  from pdiff.pipeline import paper_table2

  def results(per_seed):
    summary = report.summarize_methods(
        {k: [[x] for x in v] for k, v in per_seed.items()})
    for label, row in summary["methods"].items():
      row["method"] = label.split("[")[0]
    return dict(family="cheetah_vel", test_tasks=[0], seeds=[0, 1, 2],
                num_shots=5, few_shot_quality="expert",
                row_order=list(per_seed), **summary)

  # Prompt Diffuser loses 1 to 3 with medium data and 30 to 34 with random
  # data; Prompt-Tuning DT loses 20 to 22 with either.
  expert = {"prompt_dt": [0.0, 1.0, 2.0],
            "prompt_tuning_dt": [10.0, 10.0, 10.0],
            "prompt_diffuser[projection]": [10.0, 11.0, 12.0]}
  medium = {"prompt_dt": [-5.0, -5.0, -5.0],
            "prompt_tuning_dt": [-10.0, -11.0, -12.0],
            "prompt_diffuser[projection]": [9.0, 9.0, 9.0]}
  random = {"prompt_dt": [-20.0, -20.0, -20.0],
            "prompt_tuning_dt": [-10.0, -11.0, -12.0],
            "prompt_diffuser[projection]": [-20.0, -21.0, -22.0]}
  s = paper_table2.section({"expert": results(expert),
                            "medium": results(medium),
                            "random": results(random)})
  pd_change = s["changes"]["prompt_diffuser[projection]"]
  assert pd_change["medium"]["per_seed"] == pytest.approx([-1.0, -2.0, -3.0])
  assert pd_change["random"]["mean"] == pytest.approx(-32.0)
  assert pd_change["random"]["significant"]
  claim = s["robustness"]
  assert claim["medium"]["per_seed"] == pytest.approx([19.0, 19.0, 19.0])
  assert claim["medium"]["significant"]
  assert claim["random"]["mean"] == pytest.approx(-11.0)
  sentence = s["ordering_sentence"]
  assert sentence.startswith("Change of return from expert data to medium "
                             "and random data (paired by seed): ")
  assert ("with medium data it holds (+19.0 [19.0, 19.0], significant at "
          "95%)") in sentence
  assert "with random data it is reversed (-11.0 " in sentence
  only_expert = paper_table2.section({"expert": results(expert)})
  assert "changes" not in only_expert
  assert "ordering_sentence" not in only_expert


def test_table2_config_errors_are_named(tmp_path):
  config = table2_config()
  config.qualities = ("expert", "expert")
  with pytest.raises(ValueError, match=r"config\.qualities"):
    paper.run_experiment(config, str(tmp_path))
  config = table2_config()
  config.methods = ("prompt_diffuser",)
  with pytest.raises(ValueError, match="'prompt_dt' among them"):
    paper.run_experiment(config, str(tmp_path))
  assert not os.listdir(tmp_path)
  assert paper_configs.get_config("table2").families == ("cheetah_vel",)


def run_files(directory, label):
  """The names of a results directory's run records of ``label``."""
  return sorted(os.listdir(os.path.join(directory, "results", "runs", label)))


def test_table3_runs_few_shot_and_zero_shot_each_in_its_own_directory(
    workdir, table1, monkeypatch):
  del table1  # shares the family's datasets, PLM and stage-1 models
  report_ = paper.run_experiment(paper_configs.get_config("table3,tiny"),
                                 workdir)
  saved, md = outputs(workdir, "table3")
  assert saved == json.loads(json.dumps(report_))
  s = saved["families"]["point_robot"]
  assert s["settings"] == ["few_shot", "zero_shot"]
  assert s["few_shot_sources"] == {"few_shot": "test_task",
                                   "zero_shot": "training_tasks"}
  labels = ["prompt_dt", "prompt_tuning_dt", "prompt_diffuser[projection]"]
  assert s["row_order"] == labels
  assert len(s["columns"]) == 1 + 3 * 2
  assert "| " + " | ".join(s["columns"]) + " |" in md
  base = s["rows"]["prompt_dt"]
  assert base["cells"][2] == base["cells"][5] == "baseline"
  for label, row in s["rows"].items():
    assert "| " + " | ".join(row["cells"]) + " |" in md
    for setting in s["settings"]:
      figures = row["settings"][setting]
      assert math.isfinite(figures["mean"])
      if label != "prompt_dt":
        assert figures["difference"]["mean"] == pytest.approx(
            figures["mean"] - base["settings"][setting]["mean"])
  # The published figures, from the published JSON, beside pdiff's.
  published = paper.load_published()["table3"]
  pd_row = s["rows"]["prompt_diffuser[projection]"]
  assert pd_row["settings"]["zero_shot"]["published"] == published[
      "settings"]["zero_shot"]["methods"]["prompt_diffuser"]
  assert (pd_row["cells"][3], pd_row["cells"][6]) == ("546.8",
                                                      "329.2 +- 21.8")
  ptdt = s["rows"]["prompt_tuning_dt"]["cells"]
  assert (ptdt[3], ptdt[6]) == ("540.8", "52.7 (baselines)")
  assert base["cells"][3] == "-"
  for figure in ("546.8", "540.8", "329.2 +- 21.8", "52.7"):
    assert figure in saved["caption"]
  assert "Table 3" in saved["caption"] and "Zero-shot:" in saved["caption"]
  assert saved["published_source"] == published["source"]
  assert s["significance_sentence"].startswith("Few-shot: ")
  assert " Zero-shot: " in s["significance_sentence"]
  # Each setting is a pipeline run in its own directory; the few-shot runs
  # are Table 1's (same fingerprints), the zero-shot ones are new.
  fdir = os.path.join(workdir, "point_robot")
  for setting in s["settings"]:
    results = strict_json(os.path.join(fdir, "table3", setting, "results",
                                       "results.json"))
    assert results["fingerprint"] == s["fingerprints"][setting]
    assert results["few_shot_source"] == s["few_shot_sources"][setting]
    assert results["methods"]["prompt_dt"]["information"] == (
        "few-shot" if setting == "few_shot"
        else "zero-shot (training tasks' trajectories)")
  assert s["fingerprints"]["few_shot"] != s["fingerprints"]["zero_shot"]
  for label in ("prompt_dt", "prompt_diffuser[projection]"):
    few = run_files(os.path.join(fdir, "table3", "few_shot"), label)
    assert set(few) <= set(run_files(fdir, label))
    zero = run_files(os.path.join(fdir, "table3", "zero_shot"), label)
    assert not set(zero) & set(run_files(fdir, label))
  zero_dir = os.path.join(fdir, "table3", "zero_shot")
  run = strict_json(os.path.join(zero_dir, "results", "runs", "prompt_dt",
                                 run_files(zero_dir, "prompt_dt")[0]))
  assert run["config"]["few_shot_source"] == "training_tasks"
  assert "training_tasks/datasets/expert" in run["inputs"]
  # Resumed: nothing is computed again.
  forbid_computing(monkeypatch)
  again = paper.run_experiment(paper_configs.get_config("table3,tiny"),
                               workdir)
  assert again["families"]["point_robot"]["fingerprints"] == s["fingerprints"]


def test_table3_config_errors_are_named(tmp_path):
  config = paper_configs.get_config("table3,tiny")
  config.settings = ("few_shot", "few_shot")
  with pytest.raises(ValueError, match=r"config\.settings"):
    paper.run_experiment(config, str(tmp_path))
  config = paper_configs.get_config("table3,tiny")
  config.methods = ("prompt_dt", "upper_bound")
  with pytest.raises(ValueError, match="'upper_bound' reads each test task's "
                     "full dataset, which config.few_shot_source = "
                     "'training_tasks' does not allow"):
    paper.run_experiment(config, str(tmp_path))
  assert not os.listdir(tmp_path)
  config = paper_configs.get_config("table3")
  assert config.families == ("ant_dir_10",)
  assert config.methods == ("prompt_dt", "prompt_tuning_dt", "prompt_diffuser")
  assert config.modes == ("projection",) and len(config.seeds) == 5


def test_unknown_experiment_is_named(tmp_path):
  with pytest.raises(ValueError, match="table9"):
    paper_configs.get_config("table9")
  config = table1_config()
  config.experiment = "table9"
  with pytest.raises(ValueError, match="table9"):
    paper.run_experiment(config, str(tmp_path))
  assert not os.listdir(tmp_path)


def hand_made_results(success_rates=None, family="cheetah_dir", **changes):
  """Three seeds, one task: Prompt Diffuser clearly above the others,
  Prompt-Tuning DT slightly below the few-shot prompt; ``success_rates``:
  ``{label: per-seed rate}``, as for a family with a success metric;
  ``changes``: other per-seed returns of some rows."""
  per_seed = {
      "prompt_dt": [10.0, 12.0, 14.0],
      "prompt_tuning_dt": [9.0, 12.5, 13.0],
      "prompt_diffuser[sum]": [11.0, 12.0, 15.0],
      "prompt_diffuser[projection]": [20.0, 23.0, 24.0],
      "upper_bound": [30.0, 30.0, 30.0],
  }
  per_seed.update({label.replace("__", "[").replace("_end", "]"): v
                   for label, v in changes.items()})
  summary = report.summarize_methods(
      {k: [[x] for x in v] for k, v in per_seed.items()},
      success_rates=None if success_rates is None else {
          k: [[x] for x in v] for k, v in success_rates.items()})
  for label, row in summary["methods"].items():
    row["method"] = label.split("[")[0]
  return dict(family=family, test_tasks=[0], seeds=[0, 1, 2],
              num_shots=5, few_shot_quality="expert", row_order=list(per_seed),
              **summary)


def test_normalised_score():
  assert paper.normalized_score(30.0, 10.0, 30.0) == 1.0
  assert paper.normalized_score(10.0, 10.0, 30.0) == 0.0
  assert paper.normalized_score(15.0, 10.0, 30.0) == 0.25
  assert paper.normalized_score(15.0, 30.0, 30.0) is None
  summary = {"random": {"0": 1.0, "1": 5.0, "2": 9.0}}
  assert paper.random_return(summary, [0, 2]) == 5.0
  with pytest.raises(ValueError, match="random"):
    paper.random_return({"expert": {}}, [0])
  published = paper.load_published()["table1"]["methods"]
  s = paper.table1_section(hand_made_results(), 10.0, published)
  assert s["rows"]["upper_bound"]["normalized_score"] == 1.0
  assert s["rows"]["prompt_dt"]["normalized_score"] == pytest.approx(0.1)
  assert s["rows"]["prompt_diffuser[projection]"]["cells"][-1] == "945.3 +- 7.2"
  assert s["rows"]["prompt_tuning_dt"]["cells"][-1] == "941.5 +- 3.2"
  assert s["rows"]["prompt_diffuser[sum]"]["cells"][-1] == "-"
  assert s["rows"]["upper_bound"]["cells"][-1] == "-"
  no_upper = hand_made_results()
  del no_upper["methods"]["upper_bound"]
  no_upper["row_order"].remove("upper_bound")
  s = paper.table1_section(no_upper, 10.0, published)
  assert "normalised score" not in s["columns"]
  assert s["rows"]["prompt_dt"]["normalized_score"] is None


def test_ordering_sentence():
  s = paper.table1_section(hand_made_results(), None, {})
  by_pair = {(o["higher"], o["lower"]): o for o in s["orderings"]}
  pd_ptdt = by_pair["prompt_diffuser[projection]", "prompt_tuning_dt"]
  assert pd_ptdt["same_order"] and pd_ptdt["significant"]
  assert pd_ptdt["difference"]["mean"] == pytest.approx(32.5 / 3)
  pd_dt = by_pair["prompt_diffuser[projection]", "prompt_dt"]
  assert pd_dt["same_order"] and pd_dt["significant"]
  ptdt_dt = by_pair["prompt_tuning_dt", "prompt_dt"]
  assert not ptdt_dt["same_order"] and not ptdt_dt["significant"]
  sentence = s["ordering_sentence"]
  assert sentence.startswith("On cheetah_dir, of the paper's orderings: ")
  assert ("prompt_diffuser[projection] above prompt_tuning_dt holds (+10.8, "
          in sentence)
  assert "prompt_tuning_dt above prompt_dt is reversed (-0.5, " in sentence
  assert "significant at 95%" in sentence
  assert "not significant at 95%" in sentence
  assert "normalised score" not in s["columns"]  # no random return given


def two_family_report(random=10.0):
  """A Table 1 report of cheetah_dir (:func:`hand_made_results`) and ant_dir,
  where Prompt Diffuser is significantly below both baselines and
  Prompt-Tuning DT significantly above the few-shot prompt."""
  published = paper.load_published()["table1"]["methods"]
  ant = hand_made_results(family="ant_dir",
                          prompt_diffuser__projection_end=[5.0, 6.0, 7.0],
                          prompt_tuning_dt=[12.0, 14.5, 16.0])
  sections = {"cheetah_dir": paper.table1_section(hand_made_results(), 10.0,
                                                  published),
              "ant_dir": paper.table1_section(ant, random, published)}
  return dict(experiment="table1", preset="tiny",
              family_order=["cheetah_dir", "ant_dir"], families=sections,
              caption="The caption.")


def test_table1_across_families():
  s = paper.across_families(two_family_report())
  assert s["families"] == ["cheetah_dir", "ant_dir"]
  pd_ptdt, pd_dt, ptdt_dt = s["orderings"]
  assert (pd_ptdt["higher"], pd_ptdt["lower"]) == (
      "prompt_diffuser[projection]", "prompt_tuning_dt")
  assert pd_ptdt["by_family"]["cheetah_dir"]["same_order"] is True
  assert pd_ptdt["by_family"]["ant_dir"]["same_order"] is False
  assert pd_ptdt["by_family"]["ant_dir"]["difference"] == pytest.approx(
      -24.5 / 3)
  assert (pd_ptdt["holds"], pd_ptdt["holds_significant"], pd_ptdt["reversed"],
          pd_ptdt["reversed_significant"], pd_ptdt["measured"]) == (
              1, 1, 1, 1, 2)
  assert (ptdt_dt["holds"], ptdt_dt["holds_significant"],
          ptdt_dt["reversed"], ptdt_dt["reversed_significant"]) == (1, 1, 1, 0)
  proj = s["methods"]["prompt_diffuser[projection]"]
  assert proj["normalized_scores"] == {
      "cheetah_dir": pytest.approx((67 / 3 - 10) / 20),
      "ant_dir": pytest.approx(-0.2)}
  assert proj["mean_normalized_score"] == pytest.approx(
      ((67 / 3 - 10) / 20 - 0.2) / 2)
  assert proj["significantly_above"] == ["cheetah_dir"]
  assert proj["significantly_below"] == ["ant_dir"]
  assert proj["published_ratio"] == pytest.approx(474.4 / 496.6)
  assert s["methods"]["prompt_tuning_dt"]["published_ratio"] == pytest.approx(
      450.3 / 496.6)
  # Only the row standing for the paper's method has a published ratio.
  assert s["methods"]["prompt_diffuser[sum]"]["published_ratio"] is None
  assert s["methods"]["prompt_dt"]["mean_normalized_score"] == pytest.approx(
      0.1)
  assert s["sentence"] == (
      "Across the 2 families, of the paper's orderings: "
      "prompt_diffuser[projection] above prompt_tuning_dt holds on 1 of 2 "
      "families (1 significant) and is reversed on 1 (1 significant); "
      "prompt_diffuser[projection] above prompt_dt holds on 1 of 2 families "
      "(1 significant) and is reversed on 1 (1 significant); "
      "prompt_tuning_dt above prompt_dt holds on 1 of 2 families "
      "(1 significant) and is reversed on 1 (0 significant).")
  md = paper.markdown(two_family_report())
  assert "### Across families" in md
  assert ("| prompt_diffuser[projection] above prompt_tuning_dt | holds, "
          "+10.8, significant | reversed, -8.2, significant |") in md
  assert ("| prompt_diffuser[projection] | 0.21 | cheetah_dir | ant_dir | "
          "0.96 |") in md
  assert md.index("### Across families") < md.index("The caption.")


def test_figure_puts_at_most_two_families_in_a_row(tmp_path):
  from PIL import Image

  assert [paper.figure_grid(n) for n in (1, 2, 3, 4, 5)] == [
      (1, 1), (1, 2), (2, 2), (2, 2), (3, 2)]
  two = two_family_report()
  three = dict(two, family_order=["cheetah_dir", "ant_dir", "ant_dir_b"],
               families=dict(two["families"],
                             ant_dir_b=two["families"]["ant_dir"]))
  sizes = {}
  for name, experiment in (("two", two), ("three", three)):
    paper.save_figure(str(tmp_path / f"{name}.png"), experiment)
    sizes[name] = Image.open(tmp_path / f"{name}.png").size
  assert sizes["three"][0] == sizes["two"][0]  # two charts wide
  assert sizes["three"][1] > 2 * sizes["two"][1]  # two rows, each taller


def test_readme_summary_gives_table1_across_families(tmp_path):
  from experiments.doc_blocks.common import Sources
  from experiments.doc_blocks.paper import render_paper_summary

  committed = tmp_path / "results" / "paper"
  committed.mkdir(parents=True)
  report = two_family_report()
  (committed / "table1.json").write_text(json.dumps(report))
  text = render_paper_summary(Sources(root=tmp_path))
  assert ("`cheetah_dir` (3 seeds), `ant_dir` (3 seeds).\n  "
          + paper.across_families(report)["sentence"]) in text


def test_table1_across_families_needs_two_families_and_every_score():
  one = two_family_report()
  one["family_order"] = ["cheetah_dir"]
  assert paper.across_families(one) is None
  assert "Across families" not in paper.markdown(one)
  no_random = paper.across_families(two_family_report(random=None))
  assert no_random["methods"]["prompt_dt"]["mean_normalized_score"] is None
  assert no_random["methods"]["prompt_dt"]["normalized_scores"][
      "ant_dir"] is None
  ablation = dict(two_family_report(), experiment="ablation")
  assert paper.across_families(ablation) is None


def test_success_rate_column_only_with_success_rates():
  published = paper.load_published()["table1"]["methods"]
  plain = paper.table1_section(hand_made_results(), 10.0, published)
  assert plain["columns"] == ["method", "return, mean [95% CI]",
                              "difference to prompt_dt [95% CI]",
                              "normalised score", "published"]
  assert "success_rate" not in plain["rows"]["prompt_dt"]
  assert "success rate" not in paper.caption("table1", "the paper")
  rates = {"prompt_dt": [0.2, 0.4, 0.6],
           "prompt_diffuser[sum]": [1.0, 1.0, 0.7],
           "prompt_diffuser[projection]": [1.0, 1.0, 1.0]}
  results = hand_made_results(rates)
  s = paper.table1_section(results, 10.0, published)
  assert s["columns"] == ["method", "return, mean [95% CI]",
                          "success rate (%)",
                          "difference to prompt_dt [95% CI]",
                          "normalised score", "published"]
  assert s["rows"]["prompt_dt"]["cells"][1:3] == ["12.0 [7.0, 17.0]", "40.0"]
  assert s["rows"]["prompt_dt"]["success_rate"]["mean"] == pytest.approx(0.4)
  assert s["rows"]["upper_bound"]["cells"][2] == "n/a"
  assert s["rows"]["upper_bound"]["success_rate"] is None
  # The other cells are those of the table without success rates.
  for label, row in s["rows"].items():
    cells = list(row["cells"])
    del cells[2]
    assert cells == plain["rows"][label]["cells"]
  ablation = paper.ablation_section(results)
  assert ablation["columns"][2] == "success rate (%)"
  assert ablation["rows"]["prompt_diffuser[sum]"]["cells"][2] == "90.0"
  assert ablation["rows"]["prompt_diffuser[projection]"]["success_rate"][
      "per_seed"] == [1.0, 1.0, 1.0]
  assert "success rate (%)" not in paper.ablation_section(
      hand_made_results())["columns"]
  assert "Meta-World's convention" in paper.caption("table1", "the paper",
                                                    success=True)
  report_md = paper.markdown(dict(
      experiment="table1", family_order=["cheetah_dir"],
      families={"cheetah_dir": s}, caption="caption"))
  assert "| prompt_dt | 12.0 [7.0, 17.0] | 40.0 | baseline |" in report_md
