"""Tests of the Prompt-DT pre-training loop: resume, logging, checks."""

import functools
import os

import jax
import numpy as np
import pytest

from pdiff import parallel
from pdiff.training import load_pretrained, train
from pdiff.training.checkpointing import make_checkpoint_manager
from pdiff.training.loop import place_batch
from tests.training.synthetic_data import synthetic_batch, tiny_config

BATCH = 8  # divisible by the 8 forced host devices


@pytest.fixture(scope="module")
def run():
  """Trains 6 steps in one go, and 3 + resumed 3 in another directory."""
  config = tiny_config()
  sample = functools.partial(synthetic_batch, batch=BATCH)
  init_batch = sample(jax.random.key(0))

  def do_train(workdir, num_steps):
    return train(config, sample, init_batch, str(workdir), num_steps=num_steps,
                 log_every=2, ckpt_every=2)

  return do_train


def test_resume_equals_uninterrupted_run(run, tmp_path):
  straight = run(tmp_path / "straight", 6)
  first = run(tmp_path / "resumed", 3)
  assert int(first.step) == 3
  manager = make_checkpoint_manager(str(tmp_path / "resumed"))
  assert manager.all_steps() == [2, 3]
  manager.close()
  resumed = run(tmp_path / "resumed", 6)
  assert int(straight.step) == int(resumed.step) == 6
  jax.tree.map(np.testing.assert_array_equal, resumed.params, straight.params)
  jax.tree.map(np.testing.assert_array_equal, resumed.opt_state,
               straight.opt_state)
  # The first 3 steps did change the parameters.
  changed = jax.tree.map(lambda a, b: not np.array_equal(a, b),
                         first.params, straight.params)
  assert any(jax.tree.leaves(changed))

  # Nothing left to do: returns the checkpointed state without training.
  again = run(tmp_path / "resumed", 6)
  jax.tree.map(np.testing.assert_array_equal, again.params, straight.params)

  model, params = load_pretrained(str(tmp_path / "resumed"))
  assert (model.state_dim, model.act_dim, model.hidden_dim) == (3, 2, 16)
  jax.tree.map(np.testing.assert_array_equal, params, straight.params)
  events = os.listdir(tmp_path / "straight" / "tensorboard")
  assert any(name.startswith("events.out.tfevents") for name in events)


def test_indivisible_batch_raises(tmp_path):
  sample = functools.partial(synthetic_batch, batch=6)
  with pytest.raises(ValueError, match=r"global batch size 6 must be divis"):
    train(tiny_config(), sample, sample(jax.random.key(0)), str(tmp_path),
          num_steps=1)


@pytest.mark.parametrize("kwargs,match", [
    ({"num_steps": -1}, "num_steps"),
    ({"num_steps": 1, "log_every": 0}, "log_every"),
    ({"num_steps": 1, "ckpt_every": 0}, "ckpt_every"),
])
def test_bad_arguments_raise(tmp_path, kwargs, match):
  sample = functools.partial(synthetic_batch, batch=BATCH)
  with pytest.raises(ValueError, match=match):
    train(tiny_config(), sample, sample(jax.random.key(0)), str(tmp_path),
          **kwargs)


def test_place_batch_shards_segments_and_replicates_a_shared_prompt():
  mesh = parallel.make_mesh()
  segments, prompts = synthetic_batch(jax.random.key(0), BATCH)
  shared = jax.tree.map(lambda x: x[:1], prompts)
  placed_segments, placed_prompt = place_batch((segments, shared), mesh)
  assert placed_segments.states.sharding.shard_shape(
      segments.states.shape)[0] == BATCH // 8
  assert placed_prompt.states.sharding.is_fully_replicated
  _, placed_prompts = place_batch((segments, prompts), mesh)
  assert not placed_prompts.states.sharding.is_fully_replicated


def test_changed_model_is_refused_before_anything_is_written(run, tmp_path):
  run(tmp_path / "run", 2)
  config_path = tmp_path / "run" / "config.json"
  before = config_path.read_text()
  config = tiny_config()
  config.model.hidden_dim = 2 * config.model.hidden_dim
  sample = functools.partial(synthetic_batch, batch=BATCH)
  with pytest.raises(ValueError, match=r"model.*hidden_dim.*delete"):
    train(config, sample, sample(jax.random.key(0)), str(tmp_path / "run"),
          num_steps=4, log_every=2, ckpt_every=2)
  assert config_path.read_text() == before
  again = run(tmp_path / "run", 2)  # the intact checkpoint still loads
  assert int(again.step) == 2


@pytest.mark.parametrize("loader", ["resume", "load_pretrained"])
def test_damaged_checkpoint_names_its_directory(run, tmp_path, loader):
  run(tmp_path / "run", 2)
  step_dir = tmp_path / "run" / "checkpoints" / "2"
  for directory, _, files in os.walk(step_dir):
    for name in files:
      path = os.path.join(directory, name)
      with open(path, "r+b") as f:
        f.write(b"\x00garbled\x00" * 4)
  with pytest.raises(ValueError, match=str(step_dir)):
    if loader == "resume":
      run(tmp_path / "run", 4)
    else:
      load_pretrained(str(tmp_path / "run"))
