"""Renderers of the benchmarks' figures (``benchmarks/results/*.json``):
docs/envs.md, docs/data.md, docs/training.md and docs/benchmarks.md."""

from __future__ import annotations

import statistics

from experiments.doc_blocks.common import (
  Sources,
  _int,
  _load_average,
  _load_json,
  _ms,
  _rate,
  _ratio,
  _rel,
  _seconds,
  _span,
  _table,
)


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
        _rate(r["rollout_uncached_steps_per_s"])
        if "rollout_uncached_steps_per_s" in r else "-",
        _ratio(r["rollout_cache_speedup"])
        if "rollout_cache_speedup" in r else "-",
        f"{r['rollout_compile_s']:.0f}"])
  table = _table(
      ["family", "preset", "tasks x episodes", "rollout (wall)", "env (wall)",
       "rollout (CPU)", "env (CPU)", "policy (CPU)", "rollout / env (CPU)",
       "rollout / (env + policy) (CPU)", "rollout without prompt cache (wall)",
       "prompt cache speed-up", "rollout compile s"],
      rows, ["l", "l", "l"] + ["r"] * 10)
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
  cached = [r for r in recs if "rollout_cache_speedup" in r]
  if cached:
    lines.append(
        "* Caching each prompt's keys and values once per episode (the "
        "default) makes the rollout "
        + _span((r["rollout_cache_speedup"] for r in cached), _ratio)
        + " faster than the whole forward pass at every step (median run "
        "times)" + (
            "; the largest action difference between the two is "
            f"{max(diffs):.1e}." if (diffs := [
                r["max_action_difference"] for r in cached
                if "max_action_difference" in r]) else "."))
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
      f"{machine.get('cpu_count', '?')}-core CPU ("
      + (f"float32 matmul {machine['matmul_gflops_per_s']} GFLOP/s; "
         if machine.get("matmul_gflops_per_s") else "")
      + f"load average {_load_average(sampling + finetune)} during the "
      "runs). Shape: "
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
  parts = data.get("guided_step_parts")
  if parts:
    lines += ["", *_guided_parts_lines(parts, ft.get(("sum", "chain")))]
  return "\n".join(lines)


# The parts of a guided step that prompt_generation.py --parts times.
_GUIDED_PARTS = {
    "dm_loss_and_grad": "L_DM and its gradient",
    "dt_loss": "L_DT alone (the reverse chain and the PLM, forward)",
    "dt_loss_and_grad": "L_DT and its gradient",
    "chain": "the reverse chain alone (generating the prompts)",
    "chain_and_grad": "the reverse chain and its gradient",
    "plm_loss_and_grad": "the PLM's loss and its gradient in the prompt",
}


