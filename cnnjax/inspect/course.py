"""The course's worked examples, computed by the same operations the models use.

* "How a filter works": the 7×7 curve-detector filter on the two 7×7 receptive fields printed in
  the course: 6600 ("a large number!") where the image has the curve, 0 where it doesn't.
* Conv arithmetic: a 32×32×3 input and a 5×5×3 filter give a 28×28×1 activation map; two
  filters give 28×28×2 (``(n + 2p − k) / s + 1`` per axis, and a real ``flax`` conv agrees).
* Leaky ReLU keeps a small slope (0.01) for x < 0 where ReLU outputs 0.
* 2×2 max pooling keeps the largest of each 2×2 block.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from cnnjax.models import layers

# "Pixel representation of filter": a curve running up and to the right.
CURVE_FILTER = (
    (0, 0, 0, 0, 0, 30, 0),
    (0, 0, 0, 0, 30, 0, 0),
    (0, 0, 0, 30, 0, 0, 0),
    (0, 0, 0, 30, 0, 0, 0),
    (0, 0, 0, 30, 0, 0, 0),
    (0, 0, 0, 30, 0, 0, 0),
    (0, 0, 0, 0, 0, 0, 0),
)

# "Pixel representation of the receptive field": the part of the image (a mouse's back) that
# has the curve.
CURVE_FIELD = (
    (0, 0, 0, 0, 0, 0, 30),
    (0, 0, 0, 0, 50, 50, 50),
    (0, 0, 0, 20, 50, 0, 0),
    (0, 0, 0, 50, 50, 0, 0),
    (0, 0, 0, 50, 50, 0, 0),
    (0, 0, 0, 50, 50, 0, 0),
    (0, 0, 0, 50, 50, 0, 0),
)

# The second receptive field, elsewhere in the image: no such curve.
OTHER_FIELD = (
    (0, 0, 0, 0, 0, 0, 0),
    (0, 40, 0, 0, 0, 0, 0),
    (40, 0, 40, 0, 0, 0, 0),
    (40, 20, 0, 0, 0, 0, 0),
    (0, 50, 0, 0, 0, 0, 0),
    (0, 0, 50, 0, 0, 0, 0),
    (25, 25, 0, 50, 0, 0, 0),
)

# A small array for 2×2 max pooling (cs231n's example).
POOL_INPUT = (
    (1, 1, 2, 4),
    (5, 6, 7, 8),
    (3, 2, 1, 0),
    (1, 2, 3, 4),
)


def curve_detector_filter() -> np.ndarray:
  return np.array(CURVE_FILTER, np.float32)


def filter_response(kernel, patch) -> float:
  """The filter's output at one position: a VALID convolution of a k×k patch with a k×k kernel.

  Multiplication and summation: Σ kernel·patch, computed by ``lax.conv_general_dilated`` as in
  every conv layer (a cross-correlation: the kernel is not flipped).
  """
  x = jnp.asarray(patch, jnp.float32)[None, :, :, None]
  w = jnp.asarray(kernel, jnp.float32)[:, :, None, None]
  y = jax.lax.conv_general_dilated(x, w, (1, 1), "VALID",
                                   dimension_numbers=("NHWC", "HWIO", "NHWC"))
  return float(y.reshape(()))


def conv_output_size(n: int, k: int, stride: int = 1, padding: int = 0) -> int:
  """Output size of a convolution along one axis: (n + 2p − k) / s + 1."""
  return (n + 2 * padding - k) // stride + 1


def conv_output_shape(input_shape=(32, 32, 3), kernel: int = 5, filters: int = 1,
                      stride: int = 1, padding: int = 0) -> tuple[int, ...]:
  """The activation-map shape of a real ``nn.Conv`` (traced on shapes only)."""
  conv = nn.Conv(filters, (kernel, kernel), (stride, stride),
                 padding=layers.conv_padding(padding))
  x = jnp.zeros((1, *input_shape), jnp.float32)
  out = jax.eval_shape(lambda: conv.init_with_output(jax.random.key(0), x)[0])
  return tuple(out.shape[1:])


def relu_vs_leaky(x=(-3.0, -1.0, 0.0, 2.0)) -> tuple[np.ndarray, np.ndarray]:
  """ReLU and leaky ReLU (slope 0.01) on the same inputs: (relu(x), leaky_relu(x))."""
  x = jnp.asarray(x, jnp.float32)
  relu, leaky = layers.activation("relu"), layers.activation("leaky_relu")
  return np.asarray(relu(x)), np.asarray(leaky(x))


def max_pool_2x2(array=POOL_INPUT) -> np.ndarray:
  """2×2 max pooling with stride 2 (``layers.pool``, as in the models)."""
  x = jnp.asarray(array, jnp.float32)[None, :, :, None]
  return np.asarray(layers.pool(x, "max", window=2, stride=2))[0, :, :, 0]


def report() -> str:
  """The worked examples as text (``python -m cnnjax.inspect course``)."""
  f = curve_detector_filter()
  relu, leaky = relu_vs_leaky()
  pooled = max_pool_2x2()
  return "\n".join([
      f"curve detector on the curve: {filter_response(f, CURVE_FIELD):g}",
      f"curve detector elsewhere:    {filter_response(f, OTHER_FIELD):g}",
      f"32x32x3 * one 5x5x3 filter:  {'x'.join(map(str, conv_output_shape(filters=1)))}",
      f"32x32x3 * two 5x5x3 filters: {'x'.join(map(str, conv_output_shape(filters=2)))}",
      f"relu(-3, -1, 0, 2)       = {relu.tolist()}",
      f"leaky_relu(-3, -1, 0, 2) = {[round(v, 4) for v in leaky.tolist()]}",
      f"2x2 max pool of {np.array(POOL_INPUT).tolist()} = {pooled.astype(int).tolist()}",
  ])
