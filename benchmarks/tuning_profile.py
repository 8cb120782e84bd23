"""Where the time of the results table's tune-and-evaluate goes.

Runs the table of ``experiments/run.py`` (``pdiff.pipeline.run``, the
library's own loop over rows and seeds) for the given seeds from a prepared
work directory: its datasets, its PLM and the seeds' stage-1 models (Prompt
Diffuser's ``prepare``) must be there already, e.g. from a run of
``experiments/run.py`` with the same config. The work directory is only
read: the runs' results go to a temporary directory, deleted afterwards, so
every row is tuned and evaluated again however often the script runs. A
missing stage-1 model is an error rather than trained here.

The time is split into phases by timers around the library functions the
pipeline calls (wrapped for the run, restored after it), and each phase into
compile and run with JAX's compile events (``jax.monitoring``: tracing,
lowering, XLA compilation or loading from the persistent cache; their
union, so that nested traces count once), attributed to the phase that
triggered them. Each phase also records the CPU time of this process (the
steadier figure when other jobs share the machine: wall time stretches with
their load):

  setup     ``pipeline.run.setup``: datasets, PLM, test tasks' data (read)
  build     a row's ``Method.make_tune`` and ``Method.prepare``: building
            its functions (Prompt Diffuser: the model and its x0 statistics)
  prepared  loading a seed's stage-1 model (``tuning_runs.ensure_prepared``)
  data      the seed's few-shot draw and its stacking (host side)
  tune      the row's ``tune`` call, one jitted program per row (Prompt
            Diffuser: fine-tuning, then generation and, with
            ``num_candidates > 1``, candidate selection)
  evaluate  ``evaluate_tuned``: the tuned policies' rollouts
  write     the rest of a run: loss summaries and its record
  results   ``write_results``: statistics, table, chart

``loop`` (the table's tune-and-evaluate) is every phase but setup and
results. After the table, for each Prompt Diffuser row, the prompt
generation (``generate_prompt`` jitted over the tasks, the part of the tune
program after fine-tuning) is timed apart, which gives the fine-tuning's
time per task and step in the table (``in_situ``); ``--reference_steps``
also times the single-task fine-tuning loop as
``benchmarks/prompt_generation.py`` does, at the same moment, for comparison.

Measured with the persistent compilation cache off unless
``--compilation_cache`` names a directory (run twice on a fresh directory:
the first run fills it, the second shows what it saves). Each run appends a
measurement, named by ``--label``, to the JSON (``--append``), so that two
versions of the library can be measured in turn on a shared machine (run the
script with ``PYTHONPATH`` pointing at each); the JSON also compares the
measurements by label (mean loop wall and CPU time, and the returns and
prompts of every row and seed, which must agree between versions that
compute the same).

  PYTHONPATH=. python benchmarks/tuning_profile.py \\
      --workdir=runs/cheetah_vel --seeds=0
  PYTHONPATH=. python benchmarks/tuning_profile.py --workdir=runs/cheetah_vel \\
      --seeds=0,1 --label=after --append --reference_steps=20

Writes benchmarks/results/tuning_profile.json.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import glob
import hashlib
import importlib
import json
import os
import statistics
import tempfile
import time

import jax
import numpy as np
from absl import app, flags

import pdiff
from experiments import launch
from pdiff import provenance, stages
from pdiff.evaluation.report import write_json_atomic
from pdiff.pipeline import tuning_runs

try:
  from pdiff.pipeline import concurrency
except ImportError:  # a version of pdiff that runs its units one at a time
  concurrency = None
from pdiff.tuning import prompt_diffuser as pd

# ``pdiff.pipeline.run`` is both a module and (re-exported) the function.
run_module = importlib.import_module("pdiff.pipeline.run")

_CONFIG = flags.DEFINE_string(
    "config", "experiments/configs/run.py:cheetah_vel",
    "Run config, FILE[:ARG] as experiments/run.py takes it.")
_WORKDIR = flags.DEFINE_string(
    "workdir", "runs/cheetah_vel",
    "Prepared work directory (datasets, PLM, the seeds' stage-1 models).")
_SEEDS = flags.DEFINE_list("seeds", ["0"], "Seeds of the table.")
_LABEL = flags.DEFINE_string(
    "label", "current", "Name of this measurement (e.g. before, after).")
_APPEND = flags.DEFINE_bool(
    "append", False, "Add to the measurements already in --output.")
_COMPILATION_CACHE = flags.DEFINE_string(
    "compilation_cache", "",
    "Persistent compilation cache directory; empty: off.")
_THREADS = flags.DEFINE_string(
    "threads", "1",
    "PDIFF_RUN_THREADS for the table: 1 (the default) times every phase of "
    "every row and seed; another count or 'auto' runs seeds and rows in "
    "threads, and only the whole loop is timed.")
_REFERENCE_STEPS = flags.DEFINE_integer(
    "reference_steps", 0,
    "Steps of the isolated single-task fine-tuning timed per Prompt Diffuser "
    "row (0: skip).")
_ARRAYS = flags.DEFINE_string(
    "arrays", "", "Optional .npz path for the tuned prompts and returns.")
_OUTPUT = flags.DEFINE_string(
    "output",
    os.path.join(os.path.dirname(__file__), "results", "tuning_profile.json"),
    "Where to write the JSON results.")

PHASES = ("setup", "build", "prepared", "data", "tune", "evaluate", "write",
          "results")
LOOP_PHASES = ("build", "prepared", "data", "tune", "evaluate", "write")
_COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration",
                   "/jax/core/compile/jaxpr_to_mlir_module_duration",
                   "/jax/core/compile/backend_compile_duration")
_SAVED_EVENT = "/jax/compilation_cache/compile_time_saved_sec"


def union_seconds(spans: list[tuple[float, float]]) -> float:
  """Length of the union of ``[start, end]`` intervals."""
  total, end = 0.0, -float("inf")
  for s, e in sorted(spans):
    if e > end:
      total += e - max(s, end)
      end = e
  return total


class Recorder:
  """Wall and CPU time per (row, seed, phase), and the compile spans inside
  each."""

  def __init__(self):
    self.where: tuple[str | None, int | None] = (None, None)
    self.stack: list[tuple] = []  # open (row, seed, phase)
    self.wall: dict[tuple, float] = {}
    self.cpu: dict[tuple, float] = {}  # CPU time of this process
    self.spans: dict[tuple, list[tuple[float, float]]] = {}
    self.saved_s = 0.0

  @contextlib.contextmanager
  def phase(self, name: str, row=None, seed=None):
    row = self.where[0] if row is None else row
    seed = self.where[1] if seed is None else seed
    key = (row, seed, name)
    self.stack.append(key)
    start, cpu_start = time.perf_counter(), time.process_time()
    try:
      yield
    finally:
      self.stack.pop()
      self.wall[key] = self.wall.get(key, 0.0) + time.perf_counter() - start
      self.cpu[key] = (self.cpu.get(key, 0.0) + time.process_time()
                       - cpu_start)

  def on_span(self, event: str, start: float, end: float, **kwargs):
    del kwargs
    if event in _COMPILE_EVENTS and self.stack:
      # Event times are time.time(); phases use perf_counter: only lengths
      # and overlaps within one phase matter.
      self.spans.setdefault(self.stack[-1], []).append((start, end))

  def on_duration(self, event: str, seconds: float, **kwargs):
    del kwargs
    if event == _SAVED_EVENT:
      self.saved_s += seconds

  def compile_s(self, key) -> float:
    return union_seconds(self.spans.get(key, []))


def digest(tree) -> str:
  h = hashlib.sha256()
  for leaf in jax.tree.leaves(tree):
    h.update(np.ascontiguousarray(np.asarray(leaf)).tobytes())
  return h.hexdigest()[:16]


class Instrumented:
  """The pipeline's functions wrapped with the recorder's timers."""

  def __init__(self, rec: Recorder):
    self.rec = rec
    self.captured: dict[str, dict] = {}  # row -> inputs of its last tune
    self.prompts: dict[str, dict[int, object]] = {}  # row -> seed -> prompts
    self.returns: dict[str, dict[str, list[float]]] = {}  # row -> seed ->
    self.saved = []

  def patch(self, module, name, wrapper):
    original = getattr(module, name)
    self.saved.append((module, name, original))
    setattr(module, name, wrapper(original))

  def restore(self):
    for module, name, original in reversed(self.saved):
      setattr(module, name, original)

  def install(self):
    rec = self.rec

    def timed(phase, block=False):
      def wrap(fn):
        def inner(*args, **kwargs):
          with rec.phase(phase):
            out = fn(*args, **kwargs)
            return jax.block_until_ready(out) if block else out
        return inner
      return wrap

    def rows_wrapper(method_rows):
      def inner(config):
        return [(label, self._method(label, method), mconf)
                for label, method, mconf in method_rows(config)]
      return inner

    def tune_and_evaluate(fn):
      def inner(config, context, method, tune, data, prepared, seed, record,
                path, **kwargs):
        label = record["config"]["label"]
        rec.where = (label, seed)
        # Everything in a run that is not tune or evaluate: "write".
        with rec.phase("write"):
          out = fn(config, context, method, tune, data, prepared, seed,
                   record, path, **kwargs)
        rec.where = (None, None)
        self.returns.setdefault(label, {})[str(seed)] = [
            float(x) for x in out["task_means"]]
        return out
      return inner

    def ensure_prepared(fn):
      def inner(config, method, mconf, context, workdir, seed, inputs,
                prepare_fn):
        record = tuning_runs.prepare_record(config, method, mconf, seed,
                                            inputs)
        fp = record["fingerprint"]
        directory = os.path.join(workdir, "tuning", method.name,
                                 f"prepare-{fp[:tuning_runs.SHORT]}")
        if not stages.is_complete(stages.read_record(
            os.path.join(directory, stages.RECORD_FILE)), fp):
          raise ValueError(
              f"{method.name}: no stage-1 model of seed {seed} in "
              f"{directory}; run experiments/run.py on the work directory "
              "first (this benchmark does not train it).")
        with rec.phase("prepared", row=method.name, seed=seed):
          return fn(config, method, mconf, context, workdir, seed, inputs,
                    prepare_fn)
      return inner

    def seed_phase(phase):
      def wrap(fn):
        def inner(*args, **kwargs):
          with rec.phase(phase, row="-", seed=-1):
            return fn(*args, **kwargs)
        return inner
      return wrap

    self.patch(run_module, "setup", seed_phase("setup"))
    self.patch(run_module, "write_results", seed_phase("results"))
    self.patch(run_module, "method_rows", rows_wrapper)
    self.patch(tuning_runs, "tune_and_evaluate", tune_and_evaluate)
    self.patch(tuning_runs, "ensure_prepared", ensure_prepared)
    self.patch(tuning_runs, "draw_few_shot", seed_phase("data"))
    self.patch(tuning_runs, "stacked", seed_phase("data"))
    self.patch(tuning_runs, "evaluate_tuned", timed("evaluate", block=True))

  def _method(self, label, method):
    rec = self

    def make_tune(context, mconf):
      with rec.rec.phase("build", row=label, seed=-1):
        tune = method.make_tune(context, mconf)

      def timed_tune(prepared, data, keys):
        with rec.rec.phase("tune"):
          out = jax.block_until_ready(tune(prepared, data, keys))
        row, seed = rec.rec.where
        rec.prompts.setdefault(row, {})[seed] = out[0].prompt
        rec.captured[row] = dict(context=context, config=mconf,
                                 prepared=prepared, data=data, keys=keys)
        return out
      return timed_tune

    prepare = None
    if method.prepare is not None:
      def prepare(context, mconf):
        with rec.rec.phase("build", row=label, seed=-1):
          return method.prepare(context, mconf)
    return dataclasses.replace(method, make_tune=make_tune, prepare=prepare)


def time_calls(fn, args, repeats: int = 3) -> tuple[float, float]:
  """``(compile_s, fastest run_s)`` of a jitted ``fn``."""
  start = time.perf_counter()
  compiled = fn.lower(*args).compile()
  compile_s = time.perf_counter() - start
  jax.block_until_ready(compiled(*args))
  runs = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    runs.append(time.perf_counter() - start)
  return compile_s, min(runs)


def prompt_diffuser_detail(captured: dict, reference_steps: int) -> dict:
  """Generation timed apart, and optionally the isolated fine-tuning loop."""
  context, c = captured["context"], captured["config"]
  plm, data, keys = context.plm, captured["data"], captured["keys"]
  params = captured["prepared"]
  model, _ = pd.make_prompt_diffuser(plm, context.train_trajs, c,
                                     jax.random.key(0))

  def generate(few_shot, key):
    return pd.generate_prompt(model, plm, params, few_shot, key, c)

  gen_compile, gen_run = time_calls(jax.jit(jax.vmap(generate)),
                                    (data, keys))
  out = dict(generation_compile_s=gen_compile, generation_s=gen_run,
             num_candidates=int(c.num_candidates),
             finetune_steps=int(c.finetune_steps),
             num_tasks=int(keys.shape[0]))
  if reference_steps > 0:
    ref = c.copy_and_resolve_references()
    ref.finetune_steps = reference_steps
    finetune = jax.jit(pd.make_finetune(model, plm, ref))
    one_task = jax.tree.map(lambda x: x[0], data)
    compile_s, run_s = time_calls(finetune, (params, one_task, keys[0]))
    out.update(reference_steps=reference_steps,
               reference_compile_s=compile_s,
               reference_ms_per_step=1e3 * run_s / reference_steps)
  return out


def run_files_returns(results: str) -> dict[str, dict[str, list[float]]]:
  """``{row: {seed: task means}}`` of the run files under ``results``."""
  out = {}
  for path in glob.glob(os.path.join(results, "results", "runs", "*",
                                    "*.json")):
    with open(path) as f:
      run = json.load(f)
    out.setdefault(run["method"], {})[str(run["seed"])] = [
        float(x) for x in run["task_means"]]
  return {label: dict(sorted(by_seed.items(), key=lambda kv: int(kv[0])))
          for label, by_seed in out.items()}


def measurement_header(threads: int) -> dict:
  """What a measurement records of itself, taken before it runs: label,
  threads, the pdiff it imports and its commit, the start time, the cache
  and the machine's load."""
  root = os.path.dirname(os.path.abspath(pdiff.__file__))
  return {
      "label": _LABEL.value,
      "threads": threads,
      "pdiff": root,
      "commit": provenance.git_commit(os.path.dirname(root)),
      "started": datetime.datetime.now().isoformat(timespec="seconds"),
      "compilation_cache": _COMPILATION_CACHE.value or None,
      "load_average_before": [round(x, 2) for x in os.getloadavg()],
  }


