"""Table 1 across its families: the paper's orderings family by family, and
each method's normalised score averaged over the families.

The paper summarises Table 1 by an average return over its four
environments. pdiff's families have returns of different scales (cheetah-vel
is negative, Meta-World reach in the thousands), so the average it prints is
of the normalised score, ``(R - R_random) / (R_upper - R_random)``, which is
comparable across families; beside it stands the one ratio the published
figures allow, the method's average return over the paper's environments
divided by the full-data upper bound's. Neither number is a test: the
per-family paired differences are, and the counts of significant ones are
given with them.

:func:`summary` works on a report of :mod:`pdiff.pipeline.paper` (its
``families`` sections of Table 1) and :func:`markdown_lines` prints it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pdiff.evaluation import statistics
from pdiff.pipeline.paper_cells import BASELINE, UPPER_BOUND, paper_row

_fmt = statistics.format_number


def _table1_families(report: Mapping) -> list[str]:
  """The report's families whose sections are Table 1's (with orderings)."""
  return [f for f in report["family_order"]
          if "orderings" in report["families"][f]]


def _labels(report: Mapping, families: Sequence[str]) -> list[str]:
  """Every row label of the families, in the first family's order, then
  the order in which later families add labels."""
  out = []
  for f in families:
    out += [label for label in report["families"][f]["row_order"]
            if label not in out]
  return out


def _published_ratio(method: str, label: str,
                     published: Mapping | None) -> float | None:
  """The published average return of ``method`` over the upper bound's,
  for the row that stands for the paper's method; ``None`` otherwise."""
  if not published or paper_row(method) != label:
    return None
  average = (published.get(method) or {}).get("average")
  upper = (published.get(UPPER_BOUND) or {}).get("average")
  if average is None or not upper:
    return None
  return float(average / upper)


def _method_entry(report: Mapping, families: Sequence[str], label: str,
                  published: Mapping | None) -> dict:
  """One row's normalised scores, their mean over the families and its
  significant differences to the baseline."""
  scores, above, below, method = {}, [], [], None
  for f in families:
    row = report["families"][f]["rows"].get(label)
    if row is None:
      continue
    method = row["method"]
    scores[f] = row.get("normalized_score")
    d = row.get("difference")
    if d and d.get("significant"):
      (above if d["mean"] > 0 else below).append(f)
  complete = len(scores) == len(families) and all(
      s is not None for s in scores.values())
  mean = (float(sum(scores.values()) / len(scores)) if complete else None)
  return dict(method=method, normalized_scores=scores,
              mean_normalized_score=mean, significantly_above=above,
              significantly_below=below,
              published_ratio=_published_ratio(method, label, published))


def _ordering_entry(report: Mapping, families: Sequence[str],
                    index: int) -> dict:
  """The ``index``-th paper ordering in every family."""
  by_family, pair = {}, None
  for f in families:
    p = report["families"][f]["orderings"][index]
    pair = (p["higher"], p["lower"])
    by_family[f] = (dict(same_order=p["same_order"],
                         significant=p["significant"],
                         difference=p["difference"]["mean"])
                    if p["measured"] else None)
  measured = [e for e in by_family.values() if e is not None]
  return dict(higher=pair[0], lower=pair[1], by_family=by_family,
              holds=sum(e["same_order"] is True for e in measured),
              holds_significant=sum(e["same_order"] is True
                                    and bool(e["significant"])
                                    for e in measured),
              reversed=sum(e["same_order"] is False for e in measured),
              reversed_significant=sum(e["same_order"] is False
                                       and bool(e["significant"])
                                       for e in measured),
              measured=len(measured))


def summary(report: Mapping, published: Mapping | None = None) -> dict | None:
  """Table 1 across the report's families, or ``None`` with fewer than two.

  Args:
    report: a Table 1 report (``family_order`` and ``families`` sections of
      :func:`pdiff.pipeline.paper.table1_section`).
    published: the published JSON's ``table1.methods`` (its ``average``
      figures), or ``None`` for no published column.

  Returns:
    ``families``; ``methods``: per row label its ``normalized_scores`` by
    family, their ``mean_normalized_score`` (``None`` unless every family
    has a score), the families where its difference to the baseline is
    significantly positive (``significantly_above``) or negative
    (``significantly_below``), and ``published_ratio`` (the published
    average over the upper bound's, for the paper's rows); ``orderings``:
    per paper ordering its family-by-family ``same_order``,
    ``significant`` and mean ``difference`` and the counts ``holds``,
    ``holds_significant``, ``reversed``, ``reversed_significant`` and
    ``measured``; ``sentence``: the counts in words.
  """
  families = _table1_families(report)
  if len(families) < 2:
    return None
  methods = {label: _method_entry(report, families, label, published)
             for label in _labels(report, families)}
  pairs = len(report["families"][families[0]]["orderings"])
  orderings = [_ordering_entry(report, families, i) for i in range(pairs)]
  return dict(families=families, methods=methods, orderings=orderings,
              sentence=_sentence(orderings, len(families)))


def _sentence(orderings: Sequence[Mapping], num_families: int) -> str:
  """The orderings' counts over the families, in words."""
  parts = []
  for o in orderings:
    n = o["measured"]
    held = o["holds"]
    text = (f"{o['higher']} above {o['lower']} holds on {held} of {n} "
            f"famil{'y' if n == 1 else 'ies'}")
    text += (f" ({o['holds_significant']} significant)" if held else "")
    if o["reversed"]:
      text += (f" and is reversed on {o['reversed']} "
               f"({o['reversed_significant']} significant)")
    parts.append(text)
  return (f"Across the {num_families} families, of the paper's orderings: "
          + "; ".join(parts) + ".")


def _ordering_cell(entry: Mapping | None) -> str:
  """``holds, +15.1`` / ``reversed, -16.7, significant``; ``-`` unmeasured."""
  if entry is None:
    return "-"
  word = {True: "holds", False: "reversed", None: "tie"}[entry["same_order"]]
  text = f"{word}, {_fmt(entry['difference'], sign=True)}"
  return text + (", significant" if entry["significant"] else "")


def markdown_lines(s: Mapping) -> list[str]:
  """The markdown of a :func:`summary`: a table of the paper's orderings by
  family, a table of mean normalised scores, and the sentence."""
  families = s["families"]
  lines = ["### Across families", "",
           "| the paper's ordering | " + " | ".join(families) + " |",
           "|---|" + "|".join("---" for _ in families) + "|"]
  for o in s["orderings"]:
    lines.append(f"| {o['higher']} above {o['lower']} | "
                 + " | ".join(_ordering_cell(o["by_family"][f])
                              for f in families) + " |")
  lines += ["", s["sentence"], "",
            "| method | mean normalised score over the families | "
            f"significantly above {BASELINE} | significantly below it | "
            "published: average over the upper bound's |",
            "|---|---|---|---|---|"]
  for label, m in s["methods"].items():
    mean = m["mean_normalized_score"]
    ratio = m["published_ratio"]
    above = ", ".join(m["significantly_above"]) or "-"
    below = ", ".join(m["significantly_below"]) or "-"
    if label == BASELINE:
      above = below = "baseline"
    lines.append(f"| {label} | {'-' if mean is None else _fmt(mean, 2)} | "
                 f"{above} | {below} | "
                 f"{'-' if ratio is None else _fmt(ratio, 2)} |")
  lines += ["", "The mean normalised score averages each family's score "
            "(comparable across families, unlike their returns); the "
            "published ratio is the paper's average return over its four "
            "environments divided by its full-data upper bound's, the only "
            "ratio its published averages allow. Neither is a test; the "
            "paired differences of each family are."]
  return lines
