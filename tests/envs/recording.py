"""One compiled function per Brax family that records what the tests check.

Brax compiles are slow on a CPU, so each test module compiles a single
``record`` function and its tests read different parts of the recording.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from pdiff import envs


def make_recorder(family: envs.BraxTaskFamily, *, with_loop: bool = False):
  """Returns ``jit(record)``; see ``record`` for what it returns.

  Args:
    family: a Brax task family.
    with_loop: also play the same episodes one at a time with ``lax.map``
      (a sequential loop), to compare with the vmapped rollout.
  """
  height_index = family.num_hidden_positions  # q[height_index] = root z

  def episode(key, task, actions, height_offset):
    """One episode from ``reset(key, task)`` with the root raised/lowered."""
    state = family.reset(key, task)
    brax_obs = family.brax_env.reset(key).obs  # Brax's own observation
    reset_obs = state.obs
    pipeline_state = state.pipeline_state
    q = pipeline_state.q.at[height_index].add(height_offset)
    pipeline_state = family.brax_env.pipeline_init(q, pipeline_state.qd)
    state = state.replace(
        pipeline_state=pipeline_state, obs=family.observe(pipeline_state)
    )

    def body(state, action):
      state = family.step(state, action)
      record = {
          "obs": state.obs,
          "reward": state.reward,
          "done": state.done,
          "truncation": state.truncation,
          "step": state.step,
          "torso": state.pipeline_state.x.pos[0],  # [3]
          "q": state.pipeline_state.q,
          "qd": state.pipeline_state.qd,
      }
      return state, record

    _, steps = jax.lax.scan(body, state, actions)
    return {
        "brax_reset_obs": brax_obs,
        "reset_obs": reset_obs,
        "initial_torso": state.pipeline_state.x.pos[0],  # [3]
        "initial_obs": state.obs,
        "steps": steps,
    }

  def record(keys, task_indices, actions, height_offsets):
    """Plays episodes; every argument has a leading batch axis ``B``.

    Args:
      keys: ``[B]`` reset keys.
      task_indices: ``[B]`` task indices.
      actions: ``[B, T, da]`` actions.
      height_offsets: ``[B]`` added to the root height after reset.

    Returns:
      A dict of arrays with leading axis ``B`` (``steps`` entries ``[B, T]``
      first), plus ``loop``, the same from ``lax.map``, if requested.
    """
    tasks = family.tasks(task_indices)
    out = jax.vmap(episode)(keys, tasks, actions, height_offsets)
    if with_loop:
      out["loop"] = jax.lax.map(
          lambda args: episode(*args), (keys, tasks, actions, height_offsets)
      )
    return out

  return jax.jit(record)


def random_actions(seed: int, batch: int, steps: int, size: int) -> np.ndarray:
  """Uniform actions in [-1, 1], ``[batch, steps, size]`` float32."""
  rng = np.random.default_rng(seed)
  return rng.uniform(-1.0, 1.0, (batch, steps, size)).astype(np.float32)


def to_numpy(tree):
  return jax.tree.map(np.asarray, tree)


def keys_from_seeds(seeds) -> jax.Array:
  return jnp.stack([jax.random.key(s) for s in seeds])