def measure_threaded(config, workdir: str) -> dict:
  """The table with seeds and rows in threads (``PDIFF_RUN_THREADS`` as
  set): the loop's wall and CPU time, compile time and the returns."""
  spans: list[tuple[float, float]] = []

  def on_span(event: str, start: float, end: float, **kwargs):
    del kwargs
    if event in _COMPILE_EVENTS:
      spans.append((start, end))

  jax.monitoring.register_event_time_span_listener(on_span)
  header = measurement_header(concurrency.run_threads())
  try:
    with tempfile.TemporaryDirectory(prefix="tuning_profile-") as results:
      start, cpu_start = time.perf_counter(), time.process_time()
      results_dict = run_module.run(config, workdir, results_dir=results)
      table_s = time.perf_counter() - start
      cpu_s = time.process_time() - cpu_start
      returns = run_files_returns(results)
      if not returns:
        raise RuntimeError(f"no run files under {results}/results/runs")
  finally:
    jax.monitoring.unregister_event_time_span_listener(on_span)
  stage_s = results_dict["stage_seconds"]
  return {
      **header,
      "load_average_after": [round(x, 2) for x in os.getloadavg()],
      "table_s": table_s,
      # prepare (loading the seeds' stage-1 models) and tune-and-evaluate,
      # the stages the phases of a timed measurement add up to.
      "loop_s": stage_s.get("prepare", 0.0) + stage_s["tune_and_evaluate"],
      "loop_cpu_s": cpu_s,
      "loop_compile_s": union_seconds(spans),
      "returns": returns,
      "row_order": list(results_dict["row_order"]),
  }


