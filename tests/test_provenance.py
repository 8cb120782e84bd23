"""Tests of pdiff.provenance: the machine's speed and code changes that
results predate."""

import subprocess

import pytest

from experiments.doc_blocks import runs
from experiments.doc_blocks.common import Sources
from pdiff import provenance


def test_matmul_rate_is_a_positive_rate():
  assert provenance.matmul_rate(size=64, repeats=2) > 0


@pytest.fixture
def history(tmp_path):
  """A repository with commits before, at and after a change: their hashes."""
  def git(*args):
    return subprocess.run(["git", *args], cwd=tmp_path, check=True,
                          capture_output=True, text=True).stdout.strip()

  git("init", "-q")
  git("config", "user.email", "maintainers@example.com")
  git("config", "user.name", "maintainers")
  hashes = {}
  for name in ("before", "change", "after"):
    (tmp_path / "file.txt").write_text(name)
    git("add", "file.txt")
    git("commit", "-q", "-m", name)
    hashes[name] = git("rev-parse", "HEAD")
  return tmp_path, hashes


def test_changes_after_names_the_changes_a_commit_predates(history):
  path, h = history
  changes = ((h["change"], "what changed"),)
  assert provenance.changes_after(h["before"], str(path), changes) == [
      (h["change"], "what changed")]
  # Uncommitted edits on top of an earlier commit are still before it.
  assert provenance.changes_after(h["before"] + "+dirty", str(path),
                                  changes) == [(h["change"], "what changed")]
  assert provenance.changes_after(h["change"], str(path), changes) == []
  assert provenance.changes_after(h["after"], str(path), changes) == []


def test_changes_after_is_none_when_history_cannot_tell(history,
                                                        tmp_path_factory):
  path, h = history
  changes = ((h["change"], "what changed"),)
  assert provenance.changes_after("unknown", str(path), changes) is None
  assert provenance.changes_after("0" * 40, str(path), changes) is None
  outside = tmp_path_factory.mktemp("not_a_repository")
  assert provenance.changes_after(h["before"], str(outside), changes) is None


def test_results_written_before_a_change_are_marked_stale(history,
                                                          monkeypatch):
  path, h = history
  monkeypatch.setattr(provenance, "RESULT_CHANGES",
                      ((h["change"], "rollouts changed"),))
  sources = Sources(root=path)
  old = {"provenance": {"commit": h["before"]}}
  text = runs.stale_sentence(sources, old)
  assert text == (f"**Stale:** these results were written at commit "
                  f"`{h['before'][:12]}`, before `{h['change'][:7]}` "
                  "(rollouts changed). The current code does not reproduce "
                  "their figures; run the config again to replace them.")
  assert runs.stale_sentence(sources, {"provenance": {"commit": h["after"]}}) is None
  assert runs.stale_sentence(sources, {}) is None
