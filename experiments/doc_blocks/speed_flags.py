"""Renderer of ``benchmarks/results/xla_flags.json`` (docs/benchmarks.md):
what each XLA flag tried does to Prompt Diffuser's tuning program."""

from __future__ import annotations

from experiments.doc_blocks.common import (
  Sources,
  _load_json,
  _ms,
  _rel,
  _span,
  _table,
)


def _flag_list(rows: list[dict]) -> str:
  return ", ".join(
      f"`{r['flag']}` ({r['cpu_vs_no_flag']:.2f}x the CPU time)" for r in rows
  ) or "none"


def _baseline_sentence(base: dict, task_steps: int) -> str:
  """The process without flags over its rounds: the spread of its CPU time
  and whether its prompts stayed the same."""
  cpu = [r["cpu_s"] * 1e3 / task_steps for r in base["rounds"]]
  if len(cpu) == 1:
    return ("* Without flags: one round, so neither the run-to-run spread "
            "nor the program's determinism was measured.\n")
  return (f"* Without flags, in {len(cpu)} rounds: CPU time "
          f"{_span(cpu, _ms)} ms per task and step, "
          f"{max(cpu) / min(cpu) - 1:.0%} apart (the run-to-run spread, "
          f"against which the ratios are read), and "
          + ("the same prompts bit for bit" if base["same_prompts"]
             else "different prompts: the program is not deterministic")
          + ".\n")


def render_xla_flags(sources: Sources) -> str:
  """One row per XLA flag tried, beside the same program without flags."""
  path = sources.path("benchmarks/results/xla_flags.json")
  d = _load_json(path)
  machine = d["machine"]
  tried = d["rows"][1:]
  rows = []
  for r in d["rows"]:
    name = "no flag" if r["flag"] is None else f"`{r['flag']}`"
    if not r["accepted"]:
      rows.append([name, "no"] + ["-"] * 7)
      continue
    per_step = r["cpu_ms_per_task_step"] / r["cpu_s"]
    rows.append([
        name, "yes", f"{r['compile_s']:.1f}", _ms(r["wall_ms_per_task_step"]),
        _ms(r["cpu_ms_per_task_step"]),
        ", ".join(_ms(x["cpu_s"] * per_step) for x in r["rounds"]),
        "-" if "cpu_vs_no_flag" not in r else f"{r['cpu_vs_no_flag']:.2f}x",
        "-" if "same_prompts" not in r else
        ("yes" if r["same_prompts"] else "no"),
        "-" if "max_abs_diff" not in r else f"{r['max_abs_diff']:.2g}"])
  same = [r for r in tried if r.get("same_prompts")]
  changed = [r for r in tried if r["accepted"] and not r.get("same_prompts")]
  refused = [f"`{r['flag']}`" for r in tried if not r["accepted"]]
  return (
      f"From `{_rel(sources, path)}`: `{d['program']}` in mode "
      f"`{d['mode']}`, {d['tasks']} tasks x {d['finetune_steps']} fine-tuning "
      f"steps at the shapes of `prompt_generation.py`, one process per "
      f"flag and round, fastest of {d['repeats']} runs in a process and of "
      f"{d['rounds']} rounds by CPU time; jax {machine['jax_version']} "
      f"on a {machine['cpu_count']}-core CPU, load average "
      f"{machine['load_average_before'][0]:.1f} before and "
      f"{machine['load_average_after'][0]:.1f} after. CPU time is the "
      f"process's, XLA's threads included.\n\n"
      + _table(["XLA flag", "accepted", "compile s", "ms per task and step",
                "CPU ms", "CPU ms, each round", "CPU / no flag",
                "same prompts", "largest difference"], rows,
               ["l", "l", "r", "r", "r", "r", "r", "l", "r"])
      + "\n\n"
      + _baseline_sentence(d["rows"][0], d["tasks"] * d["finetune_steps"])
      + f"* Same prompts bit for bit: {_flag_list(same)}.\n"
      f"* Different prompts: {_flag_list(changed)}.\n"
      + (f"* Not known to this XLA: {', '.join(refused)}.\n" if refused
         else ""))