def measure(config, workdir: str, reference_steps: int) -> dict:
  rec = Recorder()
  jax.monitoring.register_event_time_span_listener(rec.on_span)
  jax.monitoring.register_event_duration_secs_listener(rec.on_duration)
  inst = Instrumented(rec)
  inst.install()
  header = measurement_header(1)
  try:
    with tempfile.TemporaryDirectory(prefix="tuning_profile-") as results:
      start = time.perf_counter()
      results_dict = run_module.run(config, workdir, results_dir=results)
      table_s = time.perf_counter() - start
  finally:
    inst.restore()
    jax.monitoring.unregister_event_time_span_listener(rec.on_span)
    jax.monitoring.unregister_event_duration_listener(rec.on_duration)
  load_after = os.getloadavg()

  rows = {}
  for label in results_dict["row_order"]:
    row = {"seeds": {}}
    for seed in config.seeds:
      cells = {}
      for phase in ("tune", "evaluate", "write"):
        key = (label, seed, phase)
        cells[f"{phase}_s"] = rec.wall.get(key, 0.0)
        cells[f"{phase}_cpu_s"] = rec.cpu.get(key, 0.0)
        cells[f"{phase}_compile_s"] = rec.compile_s(key)
      # tune_and_evaluate's wall holds tune and evaluate: keep the rest
      # (compile events go to the innermost phase already).
      cells["write_s"] -= cells["tune_s"] + cells["evaluate_s"]
      cells["write_cpu_s"] -= cells["tune_cpu_s"] + cells["evaluate_cpu_s"]
      row["seeds"][str(seed)] = cells
    key = (label, -1, "build")
    row["build_s"] = rec.wall.get(key, 0.0)
    row["build_cpu_s"] = rec.cpu.get(key, 0.0)
    row["build_compile_s"] = rec.compile_s(key)
    for name in ("tune", "evaluate", "write"):
      for part in ("s", "cpu_s", "compile_s"):
        row[f"{name}_{part}"] = sum(c[f"{name}_{part}"]
                                    for c in row["seeds"].values())
    rows[label] = row

  phases = {}
  for phase in PHASES:
    keys = [k for k in rec.wall if k[2] == phase]
    total = sum(rec.wall[k] for k in keys)
    cpu = sum(rec.cpu[k] for k in keys)
    comp = sum(rec.compile_s(k) for k in keys)
    if phase == "write":  # without the tune and evaluate it wraps
      inner = [k for k in rec.wall if k[2] in ("tune", "evaluate")]
      total -= sum(rec.wall[k] for k in inner)
      cpu -= sum(rec.cpu[k] for k in inner)
    phases[phase] = {"s": total, "cpu_s": cpu, "compile_s": comp}

  for label, captured in inst.captured.items():
    if label.startswith("prompt_diffuser"):
      d = prompt_diffuser_detail(captured, reference_steps)
      row = rows[label]
      run_s = [c["tune_s"] - c["tune_compile_s"]
               for c in row["seeds"].values()]
      steps = d["finetune_steps"] * d["num_tasks"]
      d["in_situ_ms_per_task_step"] = 1e3 * (
          min(run_s) - d["generation_s"]) / steps
      row.update(d)

  returns = inst.returns
  prompts = {label: {str(s): digest(p) for s, p in by_seed.items()}
             for label, by_seed in inst.prompts.items()}
  if _ARRAYS.value:
    arrays = {}
    for label, by_seed in inst.prompts.items():
      for s, p in by_seed.items():
        for path, leaf in jax.tree_util.tree_leaves_with_path(p):
          arrays[f"{label}/seed{s}/prompt{jax.tree_util.keystr(path)}"] = (
              np.asarray(leaf))
    for label, by_seed in returns.items():
      for s, means in by_seed.items():
        arrays[f"{label}/seed{s}/task_means"] = np.asarray(means)
    np.savez(_ARRAYS.value, **arrays)

  loop_s = sum(phases[p]["s"] for p in LOOP_PHASES)
  loop_cpu_s = sum(phases[p]["cpu_s"] for p in LOOP_PHASES)
  loop_compile_s = sum(phases[p]["compile_s"] for p in LOOP_PHASES)
  return {
      **header,
      "compile_time_saved_by_cache_s": rec.saved_s,
      "load_average_after": [round(x, 2) for x in load_after],
      "table_s": table_s,
      "loop_s": loop_s,
      "loop_cpu_s": loop_cpu_s,
      "loop_compile_s": loop_compile_s,
      "phases": phases,
      "rows": rows,
      "row_order": list(results_dict["row_order"]),
      "returns": returns,
      "prompt_digests": prompts,
  }


