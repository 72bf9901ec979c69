"""Metric arithmetic on fixed logits, with answers worked out by hand."""

import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax.train import metrics

# Six classes. Label ranks: example 0 → 1st, 1 → 2nd, 2 → 6th (last).
LOGITS = jnp.array([[5.0, 1, 0, 0, 0, 0],
                    [2.0, 3, 0, 0, 0, 0],
                    [9.0, 8, 7, 6, 5, 0]])
LABELS = jnp.array([0, 0, 5])


def test_topk():
  np.testing.assert_array_equal(metrics.topk_correct(LOGITS, LABELS, 1), [1, 0, 0])
  np.testing.assert_array_equal(metrics.topk_correct(LOGITS, LABELS, 5), [1, 1, 0])
  np.testing.assert_array_equal(metrics.topk_correct(LOGITS, LABELS, 6), [1, 1, 1])


def test_ties_do_not_count_as_hits_for_every_tied_class():
  logits = jnp.zeros((1, 10))
  assert float(metrics.topk_correct(logits, jnp.array([9]), 1)[0]) == 0.0
  assert float(metrics.topk_correct(logits, jnp.array([0]), 1)[0]) == 1.0


def test_cross_entropy_by_hand():
  logits = jnp.array([[0.0, jnp.log(3.0)]])  # p = (1/4, 3/4)
  np.testing.assert_allclose(metrics.cross_entropy(logits, jnp.array([1])), [-np.log(0.75)],
                             rtol=1e-6)
  smoothed = metrics.cross_entropy(logits, jnp.array([1]), label_smoothing=0.2)
  # targets (0.1, 0.9): -(0.1 log 1/4 + 0.9 log 3/4)
  np.testing.assert_allclose(smoothed, [-(0.1 * np.log(0.25) + 0.9 * np.log(0.75))], rtol=1e-6)


def test_masked_sums_and_exact_average_over_batches():
  mask = jnp.array([1.0, 1.0, 0.0])
  sums = metrics.classification_sums(LOGITS, LABELS, mask)
  assert tuple(sums) == metrics.SUM_KEYS  # the keys the loop's window carries
  assert float(sums["count"]) == 2 and float(sums["top1"]) == 1 and float(sums["top5"]) == 2
  total = metrics.add(sums, metrics.classification_sums(LOGITS[2:], LABELS[2:]))
  out = metrics.finalize(total, "eval")
  assert out["eval/top1"] == pytest.approx(1 / 3) and out["eval/top5"] == pytest.approx(2 / 3)
  assert "eval/count" not in out


def test_non_finite_rows_are_misses_for_top1_and_topk():
  nan, inf = float("nan"), float("inf")
  logits = jnp.array([[nan, nan, nan, nan],  # all NaN: rank 0 without the guard
                      [0.0, nan, 0, 0],  # one NaN beside the label
                      [inf, 1, 2, 3],  # +inf in the label's slot
                      [-inf, 5, 1, 0],  # -inf in a slot that is not the label's
                      [1.0, 1, 1, 1],  # finite ties: only the lowest index hits top-1
                      [1.0, 1, 1, 1]])
  labels = jnp.array([0, 0, 0, 1, 0, 3])
  np.testing.assert_array_equal(metrics.topk_correct(logits, labels, 1), [0, 0, 0, 0, 1, 0])
  np.testing.assert_array_equal(metrics.topk_correct(logits, labels, 4), [0, 0, 0, 0, 1, 1])
  sums = metrics.classification_sums(logits, labels)
  assert float(sums["top1"]) == 1 and float(sums["top5"]) == 2


def test_topk_under_jit_matches_eager():
  import jax
  logits = LOGITS.at[1, 2].set(jnp.nan)
  jitted = jax.jit(metrics.topk_correct, static_argnums=2)(logits, LABELS, 5)
  np.testing.assert_array_equal(jitted, [1, 0, 0])
