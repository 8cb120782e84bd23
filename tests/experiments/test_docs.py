"""The docs: set-up commands, pinned versions and generated figures.

Every figure of README.md and docs/*.md sits in a generated block that
``experiments/render_docs.py`` renders from committed files; these tests run
its check on the repository (every block whose input file exists) and
exercise the default run's block, whose ``results.json`` may not be
committed, on a synthetic results file.
"""

import configparser
import json
import os
import pathlib
import re
import shutil

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from experiments import render_docs
from experiments.doc_blocks import runs
from pdiff.evaluation import report

REPO = pathlib.Path(__file__).resolve().parents[2]
# Pins that setup.cfg's ranges must accept (and that must be pinned).
KEY_PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "brax",
                "numpy")
# Blocks allowed to stand as a placeholder while their input is not
# committed: the default run's results are copied in by a maintainer.
MAY_BE_MISSING = {"default_run"}


def readme_commands() -> list[str]:
  text = (REPO / "README.md").read_text()
  m = re.match(r"# pdiff\n\n```bash\n(.*?)\n```\n", text, re.DOTALL)
  assert m, "README.md must start with '# pdiff' and a bash block"
  return [line for line in m.group(1).splitlines() if line.strip()]


def read_constraints() -> dict[str, str]:
  pins = {}
  for line in (REPO / "constraints.txt").read_text().splitlines():
    line = line.split("#", 1)[0].strip()
    if not line:
      continue
    name, sep, version = line.partition("==")
    assert sep and version and not re.search(r"[<>=!~,; ]", version), (
        f"constraints.txt: {line!r} is not an exact pin NAME==VERSION")
    pins[canonicalize_name(name)] = version
  return pins


def setup_requirements() -> list[Requirement]:
  cfg = configparser.ConfigParser()
  cfg.read(REPO / "setup.cfg")
  lines = cfg["options"]["install_requires"].splitlines()
  lines += cfg["options.extras_require"]["test"].splitlines()
  lines = [line.split("#", 1)[0].strip() for line in lines]
  return [Requirement(line) for line in lines if line]


def test_readme_starts_with_two_commands_that_ci_runs():
  commands = readme_commands()
  assert len(commands) == 2, commands
  for command in commands:
    assert "-c constraints.txt" in command, command
  ci = (REPO / ".ci" / "run").read_text().splitlines()
  assert commands[1] in [line.strip() for line in ci], (
      f".ci/run must run the README's second command verbatim: {commands[1]}")
  assert "set -euo pipefail" in ci


def test_constraints_pin_versions_that_setup_cfg_accepts():
  pins = read_constraints()
  for name in ("pdiff", "pip", "setuptools", "wheel"):
    assert name not in pins, f"constraints.txt must not pin {name}"
  for name in KEY_PACKAGES + ("scipy", "ml-collections", "h5py"):
    assert name in pins, f"constraints.txt does not pin {name}"
  for req in setup_requirements():
    name = canonicalize_name(req.name)
    assert name in pins, f"constraints.txt does not pin {req.name}"
    assert req.specifier.contains(pins[name], prereleases=True), (
        f"constraints.txt pins {name}=={pins[name]}, outside setup.cfg's "
        f"{req}")
  # brax 0.14.2's trainers call jax.device_put_replicated, gone in jax 0.10.
  assert Version(pins["jax"]) < Version("0.10")
  assert Version(pins["jaxlib"]) < Version("0.10")


def test_repository_docs_match_their_input_files():
  sources = render_docs.Sources()
  problems = render_docs.check_docs(sources)
  for p in problems:
    assert p.kind == "missing_input", str(p)
    assert p.block in MAY_BE_MISSING, str(p)
  assert not sources.results_file().exists() or not problems
  # Placeholders too are exactly what the script writes: rendering changes
  # nothing, and every block name is known.
  used = set()
  for path in render_docs.doc_paths(REPO):
    text = path.read_text()
    used |= {b.name for b in render_docs.parse_blocks(text)}
    new, _ = render_docs.render_text(text, sources)
    assert new == text, f"{path.name}: run python experiments/render_docs.py"
  assert used == set(render_docs.RENDERERS), (
      f"renderers no doc uses: {set(render_docs.RENDERERS) - used}")


