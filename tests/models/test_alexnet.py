"""AlexNet (cnnjax/models/alexnet.py) and its torchvision converter (transfer/tv_alexnet.py).

fc6 alone has 37.7M weights, so forward tests run on cheap numpy-filled variables in the tree
``jax.eval_shape(model.init)`` gives, not on JAX's (slow on CPU) random init.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax.models import layers, registry
from tests.models.common import abstract_variables, numpy_input

SOWN = {"stem", "stage1", "stage2", "stage3", "pre_logits"}
OPTIONS = [{"activation": a} for a in ("relu", "leaky_relu", "elu", "gelu", "tanh")] + [
    {"pool": "avg"}, {"dropout": 0.2}, {"dtype": "bfloat16"}, {"negative_slope": 0.2}]


@functools.lru_cache(maxsize=1)
def _variables(original):
  """He-uniform-like variables: each leaf repeats one block of uniform noise (cheap)."""
  noise = np.random.default_rng(0).random(1_000_003, np.float32) * 2 - 1

  def fill(path, leaf):
    u = np.resize(noise, leaf.shape)
    fan_in = np.prod(leaf.shape[:-1]) if path[-1].key == "kernel" else 300.0
    return jax.device_put(u * np.float32(np.sqrt(6.0 / fan_in)))

  model = registry.create("alexnet", original=original)
  return jax.tree_util.tree_map_with_path(fill, abstract_variables(model, 63))


def _count(tree):
  return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(tree))


@pytest.mark.parametrize("original,count", [(False, 61_100_840), (True, 60_965_224)])
def test_parameter_count(original, count):
  assert _count(abstract_variables(registry.create("alexnet", original=original), 224)["params"]) == count


def test_original_is_two_towers():
  params = abstract_variables(registry.create("alexnet", original=True), 224)["params"]
  kernels = {name: p["kernel"].shape for name, p in params.items()}
  assert kernels == {
      "conv1": (11, 11, 3, 96), "conv2": (5, 5, 48, 256), "conv3": (3, 3, 256, 384),
      "conv4": (3, 3, 192, 384), "conv5": (3, 3, 192, 256),
      "fc6": (9216, 4096), "fc7": (4096, 4096), "fc8": (4096, 1000)}


@pytest.mark.parametrize("original", [False, True])
def test_paper_map_sizes_and_intermediates(original):
  model = registry.create("alexnet", original=original)
  x = jax.ShapeDtypeStruct((2, 224, 224, 3), jnp.float32)
  _, state = jax.eval_shape(lambda v, x: model.apply(
      v, x, mutable=["intermediates"], capture_intermediates=True), abstract_variables(model, 224), x)
  sizes = {k: v["__call__"][0].shape[1] for k, v in state["intermediates"].items()
           if k.startswith(("conv", "pool"))}
  assert sizes == {"conv1": 55, "pool1": 27, "conv2": 27, "pool2": 13, "conv3": 13,
                   "conv4": 13, "conv5": 13, "pool5": 6}
  assert SOWN <= set(state["intermediates"])


@pytest.mark.parametrize("original", [False, True])
def test_min_input_size(original):
  model, size = registry.create("alexnet", original=original), 63
  assert registry.get_spec("alexnet").min_input_size == size
  x = jax.ShapeDtypeStruct((2, size, size, 3), jnp.float32)
  logits, state = jax.eval_shape(
      lambda v, x: model.apply(v, x, mutable=["intermediates"]), abstract_variables(model, size), x)
  assert logits.shape == (2, 1000) and logits.dtype == jnp.float32
  assert set(state["intermediates"]) == SOWN
  with pytest.raises(Exception):
    abstract_variables(model, size - 1)


@pytest.mark.parametrize("opts", OPTIONS + [dict(o, original=True) for o in OPTIONS])
def test_every_option_builds_and_traces(opts):
  model = registry.create("alexnet", **opts)
  x = jax.ShapeDtypeStruct((2, 63, 63, 3), jnp.float32)
  out = jax.eval_shape(lambda v, x: model.apply(
      v, x, train=True, rngs={"dropout": jax.random.key(0)}), abstract_variables(model, 63), x)
  assert out.shape == (2, 1000) and out.dtype == jnp.float32


@pytest.mark.e2e
@pytest.mark.parametrize("opts", [
    {},
    {"activation": "leaky_relu", "pool": "avg"},
    {"original": True, "activation": "elu", "dtype": "bfloat16"},
])
def test_forward_train_and_eval(opts):
  model, variables = registry.create("alexnet", **opts), _variables(opts.get("original", False))
  x = numpy_input(63)
  eval_out = model.apply(variables, x, train=False)
  train_out = model.apply(variables, x, train=True, rngs={"dropout": jax.random.key(1)})
  for out in (eval_out, train_out):
    assert out.shape == (2, 1000) and out.dtype == jnp.float32 and np.isfinite(out).all()
  assert not np.allclose(eval_out, train_out)  # dropout is active in train mode only


def test_local_response_norm_matches_torch():
  torch = pytest.importorskip("torch")
  x = numpy_input(7, seed=3) * 10
  want = torch.nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)(
      torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy().transpose(0, 2, 3, 1)
  np.testing.assert_allclose(layers.local_response_norm(x), want, rtol=1e-5, atol=1e-6)


@pytest.mark.e2e
def test_torchvision_parity():
  torch = pytest.importorskip("torch")
  torchvision = pytest.importorskip("torchvision")
  from cnnjax.transfer import tv_alexnet

  torch.manual_seed(0)
  tv = getattr(torchvision.models, tv_alexnet.TORCHVISION["alexnet"])(weights=None).eval()
  variables = tv_alexnet.CONVERTERS["alexnet"](tv.state_dict())
  model = registry.create("alexnet")
  # At 224 pool5 gives 6×6 maps: fc6's (C, H, W) -> (H, W, C) row permutation is exercised.
  assert jax.tree.map(np.shape, variables) == jax.tree.map(
      lambda s: s.shape, abstract_variables(model, 224))
  x = numpy_input(224)
  with torch.no_grad():
    want = tv(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
  got = np.asarray(model.apply(variables, x, train=False))
  assert np.abs(got - want).max() <= 1e-4


def test_original_trunk_matches_torch():
  """The 2012 trunk (grouped convs, LRN, overlapping pools) against the same layers in torch."""
  torch = pytest.importorskip("torch")
  from cnnjax.transfer import torch_layout

  tnn, lrn = torch.nn, lambda: torch.nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)
  torch.manual_seed(0)
  trunk = tnn.Sequential(
      tnn.Conv2d(3, 96, 11, 4, 2), tnn.ReLU(), lrn(), tnn.MaxPool2d(3, 2),
      tnn.Conv2d(96, 256, 5, padding=2, groups=2), tnn.ReLU(), lrn(), tnn.MaxPool2d(3, 2),
      tnn.Conv2d(256, 384, 3, padding=1), tnn.ReLU(),
      tnn.Conv2d(384, 384, 3, padding=1, groups=2), tnn.ReLU(),
      tnn.Conv2d(384, 256, 3, padding=1, groups=2), tnn.ReLU(), tnn.MaxPool2d(3, 2)).eval()
  names = {"0": "conv1", "4": "conv2", "8": "conv3", "10": "conv4", "12": "conv5"}
  convs = torch_layout.to_flax(trunk.state_dict(), lambda m: (names[m],))["params"]
  variables = {"params": {**_variables(True)["params"], **convs}}
  x = numpy_input(127) * 20  # large enough that LRN is far from a constant scaling
  with torch.no_grad():
    want = trunk(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy().transpose(0, 2, 3, 1)
  _, state = registry.create("alexnet", original=True).apply(
      variables, x, mutable=["intermediates"])
  got = np.asarray(state["intermediates"]["stage3"][0])
  assert got.shape == want.shape == (2, 3, 3, 256)
  assert np.abs(got - want).max() <= 1e-4
