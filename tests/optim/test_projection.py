"""Tests for pdiff.optim.projection, against a float64 NumPy reference."""

import doctest
import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from absl.testing import parameterized
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from pdiff.optim import ProjectConflictingState, project_conflicting
from pdiff.optim import projection as projection_module

_DOCS = pathlib.Path(__file__).resolve().parents[2] / "docs" / "projection.md"
_SHAPES = {"b": (3,), "w": (4, 3)}


class ReferenceProjection:
  """Float64 NumPy version of the transform, written from the equations.

  The basis is read off an SVD of the memory (rows scaled to unit norm, zero
  rows left out), keeping right singular vectors with sigma > rtol sigma_max.
  """

  def __init__(self, scale, num_bases, per_leaf=False, rtol=1e-2):
    self.scale, self.num_bases = scale, num_bases
    self.per_leaf, self.rtol = per_leaf, rtol
    self.history = []  # the last num_bases primary gradients, oldest first

  def basis(self, rows):
    """Orthonormal basis of the dominant span of rows, one vector a row."""
    rows = np.stack(rows)
    norms = np.linalg.norm(rows, axis=1)
    rows = rows[norms > 0] / norms[norms > 0, None]
    if not len(rows):
      return np.zeros((0, rows.shape[1]))
    _, sigma, vt = np.linalg.svd(rows, full_matrices=False)
    return vt[sigma > self.rtol * sigma[0]]

  def combine(self, g_dm, g_dt, rows):
    if g_dm @ g_dt < 0:
      b = self.basis(rows)
      g_dt = g_dt - b.T @ (b @ g_dt)
    return g_dm + self.scale * g_dt

  def update(self, g_dm, g_dt):
    """Both arguments are dicts of arrays; returns the combined dict."""
    g_dm = {k: np.asarray(v, np.float64) for k, v in g_dm.items()}
    g_dt = {k: np.asarray(v, np.float64) for k, v in g_dt.items()}
    self.history = (self.history + [g_dm])[-self.num_bases :]
    keys = sorted(g_dm)
    if self.per_leaf:
      return {
          k: self.combine(
              g_dm[k].ravel(), g_dt[k].ravel(), [h[k].ravel() for h in self.history]
          ).reshape(g_dm[k].shape)
          for k in keys
      }
    flat = lambda tree: np.concatenate([tree[k].ravel() for k in keys])
    out = self.combine(flat(g_dm), flat(g_dt), [flat(h) for h in self.history])
    sizes = np.cumsum([g_dm[k].size for k in keys])[:-1]
    return {
        k: part.reshape(g_dm[k].shape)
        for k, part in zip(keys, np.split(out, sizes), strict=True)
    }


def random_tree(rng, shapes=None, dtype=np.float32):
  shapes = _SHAPES if shapes is None else shapes
  return {k: rng.normal(size=s).astype(dtype) for k, s in shapes.items()}


def to_jax(tree, dtype=jnp.float32):
  return {k: jnp.asarray(v, dtype) for k, v in tree.items()}


def flat(tree):
  return np.concatenate([np.asarray(tree[k], np.float64).ravel() for k in sorted(tree)])


def guidance_for(rng, g_dm, conflict, per_leaf=False):
  """A random guidance gradient whose dot product with g_dm has a given sign.

  With per_leaf, every leaf's dot product has that sign (so the whole one
  does too); otherwise only the whole gradient's is set.
  """
  g_dt = random_tree(rng, {k: np.shape(v) for k, v in g_dm.items()})
  sign = -1.0 if conflict else 1.0
  groups = [[k] for k in g_dm] if per_leaf else [list(g_dm)]
  for keys in groups:
    u = np.concatenate([np.ravel(g_dm[k]) for k in keys]).astype(np.float64)
    d = np.concatenate([np.ravel(g_dt[k]) for k in keys]).astype(np.float64)
    shift = (sign * (abs(u @ d) + 1.0) - u @ d) / (u @ u)
    for k in keys:
      g_dt[k] = (g_dt[k] + shift * np.asarray(g_dm[k])).astype(np.float32)
  return g_dt


def as_f64(tree):
  return {k: np.asarray(v, np.float64) for k, v in tree.items()}


