"""Tests of pdiff.provenance: the machine's speed and code changes that
results predate."""

import json
import pathlib
import subprocess

import pytest

from experiments.doc_blocks import runs
from experiments.doc_blocks.common import Sources
from pdiff import provenance


def test_matmul_rate_is_a_positive_rate():
  assert provenance.matmul_rate(size=64, repeats=2) > 0


def test_changes_after_reads_the_earlier_commits(tmp_path):
  earlier = tmp_path / "result_changes.json"
  earlier.write_text(json.dumps({"c" * 40: ["a" * 40, "b" * 40]}))
  changes = (("c" * 40, "what changed"),)
  kwargs = dict(changes=changes, earlier_file=str(earlier))
  assert provenance.changes_after("a" * 40, **kwargs) == [
      ("c" * 40, "what changed")]
  # Uncommitted edits on top of an earlier commit are still before it.
  assert provenance.changes_after("b" * 40 + "+dirty", **kwargs) == [
      ("c" * 40, "what changed")]
  assert provenance.changes_after("c" * 40, **kwargs) == []
  assert provenance.changes_after("d" * 40, **kwargs) == []
  assert provenance.changes_after("unknown", **kwargs) is None
  with pytest.raises(ValueError, match="no earlier commits of change e+"):
    provenance.changes_after("a" * 40, changes=(("e" * 40, "x"),),
                             earlier_file=str(earlier))


def test_the_shipped_earlier_commits_are_the_history_before_each_change():
  """Each change's list equals ``git rev-list CHANGE^`` in this checkout."""
  with open(provenance.EARLIER_COMMITS) as f:
    earlier = json.load(f)
  assert set(earlier) == {change for change, _ in provenance.RESULT_CHANGES}
  root = pathlib.Path(provenance.__file__).resolve().parents[1]
  for change, commits in earlier.items():
    history = subprocess.run(["git", "rev-list", change + "^"], cwd=root,
                             capture_output=True, text=True)
    if history.returncode != 0:  # an archive or a shallow clone
      pytest.skip(f"this checkout has no history of {change}: "
                  f"{history.stderr.strip()}")
    assert sorted(history.stdout.split()) == commits


def test_results_written_before_a_change_are_marked_stale():
  sentence = runs.stale_sentence(
      Sources(), {"provenance": {"commit": "3e97136f5945e0a971d412a7fa6bcba9556e56d5"}})
  assert sentence.startswith(
      "**Stale:** these results were written at commit `3e97136f5945`, "
      "before `24c99e9` (evaluation encodes each prompt's keys and values")
  assert sentence.endswith("The current code does not reproduce their "
                           "figures; run the config again to replace them.")
  head = provenance.RESULT_CHANGES[0][0]
  assert runs.stale_sentence(Sources(), {"provenance": {"commit": head}}) is None
  assert runs.stale_sentence(Sources(), {}) is None
