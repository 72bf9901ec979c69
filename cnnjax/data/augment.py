"""The training augmentations, declared once: drawn on the host, applied inside the train step.

``Augment`` holds the ``config.data`` keys of the augmentations (its fields are named as the
keys), with the mixing of batches (``mixing.Mixing``: ``config.mixup``, ``config.cutmix``) and
RandAugment (``randaugment.RandAugment``, ``config.randaugment``: the one augmentation applied
on the host, by the training stream). The training stream (``cnnjax.data.pipeline``) calls
``draw`` for each global batch with a generator seeded by ``(seed, batch)`` and sends the draws
with the unaugmented uint8 batch; the jitted train step calls ``apply``, one gather. On the host the same copy, image by image,
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

from cnnjax.data.mixing import Mixing
from cnnjax.data.randaugment import RandAugment


@dataclasses.dataclass(frozen=True)
class Augment:
  """Which augmentations a run trains with (``config.data``'s keys of the same names)."""

  max_shift: int = 0  # random translation by up to this many pixels (zero fill)
  flip: bool = False  # random left-right mirror
  randaugment: RandAugment = RandAugment()  # applied by the training stream, on the host
  mixing: Mixing = Mixing()  # applied in the step, on the model's input (``mix``)

  @classmethod
  def from_config(cls, config: Mapping[str, Any]) -> Augment:
    """From the config: ``config.data``'s keys of the fields' names, ``config.randaugment``,
    ``config.mixup`` and ``config.cutmix``."""
    return cls(max_shift=config["data"]["max_shift"], flip=config["data"]["flip"],
               randaugment=RandAugment.from_config(config["randaugment"]),
               mixing=Mixing.from_config(config))

  @property
  def active(self) -> bool:
    return bool(self.max_shift or self.flip)

  def draw(self, *, seed: int, batch: int, global_batch: int,
           rows: np.ndarray | slice) -> dict[str, np.ndarray]:
    """The draws for ``rows`` of global batch ``batch``, from a generator seeded by
    ``(seed, 1, batch)`` and made for the whole global batch (so a row's draws don't depend on
    the process count): ``shift`` int32 (b, 2), (dy, dx) in ``[-max_shift, max_shift]``, and
    ``flip`` bool (b,); then the mixing's (``Mixing.draw``). Nothing when no augmentation is
    active."""
    mixes = self.mixing.draw(seed=seed, batch=batch, global_batch=global_batch, rows=rows)
    if not self.active:
      return mixes
    rng = np.random.default_rng([seed, 1, batch])
    shifts = rng.integers(0, 2 * self.max_shift + 1, size=(global_batch, 2))[rows]
    flips = (rng.random(global_batch) < 0.5)[rows] if self.flip else np.zeros(len(shifts), bool)
    return {"shift": (shifts - self.max_shift).astype(np.int32), "flip": flips, **mixes}

  def apply(self, images: jax.Array, batch: Mapping[str, jax.Array]) -> jax.Array:
    """``images`` with ``batch``'s draws applied (in the jitted step)."""
    if not self.active:
      return images
    return shift_and_flip(images, batch["shift"], batch["flip"])

  def mix(self, x: jax.Array, labels: jax.Array, batch: Mapping[str, jax.Array]
          ) -> tuple[jax.Array, jax.Array | None, jax.Array | None]:
    """The model input ``x`` mixed by ``batch``'s draws (``Mixing.apply``): ``(x, partner labels,
    λ)``, or ``(x, None, None)`` without mixing."""
    return self.mixing.apply(x, labels, batch)


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
