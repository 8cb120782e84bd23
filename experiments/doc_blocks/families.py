"""Renderers of what each task family ships and reaches: return conditioning
(docs/envs.md), behaviour policies and their datasets (docs/envs.md), the
shipped PLMs (docs/training.md) and the headroom of prompt tuning
(docs/tuning.md)."""

from __future__ import annotations

import pathlib

from experiments.doc_blocks.common import (
  MissingInputError,
  Sources,
  _load_json,
  _rel,
  _seconds,
  _table,
)

BRAX_FAMILIES = ("cheetah_vel", "cheetah_dir", "ant_dir")
# Families with shipped dataset returns: the Brax ones (PPO behaviour
# policies) and Meta-World reach (its scripted expert).
DATA_FAMILIES = BRAX_FAMILIES + ("metaworld_reach",)
# Prompt-DT's own settings (mxu34/prompt-dt, prompt_dt/prompt_utils.py,
# gen_env): (target, scale) on its MuJoCo data, quoted for comparison (its
# ML1 branch, which Meta-World reach goes through: 650 / 650).
PROMPT_DT_CONDITIONING = {"cheetah_vel": (0.0, 500.0),
                          "cheetah_dir": (1500.0, 1000.0),
                          "ant_dir": (500.0, 500.0),
                          "metaworld_reach": (650.0, 650.0)}
# pdiff's strength bars for the expert data (per-task mean returns):
# (bar on the mean over tasks, bar on every task), or per task by index.
EXPERT_BARS = {
    "cheetah_vel": dict(mean=-70.0, every=-150.0),
    "cheetah_dir": dict(task={0: 600.0, 1: 400.0}),
    "ant_dir": dict(mean=450.0, every=300.0),
}


def _returns(sources: Sources, family: str) -> tuple[pathlib.Path, dict]:
  """The dataset returns shipped with the behaviour policies that collect
  ``family``'s data (another family's, for ant_dir_10)."""
  from pdiff import envs

  source = envs.make(family).behavior_family
  path = sources.path(f"pdiff/assets/behavior/{source}/dataset_returns.json")
  return path, _load_json(path)


def _splits(sources: Sources) -> dict:
  return _load_json(sources.path("pdiff/envs/tasks.json"))


def _mean(values) -> float:
  values = list(values)
  return sum(values) / len(values)


def render_return_conditioning(sources: Sources) -> str:
  """Each family's return target and scale by pdiff.data.conditioning's
  rule on its training tasks' expert data (docs/envs.md)."""
  from pdiff import envs
  from pdiff.data import conditioning

  splits = _splits(sources)
  rows = []
  for name in DATA_FAMILIES:
    _, returns = _returns(sources, name)
    train = splits[name]["train_tasks"]
    expert = [returns["expert"][str(t)] for t in train]
    family = envs.make(name)
    target, scale = conditioning.return_conditioning(
        returns["expert"], train, return_supremum=family.return_supremum)
    pdt = PROMPT_DT_CONDITIONING[name]
    rows.append([f"`{name}`", f"{max(expert):.1f}",
                 f"{max(abs(v) for v in expert):.1f}", f"{scale:g}",
                 f"{target:g}" + (" (capped)" if target ==
                                  family.return_supremum else ""),
                 f"{pdt[0]:g} / {pdt[1]:g}"])
  return (
      "From `pdiff/assets/behavior/FAMILY/dataset_returns.json` (mean return "
      "of each training task's expert dataset) by the rule of "
      "`pdiff/data/conditioning.py`; `tests/data/test_conditioning.py` fails "
      "if a family's constants differ from the rule's output.\n\n"
      + _table(["family", "best training task", "largest abs(return)",
                "return scale", "return target", "Prompt-DT target / scale"],
               rows, ["l", "r", "r", "r", "r", "r"]))


