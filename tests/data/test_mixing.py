"""Mixup and CutMix: the draws per global batch, the clipped box, the mixed pixels, labels and λ,
each against values worked out by hand."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax import config as config_lib
from cnnjax.data import augment, mixing
from cnnjax.train import metrics

MIX = jax.jit(mixing.mix)  # one compile per shape, not one per eager op


def test_reads_its_config_keys_and_is_off_by_default():
  c = config_lib.defaults()
  assert augment.Augment.from_config(c).mixing == mixing.NONE
  assert not mixing.NONE.active
  c.mixup.alpha, c.cutmix.alpha, c.mixup.prob, c.mixup.switch_prob = 0.2, 1.0, 0.5, 0.25
  assert augment.Augment.from_config(c).mixing == mixing.Mixing(0.2, 1.0, 0.5, 0.25)
  assert not mixing.Mixing(mixup_alpha=0.2, prob=0.0).active
  x, labels = jnp.ones((2, 3, 3, 1)), jnp.array([0, 1])
  assert mixing.NONE.apply(x, labels, {}) == (x, None, None)
  assert mixing.NONE.draw(seed=1, batch=0, global_batch=4, rows=slice(None)) == {}


def test_draws_come_from_the_generator_of_seed_and_batch_in_a_fixed_order():
  rows = np.array([3, 1])
  both = mixing.Mixing(mixup_alpha=0.4, cutmix_alpha=1.0, prob=0.9, switch_prob=0.3)
  draws = both.draw(seed=5, batch=7, global_batch=4, rows=rows)
  rng = np.random.default_rng([5, 3, 7])  # mixed?, CutMix?, λ, centre
  mixed, cut = rng.random() < 0.9, rng.random() < 0.3
  lam = rng.beta(1.0, 1.0) if cut else rng.beta(0.4, 0.4)
  centre = rng.random(2)
  assert mixed  # this seed mixes: the λ below is a real draw
  np.testing.assert_array_equal(draws["mix_lam"], np.float32([lam, lam]))
  np.testing.assert_array_equal(draws["mix_cut"], [cut, cut])
  np.testing.assert_array_equal(draws["mix_centre"], np.float32([centre, centre]))
  assert draws["mix_lam"].dtype == np.float32 and draws["mix_cut"].dtype == bool
  # every row of the global batch holds the batch's draws, so any split of the rows agrees
  whole = both.draw(seed=5, batch=7, global_batch=4, rows=slice(None))
  for k in mixing.KEYS:
    np.testing.assert_array_equal(whole[k][rows], draws[k])


@pytest.mark.parametrize("mixup_alpha,cutmix_alpha,switch_prob,cut_share", [
    (0.2, 0.0, 0.5, 0.0), (0.0, 1.0, 0.5, 1.0), (0.2, 1.0, 0.25, 0.25), (0.2, 1.0, 1.0, 1.0)])
def test_prob_and_switch_prob_mean_what_timm_means(mixup_alpha, cutmix_alpha, switch_prob,
                                                   cut_share):
  m = mixing.Mixing(mixup_alpha, cutmix_alpha, prob=0.5, switch_prob=switch_prob)
  draws = [m.draw(seed=0, batch=b, global_batch=2, rows=slice(None)) for b in range(2000)]
  mixed = np.array([d["mix_lam"][0] < 1 for d in draws])
  cut = np.array([d["mix_cut"][0] for d in draws])
  assert abs(mixed.mean() - 0.5) < 0.04
  assert not cut[~mixed].any()  # an unmixed batch is neither
  assert abs(cut[mixed].mean() - cut_share) < 0.05


def test_the_box_is_clipped_at_the_edges():
  # 8x8, λ = 0.75: sides floor(8·sqrt(0.25)) = 4, corner half a side before the centre.
  lam = jnp.float32([0.75, 0.75, 0.75, 0.0, 1.0])
  centre = jnp.float32([[0.5, 0.5], [0.1, 0.9], [0.99, 0.0], [0.3, 0.3], [0.5, 0.5]])
  box = np.asarray(jax.jit(mixing.cutmix_box, static_argnums=(2, 3))(lam, centre, 8, 8))
  np.testing.assert_array_equal(box, [
      [2, 6, 2, 6],  # centre (4, 4): inside
      [0, 2, 5, 8],  # centre (0, 7): rows -2..2 and columns 5..9, clipped
      [5, 8, 0, 2],  # centre (7, 0): rows 5..9 and columns -2..2, clipped
      [0, 6, 0, 6],  # λ = 0: side 8 about centre (2, 2), rows and columns -2..6, clipped
      [4, 4, 4, 4],  # λ = 1: empty
  ])


def test_cutmix_pastes_the_partner_box_and_lambda_is_the_clipped_area():
  x = jnp.stack([jnp.full((8, 8, 1), 1.0), jnp.full((8, 8, 1), 2.0), jnp.full((8, 8, 1), 3.0)])
  labels = jnp.array([4, 5, 6])
  lam = jnp.float32([0.75] * 3)
  centre = jnp.float32([[0.1, 0.9]] * 3)  # box rows 0..2, columns 5..8: 6 pixels
  out, partner, lam_out = MIX(x, labels, lam, jnp.array([True] * 3), centre)
  np.testing.assert_array_equal(partner, [6, 5, 4])
  np.testing.assert_allclose(lam_out, [1 - 6 / 64] * 3, rtol=0)  # 0.90625, not 0.75
  want = np.ones((8, 8))
  want[0:2, 5:8] = 3.0  # row 0 takes row 2's pixels in the box
  np.testing.assert_array_equal(out[0, :, :, 0], want)
  np.testing.assert_array_equal(out[1], x[1])  # the middle row is its own partner
  assert float(out[2, 0, 5, 0]) == 1.0 and float(out[2, 3, 3, 0]) == 3.0


def test_mixup_blends_by_lambda_and_lambda_one_leaves_the_row():
  x = jnp.float32([[[[0.0]]], [[[10.0]]]])  # two 1x1 images
  out, partner, lam = MIX(x, jnp.array([1, 2]), jnp.float32([0.3, 0.3]),
                                 jnp.array([False, False]), jnp.zeros((2, 2)))
  np.testing.assert_allclose(out.ravel(), [0.3 * 0 + 0.7 * 10, 0.3 * 10 + 0.7 * 0], rtol=1e-6)
  np.testing.assert_array_equal(partner, [2, 1])
  np.testing.assert_array_equal(lam, np.float32([0.3, 0.3]))
  x = jnp.arange(2 * 4 * 4 * 3, dtype=jnp.float32).reshape(2, 4, 4, 3) / 7
  same, _, lam = MIX(x, jnp.array([0, 1]), jnp.float32([1.0, 1.0]),
                            jnp.array([False, False]), jnp.zeros((2, 2)))
  np.testing.assert_array_equal(same, x)  # an unmixed batch, bit for bit
  np.testing.assert_array_equal(lam, [1.0, 1.0])


def test_mixed_targets_and_the_dominant_label():
  logits = jnp.log(jnp.float32([[0.5, 0.25, 0.25], [0.1, 0.1, 0.8]]))
  labels, partner, lam = jnp.array([0, 2]), jnp.array([2, 0]), jnp.float32([0.7, 0.4])
  loss = metrics.cross_entropy(logits, labels, 0.0, partner, lam)
  # -(0.7·log 0.5 + 0.3·log 0.25), -(0.4·log 0.8 + 0.6·log 0.1)
  np.testing.assert_allclose(loss, [-(0.7 * np.log(0.5) + 0.3 * np.log(0.25)),
                                    -(0.4 * np.log(0.8) + 0.6 * np.log(0.1))], rtol=1e-6)
  # smoothing 0.3 over 3 classes: row 0's targets (0.7·0.7 + 0.1, 0.1, 0.3·0.7 + 0.1)
  smoothed = metrics.cross_entropy(logits, labels, 0.3, partner, lam)
  t = np.array([0.59, 0.1, 0.31])
  np.testing.assert_allclose(smoothed[0], -(t * np.log([0.5, 0.25, 0.25])).sum(), rtol=1e-6)
  np.testing.assert_array_equal(metrics.dominant(labels, partner, lam), [0, 0])
  np.testing.assert_array_equal(metrics.dominant(labels, partner, jnp.float32([0.5, 0.5])),
                                [0, 2])  # a tie counts the row's own label
  assert metrics.dominant(labels) is labels
  np.testing.assert_array_equal(metrics.cross_entropy(logits, labels, 0.1),
                                metrics.cross_entropy(logits, labels, 0.1, labels,
                                                      jnp.float32([1.0, 1.0])))


def test_a_batch_sharded_over_4_devices_mixes_as_on_one():
  """The partner of a row lies on another device: the mix is the same, bit for bit."""
  from cnnjax import parallel  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(0)
  x = rng.random((8, 6, 6, 3), np.float32)
  labels = np.arange(8, dtype=np.int32)
  for cut in (False, True):
    draws = mixing.Mixing(mixup_alpha=1.0, cutmix_alpha=1.0, switch_prob=float(cut)).draw(
        seed=0, batch=1, global_batch=8, rows=slice(None))
    args = (x, labels, draws["mix_lam"], draws["mix_cut"], draws["mix_centre"])
    assert bool(draws["mix_cut"][0]) == cut and draws["mix_lam"][0] < 1
    outs = []
    for n in (1, 4):
      data = parallel.batch_sharding(parallel.make_mesh(jax.devices()[:n]))
      outs.append(jax.jit(mixing.mix, in_shardings=data)(*jax.device_put(args, data)))
    for one, four in zip(*outs):
      np.testing.assert_array_equal(np.asarray(four), np.asarray(one))
