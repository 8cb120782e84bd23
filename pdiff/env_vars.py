"""Settings read from environment variables: counts that may be ``auto``."""

from __future__ import annotations

import os


def count_or_auto(name: str, count_help: str, auto_help: str) -> int | None:
  """The environment variable ``name`` as a positive integer, or None when
  it is unset, empty or ``auto`` (any case).

  Raises:
    ValueError: naming the variable, its value and what is expected
      (``count_help`` says what the count means, ``auto_help`` what
      ``auto`` chooses).
  """
  text = os.environ.get(name, "auto").strip()
  if text.lower() in ("", "auto"):
    return None
  try:
    count = int(text)
  except ValueError:
    count = 0
  if count < 1:
    raise ValueError(f"{name}={text!r}: expected a positive integer "
                     f"({count_help}) or 'auto' ({auto_help}).")
  return count