def _bar_status(name: str, per_task: dict) -> str:
  bar = EXPERT_BARS[name]
  values = list(per_task.values())
  parts, met = [], True
  if "mean" in bar:
    ok = _mean(values) >= bar["mean"]
    met &= ok
    parts.append(f"mean >= {bar['mean']:g}")
  if "every" in bar:
    ok = min(values) >= bar["every"]
    met &= ok
    parts.append(f"every task >= {bar['every']:g}")
  for task, value in bar.get("task", {}).items():
    ok = per_task[str(task)] >= value
    met &= ok
    parts.append(f"task {task} >= {value:g}")
  return ", ".join(parts) + (": **met**" if met else ": **not met**")


def render_behavior_policies(sources: Sources) -> str:
  """Each family's behaviour policy and dataset returns (docs/envs.md)."""
  rows = []
  for name in DATA_FAMILIES:
    _, returns = _returns(sources, name)
    if name in BRAX_FAMILIES:
      summary = _load_json(
          sources.path(f"pdiff/assets/behavior/{name}/summary.json"))
      curve = summary.get("curve") or []
      steps = f"{curve[-1][0] / 1e6:.1f}M" if curve else "-"
      expert_step = _load_json(sources.path(
          f"pdiff/assets/behavior/{name}/expert/policy.json"))["step"]
      evaluations = dict((int(s), r) for s, r in curve)
      last = (f"{evaluations[expert_step]:.1f} at {expert_step / 1e6:.1f}M"
              if expert_step in evaluations else "-")
      seconds = _seconds(summary["train_seconds"])
    else:  # Meta-World's scripted expert: nothing trained
      steps, last, seconds = "scripted", "-", "-"
    cells, means = [], {}
    for quality in ("expert", "medium", "random"):
      values = list(returns[quality].values())
      means[quality] = _mean(values)
      cells.append(f"{means[quality]:.1f} ({min(values):.1f} to "
                   f"{max(values):.1f})")
    share = ((means["medium"] - means["random"])
             / (means["expert"] - means["random"]) * 100)
    bar = (_bar_status(name, returns["expert"]) if name in EXPERT_BARS
           else "none (Meta-World's scripted expert)")
    rows.append([f"`{name}`", steps, seconds, last, *cells, f"{share:.0f}%",
                 bar])
  return (
      "Mean episode return of each dataset over all tasks (lowest to highest "
      "task in brackets), from `pdiff/assets/behavior/FAMILY/"
      "dataset_returns.json`; PPO environment steps and training time from "
      "`summary.json`, whose `curve` holds every evaluation of Brax's "
      "trainer (which averages over training tasks drawn at random); the "
      "expert checkpoint's evaluation return and step from "
      "`expert/policy.json` (the last evaluation, or the best one where the "
      "config's `expert` is `\"best\"`); metaworld_reach's expert and "
      "medium data come from Meta-World's scripted policy (action noise "
      "0.1 and 4.0). *Medium* is "
      "where the medium data's mean lies on the way from the random data's "
      "to the expert data's (the aim: about 50%).\n\n"
      + _table(["family", "PPO steps", "training time", "expert evaluation",
                "expert data", "medium data", "random data", "medium",
                "expert bar"], rows,
               ["l", "r", "r", "r", "r", "r", "r", "r", "l"]))


def _split_row(evaluation: dict, split: str) -> tuple[float, float]:
  s = evaluation[split]
  return _mean(s["return_mean"]), _mean(s["dataset_return"])