def _guided_parts_lines(parts: list[dict], step: dict | None) -> list[str]:
  """Where a guided step's time goes, from the parts timed apart."""
  by_name = {r["part"]: r["ms_per_step"] for r in parts}
  total = step["ms_per_step"] if step else None
  rows = [[_GUIDED_PARTS.get(r["part"], r["part"]), _ms(r["ms_per_step"]),
           "-" if total is None else f"{100 * r['ms_per_step'] / total:.0f}%"]
          for r in parts]
  lines = [
      "Where a guided step goes: its parts timed apart, each in one "
      "`lax.scan` of " + _span((r["steps"] for r in parts), str)
      + " steps with the parameters held fixed (load average "
      + _load_average(parts) + "); the share is of a `sum` step through the "
      "chain" + (f" ({_ms(total)} ms, above)" if total else "") + ":", "",
      _table(["part", "ms per step", "share of a step"], rows,
             ["l", "r", "r"]), ""]
  need = ("dt_loss_and_grad", "chain", "chain_and_grad", "plm_loss_and_grad")
  if all(k in by_name for k in need):
    dt, chain = by_name["dt_loss_and_grad"], by_name["chain"]
    chain_grad, plm = by_name["chain_and_grad"], by_name["plm_loss_and_grad"]
    shares = {"the reverse chain's backward": chain_grad - chain,
              "the reverse chain's forward": chain,
              "the PLM's forward and backward": plm}
    largest = max(shares, key=shares.get)
    lines.append(
        f"* L_DT's gradient ({_ms(dt)} ms) is the reverse chain's forward "
        f"and backward ({_ms(chain_grad)} ms, of which the forward "
        f"{_ms(chain)} ms) and the PLM's forward and backward "
        f"({_ms(plm)} ms). The largest part is {largest} "
        f"({_ms(shares[largest])} ms); the chain's backward costs "
        f"{_ratio((chain_grad - chain) / chain)} its forward.")
  return lines


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
  """The Prompt-DT train step beside the PyTorch reference
  (docs/training.md, docs/benchmarks.md)."""
  path = sources.path("benchmarks/results/train_step.json")
  d = _load_json(path)
  s = d["shape"]
  m = d.get("machine", {})
  v = d.get("versions", {})
  meth = d.get("method", {})
  ceiling = d.get("ceiling")
  ref = d.get("reference", {})
  rows = []
  for name, r in d["runs"].items():
    frac = r.get("fraction_of_ceiling")
    rows.append([f"`{name}`", "pdiff", str(r["devices"]),
                 str(r.get("microbatches", "-")), _ms(r["step_ms"]),
                 _int(r["samples_per_s"]),
                 "-" if frac is None else f"{100 * frac:.0f}%",
                 f"{r['first_step_s']:.1f}", str(r["timed_steps"])])
  if "samples_per_s" in ref:  # its FLOPs are not pdiff's: no fraction
    rows.append(["`reference`", f"PyTorch, {ref['threads']} threads", "1",
                 "-", _ms(ref["step_ms"]), _int(ref["samples_per_s"]), "-",
                 f"{ref['first_step_s']:.1f}", str(ref["timed_steps"])])
  params = next(iter(d["runs"].values()))["num_params"]
  load = [m.get("load_average_1min_before"), m.get("load_average_1min_after")]
  load = [x for x in load if x is not None]
  versions = ", ".join(f"{k} {v[k]}" for k in ("jax", "torch", "transformers")
                       if k in v)
  lines = [
      f"From `{_rel(sources, path)}`: batch {s['batch']}, K = {s['K']}, "
      f"K* = {s['K_prompt']}, embed {s['hidden_dim']}, {s['num_layers']} "
      f"layers, dropout {s.get('dropout', 0.1):g}, ds = {s['state_dim']}, "
      f"da = {s['act_dim']} ({params / 1e6:.2f}M parameters in pdiff); "
      f"{versions} on a {m.get('cpu_count', '?')}-core CPU"
      + (f", load average {_span(load, lambda x: f'{x:.1f}')}"
         if load else "")
      + (f"; medians of {meth['repeats']} rounds of {meth['steps_per_round']}"
         " steps, the workers in turn" if meth else "") + ".", ""]
  lines.append(_table(
      ["run", "code", "devices", "microbatches", "ms per step", "samples/s",
       "of the matmul ceiling", "first step s", "timed steps"], rows,
      ["l", "l", "r", "r", "r", "r", "r", "r", "r"]))
  notes = []
  if "launcher_over_reference" in d:
    notes.append(
        f"`launcher` / `reference`: {d['launcher_over_reference']:.2f}x "
        "(median of the rounds' ratios; rounds "
        + _span(d["launcher_over_reference_rounds"], lambda x: f"{x:.2f}x")
        + ").")
  elif "not_timed" in ref:
    notes.append(f"The PyTorch reference was not timed: {ref['not_timed']}.")
  if ceiling:
    notes.append(
        f"Matmul ceiling ({ceiling['matmul']}): "
        f"{ceiling['gflops_per_s']:.0f} GFLOP/s"
        + (f", {_int(ceiling['samples_per_s'])} samples/s at "
           f"{d['flops_per_sample'] / 1e6:.0f} MFLOP per sample (XLA's cost "
           "analysis of pdiff's step)" if "samples_per_s" in ceiling else "")
        + ".")
  if "samples_per_s" in ref and ref.get("adaptations"):
    notes.append("Reference: " + ref["trainer"].split(".")[-1]
                 + " of its `PromptSequenceTrainer`; adaptations to newer "
                 "libraries, none in its computation: "
                 + "; ".join(ref["adaptations"]) + ".")
  if notes:
    lines += [""] + [f"* {n}" for n in notes]
  return "\n".join(lines)


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


