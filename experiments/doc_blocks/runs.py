"""Renderers of run results: the default run's table and timings and the
reference returns (README.md)."""

from __future__ import annotations

from experiments.doc_blocks.common import (
  DEFAULT_FAMILY,
  MissingInputError,
  Sources,
  _load_json,
  _rel,
  _seconds,
  _table,
)


def render_reference_returns(sources: Sources) -> str:
  """Dataset returns of the default family's test tasks (README.md)."""
  path = sources.path(
      f"pdiff/assets/behavior/{DEFAULT_FAMILY}/dataset_returns.json")
  returns = _load_json(path)
  tasks_path = sources.path("pdiff/envs/tasks.json")
  tests = _load_json(tasks_path)[DEFAULT_FAMILY]["test_tasks"]
  rows = []
  for quality, per_task in returns.items():
    values = [per_task[str(t)] for t in tests]
    rows.append([quality] + [f"{v:.1f}" for v in values]
                + [f"{sum(values) / len(values):.1f}"])
  return (
      f"Mean episode return of the offline datasets of {DEFAULT_FAMILY}'s "
      f"test tasks (`{_rel(sources, path)}`; expert and medium: the shipped "
      "behaviour policies, random: uniform random actions):\n\n"
      + _table(["data"] + [f"task {t}" for t in tests] + ["mean"], rows,
               ["l"] + ["r"] * (len(tests) + 1)))


_STAGE_LABELS = {
    "datasets": "datasets",
    "pretrain": "PLM (pre-training or copy of the shipped checkpoint)",
    "diffusion_pretrain": "diffusion pre-training",
}


def timing_sentence(results: dict) -> str:
  """Wall time of the run, per stage, and the machine, from results.json."""
  stages = results.get("stage_seconds") or {}
  parts = [f"{_STAGE_LABELS.get(k, k.replace('_', ' '))} {_seconds(v)}"
           for k, v in stages.items()]
  methods = results.get("methods") or {}
  tune = sum(sum(r.get("tune_seconds") or ()) for r in methods.values())
  evals = sum(sum(r.get("eval_seconds") or ()) for r in methods.values())
  if tune or evals:
    parts.append(f"tuning {_seconds(tune)} and evaluation {_seconds(evals)} "
                 "summed over methods and seeds")
  wall = results.get("wall_seconds")
  text = "Wall time" + (f" {_seconds(wall)} in all" if wall is not None else "")
  if parts:
    text += ": " + ", ".join(parts)
  prov = results.get("provenance") or {}
  if prov.get("machine"):
    text += f"; machine: {prov['machine']}"
  when = machine_state(prov)
  if when:
    text += f", {when} when the run started"
  return text + "."


def machine_state(prov: dict) -> str:
  """How busy and how fast the machine was, from a provenance record:
  ``"1-minute load average 0.9, float32 matmul 117 GFLOP/s"`` (what was
  recorded; ``""`` when neither was)."""
  parts = []
  if prov.get("load_average_1min") is not None:
    parts.append(f"1-minute load average {prov['load_average_1min']:.1f}")
  if prov.get("matmul_gflops_per_s"):
    parts.append(f"float32 matmul {prov['matmul_gflops_per_s']:.0f} GFLOP/s")
  return ", ".join(parts)


def render_default_run(sources: Sources) -> str:
  """The default run's table and timings (README.md)."""
  return _render_run(sources, sources.results_file(), timing=True)


# Where the cheetah-vel run of every registered method is committed.
ALL_METHODS_RESULTS = "results/cheetah_vel_all/results.json"


def render_all_methods(sources: Sources) -> str:
  """Every registered method on cheetah-vel's default config
  (docs/tuning.md). Its timings are per row (tuning s / seed): rows shared
  with an earlier run in the same work directory were not recomputed, so the
  run's wall time would not count them."""
  return _render_run(sources, sources.path(ALL_METHODS_RESULTS),
                     timing=False)


def stale_plm_sentence(sources: Sources, results: dict) -> str | None:
  """A warning when ``results`` came from another version of the shipped PLM
  it names than the one in ``sources`` (None when they agree, or when the
  run pre-trained its own PLM)."""
  from pdiff.pipeline import prepare

  name = (results.get("config") or {}).get("pretrained")
  used = (results.get("inputs") or {}).get("plm")
  if not name or not used:
    return None
  root = sources.path("pdiff/assets/pretrained")
  if not (root / name).is_dir():
    return (f"**Stale:** the shipped checkpoint `{name}` these results were "
            "computed from is no longer shipped.")
  shipped = prepare.shipped_record(name, root=str(root))["fingerprint"]
  if shipped == used:
    return None
  return (f"**Stale:** these results were computed from an earlier version "
          f"of the shipped checkpoint `{name}` (PLM fingerprint "
          f"`{used[:12]}`; the shipped one is `{shipped[:12]}`), and with "
          "the datasets of that time; run the config again to replace them.")


