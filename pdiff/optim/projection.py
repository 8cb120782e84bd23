"""Projection of a conflicting guidance gradient (Prompt Diffuser, eq. 8-9).

Prompt Diffuser trains its diffusion model on two losses: the diffusion loss
``L_DM`` and a downstream guidance loss ``L_DT``. Where their gradients
conflict, the guidance gradient is projected onto the orthogonal complement of
the subspace spanned by recent diffusion-loss gradients before it is added.
:func:`project_conflicting` is that combination as an optax transformation;
the linear algebra it is built from is in :mod:`pdiff.optim.subspace`.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from pdiff.optim.subspace import (
    PRECISION,
    compute_dtype,
    inner_products,
    memory_combine,
    memory_dot,
    projector_weights,
)

_GUIDANCE_HELP = (
    "pass the guidance gradient as `update(updates, state, params, "
    "guidance=g_dt)`, a pytree with the structure and leaf shapes of `updates`"
)


class ProjectConflictingState(NamedTuple):
  """State of :func:`project_conflicting`.

  Attributes:
    count: int32 scalar, number of updates seen; the next primary gradient is
      written to slot ``count % M`` of the memory.
    memory: pytree with the structure of the parameters whose leaves have
      shape ``[M, *leaf.shape]``: the last ``M`` primary gradients (a ring
      buffer), in float32 or the leaf's dtype when wider. Slots not yet
      written hold zeros. With ``M = 1`` the basis is the current gradient
      alone, so nothing is kept: the leaves are empty, ``[0, *leaf.shape]``.
    gram: ``[L, M, M]`` inner products between the memory rows, one matrix
      per leaf (in ``jax.tree.leaves`` order). Only the row and column of the
      slot written change at each update, so it is kept rather than
      recomputed.
  """

  count: jax.Array  # [] int32
  memory: optax.Updates  # leaves [M, *leaf.shape]
  gram: jax.Array  # [L, M, M]


def _concrete_float(value: Any, name: str) -> float | None:
  """The Python float of a scalar hyperparameter, or None when it is traced.

  Raises:
    ValueError: when ``value`` is not a real scalar.
  """
  if isinstance(value, (str, bytes)):
    raise ValueError(f"project_conflicting: {name} must be a number, got {value!r}.")
  try:
    return float(value)
  except jax.errors.ConcretizationTypeError:
    return None
  except (TypeError, ValueError) as e:
    raise ValueError(
        f"project_conflicting: {name} must be a real scalar, got {value!r}."
    ) from e


def _check_hyperparameters(guidance_scale: Any, num_bases: Any, rtol: Any) -> None:
  """Raises a ValueError for a bad concrete hyperparameter (traced ones pass)."""
  scale = _concrete_float(guidance_scale, "guidance_scale")
  if scale is not None and not (math.isfinite(scale) and scale >= 0.0):
    raise ValueError(
        f"project_conflicting: guidance_scale must be a finite number >= 0, "
        f"got {guidance_scale!r}."
    )
  bases = _concrete_float(num_bases, "num_bases")
  if isinstance(num_bases, bool) or (
      bases is not None and (not bases.is_integer() or bases < 1)
  ):
    raise ValueError(
        f"project_conflicting: num_bases must be an integer >= 1, got "
        f"{num_bases!r}."
    )
  tol = _concrete_float(rtol, "rtol")
  if tol is not None and not 0.0 < tol < 1.0:
    raise ValueError(f"project_conflicting: rtol must be in (0, 1), got {rtol!r}.")


def _check_guidance(
    updates: optax.Updates, guidance: Any, state: ProjectConflictingState
) -> None:
  """Checks that the guidance and the state match the updates' structure."""
  if guidance is None:
    raise TypeError(
        f"project_conflicting: update() is missing the keyword argument "
        f"`guidance`; {_GUIDANCE_HELP}."
    )
  expected = jax.tree.structure(updates)
  if jax.tree.structure(guidance) != expected:
    raise ValueError(
        f"project_conflicting: `guidance` must have the pytree structure of "
        f"`updates` {expected}, got {jax.tree.structure(guidance)}."
    )
  memory = state.memory
  if jax.tree.structure(memory) != expected:
    raise ValueError(
        f"project_conflicting: the state was initialised for parameters of "
        f"structure {jax.tree.structure(memory)}, but `updates` has structure "
        f"{expected}; call init() with the parameters being updated."
    )
  paths_and_updates = jax.tree_util.tree_leaves_with_path(updates)
  for (path, g), d, m in zip(
      paths_and_updates,
      jax.tree.leaves(guidance),
      jax.tree.leaves(memory),
      strict=True,
  ):
    name = jax.tree_util.keystr(path) or "<root>"
    if jnp.shape(d) != jnp.shape(g):
      raise ValueError(
          f"project_conflicting: guidance leaf {name} must have the shape of "
          f"the update {jnp.shape(g)}, got {jnp.shape(d)}."
      )
    if jnp.shape(m)[1:] != jnp.shape(g):
      raise ValueError(
          f"project_conflicting: memory leaf {name} has shape {jnp.shape(m)}, "
          f"expected [M, *{jnp.shape(g)}]; call init() with the parameters "
          f"being updated."
      )