def render_evaluation_reference(sources: Sources) -> str:
  """Prompt-DT's evaluation: the PyTorch loop beside pdiff's batched rollout
  (docs/benchmarks.md)."""
  path = sources.path("benchmarks/results/evaluation_reference.json")
  data = _load_json(path)
  shape, machine = data["shape"], data["machine"]
  roll = data["pdiff"]["rollout"]
  warm = (data["pdiff"].get("rollout_compile_persistent_cache") or {}).get(
      "cache_warm")
  rows = []
  ref = data["reference"]
  if "total_s" in ref:
    rows.append(["reference: its loop, one episode at a time (model and "
                 "loop only)", _seconds(ref["total_s"]),
                 f"extrapolated from {ref['timed_decisions']:,} decisions "
                 f"({ref['decisions_per_s']:.0f} decisions/s, "
                 f"{ref['threads']} torch thread"
                 f"{'' if ref['threads'] == 1 else 's'})"])
  rows.append(["pdiff: rollout, env included", _seconds(roll["run_s"]),
               "all episodes in one jit"])
  rows.append(["pdiff: compile, cache off", _seconds(roll["compile_s"]),
               "trace, lower, compile"])
  if warm:
    rows.append(["pdiff: compile, cache warm", _seconds(warm["compile_s"]),
                 "a rerun: the persistent cache (on by default) holds the "
                 "program; tracing and lowering remain"])
  rows.append(["pdiff: policy alone", _seconds(data["pdiff_policy_only_s"]),
               "the forward passes of the rollout, no env"])
  loads = (machine["load_average_before"][0], machine["load_average_after"][0])
  lines = [
      f"From `{_rel(sources, path)}`: {shape['tasks']} tasks x "
      f"{shape['episodes_per_task']} episodes x "
      f"{shape['steps_per_episode']} steps ({shape['decisions']:,} "
      f"decisions) at Prompt-DT's shape, on a {machine['cores_available']}"
      f"-core CPU (1-minute load average {loads[0]:.1f} before, "
      f"{loads[1]:.1f} after):", "",
      _table(["what", "time", "how"], rows, ["l", "r", "l"])]
  ratios = data.get("ratios")
  if ratios:
    lines += ["", "Reference time over pdiff's (pdiff's env is inside its "
              "time, no env is inside the reference's: this favours the "
              "reference):", ""]
    lines += [f"* {name}: {_ratio(value)}" for name, value in ratios.items()]
  else:
    lines += ["", f"The reference was not timed: {ref.get('not_timed')}."]
  return "\n".join(lines)


def render_tuning_profile(sources: Sources) -> str:
  """Where the results table's tune-and-evaluate time goes
  (docs/benchmarks.md)."""
  path = sources.path("benchmarks/results/tuning_profile.json")
  d = _load_json(path)
  ms = d["measurements"]
  machine = d.get("machine", {})
  # The profile: the latest measurement timed phase by phase (one thread,
  # no persistent cache), of the current code when there is one.
  timed = [x for x in ms if "phases" in x and not x.get("compilation_cache")]
  m = next((x for x in reversed(timed) if x["label"] != "before"), timed[-1])
  seeds = ", ".join(str(s) for s in d["seeds"])
  order = d["rows"]  # table order (the file's keys are sorted)
  rows = []
  for label in order:
    r = m["rows"][label]
    rows.append([
        f"`{label}`", f"{r['build_s']:.1f}", f"{r['tune_compile_s']:.1f}",
        f"{r['tune_s'] - r['tune_compile_s']:.1f}",
        f"{r['evaluate_compile_s']:.1f}",
        f"{r['evaluate_s'] - r['evaluate_compile_s']:.1f}",
        f"{r['write_s']:.1f}"])
  ph = m["phases"]
  other = ph["prepared"]["s"] + ph["data"]["s"]
  loop, comp = m["loop_s"], m["loop_compile_s"]
  tune_run = ph["tune"]["s"] - ph["tune"]["compile_s"]
  eval_run = ph["evaluate"]["s"] - ph["evaluate"]["compile_s"]
  lines = [
      f"From `{_rel(sources, path)}` (its latest run timed phase by "
      "phase: one unit at a time, without the persistent compilation "
      "cache): "
      f"`{d['config']}`, seeds {seeds}, {d['num_shots']} shots, "
      f"{d['eval_episodes']} evaluation episodes per task, jax "
      f"{d.get('versions', {}).get('jax', '?')} on a "
      f"{machine.get('cpu_count', '?')}-core CPU, load average "
      f"{m['load_average_before'][0]:.1f} before and "
      f"{m['load_average_after'][0]:.1f} after. Seconds, summed over the "
      "seeds:", "",
      _table(["row", "build", "tune: compile", "tune: run",
              "evaluate: compile", "evaluate: run", "write"], rows,
             ["l"] + ["r"] * 6), "",
      f"* Tune-and-evaluate: {_seconds(loop)}, of which compiling "
      f"(tracing, lowering, XLA) {_seconds(comp)} ({100 * comp / loop:.0f}%), "
      f"running the tune programs {_seconds(tune_run)} "
      f"({100 * tune_run / loop:.0f}%), running the rollouts "
      f"{_seconds(eval_run)} ({100 * eval_run / loop:.0f}%); loading the "
      f"stage-1 models and drawing the few-shot data {other:.1f} s. Setup "
      f"(datasets, PLM) took {ph['setup']['s']:.1f} s and the results "
      f"{ph['results']['s']:.1f} s."]
  for label in order:
    r = m["rows"][label]
    if "in_situ_ms_per_task_step" not in r:
      continue
    text = (f"* `{label}`: {r['finetune_steps']} fine-tuning steps on each of "
            f"{r['num_tasks']} tasks at {_ms(r['in_situ_ms_per_task_step'])} "
            "ms per task and step in the table")
    if "reference_ms_per_step" in r:
      text += (f", against {_ms(r['reference_ms_per_step'])} ms per step "
               "for the same loop on one task alone, timed right after")
    text += (f"; generating the tasks' prompts "
             f"{_ms(1e3 * r['generation_s'])} ms.")
    lines.append(text)
  lines += _tuning_speedup(d, m)
  return "\n".join(lines)


