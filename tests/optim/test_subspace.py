"""Tests for pdiff.optim.subspace: its fast paths against the direct formulas."""

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import parameterized

from pdiff.optim import subspace

# Leaf shapes whose last axis is split in runs of 16, 8 or 4, or not at all.
_SHAPES = [(), (0,), (3,), (16,), (48,), (24,), (12,), (7, 5), (4, 64), (2, 3, 40)]


def _f64(x):
  return np.asarray(x, np.float64)


def _updated(memory, current, slot):
  """The memory after the ring-buffer write, in float64."""
  memory = _f64(memory).copy()
  memory[slot] = _f64(current)
  return memory


def _weights_by_eigh(gram, filled, rtol):
  """projector_weights with an eigendecomposition for every M."""
  dtype = gram.dtype
  sq_norms = jnp.diagonal(gram, axis1=-2, axis2=-1)
  valid = filled & (sq_norms > jnp.finfo(dtype).tiny)
  inv_norms = jnp.where(valid, jax.lax.rsqrt(jnp.where(valid, sq_norms, 1.0)), 0.0)
  normalised = gram * inv_norms[..., :, None] * inv_norms[..., None, :]
  eigvals, eigvecs = jnp.linalg.eigh(normalised)
  largest = jnp.maximum(eigvals[..., -1:], 1.0)
  floor = jnp.maximum(jnp.asarray(rtol, dtype) ** 2, jnp.finfo(dtype).eps)
  keep = eigvals > floor * largest
  inv_eigvals = jnp.where(keep, 1.0 / jnp.where(keep, eigvals, 1.0), 0.0)
  scaled = eigvecs * inv_norms[..., :, None]
  weights = jnp.einsum(
      "...ik,...k,...jk->...ij", scaled, inv_eigvals, scaled,
      precision=subspace.PRECISION,
  )
  ill_conditioned = jnp.any(keep & (eigvals < subspace.REFINE_BELOW * largest))
  return weights, ill_conditioned


class InnerProductsTest(parameterized.TestCase):

  @parameterized.parameters(*_SHAPES)
  def test_matches_vdot(self, *shape):
    rng = np.random.default_rng(0)
    a, b, c = (jnp.asarray(rng.normal(size=shape), jnp.float32) for _ in range(3))
    pairs = [(a, b), (a, a), (c, b)]
    values = jax.jit(
        lambda a, b, c: subspace.inner_products([(a, b), (a, a), (c, b)])
    )(a, b, c)
    self.assertLen(values, len(pairs))
    for value, (x, y) in zip(values, pairs, strict=True):
      self.assertEqual(value.shape, ())
      self.assertEqual(value.dtype, jnp.float32)
      expected = np.vdot(_f64(x), _f64(y))
      scale = np.linalg.norm(_f64(x)) * np.linalg.norm(_f64(y))
      np.testing.assert_allclose(value, expected, rtol=1e-6, atol=1e-6 * scale)

  def test_vmap_matches_a_loop(self):
    rng = np.random.default_rng(1)
    a, b = (jnp.asarray(rng.normal(size=(3, 8, 32)), jnp.float32) for _ in range(2))
    batched = jax.jit(jax.vmap(lambda a, b: subspace.inner_products([(a, b)])[0]))
    np.testing.assert_allclose(
        batched(a, b), [np.vdot(_f64(x), _f64(y)) for x, y in zip(a, b, strict=True)],
        rtol=1e-5,
    )


class MemoryTest(parameterized.TestCase):

  @parameterized.product(num_bases=[1, 2, 5], shape=[(3,), (4, 32), (2, 3, 8)])
  def test_memory_dot_reads_the_updated_memory(self, num_bases, shape):
    rng = np.random.default_rng(2)
    memory = jnp.asarray(rng.normal(size=(num_bases, *shape)), jnp.float32)
    current, vector = (
        jnp.asarray(rng.normal(size=shape), jnp.float32) for _ in range(2)
    )
    for slot in {0, num_bases - 1}:
      is_slot = jnp.arange(num_bases) == slot
      rows = jax.jit(
          lambda m, c, s, v: subspace.memory_dot(
              m, s, v, subspace.inner_products([(c, v)])[0]
          )
      )(memory, current, is_slot, vector)
      updated = _updated(memory, current, slot)
      expected = updated.reshape(num_bases, -1) @ _f64(vector).ravel()
      self.assertEqual(rows.shape, (num_bases,))
      np.testing.assert_allclose(rows, expected, rtol=1e-5, atol=1e-5)

  @parameterized.product(num_bases=[1, 2, 5], shape=[(3,), (4, 32), (2, 3, 8)])
  def test_memory_combine_reads_the_updated_memory(self, num_bases, shape):
    rng = np.random.default_rng(3)
    memory = jnp.asarray(rng.normal(size=(num_bases, *shape)), jnp.float32)
    current = jnp.asarray(rng.normal(size=shape), jnp.float32)
    coeffs = jnp.asarray(rng.normal(size=num_bases), jnp.float32)
    for slot in {0, num_bases - 1}:
      is_slot = jnp.arange(num_bases) == slot
      combined = jax.jit(subspace.memory_combine)(memory, current, is_slot, coeffs)
      expected = np.tensordot(_f64(coeffs), _updated(memory, current, slot), 1)
      self.assertEqual(combined.shape, shape)
      np.testing.assert_allclose(combined, expected, rtol=1e-5, atol=1e-5)


class ProjectorWeightsTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ("one_random", 1, "random"),
      ("one_zero", 1, "zero"),
      ("one_unfilled", 1, "unfilled"),
      ("one_tiny", 1, "tiny"),
      ("three_random", 3, "random"),
      ("three_parallel", 3, "parallel"),
  )
  def test_matches_eigendecomposition(self, num_bases, kind):
    rng = np.random.default_rng(4)
    rows = rng.normal(size=(4, num_bases, 10))  # 4 groups of M rows
    if kind == "zero":
      rows[1] = 0.0
    if kind == "tiny":
      rows *= 1e-21
    if kind == "parallel":
      rows = rows[:, :1] + 1e-3 * rows
    gram = jnp.asarray(np.einsum("gik,gjk->gij", rows, rows), jnp.float32)
    filled = jnp.arange(num_bases) < (0 if kind == "unfilled" else num_bases)
    fn = jax.jit(subspace.projector_weights)
    weights, ill = fn(gram, filled, 1e-2)
    expected_weights, expected_ill = jax.jit(_weights_by_eigh)(gram, filled, 1e-2)
    self.assertTrue(np.all(np.isfinite(weights)))
    np.testing.assert_allclose(weights, expected_weights, rtol=1e-5, atol=1e-6)
    self.assertEqual(bool(ill), bool(expected_ill))
