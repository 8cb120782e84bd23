"""Tests of the cached prompt keys and values (`pdiff.models.prompt_cache`):
`PromptDT.predict_with_cache` predicts `PromptDT.__call__`'s actions."""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdiff.models import PromptCache, PromptDT
from pdiff.models.layers import CausalTransformerBlock, causal_padding_mask
from pdiff.models.prompt_cache import attention_with_prefix
from tests.models.test_prompt_dt import (
    BATCH,
    HIDDEN,
    PROMPT_STEPS,
    STEPS,
    make_model,
    random_segments,
)

# Float32 rounding of a different summation order, far below any real
# difference (changing one prompt step moves the actions by > 1e-3).
TOLERANCE = 2e-6


def random_params(model, segments, prompt, seed, scale=0.3):
  """`model`'s initial parameters plus N(0, scale) noise: larger weights
  than the initialisation's give peaked attention, which shows every
  masking error."""
  params = model.init(jax.random.key(seed), segments, prompt)
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(seed + 1), len(leaves))
  return jax.tree.unflatten(tree, [
      x + scale * jax.random.normal(k, x.shape)
      for x, k in zip(leaves, keys, strict=True)])


def cached_actions(model, params, segments, prompt, last_step_only=False):
  cache = model.apply(params, prompt, method=PromptDT.prompt_cache)
  return model.apply(params, segments, cache, last_step_only=last_step_only,
                     method=PromptDT.predict_with_cache)


@pytest.fixture(scope="module")
def setup():
  model = make_model(num_layers=3)
  params = random_params(model, random_segments(0),
                         random_segments(1, steps=PROMPT_STEPS), seed=2)
  full = jax.jit(lambda p, s, q: model.apply(p, s, q))
  cached = jax.jit(lambda p, s, q, last: cached_actions(model, p, s, q, last),
                   static_argnums=3)
  return model, params, full, cached


@pytest.mark.parametrize("num_padded", [0, 1, STEPS - 1])
@pytest.mark.parametrize("prompt_padded", [0, 2])
@pytest.mark.parametrize("prompt_batch", [1, BATCH])
def test_cached_actions_equal_full_forward(setup, num_padded, prompt_padded,
                                           prompt_batch):
  model, params, full, cached = setup
  segments = random_segments(3, num_padded=num_padded)
  prompt = random_segments(4, batch=prompt_batch, steps=PROMPT_STEPS,
                           num_padded=prompt_padded)
  expected = np.asarray(full(params, segments, prompt))
  got = np.asarray(cached(params, segments, prompt, False))
  assert got.shape == expected.shape == (BATCH, STEPS, model.act_dim)
  # Padded steps too: they attend to the same tokens on both paths.
  np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE)
  last = np.asarray(cached(params, segments, prompt, True))
  assert last.shape == (BATCH, 1, model.act_dim)
  np.testing.assert_allclose(last[:, 0], expected[:, -1], rtol=0,
                             atol=TOLERANCE)
  # Not trivially equal: another real prompt step changes the actions.
  other = random_segments(5, batch=prompt_batch, steps=PROMPT_STEPS)
  changed = np.asarray(cached(params, segments, other, True))
  assert np.abs(changed - last).max() > 1e-3


def test_first_steps_of_an_episode(setup):
  """Windows as a rollout builds them at steps 0, 1, 2: left padding of
  zeros, the current action zero; the prompt's cache is computed once."""
  model, params, full, cached = setup
  prompt = random_segments(6, batch=1, steps=PROMPT_STEPS)
  episode = random_segments(7, steps=STEPS)
  cache = model.apply(params, prompt, method=PromptDT.prompt_cache)
  step = jax.jit(lambda p, s, c: model.apply(
      p, s, c, last_step_only=True, method=PromptDT.predict_with_cache))
  for t in range(STEPS):
    real = np.arange(STEPS) >= STEPS - 1 - t  # [K]
    window = jax.tree.map(
        lambda x, real=real: jnp.where(
            real.reshape((1, -1) + (1,) * (x.ndim - 2)), x, 0).astype(x.dtype),
        episode._replace(mask=jnp.ones_like(episode.mask)))
    window = window._replace(actions=window.actions.at[:, -1].set(0.0))
    expected = full(params, window, prompt)[:, -1]
    np.testing.assert_allclose(step(params, window, cache)[:, 0], expected,
                               rtol=0, atol=TOLERANCE)


def test_prompt_embeddings_soft_prompt_and_adapters():
  """The cache follows every way of giving the prompt, and adapters."""
  model = make_model(adapter_dim=4)
  segments = random_segments(8, num_padded=1)
  prompt = random_segments(9, steps=PROMPT_STEPS, num_padded=1)
  params = random_params(model, segments, prompt, seed=10)
  params = flax.core.unfreeze(params)
  params["params"]["soft_prompt"] = jax.random.normal(
      jax.random.key(11), (3 * PROMPT_STEPS, HIDDEN))
  np.testing.assert_allclose(
      cached_actions(model, params, segments, prompt),
      model.apply(params, segments, prompt), rtol=0, atol=TOLERANCE)
  soft = jax.random.normal(jax.random.key(12), (1, 7, HIDDEN))
  soft_mask = jnp.asarray([[0, 0, 1, 1, 1, 1, 1]], jnp.float32)
  for mask in (None, soft_mask):
    cache = model.apply(params, prompt_embeddings=soft, prompt_mask=mask,
                        method=PromptDT.prompt_cache)
    assert cache.num_tokens == 7 and len(cache.keys) == model.num_layers
    np.testing.assert_allclose(
        model.apply(params, segments, cache,
                    method=PromptDT.predict_with_cache),
        model.apply(params, segments, prompt_embeddings=soft,
                    prompt_mask=mask),
        rtol=0, atol=TOLERANCE)


