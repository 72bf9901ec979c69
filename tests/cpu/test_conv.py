"""oneDNN's convolutions (through XLA's FFI) compute what ``lax.conv_general_dilated`` computes
(whole models and several devices: test_intercept.py).

requirements.txt installs the oneDNN packages, so a missing extension is a failure here, not a
skip: these tests would otherwise pass while testing nothing.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from cnnjax import cpu
from cnnjax.cpu import build, conv as cpu_conv
from tests.cpu.test_pool import lowered as _lowered

def test_the_extension_is_built():
  assert build.load() is not None, "the oneDNN extension did not build (see the notice above)"
  assert cpu.onednn_loaded()


# (x shape NHWC, kernel HWIO, strides, padding, groups, kernel dilation)
GRID = [
    ((2, 9, 9, 3), (3, 3, 3, 8), (1, 1), ((1, 1), (1, 1)), 1, (1, 1)),
    ((1, 28, 28, 1), (5, 5, 1, 6), (1, 1), ((2, 2), (2, 2)), 1, (1, 1)),   # LeNet conv1, batch 1
    ((2, 13, 11, 16), (3, 3, 16, 16), (2, 2), ((0, 1), (1, 0)), 1, (1, 1)),  # asymmetric, odd
    ((2, 8, 8, 64), (1, 1, 64, 16), (2, 2), "VALID", 1, (1, 1)),             # ResNet projection
    ((2, 17, 17, 3), (7, 7, 3, 16), (2, 2), ((3, 3), (3, 3)), 1, (1, 1)),    # ResNet stem
    ((1, 35, 35, 3), (11, 11, 3, 8), (4, 4), ((2, 1), (2, 1)), 1, (1, 1)),   # AlexNet conv1
    ((2, 9, 9, 16), (5, 5, 8, 12), (1, 1), ((2, 2), (2, 2)), 2, (1, 1)),     # AlexNet groups
    ((2, 7, 7, 64), (3, 3, 64, 64), (1, 1), "SAME", 1, (1, 1)),
    ((2, 15, 15, 16), (3, 3, 16, 16), (1, 1), ((2, 2), (2, 2)), 1, (2, 2)),  # kernel dilation
    ((3, 2, 2, 32), (3, 3, 32, 16), (1, 1), ((1, 1), (1, 1)), 1, (1, 1)),   # ResNet-18's 2×2
    ((3, 1, 1, 32), (3, 3, 32, 16), (1, 1), ((1, 1), (1, 1)), 1, (1, 1)),   # its 1×1: one tap
    ((2, 2, 2, 16), (3, 3, 16, 32), (2, 2), ((1, 1), (1, 1)), 1, (1, 1)),   # 2×2 → 1×1: 2×2 taps
    ((2, 3, 5, 8), (5, 5, 8, 8), (1, 2), ((4, 0), (1, 3)), 1, (1, 1)),      # rows, columns cut
    ((2, 10, 10, 3), (5, 5, 3, 4), (4, 4), "VALID", 1, (1, 1)),
]


def _reference(x, w, strides, padding, groups, dilation):
  return lax.conv_general_dilated(x, w, strides, padding, rhs_dilation=dilation,
                                  dimension_numbers=cpu_conv.NHWC, feature_group_count=groups)


def _value_and_grads(conv, x, w, g):
  y, vjp = jax.vjp(conv, x, w)
  return (y, *vjp(g))


@pytest.mark.parametrize("x_shape,w_shape,strides,padding,groups,dilation", GRID)
def test_value_and_gradients_match_xla(x_shape, w_shape, strides, padding, groups, dilation):
  x = jax.random.normal(jax.random.key(0), x_shape)
  w = jax.random.normal(jax.random.key(1), w_shape)
  ref = functools.partial(_reference, strides=strides, padding=padding, groups=groups,
                          dilation=dilation)
  ours = functools.partial(cpu_conv.conv_general_dilated, window_strides=strides, padding=padding,
                           rhs_dilation=dilation, dimension_numbers=cpu_conv.NHWC,
                           feature_group_count=groups)
  g = jax.random.normal(jax.random.key(2), jax.eval_shape(ref, x, w).shape)
  lowered = _lowered(ours, x, w)
  assert "cnnjax_onednn_conv_fwd" in lowered
  if x_shape[1:3] == (1, 1):  # only the centre tap reads the input: a 1×1 convolution
    assert f"tensor<1x1x{w_shape[2]}x{w_shape[3]}xf32>" in lowered
  got = jax.jit(_value_and_grads, static_argnums=0)(ours, x, w, g)
  want = jax.jit(_value_and_grads, static_argnums=0)(ref, x, w, g)
  for name, a, b in zip(("value", "input grad", "kernel grad"), got, want):
    assert a.shape == b.shape, name
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * float(jnp.max(jnp.abs(b))),
                               err_msg=name)


def test_bfloat16_matches_float32_where_the_cpu_has_it():
  x = jax.random.normal(jax.random.key(0), (2, 8, 8, 16), jnp.bfloat16)
  w = jax.random.normal(jax.random.key(1), (3, 3, 16, 16), jnp.bfloat16)
  conv = functools.partial(cpu_conv.conv_general_dilated, window_strides=(1, 1),
                           padding=((1, 1), (1, 1)), dimension_numbers=cpu_conv.NHWC)
  assert ("cnnjax_onednn" in _lowered(conv, x, w)) == build.supports_bf16()
  got = jax.jit(conv)(x, w).astype(jnp.float32)
  want = _reference(x.astype(jnp.float32), w.astype(jnp.float32), (1, 1), ((1, 1), (1, 1)), 1,
                    (1, 1))
  assert float(jnp.linalg.norm(got - want)) <= 1e-2 * float(jnp.linalg.norm(want))
