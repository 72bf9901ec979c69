"""Max pooling as the elementwise maximum of the window's strided slices (NHWC).

XLA:CPU differentiates ``reduce_window`` into a variadic argmax window with full-size iotas and a
scatter; the maximum of strided slices differentiates into cheap selects. Both give the same
values; the gradient differs only in how it is split among exactly tied maxima (evenly here, to
one element in ``reduce_window``), which after a ReLU happens only at zeros, whose gradient is
zero anyway. Not oneDNN: this works whether or not the extension is built.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn
from jax import lax

Pads = tuple[tuple[int, int], tuple[int, int]]


def max_pool_slices(x: jax.Array, window: int, stride: int, pads: Pads) -> jax.Array:
  """The maximum over a ``window``² window at ``stride``, after padding with -inf by ``pads``."""
  x = jnp.pad(x, [(0, 0), *pads, (0, 0)], constant_values=-jnp.inf)
  oh = (x.shape[1] - window) // stride + 1
  ow = (x.shape[2] - window) // stride + 1
  out = None
  for i in range(window):
    for j in range(window):
      tap = lax.slice(x, (0, i, j, 0), (x.shape[0], i + stride * (oh - 1) + 1,
                                        j + stride * (ow - 1) + 1, x.shape[3]),
                      (1, stride, stride, 1))
      out = tap if out is None else jnp.maximum(out, tap)
  return out


def max_pool(x: jax.Array, window: int, stride: int, pads: Pads) -> jax.Array:
  """``nn.max_pool`` with explicit ``pads``; ``max_pool_slices`` when lowered for CPU."""
  reference = lambda x: nn.max_pool(x, (window, window), (stride, stride), padding=pads)
  if x.ndim != 4 or not jnp.issubdtype(x.dtype, jnp.floating):
    return reference(x)
  return lax.platform_dependent(
      x, cpu=lambda x: max_pool_slices(x, window, stride, pads), default=reference)
