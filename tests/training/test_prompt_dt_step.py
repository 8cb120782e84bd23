"""Tests of the optimizer, loss and train step of Prompt-DT pre-training."""

import jax
import jax.numpy as jnp
import numpy as np
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
from tests.training.synthetic_data import synthetic_batch, tiny_config


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