def compare(measurements: list[dict]) -> dict:
  """Mean loop time per label, its ratio to ``before`` (when measured), and
  whether every measurement computed the same returns and prompts."""
  labels = list(dict.fromkeys(m["label"] for m in measurements))
  out = {"labels": {}}
  for label in labels:
    ms = [m for m in measurements if m["label"] == label]
    loops = [m["loop_s"] for m in ms]
    out["labels"][label] = {
        "runs": len(ms), "loop_s": loops,
        "mean_loop_s": statistics.mean(loops),
        "mean_loop_compile_s": statistics.mean(m["loop_compile_s"]
                                               for m in ms),
        "loop_cpu_s": [m.get("loop_cpu_s") for m in ms],
        "threads": [m.get("threads", 1) for m in ms],
        "compilation_cache": [m.get("compilation_cache") for m in ms],
        "load_average_1min": [m["load_average_before"][0] for m in ms]}
  if "before" in out["labels"]:
    before = out["labels"]["before"]["mean_loop_s"]
    for row in out["labels"].values():
      row["speedup_vs_before"] = [before / x for x in row["loop_s"]]
  first = measurements[0]
  out["same_returns"] = all(m["returns"] == first["returns"]
                            for m in measurements)
  digests = [m["prompt_digests"] for m in measurements
             if "prompt_digests" in m]
  out["same_prompts"] = all(x == digests[0] for x in digests)
  out["prompts_compared"] = len(digests)
  return out


