"""Building blocks shared by the model families: the option fields every family takes,
the convolution initialiser, BatchNorm with PyTorch's defaults, the Inception conv block,
activations, pooling (one module, ``Pool``), LRN. All plain ``flax.linen``: a faster lowering
for a platform is chosen where the program starts (``cnnjax.cpu``), never here.

Pooling and padding follow PyTorch's conventions (explicit symmetric padding, ``ceil_mode``,
adaptive average pooling) so that torchvision weights give the same numbers here.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from cnnjax.errors import unknown

Array = jax.Array

# The course: leaky ReLU has "a small negative slope (about 0.01)" for x < 0.
DEFAULT_NEGATIVE_SLOPE = 0.01

ACTIVATIONS: dict[str, Callable[..., Array]] = {
    "relu": nn.relu,
    "leaky_relu": nn.leaky_relu,
    "elu": nn.elu,
    "gelu": nn.gelu,
    "tanh": jnp.tanh,
}

POOLS = ("max", "avg")

# torchvision's kaiming_normal_(mode='fan_out', nonlinearity='relu'): an untruncated normal.
CONV_INIT = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
# PyTorch's BatchNorm2d: momentum 0.1 (flax's 0.9 is the running average's keep) and eps 1e-5.
BN_MOMENTUM, BN_EPS = 0.9, 1e-5


def activation(name: str, negative_slope: float = DEFAULT_NEGATIVE_SLOPE) -> Callable[[Array], Array]:
  """Returns the activation function ``name``; ``negative_slope`` is leaky ReLU's α."""
  if name not in ACTIVATIONS:
    raise unknown("activation", name, ACTIVATIONS)
  if name == "leaky_relu":
    return functools.partial(nn.leaky_relu, negative_slope=negative_slope)
  return ACTIVATIONS[name]


class Options(nn.Module):
  """The option fields every family takes, declared once (a family adds its own, e.g. ``pool``
  and ``dropout``, whose defaults differ): the activation, leaky ReLU's slope and the compute
  precision (parameters stay float32)."""

  activation: str = "relu"
  negative_slope: float = DEFAULT_NEGATIVE_SLOPE
  dtype: Any = jnp.float32

  def act(self) -> Callable[[Array], Array]:
    return activation(self.activation, self.negative_slope)


def batch_norm(train: bool, dtype: Any, name: str, *, epsilon: float = BN_EPS,
               zero_scale: bool = False) -> nn.BatchNorm:
  """``nn.BatchNorm`` with PyTorch's defaults; ``zero_scale`` starts its scale at 0 (a residual
  branch that begins as nothing)."""
  return nn.BatchNorm(use_running_average=not train, momentum=BN_MOMENTUM, epsilon=epsilon,
                      dtype=dtype, name=name,
                      scale_init=nn.initializers.zeros if zero_scale else nn.initializers.ones)


def check_pool(kind: str) -> str:
  if kind not in POOLS:
    raise unknown("pooling", kind, POOLS)
  return kind