def render_shipped_plms(sources: Sources) -> str:
  """The shipped pre-trained Prompt-DTs and how close they come to their
  data (docs/training.md)."""
  root = sources.path("pdiff/assets/pretrained")
  rows = []
  for directory in sorted(p for p in root.iterdir() if p.is_dir()):
    config = _load_json(directory / "config.json")
    policy = _load_json(directory / "policy.json")
    model = config["model"]
    pretrain = directory / "pretrain_config.json"
    curve = directory / "curve.json"
    # The loss curve ends at the exported checkpoint (pretrain.py
    # --export_step may ship one before the run's last).
    steps = (f"{_load_json(curve)[-1]['step']:,}" if curve.is_file()
             else f"{_load_json(pretrain)['num_steps']:,}"
             if pretrain.is_file() else "-")
    loss = f"{_load_json(curve)[-1]['loss']:.4f}" if curve.is_file() else "-"
    evaluation = _load_json(directory / "evaluation.json")
    cells = []
    for split in ("train", "test"):
      got, data = _split_row(evaluation, split)
      gap = (got - data) / abs(data) * 100 if data else float("nan")
      cells.append(f"{got:.1f} vs {data:.1f} ({gap:+.0f}%)")
    # PLMs exported before these fields existed sampled trajectories
    # uniformly and pooled the training tasks' states only.
    sampling = ("by length" if policy.get("weight_by_length", False)
                else "uniform")
    statistics = policy.get("state_statistics", "train").replace("_", " ")
    rows.append([f"`{directory.name}`", policy["family"],
                 f"{model['hidden_dim']} / {model['num_layers']} / "
                 f"{policy['context_len']} / {policy['prompt_len']}",
                 f"{sampling}; {statistics}", steps, loss, *cells])
  text = (
      "From `pdiff/assets/pretrained/NAME/` (`evaluation.json`: every task "
      "of the split, prompted with the last K* steps of one of 5 expert "
      "trajectories, against the mean return of that task's expert data; "
      "`curve.json`: the training loss):\n\n"
      + _table(["PLM", "family", "embed / layers / K / K*",
                "trajectories; state statistics", "steps", "final loss",
                "training tasks: PLM vs data", "test tasks: PLM vs data"],
               rows, ["l", "l", "l", "l", "r", "r", "r", "r"]))
  for directory in sorted(p for p in root.iterdir() if p.is_dir()):
    text += _return_curves(sources, directory)
  return text


def _return_curves(sources: Sources, directory) -> str:
  """The training tasks' return over a shipped PLM's checkpoints, one
  column per evaluation seed ("" when none was measured)."""
  curves = [_load_json(p) for p in sorted(
      directory.glob("return_curve_train*.json"))]
  if not curves:
    return ""
  steps = sorted({p["step"] for c in curves for p in c["points"]})
  data = curves[0]["points"][0]["dataset_return"]
  rows = []
  for step in steps:
    cells = []
    for c in curves:
      point = {p["step"]: p for p in c["points"]}.get(step)
      cells.append("-" if point is None else
                   f"{point['return_mean']:.1f} "
                   f"({100 * point['shortfall']:.0f}% short)")
    rows.append([f"{step:,}", *cells])
  shipped = _load_json(directory / "curve.json")[-1]["step"]
  settings = curves[0]["settings"]
  return (
      f"\n\n`{directory.name}`: return on the training tasks over "
      "pre-training (`experiments/evaluate.py --curve`; "
      f"{settings['num_episodes']} episodes per task, few-shot prompts from "
      f"{settings['num_shots']} {settings['quality']} trajectories, against "
      f"the data's {data:.1f}); the shipped checkpoint is step "
      f"{shipped:,}:\n\n"
      + _table(["step"] + [f"seed {c['settings']['seed']}" for c in curves],
               rows, ["r"] * (1 + len(curves))))