def _tuning_speedup(d: dict, m: dict) -> list[str]:
  """The before/after paragraph of :func:`render_tuning_profile`."""
  ms, comp = d["measurements"], d["comparison"]
  before = [x for x in ms if x["label"] == "before"]
  threaded = [x for x in ms if x.get("threads", 1) > 1
              and not x.get("compilation_cache")]
  if not before or not threaded:
    return []
  b = statistics.mean(x["loop_s"] for x in before)
  a = threaded[-1]
  lines = ["", (
      f"Before and after running seeds and rows in threads "
      f"(`PDIFF_RUN_THREADS`, `auto` by default), measured in turn on "
      f"the same work directory: the version before "
      f"(`{before[0]['commit'][:7]}`, one unit at a time) took "
      f"{_seconds(b)} to tune and evaluate (mean of "
      + ", ".join(_seconds(x["loop_s"]) for x in before) + "; load average "
      + ", ".join(f"{x['load_average_before'][0]:.1f}" for x in before)
      + "), the current one one unit at a time (the profile above) "
      f"{_seconds(m['loop_s'])} ({b / m['loop_s']:.2f}x), and the current "
      f"one with {a['threads']} threads {_seconds(a['loop_s'])} "
      f"({b / a['loop_s']:.2f}x; load average "
      f"{a['load_average_before'][0]:.1f}, CPU time "
      f"{_seconds(a['loop_cpu_s'])} against "
      f"{_seconds(statistics.mean(x['loop_cpu_s'] for x in before))}).")]
  cached = [x for x in ms if x.get("compilation_cache")]
  if len(cached) >= 2:
    cold, warm = cached[0], cached[-1]
    lines[-1] += (
        " With JAX's persistent compilation cache (on by default in the "
        "launchers) on a fresh directory: "
        f"{_seconds(cold['loop_s'])} the first time "
        f"({b / cold['loop_s']:.2f}x), compiling "
        f"{_seconds(cold['loop_compile_s'])}, and "
        f"{_seconds(warm['loop_s'])} the second ({b / warm['loop_s']:.2f}x),"
        f" compiling (now mostly tracing and loading from the cache) "
        f"{_seconds(warm['loop_compile_s'])}.")
  same = (f"All {len(ms)} measurements computed the same returns"
          if comp["same_returns"] else
          "The measurements' returns differ")
  prompts = ""
  if comp.get("prompts_compared", 0) > 1:
    prompts = (f", and the {comp['prompts_compared']} timed phase by phase "
               "the same tuned prompts bit for bit" if comp["same_prompts"]
               else f", but the {comp['prompts_compared']} timed phase by "
               "phase tuned different prompts")
  lines[-1] += f" {same}{prompts}."
  return lines
