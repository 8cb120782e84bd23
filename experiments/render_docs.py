r"""Renders the generated blocks of README.md and docs/*.md from result files.

Every figure the documentation quotes comes from a committed file (the
benchmarks' JSON in ``benchmarks/results/``, the default run's
``results/cheetah_vel/results.json``, shipped assets and configs) through a
renderer of this script. A generated block is delimited by two lines

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
from collections.abc import Callable, Iterable, Sequence

REPO = pathlib.Path(__file__).resolve().parent.parent
# Where the default run's result files are committed, relative to the root.
DEFAULT_RESULTS_DIR = "results/cheetah_vel"
# The family of the default run and of the reference returns.
DEFAULT_FAMILY = "cheetah_vel"
# Files of a work directory's ``results/`` that --import_run copies.
RUN_FILES = ("results.json", "results.md", "returns.png")

BEGIN_RE = re.compile(r"^<!-- BEGIN GENERATED: ([A-Za-z0-9_]+) -->[ \t]*$",
                      re.MULTILINE)
END_RE = re.compile(r"^<!-- END GENERATED: ([A-Za-z0-9_]+) -->[ \t]*$",
                    re.MULTILINE)


class MissingInputError(FileNotFoundError):
  """A renderer's input file does not exist."""

  def __init__(self, path: pathlib.Path | str):
    super().__init__(f"input file {path} is missing")
    self.path = str(path)


class DocFormatError(ValueError):
  """Unbalanced, nested or unknown generated-block markers."""


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


# --------------------------------------------------------------------------
# Renderers: each takes the Sources and returns the block's markdown.


def render_env_throughput(sources: Sources) -> str:
  """Steps/s of every family and backend (docs/envs.md)."""
  path = sources.path("benchmarks/results/env_throughput.json")
  data = _load_json(path)
  recs = data["records"]
  machine = data.get("machine", {})
  sizes = sorted({r["batch_size"] for r in recs})
  big = sizes[-1]
  steps = sorted({r["num_steps"] for r in recs})
  by_key = {(r["family"], r["backend"], r["batch_size"]): r for r in recs}
  pairs = list(dict.fromkeys((r["family"], r["backend"]) for r in recs))
  head = (["family", "backend"]
          + [f"steps/s, B={b}" for b in sizes]
          + [f"steps/CPU-s, B={big}", f"compile s, B={big}",
             "random return", "terminated"])
  rows = []
  for family, backend in pairs:
    cells = [family, backend]
    for b in sizes:
      r = by_key.get((family, backend, b))
      cells.append(_rate(r["steps_per_s"]) if r else "-")
    r = by_key.get((family, backend, big))
    if r:
      cells += [_rate(r["steps_per_cpu_s"]), f"{r['compile_s']:.0f}",
                f"{r['mean_return']:.1f}", f"{r['terminated_fraction']:.2f}"]
    else:
      cells += ["-"] * 4
    rows.append(cells)
  text = (
      f"From `{_rel(sources, path)}`: a scan of {_span(steps, str)} steps, "
      f"jax {machine.get('jax', '?')} on a {machine.get('cpu_count', '?')}-"
      f"core CPU, load average {_load_average(recs)} during the runs. "
      f"\"random return\" and \"terminated\" are at batch {big}.\n\n")
  return text + _table(head, rows, ["l", "l"] + ["r"] * (len(head) - 2))


