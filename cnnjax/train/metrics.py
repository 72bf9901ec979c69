"""Losses and classification metrics as pure functions.

Metrics are (sum, count) pairs so that averages over batches, devices and padded evaluation
batches are exact: ``finalize`` divides once at the end.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

Array = jax.Array


def cross_entropy(logits: Array, labels: Array, label_smoothing: float = 0.0,
                  partner: Array | None = None, lam: Array | None = None) -> Array:
  """Per-example softmax cross-entropy with optional label smoothing (Szegedy et al. 2016).

  With ``partner`` labels and per-example weights ``lam`` (mixup, CutMix: the ``mixing``
  module), the target is ``lam·onehot(labels) + (1-lam)·onehot(partner)``, then smoothed
  (smoothing is affine, so this equals mixing smoothed targets, as timm does)."""
  targets = jax.nn.one_hot(labels, logits.shape[-1], dtype=jnp.float32)
  if partner is not None:
    lam = lam.astype(jnp.float32)[:, None]
    targets = lam * targets + (1 - lam) * jax.nn.one_hot(partner, logits.shape[-1],
                                                         dtype=jnp.float32)
  if label_smoothing:
    targets = optax.smooth_labels(targets, label_smoothing)
  return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets)


def dominant(labels: Array, partner: Array | None = None, lam: Array | None = None) -> Array:
  """The label a mixed example is scored against: its own where ``lam >= 0.5``, else its
  partner's (``labels`` when unmixed)."""
  return labels if partner is None else jnp.where(lam >= 0.5, labels, partner)


def topk_correct(logits: Array, labels: Array, k: int) -> Array:
  """1.0 where the label is among the ``k`` highest logits (ties broken by index), else 0.0.

  An example with any non-finite logit (NaN, ±inf) is a miss: NaN compares False with
  everything, so without this a NaN row would rank its label first and a diverged model
  would score top-1 = 1.0.
  """
  k = min(k, logits.shape[-1])
  label_logit = jnp.take_along_axis(logits, labels[:, None], axis=-1)
  # Rank of the label = how many classes beat it (strictly, or equal with a lower index).
  idx = jnp.arange(logits.shape[-1])
  beats = (logits > label_logit) | ((logits == label_logit) & (idx < labels[:, None]))
  finite = jnp.all(jnp.isfinite(logits), axis=-1)
  return ((jnp.sum(beats, axis=-1) < k) & finite).astype(jnp.float32)


SUM_KEYS = ("loss", "top1", "top5", "count")  # classification_sums' keys


def classification_sums(logits: Array, labels: Array, mask: Array | None = None,
                        loss: Array | None = None) -> dict[str, Array]:
  """Sums of loss, top-1 and top-5 hits over the unmasked examples, and their count."""
  mask = jnp.ones(labels.shape, jnp.float32) if mask is None else mask.astype(jnp.float32)
  loss = cross_entropy(logits, labels) if loss is None else loss
  return {
      "loss": jnp.sum(loss * mask),
      "top1": jnp.sum(topk_correct(logits, labels, 1) * mask),
      "top5": jnp.sum(topk_correct(logits, labels, 5) * mask),
      "count": jnp.sum(mask),
  }


@jax.jit
def _add(a: dict[str, Array], b: dict[str, Array]) -> dict[str, Array]:
  return jax.tree.map(jnp.add, a, b)


def add(a: dict[str, Array] | None, b: dict[str, Array]) -> dict[str, Array]:
  """``a + b`` key by key, as one compiled call (one ``jnp.add`` per key outside jit cost about
  1 ms each: most of LeNet-5's 8 ms step at batch 128)."""
  return b if a is None else _add(a, b)


def finalize(sums: dict[str, Array], prefix: str) -> dict[str, float]:
  """Sums → averages named ``prefix/key``; the count is dropped."""
  count = float(sums["count"])
  return {f"{prefix}/{k}": float(v) / max(count, 1.0) for k, v in sums.items() if k != "count"}
