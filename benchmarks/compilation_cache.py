"""What the persistent compilation cache saves: a launcher run cold, then warm.

Runs the same launcher command in fresh processes with an empty cache
directory (``PDIFF_COMPILATION_CACHE``): first ``cold`` (everything is
compiled and written), then ``warm`` (everything is loaded), and ``off``
(no cache) as the anchor. The default command evaluates a work directory's
PLM on its test tasks (``experiments/evaluate.py``), whose time is mostly the
rollout's compilation and run:

  PYTHONPATH=. python benchmarks/compilation_cache.py --workdir=runs/cheetah_vel

Writes benchmarks/results/compilation_cache.json.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time

from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from pdiff.evaluation.report import write_json_atomic  # noqa: E402

_WORKDIR = flags.DEFINE_string(
    "workdir", "runs/cheetah_vel",
    "Work directory with datasets and a PLM (the README's main job's).")
_EPISODES = flags.DEFINE_integer("episodes", 5, "Episodes per test task.")
_REPEATS = flags.DEFINE_integer(
    "repeats", 2, "Warm and off runs each (the cold run happens once).")
_JSON_OUTPUT = flags.DEFINE_string(
    "json_output", os.path.join(ROOT, "benchmarks", "results",
                                "compilation_cache.json"),
    "Where to write the JSON results.")


def _command() -> list[str]:
  return [sys.executable, "experiments/evaluate.py",
          f"--workdir={_WORKDIR.value}", "--splits=test",
          f"--episodes={_EPISODES.value}"]


def _run(cache: str) -> float:
  env = dict(os.environ, PDIFF_COMPILATION_CACHE=cache,
             PYTHONPATH=ROOT, JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS",
                                                           "cpu"))
  start = time.perf_counter()
  proc = subprocess.run(_command(), cwd=ROOT, env=env, capture_output=True,
                        text=True)
  seconds = time.perf_counter() - start
  if proc.returncode:
    raise SystemExit(f"{' '.join(_command())} failed:\n{proc.stderr[-2000:]}")
  return seconds


def _size(path: str) -> tuple[int, int]:
  files = [os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs]
  return len(files), sum(os.path.getsize(f) for f in files)


def main(argv):
  del argv
  if not os.path.isdir(os.path.join(ROOT, _WORKDIR.value)) and not (
      os.path.isdir(_WORKDIR.value)):
    raise SystemExit(f"--workdir={_WORKDIR.value}: no such directory; run "
                     "the README's main job first, or name its work "
                     "directory.")
  load_before = os.getloadavg()
  with tempfile.TemporaryDirectory(prefix="pdiff-cache-") as cache:
    cold = _run(cache)
    entries, size = _size(cache)
    warm = [_run(cache) for _ in range(_REPEATS.value)]
  off = [_run("off") for _ in range(_REPEATS.value)]
  record = dict(
      benchmark="compilation_cache", command=" ".join(_command()[1:]),
      cold_seconds=round(cold, 2), warm_seconds=[round(s, 2) for s in warm],
      off_seconds=[round(s, 2) for s in off],
      saved_seconds=round(min(off) - min(warm), 2),
      warm_over_off=round(min(warm) / min(off), 3),
      cache_entries=entries, cache_megabytes=round(size / 2**20, 2),
      machine=dict(cpu_count=os.cpu_count(), platform=platform.platform(),
                   load_average_before=[round(x, 2) for x in load_before],
                   load_average_after=[round(x, 2)
                                       for x in os.getloadavg()]))
  print(json.dumps(record, indent=1))
  write_json_atomic(_JSON_OUTPUT.value, record)


if __name__ == "__main__":
  app.run(main)
