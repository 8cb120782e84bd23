"""The docs' block on XLA flags, from a hand-made ``xla_flags.json``."""

import json

from experiments.doc_blocks import common, speed_flags


def _row(flag, cpu_s, wall_s, rounds, same=None, diff=None, accepted=True):
  if not accepted:
    return {"flag": flag, "accepted": False}
  row = {"flag": flag, "accepted": True, "compile_s": 30.0, "cpu_s": cpu_s,
         "wall_s": wall_s, "wall_ms_per_task_step": wall_s * 1e3 / 150,
         "cpu_ms_per_task_step": cpu_s * 1e3 / 150,
         "rounds": [{"cpu_s": c} for c in rounds]}
  if same is not None:
    row.update(same_prompts=same, max_abs_diff=diff)
  if flag is not None:
    row.update(cpu_vs_no_flag=cpu_s / 6.0, wall_vs_no_flag=wall_s / 4.5)
  return row


def _render(tmp_path, rows, num_rounds=2):
  data = {
      "program": "pdiff.tuning.prompt_diffuser.make_tune_tasks",
      "mode": "projection", "tasks": 5, "finetune_steps": 30, "repeats": 3,
      "rounds": num_rounds,
      "machine": {"jax_version": "0.9.2", "cpu_count": 2,
                  "load_average_before": [1.0, 1, 1],
                  "load_average_after": [2.0, 1, 1]},
      "rows": rows}
  path = tmp_path / "benchmarks" / "results" / "xla_flags.json"
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(data))
  return speed_flags.render_xla_flags(common.Sources(root=tmp_path))


def test_block_sorts_flags_by_what_they_do_to_the_prompts(tmp_path):
  text = _render(tmp_path, [
      _row(None, 6.0, 4.5, [6.0, 6.6], same=True, diff=0.0),
      _row("--a=1", 5.4, 4.2, [5.4, 5.5], same=True, diff=0.0),
      _row("--b=1", 4.8, 3.0, [4.8, 5.0], same=False, diff=3e-6),
      _row("--c=1", 0, 0, [], accepted=False),
  ])
  assert ("Without flags, in 2 rounds: CPU time 40.0 to 44.0 ms per task and "
          "step, 10% apart") in text
  assert "and the same prompts bit for bit." in text
  assert "Same prompts bit for bit: `--a=1` (0.90x the CPU time)." in text
  assert "Different prompts: `--b=1` (0.80x the CPU time)." in text
  assert "Not known to this XLA: `--c=1`." in text
  assert "| `--c=1` | no | - | - | - | - | - | - | - |" in text
  assert ("| `--b=1` | yes | 30.0 | 20.0 | 32.0 | 32.0, 33.3 | 0.80x | no | "
          "3e-06 |") in text


def test_block_says_what_one_round_cannot_tell(tmp_path):
  text = _render(tmp_path, [_row(None, 6.0, 4.5, [6.0]),
                            _row("--a=1", 5.4, 4.2, [5.4], same=True,
                                 diff=0.0)], num_rounds=1)
  assert ("one round, so neither the run-to-run spread nor the program's "
          "determinism was measured") in text
