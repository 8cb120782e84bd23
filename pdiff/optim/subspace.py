"""The linear algebra of the conflicting-gradient projection.

The projection removes from a guidance gradient its component in the span of
the last ``M`` primary gradients, kept as a ring buffer ``A`` ``[M, ...]``
per leaf (see :mod:`pdiff.optim.projection`). Everything here works from the
``M x M`` Gram matrix ``A A^T`` and inner products with the memory rows, so
leaves are never flattened or concatenated.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

# Full float32 matmuls: TPUs and GPUs otherwise default to bfloat16 or tf32
# passes, too coarse for the Gram matrix the projection is built from.
PRECISION = jax.lax.Precision.HIGHEST
# One projection pass built from the Gram matrix leaves about
# eps * sigma_max^2 / sigma_min^2 of the guidance in the span; below this ratio
# of squared singular values a second pass is applied (eps = 1.2e-7 in float32).
REFINE_BELOW = 0.1


def compute_dtype(dtype: Any) -> jnp.dtype:
  """float32, or the given dtype when it is wider (float64)."""
  return jnp.promote_types(dtype, jnp.float32)


# XLA:CPU sums a long reduction as one chain of dependent additions, several
# times slower than an elementwise pass over the same data. Inner products are
# summed over short runs of the last axis first (one fused pass for several of
# them), then over the partial sums.
_RUN_LENGTHS = (16, 8, 4)


def inner_products(pairs: Sequence[tuple[jax.Array, jax.Array]]) -> list[jax.Array]:
  """The inner products ``a . b`` of pairs of leaves, in one pass over them.

  Args:
    pairs: ``(a, b)`` pairs of leaves, all of one shape and dtype.

  Returns:
    One scalar per pair, in the leaves' dtype.
  """
  products = tuple(a * b for a, b in pairs)
  shape = products[0].shape
  run = next(
      (k for k in _RUN_LENGTHS if shape and shape[-1] > k and shape[-1] % k == 0),
      None,
  )
  if run is None:
    axes = tuple(range(len(shape)))
  else:  # [..., n] -> [..., n / run, run]: only the last axis is split
    products = tuple(
        x.reshape((*shape[:-1], shape[-1] // run, run)) for x in products
    )
    axes = (len(shape),)
  partial_sums = jax.lax.reduce(
      products,
      tuple(jnp.zeros((), x.dtype) for x in products),
      lambda xs, ys: tuple(x + y for x, y in zip(xs, ys, strict=True)),
      axes,
  )
  return [jnp.sum(x) for x in partial_sums]


# memory_dot and memory_combine read a memory leaf as it is after the current
# gradient replaces row `slot`, from the memory before the write and the
# gradient itself. Reading the written buffer instead lets XLA fuse the write
# into every read, which is an order of magnitude slower on CPU.


def memory_dot(
    memory: jax.Array, is_slot: jax.Array, vector: jax.Array, current_dot: jax.Array
) -> jax.Array:
  """``[M]`` inner products of the updated memory rows with a leaf.

  Args:
    memory: ``[M, *s]`` memory leaf before the write (empty, ``[0, *s]``,
      when M = 1).
    is_slot: ``[M]`` bool, true at the slot written.
    vector: ``[*s]`` leaf to dot with. Axes are contracted in place, never
      flattened, which keeps sharded leaves sharded.
    current_dot: scalar inner product of the gradient written to the slot
      with ``vector`` (see :func:`inner_products`).

  Returns:
    ``[M]`` inner products.
  """
  if memory.shape[0] <= 1:  # M = 1: the basis is the current gradient alone
    return current_dot[None]
  axes = (tuple(range(1, memory.ndim)), tuple(range(vector.ndim)))
  rows = jnp.tensordot(memory, vector, axes=axes, precision=PRECISION)  # [M]
  return jnp.where(is_slot, current_dot.astype(rows.dtype), rows)


def memory_combine(
    memory: jax.Array, current: jax.Array, is_slot: jax.Array, coeffs: jax.Array
) -> jax.Array:
  """``sum_i coeffs[i] * row_i`` over the updated memory rows; ``[*s]``.

  A broadcast product and a sum over the rows: XLA fuses it with the
  elementwise operations that use it, in one pass over the memory.
  """
  coeffs = coeffs.astype(memory.dtype)  # [M]
  if memory.shape[0] <= 1:  # M = 1: the basis is the current gradient alone
    return coeffs[0] * current.astype(memory.dtype)
  old = jnp.where(is_slot, 0.0, coeffs).reshape((-1,) + (1,) * (memory.ndim - 1))
  new = jnp.sum(jnp.where(is_slot, coeffs, 0.0))
  return jnp.sum(old * memory, axis=0) + new * current.astype(memory.dtype)


def projector_weights(
    gram: jax.Array, filled: jax.Array, rtol: Any
) -> tuple[jax.Array, jax.Array]:
  """Weights ``W`` such that ``B B^T v = A^T W A v`` for the memory ``A``.

  ``B`` is an orthonormal basis of the dominant span of the memory rows, each
  scaled to unit norm: with ``A_hat = S A = U Sigma V^T`` (``S`` the diagonal
  of inverse row norms) the kept columns of ``V`` are those with
  ``sigma_j > rtol * sigma_max``, and
  ``B B^T = A^T S U_k Sigma_k^-2 U_k^T S A``. ``U`` and ``Sigma^2`` are the
  eigenvectors and eigenvalues of the normalised Gram matrix
  ``A_hat A_hat^T``, so only inner products of the memory are needed.

  Args:
    gram: ``[..., M, M]`` Gram matrices ``A A^T`` of the memory.
    filled: ``[M]`` bool, slots of the ring buffer written so far.
    rtol: relative singular value below which a direction is dropped.

  Returns:
    ``[..., M, M]`` symmetric weights, whose rows and columns of zero or
    unwritten memory rows are zero and whose entries are all finite, and a
    bool scalar: whether a kept direction's squared singular value is below
    ``REFINE_BELOW`` times the largest, where one projection pass loses
    accuracy.
  """
  dtype = gram.dtype
  sq_norms = jnp.diagonal(gram, axis1=-2, axis2=-1)  # [..., M]
  valid = filled & (sq_norms > jnp.finfo(dtype).tiny)
  inv_norms = jnp.where(valid, jax.lax.rsqrt(jnp.where(valid, sq_norms, 1.0)), 0.0)
  normalised = gram * inv_norms[..., :, None] * inv_norms[..., None, :]
  if gram.shape[-1] == 1:  # a 1 x 1 matrix is its own eigendecomposition
    eigvals, eigvecs = normalised[..., 0], jnp.ones_like(normalised)
  else:
    eigvals, eigvecs = jnp.linalg.eigh(normalised)  # [..., M], [..., M, M]
  # With at least one valid row the largest eigenvalue is >= 1 (a unit
  # diagonal entry); the floor at eps keeps 1 / eigval finite.
  largest = jnp.maximum(eigvals[..., -1:], 1.0)
  floor = jnp.maximum(jnp.asarray(rtol, dtype) ** 2, jnp.finfo(dtype).eps)
  keep = eigvals > floor * largest
  inv_eigvals = jnp.where(keep, 1.0 / jnp.where(keep, eigvals, 1.0), 0.0)
  scaled = eigvecs * inv_norms[..., :, None]  # [..., M, M] = S U
  weights = jnp.einsum(
      "...ik,...k,...jk->...ij", scaled, inv_eigvals, scaled, precision=PRECISION
  )
  ill_conditioned = jnp.any(keep & (eigvals < REFINE_BELOW * largest))
  return weights, ill_conditioned
