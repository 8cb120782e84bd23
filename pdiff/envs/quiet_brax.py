"""Imports Brax without its known start-up noise, before pdiff uses it.

Importing Brax imports MuJoCo's MJX, whose optional Warp backend prints
``Failed to import warp: ...`` and ``Failed to import mujoco_warp: ...`` to
stdout when Warp is not installed (pdiff does not use it), and JAXopt, which
warns that it is deprecated. Brax also warns, each time it loads a system,
that it is no longer maintained. Exactly these messages are hidden: any other
output of the import is printed, and other warnings keep their filters.
``pdiff.envs`` imports this module first; modules that import Brax without
``pdiff.envs`` import it before Brax.
"""

from __future__ import annotations

import contextlib
import io
import re
import warnings

# (category, start of the message) of each warning hidden.
HIDDEN_WARNINGS = (
    (DeprecationWarning, "JAXopt is no longer maintained"),
    (UserWarning, "Brax System, piplines and environments are not actively "
                  "being maintained"),
)
# What MJX prints when its optional Warp backend cannot be imported.
WARP_FAILURE = re.compile(r"Failed to import (mujoco_)?warp: ")


def _import_brax() -> None:
  for category, message in HIDDEN_WARNINGS:
    warnings.filterwarnings("ignore", message=re.escape(message),
                            category=category)
  printed = io.StringIO()
  with contextlib.redirect_stdout(printed):
    import brax.envs  # noqa: F401
  for line in printed.getvalue().splitlines():
    if not WARP_FAILURE.match(line):
      print(line)


_import_brax()
