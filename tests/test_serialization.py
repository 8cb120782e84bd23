"""Checked parameter files (pdiff.serialization)."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdiff import serialization

TEMPLATE = {"dense": {"kernel": jnp.zeros((3, 2)), "bias": jnp.zeros((2,))},
            "scale": jnp.ones((), jnp.float32)}


def params():
  k = jax.random.key(0)
  return jax.tree.map(lambda x: jax.random.normal(k, x.shape, x.dtype),
                      TEMPLATE)


def test_round_trip(tmp_path):
  path = str(tmp_path / "p.msgpack")
  serialization.save_params(path, params())
  loaded = serialization.load_params(path, TEMPLATE)
  jax.tree.map(np.testing.assert_array_equal, loaded, params())
  assert os.listdir(tmp_path) == ["p.msgpack"]  # no temporary left


@pytest.mark.parametrize("template,match", [
    ({"dense": {"kernel": jnp.zeros((3, 4)), "bias": jnp.zeros((2,))},
      "scale": jnp.ones(())}, r"/dense/kernel has shape \(3, 2\), expected "
                              r"\(3, 4\)"),
    ({"dense": {"kernel": jnp.zeros((3, 2)), "bias": jnp.zeros((2,))},
      "scale": jnp.ones((), jnp.int32)}, "/scale has dtype float32, expected "
                                         "int32"),
    ({"dense": {"kernel": jnp.zeros((3, 2))}, "scale": jnp.ones(())},
     r"unexpected \['bias'\]"),
    ({"dense": {"kernel": jnp.zeros((3, 2)), "bias": jnp.zeros((2,)),
                "extra": jnp.zeros(1)}, "scale": jnp.ones(())},
     r"missing \['extra'\]"),
])
def test_mismatch_names_file_and_leaf(tmp_path, template, match):
  path = str(tmp_path / "p.msgpack")
  serialization.save_params(path, params())
  with pytest.raises(serialization.ParamsFileError, match=match) as e:
    serialization.load_params(path, template)
  assert path in str(e.value)


@pytest.mark.parametrize("damage", ["truncate", "garble", "empty", "missing"])
def test_damaged_file_names_the_file(tmp_path, damage):
  path = str(tmp_path / "p.msgpack")
  serialization.save_params(path, params())
  data = open(path, "rb").read()
  if damage == "truncate":
    open(path, "wb").write(data[: len(data) // 2])
  elif damage == "garble":
    open(path, "wb").write(b"\xc1" * len(data))
  elif damage == "empty":
    open(path, "wb").write(b"")
  else:
    os.remove(path)
  with pytest.raises(serialization.ParamsFileError) as e:
    serialization.load_params(path, TEMPLATE)
  assert path in str(e.value)