def print_table(m: dict) -> None:
  print(f"\n{m['label']}: table {m['table_s']:.1f} s, tune-and-evaluate "
        f"{m['loop_s']:.1f} s (compile {m['loop_compile_s']:.1f} s, CPU "
        f"{m['loop_cpu_s']:.1f} s), load "
        f"{m['load_average_before'][0]:.2f} -> {m['load_average_after'][0]:.2f}")
  head = (f"{'row':<28} {'build':>6} {'tune c':>7} {'tune r':>7} "
          f"{'eval c':>7} {'eval r':>7} {'write':>6} {'gen ms':>7} "
          f"{'ms/task-step':>12}")
  print(head + "\n" + "-" * len(head))
  for label, r in m["rows"].items():
    gen = f"{1e3 * r['generation_s']:.1f}" if "generation_s" in r else "-"
    step = (f"{r['in_situ_ms_per_task_step']:.2f}"
            if "in_situ_ms_per_task_step" in r else "-")
    if "reference_ms_per_step" in r:
      step += f" ({r['reference_ms_per_step']:.2f})"
    print(f"{label:<28} {r['build_s']:>6.1f} {r['tune_compile_s']:>7.1f} "
          f"{r['tune_s'] - r['tune_compile_s']:>7.1f} "
          f"{r['evaluate_compile_s']:>7.1f} "
          f"{r['evaluate_s'] - r['evaluate_compile_s']:>7.1f} "
          f"{r['write_s']:>6.1f} {gen:>7} {step:>12}")
  print("phases: " + ", ".join(
      f"{p} {v['s']:.1f} s (compile {v['compile_s']:.1f})"
      for p, v in m["phases"].items()))


