"""Tests of the persistent compilation cache's settings
(``pdiff.compilation_cache``)."""

import os

import jax
import pytest

from pdiff import compilation_cache


@pytest.fixture
def jax_cache_dir():
  """Restores JAX's cache directory setting after the test."""
  before = jax.config.jax_compilation_cache_dir
  yield
  jax.config.update("jax_compilation_cache_dir", before)


@pytest.mark.parametrize("value", ["", "0", "off", "OFF", "none", "false"])
def test_the_variable_turns_the_cache_off(monkeypatch, value, jax_cache_dir):
  monkeypatch.setenv(compilation_cache.ENV, value)
  before = jax.config.jax_compilation_cache_dir
  assert compilation_cache.directory() is None
  assert compilation_cache.enable() is None
  assert jax.config.jax_compilation_cache_dir == before


def test_the_variable_names_the_directory(monkeypatch, tmp_path,
                                          jax_cache_dir):
  path = tmp_path / "cache" / "jax"
  monkeypatch.setenv(compilation_cache.ENV, str(path))
  assert compilation_cache.enable() == str(path)
  assert path.is_dir()
  assert jax.config.jax_compilation_cache_dir == str(path)


def test_default_is_the_user_cache_directory(monkeypatch, tmp_path,
                                             jax_cache_dir):
  monkeypatch.delenv(compilation_cache.ENV)
  jax.config.update("jax_compilation_cache_dir", None)
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
  assert compilation_cache.directory() == str(tmp_path / "pdiff" / "jax")
  monkeypatch.delenv("XDG_CACHE_HOME")
  monkeypatch.setenv("HOME", str(tmp_path / "home"))
  assert compilation_cache.default_directory() == str(
      tmp_path / "home" / ".cache" / "pdiff" / "jax")


def test_a_directory_given_to_jax_is_kept(monkeypatch, tmp_path,
                                          jax_cache_dir):
  monkeypatch.delenv(compilation_cache.ENV)
  jax.config.update("jax_compilation_cache_dir", str(tmp_path / "mine"))
  assert compilation_cache.enable() == str(tmp_path / "mine")
  assert os.path.isdir(tmp_path / "mine")


def test_an_uncreatable_directory_is_named(monkeypatch, tmp_path,
                                           jax_cache_dir):
  (tmp_path / "file").write_text("")
  monkeypatch.setenv(compilation_cache.ENV, str(tmp_path / "file" / "jax"))
  with pytest.raises(ValueError, match=r"cannot be created.*"
                     r"PDIFF_COMPILATION_CACHE"):
    compilation_cache.enable()
