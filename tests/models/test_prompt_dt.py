"""Tests of the Prompt Decision Transformer."""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import prompt_dt as prompt_dt_configs
from pdiff.models import PromptDT, make_prompt_dt
from pdiff.types import Segments

STATE_DIM, ACT_DIM, HIDDEN = 3, 2, 16
STEPS, PROMPT_STEPS, BATCH = 4, 3, 2


def make_model(**overrides) -> PromptDT:
  kwargs = dict(state_dim=STATE_DIM, act_dim=ACT_DIM, hidden_dim=HIDDEN,
                num_layers=2, num_heads=2, mlp_dim=32, max_ep_len=50)
  kwargs.update(overrides)
  return PromptDT(**kwargs)


def random_segments(seed, batch=BATCH, steps=STEPS, num_padded=0) -> Segments:
  """Random windows whose first `num_padded` steps are padding (mask 0)."""
  rng = np.random.default_rng(seed)
  mask = np.broadcast_to(np.arange(steps) >= num_padded, (batch, steps))
  return Segments(
      states=jnp.asarray(rng.normal(size=(batch, steps, STATE_DIM)),
                         jnp.float32),
      actions=jnp.asarray(rng.uniform(-1, 1, (batch, steps, ACT_DIM)),
                          jnp.float32),
      rewards=jnp.asarray(rng.normal(size=(batch, steps)), jnp.float32),
      returns_to_go=jnp.asarray(rng.normal(size=(batch, steps)), jnp.float32),
      timesteps=jnp.asarray(rng.integers(0, 50, (batch, steps)), jnp.int32),
      mask=jnp.asarray(mask, jnp.float32),
  )


def replace_steps(segments, other, steps):
  """`segments` with the given steps' values (not mask) taken from `other`."""
  sel = np.zeros(segments.mask.shape[1], bool)
  sel[list(steps)] = True

  def pick(a, b):
    where = sel.reshape((1, -1) + (1,) * (a.ndim - 2))
    return jnp.where(where, b, a)

  return segments._replace(
      **{f: pick(getattr(segments, f), getattr(other, f))
         for f in ("states", "actions", "rewards", "returns_to_go",
                   "timesteps")})


@pytest.fixture(scope="module")
def setup():
  model = make_model()
  segments = random_segments(0)
  prompt = random_segments(1, steps=PROMPT_STEPS)
  params = jax.jit(model.init)(jax.random.key(2), segments, prompt)
  return model, params, segments, prompt


def test_output_shape_and_range(setup):
  model, params, segments, prompt = setup
  actions = model.apply(params, segments, prompt)
  assert actions.shape == (BATCH, STEPS, ACT_DIM)
  assert np.all(np.abs(actions) < 1.0)


@pytest.mark.parametrize("changed_step", [0, 1, 3])
def test_causal_later_steps_do_not_change_earlier_actions(setup, changed_step):
  model, params, segments, prompt = setup
  other = random_segments(3)
  changed = replace_steps(segments, other, range(changed_step, STEPS))
  before = model.apply(params, segments, prompt)
  after = model.apply(params, changed, prompt)
  np.testing.assert_allclose(after[:, :changed_step], before[:, :changed_step],
                             rtol=1e-6, atol=1e-6)
  # The changed step's own prediction does see its new state.
  assert not np.allclose(after[:, changed_step], before[:, changed_step])


def test_action_prediction_does_not_see_its_own_action(setup):
  model, params, segments, prompt = setup
  t = 2
  changed = segments._replace(actions=segments.actions.at[:, t].add(0.5))
  before = model.apply(params, segments, prompt)
  after = model.apply(params, changed, prompt)
  np.testing.assert_allclose(after[:, :t + 1], before[:, :t + 1], rtol=1e-6,
                             atol=1e-6)
  assert not np.allclose(after[:, t + 1:], before[:, t + 1:])


def test_padded_steps_do_not_change_real_outputs(setup):
  model, params, _, _ = setup
  segments = random_segments(4, num_padded=2)
  prompt = random_segments(5, steps=PROMPT_STEPS, num_padded=1)
  other_segments = random_segments(6, num_padded=2)
  other_prompt = random_segments(7, steps=PROMPT_STEPS)
  changed_segments = replace_steps(segments, other_segments, [0, 1])
  changed_prompt = replace_steps(prompt, other_prompt, [0])
  before = model.apply(params, segments, prompt)
  after = model.apply(params, changed_segments, changed_prompt)
  np.testing.assert_allclose(after[:, 2:], before[:, 2:], rtol=1e-6, atol=1e-6)
  # A real prompt step does matter.
  real_change = replace_steps(prompt, other_prompt, [1])
  assert not np.allclose(model.apply(params, segments, real_change)[:, 2:],
                         before[:, 2:])


def test_prompt_changes_output(setup):
  model, params, segments, prompt = setup
  other = random_segments(8, steps=PROMPT_STEPS)
  with_prompt = model.apply(params, segments, prompt)
  assert not np.allclose(with_prompt, model.apply(params, segments, other))
  assert not np.allclose(with_prompt, model.apply(params, segments))


@pytest.mark.parametrize("prompt_steps", [1, 2 * PROMPT_STEPS])
def test_prompt_of_any_length(setup, prompt_steps):
  model, params, segments, _ = setup
  prompt = random_segments(9, steps=prompt_steps)
  assert model.apply(params, segments, prompt).shape == (BATCH, STEPS, ACT_DIM)


def test_soft_prompt_embeddings_match_prompt_path(setup):
  model, params, segments, prompt = setup
  embeddings, mask = model.apply(params, prompt, method=PromptDT.embed_prompt)
  assert embeddings.shape == (BATCH, 3 * PROMPT_STEPS, HIDDEN)
  assert mask.shape == (BATCH, 3 * PROMPT_STEPS)
  expected = model.apply(params, segments, prompt)
  got = model.apply(params, segments, prompt_embeddings=embeddings,
                    prompt_mask=mask)
  np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


