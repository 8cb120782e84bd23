"""Renderers of run results: the default run's table and timings and the
reference returns (README.md)."""

from __future__ import annotations

from experiments.doc_blocks.common import (
  DEFAULT_FAMILY,
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
  if prov.get("load_average_1min") is not None:
    text += (f", 1-minute load average {prov['load_average_1min']:.1f} when "
             "the results were written")
  return text + "."


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
  stale = stale_plm_sentence(sources, results)
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
