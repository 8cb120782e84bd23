"""Tests of the optimizer, loss and train step of Prompt-DT pre-training."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from pdiff import parallel
from pdiff.models import make_prompt_dt
from pdiff.training import (
    create_train_state,
    eval_step,
    make_learning_rate_schedule,
    make_optimizer,
    train_step,
)
from pdiff.training.prompt_dt_step import default_microbatches, tokens_per_row
from tests.training.synthetic_data import (
    PROMPT_STEPS,
    STEPS,
    synthetic_batch,
    tiny_config,
)


@pytest.fixture(scope="module")
def initial():
  """A tiny model's fresh state and a batch of 16 (shared: compiles once)."""
  config = tiny_config(learning_rate=3e-3)
  batch = synthetic_batch(jax.random.key(0), 16)
  return make_state(config, batch), batch


def make_state(config, batch):
  segments, _ = batch
  model = make_prompt_dt(config.model, state_dim=segments.states.shape[-1],
                         act_dim=segments.actions.shape[-1])
  return create_train_state(model, make_optimizer(config), jax.random.key(0),
                            batch)


def test_learning_rate_warms_up_linearly_then_stays():
  config = tiny_config(learning_rate=2e-4, warmup_steps=4)
  schedule = make_learning_rate_schedule(config)
  got = [float(schedule(jnp.asarray(t))) for t in range(7)]
  expected = [2e-4 * min((t + 1) / 4, 1.0) for t in range(7)]
  np.testing.assert_allclose(got, expected, rtol=1e-6)
  constant = make_learning_rate_schedule(tiny_config(warmup_steps=0))
  assert float(constant(jnp.asarray(0))) == pytest.approx(1e-3)


@pytest.mark.parametrize("field,value", [
    ("learning_rate", 0.0), ("warmup_steps", -1), ("grad_clip_norm", 0.0),
    ("weight_decay", -1e-4)])
def test_make_optimizer_rejects_bad_hyperparameters(field, value):
  config = tiny_config()
  config[field] = value
  with pytest.raises(ValueError, match=field):
    make_optimizer(config)


def test_optimizer_clips_gradients_to_global_norm():
  config = tiny_config(learning_rate=1.0)
  config.weight_decay = 0.0
  tx = make_optimizer(config)
  params = {"w": jnp.zeros(3)}
  state = tx.init(params)
  # After clipping, Adam's first step is lr * g / (|g| + eps) per entry, the
  # same for a huge and a clipped-size gradient with the same direction.
  big, _ = tx.update({"w": jnp.array([300.0, -400.0, 0.0])}, state, params)
  small, _ = tx.update({"w": jnp.array([0.15, -0.2, 0.0])}, state, params)
  np.testing.assert_allclose(big["w"], small["w"], rtol=1e-5)


def test_tiny_run_loss_falls(initial):
  state, _ = initial
  eval_batch = synthetic_batch(jax.random.key(100), 16)
  initial_loss = float(eval_step(state, eval_batch))
  for step in range(150):
    batch = synthetic_batch(jax.random.key(step), 16)
    state, metrics = train_step(state, batch, jax.random.key(10_000 + step))
  assert int(state.step) == 150
  assert np.isfinite(float(metrics["loss"]))
  final_loss = float(eval_step(state, eval_batch))
  assert final_loss < 0.3 * initial_loss, (initial_loss, final_loss)


def test_sharded_step_equals_single_device_step(initial):
  assert jax.device_count() == 8, "tests/conftest.py forces 8 host devices"
  state, batch = initial
  key = jax.random.key(1)
  single_state, single_metrics = train_step(state, batch, key)

  mesh = parallel.make_mesh()
  sharded_batch = parallel.shard_batch(batch, mesh)
  assert len(sharded_batch[0].states.sharding.device_set) == 8
  step_fn = jax.jit(train_step,
                    out_shardings=parallel.replicated_sharding(mesh))
  sharded_state, sharded_metrics = step_fn(parallel.replicate(state, mesh),
                                           sharded_batch, key)
  kernel = sharded_state.params["embed_state"]["kernel"]
  assert kernel.sharding.is_equivalent_to(parallel.replicated_sharding(mesh),
                                          kernel.ndim)
  np.testing.assert_allclose(sharded_metrics["loss"], single_metrics["loss"],
                             rtol=1e-5)
  jax.tree.map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
      sharded_state.params, single_state.params)


def sgd_state(state):
  """`state` with plain SGD (lr 1): the update is minus the gradient."""
  return state.replace(tx=optax.sgd(1.0),
                       opt_state=optax.sgd(1.0).init(state.params))


@pytest.mark.parametrize("shared_prompt", [False, True])
@pytest.mark.parametrize("microbatches", [2, 4, 16])
def test_microbatched_step_equals_whole_batch_step(initial, microbatches,
                                                   shared_prompt):
  """Same loss, gradients and dropout masks, summed in another order."""
  state, (segments, prompts) = initial
  if shared_prompt:
    prompts = jax.tree.map(lambda x: x[:1], prompts)
  state, key = sgd_state(state), jax.random.key(3)
  whole, whole_metrics = train_step(state, (segments, prompts), key,
                                    microbatches=1)
  split, metrics = train_step(state, (segments, prompts), key,
                              microbatches=microbatches)
  # Another dropout key changes the loss far more than the tolerance.
  _, other = train_step(state, (segments, prompts), jax.random.key(4),
                        microbatches=1)
  assert abs(float(other["loss"]) - float(whole_metrics["loss"])) > 1e-3
  for name in ("loss", "grad_norm"):
    np.testing.assert_allclose(metrics[name], whole_metrics[name], rtol=1e-5)
  jax.tree.map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
      split.params, whole.params)


def test_microbatches_must_divide_the_batch(initial):
  state, batch = initial
  with pytest.raises(ValueError, match="divisor of the batch size 16"):
    train_step(state, batch, jax.random.key(0), microbatches=3)


def test_default_microbatches():
  # Prompt-DT's batch: 560 rows of 3 * (20 + 5) tokens.
  assert tokens_per_row(synthetic_batch(jax.random.key(0), 2)) == 3 * (
      STEPS + PROMPT_STEPS)
  assert default_microbatches(560, 75, backend="cpu") == 28  # 20 rows each
  assert default_microbatches(560, 75, devices=8, backend="cpu") == 5
  assert default_microbatches(560, 75, backend="gpu") == 1
  assert default_microbatches(560, 75, devices=3, backend="cpu") == 1
  assert default_microbatches(16, 18, backend="cpu") == 1
  assert default_microbatches(4, 10_000, backend="cpu") == 4
  # The unqualified step splits as default_microbatches says (here: not).
  assert default_microbatches(16, 18) == 1


def test_sharded_microbatched_step_equals_single_device_step(initial):
  state, batch = initial
  state, key = sgd_state(state), jax.random.key(1)
  single_state, single_metrics = train_step(state, batch, key,
                                            microbatches=1)
  mesh = parallel.make_mesh()
  step_fn = jax.jit(lambda s, b, k: train_step(s, b, k, microbatches=2),
                    out_shardings=parallel.replicated_sharding(mesh))
  sharded_state, sharded_metrics = step_fn(
      parallel.replicate(state, mesh), parallel.shard_batch(batch, mesh), key)
  np.testing.assert_allclose(sharded_metrics["loss"], single_metrics["loss"],
                             rtol=1e-5)
  jax.tree.map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
      sharded_state.params, single_state.params)
