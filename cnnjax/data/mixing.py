"""Mixup (Zhang et al. 2018) and CutMix (Yun et al. 2019): drawn on the host, applied in the step.

With probability ``prob`` a training batch is mixed: each row ``i`` with its partner, row
``B-1-i`` of the global batch (the batch read backwards, as timm pairs them), by one λ for the
whole batch. When both alphas are > 0, CutMix is chosen with probability ``switch_prob``,
else mixup. Mixup blends the model inputs, ``λ·x_i + (1-λ)·x_partner``, λ ~ Beta(α, α). CutMix
pastes the partner's pixels into a box of about ``(1-λ)`` of the image's area, centred at a
uniform point and clipped at the edges; λ is then recomputed from the clipped box's area, so the
label weights are the pixel shares. The targets are ``λ·y_i + (1-λ)·y_partner`` (then smoothed:
``cnnjax.train.metrics.cross_entropy``); train top-1 counts a hit on the dominant label, the row's
own where λ >= 0.5, else its partner's.

The draws of batch ``b`` come from a generator seeded by ``(seed, 3, b)`` (``Augment.draw``'s
pattern: per global batch, so the data order, resume and any process count give the same
mixes), once per batch and repeated on every row, so the rows can be sharded like the rest of
the batch. The pixels are mixed in the jitted step, on the model's input (after resizing), where
the box is cut in the model's own pixels.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

KEYS = ("mix_lam", "mix_cut", "mix_centre")  # what ``draw`` adds to a training batch


@dataclasses.dataclass(frozen=True)
class Mixing:
  """``config.mixup`` and ``config.cutmix``: how training batches are mixed (off by default)."""

  mixup_alpha: float = 0.0  # Beta(α, α) of mixup's λ; 0: no mixup
  cutmix_alpha: float = 0.0  # Beta(α, α) of CutMix's λ; 0: no CutMix
  prob: float = 1.0  # chance that a batch is mixed at all
  switch_prob: float = 0.5  # with both alphas > 0: chance of CutMix rather than mixup

  @classmethod
  def from_config(cls, config: Mapping[str, Any]) -> Mixing:
    mixup, cutmix = config["mixup"], config["cutmix"]
    return cls(mixup_alpha=mixup["alpha"], cutmix_alpha=cutmix["alpha"], prob=mixup["prob"],
               switch_prob=mixup["switch_prob"])

  @property
  def active(self) -> bool:
    return (self.mixup_alpha > 0 or self.cutmix_alpha > 0) and self.prob > 0

  def draw(self, *, seed: int, batch: int, global_batch: int,
           rows: np.ndarray | slice) -> dict[str, np.ndarray]:
    """Global batch ``batch``'s mix, repeated on ``rows``: ``mix_lam`` float32 (b,) (1: not
    mixed), ``mix_cut`` bool (b,) (CutMix, else mixup), ``mix_centre`` float32 (b, 2), the box
    centre as fractions of (height, width). From the generator seeded by ``(seed, 3, batch)``,
    in the order: mixed?, CutMix?, λ (when mixed), centre. Nothing when mixing is off."""
    if not self.active:
      return {}
    rng = np.random.default_rng([seed, 3, batch])
    mixed = rng.random() < self.prob
    switch = rng.random() < self.switch_prob
    cut = self.cutmix_alpha > 0 and (self.mixup_alpha <= 0 or switch)
    alpha = self.cutmix_alpha if cut else self.mixup_alpha
    lam = rng.beta(alpha, alpha) if mixed else 1.0
    centre = rng.random(2)
    b = len(np.arange(global_batch)[rows])
    return {"mix_lam": np.full(b, lam, np.float32), "mix_cut": np.full(b, cut and mixed),
            "mix_centre": np.tile(centre.astype(np.float32), (b, 1))}

  def apply(self, x: jax.Array, labels: jax.Array, batch: Mapping[str, jax.Array]
            ) -> tuple[jax.Array, jax.Array | None, jax.Array | None]:
    """``(x mixed, partner labels, λ per row)`` in the jitted step, from ``batch``'s draws; ``(x,
    None, None)`` when mixing is off."""
    if not self.active:
      return x, None, None
    return mix(x, labels, batch["mix_lam"], batch["mix_cut"], batch["mix_centre"])


NONE = Mixing()


def cutmix_box(lam: jax.Array, centre: jax.Array, height: int, width: int) -> jax.Array:
  """Boxes ``(top, bottom, left, right)`` (int32 (n, 4), half-open, clipped to the image) of
  about ``1-lam`` of a ``height``×``width`` image: sides ``floor(size·sqrt(1-lam))``, centred
  at ``floor(centre·size)``, the top-left corner half a side (rounded down) before it."""
  side = jnp.sqrt(1.0 - lam.astype(jnp.float32))
  sizes = jnp.array([height, width], jnp.float32)
  cut = jnp.floor(side[:, None] * sizes).astype(jnp.int32)  # (n, 2): box height, width
  start = jnp.floor(centre.astype(jnp.float32) * sizes).astype(jnp.int32) - cut // 2
  limit = jnp.array([height, width], jnp.int32)
  lo, hi = jnp.clip(start, 0, limit), jnp.clip(start + cut, 0, limit)
  return jnp.stack([lo[:, 0], hi[:, 0], lo[:, 1], hi[:, 1]], axis=1)


def mix(x: jax.Array, labels: jax.Array, lam: jax.Array, cut: jax.Array, centre: jax.Array
        ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Row ``i`` of NHWC ``x`` mixed with row ``n-1-i``: CutMix where ``cut[i]`` (box from
  ``lam[i]``, ``centre[i]``; λ becomes the share of the row's own pixels), else mixup by
  ``lam[i]`` (λ = 1 leaves the row as it is). Returns the mixed ``x``, the partner labels and
  the λ of each row."""
  n, h, w = x.shape[:3]
  partner_x, partner = x[::-1], labels[::-1]
  box = cutmix_box(lam, centre, h, w)
  ys, xs = jnp.arange(h), jnp.arange(w)
  inside = (((ys >= box[:, 0:1]) & (ys < box[:, 1:2]))[:, :, None]
            & ((xs >= box[:, 2:3]) & (xs < box[:, 3:4]))[:, None, :])
  area = (box[:, 1] - box[:, 0]) * (box[:, 3] - box[:, 2])
  lam = jnp.where(cut, 1.0 - area.astype(jnp.float32) / (h * w), lam.astype(jnp.float32))
  l = lam.astype(x.dtype).reshape(n, 1, 1, 1)
  blended = l * x + (1 - l) * partner_x
  pasted = jnp.where(inside[..., None], partner_x, x)
  return jnp.where(cut.reshape(n, 1, 1, 1), pasted, blended), partner, lam