def test_cache_shapes_and_what_it_holds(setup):
  """One [Bp, P, heads, d] key and value array per block; the first
  block's keys are the projected, layer-normalised prompt tokens."""
  model, params, _, _ = setup
  prompt = random_segments(13, batch=1, steps=PROMPT_STEPS, num_padded=1)
  cache = model.apply(params, prompt, method=PromptDT.prompt_cache)
  assert isinstance(cache, PromptCache)
  heads = model.num_heads
  assert [k.shape for k in cache.keys] == [
      (1, 3 * PROMPT_STEPS, heads, HIDDEN // heads)] * model.num_layers
  assert [v.shape for v in cache.values] == [k.shape for k in cache.keys]
  np.testing.assert_array_equal(cache.mask, np.repeat(prompt.mask, 3, axis=1))
  tokens, _ = model.apply(params, prompt, method=PromptDT.embed_prompt)
  block = params["params"]["blocks_0"]

  def layer_norm(x, p):
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mean) / jnp.sqrt(var + 1e-5) * p["scale"] + p["bias"]

  h = layer_norm(tokens, block["ln_attention"])
  key = block["attention"]["key"]
  np.testing.assert_allclose(
      cache.keys[0], jnp.einsum("bph,hnd->bpnd", h, key["kernel"])
      + key["bias"], rtol=1e-5, atol=1e-5)


def test_attention_with_prefix_equals_attention_over_the_whole():
  """[prefix ; own] keys give the rows of attention over the concatenation,
  with a prefix shared by all rows (batch 1) or one per row."""
  batch, num_prefix, length, heads, d = 3, 4, 5, 2, 8
  keys = jax.random.split(jax.random.key(14), 3)
  q, k, v = (jax.random.normal(key, (batch, num_prefix + length, heads, d))
             for key in keys)
  token_mask = jnp.asarray(
      np.random.default_rng(0).integers(0, 2, (batch, num_prefix + length)),
      jnp.float32)
  share = lambda x: x.at[:, :num_prefix].set(x[:1, :num_prefix])
  for shared in (False, True):
    if shared:  # the same prefix in every row
      k, v, token_mask = share(k), share(v), share(token_mask)
    mask = causal_padding_mask(token_mask)
    whole = attention_with_prefix(q, k, v, mask)[:, num_prefix:]
    rows = slice(0, 1) if shared else slice(None)
    prefix = (k[rows, :num_prefix], v[rows, :num_prefix],
              token_mask[rows, :num_prefix])
    got = attention_with_prefix(
        q[:, num_prefix:], k[:, num_prefix:], v[:, num_prefix:],
        mask[:, :, num_prefix:, num_prefix:], prefix=prefix)
    np.testing.assert_allclose(got, whole, rtol=1e-5, atol=1e-6)


def test_paper_shape_under_jit():
  """Prompt-DT's shape (embed 128, 3 layers, K = 20, K* = 5): the cached
  last-step action of a half-padded window equals the full pass's."""
  model = make_model(hidden_dim=128, num_layers=3, num_heads=1, mlp_dim=512)
  segments = random_segments(15, batch=8, steps=20, num_padded=9)
  prompt = random_segments(16, batch=1, steps=5)
  params = random_params(model, segments, prompt, seed=17, scale=0.05)
  expected = jax.jit(model.apply)(params, segments, prompt)[:, -1]
  got = jax.jit(lambda p, s, q: cached_actions(model, p, s, q, True))(
      params, segments, prompt)[:, 0]
  np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


def test_bad_uses_raise(setup):
  model, params, _, _ = setup
  segments = random_segments(18)
  with pytest.raises(ValueError, match="needs prompt"):
    model.apply(params, method=PromptDT.prompt_cache)
  prompt = random_segments(19, batch=3, steps=PROMPT_STEPS)
  cache = model.apply(params, prompt, method=PromptDT.prompt_cache)
  with pytest.raises(ValueError, match="batch 1 or 2"):
    model.apply(params, segments, cache, method=PromptDT.predict_with_cache)
  block = CausalTransformerBlock(num_heads=1, mlp_dim=8, num_layers=1)
  x = jnp.zeros((1, 3, HIDDEN))
  mask = causal_padding_mask(jnp.ones((1, 3)))
  block_params = block.init(jax.random.key(20), x, mask, deterministic=True)
  with pytest.raises(ValueError, match="deterministic"):
    block.apply(block_params, x, mask, deterministic=False,
                return_key_values=True, rngs={"dropout": jax.random.key(0)})
