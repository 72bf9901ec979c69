"""Pure preprocessing functions.

Host side (numpy, per batch, uint8 in and out): the augmentations, with the random draws made
by the caller from an explicitly seeded generator. Device side (jax, per batch,
inside the jitted step): resizing, channel matching and normalisation, so only uint8 pixels
cross from host to device.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np


def shift_and_flip(images: np.ndarray, shifts: np.ndarray, flips: np.ndarray) -> np.ndarray:
  """Per-image translation by ``shifts[i] = (dy, dx)`` (zero fill) and optional left-right flip.

  The batched form of ``random_shift`` + ``random_flip``, with the draws made by the caller.
  """
  n, h, w, _ = images.shape
  m = int(np.abs(shifts).max(initial=0))
  padded = np.pad(images, [(0, 0), (m, m), (m, m), (0, 0)])
  out = np.empty_like(images)
  for i, ((dy, dx), f) in enumerate(zip(shifts, flips)):
    crop = padded[i, m - dy:m - dy + h, m - dx:m - dx + w]
    out[i] = crop[:, ::-1] if f else crop
  return out


def match_channels(images: jax.Array, channels: int) -> jax.Array:
  """Tiles grey images to ``channels`` (e.g. MNIST for ImageNet models) or averages to grey."""
  c = images.shape[-1]
  if c == channels:
    return images
  if c == 1:
    return jnp.repeat(images, channels, axis=-1)
  if channels == 1:
    return jnp.mean(images, axis=-1, keepdims=True)
  raise ValueError(f"can't map {c} image channels to {channels}")


def _per_channel(values: Sequence[float], channels: int) -> np.ndarray:
  v = np.asarray(values, np.float32).reshape(-1)
  return v if v.size == channels else np.full(channels, v.mean(), np.float32)


def to_model_input(images: jax.Array, *, size: int | None, channels: int,
                   mean: Sequence[float], std: Sequence[float], dtype=jnp.float32) -> jax.Array:
  """uint8 NHWC batch → normalised float input of the model's size and channels (jit-able)."""
  x = images.astype(jnp.float32) / 255.0
  if size is not None and x.shape[1:3] != (size, size):
    x = jax.image.resize(x, (x.shape[0], size, size, x.shape[3]), method="bilinear")
  x = match_channels(x, channels)
  mean, std = _per_channel(mean, channels), _per_channel(std, channels)
  return ((x - mean) / std).astype(dtype)
