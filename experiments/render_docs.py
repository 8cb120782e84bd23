r"""Renders the generated blocks of README.md and docs/*.md from result files.

Every figure the documentation quotes comes from a committed file (the
benchmarks' JSON in ``benchmarks/results/``, the runs' ``results/*/
results.json``, shipped assets and configs) through a renderer of
``experiments/doc_blocks/``. A generated block is delimited by two lines

  <!-- BEGIN GENERATED: name -->
  <!-- END GENERATED: name -->

and ``name`` picks the renderer (``RENDERERS``). Text outside the blocks is
never touched.

  python experiments/render_docs.py            # rewrite every block in place
  python experiments/render_docs.py --check    # exit 1 and print a diff if a
                                               # block disagrees with its files
  python experiments/render_docs.py --import_run=runs/cheetah_vel
      # copy that run's results.{json,md} and returns.png into
      # results/cheetah_vel/ first, then rewrite the blocks
  python experiments/render_docs.py --import_run=runs/cheetah_vel_all \
      --import_to=results/cheetah_vel_all   # the run of every method

A block whose input file is missing is written as a placeholder naming the
file, and both modes exit 1 for it.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import os
import pathlib
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence

from experiments.doc_blocks import benchmarks, families, paper, runs, speed_flags
from experiments.doc_blocks.common import (  # noqa: F401 (the CLI's API)
  DEFAULT_FAMILY,
  DEFAULT_RESULTS_DIR,
  REPO,
  MissingInputError,
  Sources,
  _rel,
)
from experiments.doc_blocks.runs import render_default_run  # noqa: F401

# Files of a work directory's ``results/`` that --import_run copies.
RUN_FILES = ("results.json", "results.md", "returns.png")

BEGIN_RE = re.compile(r"^<!-- BEGIN GENERATED: ([A-Za-z0-9_]+) -->[ \t]*$",
                      re.MULTILINE)
END_RE = re.compile(r"^<!-- END GENERATED: ([A-Za-z0-9_]+) -->[ \t]*$",
                    re.MULTILINE)


class DocFormatError(ValueError):
  """Unbalanced, nested or unknown generated-block markers."""


@dataclasses.dataclass(frozen=True)
class Problem:
  """A block of a doc that disagrees with its inputs (or cannot be rendered).

  ``kind`` is ``"differs"`` (``detail`` is a unified diff),
  ``"missing_input"`` (``detail`` names the file) or ``"malformed"``.
  """
  doc: str
  block: str
  kind: str
  detail: str

  def __str__(self) -> str:
    where = f"{self.doc}: block {self.block}" if self.block else self.doc
    if self.kind == "differs":
      return f"{where} differs from its input files:\n{self.detail}"
    if self.kind == "missing_input":
      return f"{where} cannot be rendered: {self.detail}"
    return f"{where}: {self.detail}"


# --------------------------------------------------------------------------
# Formatting helpers.


RENDERERS: dict[str, Callable[[Sources], str]] = {
    "default_run": runs.render_default_run,
    "reference_returns": runs.render_reference_returns,
    "all_methods": runs.render_all_methods,
    "family_runs": runs.render_family_runs,
    "compute_budget": runs.render_compute_budget,
    "diagnosis": runs.render_diagnosis,
    "selection": runs.render_selection,
    "selection_summary": runs.render_selection_summary,
    "paper_results": paper.render_paper_results,
    "paper_summary": paper.render_paper_summary,
    "return_conditioning": families.render_return_conditioning,
    "behavior_policies": families.render_behavior_policies,
    "shipped_plms": families.render_shipped_plms,
    "headroom": families.render_headroom,
    "metaworld_throughput": families.render_metaworld_throughput,
    "env_throughput": benchmarks.render_env_throughput,
    "env_backend_choice": benchmarks.render_env_backend_choice,
    "env_throughput_summary": benchmarks.render_env_throughput_summary,
    "evaluation_throughput": benchmarks.render_evaluation_throughput,
    "prompt_generation": benchmarks.render_prompt_generation,
    "sampler_throughput": benchmarks.render_sampler_throughput,
    "train_step": benchmarks.render_train_step,
    "projection_overhead": benchmarks.render_projection_overhead,
    "evaluation_reference": benchmarks.render_evaluation_reference,
    "tuning_profile": benchmarks.render_tuning_profile,
    "xla_flags": speed_flags.render_xla_flags,
}


# --------------------------------------------------------------------------
# Blocks.


@dataclasses.dataclass(frozen=True)
class Block:
  """A generated block: ``text[start:end]`` is its body."""
  name: str
  start: int
  end: int


def parse_blocks(text: str) -> list[Block]:
  """The generated blocks of a document, in order.

  Raises:
    DocFormatError: a BEGIN without its END (or the reverse), nested blocks,
      an END naming another block, or an unknown block name.
  """
  blocks, pos = [], 0
  begins = list(BEGIN_RE.finditer(text))
  ends = list(END_RE.finditer(text))
  if len(begins) != len(ends):
    raise DocFormatError(f"{len(begins)} BEGIN GENERATED markers but "
                         f"{len(ends)} END GENERATED markers")
  for b, e in zip(begins, ends, strict=True):
    name = b.group(1)
    if e.start() < b.end() or b.start() < pos:
      raise DocFormatError(f"block {name}: its END marker comes before its "
                           "BEGIN, or blocks overlap")
    if e.group(1) != name:
      raise DocFormatError(f"block {name} is closed by END GENERATED: "
                           f"{e.group(1)}")
    if name not in RENDERERS:
      raise DocFormatError(f"unknown block {name}; known: "
                           + ", ".join(sorted(RENDERERS)))
    blocks.append(Block(name, b.end() + 1, e.start()))
    pos = e.end()
  return blocks


def placeholder(name: str, error: MissingInputError, sources: Sources) -> str:
  """What a block holds while its input file is missing."""
  missing = _rel(sources, pathlib.Path(error.path))
  text = f"_Not rendered: `{missing}` is missing."
  if name == "default_run":
    text += (" Run the first command above, then `python "
             "experiments/render_docs.py --import_run=runs/cheetah_vel`.")
  return text + "_"


def render_body(name: str, sources: Sources) -> str:
  """A block's body: the renderer's markdown between two blank lines."""
  return "\n" + RENDERERS[name](sources).strip("\n") + "\n\n"


def render_text(text: str, sources: Sources, doc: str = ""
                ) -> tuple[str, list[Problem]]:
  """The document with every block re-rendered, and the blocks that could
  not be (missing inputs: written as a placeholder)."""
  problems, out, pos = [], [], 0
  cache: dict[str, str | MissingInputError] = {}
  for block in parse_blocks(text):
    if block.name not in cache:
      try:
        cache[block.name] = render_body(block.name, sources)
      except MissingInputError as e:
        cache[block.name] = e
    body = cache[block.name]
    if isinstance(body, MissingInputError):
      missing = _rel(sources, pathlib.Path(body.path))
      problems.append(Problem(doc, block.name, "missing_input",
                              f"input file {missing} is missing"))
      body = "\n" + placeholder(block.name, body, sources) + "\n\n"
    out += [text[pos:block.start], body]
    pos = block.end
  out.append(text[pos:])
  return "".join(out), problems


def doc_paths(docs_root: pathlib.Path) -> list[pathlib.Path]:
  """README.md and docs/*.md."""
  paths = [docs_root / "README.md"] + sorted((docs_root / "docs").glob("*.md"))
  return [p for p in paths if p.is_file()]


def _diff_blocks(doc: str, old: str, new: str) -> list[Problem]:
  """One ``differs`` problem per block whose body changed."""
  problems = []
  for a, b in zip(parse_blocks(old), parse_blocks(new), strict=True):
    before, after = old[a.start:a.end], new[b.start:b.end]
    if before != after:
      diff = difflib.unified_diff(
          before.splitlines(keepends=True), after.splitlines(keepends=True),
          f"{doc} ({a.name}, as written)", f"{doc} ({a.name}, rendered)")
      problems.append(Problem(doc, a.name, "differs", "".join(diff)))
  return problems


def _render_all(sources: Sources | None, docs_root: pathlib.Path | None):
  """Every document rendered in memory: ``(rendered, problems)`` with
  ``rendered`` a list of ``(path, doc, text, new text, missing-input
  problems)`` and ``problems`` the malformed documents (left out)."""
  sources = Sources() if sources is None else sources
  docs_root = pathlib.Path(docs_root or sources.root)
  rendered, problems = [], []
  for path in doc_paths(docs_root):
    doc = str(path.relative_to(docs_root))
    text = path.read_text()
    try:
      new, missing = render_text(text, sources, doc)
    except DocFormatError as e:
      problems.append(Problem(doc, "", "malformed", str(e)))
      continue
    rendered.append((path, doc, text, new, missing))
  return rendered, problems


def check_docs(sources: Sources | None = None,
               docs_root: pathlib.Path | None = None) -> list[Problem]:
  """Every block that disagrees with its inputs or cannot be rendered.

  A block whose input is missing is reported as ``missing_input`` (not
  compared); an empty list means the docs are up to date.
  """
  rendered, problems = _render_all(sources, docs_root)
  for _, doc, text, new, missing in rendered:
    missing_names = {p.block for p in missing}
    problems += [p for p in _diff_blocks(doc, text, new)
                 if p.block not in missing_names]
    problems += missing
  return problems


def write_atomic(path: pathlib.Path, data: bytes | str) -> None:
  """Writes through a temporary file in the same directory and a rename."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                             suffix=".tmp")
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data.encode() if isinstance(data, str) else data)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    os.chmod(tmp, mode)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def write_docs(sources: Sources | None = None,
               docs_root: pathlib.Path | None = None
               ) -> tuple[list[str], list[Problem]]:
  """Rewrites every block in place.

  Returns:
    The docs that changed, and the blocks written as placeholders (missing
    inputs) or left alone (malformed documents).
  """
  # Render every document before writing any, so that a failing renderer
  # leaves all of them as they were.
  rendered, problems = _render_all(sources, docs_root)
  updates = []
  for path, doc, text, new, missing in rendered:
    problems += missing
    if new != text:
      updates.append((path, doc, new))
  for path, _, new in updates:
    write_atomic(path, new)
  return [doc for _, doc, _ in updates], problems


def import_run(run_dir: str | os.PathLike, dest_dir: str | os.PathLike
               ) -> list[pathlib.Path]:
  """Copies a work directory's ``results/{results.json,results.md,
  returns.png}`` into ``dest_dir``.

  Every file is checked (present; results.json parses) and copied to a
  temporary file beside its destination before any destination is
  replaced, so a failure leaves ``dest_dir`` as it was.
  """
  src = pathlib.Path(run_dir) / "results"
  dest = pathlib.Path(dest_dir)
  missing = [str(src / n) for n in RUN_FILES if not (src / n).is_file()]
  if missing:
    raise MissingInputError(", ".join(missing))
  with open(src / "results.json") as f:
    json.load(f)
  dest.mkdir(parents=True, exist_ok=True)
  staged = []
  try:
    for name in RUN_FILES:
      fd, tmp = tempfile.mkstemp(dir=dest, prefix=f".{name}.", suffix=".tmp")
      os.close(fd)
      staged.append((tmp, dest / name))
      shutil.copyfile(src / name, tmp)
      os.chmod(tmp, 0o644)
    for tmp, target in staged:
      os.replace(tmp, target)
  finally:
    for tmp, _ in staged:
      if os.path.exists(tmp):
        os.remove(tmp)
  return [dest / n for n in RUN_FILES]


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
      description=__doc__.split("\n")[0],
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--check", action="store_true",
                      help="compare instead of writing; exit 1 on a difference")
  parser.add_argument("--results_dir", default=DEFAULT_RESULTS_DIR,
                      help="the default run's results directory, relative to "
                      "the repository root (default: %(default)s)")
  parser.add_argument("--import_run", default=None, metavar="WORKDIR",
                      help="copy WORKDIR/results/{results.json,results.md,"
                      "returns.png} into --import_to first")
  parser.add_argument("--import_to", default=None, metavar="DIR",
                      help="where --import_run copies to, relative to the "
                      "repository root (default: --results_dir, the default "
                      "run's; results/cheetah_vel_all for the run of every "
                      "method)")
  parser.add_argument("--root", default=str(REPO), help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  sources = Sources(pathlib.Path(args.root), args.results_dir)
  if args.import_run:
    if args.check:
      parser.error("--import_run writes files; it cannot go with --check")
    dest = args.import_to or args.results_dir
    for path in import_run(args.import_run, sources.root / dest):
      print(f"imported {path}")
  if args.check:
    problems = check_docs(sources)
    for p in problems:
      print(p, file=sys.stderr)
    stale = sum(p.kind != "missing_input" for p in problems)
    if stale:
      print(f"{stale} generated block(s) out of date: run python "
            "experiments/render_docs.py", file=sys.stderr)
    if len(problems) > stale:
      print(f"{len(problems) - stale} generated block(s) lack their input "
            "file", file=sys.stderr)
    return 1 if problems else 0
  changed, problems = write_docs(sources)
  for doc in changed:
    print(f"rewrote {doc}")
  for p in problems:
    print(p, file=sys.stderr)
  return 1 if problems else 0


if __name__ == "__main__":
  sys.path.insert(0, str(REPO))
  sys.exit(main())