def _pool_padding(size: int, window: int, stride: int, pad: int, ceil_mode: bool) -> tuple[int, int]:
  """(low, high) padding that reproduces PyTorch's output size for one spatial axis."""
  span = size + 2 * pad - window
  out = (math.ceil(span / stride) if ceil_mode else span // stride) + 1
  if ceil_mode and (out - 1) * stride >= size + pad:  # PyTorch: last window must start inside
    out -= 1
  high = max((out - 1) * stride + window - size - pad, 0)
  return pad, high


def pool_pads(shape: Sequence[int], window: int, stride: int, padding: int,
              ceil_mode: bool) -> tuple[tuple[int, int], tuple[int, int]]:
  """The explicit (low, high) padding of both spatial axes of an NHWC ``shape``."""
  return tuple(_pool_padding(shape[axis], window, stride, padding, ceil_mode) for axis in (1, 2))


def pool(x: Array, kind: str, window: int, stride: int, padding: int = 0,
         ceil_mode: bool = False) -> Array:
  """2-D max or average pooling over NHWC with PyTorch's padding and ``ceil_mode`` semantics.

  Max pooling pads with -inf. Average pooling counts the explicit ``padding`` zeros (PyTorch's
  ``count_include_pad=True``) but not the extra cells that ``ceil_mode`` adds, as PyTorch does.
  """
  pads = pool_pads(x.shape, window, stride, padding, ceil_mode)
  if check_pool(kind) == "max":
    return nn.max_pool(x, (window, window), (stride, stride), padding=pads)
  dims, step = (1, window, window, 1), (1, stride, stride, 1)
  sums = jax.lax.reduce_window(x, np.zeros((), x.dtype), jax.lax.add, dims, step,
                               [(0, 0), *pads, (0, 0)])
  # Divisor: the window's cells inside the explicitly padded input (ceil_mode cells excluded).
  h, w = x.shape[1] + 2 * padding, x.shape[2] + 2 * padding
  inside = jnp.ones((1, h, w, 1), x.dtype)
  extra = [(0, 0), *[(0, hi - padding) for _, hi in pads], (0, 0)]
  counts = jax.lax.reduce_window(inside, np.zeros((), x.dtype), jax.lax.add, dims, step, extra)
  return sums / counts


def adaptive_avg_pool(x: Array, output_size: Sequence[int]) -> Array:
  """PyTorch's AdaptiveAvgPool2d over NHWC: bin i spans [floor(i·H/o), ceil((i+1)·H/o))."""
  (h, w), (oh, ow) = x.shape[1:3], output_size
  if (h, w) == (oh, ow):
    return x
  if h % oh == 0 and w % ow == 0:
    return nn.avg_pool(x, (h // oh, w // ow), (h // oh, w // ow))

  def bins(n: int, o: int) -> list[tuple[int, int]]:
    return [(i * n // o, -(-(i + 1) * n // o)) for i in range(o)]

  rows = [jnp.mean(x[:, a:b], axis=1, keepdims=True) for a, b in bins(h, oh)]
  x = jnp.concatenate(rows, axis=1)
  cols = [jnp.mean(x[:, :, a:b], axis=2, keepdims=True) for a, b in bins(w, ow)]
  return jnp.concatenate(cols, axis=2)


def local_response_norm(x: Array, size: int = 5, alpha: float = 1e-4, beta: float = 0.75,
                        k: float = 2.0) -> Array:
  """PyTorch's LocalResponseNorm across channels (AlexNet 2012, §3.3): x / (k + α/n Σ x²)^β."""
  sq = jnp.square(x.astype(jnp.float32))
  c = x.shape[-1]
  padded = jnp.pad(sq, [(0, 0)] * 3 + [(size // 2, (size - 1) // 2)])
  window = sum(padded[..., i:i + c] for i in range(size))
  return (x / jnp.power(k + alpha / size * window, beta)).astype(x.dtype)


def conv_padding(padding: int | tuple[int, int]) -> list[tuple[int, int]]:
  """Explicit symmetric padding (PyTorch's), never 'SAME', which pads asymmetrically."""
  ph, pw = (padding, padding) if isinstance(padding, int) else padding
  return [(ph, ph), (pw, pw)]


class Pool(nn.Module):
  """``pool`` as a parameter-free module.

  Per-layer tables (``nn.tabulate``, ``capture_intermediates``) then list each pooling layer by
  name with its output shape, as the course's VGG-16 table does.
  """

  kind: str = "max"
  window: int = 2
  stride: int = 2
  padding: int = 0
  ceil_mode: bool = False

  def __call__(self, x: Array) -> Array:
    return pool(x, self.kind, self.window, self.stride, self.padding, self.ceil_mode)


class BasicConv2d(nn.Module):
  """Conv → BatchNorm → activation, the Inception networks' block (torchvision's
  ``BasicConv2d``); ``use_bn=False``: conv + bias → activation (GoogLeNet's original form).

  Submodules are ``conv`` and ``bn``, as torchvision names them.
  """

  features: int
  kernel_size: int | tuple[int, int]
  strides: int = 1
  padding: int | tuple[int, int] = 0
  use_bn: bool = True
  bn_eps: float = 1e-3
  activation: str = "relu"
  negative_slope: float = DEFAULT_NEGATIVE_SLOPE
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    k = self.kernel_size
    k = (k, k) if isinstance(k, int) else tuple(k)
    x = nn.Conv(self.features, k, self.strides, padding=conv_padding(self.padding),
                use_bias=not self.use_bn, dtype=self.dtype, name="conv")(x)
    if self.use_bn:
      x = batch_norm(train, self.dtype, "bn", epsilon=self.bn_eps)(x)
    return activation(self.activation, self.negative_slope)(x)


def drop_path_rates(drop_path: float, num_blocks: int) -> tuple[float, ...]:
  """Stochastic depth's linear rule (Huang et al. 2016, Eq. 4): block l of L (1-based) is
  dropped with probability ``l/L · drop_path``, so its survival probability falls linearly
  from ``1 − drop_path/L`` to ``1 − drop_path`` at the last block."""
  return tuple(drop_path * l / num_blocks for l in range(1, num_blocks + 1))


class DropPath(nn.Module):
  """Stochastic depth on a residual branch: in training each example's branch is zeroed with
  probability ``rate`` and otherwise scaled by ``1 / (1 − rate)``, so its expectation is the
  branch; the identity at evaluation. Draws from the ``dropout`` stream (the train step's
  ``fold_in(key, step)``, folded with the module's path by flax). No parameters."""

  rate: float

  @nn.compact
  def __call__(self, y: Array, train: bool) -> Array:
    if not train or self.rate == 0.0:
      return y
    keep = 1.0 - self.rate
    shape = (y.shape[0],) + (1,) * (y.ndim - 1)  # one draw per example
    kept = jax.random.bernoulli(self.make_rng("dropout"), keep, shape)
    return jnp.where(kept, y / jnp.asarray(keep, y.dtype), jnp.zeros((), y.dtype))
