"""metaworld_reach: Meta-World's reach task, stepped by Meta-World itself.

A Sawyer arm moves its gripper to a goal position. The 20 tasks are the
random vectors (object x, y, z, goal x, y, z) of
``metaworld.ML1("reach-v3", seed=1).train_tasks[0:20]``, stored in
``tasks.json`` with Prompt-DT's reach split (training tasks 1-5, 7, 8, 10-14,
17-19; test tasks 6, 9, 15, 16, 20, numbered from 1 there and from 0 here).
As in ML1 the goal is hidden: observation features 36-38 are zero, so a
policy learns the task from its prompt.

Physics, reward and success are Meta-World's own Python code (Meta-World
3.1.1, the ``metaworld`` extra), never re-implemented. They run on the host
through ``jax.pure_callback``, so ``reset``/``step`` keep the family
interface: pure functions of an explicit state that jit, vmap and scan like
the Brax families. The state is MuJoCo's integration state
(``mjSTATE_INTEGRATION``: time, positions, velocities, controls, mocap,
solver warm start), Meta-World's previous-frame observation and its step
counter, carried as raw bits. A batch of episodes is one callback that
restores each episode's state into the task's environment, calls its
``step`` and reads the state back, which steps bit for bit like an
environment stepped without interruption (tests check rewards and
observations on recorded actions). ``PDIFF_HOST_WORKERS`` splits the batch
over worker processes (``pdiff.envs.host_pool``) with identical results.

Episodes last 500 steps (Meta-World's ``max_path_length``, Prompt-DT's
``max_ep_len``) and never terminate early; the reward per step is in
``[0, 10]``. ``metrics`` holds ``success`` (gripper within 5 cm of the goal)
and ``tcp_to_target`` (the distance) of each step.
"""

from __future__ import annotations

import dataclasses
import functools
import pickle
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from pdiff.envs import base, host_pool
from pdiff.envs.locomotion import task_table_field

METAWORLD_BACKENDS = ("mujoco",)
ENV_NAME = "reach-v3"
EXTRA_HINT = 'pip install -c constraints.txt -e ".[metaworld]"'
OBSERVATION_SIZE = 39
ACTION_SIZE = 4
MAX_REWARD = 10.0  # per step
EPISODE_LENGTH = 500
# Meta-World's previous-frame block of the observation.
_PREV_OBS_SIZE = 18


def import_metaworld():
  """``(metaworld, mujoco)``; ImportError naming the extra if absent."""
  try:
    import metaworld  # noqa: PLC0415 (optional extra)
    import mujoco  # noqa: PLC0415
  except ImportError as e:
    raise ImportError(
        f"the metaworld_reach family needs the `metaworld` extra "
        f"({EXTRA_HINT}): {e}") from e
  return metaworld, mujoco


class HostEnvs:
  """One Meta-World reach environment per task, stepped from given states.

  A task's environment is built on its first use (a host worker builds only
  those of its episodes' tasks).

  Attributes:
    state_words: length of a state as ``uint32`` words (float64 MuJoCo
      integration state, then the float64 previous-frame observation).
  """

  def __init__(self, task_values: tuple[tuple[float, ...], ...]):
    self._metaworld, mujoco = import_metaworld()
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS  # noqa: PLC0415

    self._mujoco = mujoco
    self._spec = mujoco.mjtState.mjSTATE_INTEGRATION
    self._env_cls = ALL_V3_ENVIRONMENTS[ENV_NAME]
    self._task_values = task_values
    self._envs: dict[int, object] = {}
    env = self.env(0)
    self._mj_size = mujoco.mj_stateSize(env.model, self._spec)
    self.state_words = 2 * (self._mj_size + _PREV_OBS_SIZE)
    self._reset_cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

  def env(self, index: int):
    """Task ``index``'s Meta-World environment (built on first use)."""
    index = int(index)
    if index not in self._envs:
      values = self._task_values[index]  # IndexError for an unknown task
      env = self._env_cls()
      env.set_task(self._metaworld.Task(env_name=ENV_NAME, data=pickle.dumps(
          dict(env_cls=self._env_cls, rand_vec=np.asarray(values, np.float64),
               partially_observable=True))))
      self._envs[index] = env
    return self._envs[index]

  def _read(self, env) -> np.ndarray:
    state = np.empty(self._mj_size + _PREV_OBS_SIZE, np.float64)
    self._mujoco.mj_getState(env.model, env.data, state[:self._mj_size],
                             self._spec)
    state[self._mj_size:] = env._prev_obs  # noqa: SLF001 (Meta-World's)
    return state.view(np.uint32)

  def _write(self, env, words: np.ndarray, path_length: int) -> None:
    state = np.array(words, np.uint32).view(np.float64)  # a writable copy
    # No mj_forward after restoring: Meta-World's step starts from the
    # integration state alone, and an extra forward pass would change the
    # solver's warm start (and the last bits of the result).
    self._mujoco.mj_setState(env.model, env.data, state[:self._mj_size],
                             self._spec)
    env._prev_obs = state[self._mj_size:].copy()  # noqa: SLF001
    # A finished episode's state is stepped and discarded by the family;
    # Meta-World refuses steps past max_path_length, so stay below it.
    env.curr_path_length = min(int(path_length), env.max_path_length - 1)

  def reset(self, index: int) -> tuple[np.ndarray, np.ndarray]:
    """``(state words, observation float64 [39])`` of a task's first step
    (deterministic: Meta-World's reset depends on the task only)."""
    index = int(index)
    if index not in self._reset_cache:
      env = self.env(index)
      obs, _ = env.reset()
      self._reset_cache[index] = (self._read(env), np.asarray(obs))
    words, obs = self._reset_cache[index]
    return words.copy(), obs.copy()

  def step(self, index: int, words: np.ndarray, path_length: int,
           action: np.ndarray):
    """Meta-World's step from a given state.

    Returns:
      ``(state words, observation [39], reward, success, tcp_to_target)``.
    """
    env = self.env(index)
    self._write(env, words, path_length)
    obs, reward, _, _, info = env.step(np.asarray(action, np.float64))
    if env._did_see_sim_exception:  # noqa: SLF001
      raise RuntimeError(
          f"{ENV_NAME} task {index}: MuJoCo's simulation became unstable at "
          f"step {path_length + 1}.")
    return (self._read(env), obs, float(reward), float(info["success"]),
            float(info["obj_to_target"]))


