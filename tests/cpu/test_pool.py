"""Max pooling as strided slices computes what ``reduce_window`` computes; accelerators and plain
models keep ``reduce_window``."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from cnnjax import cpu
from cnnjax.cpu import pool
from cnnjax.models import layers


def lowered(fn, *args, platform=None):
  traced = jax.jit(fn).trace(*args)
  out = traced.lower(lowering_platforms=(platform,)) if platform else traced.lower()
  return out.as_text()


@pytest.mark.parametrize("window,stride,pads", [
    (2, 2, ((0, 0), (0, 0))),   # LeNet, VGG
    (3, 2, ((1, 1), (1, 1))),   # ResNet stem
    (3, 2, ((0, 1), (0, 1))),   # a ceil_mode window
    (3, 1, ((1, 1), (1, 1))),   # GoogLeNet's pool branch
])
def test_slices_match_reduce_window_value_and_gradient(window, stride, pads):
  x = jax.random.normal(jax.random.key(0), (2, 9, 9, 3))  # no ties
  ref = lambda x: nn.max_pool(x, (window, window), (stride, stride), padding=pads)
  ours = lambda x: pool.max_pool_slices(x, window, stride, pads)
  np.testing.assert_array_equal(ours(x), ref(x))
  g = jax.random.normal(jax.random.key(1), ref(x).shape)
  grad = lambda f: jax.grad(lambda x: jnp.sum(f(x) * g))(x)
  np.testing.assert_allclose(grad(ours), grad(ref), rtol=0, atol=1e-6)


def test_tied_maxima_share_the_gradient_and_keep_its_sum():
  x = jnp.zeros((1, 2, 2, 1))
  grad = jax.grad(lambda x: jnp.sum(pool.max_pool_slices(x, 2, 2, ((0, 0), (0, 0)))))(x)
  assert float(grad.sum()) == pytest.approx(1.0)


def test_cpu_lowers_slices_and_accelerators_keep_reduce_window():
  x = jnp.ones((2, 8, 8, 3))
  fn = lambda x: pool.max_pool(x, 3, 2, ((1, 1), (1, 1)))
  assert "reduce_window" not in lowered(fn, x)
  assert "reduce_window" in lowered(fn, x, platform="cuda")


@pytest.mark.parametrize("kind,ceil_mode", [("max", False), ("max", True), ("avg", False)])
def test_pool_module_through_the_lowering(kind, ceil_mode):
  module = layers.Pool(kind, 3, 2, padding=1, ceil_mode=ceil_mode)
  x = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
  plain = lambda x: module.apply({}, x)
  want = plain(x)
  with cpu.lowering():
    text = lowered(lambda x: module.apply({}, x), x)  # a new function: a new trace
    got = jax.jit(lambda x: module.apply({}, x))(x)
  assert ("reduce_window" in text) == (kind == "avg")
  assert "reduce_window" in lowered(plain, x)
  np.testing.assert_array_equal(got, want)