def render_env_backend_choice(sources: Sources) -> str:
  """How the default backend compares with the others (docs/envs.md)."""
  path = sources.path("benchmarks/results/env_throughput.json")
  data = _load_json(path)
  default = data["default_backend"]
  recs = [r for r in data["records"] if r["backend"] != "jax"]
  families = list(dict.fromkeys(r["family"] for r in recs))
  sizes = sorted({r["batch_size"] for r in recs})
  rows = []
  for family in families:
    for b in sizes:
      group = [r for r in recs if r["family"] == family and r["batch_size"] == b]
      mine = [r for r in group if r["backend"] == default]
      others = [r for r in group if r["backend"] != default]
      if not mine or not others:
        continue
      fastest = max(group, key=lambda r: r["steps_per_s"])
      best_other = max(others, key=lambda r: r["steps_per_s"])
      rows.append([family, str(b), f"`{fastest['backend']}`",
                   _rate(mine[0]["steps_per_s"]),
                   f"`{best_other['backend']}` {_rate(best_other['steps_per_s'])}",
                   _ratio(mine[0]["steps_per_s"] / best_other["steps_per_s"])])
  table = _table(["family", "batch", "fastest backend", f"`{default}` steps/s",
                  "fastest other backend, steps/s", f"`{default}` / that"],
                 rows, ["l", "r", "l", "r", "r", "r"])
  big = sizes[-1]
  sanity = []
  for family in families:
    r = next((r for r in recs if r["family"] == family
              and r["backend"] == default and r["batch_size"] == big), None)
    if r is None:
      continue
    line = (f"`{family}`: states {'all finite' if r['finite'] else 'NOT finite'}"
            f", torso height {r['min_torso_height']:.2f} to "
            f"{r['max_torso_height']:.2f} m")
    if "ant" in family or r["terminated_fraction"] > 0:
      line += (f", {r['terminated_fraction']:.0%} of episodes terminated "
               "(other backends: " + ", ".join(
                   f"`{o['backend']}` {o['terminated_fraction']:.0%}"
                   for o in recs if o["family"] == family
                   and o["batch_size"] == big and o["backend"] != default)
               + ")")
    sanity.append(f"* {line};")
  if sanity:
    sanity[-1] = sanity[-1][:-1] + "."
  return (f"From `{_rel(sources, path)}`, steps/s by wall time:\n\n{table}\n\n"
          f"Under random actions at batch {big}, `{default}` gives:\n\n"
          + "\n".join(sanity))


def render_env_throughput_summary(sources: Sources) -> str:
  """Two headline figures of env_throughput.json (docs/benchmarks.md)."""
  path = sources.path("benchmarks/results/env_throughput.json")
  data = _load_json(path)
  default = data["default_backend"]
  recs = data["records"]
  big = max(r["batch_size"] for r in recs)
  parts = []
  for family, backend in (("cheetah_vel", default), ("point_robot", "jax")):
    r = next((r for r in recs if r["family"] == family
              and r["backend"] == backend and r["batch_size"] == big), None)
    if r is not None:
      parts.append(f"`{family}` on `{backend}` runs {_rate(r['steps_per_s'])} "
                   f"steps/s ({_rate(r['steps_per_cpu_s'])} per CPU-second)")
  return (f"At batch {big} (`{_rel(sources, path)}`): " + "; ".join(parts)
          + ".")


def render_evaluation_throughput(sources: Sources) -> str:
  """Prompted rollouts against the env alone (docs/benchmarks.md)."""
  path = sources.path("benchmarks/results/evaluation_throughput.json")
  data = _load_json(path)
  recs = data["records"]
  machine = data.get("machine", {})
  rows = []
  for r in recs:
    rows.append([
        r["family"], r["preset"], f"{r['tasks']} x {r['episodes_per_task']}",
        _rate(r["rollout_steps_per_s"]), _rate(r["env_steps_per_s"]),
        _rate(r["rollout_steps_per_cpu_s"]), _rate(r["env_steps_per_cpu_s"]),
        _rate(r["policy_steps_per_cpu_s"]), _ratio(r["rollout_over_env_cpu"]),
        f"{r['rollout_over_env_plus_policy_cpu']:.2f}",
        f"{r['rollout_compile_s']:.0f}"])
  table = _table(
      ["family", "preset", "tasks x episodes", "rollout (wall)", "env (wall)",
       "rollout (CPU)", "env (CPU)", "policy (CPU)", "rollout / env (CPU)",
       "rollout / (env + policy) (CPU)", "rollout compile s"],
      rows, ["l", "l", "l"] + ["r"] * 8)
  episodes = "; ".join(
      f"{f} {r['steps_per_episode']} steps per episode on `{r['backend']}`"
      for f, r in {r["family"]: r for r in recs}.items())
  lines = [
      f"From `{_rel(sources, path)}`: fastest of {data.get('repeats', '?')} "
      f"runs, jax {machine.get('jax_version', '?')} on a "
      f"{machine.get('cpu_count', '?')}-core CPU (load average "
      f"{_load_average(recs)} during the runs); {episodes}. Env steps per "
      "second:", "", table, ""]
  lines.append(
      "* rollout / (env + policy), CPU time: "
      + _span((r["rollout_over_env_plus_policy_cpu"] for r in recs),
              lambda x: f"{x:.2f}") + " over the rows.")
  cheetah = [r for r in recs if r["family"] != "point_robot"]
  for preset in dict.fromkeys(r["preset"] for r in cheetah):
    rs = [r for r in cheetah if r["preset"] == preset]
    lines.append(
        f"* `{preset}` shape ({rs[0]['num_params'] / 1e6:.2f}M parameters) on "
        f"{', '.join(dict.fromkeys(r['family'] for r in rs))}: the rollout "
        "runs " + _span((r["rollout_over_env_cpu"] for r in rs), _ratio)
        + " slower than the env alone (CPU time).")
  if cheetah:
    lines.append(
        "* Compiling a rollout of "
        + ", ".join(dict.fromkeys(r["family"] for r in cheetah)) + " takes "
        + _span((r["rollout_compile_s"] for r in cheetah), lambda x: f"{x:.0f}")
        + " s, the env alone "
        + _span((r["env_compile_s"] for r in cheetah), lambda x: f"{x:.0f}")
        + " s.")
  return "\n".join(lines)


