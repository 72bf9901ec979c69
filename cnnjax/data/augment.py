"""Augmentations applied inside the jitted train step, from draws the host pipeline made.

The training stream (``cnnjax.data.pipeline``) draws each image's shift and flip from its seeded
generator and sends them with the unaugmented uint8 batch; the step applies them with one gather.
On the host the same copy, image by image, cost LeNet-5's loop about 8% of its speed on 2 cores
(0.36 ms per batch of 128, against 0.05 ms in XLA). JAX only: the benchmarks import the step on
machines without PIL or grain.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def shift_and_flip(images: jax.Array, shifts: jax.Array, flips: jax.Array) -> jax.Array:
  """Per-image translation by ``shifts[i] = (dy, dx)`` (zero fill), then a left-right mirror where
  ``flips[i]``: ``out[i, y, x] = images[i, y - dy, x' - dx]`` with ``x' = W-1-x`` if flipped.

  Any dtype; exact (it only moves pixels).
  """
  n, h, w = images.shape[:3]
  ys = jnp.arange(h)[None, :] - shifts[:, 0:1]
  xs = jnp.arange(w)[None, :]
  xs = jnp.where(flips[:, None], w - 1 - xs, xs) - shifts[:, 1:2]
  inside = ((ys >= 0) & (ys < h))[:, :, None] & ((xs >= 0) & (xs < w))[:, None, :]
  moved = images[jnp.arange(n)[:, None, None], jnp.clip(ys, 0, h - 1)[:, :, None],
                 jnp.clip(xs, 0, w - 1)[:, None, :]]
  return jnp.where(inside[..., None], moved, jnp.zeros((), images.dtype))
