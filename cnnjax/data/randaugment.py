"""RandAugment (Cubuk et al. 2020) on uint8 NHWC batches in numpy, as torchvision computes it.

Each image gets ``num_ops`` operations in turn, each picked uniformly from ``OPS`` (torchvision's
14, in its order), at ``magnitude`` on torchvision's scale of 31 bins (0..30; with
``magnitude_std`` > 0 drawn per operation from a normal around it and clipped to [0, 30], as
timm does), negated with probability 1/2 for the signed ones. The operations follow
torchvision's on uint8 tensors, whose arithmetic (float32 blends truncated to uint8) they
repeat: the colour ones exactly; the geometric ones (nearest neighbour, zero fill) compute the
same source pixel in float64 where torchvision uses float32, so a pixel whose source lies on a
rounding tie may differ (tests/data/test_randaugment.py bounds how many). Grey images (one
channel) are left alone by Color, as torchvision leaves them; the grey of an image with neither
1 nor 3 channels is its channel mean.

Applied by the training stream on the host (``cnnjax.data.pipeline``), one vectorised call per
operation and slot over the images that drew it, before the shifts, flips and mixing of the
step. The draws of global batch ``b`` come from a generator seeded by ``(seed, 4, b)`` and are
made for the whole global batch, so a row's operations depend on its position in the stream
only: not on the process count, and the same after a resume.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

OPS = ("Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness",
       "Color", "Contrast", "Sharpness", "Posterize", "Solarize", "AutoContrast", "Equalize")
SIGNED = frozenset(OPS[1:10])  # these are negated with probability 1/2
GEOMETRIC = frozenset(OPS[1:6])
MAX_BIN = 30  # torchvision's 31 magnitude bins
# The value of each linear operation at the top bin (translations: a fraction of the size).
TOP = {"ShearX": 0.3, "ShearY": 0.3, "TranslateX": 150.0 / 331.0, "TranslateY": 150.0 / 331.0,
       "Rotate": 30.0, "Brightness": 0.9, "Color": 0.9, "Contrast": 0.9, "Sharpness": 0.9}
LUMA = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale weights


@dataclasses.dataclass(frozen=True)
class RandAugment:
  """``config.randaugment``: ``num_ops`` operations per image (0: off) at ``magnitude``."""

  num_ops: int = 0
  magnitude: float = 9.0  # 0..30, torchvision's bins (its default 9)
  magnitude_std: float = 0.0  # > 0: each operation's magnitude ~ N(magnitude, std), clipped

  @classmethod
  def from_config(cls, section: Mapping[str, Any]) -> RandAugment:
    return cls(**{f.name: section[f.name] for f in dataclasses.fields(cls)})

  @property
  def active(self) -> bool:
    return self.num_ops > 0

  def draw(self, *, seed: int, batch: int, global_batch: int,
           rows: np.ndarray | slice) -> tuple[np.ndarray, np.ndarray]:
    """(operation indices into ``OPS``, signed magnitudes), each (b, num_ops), for ``rows`` of
    global batch ``batch``, from the generator seeded by ``(seed, 4, batch)``: operations,
    signs, then (with ``magnitude_std``) the magnitudes."""
    rng = np.random.default_rng([seed, 4, batch])
    shape = (global_batch, self.num_ops)
    ops = rng.integers(0, len(OPS), size=shape)
    signs = np.where(rng.random(shape) < 0.5, -1.0, 1.0)
    magnitudes = np.full(shape, float(self.magnitude))
    if self.magnitude_std > 0:
      magnitudes = np.clip(rng.normal(self.magnitude, self.magnitude_std, shape), 0, MAX_BIN)
    return ops[rows], (signs * magnitudes)[rows]

  def apply(self, images: np.ndarray, *, seed: int, batch: int, global_batch: int,
            rows: np.ndarray | slice) -> np.ndarray:
    """``images`` (uint8 (b, H, W, C), ``rows`` of global batch ``batch``) augmented."""
    if not self.active:
      return images
    ops, magnitudes = self.draw(seed=seed, batch=batch, global_batch=global_batch, rows=rows)
    out = np.array(images, np.uint8, copy=True)
    for slot in range(self.num_ops):
      for op in np.unique(ops[:, slot]):
        if OPS[op] != "Identity":
          sel = ops[:, slot] == op
          out[sel] = apply_op(out[sel], OPS[op], magnitudes[sel, slot])
    return out


def op_value(op: str, magnitude: np.ndarray, height: int, width: int) -> np.ndarray:
  """The operation's argument at ``magnitude`` (signed bins, float): torchvision's table,
  linear in the bin (Posterize's bits and Solarize's threshold as torchvision's rows)."""
  m = np.asarray(magnitude, np.float64)
  if op == "Posterize":
    return 8 - np.round(np.abs(m) / (MAX_BIN / 4))
  if op == "Solarize":
    return 255.0 * (1 - np.abs(m) / MAX_BIN)
  if op not in TOP:
    return np.zeros_like(m)
  scale = {"TranslateX": width, "TranslateY": height}.get(op, 1)
  return TOP[op] * scale * m / MAX_BIN


def apply_op(images: np.ndarray, op: str, magnitude: np.ndarray) -> np.ndarray:
  """``op`` on each image of the uint8 (n, H, W, C) batch at its signed ``magnitude`` (n,)."""
  h, w = images.shape[1:3]
  v = op_value(op, magnitude, h, w)
  if op == "Identity":
    return images
  if op in GEOMETRIC:
    return warp(images, affine_matrices(op, v, h, w))
  if op == "Posterize":
    return posterize(images, v.astype(np.int64))
  if op == "Solarize":
    return solarize(images, v)
  if op == "AutoContrast":
    return autocontrast(images)
  if op == "Equalize":
    return equalize(images)
  degenerate = {"Brightness": np.zeros_like, "Color": _grey_or_none, "Contrast": _mean_grey,
                "Sharpness": _smoothed}[op](images)
  return images if degenerate is None else blend(images, degenerate, 1.0 + v)


def affine_matrices(op: str, value: np.ndarray, height: int, width: int) -> np.ndarray:
  """The (n, 6) inverse matrices (``inverse_affine``) of geometric ``op`` at ``value`` (n,)."""
  zero = np.zeros_like(value)
  if op in ("ShearX", "ShearY"):  # about the top-left corner, the angle in degrees
    angle = np.degrees(np.arctan(value))
    shear = (angle, zero) if op == "ShearX" else (zero, angle)
    return inverse_affine(zero, (zero, zero), shear, centre=(-width / 2, -height / 2))
  if op in ("TranslateX", "TranslateY"):
    t = np.trunc(value)  # torchvision takes int(magnitude)
    return inverse_affine(zero, (t, zero) if op == "TranslateX" else (zero, t), (zero, zero))
  # Rotate, counter-clockwise: torchvision's rotate negates the angle of its affine
  return inverse_affine(-value, (zero, zero), (zero, zero))


def inverse_affine(angle, translate, shear, centre=(0.0, 0.0)) -> np.ndarray:
  """(n, 6) matrices from output to input coordinates, both measured from the image centre:
  the inverse of a rotation by ``angle`` degrees after a shear ``(sx, sy)`` in degrees, about
  ``centre``, then a translation (torchvision's ``_get_inverse_affine_matrix`` at scale 1)."""
  rot, sx, sy = (np.radians(np.asarray(a, np.float64)) for a in (angle, *shear))
  tx, ty = (np.asarray(t, np.float64) for t in translate)
  cx, cy = centre
  # The forward map's linear part [[a, b], [c, d]] has determinant 1: its inverse is
  # [[d, -b], [-c, a]].
  a = np.cos(rot - sy) / np.cos(sy)
  b = -np.cos(rot - sy) * np.tan(sx) / np.cos(sy) - np.sin(rot)
  c = np.sin(rot - sy) / np.cos(sy)
  d = -np.sin(rot - sy) * np.tan(sx) / np.cos(sy) + np.cos(rot)
  ox, oy = -cx - tx, -cy - ty
  return np.stack([d, -b, d * ox - b * oy + cx, -c, a, -c * ox + a * oy + cy], axis=1)


def sources(matrices: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
  """(x, y), each (n, H, W) float64: where in the input (pixel units, centres on integers) each
  output pixel's centre maps to (torchvision's grid: output centres measured from the image
  centre, ``m·(x, y, 1)``, then shifted by ``size/2 - 1/2``)."""
  xc = (np.arange(width, dtype=np.float64) + 0.5 - width / 2)[None, None, :]
  yc = (np.arange(height, dtype=np.float64) + 0.5 - height / 2)[None, :, None]
  m = [matrices[:, i, None, None] for i in range(6)]
  # the per-row terms summed first: one full-size addition per coordinate
  return (m[0] * xc + (m[1] * yc + (m[2] + (width / 2 - 0.5))),
          m[3] * xc + (m[4] * yc + (m[5] + (height / 2 - 0.5))))


def warp(images: np.ndarray, matrices: np.ndarray) -> np.ndarray:
  """Nearest-neighbour resampling of each image by its inverse matrix (``inverse_affine``):
  each output pixel takes the input pixel nearest its source (``sources``; ties to even), 0
  outside the image."""
  n, h, w, c = images.shape
  sx, sy = (np.rint(s).astype(np.int64) for s in sources(matrices, h, w))
  inside = (sx >= 0) & (sx < w) & (sy >= 0) & (sy < h)
  # one flat gather from a zero pixel appended at the end, where outside points
  flat = np.concatenate([images.reshape(-1, c), np.zeros((1, c), images.dtype)])
  index = np.where(inside, (np.arange(n)[:, None, None] * h + sy) * w + sx, n * h * w)
  return flat[index]


def blend(images: np.ndarray, degenerate: np.ndarray, factor: np.ndarray) -> np.ndarray:
  """``factor·image + (1-factor)·degenerate`` in float32, clipped and truncated to uint8
  (torchvision's ``_blend``)."""
  f = np.asarray(factor, np.float64).reshape(-1, 1, 1, 1)
  mixed = (f.astype(np.float32) * images.astype(np.float32)
           + (1.0 - f).astype(np.float32) * np.asarray(degenerate, np.float32))
  return np.clip(mixed, 0, 255).astype(np.uint8)


def grey(images: np.ndarray) -> np.ndarray:
  """uint8 (n, H, W, 1): the luma of RGB (float32, truncated: torchvision's
  ``rgb_to_grayscale``), a grey image itself, else the channel mean."""
  c = images.shape[-1]
  if c == 1:
    return images
  if c != 3:
    return images.mean(axis=-1, keepdims=True, dtype=np.float32).astype(np.uint8)
  f = images.astype(np.float32)
  r, g, b = (np.float32(k) * f[..., i:i + 1] for i, k in enumerate(LUMA))
  return (r + g + b).astype(np.uint8)


def _grey_or_none(images: np.ndarray) -> np.ndarray | None:
  return None if images.shape[-1] == 1 else grey(images)


def _mean_grey(images: np.ndarray) -> np.ndarray:
  """Each image's mean grey level, float32 (n, 1, 1, 1) (Contrast's degenerate image)."""
  g = grey(images).astype(np.float32)
  return (g.sum(axis=(1, 2, 3), keepdims=True) / np.float32(g[0].size)).astype(np.float32)


def _smoothed(images: np.ndarray) -> np.ndarray:
  """Sharpness's degenerate image: the interior smoothed by [[1,1,1],[1,5,1],[1,1,1]]/13
  (rounded to the nearest integer), the border pixels as they are."""
  n, h, w, c = images.shape
  if h <= 2 or w <= 2:
    return images
  f = images.astype(np.float64)
  total = sum(f[:, dy:h - 2 + dy, dx:w - 2 + dx] for dy in range(3) for dx in range(3))
  inner = (total + 4 * f[:, 1:-1, 1:-1]) / 13  # the centre weighs 5
  out = images.copy()
  out[:, 1:-1, 1:-1] = np.rint(inner).astype(np.uint8)  # never a tie: k/13 is never m + 1/2
  return out


def posterize(images: np.ndarray, bits: np.ndarray) -> np.ndarray:
  """Keeps the top ``bits`` bits of each value."""
  mask = (0xFF << (8 - bits.reshape(-1, 1, 1, 1))) & 0xFF
  return (images & mask).astype(np.uint8)


def solarize(images: np.ndarray, threshold: np.ndarray) -> np.ndarray:
  """Inverts the values ``>= threshold``."""
  return np.where(images >= threshold.reshape(-1, 1, 1, 1), 255 - images, images)


def autocontrast(images: np.ndarray) -> np.ndarray:
  """Stretches each channel to [0, 255] (a constant channel is kept). float32, the scale as
  torch computes ``255 / (max - min)``: the reciprocal, then times 255."""
  lo = images.min(axis=(1, 2), keepdims=True).astype(np.float32)
  hi = images.max(axis=(1, 2), keepdims=True).astype(np.float32)
  flat = hi == lo
  scale = np.float32(1) / np.where(flat, np.float32(1), hi - lo) * np.float32(255)
  scale, lo = np.where(flat, np.float32(1), scale), np.where(flat, np.float32(0), lo)
  return np.clip((images.astype(np.float32) - lo) * scale, 0, 255).astype(np.uint8)


def equalize(images: np.ndarray) -> np.ndarray:
  """Histogram equalisation of each channel (torchvision's integer look-up table; a channel
  whose histogram has all but one value in its last occupied bin is kept)."""
  n, h, w, c = images.shape
  planes = images.transpose(0, 3, 1, 2).reshape(n * c, h * w).astype(np.int64)
  hist = np.bincount((planes + 256 * np.arange(n * c)[:, None]).ravel(),
                     minlength=256 * n * c).reshape(n * c, 256)
  last = 255 - np.argmax(hist[:, ::-1] > 0, axis=1)  # the last occupied bin
  step = (hist.sum(axis=1) - hist[np.arange(n * c), last]) // 255
  safe = np.maximum(step, 1)[:, None]
  lut = (np.cumsum(hist, axis=1) + safe // 2) // safe
  lut = np.clip(np.concatenate([np.zeros((n * c, 1), np.int64), lut[:, :-1]], axis=1), 0, 255)
  out = np.where(step[:, None] == 0, planes, np.take_along_axis(lut, planes, axis=1))
  return out.reshape(n, c, h, w).transpose(0, 2, 3, 1).astype(np.uint8)