def render_prompt_generation(sources: Sources) -> str:
  """Prompt Diffuser sampling and fine-tuning (docs/benchmarks.md)."""
  from experiments.configs import run as run_configs

  path = sources.path("benchmarks/results/prompt_generation.json")
  data = _load_json(path)
  shape = data["shape"]
  machine = data.get("machine", {})
  sampling, finetune = data["sampling"], data["finetune"]
  shots, length = shape["few_shot"]
  lines = [
      f"From `{_rel(sources, path)}`: fastest of {data.get('repeats', '?')} "
      f"runs, jax {machine.get('jax_version', '?')} on a "
      f"{machine.get('cpu_count', '?')}-core CPU (load average "
      f"{_load_average(sampling + finetune)} during the runs). Shape: "
      f"K* = {shape['prompt_len']}, D = {shape['state_dim']} + "
      f"{shape['action_dim']} + 1 = {shape['transition_dim']}, denoiser MLP "
      + " x ".join(str(h) for h in shape["hidden_sizes"])
      + f" ({shape['denoiser_params'] / 1e6:.2f}M parameters), N = "
      f"{shape['num_diffusion_steps']} {shape['schedule']}-schedule steps, "
      f"DDIM in {shape['ddim_steps']} steps, x0 clipped at "
      f"{shape['clip_denoised']:g}; fine-tuning with a PLM of "
      f"{shape['plm_params'] / 1e6:.2f}M parameters (K = "
      f"{shape['plm_context_len']}) and {shots} few-shot trajectories of "
      f"{length} steps.", ""]
  rows = []
  for r in sampling:
    rows.append([r["sampler"].upper(), str(r["denoiser_calls"]), str(r["batch"]),
                 _ms(r["chain_ms"]), _rate(r["prompts_per_s"]),
                 _ms(r["bare_denoiser_scan_ms"]), f"{r['chain_over_bare']:.2f}",
                 _ms(r["single_call_ms_times_calls"]),
                 _ratio(r["single_call_ms_times_calls"] / r["chain_ms"])])
  lines.append(_table(
      ["sampler", "denoiser calls", "batch", "chain ms", "prompts/s",
       "bare denoiser ms", "chain / bare", "calls from Python, ms",
       "from Python / chain"], rows, ["l"] + ["r"] * 8))
  lines.append("")
  rows = []
  for r in finetune:
    rows.append([r["mode"], r["guidance_path"] or "-", _ms(r["ms_per_step"]),
                 _rate(r["steps_per_s"]), f"{r['compile_s']:.0f}"])
  steps = sorted({r["finetune_steps"] for r in finetune})
  lines.append(
      "Fine-tuning, one `lax.scan` of " + _span(steps, str) + " steps, "
      f"{finetune[0]['finetune_batch']} windows for L_DM and "
      f"{finetune[0]['guidance_batch']} prompts and PLM segments for L_DT:")
  lines.append("")
  lines.append(_table(["mode", "guidance path", "ms per step", "steps/s",
                       "compile s"], rows, ["l", "l", "r", "r", "r"]))
  lines.append("")
  lines.append("* `chain / bare`: " + _span(
      (r["chain_over_bare"] for r in sampling), lambda x: f"{x:.2f}")
      + "; `from Python / chain`: " + _span(
          (r["single_call_ms_times_calls"] / r["chain_ms"] for r in sampling),
          _ratio) + ".")
  first = min(sampling, key=lambda r: (r["batch"], -r["denoiser_calls"]))
  lines.append(f"* One task's prompt ({first['sampler'].upper()}, batch "
               f"{first['batch']}) takes {_ms(first['chain_ms'])} ms.")
  ft = {(r["mode"], r["guidance_path"]): r for r in finetune}
  base = ft.get(("dm_only", None))
  if base is not None:
    parts = [f"{_ratio(r['ms_per_step'] / base['ms_per_step'])} with `{m}` "
             f"through `{p}`" for (m, p), r in ft.items() if m != "dm_only"]
    lines.append(f"* A fine-tuning step costs, relative to `dm_only` "
                 f"({_ms(base['ms_per_step'])} ms): " + ", ".join(parts) + ".")
  extra = [f"{ft['projection', p]['ms_per_step'] - r['ms_per_step']:+.2f} ms "
           f"through `{p}`" for (m, p), r in ft.items()
           if m == "sum" and ("projection", p) in ft]
  if extra:
    lines.append("* `projection` minus `sum`, per step: " + ", ".join(extra)
                 + ".")
  pd = run_configs.get_config().tuning.prompt_diffuser
  mine = ft.get((pd.mode, pd.guidance_path))
  if mine is not None:
    lines.append(
        "* With the default run's config (`experiments/configs/run.py`: "
        f"`tuning.prompt_diffuser.finetune_steps` = {pd.finetune_steps}, `mode` = "
        f"`{pd.mode}`, `guidance_path` = `{pd.guidance_path}`), fine-tuning "
        "one task "
        f"takes about {pd.finetune_steps} x {_ms(mine['ms_per_step'])} ms = "
        f"{pd.finetune_steps * mine['ms_per_step'] / 1000:.1f} s.")
  return "\n".join(lines)