def stale_code_sentence(sources: Sources, results: dict) -> str | None:
  """A warning when ``results`` were written by code that predates a change
  of :data:`pdiff.provenance.RESULT_CHANGES` (None when they do not, or
  when the history cannot tell)."""
  from pdiff import provenance

  commit = str((results.get("provenance") or {}).get("commit") or "")
  missing = provenance.changes_after(commit)
  if not missing:
    return None
  changes = "; ".join(f"`{change[:7]}` ({what})" for change, what in missing)
  return (f"**Stale:** these results were written at commit "
          f"`{commit[:12]}`, before {changes}. The current code does not "
          "reproduce their figures; run the config again to replace them.")


def stale_sentence(sources: Sources, results: dict) -> str | None:
  """Why ``results`` are stale (an earlier shipped PLM, or earlier code),
  or None."""
  return (stale_plm_sentence(sources, results)
          or stale_code_sentence(sources, results))


def _render_run(sources: Sources, path, *, timing: bool) -> str:
  from pdiff.evaluation import report

  results = _load_json(path)
  config = results.get("config") or {}
  setup = []
  if config.get("eval_episodes") is not None:
    setup.append(f"{config['eval_episodes']} evaluation episodes per test "
                 "task and seed")
  if results.get("backend"):
    setup.append(f"Brax backend `{results['backend']}`")
  if config.get("pretrained"):
    setup.append(f"PLM: the shipped checkpoint `{config['pretrained']}`")
  text = f"From `{_rel(sources, path)}`"
  text += (": " + "; ".join(setup) + ".") if setup else "."
  stale = stale_sentence(sources, results)
  if stale:
    text += "\n\n" + stale
  text += "\n\n" + report.results_table_markdown(results).strip()
  return text + ("\n\n" + timing_sentence(results) if timing else "")


# Families whose default run is committed under results/FAMILY/ beside the
# README's (cheetah-vel), in the paper's order.
OTHER_FAMILIES = ("cheetah_dir", "ant_dir", "metaworld_reach")


def render_family_runs(sources: Sources) -> str:
  """The default run of every other family, one table each, and a line for
  a family whose run is not committed yet (docs/results.md)."""
  parts = []
  for family in OTHER_FAMILIES:
    path = sources.path(f"results/{family}/results.json")
    if not path.is_file():
      parts.append(f"### `{family}`\n\nNo committed run yet "
                   f"(`{_rel(sources, path)}` does not exist).")
      continue
    parts.append(f"### `{family}`\n\n"
                 + _render_run(sources, path, timing=True))
  return "\n\n".join(parts)


def _run_label(results: dict) -> str:
  config = results.get("config") or {}
  episodes = config.get("eval_episodes", "?")
  return (f"{len(results.get('methods') or {})} rows x "
          f"{len(results.get('seeds') or ())} seeds x "
          f"{len(results.get('test_tasks') or ())} test tasks, {episodes} "
          f"episode{'' if episodes == 1 else 's'} each")


