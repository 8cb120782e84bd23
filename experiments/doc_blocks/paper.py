"""Renderer of the paper's experiments that are committed
(``results/paper/{experiment}.json``, written by ``experiments/paper.py``;
docs/paper.md)."""

from __future__ import annotations

from experiments.doc_blocks.common import Sources, _load_json, _rel, _seconds
from experiments.doc_blocks.runs import machine_state, stale_sentence

PAPER_DIR = "results/paper"


def _family_line(sources: Sources, report: dict, family: str) -> str:
  """One family's provenance: the commit and wall time of the run that
  wrote its table, and a warning when its PLM is no longer the shipped
  one."""
  s = report["families"][family]
  commit = str((s.get("provenance") or {}).get("commit") or "?")
  dirty = " with uncommitted changes" if commit.endswith("+dirty") else ""
  total, each = _wall_time(s)
  parts = [each] if each else []
  if s.get("tune_seconds") is not None:
    parts.append(f"tuning {_seconds(s['tune_seconds'])} and evaluation "
                 f"{_seconds(s['eval_seconds'])} summed over its rows and "
                 "seeds, each run's time as first computed")
  parts.append("runs found in its work directory are reused, not timed "
               "again")
  when = machine_state(s.get("provenance") or {})
  if when:
    parts.append(f"{when} when its run started")
  line = (f"`{family}`: written at commit `{commit[:12]}`{dirty}, in "
          f"{total} ({'; '.join(parts)})")
  run_config = (report.get("config") or {}).get("runs", {}).get(family, {})
  stale = stale_sentence(
      sources, {"config": run_config, "inputs": s.get("inputs") or {},
                "provenance": s.get("provenance") or {}})
  return line + ("." if not stale else f". {stale}")


def _wall_time(section: dict) -> tuple[str, str]:
  """A family's wall time and its parts: its run's and ``""``, or for a
  table whose columns are pipeline runs of their own (table2's qualities,
  table3's settings) their sum and each run's."""
  parts = (section.get("wall_seconds_by_quality")
           or section.get("wall_seconds_by_setting"))
  if not parts:
    return _seconds(section["wall_seconds"]), ""
  known = {name: t for name, t in parts.items() if t is not None}
  each = ", ".join(f"{name.replace('_', '-')} {_seconds(t)}"
                   for name, t in known.items())
  return _seconds(sum(known.values())), each


def render_paper_results(sources: Sources) -> str:
  """Every committed paper experiment: its provenance per family, then its
  own markdown (tables, sentences, caption), one heading level down."""
  from pdiff.pipeline import paper

  root = sources.path(PAPER_DIR)
  paths = [root / f"{name}.json" for name in paper.EXPERIMENTS
           if (root / f"{name}.json").is_file()]
  if not paths:
    return (f"No experiment of `experiments/paper.py` is committed under "
            f"`{PAPER_DIR}/` yet.")
  sections = []
  for path in paths:
    report = _load_json(path)
    families = report["family_order"]
    head = (f"From `{_rel(sources, path)}` ({report['preset']} preset; "
            f"{', '.join(f'`{f}`' for f in families)}):\n\n"
            + "\n".join(f"* {_family_line(sources, report, f)}"
                        for f in families))
    body = paper.markdown(report).replace("\n### ", "\n#### ").replace(
        "\n## ", "\n### ")
    if body.startswith("## "):
      body = "#" + body
    sections.append(body.strip().split("\n", 1)[0] + "\n\n" + head + "\n"
                    + body.strip().split("\n", 1)[1])
  return "\n\n".join(sections)


def render_paper_summary(sources: Sources) -> str:
  """One line per committed paper experiment: its title and the families
  (and seeds) it covers, with Table 1's orderings across its families,
  pointing at docs/paper.md for the tables."""
  from pdiff.pipeline import paper

  root = sources.path(PAPER_DIR)
  lines = []
  for name in paper.EXPERIMENTS:
    path = root / f"{name}.json"
    if not path.is_file():
      continue
    report = _load_json(path)
    title = paper.markdown(report).split("\n", 1)[0].removeprefix("## ")
    seeds = {f: len(report["families"][f]["seeds"])
             for f in report["family_order"]}
    families = ", ".join(f"`{f}` ({n} seed{'' if n == 1 else 's'})"
                         for f, n in seeds.items())
    lines.append(f"* {title} (`{_rel(sources, path)}`): {families}.")
    across = paper.across_families(report)
    if across is not None:
      lines.append(f"  {across['sentence']}")
  if not lines:
    return (f"No experiment of `experiments/paper.py` is committed under "
            f"`{PAPER_DIR}/` yet.")
  return ("The paper's experiments committed so far, by family; "
          "[docs/paper.md](docs/paper.md) has their tables, which "
          "differences are significant and the published figures beside "
          "pdiff's:\n\n" + "\n".join(lines))
