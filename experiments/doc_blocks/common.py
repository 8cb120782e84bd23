"""What every doc-block renderer shares: where inputs live, how a missing
input is reported, and number and table formatting."""

from __future__ import annotations

import dataclasses
import json
import pathlib
from collections.abc import Callable, Iterable, Sequence

REPO = pathlib.Path(__file__).resolve().parent.parent.parent
# Where the default run's result files are committed, relative to the root.
DEFAULT_RESULTS_DIR = "results/cheetah_vel"
# The family of the default run and of the reference returns.
DEFAULT_FAMILY = "cheetah_vel"

class MissingInputError(FileNotFoundError):
  """A renderer's input file does not exist."""

  def __init__(self, path: pathlib.Path | str):
    super().__init__(f"input file {path} is missing")
    self.path = str(path)


@dataclasses.dataclass(frozen=True)
class Sources:
  """Where the renderers read their inputs.

  Attributes:
    root: the repository root; relative input paths start there.
    results_dir: directory of the default run's ``results.json``, relative
      to ``root`` or absolute.
  """
  root: pathlib.Path = REPO
  results_dir: str = DEFAULT_RESULTS_DIR

  def path(self, rel: str) -> pathlib.Path:
    return self.root / rel

  def results_file(self) -> pathlib.Path:
    return self.root / self.results_dir / "results.json"




def _load_json(path: pathlib.Path):
  if not path.is_file():
    raise MissingInputError(path)
  with open(path) as f:
    return json.load(f)


def _rel(sources: Sources, path: pathlib.Path) -> str:
  try:
    return str(path.relative_to(sources.root))
  except ValueError:
    return str(path)


def _int(x: float) -> str:
  """``12,345``."""
  return f"{x:,.0f}"


def _rate(x: float) -> str:
  """Large rates in millions (``15.1M``), others as whole numbers."""
  return f"{x / 1e6:.1f}M" if abs(x) >= 1e6 else _int(x)


def _ms(x: float) -> str:
  """Milliseconds with three significant digits at most."""
  if abs(x) >= 100:
    return f"{x:,.0f}"
  if abs(x) >= 10:
    return f"{x:.1f}"
  return f"{x:.2f}"


def _ratio(x: float) -> str:
  """``6.8x``; whole numbers from 100 on."""
  return f"{x:,.0f}x" if abs(x) >= 100 else f"{x:.1f}x"


def _span(values: Iterable[float], fmt: Callable[[float], str]) -> str:
  """``"a to b"`` over the values (one value when they format alike)."""
  values = list(values)
  lo, hi = fmt(min(values)), fmt(max(values))
  return lo if lo == hi else f"{lo} to {hi}"


def _seconds(s: float) -> str:
  """``23 s``, ``2 min 54 s``, ``1 h 05 min``."""
  s = int(round(s))
  if s < 60:
    return f"{s} s"
  if s < 3600:
    return f"{s // 60} min {s % 60:02d} s"
  return f"{s // 3600} h {(s % 3600) // 60:02d} min"


def _table(head: Sequence[str], rows: Iterable[Sequence[str]],
           align: Sequence[str] | None = None) -> str:
  """A markdown table; ``align`` holds ``"l"`` or ``"r"`` per column."""
  align = align or ["l"] * len(head)
  sep = ["---:" if a == "r" else "---" for a in align]
  lines = ["| " + " | ".join(head) + " |", "| " + " | ".join(sep) + " |"]
  lines += ["| " + " | ".join(r) + " |" for r in rows]
  return "\n".join(lines)


def _load_average(records: Sequence[dict], key: str = "load_average_1min"):
  return _span((r[key] for r in records if r.get(key) is not None),
               lambda x: f"{x:.1f}")