def assert_trees_close(actual, expected, atol=1e-5):
  for k in expected:
    np.testing.assert_allclose(
        np.asarray(actual[k], np.float64), expected[k], atol=atol, rtol=1e-5
    )


class ProjectConflictingTest(parameterized.TestCase):

  @parameterized.parameters(
      (1, False, 0.5), (3, False, 2.0), (1, True, 2.0), (3, True, 0.5)
  )
  def test_matches_reference(self, num_bases, per_leaf, scale):
    rng = np.random.default_rng(0)
    tx = project_conflicting(scale, num_bases, per_leaf=per_leaf)
    reference = ReferenceProjection(scale, num_bases, per_leaf)
    state = tx.init(to_jax(random_tree(rng)))
    for step in range(5):
      g_dm = random_tree(rng)
      g_dt = guidance_for(rng, g_dm, conflict=step % 2 == 0)
      updates, state = tx.update(to_jax(g_dm), state, guidance=to_jax(g_dt))
      assert_trees_close(updates, reference.update(g_dm, g_dt))

  @parameterized.product(num_bases=[2, 4], per_leaf=[False, True])
  def test_projected_part_is_orthogonal_to_every_basis(self, num_bases, per_leaf):
    rng = np.random.default_rng(1)
    tx = project_conflicting(1.0, num_bases, per_leaf=per_leaf)
    state = tx.init(to_jax(random_tree(rng)))
    history = []
    for _ in range(num_bases + 1):
      g_dm = random_tree(rng)
      history.append(g_dm)
      g_dt = guidance_for(rng, g_dm, conflict=True, per_leaf=per_leaf)
      updates, state = tx.update(to_jax(g_dm), state, guidance=to_jax(g_dt))
    added = {k: v - g_dm[k] for k, v in as_f64(updates).items()}
    groups = [[k] for k in sorted(g_dm)] if per_leaf else [sorted(g_dm)]
    for keys in groups:
      part = lambda tree, keys=keys: np.concatenate([tree[k].ravel() for k in keys])
      for past in history[-num_bases:]:  # the memory: these bases span it
        scale = np.linalg.norm(part(g_dt)) * np.linalg.norm(part(past))
        self.assertLess(abs(part(added) @ part(past)), 1e-5 * scale)
      # Only the span of the memory was removed: the rest of g_dt is intact.
      removed = part(g_dt) - part(added)
      rows = np.stack([part(h) for h in history[-num_bases:]])
      coeffs, *_ = np.linalg.lstsq(rows.T, removed, rcond=None)
      np.testing.assert_allclose(rows.T @ coeffs, removed, atol=1e-5)

  @parameterized.parameters((False, 0.0), (False, 0.3), (True, 1.0))
  def test_no_conflict_passes_guidance_through(self, per_leaf, scale):
    rng = np.random.default_rng(2)
    g_dm = random_tree(rng)
    # Each leaf's guidance agrees with the primary gradient: no conflict at all.
    g_dt = {k: (0.5 * v + 0.1 * rng.normal(size=v.shape)).astype(np.float32)
            for k, v in g_dm.items()}
    for k in g_dm:
      self.assertGreater(float(g_dm[k].ravel() @ g_dt[k].ravel()), 0.0)
    tx = project_conflicting(scale, 2, per_leaf=per_leaf)
    updates, _ = tx.update(to_jax(g_dm), tx.init(to_jax(g_dm)), guidance=to_jax(g_dt))
    assert_trees_close(updates, {k: g_dm[k] + scale * g_dt[k] for k in g_dm})

  @parameterized.parameters(0.0, 0.25, 3.0)
  def test_guidance_scale_scales_the_added_part(self, scale):
    rng = np.random.default_rng(3)
    g_dm = random_tree(rng)
    g_dt = guidance_for(rng, g_dm, conflict=True)
    outputs = []
    for s in (1.0, scale):
      tx = project_conflicting(s, 1)
      updates, _ = tx.update(
          to_jax(g_dm), tx.init(to_jax(g_dm)), guidance=to_jax(g_dt)
      )
      outputs.append({k: v - g_dm[k] for k, v in as_f64(updates).items()})
    assert_trees_close(outputs[1], {k: scale * v for k, v in outputs[0].items()})

  @parameterized.parameters(False, True)
  def test_single_basis_is_pcgrad(self, per_leaf):
    rng = np.random.default_rng(4)
    tx = project_conflicting(1.0, 1, per_leaf=per_leaf)
    state = tx.init(to_jax(random_tree(rng)))
    for _ in range(3):
      g_dm = random_tree(rng)
      g_dt = guidance_for(rng, g_dm, conflict=True)
      g_dt["b"] = -g_dt["b"]  # leaves may disagree on whether they conflict
      updates, state = tx.update(to_jax(g_dm), state, guidance=to_jax(g_dt))
    if per_leaf:
      expected = {}
      for k in g_dm:
        u, g = g_dm[k].astype(np.float64), g_dt[k].astype(np.float64)
        dot = np.sum(u * g)
        expected[k] = u + (g - dot / np.sum(u * u) * u if dot < 0 else g)
    else:
      u, g = flat(g_dm), flat(g_dt)
      coeff = (g @ u) / (u @ u) if g @ u < 0 else 0.0
      expected = {k: g_dm[k] + g_dt[k] - coeff * g_dm[k] for k in g_dm}
    assert_trees_close(updates, expected)

  @parameterized.named_parameters(
      ("zero_primary", lambda g: 0.0 * g, lambda g: -g + 1.0, 2),
      ("zero_guidance", lambda g: g, lambda g: 0.0 * g, 2),
      ("opposite", lambda g: g, lambda g: -3.0 * g, 2),
      ("opposite_tiny", lambda g: 1e-20 * g, lambda g: -1e-20 * g, 2),
      ("opposite_repeated", lambda g: g, lambda g: -3.0 * g, 4),
  )
  def test_degenerate_gradients_stay_finite(self, primary_fn, guidance_fn, num_bases):
    rng = np.random.default_rng(5)
    base = random_tree(rng)
    g_dm = {k: primary_fn(v).astype(np.float32) for k, v in base.items()}
    g_dt = {k: guidance_fn(v).astype(np.float32) for k, v in base.items()}
    for per_leaf in (False, True):
      tx = project_conflicting(1.0, num_bases, per_leaf=per_leaf)
      state = tx.init(to_jax(g_dm))
      step_fn = jax.jit(lambda u, s, d, tx=tx: tx.update(u, s, guidance=d))
      reference = ReferenceProjection(1.0, num_bases, per_leaf)
      for _ in range(num_bases + 1):  # the same gradient fills the memory
        updates, state = step_fn(to_jax(g_dm), state, to_jax(g_dt))
        expected = reference.update(g_dm, g_dt)
        for k in g_dm:
          self.assertTrue(np.all(np.isfinite(np.asarray(updates[k]))))
          np.testing.assert_allclose(updates[k], expected[k], atol=1e-5, rtol=1e-5)

  @parameterized.parameters(False, True)
  def test_nearly_parallel_memory_is_projected_accurately(self, per_leaf):
    # Successive gradients at cosine ~0.999: the Gram matrix is ill-conditioned.
    rng = np.random.default_rng(12)
    shapes = {"b": (40,), "w": (30, 20)}
    base = random_tree(rng, shapes)
    tx = project_conflicting(1.0, 4, per_leaf=per_leaf)
    state = tx.init(to_jax(base))
    step_fn = jax.jit(lambda u, s, d: tx.update(u, s, guidance=d))
    reference = ReferenceProjection(1.0, 4, per_leaf)
    for _ in range(6):
      noise = random_tree(rng, shapes)
      g_dm = {k: (base[k] + 0.03 * noise[k]).astype(np.float32) for k in base}
      g_dt = guidance_for(rng, g_dm, conflict=True, per_leaf=per_leaf)
      updates, state = step_fn(to_jax(g_dm), state, to_jax(g_dt))
      assert_trees_close(updates, reference.update(g_dm, g_dt))

  def test_memory_is_a_ring_buffer(self):
    params = {"w": jnp.zeros((2, 3))}
    tx = project_conflicting(1.0, 3)
    state = tx.init(params)
    self.assertIsInstance(state, ProjectConflictingState)
    self.assertEqual(state.memory["w"].shape, (3, 2, 3))
    np.testing.assert_array_equal(state.memory["w"], 0.0)
    gradients = [jnp.full((2, 3), step + 1.0) for step in range(5)]
    for step, g in enumerate(gradients):
      _, state = tx.update({"w": g}, state, guidance={"w": g})
      self.assertEqual(int(state.count), step + 1)
      np.testing.assert_array_equal(state.memory["w"][step % 3], g)
      for slot in range(step + 1, 3):  # not written yet
        np.testing.assert_array_equal(state.memory["w"][slot], 0.0)
      rows = np.asarray(state.memory["w"], np.float64).reshape(3, -1)
      np.testing.assert_allclose(state.gram[0], rows @ rows.T, rtol=1e-6)
    # Slot t % 3 holds step t's gradient: the last three, oldest overwritten.
    for slot, step in enumerate([3, 4, 2]):
      np.testing.assert_array_equal(state.memory["w"][slot], gradients[step])

  def test_per_leaf_tests_each_leaf_for_conflict(self):
    # Leaf "a" conflicts, leaf "b" agrees strongly: the whole gradient agrees.
    g_dm = {"a": np.array([1.0, 0.0], np.float32), "b": np.array([1.0], np.float32)}
    g_dt = {"a": np.array([-1.0, 1.0], np.float32), "b": np.array([5.0], np.float32)}
    self.assertGreater(flat(g_dm) @ flat(g_dt), 0.0)
    self.assertLess(g_dm["a"] @ g_dt["a"], 0.0)
    outputs = {}
    for per_leaf in (False, True):
      tx = project_conflicting(1.0, 1, per_leaf=per_leaf)
      outputs[per_leaf], _ = tx.update(
          to_jax(g_dm), tx.init(to_jax(g_dm)), guidance=to_jax(g_dt)
      )
    assert_trees_close(outputs[False], {k: g_dm[k] + g_dt[k] for k in g_dm})
    u, g = g_dm["a"], g_dt["a"]
    expected_a = u + g - (g @ u) / (u @ u) * u
    assert_trees_close(outputs[True], {"a": expected_a, "b": g_dm["b"] + g_dt["b"]})

  @parameterized.parameters(False, True)
  def test_jit_matches_eager(self, per_leaf):
    rng = np.random.default_rng(6)
    tx = project_conflicting(0.7, 2, per_leaf=per_leaf)
    eager_state = jit_state = tx.init(to_jax(random_tree(rng)))
    jit_update = jax.jit(lambda u, s, d: tx.update(u, s, guidance=d))
    for step in range(4):
      g_dm = to_jax(random_tree(rng))
      g_dt = to_jax(guidance_for(rng, g_dm, conflict=step % 2 == 1))
      eager, eager_state = tx.update(g_dm, eager_state, guidance=g_dt)
      jitted, jit_state = jit_update(g_dm, jit_state, g_dt)
      assert_trees_close(jitted, as_f64(eager))
    np.testing.assert_array_equal(jit_state.memory["w"], eager_state.memory["w"])

  def test_vmap_over_independent_runs_matches_a_loop(self):
    rng = np.random.default_rng(13)
    tx = project_conflicting(1.0, 2)
    runs = 3
    stack = lambda trees: jax.tree.map(lambda *x: jnp.stack(x), *trees)
    states = stack([tx.init(to_jax(random_tree(rng))) for _ in range(runs)])
    step_fn = jax.jit(jax.vmap(lambda u, s, d: tx.update(u, s, guidance=d)))
    references = [ReferenceProjection(1.0, 2) for _ in range(runs)]
    for _ in range(3):
      g_dm = [random_tree(rng) for _ in range(runs)]
      g_dt = [guidance_for(rng, g, conflict=True) for g in g_dm]
      updates, states = step_fn(
          stack(map(to_jax, g_dm)), states, stack(map(to_jax, g_dt))
      )
      for r in range(runs):
        expected = references[r].update(g_dm[r], g_dt[r])
        assert_trees_close({k: v[r] for k, v in updates.items()}, expected)

  def test_chain_with_adamw_and_extra_arguments(self):
    rng = np.random.default_rng(7)
    params = to_jax(random_tree(rng))
    tx = optax.chain(project_conflicting(1.0, 2), optax.adamw(1e-2))
    adamw = optax.adamw(1e-2)
    reference = ReferenceProjection(1.0, 2)
    state, adamw_state = tx.init(params), adamw.init(params)
    step_fn = jax.jit(
        lambda u, s, p, d: tx.update(u, s, p, guidance=d, unrelated_argument=3)
    )
    for step in range(3):
      g_dm = random_tree(rng)
      g_dt = guidance_for(rng, g_dm, conflict=step != 1)
      updates, state = step_fn(to_jax(g_dm), state, params, to_jax(g_dt))
      combined = to_jax(reference.update(g_dm, g_dt))
      expected, adamw_state = adamw.update(combined, adamw_state, params)
      assert_trees_close(updates, as_f64(expected))
      params = optax.apply_updates(params, updates)

  def test_inside_multi_steps(self):
    rng = np.random.default_rng(8)
    params = to_jax(random_tree(rng))
    inner = optax.chain(project_conflicting(1.0, 2), optax.sgd(1.0))
    tx = optax.MultiSteps(inner, every_k_schedule=2)
    state = tx.init(params)
    step_fn = jax.jit(lambda u, s, p, d: tx.update(u, s, p, guidance=d))
    reference = ReferenceProjection(1.0, 2)
    for _ in range(2):
      g1, g2 = random_tree(rng), random_tree(rng)
      d1 = guidance_for(rng, g1, conflict=True)
      mean = {k: (g1[k] + g2[k]) / 2 for k in g1}
      d2 = guidance_for(rng, mean, conflict=True)
      updates, state = step_fn(to_jax(g1), state, params, to_jax(d1))
      for v in updates.values():
        np.testing.assert_array_equal(v, 0.0)
      updates, state = step_fn(to_jax(g2), state, params, to_jax(d2))
      # The accumulated primary gradient meets the last mini-step's guidance.
      expected = reference.update(mean, d2)
      assert_trees_close(updates, {k: -v for k, v in expected.items()})
    projection_state = state.inner_opt_state[0]
    self.assertEqual(int(projection_state.count), 2)  # one per applied update

  def test_inject_hyperparams(self):
    rng = np.random.default_rng(9)
    params = to_jax(random_tree(rng))
    tx = optax.inject_hyperparams(project_conflicting)(guidance_scale=1.0, num_bases=2)
    state = tx.init(params)
    state.hyperparams["guidance_scale"] = jnp.asarray(0.25)
    step_fn = jax.jit(lambda u, s, d: tx.update(u, s, guidance=d))
    reference = ReferenceProjection(0.25, 2)
    for _ in range(3):
      g_dm = random_tree(rng)
      g_dt = guidance_for(rng, g_dm, conflict=True)
      updates, state = step_fn(to_jax(g_dm), state, to_jax(g_dt))
      assert_trees_close(updates, reference.update(g_dm, g_dt))

  @parameterized.parameters(False, True)
  def test_bfloat16_and_float32_leaves(self, per_leaf):
    rng = np.random.default_rng(10)
    dtypes = {"b": jnp.bfloat16, "w": jnp.float32}
    cast = lambda tree: {k: jnp.asarray(v, dtypes[k]) for k, v in tree.items()}
    tx = project_conflicting(1.0, 2, per_leaf=per_leaf)
    state = tx.init(cast(random_tree(rng)))
    self.assertEqual(state.memory["b"].dtype, jnp.float32)
    reference = ReferenceProjection(1.0, 2, per_leaf)
    step_fn = jax.jit(lambda u, s, d: tx.update(u, s, guidance=d))
    for _ in range(3):
      g_dm, g_dt = cast(random_tree(rng)), cast(random_tree(rng))
      updates, state = step_fn(g_dm, state, g_dt)
      # The reference sees the same (rounded) inputs, in float64.
      expected = reference.update(as_f64(g_dm), as_f64(g_dt))
      for k in dtypes:
        self.assertEqual(updates[k].dtype, dtypes[k])
      np.testing.assert_allclose(updates["w"], expected["w"], atol=1e-5, rtol=1e-5)
      np.testing.assert_allclose(
          np.asarray(updates["b"], np.float64), expected["b"], atol=3e-2, rtol=1e-2
      )

  @parameterized.parameters(False, True)
  def test_sharded_over_eight_devices_matches_unsharded(self, per_leaf):
    devices = jax.devices()
    self.assertGreaterEqual(len(devices), 8, "tests/conftest.py forces 8 devices")
    mesh = Mesh(np.array(devices[:8]), ("model",))
    specs = {"w": P("model", None), "b": P("model"), "c": P()}
    shapes = {"w": (16, 4), "b": (8,), "c": (3,)}
    shard = lambda tree: {
        k: jax.device_put(v, NamedSharding(mesh, specs[k])) for k, v in tree.items()
    }
    rng = np.random.default_rng(11)
    params = to_jax(random_tree(rng, shapes))
    tx = optax.chain(project_conflicting(1.0, 3, per_leaf=per_leaf), optax.sgd(0.1))
    step_fn = jax.jit(lambda u, s, p, d: tx.update(u, s, p, guidance=d))
    state, sharded_state = tx.init(params), tx.init(shard(params))
    for step in range(4):
      g_dm = to_jax(random_tree(rng, shapes))
      g_dt = to_jax(random_tree(rng, shapes))
      if step % 2 == 0:  # make the whole gradient conflict on these steps
        g_dt = jax.tree.map(lambda d, g: d - 3.0 * g, g_dt, g_dm)
      updates, state = step_fn(g_dm, state, params, g_dt)
      sharded, sharded_state = step_fn(
          shard(g_dm), sharded_state, shard(params), shard(g_dt)
      )
      for k in shapes:
        self.assertTrue(
            sharded[k].sharding.is_equivalent_to(
                NamedSharding(mesh, specs[k]), len(shapes[k])
            )
        )
        np.testing.assert_allclose(sharded[k], updates[k], atol=1e-6, rtol=1e-5)
    memory = sharded_state[0].memory["w"]
    self.assertEqual(memory.shape, (3, 16, 4))
    self.assertTrue(
        memory.sharding.is_equivalent_to(NamedSharding(mesh, P(None, "model")), 3)
    )
    np.testing.assert_array_equal(memory, state[0].memory["w"])

  @parameterized.named_parameters(
      ("negative_scale", dict(guidance_scale=-0.1), "guidance_scale"),
      ("nan_scale", dict(guidance_scale=float("nan")), "guidance_scale"),
      ("vector_scale", dict(guidance_scale=np.ones(2)), "guidance_scale"),
      ("zero_bases", dict(num_bases=0), "num_bases"),
      ("fractional_bases", dict(num_bases=1.5), "num_bases"),
      ("bool_bases", dict(num_bases=True), "num_bases"),
      ("zero_rtol", dict(rtol=0.0), "rtol"),
      ("one_rtol", dict(rtol=1.0), "rtol"),
      ("string_rtol", dict(rtol="small"), "rtol"),
  )
  def test_bad_hyperparameters_raise_eagerly(self, kwargs, field):
    with pytest.raises(ValueError, match=field):
      project_conflicting(**kwargs)

  def test_bad_update_arguments_raise(self):
    params = {"b": jnp.zeros(3), "w": jnp.zeros((4, 3))}
    tx = project_conflicting()
    state = tx.init(params)
    with pytest.raises(TypeError, match="guidance"):
      tx.update(params, state, params)
    with pytest.raises(ValueError, match="structure"):
      tx.update(params, state, guidance={"b": jnp.zeros(3)})
    with pytest.raises(ValueError, match=r"\['w'\].*\(4, 3\)"):
      tx.update(params, state, guidance={"b": jnp.zeros(3), "w": jnp.zeros(12)})
    with pytest.raises(ValueError, match="init"):
      tx.update({"b": jnp.zeros(3)}, state, guidance={"b": jnp.zeros(3)})
    other_state = project_conflicting(num_bases=2).init(params)
    with pytest.raises(ValueError, match="num_bases"):
      tx.update(params, other_state, guidance=params)


  @parameterized.product(
      num_bases=[1, 3],
      per_leaf=[False, True],
      case=["agree", "conflict", "mixed", "parallel"],
  )
  def test_every_branch_matches_reference(self, num_bases, per_leaf, case):
    # With M > 1 the update takes one of three branches: nothing conflicts
    # (the memory is not read), a single projection pass, or two passes for
    # an ill-conditioned memory ("parallel"). Jitted, each must agree with the
    # reference, and so must the memory it writes in the end.
    rng = np.random.default_rng(14)
    shapes = {"b": (24,), "w": (6, 16)}
    base = random_tree(rng, shapes)
    tx = project_conflicting(0.5, num_bases, per_leaf=per_leaf)
    state = tx.init(to_jax(base))
    step_fn = jax.jit(lambda u, s, d: tx.update(u, s, guidance=d))
    reference = ReferenceProjection(0.5, num_bases, per_leaf)
    history = []
    for _ in range(num_bases + 2):
      noise = random_tree(rng, shapes)
      if case == "parallel":
        g_dm = {k: (base[k] + 0.03 * noise[k]).astype(np.float32) for k in base}
      else:
        g_dm = noise
      history.append(g_dm)
      if case == "mixed":  # leaf "w" conflicts, leaf "b" agrees
        g_dt = guidance_for(rng, g_dm, conflict=True, per_leaf=True)
        g_dt["b"] = (g_dm["b"] + 0.1 * rng.normal(size=24)).astype(np.float32)
      else:
        g_dt = guidance_for(rng, g_dm, conflict=case != "agree", per_leaf=True)
      updates, state = step_fn(to_jax(g_dm), state, to_jax(g_dt))
      assert_trees_close(updates, reference.update(g_dm, g_dt))
    if num_bases == 1:  # the basis is the current gradient: nothing is kept
      for k in shapes:
        self.assertEqual(state.memory[k].shape, (0, *shapes[k]))
    for step_index, g_dm in enumerate(history):
      if num_bases > 1 and step_index >= len(history) - num_bases:
        for k in shapes:  # still in the ring buffer
          np.testing.assert_array_equal(
              state.memory[k][step_index % num_bases], g_dm[k]
          )

  @parameterized.parameters(False, True)
  def test_donated_memory_is_updated_in_place(self, per_leaf):
    # With the state donated, the ring-buffer write reuses the memory's
    # buffer: no temporary as large as the memory, and the same results as
    # without donation.
    rng = np.random.default_rng(15)
    shapes = {"b": (64,), "w": (128, 64)}
    tx = project_conflicting(1.0, 4, per_leaf=per_leaf)

    def step(state, g_dm, g_dt):
      updates, state = tx.update(g_dm, state, guidance=g_dt)
      return state, updates

    donated = jax.jit(step, donate_argnums=0)
    kept = jax.jit(step)
    params = to_jax(random_tree(rng, shapes))
    state = tx.init(params)
    memory_bytes = sum(x.nbytes for x in jax.tree.leaves(state.memory))
    analysis = donated.lower(state, params, params).compile().memory_analysis()
    self.assertLess(analysis.temp_size_in_bytes, memory_bytes / 2)
    donated_state, kept_state = tx.init(params), tx.init(params)
    for step_index in range(6):
      g_dm = to_jax(random_tree(rng, shapes))
      g_dt = to_jax(guidance_for(rng, g_dm, conflict=step_index % 3 != 2))
      donated_state, donated_updates = donated(donated_state, g_dm, g_dt)
      kept_state, kept_updates = kept(kept_state, g_dm, g_dt)
      for k in shapes:
        np.testing.assert_array_equal(donated_updates[k], kept_updates[k])
        np.testing.assert_array_equal(donated_state.memory[k], kept_state.memory[k])

def test_docstring_example_runs():
  results = doctest.testmod(projection_module)
  assert results.attempted > 0
  assert results.failed == 0


def test_user_guide_example_runs():
  text = _DOCS.read_text()
  blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
  assert blocks, f"no python code block in {_DOCS}"
  namespace = {}
  for block in blocks:
    exec(compile(block, str(_DOCS), "exec"), namespace)  # noqa: S102
  # The guide trains a model with the two losses combined; it must learn.
  assert namespace["final_loss"] < namespace["initial_loss"]