def test_shared_soft_prompt_broadcasts_over_batch(setup):
  model, params, segments, _ = setup
  soft = jax.random.normal(jax.random.key(10), (1, 5, HIDDEN))
  shared = model.apply(params, segments, prompt_embeddings=soft)
  tiled = model.apply(params, segments,
                      prompt_embeddings=jnp.tile(soft, (BATCH, 1, 1)))
  assert shared.shape == (BATCH, STEPS, ACT_DIM)
  np.testing.assert_allclose(shared, tiled, rtol=1e-6, atol=1e-6)
  grads = jax.grad(lambda e: model.apply(params, segments,
                                         prompt_embeddings=e).sum())(soft)
  assert grads.shape == soft.shape and np.any(grads != 0)


def test_prompt_and_prompt_embeddings_are_exclusive(setup):
  model, params, segments, prompt = setup
  with pytest.raises(ValueError, match="not both"):
    model.apply(params, segments, prompt,
                prompt_embeddings=jnp.zeros((1, 3, HIDDEN)))
  with pytest.raises(ValueError, match="hidden_dim"):
    model.apply(params, segments, prompt_embeddings=jnp.zeros((1, 3, 7)))
  with pytest.raises(ValueError, match="state_dim"):
    model.apply(params, segments._replace(states=segments.states[..., :2]))


def test_adapters_start_as_identity(setup):
  model, params, segments, prompt = setup
  adapted = make_model(adapter_dim=4)
  adapter_params = adapted.init(jax.random.key(11), segments, prompt)["params"]
  for i in range(2):
    assert set(adapter_params[f"blocks_{i}"]["adapter"]) == {"attention", "mlp"}
  flat = flax.traverse_util.flatten_dict(adapter_params)
  base_flat = flax.traverse_util.flatten_dict(params["params"])
  # Apart from the adapters, the parameter trees are identical.
  assert {k for k in flat if "adapter" not in k} == set(base_flat)
  merged = {k: base_flat.get(k, v) for k, v in flat.items()}
  merged = {"params": flax.traverse_util.unflatten_dict(merged)}
  expected = model.apply(params, segments, prompt)
  np.testing.assert_array_equal(adapted.apply(merged, segments, prompt),
                                expected)
  # A non-zero up-projection does change the output: adapters are wired in.
  key = ("blocks_1", "adapter", "mlp", "up", "bias")
  flat_changed = dict(flax.traverse_util.flatten_dict(merged["params"]))
  flat_changed[key] = jax.random.normal(jax.random.key(12), (HIDDEN,))
  changed = {"params": flax.traverse_util.unflatten_dict(flat_changed)}
  assert not np.allclose(adapted.apply(changed, segments, prompt), expected)


def test_dropout_uses_dropout_rng(setup):
  model, params, segments, prompt = setup
  def run(seed):
    return model.apply(params, segments, prompt, deterministic=False,
                       rngs={"dropout": jax.random.key(seed)})
  np.testing.assert_array_equal(run(0), run(0))
  assert not np.allclose(run(0), run(1))
  assert not np.allclose(run(0), model.apply(params, segments, prompt))


def test_make_prompt_dt_from_config():
  config = prompt_dt_configs.get_config()
  model = make_prompt_dt(config, state_dim=17, act_dim=6)
  assert (model.state_dim, model.act_dim) == (17, 6)
  assert (model.hidden_dim, model.num_layers, model.num_heads,
          model.mlp_dim) == (128, 3, 1, 512)
  assert model.dropout_rate == 0.1 and model.action_tanh


@pytest.mark.parametrize("field,value,match", [
    ("hidden_dim", 0, "hidden_dim"),
    ("num_heads", 3, "divisible by num_heads"),
    ("dropout_rate", 1.0, "dropout_rate"),
    ("adapter_dim", -1, "adapter_dim"),
    ("activation", "tanh", "activation"),
    ("state_dim", 5, "state_dim=5 does not match"),
])
def test_make_prompt_dt_rejects_bad_config(field, value, match):
  config = prompt_dt_configs.get_config()
  config[field] = value
  with pytest.raises(ValueError, match=match):
    make_prompt_dt(config, state_dim=17, act_dim=6)


def test_make_prompt_dt_needs_dims():
  with pytest.raises(ValueError, match="state_dim must be positive"):
    make_prompt_dt(prompt_dt_configs.get_config())


def test_layer_norms_use_gpt2_epsilon(setup):
  """Every LayerNorm of the model (embedding, blocks, final) uses 1e-5."""
  model, params, segments, prompt = setup
  seen = []

  def record(next_fun, args, kwargs, context):
    if isinstance(context.module, flax.linen.LayerNorm):
      seen.append(context.module.epsilon)
    return next_fun(*args, **kwargs)

  with flax.linen.intercept_methods(record):
    model.apply(params, segments, prompt)
  # embed_ln, final_ln and two per block.
  assert seen == [1e-5] * (2 + 2 * model.num_layers)


def test_layer_norm_matches_the_1e_5_formula(setup):
  """On an input of variance 1e-6 the epsilon dominates the normalisation."""
  model, params, _, _ = setup
  x = jnp.tile(jnp.array([1e-3, -1e-3]), HIDDEN // 2)[None]  # mean 0, var 1e-6
  out = model.apply(params, x, method=lambda m, x: m.final_ln(x))
  np.testing.assert_allclose(out, x / np.sqrt(1e-6 + 1e-5), rtol=1e-4)
