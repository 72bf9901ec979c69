"""ZFNet (cnnjax/models/zfnet.py): counts, Fig. 3's map sizes, options and forward passes.

torchvision has no ZFNet, so there is no parity test. fc6 alone has 37.7M weights, so forward
tests run on cheap numpy-filled variables in the tree ``jax.eval_shape(model.init)`` gives.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax.models import registry
from tests.models.common import abstract_variables, numpy_input

SOWN = {"stem", "stage1", "stage2", "stage3", "pre_logits"}
MIN_SIZE = 47


@functools.lru_cache(maxsize=1)
def _variables():
  """He-uniform-like variables: each leaf repeats one block of uniform noise (cheap)."""
  noise = np.random.default_rng(0).random(1_000_003, np.float32) * 2 - 1

  def fill(path, leaf):
    u = np.resize(noise, leaf.shape)
    fan_in = np.prod(leaf.shape[:-1]) if path[-1].key == "kernel" else 300.0
    return jax.device_put(u * np.float32(np.sqrt(6.0 / fan_in)))

  return jax.tree_util.tree_map_with_path(fill, abstract_variables(registry.create("zfnet"), MIN_SIZE))


@pytest.mark.parametrize("lrn", [False, True])
def test_parameter_count(lrn):
  params = abstract_variables(registry.create("zfnet", lrn=lrn), 224)["params"]
  assert sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params)) == 62_357_608


@pytest.mark.parametrize("lrn", [False, True])
def test_fig3_map_sizes_and_intermediates(lrn):
  model = registry.create("zfnet", lrn=lrn)
  x = jax.ShapeDtypeStruct((2, 224, 224, 3), jnp.float32)
  _, state = jax.eval_shape(lambda v, x: model.apply(
      v, x, mutable=["intermediates"], capture_intermediates=True), abstract_variables(model, 224), x)
  shapes = {k: v["__call__"][0].shape[1:] for k, v in state["intermediates"].items()
            if k.startswith(("conv", "pool"))}
  assert shapes == {
      "conv1": (110, 110, 96), "pool1": (55, 55, 96), "conv2": (26, 26, 256),
      "pool2": (13, 13, 256), "conv3": (13, 13, 384), "conv4": (13, 13, 384),
      "conv5": (13, 13, 256), "pool5": (6, 6, 256)}
  assert SOWN <= set(state["intermediates"])
  assert state["intermediates"]["fc6"]["__call__"][0].shape == (2, 4096)


def test_min_input_size():
  model = registry.create("zfnet")
  assert registry.get_spec("zfnet").min_input_size == MIN_SIZE
  x = jax.ShapeDtypeStruct((2, MIN_SIZE, MIN_SIZE, 3), jnp.float32)
  logits, state = jax.eval_shape(
      lambda v, x: model.apply(v, x, mutable=["intermediates"]), abstract_variables(model, MIN_SIZE), x)
  assert logits.shape == (2, 1000) and logits.dtype == jnp.float32
  assert set(state["intermediates"]) == SOWN
  with pytest.raises(Exception):
    abstract_variables(model, MIN_SIZE - 1)


@pytest.mark.parametrize("opts", [{"activation": a} for a in (
    "relu", "leaky_relu", "elu", "gelu", "tanh")] + [
    {"pool": "avg"}, {"dropout": 0.2}, {"dtype": "bfloat16"}, {"negative_slope": 0.2},
    {"lrn": True}])
def test_every_option_builds_and_traces(opts):
  model = registry.create("zfnet", **opts)
  x = jax.ShapeDtypeStruct((2, MIN_SIZE, MIN_SIZE, 3), jnp.float32)
  out = jax.eval_shape(lambda v, x: model.apply(
      v, x, train=True, rngs={"dropout": jax.random.key(0)}), abstract_variables(model, MIN_SIZE), x)
  assert out.shape == (2, 1000) and out.dtype == jnp.float32


@pytest.mark.e2e
@pytest.mark.parametrize("opts", [
    {},
    {"lrn": True, "pool": "avg", "activation": "leaky_relu", "dtype": "bfloat16"},
])
def test_forward_train_and_eval(opts):
  model, variables = registry.create("zfnet", **opts), _variables()
  x = numpy_input(MIN_SIZE)
  eval_out = model.apply(variables, x, train=False)
  train_out = model.apply(variables, x, train=True, rngs={"dropout": jax.random.key(1)})
  for out in (eval_out, train_out):
    assert out.shape == (2, 1000) and out.dtype == jnp.float32 and np.isfinite(out).all()
  assert not np.allclose(eval_out, train_out)  # dropout is active in train mode only


def test_lrn_changes_the_output():
  x = numpy_input(MIN_SIZE) * 50  # large activations, so the normalisation is far from identity
  plain = registry.create("zfnet").apply(_variables(), x)
  normed = registry.create("zfnet", lrn=True).apply(_variables(), x)
  assert not np.allclose(plain, normed)


@pytest.mark.parametrize("size", [MIN_SIZE, 224])
def test_trunk_matches_torch(size):
  """Fig. 3's trunk (ceil-mode pools, LRN after pooling) against the same layers in torch."""
  torch = pytest.importorskip("torch")
  from cnnjax.transfer import torch_layout

  tnn, lrn = torch.nn, lambda: torch.nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)
  pool = lambda: tnn.MaxPool2d(3, 2, ceil_mode=True)
  torch.manual_seed(0)
  trunk = tnn.Sequential(
      tnn.Conv2d(3, 96, 7, 2, 1), tnn.ReLU(), pool(), lrn(),
      tnn.Conv2d(96, 256, 5, 2), tnn.ReLU(), pool(), lrn(),
      tnn.Conv2d(256, 384, 3, padding=1), tnn.ReLU(),
      tnn.Conv2d(384, 384, 3, padding=1), tnn.ReLU(),
      tnn.Conv2d(384, 256, 3, padding=1), tnn.ReLU(), pool()).eval()
  names = {"0": "conv1", "4": "conv2", "8": "conv3", "10": "conv4", "12": "conv5"}
  convs = torch_layout.to_flax(trunk.state_dict(), lambda m: (names[m],))["params"]
  variables = {"params": {**_variables()["params"], **convs}}
  x = numpy_input(size) * 20  # large enough that LRN is far from a constant scaling
  with torch.no_grad():
    want = trunk(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy().transpose(0, 2, 3, 1)
  _, state = registry.create("zfnet", lrn=True).apply(variables, x, mutable=["intermediates"])
  got = np.asarray(state["intermediates"]["stage3"][0])
  assert got.shape == want.shape
  assert np.abs(got - want).max() <= 1e-4
