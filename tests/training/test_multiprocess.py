"""Two-process data-parallel pre-training on localhost equals one process.

Three processes run `tests/training/multiprocess_pretrain.py` at once on the
same tiny point_robot datasets: two form a `jax.distributed` run through a
coordinator on 127.0.0.1 (one CPU device each, Gloo collectives), the third
is an ordinary single-process run with two CPU devices. Both setups train on
the same global batches split the same way over two devices, so they run the
same SPMD program on the same data; the only difference is how the two
devices' gradients are summed (over TCP between the processes, in memory
inside the single process). A sum of two addends does not depend on their
order, so the parameters are expected to be bit-identical; they are compared
with a tolerance of a few float32 roundings (`RTOL`, `ATOL`), which would
still catch a process training on other rows or missing the other's gradient
(that changes the losses, gradient norms and parameters by far more).

The processes compile with `--xla_backend_optimization_level=0`, both setups
alike, which cuts XLA's CPU compile time about threefold.
"""

import json
import os
import pathlib
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from absl import flags

from experiments import launch
from pdiff import envs
from pdiff.data import storage
from pdiff.training import checkpointing, loop
from pdiff.types import Trajectories
from tests.training import multiprocess_pretrain as worker

REPO = pathlib.Path(__file__).resolve().parents[2]
NUM_STEPS = 3
TIMEOUT_S = 300  # for all three processes together
RTOL, ATOL = 1e-6, 1e-7
# Set by the test for each process; inherited values would interfere.
JAX_PROCESS_VARIABLES = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES",
                         "JAX_PROCESS_ID", "JAX_LOCAL_DEVICE_IDS")


def write_datasets(root: pathlib.Path) -> None:
  """Random point_robot datasets of every task (4 trajectories of 20 steps)."""
  family = envs.make(worker.FAMILY)
  rng = np.random.default_rng(0)
  n, t = 4, 20
  timeouts = np.zeros((n, t), bool)
  timeouts[:, -1] = True
  task_params = np.asarray(family.task_params)
  for i in range(family.num_tasks):
    trajs = Trajectories(
        observations=rng.normal(size=(n, t, family.observation_size)),
        actions=rng.uniform(-1, 1, (n, t, family.action_size)),
        rewards=-rng.uniform(0, 1, (n, t)), dones=np.zeros((n, t), bool),
        timeouts=timeouts, lengths=np.full(n, t))
    dataset = storage.make_task_dataset(
        trajs, family=family.name, task_index=i,
        task_params=task_params[i].tolist(), quality=worker.QUALITY,
        source="tests/training/test_multiprocess.py")
    storage.save_task_dataset(
        storage.dataset_path(root, family.name, worker.QUALITY, i), dataset)


def free_port() -> int:
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def process_env(num_devices: int, **variables: str) -> dict[str, str]:
  """The environment of one process: CPU, `num_devices` devices."""
  env = {k: v for k, v in os.environ.items()
         if k not in JAX_PROCESS_VARIABLES
         # JAX warns that proxies can hang the coordinator's connections.
         and not k.lower().endswith("_proxy")}
  env.update(JAX_PLATFORMS="cpu", XLA_FLAGS=(
      f"--xla_force_host_platform_device_count={num_devices} "
      "--xla_backend_optimization_level=0"), **variables)
  return env


def run_all(commands: dict[str, tuple[list[str], dict]], logs: pathlib.Path):
  """Runs the commands at once; fails with their output if one fails or
  they take longer than `TIMEOUT_S` (stopping the others)."""
  procs = {}
  for name, (args, env) in commands.items():
    with open(logs / f"{name}.log", "wb") as log:
      procs[name] = subprocess.Popen(
          [sys.executable, "-m", worker.__name__, *args], cwd=REPO, env=env,
          stdout=log, stderr=subprocess.STDOUT)
  deadline = time.monotonic() + TIMEOUT_S
  failure = None
  while failure is None and any(p.poll() is None for p in procs.values()):
    failed = [n for n, p in procs.items() if p.poll() not in (None, 0)]
    if failed:
      failure = f"{', '.join(failed)} failed"
    elif time.monotonic() > deadline:
      failure = f"timed out after {TIMEOUT_S} s"
    else:
      time.sleep(0.2)
  for p in procs.values():
    if p.poll() is None:
      p.kill()
    p.wait()
  failed = [n for n, p in procs.items() if p.returncode != 0]
  if failure or failed:
    output = "\n".join(
        f"===== {n} (exit {procs[n].returncode}) =====\n"
        + (logs / f"{n}.log").read_text(errors="replace")[-6000:]
        for n in procs)
    pytest.fail(f"{failure or ', '.join(failed) + ' failed'}\n{output}")