def render_compute_budget(sources: Sources) -> str:
  """Wall time of every committed run and how it splits, and each method's
  cost per seed on the all-methods run (docs/paper.md)."""
  from pdiff.provenance import MATMUL_SIZE

  paths = sorted(sources.path("results").glob("*/results.json"))
  rows = []
  for path in paths:
    r = _load_json(path)
    stages = r.get("stage_seconds") or {}
    methods = (r.get("methods") or {}).values()
    tune = sum(sum(m.get("tune_seconds") or ()) for m in methods)
    evals = sum(sum(m.get("eval_seconds") or ()) for m in methods)
    prov = r.get("provenance") or {}
    load, rate = prov.get("load_average_1min"), prov.get("matmul_gflops_per_s")
    rows.append([
        f"`{_rel(sources, path.parent)}`", _run_label(r),
        _seconds(stages.get("datasets", 0) + stages.get("pretrain", 0)),
        _seconds(stages.get("prepare", 0)), _seconds(tune), _seconds(evals),
        _seconds(r["wall_seconds"]) if "wall_seconds" in r else "-",
        f"{load:.1f}" if load is not None else "-",
        f"{rate:.0f}" if rate else "-"])
  table = _table(
      ["run", "size", "datasets and PLM", "methods' preparation",
       "tuning (sum of rows)", "evaluation (sum of rows)", "wall",
       "load average", "matmul GFLOP/s"], rows, ["l", "l"] + ["r"] * 7)
  lines = [
      "Measured on a 2-core CPU from the shipped PLMs and behaviour "
      "policies, from the committed `results/*/results.json` (load average: "
      "1-minute, when the run started, where recorded; the "
      "machine was often shared, so these are upper bounds for an idle "
      f"one; matmul: the float32 rate of a {MATMUL_SIZE} x {MATMUL_SIZE} "
      "matmul measured at the "
      "same moment, where recorded, since machines of one name differ in "
      "speed). Tuning and evaluation are summed over each run's method x "
      "seed rows as they were computed; a row reused from an earlier run in "
      "the same work directory keeps its own time and is not in the run's "
      "wall time.", "", table]
  path = sources.path(ALL_METHODS_RESULTS)
  if path.is_file():
    r = _load_json(path)
    per = []
    for label in r.get("row_order") or sorted(r["methods"]):
      m = r["methods"][label]
      tune, evals = m.get("tune_seconds") or (), m.get("eval_seconds") or ()
      if not tune:
        continue
      per.append([label, _seconds(sum(tune) / len(tune)),
                  _seconds(sum(evals) / max(len(evals), 1)),
                  _seconds((sum(tune) + sum(evals)) / len(tune))])
    lines += [
        "", f"Per seed (its {len(r.get('test_tasks') or ())} test tasks) on "
        f"`{_rel(sources, path.parent)}`, mean over its "
        f"{len(r.get('seeds') or ())} seeds; an experiment costs the sum of "
        "its families x rows x seeds (Table 1 runs every row below on each "
        "family, the ablation Prompt Diffuser's four modes):", "",
        _table(["row", "tuning", "evaluation", "total"], per,
               ["l", "r", "r", "r"])]
  return "\n".join(lines)


def render_diagnosis(sources: Sources) -> str:
  """Every committed ``results/*/diagnose.json`` (``experiments/diagnose.py``)
  as its report's tables (docs/diagnosis.md)."""
  from pdiff.pipeline import diagnose

  return _render_reports(sources, "diagnose.json", _diagnosis_findings,
                         diagnose.markdown)


def render_selection(sources: Sources) -> str:
  """Every committed ``results/*/select.json`` (``experiments/selection.py``)
  as its choice, in sentences, and its tables (docs/diagnosis.md)."""
  from pdiff.pipeline import selection

  return _render_reports(sources, "select.json", _selection_findings,
                         selection.markdown)


def _render_reports(sources: Sources, name: str, findings_of,
                    markdown) -> str:
  """Every ``results/*/{name}``, one section each (:func:`_report_section`).
  """
  paths = sorted(sources.path("results").glob(f"*/{name}"))
  if not paths:
    raise MissingInputError(
        f"{_rel(sources, sources.path('results'))}/*/{name}")
  return "\n\n".join(_report_section(sources, path, findings_of, markdown)
                      for path in paths)


def render_selection_summary(sources: Sources) -> str:
  """The default run's family's selection (``{results_dir}/select.json``)
  in sentences, for the README."""
  path = sources.path(sources.results_dir) / "select.json"
  report = _load_json(path)
  return (f"From `{_rel(sources, path)}` ({len(report['seeds'])} seeds):\n\n"
          + "\n".join(f"* {x}" for x in _selection_findings(report)))


def _report_section(sources: Sources, path, findings_of, markdown) -> str:
  """A report file's provenance, findings (bullets) and tables (its own
  markdown, one heading level down)."""
  report = _load_json(path)
  prov = report.get("provenance") or {}
  commit = str(prov.get("commit") or "?")
  head = (f"From `{_rel(sources, path)}`: `{report['family']}`, seeds "
          f"{', '.join(str(s) for s in report['seeds'])}, PLM "
          f"`{report['config'].get('pretrained') or 'pre-trained in the run'}`"
          f", computed in {_seconds(report['wall_seconds'])} at commit "
          f"`{commit[:12]}`"
          + (" with uncommitted changes" if commit.endswith("+dirty") else "")
          + ".")
  stale = stale_sentence(sources, report)
  findings = "\n".join(f"* {x}" for x in findings_of(report))
  body = markdown(report).replace("\n## ", "\n### ")
  if body.startswith("## "):
    body = "#" + body
  return "\n\n".join(x for x in (head, stale, findings, body.strip()) if x)