@functools.cache
def host_envs(task_values: tuple[tuple[float, ...], ...]) -> HostEnvs:
  """The process's host environments for these tasks (built once)."""
  return HostEnvs(task_values)


def _batched(fn, n_out):
  """Applies ``fn`` (one episode, NumPy) over the leading batch axes."""
  def run(index, *args):
    index = np.asarray(index)
    batch = index.shape
    flat_args = [np.asarray(a).reshape((-1,) + np.shape(a)[len(batch):])
                 for a in args]
    results = [fn(i, *(a[j] for a in flat_args))
               for j, i in enumerate(index.reshape(-1))]
    outs = []
    for k in range(n_out):
      stacked = np.stack([np.asarray(r[k]) for r in results]) if results else (
          np.zeros((0,)))
      outs.append(stacked.reshape(batch + stacked.shape[1:]))
    return tuple(outs)
  return run


def _reset_episode(host: HostEnvs, index):
  words, obs = host.reset(index)
  return words, obs.astype(np.float32)


def _step_episode(host: HostEnvs, index, words, path_length, action):
  return _as_float32(host.step(index, words, path_length, action))


@functools.cache
def batched_ops(task_values: tuple[tuple[float, ...], ...]):
  """``{"reset", "step"}`` -> the family's callbacks over batch axes, as
  run in this process or in each host worker."""
  host = host_envs(task_values)
  return {"reset": _batched(functools.partial(_reset_episode, host), 2),
          "step": _batched(functools.partial(_step_episode, host), 5)}


@functools.cache
def worker_pool(task_values: tuple[tuple[float, ...], ...]
                ) -> host_pool.HostPool:
  """The process's host workers for these tasks (started on first use;
  ``PDIFF_HOST_WORKERS`` sets how many, see ``pdiff.envs.host_pool``)."""
  return host_pool.HostPool(
      "metaworld_reach", functools.partial(batched_ops, task_values))


