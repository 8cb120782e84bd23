"""Tests of the dropout masks (`layers.bernoulli`, `layers.Dropout`,
`layers.dot_product_attention`) and of a block computing some tokens only."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdiff.models import PromptDT
from pdiff.models.layers import (
    CausalTransformerBlock,
    Dropout,
    bernoulli,
    causal_padding_mask,
    dot_product_attention,
    whole_axis,
)
from tests.models.test_prompt_dt import random_segments

SHAPES = [(1,), (7,), (3, 5), (2, 3, 4), (1, 1, 9, 9), (4, 75, 16)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_bernoulli_equals_jax_random_bernoulli(shape, p):
  for seed in range(3):
    key = jax.random.key(seed)
    expected = jax.random.bernoulli(key, p, shape)
    np.testing.assert_array_equal(bernoulli(key, p, shape), expected)
    np.testing.assert_array_equal(
        jax.jit(lambda k: bernoulli(k, p, shape))(key), expected)
  raw = jax.random.PRNGKey(3)  # a raw uint32[2] key of the default impl
  np.testing.assert_array_equal(bernoulli(raw, p, shape),
                                jax.random.bernoulli(raw, p, shape))


def test_bernoulli_keeps_about_p():
  mask = bernoulli(jax.random.key(0), 0.9, (200, 500))
  assert abs(float(jnp.mean(mask)) - 0.9) < 0.005


@pytest.mark.parametrize("count", [1, 2, 3])
@pytest.mark.parametrize("impl", ["threefry2x32", "rbg"])
def test_bernoulli_section_is_that_section_of_the_larger_draw(count, impl):
  key = jax.random.key(5, impl=impl)
  whole = jax.random.bernoulli(key, 0.7, (count * 4, 11, 5))
  draw = jax.jit(lambda k, j: bernoulli(
      k, 0.7, (4, 3, 5), [(j, count, count * 4), (1, 3, 11), whole_axis(5)]))
  for j in range(count):  # j traced
    np.testing.assert_array_equal(draw(key, j), whole[j::count, 1:8:3])


def test_bernoulli_falls_back_for_other_keys_and_settings():
  rbg = jax.random.key(1, impl="rbg")
  np.testing.assert_array_equal(bernoulli(rbg, 0.6, (5, 7)),
                                jax.random.bernoulli(rbg, 0.6, (5, 7)))
  key = jax.random.key(2)
  with jax.threefry_partitionable(False):
    np.testing.assert_array_equal(bernoulli(key, 0.6, (5, 7)),
                                  jax.random.bernoulli(key, 0.6, (5, 7)))


@pytest.mark.parametrize("section", [
    [(0, 1, 4)],  # one axis for two
    [(0, 2, 6), whole_axis(3)],  # 4 rows of stride 2 need 7 or more
    [(1, 2, 7), whole_axis(3)],  # from row 1: 8 or more
    [(0, 0, 4), whole_axis(3)],
])
def test_bernoulli_rejects_a_section_that_does_not_fit(section):
  with pytest.raises(ValueError, match="does not fit"):
    bernoulli(jax.random.key(0), 0.5, (4, 3), section)


@pytest.mark.parametrize("broadcast_dims", [(), (1,), (0,)])
def test_dropout_equals_flax_dropout(broadcast_dims):
  x = jax.random.normal(jax.random.key(0), (6, 4, 8))
  rngs = {"dropout": jax.random.key(9)}
  mine = Dropout(0.1, broadcast_dims=broadcast_dims)
  flax_dropout = nn.Dropout(0.1, broadcast_dims=broadcast_dims)
  got = mine.apply({}, x, deterministic=False, rngs=rngs)
  np.testing.assert_array_equal(
      got, flax_dropout.apply({}, x, deterministic=False, rngs=rngs))
  np.testing.assert_array_equal(mine.apply({}, x, deterministic=True), x)


def test_dropout_section_applies_the_whole_batch_masks():
  x = jax.random.normal(jax.random.key(0), (6, 4, 8))
  rngs = {"dropout": jax.random.key(9)}
  whole = Dropout(0.3).apply({}, x, deterministic=False, rngs=rngs)
  for j in range(3):
    part = Dropout(0.3).apply(
        {}, x[j::3, 1::2], deterministic=False, rngs=rngs,
        section=[(j, 3, 6), (1, 2, 4), whole_axis(8)])
    np.testing.assert_array_equal(part, whole[j::3, 1::2])
  # A mask broadcast over rows is the same for every row group.
  shared = Dropout(0.3, broadcast_dims=(0,))
  whole = shared.apply({}, x, deterministic=False, rngs=rngs)
  part = shared.apply({}, x[1::3], deterministic=False, rngs=rngs,
                      section=[(1, 3, 6), whole_axis(4), whole_axis(8)])
  np.testing.assert_array_equal(part, whole[1::3])


def test_dot_product_attention_equals_flax_and_keeps_query_rows():
  kq, kk, kv, kd = jax.random.split(jax.random.key(0), 4)
  query = jax.random.normal(kq, (3, 9, 2, 4))
  key = jax.random.normal(kk, (3, 9, 2, 4))
  value = jax.random.normal(kv, (3, 9, 2, 4))
  mask = causal_padding_mask(jnp.ones((3, 9)))
  kwargs = dict(dropout_rng=kd, dropout_rate=0.2, deterministic=False)
  whole = dot_product_attention(query, key, value, mask, **kwargs)
  np.testing.assert_allclose(
      whole, nn.dot_product_attention(query, key, value, mask=mask, **kwargs),
      rtol=1e-6, atol=1e-6)
  rows = dot_product_attention(query[:, 2::3], key, value,
                               mask[:, :, 2::3], query_section=(2, 3, 9),
                               **kwargs)
  np.testing.assert_allclose(rows, whole[:, 2::3], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("deterministic", [True, False])
def test_block_computes_some_tokens_as_the_whole_block(deterministic):
  block = CausalTransformerBlock(num_heads=2, mlp_dim=32, num_layers=2,
                                 dropout_rate=0.3)
  x = jax.random.normal(jax.random.key(0), (4, 12, 16))
  mask = causal_padding_mask(jnp.ones((4, 12)).at[:, :2].set(0.0))
  params = block.init(jax.random.key(1), x, mask, deterministic=True)
  rngs = {"dropout": jax.random.key(2)}
  whole = block.apply(params, x, mask, deterministic=deterministic, rngs=rngs)
  part = block.apply(params, x, mask, deterministic=deterministic, rngs=rngs,
                     query_tokens=(4, 3))
  assert part.shape == (4, 3, 16)
  np.testing.assert_allclose(part, whole[:, 4::3], rtol=1e-5, atol=1e-6)


def test_prompt_dt_dropout_rows_match_the_whole_batch():
  """Rows j::c run with `dropout_rows=(j, c)` get the whole batch's masks."""
  model = PromptDT(state_dim=3, act_dim=2, hidden_dim=16, num_layers=2,
                   num_heads=2, mlp_dim=32, max_ep_len=50, dropout_rate=0.3)
  segments = random_segments(0, batch=6)
  prompt = random_segments(1, batch=6, steps=3)
  params = model.init(jax.random.key(2), segments, prompt)
  rngs = {"dropout": jax.random.key(4)}
  whole = model.apply(params, segments, prompt, deterministic=False,
                      rngs=rngs)
  assert not np.allclose(whole, model.apply(params, segments, prompt))

  @jax.jit
  def part(rows, j):  # j traced, as in the train step's scan
    return model.apply(params, *rows, deterministic=False, rngs=rngs,
                       dropout_rows=(j, 3))

  for j in range(3):
    rows = jax.tree.map(lambda x, j=j: x[j::3], (segments, prompt))
    np.testing.assert_allclose(part(rows, j), whole[j::3], rtol=1e-5,
                               atol=1e-6)