def project_conflicting(
    guidance_scale: float | jax.Array = 1.0,
    num_bases: int = 1,
    *,
    per_leaf: bool = False,
    rtol: float | jax.Array = 1e-2,
) -> optax.GradientTransformationExtraArgs:
  r"""Adds a guidance gradient, projected where it conflicts with the updates.

  The incoming ``updates`` are the primary gradient :math:`g_{DM}` (the
  diffusion loss in Prompt Diffuser) and the keyword argument ``guidance`` is
  the guidance gradient :math:`g_{DT}` (the downstream loss). The output is

  .. math::

    u = \begin{cases}
      g_{DM} + \lambda \, P_B(g_{DT}) & \text{if } g_{DM} \cdot g_{DT} < 0, \\
      g_{DM} + \lambda \, g_{DT} & \text{otherwise,}
    \end{cases}
    \qquad P_B(g) = g - B B^\top g,

  so a conflicting guidance gradient only moves the parameters in the
  orthogonal complement of :math:`\mathrm{span}(B)` (the paper writes the
  same map as a product with a basis of that complement, eq. 8). The columns of
  :math:`B` are an orthonormal basis of the span of the last :math:`M`
  primary gradients (the current one included), kept in a ring buffer: with
  the memory rows scaled to unit norm, :math:`\hat A = U \Sigma V^\top`, the
  basis is the columns of :math:`V` whose singular value exceeds
  ``rtol`` :math:`\sigma_{max}`. Zero, repeated or parallel gradients only
  drop directions, never produce NaNs. :math:`B B^\top` is computed from the
  :math:`M \times M` Gram matrix of the memory (kept in the state), so leaves
  are never flattened or concatenated; when the memory is ill-conditioned
  (nearly parallel gradients) the projection is applied a second time to
  remove what float32 rounding left in the span. With :math:`M = 1` it is
  PCGrad's projection :math:`P(g) = g - \frac{g \cdot u}{\|u\|^2} u` with
  :math:`u = g_{DM}`.

  With ``per_leaf=True`` the conflict test and the projection act on each
  leaf separately (each leaf has its own basis) instead of on the whole
  gradient. Arithmetic is in float32 (or wider); the output leaves take the
  dtype of ``updates``.

  ``optax.chain`` forwards ``guidance`` unchanged to every transformation it
  holds, so place this one first, where the updates are still raw gradients.
  Inside ``optax.MultiSteps`` the projection acts on the accumulated primary
  gradient and the ``guidance`` of the mini-step that applies the update.
  With ``optax.inject_hyperparams`` ``guidance_scale`` and ``rtol`` may be
  injected or scheduled; ``num_bases`` sets the memory size at ``init`` and is
  read from the state afterwards.

  With :math:`M > 1` the memory holds :math:`M` times the parameters: an
  update reads it once for its inner products with :math:`g_{DM}` (the Gram
  matrix), and where a gradient conflicts twice per projection pass (inner
  products with the vector projected, then the part in the span); with
  :math:`M = 1` the projection is elementwise and no memory is kept.
  Jit the training step with the optimiser state donated (``donate_argnums``)
  so that the memory is updated in place: otherwise every update copies it.

  Args:
    guidance_scale: weight :math:`\lambda \ge 0` of the guidance gradient.
    num_bases: memory size :math:`M \ge 1`, the number of past primary
      gradients whose span is projected out.
    per_leaf: test for conflict and project leaf by leaf instead of on the
      whole gradient.
    rtol: directions whose singular value is at most ``rtol`` times the
      largest one are dropped from the basis, in (0, 1). Values much below
      ``1e-3`` are lost in float32 rounding.

  Returns:
    An ``optax.GradientTransformationExtraArgs`` whose ``update`` is called as
    ``update(updates, state, params=None, *, guidance, **extra_args)``; other
    extra arguments are ignored.

  Raises:
    ValueError: for a negative or non-finite ``guidance_scale``, a
      ``num_bases`` that is not an integer >= 1 or an ``rtol`` outside (0, 1).

  Example:
    >>> import jax.numpy as jnp
    >>> import optax
    >>> from pdiff.optim import project_conflicting
    >>> tx = project_conflicting(guidance_scale=1.0, num_bases=1)
    >>> params = {'w': jnp.zeros(2)}
    >>> state = tx.init(params)
    >>> g_dm = {'w': jnp.array([1.0, 0.0])}
    >>> g_dt = {'w': jnp.array([-1.0, 1.0])}  # conflicts: g_dm . g_dt = -1
    >>> updates, state = tx.update(g_dm, state, params, guidance=g_dt)
    >>> print(updates['w'])  # g_dm + (g_dt minus its part along g_dm)
    [1. 1.]
    >>> tx = optax.chain(project_conflicting(num_bases=4), optax.sgd(0.1))
    >>> state = tx.init(params)
    >>> updates, state = tx.update(g_dm, state, params, guidance=g_dt)
    >>> print(optax.apply_updates(params, updates)['w'])
    [-0.1 -0.1]

  References:
    Hu et al., `Prompt Tuning with Diffusion for Few-Shot Pre-trained Policy
    Generalization <https://arxiv.org/abs/2411.01168>`_, 2024 (eq. 8-9).

    Yu et al., `Gradient Surgery for Multi-Task Learning
    <https://arxiv.org/abs/2001.06782>`_, NeurIPS 2020 (PCGrad).
  """
  _check_hyperparameters(guidance_scale, num_bases, rtol)

  def init_fn(params: optax.Params) -> ProjectConflictingState:
    bases = _concrete_float(num_bases, "num_bases")
    if bases is None:
      raise ValueError(
          "project_conflicting: num_bases sets the memory size at init() and "
          "must be a concrete integer, got a traced value."
      )
    memory_size = int(bases)
    # With M = 1 the basis is the current gradient: no past one is read.
    rows = 0 if memory_size == 1 else memory_size
    memory = jax.tree.map(
        lambda p: jnp.broadcast_to(
            jnp.zeros_like(p, dtype=compute_dtype(p.dtype)),
            (rows, *jnp.shape(p)),
        ),
        params,
    )
    leaves = jax.tree.leaves(memory)
    gram_dtype = jnp.result_type(jnp.float32, *leaves)
    gram = jnp.zeros((len(leaves), memory_size, memory_size), gram_dtype)
    return ProjectConflictingState(
        count=jnp.zeros([], jnp.int32), memory=memory, gram=gram
    )

  def update_fn(
      updates: optax.Updates,
      state: ProjectConflictingState,
      params: optax.Params | None = None,
      *,
      guidance: optax.Updates | None = None,
      **extra_args: Any,
  ) -> tuple[optax.Updates, ProjectConflictingState]:
    del params, extra_args
    _check_guidance(updates, guidance, state)
    leaves, treedef = jax.tree.flatten(updates)
    if not leaves:
      return updates, state._replace(count=optax.safe_increment(state.count))
    memory_size = state.gram.shape[-1]
    bases = _concrete_float(num_bases, "num_bases")
    if bases is not None and int(bases) != memory_size:
      raise ValueError(
          f"project_conflicting: num_bases={num_bases} but the state holds a "
          f"memory of {memory_size} gradients; call init() again."
      )
    dtype = state.gram.dtype
    primary = [g.astype(compute_dtype(g.dtype)) for g in leaves]
    guide = [
        d.astype(g.dtype)
        for d, g in zip(jax.tree.leaves(guidance), primary, strict=True)
    ]

    # The primary gradient replaces the oldest one in the ring buffer. Until
    # the write, at the end, the memory is read as it will be after it, from
    # the memory before the write and the gradient itself.
    slot = state.count % memory_size
    is_slot = jnp.arange(memory_size) == slot  # [M]
    filled = jnp.arange(memory_size) < jnp.minimum(state.count + 1, memory_size)
    old_memory = jax.tree.leaves(state.memory)

    # Per-leaf quantities, summed over leaves for the whole-gradient variant:
    # G groups, one per leaf or a single one; leaf i belongs to group(i).
    group_sum = (lambda x: x) if per_leaf else (lambda x: jnp.sum(x, 0, keepdims=True))
    group = (lambda i: i) if per_leaf else (lambda i: 0)

    def memory_rows(
        vectors: list[jax.Array], current_dots: list[jax.Array]
    ) -> jax.Array:
      """``[L, M]`` inner products of the memory rows with every leaf ``v``.

      Args:
        vectors: the leaves ``v``.
        current_dots: per leaf, the inner product of ``v`` with the primary
          gradient (the memory row at the slot, after the write).
      """
      return jnp.stack([
          memory_dot(m, is_slot, v, dot).astype(dtype)
          for m, v, dot in zip(old_memory, vectors, current_dots, strict=True)
      ])

    # g_DM . g_DM and g_DM . g_DT per leaf, in one pass over both gradients.
    current = [
        inner_products([(g, g), (g, d)]) for g, d in zip(primary, guide, strict=True)
    ]
    # The memory rows dotted with g_DM refresh the row and column of the slot
    # in each leaf's Gram matrix.
    new_rows = memory_rows(primary, [dots[0] for dots in current])  # [L, M]
    gram = jnp.where(  # row and column `slot` replaced: one elementwise pass
        is_slot[:, None],
        new_rows[:, None, :],
        jnp.where(is_slot[None, :], new_rows[:, :, None], state.gram),
    )  # [L, M, M]
    conflict = group_sum(
        jnp.stack([dots[1].astype(dtype) for dots in current])
    ) < 0  # [G], the sign of g_DM . g_DT
    weights, ill_conditioned = projector_weights(
        group_sum(gram), filled, rtol
    )  # [G, M, M], []
    scale = jnp.asarray(guidance_scale, dtype)

    def remove_span(
        vectors: list[jax.Array], current_dots: list[jax.Array]
    ) -> list[jax.Array]:
      """``v - B B^T v`` for every leaf ``v``, as ``v - A^T W A v``.

      Args:
        vectors: the leaves ``v``.
        current_dots: per leaf, the inner product of ``v`` with the primary
          gradient.
      """
      rows = group_sum(memory_rows(vectors, current_dots))  # [G, M]
      coeffs = jnp.einsum("gij,gj->gi", weights, rows, precision=PRECISION)
      return [
          v - memory_combine(m, g, is_slot, coeffs[group(i)]).astype(v.dtype)
          for i, (m, g, v) in enumerate(zip(old_memory, primary, vectors, strict=True))
      ]

    def project_guidance(passes: int) -> list[jax.Array]:
      """The guidance gradient with its part in the span removed ``passes`` times.

      The Gram matrix squares the memory's condition number: for nearly
      parallel gradients a second pass removes what rounding left in the span.
      """
      projected = remove_span(guide, [dots[1] for dots in current])
      for _ in range(passes - 1):
        projected = remove_span(projected, [
            inner_products([(g, v)])[0]
            for g, v in zip(primary, projected, strict=True)
        ])
      return projected

    def combine(projected: list[jax.Array]) -> list[jax.Array]:
      """``g_DM + lambda g_DT``, with ``g_DT`` projected where it conflicts."""
      return [
          (g + scale * jnp.where(conflict[group(i)], p, d)).astype(u.dtype)
          for i, (g, d, p, u) in enumerate(
              zip(primary, guide, projected, leaves, strict=True)
          )
      ]

    if memory_size == 1:
      # A rank-one projection, elementwise: XLA fuses it with the
      # transformations that follow.
      combined = combine(project_guidance(1))
      write_slot = slot
    else:
      # The projection reads the memory (M times the parameters) twice per
      # pass: it is skipped when nothing conflicts, and made twice for an
      # ill-conditioned memory.
      branch = jnp.where(
          jnp.any(conflict), 1 + ill_conditioned.astype(jnp.int32), 0
      )
      # Branch k also returns slot + k, from which the write's index is
      # recovered: a dependency that XLA cannot simplify away orders the
      # write after every read of the memory, so that a donated memory is
      # updated in place instead of copied.
      combined, write_slot = jax.lax.switch(branch, [
          lambda: (combine(guide), slot),
          lambda: (combine(project_guidance(1)), slot + 1),
          lambda: (combine(project_guidance(2)), slot + 2),
      ])
      write_slot = write_slot - branch
    memory = old_memory if memory_size == 1 else [  # the ring-buffer write
        jax.lax.dynamic_update_index_in_dim(m, g.astype(m.dtype), write_slot, axis=0)
        for m, g in zip(old_memory, primary, strict=True)
    ]
    new_state = ProjectConflictingState(
        count=optax.safe_increment(state.count),
        memory=jax.tree.unflatten(treedef, memory),
        gram=gram,
    )
    return jax.tree.unflatten(treedef, combined), new_state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
