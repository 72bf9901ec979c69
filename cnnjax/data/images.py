"""Image files and PIL images → fixed-size uint8 arrays, as torchvision's eval transform does.

``resize_crop`` is torchvision's ``Resize(resize)`` + ``CenterCrop(crop)`` on a PIL image, bit for
bit: the same output size rule (shorter side to ``resize``, the longer one truncated to
``int(resize * long / short)``), the same PIL resampling call (antialiased on downsampling), and
the same crop offsets (``int(round((size - crop) / 2))``). Host side, one image at a time.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from cnnjax.errors import UserError

# torchvision's InterpolationMode names → PIL filters (what torchvision itself passes to PIL).
INTERPOLATION = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
    "lanczos": Image.Resampling.LANCZOS,
}
MODES = {1: "L", 3: "RGB"}  # channels → PIL mode

# What PIL raises for a file that is not an image, or a broken one.
DECODE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def check_interpolation(name: str) -> str:
  if name not in INTERPOLATION:
    raise UserError(f"unknown interpolation {name!r}. Valid choices: {', '.join(INTERPOLATION)}.")
  return name


def resized_size(width: int, height: int, resize: int) -> tuple[int, int]:
  """(width, height) after torchvision's ``Resize(resize)``: the shorter side becomes ``resize``."""
  if width <= height:
    return resize, int(resize * height / width)
  return int(resize * width / height), resize


def resize_crop(image: Image.Image, *, resize: int, crop: int,
                interpolation: str = "bilinear") -> Image.Image:
  """torchvision's ``CenterCrop(crop)(Resize(resize, interpolation)(image))``, resize >= crop."""
  size = resized_size(*image.size, resize)
  if size != image.size:
    image = image.resize(size, INTERPOLATION[interpolation])
  width, height = size
  top, left = int(round((height - crop) / 2.0)), int(round((width - crop) / 2.0))
  return image.crop((left, top, left + crop, top + crop))


def to_array(image: Image.Image, channels: int = 3) -> np.ndarray:
  """A PIL image as uint8 (H, W, channels), converting its mode (grey, palette, RGBA, ...)."""
  mode = MODES[channels]
  if image.mode != mode:
    image = image.convert(mode)
  array = np.asarray(image, np.uint8)
  return array[..., None] if array.ndim == 2 else array


def from_array(array: np.ndarray) -> Image.Image:
  """A uint8 (H, W, C) array as a PIL image (C = 1 becomes grey, 3 RGB)."""
  array = np.asarray(array)
  if array.dtype != np.uint8 or array.ndim != 3 or array.shape[-1] not in MODES:
    raise UserError(f"expected uint8 images of shape (H, W, 1 or 3), got {array.dtype} "
                    f"{array.shape}.")
  return Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array, MODES[array.shape[-1]])


def load(path: str | os.PathLike, *, resize: int, crop: int, channels: int = 3,
         interpolation: str = "bilinear") -> np.ndarray:
  """Decodes the image file ``path`` into uint8 (crop, crop, channels).

  Raises one of ``DECODE_ERRORS`` for a file PIL can't read (not an image, truncated, corrupt).
  """
  with Image.open(path) as image:
    image.load()  # decode fully now: a truncated file fails here, not later
    image = image.convert(MODES[channels])
  return to_array(resize_crop(image, resize=resize, crop=crop, interpolation=interpolation),
                  channels)
