"""The training augmentations, declared once: drawn on the host, applied inside the train step.

``Augment`` holds the ``config.data`` keys of the augmentations (its fields are named as the
keys). The training stream (``cnnjax.data.pipeline``) calls ``draw`` for each global batch with a
generator seeded by ``(seed, batch)`` and sends the draws with the unaugmented uint8 batch;
the jitted train step calls ``apply``, one gather. On the host the same copy, image by image,
cost LeNet-5's loop about 8% of its speed on 2 cores (0.36 ms per batch of 128, against 0.05 ms
in XLA). Adding an augmentation: its key in ``config.defaults()``, its field here and its lines in
``draw`` and ``apply``. JAX and NumPy only: the benchmarks import the step on machines without PIL
or grain.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class Augment:
  """Which augmentations a run trains with (``config.data``'s keys of the same names)."""

  max_shift: int = 0  # random translation by up to this many pixels (zero fill)
  flip: bool = False  # random left-right mirror

  @classmethod
  def from_config(cls, data: Mapping[str, Any]) -> Augment:
    """From ``config.data``: every field read from the key of its name."""
    return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls)})

  @property
  def active(self) -> bool:
    return bool(self.max_shift or self.flip)

  def draw(self, *, seed: int, batch: int, global_batch: int,
           rows: np.ndarray | slice) -> dict[str, np.ndarray]:
    """The draws for ``rows`` of global batch ``batch``, from a generator seeded by
    ``(seed, 1, batch)`` and made for the whole global batch (so a row's draws don't depend on
    the process count): ``shift`` int32 (b, 2), (dy, dx) in ``[-max_shift, max_shift]``, and
    ``flip`` bool (b,). Nothing when no augmentation is active."""
    if not self.active:
      return {}
    rng = np.random.default_rng([seed, 1, batch])
    shifts = rng.integers(0, 2 * self.max_shift + 1, size=(global_batch, 2))[rows]
    flips = (rng.random(global_batch) < 0.5)[rows] if self.flip else np.zeros(len(shifts), bool)
    return {"shift": (shifts - self.max_shift).astype(np.int32), "flip": flips}

  def apply(self, images: jax.Array, batch: Mapping[str, jax.Array]) -> jax.Array:
    """``images`` with ``batch``'s draws applied (in the jitted step)."""
    if not self.active:
      return images
    return shift_and_flip(images, batch["shift"], batch["flip"])


NONE = Augment()


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