def copy_docs(dst: pathlib.Path) -> None:
  shutil.copy(REPO / "README.md", dst / "README.md")
  shutil.copytree(REPO / "docs", dst / "docs")


def edit_first_digit(text: str, block: str) -> str:
  """The text with the first digit inside ``block``'s body changed."""
  start = text.index(f"<!-- BEGIN GENERATED: {block} -->")
  end = text.index(f"<!-- END GENERATED: {block} -->")
  m = re.search(r"\d", text[start + len(block) + 26:end])
  assert m, f"block {block} holds no digit"
  i = start + len(block) + 26 + m.start()
  return text[:i] + str((int(text[i]) + 1) % 10) + text[i + 1:]


def test_hand_edited_figure_fails_the_check_and_is_rewritten(tmp_path):
  copy_docs(tmp_path)
  sources = render_docs.Sources()
  before = {p: p.read_text() for p in render_docs.doc_paths(tmp_path)}
  doc = tmp_path / "docs" / "benchmarks.md"
  edited = edit_first_digit(doc.read_text(), "evaluation_throughput")
  doc.write_text(edited)
  problems = [p for p in render_docs.check_docs(sources, tmp_path)
              if p.kind != "missing_input"]
  assert [(p.doc, p.block, p.kind) for p in problems] == [
      ("docs/benchmarks.md", "evaluation_throughput", "differs")]
  assert "rendered" in problems[0].detail and "\n-" in problems[0].detail

  # Prose outside the blocks is not checked, and is never rewritten.
  readme = tmp_path / "README.md"
  readme.write_text(readme.read_text() + "\nA note added by hand: 42.\n")
  changed, _ = render_docs.write_docs(sources, tmp_path)
  assert changed == ["docs/benchmarks.md"]
  assert doc.read_text() == before[doc]
  assert readme.read_text().endswith("A note added by hand: 42.\n")
  leftovers = [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
  assert not leftovers


def test_malformed_blocks_are_reported():
  bad = {
      "unbalanced": "<!-- BEGIN GENERATED: train_step -->\n",
      "mismatched": ("<!-- BEGIN GENERATED: train_step -->\n"
                     "<!-- END GENERATED: projection_overhead -->\n"),
      "unknown": ("<!-- BEGIN GENERATED: no_such_block -->\n"
                  "<!-- END GENERATED: no_such_block -->\n"),
      "nested": ("<!-- BEGIN GENERATED: train_step -->\n"
                 "<!-- BEGIN GENERATED: train_step -->\n"
                 "<!-- END GENERATED: train_step -->\n"
                 "<!-- END GENERATED: train_step -->\n"),
  }
  for kind, text in bad.items():
    with pytest.raises(render_docs.DocFormatError):
      render_docs.parse_blocks(text)
      pytest.fail(kind)


def synthetic_results() -> dict:
  """A small results.json of the shape the pipeline writes."""
  per_method = {
      "prompt_dt": [[-30.0, -60.0, -110.0], [-32.0, -58.0, -104.0],
                    [-29.0, -63.0, -108.0]],
      "prompt_diffuser[projection]": [[-31.0, -57.0, -115.0],
                                      [-35.0, -61.0, -101.0],
                                      [-28.0, -66.0, -112.0]],
  }
  if hasattr(report, "summarize_methods"):
    summary = report.summarize_methods(per_method)
    methods, stats = summary["methods"], summary["statistics"]
  else:
    methods = {k: report.summarize(v) for k, v in per_method.items()}
    stats = None
  for row in methods.values():
    row["tune_seconds"] = [20.0, 21.0, 19.0]
    row["eval_seconds"] = [10.0, 11.0, 9.0]
  results = dict(family="cheetah_vel", backend="spring",
                 test_tasks=[2, 7, 15], num_shots=5,
                 few_shot_quality="expert", seeds=[0, 1, 2],
                 methods=methods, wall_seconds=174.4,
                 stage_seconds=dict(datasets=23.2, pretrain=0.4,
                                    diffusion_pretrain=14.0),
                 provenance=dict(machine="2-core Example CPU"),
                 config=dict(eval_episodes=20, pretrained="cheetah_vel_cpu"))
  if stats is not None:
    results["statistics"] = stats
  return json.loads(json.dumps(results))


@pytest.fixture
def table_markdown(monkeypatch):
  """``report.results_table_markdown``, or a stand-in where it is absent."""
  if not hasattr(report, "results_table_markdown"):
    def stand_in(results):
      lines = ["| method | return |", "|---|---|"]
      lines += [f"| {k} | {r['mean']:.1f} |"
                for k, r in results["methods"].items()]
      return "\n".join(lines) + "\n"
    monkeypatch.setattr(report, "results_table_markdown", stand_in,
                        raising=False)
  return report.results_table_markdown


def write_results(directory: pathlib.Path, results: dict) -> pathlib.Path:
  directory.mkdir(parents=True, exist_ok=True)
  path = directory / "results.json"
  path.write_text(json.dumps(results))
  return path


def test_default_run_block_renders_table_and_timings(tmp_path, table_markdown):
  results = synthetic_results()
  write_results(tmp_path / "res", results)
  sources = render_docs.Sources(results_dir=str(tmp_path / "res"))
  block = render_docs.render_default_run(sources)
  assert table_markdown(results).strip() in block
  assert "Wall time 2 min 54 s in all" in block
  for part in ("datasets 23 s", "diffusion pre-training 14 s",
               "tuning 2 min 00 s and evaluation 1 min 00 s",
               "machine: 2-core Example CPU", "20 evaluation episodes"):
    assert part in block, part

  missing = render_docs.Sources(results_dir=str(tmp_path / "absent"))
  with pytest.raises(render_docs.MissingInputError,
                     match=r"absent/results\.json is missing"):
    render_docs.render_default_run(missing)


def test_default_run_block_in_a_doc(tmp_path, table_markdown, capsys):
  del table_markdown
  (tmp_path / "README.md").write_text(
      "# Results\n\n<!-- BEGIN GENERATED: default_run -->\n"
      "<!-- END GENERATED: default_run -->\n\nAfter.\n")
  args = ["--root", str(tmp_path), "--results_dir", "results/cheetah_vel"]
  # Missing input: a placeholder naming the file, and a failure either way.
  assert render_docs.main(args) == 1
  assert "results/cheetah_vel/results.json" in capsys.readouterr().err
  text = (tmp_path / "README.md").read_text()
  assert "_Not rendered: `results/cheetah_vel/results.json` is missing." in text
  assert render_docs.main(["--check"] + args) == 1
  assert "results/cheetah_vel/results.json is missing" in capsys.readouterr().err

  write_results(tmp_path / "results" / "cheetah_vel", synthetic_results())
  assert render_docs.main(["--check"] + args) == 1
  assert "differs" in capsys.readouterr().err
  assert render_docs.main(args) == 0
  assert render_docs.main(["--check"] + args) == 0
  text = (tmp_path / "README.md").read_text()
  assert "Wall time 2 min 54 s in all" in text and text.endswith("\nAfter.\n")

  # A figure of the table edited by hand fails the check.
  (tmp_path / "README.md").write_text(edit_first_digit(text, "default_run"))
  assert render_docs.main(["--check"] + args) == 1
  err = capsys.readouterr().err
  assert "README.md: block default_run differs" in err


def make_run(workdir: pathlib.Path, results: dict) -> None:
  out = workdir / "results"
  write_results(out, results)
  (out / "results.md").write_text("| table |\n")
  (out / "returns.png").write_bytes(b"\x89PNG\r\n\x1a\nfake")


def test_import_run_copies_the_three_files(tmp_path, table_markdown):
  del table_markdown
  run, dest = tmp_path / "runs" / "cheetah_vel", tmp_path / "committed"
  make_run(run, synthetic_results())
  copied = render_docs.import_run(run, dest)
  assert sorted(p.name for p in copied) == sorted(render_docs.RUN_FILES)
  for name in render_docs.RUN_FILES:
    assert (dest / name).read_bytes() == (run / "results" / name).read_bytes()
  assert sorted(os.listdir(dest)) == sorted(render_docs.RUN_FILES)

  # A run without its chart changes nothing.
  (run / "results" / "returns.png").unlink()
  (run / "results" / "results.md").write_text("| new table |\n")
  with pytest.raises(render_docs.MissingInputError, match="returns.png"):
    render_docs.import_run(run, dest)
  assert (dest / "results.md").read_text() == "| table |\n"
  assert sorted(os.listdir(dest)) == sorted(render_docs.RUN_FILES)

  # From the command line: import, then render.
  make_run(run, synthetic_results())
  (tmp_path / "README.md").write_text(
      "<!-- BEGIN GENERATED: default_run -->\n"
      "<!-- END GENERATED: default_run -->\n")
  assert render_docs.main(["--root", str(tmp_path), "--results_dir",
                           "committed", "--import_run", str(run)]) == 0
  assert "Wall time" in (tmp_path / "README.md").read_text()


def test_import_to_fills_the_all_methods_block(tmp_path, table_markdown):
  del table_markdown
  run = tmp_path / "runs" / "cheetah_vel_all"
  make_run(run, synthetic_results())
  (tmp_path / "docs").mkdir()
  (tmp_path / "docs" / "tuning.md").write_text(
      "<!-- BEGIN GENERATED: all_methods -->\n"
      "<!-- END GENERATED: all_methods -->\n")
  assert render_docs.main(["--root", str(tmp_path), "--import_run", str(run),
                           "--import_to", "results/cheetah_vel_all"]) == 0
  block = (tmp_path / "docs" / "tuning.md").read_text()
  assert "From `results/cheetah_vel_all/results.json`" in block
  assert "Wall time" not in block  # shared rows: no run-wide wall time
  # The default run's directory was not touched.
  assert not (tmp_path / "results" / "cheetah_vel").exists()


def test_family_runs_block_names_a_family_without_a_run(tmp_path,
                                                        table_markdown):
  del table_markdown
  write_results(tmp_path / "results" / "cheetah_dir", synthetic_results())
  block = runs.render_family_runs(render_docs.Sources(root=tmp_path))
  assert "### `cheetah_dir`\n\nFrom `results/cheetah_dir/results.json`" in block
  assert "Wall time" in block
  assert ("### `ant_dir`\n\nNo committed run yet "
          "(`results/ant_dir/results.json` does not exist).") in block


def test_timing_sentence_gives_the_load_when_recorded():
  results = synthetic_results()
  results["provenance"] = dict(results.get("provenance") or {},
                               machine="2-core Example CPU",
                               load_average_1min=3.456)
  text = runs.timing_sentence(results)
  assert text.endswith("machine: 2-core Example CPU, 1-minute load average "
                       "3.5 when the run started.")
  del results["provenance"]["load_average_1min"]
  assert "load average" not in runs.timing_sentence(results)
  results["provenance"]["matmul_gflops_per_s"] = 116.6
  assert runs.timing_sentence(results).endswith(
      "machine: 2-core Example CPU, float32 matmul 117 GFLOP/s when the run "
      "started.")


def test_machine_state_gives_what_was_recorded():
  assert runs.machine_state({}) == ""
  assert runs.machine_state({"load_average_1min": None}) == ""
  assert runs.machine_state({"load_average_1min": 0.94,
                             "matmul_gflops_per_s": 82.4}) == (
      "1-minute load average 0.9, float32 matmul 82 GFLOP/s")


def test_results_from_another_shipped_plm_are_marked_stale(tmp_path,
                                                          table_markdown):
  del table_markdown
  from pdiff.pipeline import prepare

  shipped = tmp_path / "pdiff" / "assets" / "pretrained" / "cheetah_vel_cpu"
  shipped.mkdir(parents=True)
  for name in prepare.SHIPPED_MODEL_FILES:
    (shipped / name).write_text(name)
  current = prepare.shipped_record("cheetah_vel_cpu",
                                   root=str(shipped.parent))["fingerprint"]
  sources = render_docs.Sources(root=tmp_path)
  results = synthetic_results()
  results["inputs"] = dict(plm=current)
  path = write_results(tmp_path / "results" / "cheetah_dir", results)
  assert runs.stale_plm_sentence(sources, results) is None
  assert "Stale" not in runs._render_run(sources, path, timing=False)

  (shipped / "params.msgpack").write_text("retrained")
  sentence = runs.stale_plm_sentence(sources, results)
  assert sentence.startswith("**Stale:**")
  assert f"`{current[:12]}`" in sentence
  assert sentence in runs._render_run(sources, path, timing=False)

  results["config"]["pretrained"] = "gone_cpu"
  assert "no longer shipped" in runs.stale_plm_sentence(sources, results)
  # A run that pre-trained its own PLM is never called stale here.
  results["config"]["pretrained"] = ""
  assert runs.stale_plm_sentence(sources, results) is None


def test_guided_step_parts_name_the_largest_part():
  from experiments.doc_blocks import benchmarks

  parts = [{"part": name, "ms_per_step": ms, "steps": 20,
            "load_average_1min": 1.0}
           for name, ms in [("dm_loss_and_grad", 1.0), ("dt_loss", 6.0),
                            ("dt_loss_and_grad", 30.0), ("chain", 5.0),
                            ("chain_and_grad", 25.0),
                            ("plm_loss_and_grad", 4.0)]]
  text = "\n".join(benchmarks._guided_parts_lines(parts,
                                                  {"ms_per_step": 40.0}))
  # Shares of the 40 ms step, one row per part.
  assert "| L_DT and its gradient | 30.0 | 75% |" in text
  assert "| the reverse chain and its gradient | 25.0 | 62% |" in text
  # The chain's backward is 25 - 5 = 20 ms, 4x its forward, above the PLM.
  assert "The largest part is the reverse chain's backward (20.0 ms)" in text
  assert "the chain's backward costs 4.0x its forward" in text
  parts[5]["ms_per_step"] = 22.0
  text = "\n".join(benchmarks._guided_parts_lines(parts, None))
  assert "The largest part is the PLM's forward and backward (22.0 ms)" in text
  assert "| - |" in text  # no step to take shares of


def test_headroom_puts_runs_of_the_same_computations_on_one_line(tmp_path):
  from experiments.doc_blocks import families
  from experiments.doc_blocks.common import Sources

  returns = "pdiff/assets/behavior/cheetah_vel/dataset_returns.json"
  (tmp_path / returns).parent.mkdir(parents=True)
  shutil.copy(REPO / returns, tmp_path / returns)
  results = synthetic_results()
  results["methods"]["upper_bound"] = dict(
      results["methods"]["prompt_diffuser[projection]"])
  for i, label in enumerate(("prompt_dt", "upper_bound")):
    results["methods"][label]["run_fingerprints"] = [f"{i}{s}" for s in "abc"]
  for name in ("all", "headroom", "other"):
    if name == "other":  # another computation of the upper bound
      results["methods"]["upper_bound"]["run_fingerprints"] = ["x", "y", "z"]
    path = tmp_path / "results" / name / "results.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(results))
  text = families.render_headroom(Sources(root=tmp_path))
  lines = [line for line in text.splitlines() if line.startswith("| `")]
  assert len(lines) == 2
  assert lines[0].startswith("| `cheetah_vel` | `results/all/results.json`, "
                             "`results/headroom/results.json` | 3 |")
  assert lines[1].startswith("| `cheetah_vel` | `results/other/results.json` |")
