"""Pure preprocessing functions.

Host side (numpy, per batch, uint8 in and out): the random draws of the augmentations, made by
the caller from an explicitly seeded generator, and the ImageNet-style crops that bring
images of any size to one size (PIL, one image at a time: resampling with antialiasing is
what torchvision does, and PIL releases the GIL, so grain's reader threads run it in parallel).
Device side (jax, per batch, inside the jitted step): resizing, channel matching and
normalisation, so only uint8 pixels cross from host to device; the shifts and flips drawn on the
host are applied there too (``cnnjax.data.augment``).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from cnnjax.data import images as images_lib

# torchvision's RandomResizedCrop defaults (the Inception crop): area fraction and aspect ratio.
CROP_SCALE = (0.08, 1.0)
CROP_RATIO = (3.0 / 4.0, 4.0 / 3.0)
CROP_ATTEMPTS = 10  # tries before falling back to a centre crop


def random_resized_crop_boxes(sizes: np.ndarray, attempts: np.ndarray, offsets: np.ndarray, *,
                              scale: Sequence[float] = CROP_SCALE,
                              ratio: Sequence[float] = CROP_RATIO) -> np.ndarray:
  """Boxes ``(top, left, height, width)`` of torchvision's ``RandomResizedCrop.get_params``.

  ``sizes``: (n, 2) image (height, width). The caller's uniform [0, 1) draws replace torch's:
  ``attempts`` (n, k, 2) give each try's area fraction and log aspect ratio, ``offsets`` (n, 2)
  the position of the first try that fits. If none of the k tries fits, the box is the
  largest centred one with an aspect ratio in ``ratio`` (torchvision's fallback).
  """
  height, width = (sizes[:, i].astype(np.float64)[:, None] for i in (0, 1))
  area = height * width * (scale[0] + attempts[..., 0] * (scale[1] - scale[0]))
  log_lo, log_hi = np.log(ratio[0]), np.log(ratio[1])
  aspect = np.exp(log_lo + attempts[..., 1] * (log_hi - log_lo))
  w = np.round(np.sqrt(area * aspect)).astype(np.int64)  # round half to even, as Python's round
  h = np.round(np.sqrt(area / aspect)).astype(np.int64)
  fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
  first = np.argmax(fits, axis=1)
  rows = np.arange(len(sizes))
  h, w = h[rows, first], w[rows, first]
  fh, fw = _centre_box(sizes, ratio)
  found = fits.any(axis=1)
  h, w = np.where(found, h, fh), np.where(found, w, fw)
  free_h, free_w = sizes[:, 0] - h, sizes[:, 1] - w
  top = np.where(found, np.minimum((offsets[:, 0] * (free_h + 1)).astype(np.int64), free_h),
                 free_h // 2)
  left = np.where(found, np.minimum((offsets[:, 1] * (free_w + 1)).astype(np.int64), free_w),
                  free_w // 2)
  return np.stack([top, left, h, w], axis=1)


def _centre_box(sizes: np.ndarray, ratio: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
  """(height, width) of torchvision's fallback: the whole image, narrowed to ``ratio``."""
  height, width = sizes[:, 0], sizes[:, 1]
  in_ratio = width / height
  lo, hi = min(ratio), max(ratio)
  h = np.where(in_ratio < lo, np.round(width / lo), height).astype(np.int64)
  w = np.where(in_ratio > hi, np.round(height * hi), width).astype(np.int64)
  return h, w


def crop_and_resize(images: Sequence[np.ndarray], boxes: np.ndarray, size: int) -> np.ndarray:
  """Crops box ``(top, left, h, w)`` of each image and resizes it to ``size``² (bilinear,
  antialiased): torchvision's ``resized_crop`` on PIL images. uint8 (n, size, size, C)."""
  out = []
  for image, (top, left, h, w) in zip(images, boxes):
    pil = images_lib.from_array(image).crop((left, top, left + w, top + h))
    out.append(images_lib.to_array(pil.resize((size, size), images_lib.INTERPOLATION["bilinear"]),
                                   image.shape[-1]))
  return np.stack(out)


def resize_centre_crop(images: Sequence[np.ndarray], resize: int, crop: int) -> np.ndarray:
  """torchvision's ``Resize(resize)`` + ``CenterCrop(crop)`` (bilinear, antialiased) on each
  image. uint8 (n, crop, crop, C)."""
  return np.stack([
      images_lib.to_array(images_lib.resize_crop(images_lib.from_array(image), resize=resize,
                                                 crop=crop), image.shape[-1])
      for image in images])


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