def _difference_text(label: str, d: dict | None) -> str | None:
  """```label` +1.2 [lo, hi]`` (significant or not), None without a CI."""
  if not d or d.get("ci_low") is None:
    return None
  verdict = ("significant" if d["ci_low"] > 0 or d["ci_high"] < 0
             else "not significant")
  return (f"`{label}` {d['mean']:+.1f} [{d['ci_low']:.1f}, "
          f"{d['ci_high']:.1f}], {verdict}")


def _selection_findings(report: dict) -> list[str]:
  """Plain sentences on a selection report: what was chosen on the
  validation tasks, and what the paper's and the chosen setting give on the
  test tasks against the few-shot prompt (paired by seed, 95% CI)."""
  chosen, reference = report["chosen"], report["reference"]
  val = report["validation"]
  best = val[f"select-validation/{chosen}"]
  overrides = ", ".join(f"`{k} = {v!r}`"
                        for k, v in report["variants"][chosen].items())
  out = [f"Chosen on validation tasks {report['validation_tasks']}: "
         f"`{chosen}` ({overrides or 'the config as it is'}; mean validation "
         f"return {best['mean']:.1f}; the "
         f"few-shot prompt's {val['prompt_dt']['mean']:.1f})"
         + ("." if chosen == reference else
            f", over the reference `{reference}` "
            f"({val[f'select-validation/{reference}']['mean']:.1f}).")]
  test = report["test"]
  parts = [_difference_text(label, test[label].get("difference_to_prompt_dt"))
           for label in test if label != "prompt_dt"]
  parts = [p for p in parts if p]
  if parts:
    out.append("On the test tasks, against the plain few-shot prompt "
               f"(mean {test['prompt_dt']['mean']:.1f}; paired by seed, 95% "
               "CI): " + "; ".join(parts) + ".")
  if chosen != reference:
    text = _difference_text(
        f"select-test/{chosen}",
        test[f"select-test/{chosen}"].get(
            f"difference_to_select-test/{reference}"))
    if text:
      out.append(f"The chosen setting against the paper's on the test "
                 f"tasks: {text}.")
  return out


def _diagnosis_findings(report: dict) -> list[str]:
  """Plain sentences on a diagnosis report: does L_DT rank prompts by
  return, how the gradients compare, which variants differ."""
  import numpy as np

  tasks = report["summary"]["tasks"]
  n = len(tasks)
  out = []

  def over_tasks(key):
    values = [e[key]["mean"] for e in tasks.values()
              if e.get(key) and e[key].get("mean") is not None]
    if not values:
      return None
    return (f"{np.mean(values):+.2f} on average over the {len(values)} "
            f"tasks, positive on {sum(v > 0 for v in values)}")

  for regime in report["regimes"]:
    real = over_tasks(f"real_rank_correlation_{regime}")
    gen = [f"`{m}` candidates {over_tasks(f'{m}_rank_correlation_{regime}')}"
           for m in report["modes"]
           if over_tasks(f"{m}_rank_correlation_{regime}")]
    if real:
      out.append(
          f"Rank correlation between -L_DT ({regime} regime) and return: "
          f"real windows {real}" + ("; " + "; ".join(gen) if gen else "")
          + f" (of {n}).")
  head = [e["headroom"]["mean"] for e in tasks.values()
          if e["headroom"].get("mean") is not None]
  if head:
    out.append(f"Headroom (best real window minus the few-shot prompt): "
               f"{np.mean(head):+.1f} on average, from {min(head):+.1f} to "
               f"{max(head):+.1f}.")
  for mode, g in report["summary"].get("gradients", {}).items():
    out.append(f"`{mode}` fine-tuning: ||g_DT|| / ||g_DM|| "
               f"{g['norm_ratio']['mean']:.3g} on average (first tenth of "
               f"the steps {g['norm_ratio']['first']:.3g}, last "
               f"{g['norm_ratio']['last']:.3g}), cosine "
               f"{g['cosine']['mean']:+.3f}.")
  significant, other = [], []
  for label, v in (report.get("variants") or {}).items():
    d = v.get("difference_to_prompt_dt")
    if not d or d.get("ci_low") is None:
      continue
    text = f"`{label}` {d['mean']:+.1f} [{d['ci_low']:.1f}, {d['ci_high']:.1f}]"
    (significant if d["ci_low"] > 0 or d["ci_high"] < 0 else other).append(
        text)
  if significant or other:
    out.append(
        "Against the plain few-shot prompt (paired by seed, 95% CI): "
        + ("significantly different: " + ", ".join(significant) + "; "
           if significant else "no variant differs significantly; ")
        + ("not resolved: " + ", ".join(other) if other else "")
        + ".")
  return out