def main(argv):
  del argv
  if _COMPILATION_CACHE.value:
    jax.config.update("jax_compilation_cache_dir", _COMPILATION_CACHE.value)
  config = launch.load_config(_CONFIG.value)
  config.seeds = tuple(int(s) for s in _SEEDS.value)
  os.environ["PDIFF_RUN_THREADS"] = _THREADS.value
  if concurrency is None or concurrency.run_threads() == 1:
    measurement = measure(config, _WORKDIR.value, _REFERENCE_STEPS.value)
    print_table(measurement)
  else:
    measurement = measure_threaded(config, _WORKDIR.value)
    print(f"\n{measurement['label']}: {measurement['threads']} threads, "
          f"table {measurement['table_s']:.1f} s, tune-and-evaluate "
          f"{measurement['loop_s']:.1f} s (compile "
          f"{measurement['loop_compile_s']:.1f} s)")

  previous = []
  if _APPEND.value and os.path.exists(_OUTPUT.value):
    with open(_OUTPUT.value) as f:
      old = json.load(f)
    if (old.get("config"), old.get("seeds")) != (_CONFIG.value,
                                                 list(config.seeds)):
      raise ValueError(f"{_OUTPUT.value} holds measurements of another "
                       "config or seeds; use another --output.")
    previous = old["measurements"]
  measurements = previous + [measurement]
  result = {
      "machine": dict(provenance.machine(),
                      load_average_1min=provenance.load_average()),
      "versions": provenance.package_versions(),
      "config": _CONFIG.value,
      "seeds": list(config.seeds),
      "rows": measurement["row_order"],
      "eval_episodes": int(config.eval_episodes),
      "num_shots": int(config.num_shots),
      "measurements": measurements,
      "comparison": compare(measurements),
  }
  write_json_atomic(_OUTPUT.value, result)
  print(json.dumps(result["comparison"], indent=1))
  print(f"Wrote {_OUTPUT.value}")


if __name__ == "__main__":
  app.run(main)
