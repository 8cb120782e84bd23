"""Fingerprints and stage records (pdiff.stages)."""

import json
import os

import ml_collections
import pytest

from pdiff import stages


def test_fingerprint_is_canonical_and_sensitive():
  a = stages.fingerprint("s", 1, {"x": 1, "y": (1, 2)}, {"in": "abc"})
  b = stages.fingerprint("s", 1, {"y": [1, 2], "x": 1}, {"in": "abc"})
  config = ml_collections.ConfigDict({"x": 1, "y": (1, 2)})
  assert a == b == stages.fingerprint("s", 1, config, {"in": "abc"})
  assert len(a) == 64
  for other in (stages.fingerprint("t", 1, {"x": 1, "y": (1, 2)}, {"in": "abc"}),
                stages.fingerprint("s", 2, {"x": 1, "y": (1, 2)}, {"in": "abc"}),
                stages.fingerprint("s", 1, {"x": 2, "y": (1, 2)}, {"in": "abc"}),
                stages.fingerprint("s", 1, {"x": 1, "y": (1, 2)}, {"in": "abd"})):
    assert other != a


def test_file_digest_follows_content_and_names(tmp_path):
  (tmp_path / "a").write_bytes(b"1")
  (tmp_path / "b").write_bytes(b"2")
  paths = [str(tmp_path / "a"), str(tmp_path / "b")]
  d = stages.file_digest(paths)
  assert d == stages.file_digest(paths[::-1])
  (tmp_path / "b").write_bytes(b"3")
  assert stages.file_digest(paths) != d


def test_records_complete_only_with_matching_fingerprint(tmp_path):
  record = stages.make_record("s", 1, {"x": 1}, {"in": "a"}, status="started")
  path = str(tmp_path / "stage.json")
  stages.write_json_atomic(path, record)
  read = stages.read_record(path)
  assert read == json.loads(json.dumps(record))
  assert not stages.is_complete(read, record["fingerprint"])
  stages.write_json_atomic(path, dict(record, status="complete"))
  assert stages.is_complete(stages.read_record(path), record["fingerprint"])
  assert not stages.is_complete(stages.read_record(path), "other")
  assert not [p for p in os.listdir(tmp_path) if p != "stage.json"]


@pytest.mark.parametrize("text", ["", "{", "[1, 2]", '{"stage": "s"}'])
def test_damaged_record_is_not_trusted(tmp_path, text):
  path = tmp_path / "stage.json"
  path.write_text(text)
  assert stages.read_record(str(path)) is None
  assert stages.read_record(str(tmp_path / "absent.json")) is None


def test_stale_fixed_stage_names_every_changed_field():
  old = stages.make_record("datasets", 1, {"n": 20, "seed": 0, "k": {"a": 1}},
                           {"policy": "p1"})
  new = stages.make_record("datasets", 1, {"n": 30, "seed": 0, "k": {"a": 2}},
                           {"policy": "p2"})
  stages.check_fixed_stage(None, new, "/w/d", "Delete it.")
  stages.check_fixed_stage(new, new, "/w/d", "Delete it.")
  with pytest.raises(stages.StaleStageError) as e:
    stages.check_fixed_stage(old, new, "/w/d", "Delete it.")
  message = str(e.value)
  for part in ("/w/d", "config.n: 20 -> 30", "config.k.a: 1 -> 2",
               "input.policy: 'p1' -> 'p2'", "Delete it."):
    assert part in message
  assert "seed" not in message


def test_config_changes_reports_added_and_removed_fields():
  assert stages.config_changes({"a": 1}, {"a": 1, "b": 2}) == [
      "b: (absent) -> 2"]
  assert stages.config_changes({"a": 1, "b": 2}, {"a": 1}) == [
      "b: 2 -> (absent)"]
  assert stages.config_changes({"a": (1, 2)}, {"a": [1, 2]}) == []
