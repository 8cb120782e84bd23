"""Where a result came from: package versions, the commit and the machine.

Every results file records :func:`provenance` so that a number can be traced
to the code and the stack that produced it.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import subprocess

PACKAGES = ("pdiff", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint",
            "brax", "mujoco", "numpy", "scipy", "ml-collections")


def package_versions(packages=PACKAGES) -> dict[str, str]:
  """``{name: version}``; "not installed" for a missing package."""
  out = {}
  for name in packages:
    try:
      out[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      out[name] = "not installed"
  return out


def git_commit(path: str | None = None) -> str:
  """The checkout's commit (with ``+dirty`` when files differ from it), or
  ``"unknown"`` outside a git checkout or without git."""
  path = path or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  try:
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path,
                            capture_output=True, text=True, timeout=10,
                            check=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain",
                            "--untracked-files=no"], cwd=path,
                           capture_output=True, text=True, timeout=10,
                           check=True).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return "unknown"
  return commit + ("+dirty" if dirty else "") if commit else "unknown"


# Changes of the code after which results written by earlier code no longer
# reproduce, although their fingerprints are unchanged (the maths is the
# same, the last bits are not): (commit, what changed). A change that alters
# a stage's results should rather bump that stage's version (pdiff.stages);
# this list names those that did not, so that results can be checked. Add a
# change with its earlier commits (`git rev-list CHANGE^`) to
# EARLIER_COMMITS's file.
RESULT_CHANGES = (
    ("24c99e97e9694f3dcd4a25bb5a6365a49b1b9218",
     "evaluation encodes each prompt's keys and values once: the PLM's "
     "actions change in the last bits, and a rollout that amplifies them, as "
     "Meta-World reach's do, returns other figures"),
)


# For each change of RESULT_CHANGES, the commits of this repository's history
# that precede it (``git rev-list CHANGE^``), so that results can be checked
# without git's history (a shallow clone, an archive).
EARLIER_COMMITS = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                               "assets", "history", "result_changes.json")


def changes_after(commit: str, changes=None, earlier_file: str | None = None
                  ) -> list[tuple[str, str]] | None:
  """The ``changes`` that code at ``commit`` (a results file's, ``+dirty``
  allowed) predates: those whose list of earlier commits holds it.

  Args:
    commit: the results' commit.
    changes: ``(commit, what changed)`` pairs; :data:`RESULT_CHANGES` by
      default.
    earlier_file: JSON ``{change: [earlier commits]}``;
      :data:`EARLIER_COMMITS` by default.

  Returns:
    The pairs that ``commit`` predates, or None for an unknown commit
    (``"unknown"`` or empty).

  Raises:
    ValueError: a change has no list of earlier commits in the file.
  """
  changes = RESULT_CHANGES if changes is None else changes
  commit = commit.removesuffix("+dirty")
  if not commit or commit == "unknown":
    return None
  with open(earlier_file or EARLIER_COMMITS) as f:
    earlier = json.load(f)
  missing = []
  for change, what in changes:
    if change not in earlier:
      raise ValueError(f"{earlier_file or EARLIER_COMMITS}: no earlier "
                       f"commits of change {change}; write them with `git "
                       f"rev-list {change}^`.")
    if commit in earlier[change]:
      missing.append((change, what))
  return missing


def cpu_model() -> str:
  """The CPU's model name (Linux), else ``platform.processor()``."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def machine() -> dict:
  """CPU model and count, OS, Python, and JAX's backend and devices."""
  import jax

  devices = jax.devices()
  return dict(cpu=cpu_model(), cpu_count=os.cpu_count(),
              os=platform.platform(), python=platform.python_version(),
              jax_backend=jax.default_backend(),
              devices=f"{len(devices)} x {devices[0].device_kind}",
              processes=jax.process_count())


def machine_summary(info: dict) -> str:
  """One line: ``"2-core Intel(R) ... (cpu)"``."""
  return (f"{info['cpu_count']}-core {info['cpu']}, JAX on "
          f"{info['devices']} ({info['jax_backend']})")


def load_average() -> float | None:
  """The 1-minute load average (None where the OS has none): how busy the
  machine was, which wall times depend on."""
  try:
    return round(os.getloadavg()[0], 2)
  except (AttributeError, OSError):
    return None


# Side of the square float32 matmul whose rate stands for the machine's speed.
MATMUL_SIZE = 1024


def matmul_rate(size: int = MATMUL_SIZE, repeats: int = 5) -> float:
  """GFLOP/s of a ``size x size`` float32 matmul in XLA on the default
  device, the fastest of ``repeats`` after a warm-up (well under a second
  on a CPU): how fast the machine was, which wall times scale with. Machines
  of one name differ, and a busy machine is slower."""
  import time

  import jax
  import jax.numpy as jnp

  a = jnp.ones((size, size), jnp.float32)
  product = jax.jit(lambda a: a @ a)
  jax.block_until_ready(product(a))
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(product(a))
    best = min(best, time.perf_counter() - start)
  return round(2 * size**3 / max(best, 1e-9) / 1e9, 1)


def provenance() -> dict:
  """``{"versions", "commit", "machine", "load_average_1min",
  "matmul_gflops_per_s"}`` for a results file: the load and the matmul rate
  when it is taken, which the pipeline does when a run starts (so that the
  record names the code that ran)."""
  info = machine()
  return dict(versions=package_versions(), commit=git_commit(),
              machine=machine_summary(info), machine_details=info,
              load_average_1min=load_average(),
              matmul_gflops_per_s=matmul_rate())
