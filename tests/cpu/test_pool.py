"""The CPU formulations compute what XLA's own ops compute, and accelerators never see them."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from jax import lax

from cnnjax.models import kernels, layers, registry


def reference_conv(x, w, pads):
  return lax.conv_general_dilated(x, w, (1, 1), pads, dimension_numbers=kernels.NHWC)


@pytest.mark.parametrize("window,stride,pads", [
    (2, 2, ((0, 0), (0, 0))),   # LeNet, VGG
    (3, 2, ((1, 1), (1, 1))),   # ResNet stem
    (3, 2, ((0, 1), (0, 1))),   # a ceil_mode window
    (3, 1, ((1, 1), (1, 1))),   # GoogLeNet's pool branch
])
def test_max_pool_taps_matches_reduce_window_value_and_gradient(window, stride, pads):
  x = jax.random.normal(jax.random.key(0), (2, 9, 9, 3))  # no ties
  ref = lambda x: nn.max_pool(x, (window, window), (stride, stride), padding=pads)
  ours = lambda x: kernels.max_pool_taps(x, window, stride, pads)
  np.testing.assert_array_equal(ours(x), ref(x))
  g = jax.random.normal(jax.random.key(1), ref(x).shape)
  grad = lambda f: jax.grad(lambda x: jnp.sum(f(x) * g))(x)
  np.testing.assert_allclose(grad(ours), grad(ref), rtol=0, atol=1e-6)


def test_tied_maxima_share_the_gradient_and_keep_its_sum():
  x = jnp.zeros((1, 2, 2, 1))
  grad = jax.grad(lambda x: jnp.sum(kernels.max_pool_taps(x, 2, 2, ((0, 0), (0, 0)))))(x)
  assert float(grad.sum()) == pytest.approx(1.0)


@pytest.mark.parametrize("x_shape,w_shape,pads", [
    ((4, 2, 2, 32), (3, 3, 32, 16), ((1, 1), (1, 1))),  # ResNet-18's 2×2 stage at 32×32
    ((4, 1, 1, 24), (3, 3, 24, 8), ((1, 1), (1, 1))),   # 1×1 maps
    ((3, 2, 2, 5), (1, 1, 5, 7), ((0, 0), (0, 0))),     # a 1×1 projection
])
def test_taps_conv_matches_xla_value_and_gradients(x_shape, w_shape, pads):
  assert kernels.taps_on_cpu(x_shape)
  x = jax.random.normal(jax.random.key(0), x_shape)
  w = jax.random.normal(jax.random.key(1), w_shape)
  ours = lambda x, w: kernels.taps_conv(x, w, pads)
  ref = lambda x, w: reference_conv(x, w, pads)
  np.testing.assert_allclose(ours(x, w), ref(x, w), rtol=1e-5, atol=1e-4)
  g = jax.random.normal(jax.random.key(2), ref(x, w).shape)
  grads = lambda f: jax.grad(lambda x, w: jnp.sum(f(x, w) * g), argnums=(0, 1))(x, w)
  for a, b in zip(grads(ours), grads(ref)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)


def test_taps_that_only_read_padding_are_skipped():
  real = kernels._real_taps  # pylint: disable=protected-access
  assert real((3, 3), (1, 1), (1, 1), ((1, 1), (1, 1))) == [(1, 1)]
  assert len(real((3, 3), (2, 2), (2, 2), ((1, 1), (1, 1)))) == 9
  assert real((1, 1), (2, 2), (2, 2), ((0, 0), (0, 0))) == [(0, 0)]


def test_xla_is_kept_where_it_is_faster():
  assert not kernels.taps_on_cpu((128, 32, 32, 16))
  assert not kernels.taps_on_cpu((256, 28, 28, 1))


def _lowered(fn, *args, platform=None):
  traced = jax.jit(fn).trace(*args)
  lowered = traced.lower(lowering_platforms=(platform,)) if platform else traced.lower()
  return lowered.as_text()


def test_cpu_lowers_the_formulations_and_accelerators_keep_xla():
  x = jnp.ones((2, 8, 8, 3))
  pool = lambda x: layers.pool(x, "max", 3, 2, 1)
  assert "reduce_window" not in _lowered(pool, x)
  assert "reduce_window" in _lowered(pool, x, platform="cuda")
  conv = functools.partial(kernels.conv_general_dilated, window_strides=(1, 1),
                           padding=((1, 1), (1, 1)), dimension_numbers=kernels.NHWC)
  args = jnp.ones((2, 2, 2, 8)), jnp.ones((3, 3, 8, 4))
  assert "convolution" not in _lowered(conv, *args)
  assert "convolution" in _lowered(conv, *args, platform="cuda")


def test_switch_off_with_the_environment_variable(monkeypatch):
  monkeypatch.setenv(kernels.ENV, "xla")
  assert "reduce_window" in _lowered(lambda x: layers.pool(x, "max", 2, 2), jnp.ones((1, 4, 4, 1)))


def _train_grads(name, size, batch):
  model = registry.create(name, num_classes=10)
  x = jax.random.normal(jax.random.key(0), (batch, size, size, 3))
  variables = model.init(jax.random.key(1), x[:1])
  labels = jnp.arange(batch) % 10

  def loss(params):
    logits, _ = model.apply({**variables, "params": params}, x, train=True,
                            rngs={"dropout": jax.random.key(2)}, mutable=["batch_stats"])
    return jnp.mean(-jax.nn.log_softmax(logits)[jnp.arange(batch), labels])

  return jax.jit(jax.value_and_grad(loss))(variables["params"])


def test_whole_model_gradients_agree_with_xla(monkeypatch):
  monkeypatch.setenv(kernels.ENV, "taps")  # oneDNN's: tests/models/test_onednn.py
  fast = _train_grads("resnet18", 32, 4)  # 2×2 and 1×1 stages take the per-tap path
  monkeypatch.setenv(kernels.ENV, "xla")
  slow = _train_grads("resnet18", 32, 4)
  assert float(fast[0]) == pytest.approx(float(slow[0]), rel=1e-5)
  for a, b in zip(jax.tree.leaves(fast[1]), jax.tree.leaves(slow[1])):
    # float32 rounding, amplified by BatchNorm over 4 values at 1×1: compare whole tensors
    assert float(jnp.linalg.norm(a - b)) <= 1e-4 * float(jnp.linalg.norm(b)) + 1e-6
