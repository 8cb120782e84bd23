"""Importing pdiff.envs prints nothing: no Warp failure, no deprecation."""

import os
import subprocess
import sys


def test_import_is_quiet():
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  # -W default shows every DeprecationWarning, which Python hides otherwise.
  result = subprocess.run(
      [sys.executable, "-W", "default", "-c", "import pdiff.envs"],
      capture_output=True, text=True, env=env, timeout=300, check=False)
  assert result.returncode == 0, result.stderr
  output = result.stdout + result.stderr
  assert "warp" not in output.lower(), output
  assert "DeprecationWarning" not in output, output