def render_sampler_throughput(sources: Sources) -> str:
  """The jitted multi-task batch sampler (docs/data.md, docs/benchmarks.md)."""
  path = sources.path("benchmarks/results/sampler_throughput.json")
  d = _load_json(path)
  c = d["config"]
  rows = d["segments_shape"][0]
  return (
      f"From `{_rel(sources, path)}` (jax {d.get('jax_version', '?')} on "
      f"`{d.get('device', '?')}`): {c['batch_per_task']} rows x {c['tasks']} "
      f"tasks, K = {c['seq_len']}, K* = {c['prompt_len']}, ds = "
      f"{c['state_dim']}, da = {c['action_dim']}, {c['trajectories']} "
      f"synthetic trajectories of {c['steps']} steps per task. The jitted "
      f"sampler makes {_int(d['jit_batches_per_s'])} batches/s "
      f"({d['jit_ms_per_batch']:.2f} ms per {rows}-row batch with its "
      f"prompts; {d['compile_s']:.1f} s to compile), the per-row numpy loop "
      f"{_int(d['numpy_reference_batches_per_s'])} batches/s: "
      f"{_ratio(d['speedup_vs_numpy_reference'])} faster.")


def render_train_step(sources: Sources) -> str:
  """The Prompt-DT train step (docs/training.md, docs/benchmarks.md)."""
  path = sources.path("benchmarks/results/train_step.json")
  d = _load_json(path)
  s = d["shape"]
  m = d.get("machine", {})
  rows = []
  for name, r in d["runs"].items():
    rows.append([f"`{name}`", str(r["devices"]), f"{r['step_ms'] / 1000:.2f}",
                 f"{r['samples_per_s']:.0f}", f"{r['first_step_s']:.1f}",
                 str(r["timed_steps"])])
  params = next(iter(d["runs"].values()))["num_params"]
  load = [m.get("load_average_1min_before"), m.get("load_average_1min_after")]
  load = [x for x in load if x is not None]
  return (
      f"From `{_rel(sources, path)}`: batch {s['batch']}, K = {s['K']}, "
      f"K* = {s['K_prompt']}, embed {s['hidden_dim']}, {s['num_layers']} "
      f"layers, ds = {s['state_dim']}, da = {s['act_dim']} "
      f"({params / 1e6:.2f}M parameters); a {m.get('cpu_count', '?')}-core "
      "CPU" + (f", load average {_span(load, lambda x: f'{x:.1f}')}"
               if load else "") + ".\n\n"
      + _table(["run", "devices", "s per step", "segments/s",
                "first step s", "timed steps"], rows,
               ["l", "r", "r", "r", "r", "r"]))