def load_params(out: pathlib.Path) -> dict[str, np.ndarray]:
  with np.load(out / "params.npz") as f:
    return dict(f)


def assert_close(actual: dict, desired: dict, **tolerance) -> None:
  assert sorted(actual) == sorted(desired)
  for name in desired:
    np.testing.assert_allclose(actual[name], desired[name], err_msg=name,
                               **tolerance)


def test_two_processes_train_like_one(tmp_path):
  datasets = tmp_path / "datasets"
  write_datasets(datasets)
  coordinator = f"127.0.0.1:{free_port()}"

  def args(workdir, out, *extra):
    return [f"--dataset_root={datasets}", f"--workdir={tmp_path / workdir}",
            f"--out={tmp_path / 'out' / out}", f"--num_steps={NUM_STEPS}",
            *extra]

  commands = {
      f"process{i}": (args("two_processes", f"process{i}", "--distributed"),
                      process_env(1, JAX_COORDINATOR_ADDRESS=coordinator,
                                  JAX_NUM_PROCESSES="2",
                                  JAX_PROCESS_ID=str(i)))
      for i in range(2)}
  commands["single"] = (args("single", "single"), process_env(2))
  start = time.monotonic()
  run_all(commands, tmp_path)
  print(f"processes ran in {time.monotonic() - start:.1f} s")

  info = {n: json.loads((tmp_path / "out" / n / "info.json").read_text())
          for n in commands}
  for i in range(2):
    assert info[f"process{i}"] == dict(
        process_index=i, process_count=2, device_count=2,
        local_device_count=1, probe_rows=[2 * i, 2 * i + 1])
  assert info["single"] == dict(process_index=0, process_count=1,
                                device_count=2, local_device_count=2,
                                probe_rows=[0, 1, 2, 3])

  params = {n: load_params(tmp_path / "out" / n) for n in commands}
  # The two processes hold copies of one replicated array.
  assert_close(params["process1"], params["process0"], rtol=0, atol=0)
  assert_close(params["process0"], params["single"], rtol=RTOL, atol=ATOL)
  # Same losses and gradient norms step by step (process 0 logs them).
  two, one = (loop.read_metrics(str(tmp_path / w))
              for w in ("two_processes", "single"))
  steps = list(range(1, NUM_STEPS + 1))
  assert [r["step"] for r in two] == [r["step"] for r in one] == steps
  for key in ("loss", "grad_norm"):
    np.testing.assert_allclose([r[key] for r in two], [r[key] for r in one],
                               rtol=RTOL, err_msg=key)
  # The checkpoint the two processes wrote together loads in one process.
  _, restored = checkpointing.load_pretrained(str(tmp_path / "two_processes"))
  assert_close(worker.flat_params(restored), params["process0"], rtol=0,
               atol=0)


@pytest.mark.parametrize("args,started", [
    (["--distributed"], True),
    (["--distributed=true", "--workdir", "w"], True),
    (["--distributed=false"], False),
    (["--nodistributed"], False),
    ([], False),
])
def test_launchers_start_distributed_before_parsing_flags(monkeypatch, args,
                                                          started):
  calls = []
  monkeypatch.setattr(launch.parallel, "maybe_initialize_distributed",
                      calls.append)
  with_flag = flags.FlagValues()
  flags.DEFINE_bool("distributed", False, "", flag_values=with_flag)
  argv = ["prog", "--config=c.py:point_robot,tiny", "--config.num_steps=3",
          *args]
  launch._start_distributed_if_asked(argv, with_flag)
  assert calls == ([True] if started else [])
  # A program without the flag never starts it.
  launch._start_distributed_if_asked(argv, flags.FlagValues())
  assert calls == ([True] if started else [])