@dataclasses.dataclass(frozen=True, kw_only=True)
class MetaWorldReach(base.TaskFamily):
  """Meta-World reach (Sawyer arm to a hidden goal); see the module doc.

  ``pipeline_state`` is ``{"index": [] int32, "words": [W] uint32,
  "path": [] int32}``: the task, the raw state and Meta-World's step count.
  """

  metric_names: ClassVar[tuple[str, ...]] = ("success", "tcp_to_target")
  return_supremum: ClassVar[float | None] = MAX_REWARD * EPISODE_LENGTH
  # Host environments (and their worker pool) serve one rollout at a time.
  thread_safe_rollouts: ClassVar[bool] = False

  name: str = "metaworld_reach"
  backend: str = "mujoco"
  episode_length: int = EPISODE_LENGTH
  # pdiff.data.conditioning's rule on the scripted expert's data; the
  # target is capped by the largest possible return, 10 per step.
  return_target: float = 5000.0
  return_scale: float = 5000.0
  task_parameter_name: str = "object_and_goal"
  task_values: tuple[tuple[float, ...], ...] = task_table_field(
      "metaworld_reach", "values")
  train_tasks: tuple[int, ...] = task_table_field("metaworld_reach", "train")
  test_tasks: tuple[int, ...] = task_table_field("metaworld_reach", "test")

  def __post_init__(self):
    if self.backend not in METAWORLD_BACKENDS:
      raise ValueError(
          f"{self.name}: unknown backend {self.backend!r}; valid backends "
          f"are {METAWORLD_BACKENDS}.")
    if self.episode_length > EPISODE_LENGTH:
      raise ValueError(
          f"{self.name}: episode_length must be <= {EPISODE_LENGTH} "
          f"(Meta-World's max_path_length), got {self.episode_length}.")
    super().__post_init__()

  @property
  def observation_size(self) -> int:
    return OBSERVATION_SIZE

  @property
  def action_size(self) -> int:
    return ACTION_SIZE

  @property
  def host(self) -> HostEnvs:
    """The host environments (imports Meta-World on first use)."""
    return host_envs(self.task_values)

  def scripted_behavior(self):
    """``(policy, description)`` of the behaviour policy that collects this
    family's expert and medium data: Meta-World's scripted expert."""
    metaworld, _ = import_metaworld()
    version = getattr(metaworld, "__version__", None) or _version("metaworld")
    return (scripted_policy(),
            f"Meta-World {version} scripted SawyerReachV3Policy")

  def reset_physics(self, key):
    raise NotImplementedError(
        f"{self.name}: the first state depends on the task; use reset(key, "
        f"task).")

  def reset(self, key: jax.Array, task: base.Task) -> base.EnvState:
    """Starts an episode of ``task``; Meta-World's reset is deterministic
    given the task, so ``key`` is unused."""
    del key
    host = self.host
    words, obs = jax.pure_callback(
        worker_pool(self.task_values).callback("reset"),
        (jax.ShapeDtypeStruct((host.state_words,), jnp.uint32),
         jax.ShapeDtypeStruct((OBSERVATION_SIZE,), jnp.float32)),
        task.index, vmap_method="broadcast_all")
    zero = jnp.zeros((), jnp.float32)
    return base.EnvState(
        obs=obs, reward=zero, done=zero,
        truncation=zero, step=jnp.zeros((), jnp.int32), task=task,
        pipeline_state=dict(index=jnp.asarray(task.index, jnp.int32),
                            words=words, path=jnp.zeros((), jnp.int32)),
        metrics={name: zero for name in self.metric_names})

  def transition(self, pipeline_state, obs, action, params):
    del obs, params  # the state and the task live in pipeline_state
    host = self.host
    f32 = jnp.float32
    words, new_obs, reward, success, distance = jax.pure_callback(
        worker_pool(self.task_values).callback("step"),
        (jax.ShapeDtypeStruct((host.state_words,), jnp.uint32),
         jax.ShapeDtypeStruct((OBSERVATION_SIZE,), f32),
         jax.ShapeDtypeStruct((), f32), jax.ShapeDtypeStruct((), f32),
         jax.ShapeDtypeStruct((), f32)),
        pipeline_state["index"], pipeline_state["words"],
        pipeline_state["path"], action, vmap_method="broadcast_all")
    new_state = dict(index=pipeline_state["index"], words=words,
                     path=pipeline_state["path"] + 1)
    metrics = {"success": success, "tcp_to_target": distance}
    return new_state, new_obs, reward, jnp.zeros((), bool), metrics


def _as_float32(result):
  words, obs, reward, success, distance = result
  return (words, np.asarray(obs, np.float32), np.float32(reward),
          np.float32(success), np.float32(distance))


def scripted_policy():
  """Meta-World's scripted reach expert as a pdiff behaviour policy.

  Returns ``policy(obs_with_task [B, 39 + 6], key) -> actions [B, 4]``: the
  goal, hidden in the observation, is read from the task parameters and
  written where Meta-World's ``SawyerReachV3Policy`` expects it. The policy
  is deterministic; collection adds the action noise.
  """
  import_metaworld()
  from metaworld.policies.sawyer_reach_v3_policy import (  # noqa: PLC0415
      SawyerReachV3Policy,
  )
  expert = SawyerReachV3Policy()

  def act(obs_with_task):
    obs = np.array(obs_with_task[..., :OBSERVATION_SIZE], np.float64)
    obs[..., -3:] = obs_with_task[..., OBSERVATION_SIZE + 3:]
    flat = obs.reshape(-1, OBSERVATION_SIZE)
    actions = np.stack([expert.get_action(o) for o in flat])
    return np.clip(actions, -1.0, 1.0).astype(np.float32).reshape(
        obs.shape[:-1] + (ACTION_SIZE,))

  def policy(obs_with_task: jax.Array, key: jax.Array) -> jax.Array:
    del key
    shape = jax.ShapeDtypeStruct(obs_with_task.shape[:-1] + (ACTION_SIZE,),
                                 jnp.float32)
    return jax.pure_callback(act, shape, obs_with_task,
                             vmap_method="broadcast_all")

  return policy


def _version(package: str) -> str:
  from importlib import metadata  # noqa: PLC0415
  return metadata.version(package)


def metaworld_available() -> bool:
  """Whether the ``metaworld`` extra is installed."""
  try:
    import_metaworld()
  except ImportError:
    return False
  return True