def render_headroom(sources: Sources) -> str:
  """Few-shot prompt, full-data upper bound and expert data on each
  family's test tasks: the room prompt tuning has (docs/tuning.md)."""
  from experiments.doc_blocks.runs import stale_sentence

  rows, stale = [], []
  same_runs = {}  # the two rows' run fingerprints -> that table row
  for path in sorted(sources.path("results").glob("*/results.json")):
    results = _load_json(path)
    methods = results.get("methods") or {}
    if "prompt_dt" not in methods or "upper_bound" not in methods:
      continue
    if stale_sentence(sources, results):
      stale.append(f"`{_rel(sources, path)}`")
      continue
    family = results["family"]
    _, returns = _returns(sources, family)
    data = _mean(returns["expert"][str(t)] for t in results["test_tasks"])
    few, upper = methods["prompt_dt"], methods["upper_bound"]
    runs = (tuple(few.get("run_fingerprints") or (str(path),)),
            tuple(upper.get("run_fingerprints") or (str(path),)))
    if runs in same_runs:  # the same runs, committed in two places
      same_runs[runs][1] += f", `{_rel(sources, path)}`"
      continue
    same_runs[runs] = row = [f"`{family}`", f"`{_rel(sources, path)}`",
                 str(few["num_seeds"]),
                 f"{few['mean']:.1f} [{few['ci_low']:.1f}, "
                 f"{few['ci_high']:.1f}]",
                 f"{upper['mean']:.1f} [{upper['ci_low']:.1f}, "
                 f"{upper['ci_high']:.1f}]",
                 f"{data:.1f}", f"{upper['mean'] - few['mean']:+.1f}"]
    rows.append(row)
  if not rows and not stale:
    raise MissingInputError(
        f"{_rel(sources, sources.path('results'))}/*/results.json with "
        "prompt_dt and upper_bound rows")
  left_out = ("" if not stale else
              "\n\nLeft out as stale (an earlier shipped PLM or earlier "
              "code; their sections say which): " + ", ".join(stale) + ".")
  if not rows:
    return ("No committed run with the plain few-shot prompt and the "
            "full-data upper bound is computed from the shipped PLMs."
            + left_out)
  return (
      "Test-task return (mean over seeds [95% CI]) of the plain few-shot "
      "prompt and of the full-data upper bound (the PLM fine-tuned on the "
      "test task's whole dataset), beside the mean return of the test "
      "tasks' expert data, from every committed run that has both rows "
      "(runs that share both rows' computations on one line):\n\n"
      + _table(["family", "run", "seeds", "few-shot prompt",
                "full-data upper bound", "expert data", "room"], rows,
               ["l", "l", "r", "r", "r", "r", "r"]) + left_out)


def render_metaworld_throughput(sources: Sources) -> str:
  """Meta-World reach's steps per second, in this process and over host
  workers (``benchmarks/metaworld_throughput.py``; docs/envs.md)."""
  path = sources.path("benchmarks/results/metaworld_throughput.json")
  d = _load_json(path)
  meta = d["meta"]
  rows = []
  for r in d["records"]:
    pooled = "env_steps_per_s_pool" in r
    rows.append([
        f"{r['tasks']} x {r['episodes_per_task']}",
        f"{r['env_steps_per_s']:,.0f}",
        f"{r['env_steps_per_s_pool']:,.0f}" if pooled else "n/a",
        f"{r['rollout_steps_per_s']:,.0f}",
        f"{r['rollout_steps_per_s_pool']:,.0f}" if pooled else "n/a",
        f"{r['rollout_pool_over_in_process']:.2f}x" if pooled else "n/a",
        str(r.get("workers", "n/a"))])
  return (
      f"From `{_rel(sources, path)}` ({meta.get('available_cores', '?')} "
      f"cores, 1-minute load average {meta['load_average_1min']:.1f} at the "
      f"end): Meta-World's own environment alone steps "
      f"{meta['single_steps_per_s']:,.0f} times a second. Env steps per "
      "second of the batched family and of the prompted rollout, in this "
      "process and over host workers (`PDIFF_HOST_WORKERS=auto`); each is "
      "the fastest of its timed runs.\n\n"
      + _table(["tasks x episodes", "env, in process", "env, workers",
                "rollout, in process", "rollout, workers",
                "rollout: workers / in process", "workers"], rows,
               ["l", "r", "r", "r", "r", "r", "r"]))