def render_projection_overhead(sources: Sources) -> str:
  """project_conflicting + AdamW against AdamW (docs/benchmarks.md)."""
  path = sources.path("benchmarks/results/projection_overhead.json")
  d = _load_json(path)
  rows = []
  for r in d["rows"]:
    rows.append([
        f"`{r['name']}`", r["gradients"],
        "-" if r["num_bases"] is None else str(r["num_bases"]),
        "-" if r["per_leaf"] is None else str(r["per_leaf"]),
        _ms(r["ms_per_update"]), _ms(r["ms_per_update_median"]),
        _ratio(r["overhead_vs_adamw"])])
  adamw = [r for r in d["rows"] if r["num_bases"] is None]
  proj = [r for r in d["rows"] if r["num_bases"] is not None]
  spans = "; ".join(
      f"`num_bases` = {b}: "
      + _span((r["overhead_vs_adamw"] for r in proj if r["num_bases"] == b),
              _ratio) + " AdamW's time"
      for b in sorted({r["num_bases"] for r in proj}))
  return (
      f"From `{_rel(sources, path)}`: {d['num_params'] / 1e6:.2f}M "
      f"{d['dtype']} parameters (MLP "
      + " x ".join(str(x) for x in d["layer_sizes"])
      + f"), {d['iters']} updates per repeat, fastest of {d['repeats']} "
      f"repeats, jax {d.get('jax_version', '?')} and optax "
      f"{d.get('optax_version', '?')} on a {d.get('cpu_count', '?')}-core "
      f"CPU. AdamW alone: "
      + _span((r["ms_per_update"] for r in adamw), _ms)
      + f" ms per update; {spans}.\n\n"
      + _table(["optimiser", "gradients", "num_bases", "per_leaf",
                "ms per update", "median ms", "/ AdamW"], rows,
               ["l", "l", "r", "l", "r", "r", "r"]))


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
  machine = (results.get("provenance") or {}).get("machine")
  if machine:
    text += f"; machine: {machine}"
  return text + "."


def render_default_run(sources: Sources) -> str:
  """The default run's table and timings (README.md)."""
  from pdiff.evaluation import report

  path = sources.results_file()
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
  return (text + "\n\n" + report.results_table_markdown(results).strip()
          + "\n\n" + timing_sentence(results))


RENDERERS: dict[str, Callable[[Sources], str]] = {
    "default_run": render_default_run,
    "reference_returns": render_reference_returns,
    "env_throughput": render_env_throughput,
    "env_backend_choice": render_env_backend_choice,
    "env_throughput_summary": render_env_throughput_summary,
    "evaluation_throughput": render_evaluation_throughput,
    "prompt_generation": render_prompt_generation,
    "sampler_throughput": render_sampler_throughput,
    "train_step": render_train_step,
    "projection_overhead": render_projection_overhead,
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


def check_docs(sources: Sources = Sources(),
               docs_root: pathlib.Path | None = None) -> list[Problem]:
  """Every block that disagrees with its inputs or cannot be rendered.

  A block whose input is missing is reported as ``missing_input`` (not
  compared); an empty list means the docs are up to date.
  """
  docs_root = pathlib.Path(docs_root or sources.root)
  problems = []
  for path in doc_paths(docs_root):
    doc = str(path.relative_to(docs_root))
    text = path.read_text()
    try:
      new, missing = render_text(text, sources, doc)
    except DocFormatError as e:
      problems.append(Problem(doc, "", "malformed", str(e)))
      continue
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


def write_docs(sources: Sources = Sources(),
               docs_root: pathlib.Path | None = None
               ) -> tuple[list[str], list[Problem]]:
  """Rewrites every block in place.

  Returns:
    The docs that changed, and the blocks written as placeholders (missing
    inputs) or left alone (malformed documents).
  """
  docs_root = pathlib.Path(docs_root or sources.root)
  updates, problems = [], []
  # Render every document before writing any, so that a failing renderer
  # leaves all of them as they were.
  for path in doc_paths(docs_root):
    doc = str(path.relative_to(docs_root))
    text = path.read_text()
    try:
      new, missing = render_text(text, sources, doc)
    except DocFormatError as e:
      problems.append(Problem(doc, "", "malformed", str(e)))
      continue
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
                      "returns.png} into --results_dir first")
  parser.add_argument("--root", default=str(REPO), help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  sources = Sources(pathlib.Path(args.root), args.results_dir)
  if args.import_run:
    if args.check:
      parser.error("--import_run writes files; it cannot go with --check")
    for path in import_run(args.import_run, sources.root / args.results_dir):
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
