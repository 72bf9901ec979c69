"""RandAugment: each operation against torchvision's on uint8 tensors (skipped without torch),
hand-computed cases that run everywhere, and the draws per (seed, batch)."""

import math

import numpy as np
import pytest

from cnnjax import config as config_lib
from cnnjax.data import augment, randaugment as ra

RNG = np.random.default_rng(0)


def images(n, h, w, c):
  """Random pixels, then a low-contrast, a constant and a two-level image (edge cases of
  AutoContrast and Equalize)."""
  out = RNG.integers(0, 256, (n, h, w, c), dtype=np.uint8)
  out[1] = out[1] // 4 + 60
  out[2] = 7
  out[3] = np.where(RNG.random((h, w, 1)) < 0.3, 200, 10)
  return out


CASES = [images(6, 28, 28, 1), images(6, 32, 32, 3), images(6, 13, 17, 3)]


@pytest.mark.parametrize("op", ra.OPS)
def test_each_op_equals_torchvision_on_uint8_tensors(op):
  """Exact, but for geometric pixels whose source lies on a rounding tie (torchvision's grid is
  float32, ours float64): those may take either neighbour."""
  torch = pytest.importorskip("torch")
  from torchvision.transforms import InterpolationMode  # pylint: disable=import-outside-toplevel
  from torchvision.transforms import autoaugment  # pylint: disable=import-outside-toplevel
  for batch in CASES:
    h, w = batch.shape[1:3]
    for bin_ in (-30, -9, 0, 9, 17, 30) if op in ra.SIGNED else (0, 9, 17, 30):
      value = float(ra.op_value(op, np.array([bin_], float), h, w)[0])
      ours = ra.apply_op(batch, op, np.full(len(batch), float(bin_)))
      theirs = np.stack([
          autoaugment._apply_op(  # pylint: disable=protected-access
              torch.from_numpy(im).permute(2, 0, 1).contiguous(), op, value,
              InterpolationMode.NEAREST, None).permute(1, 2, 0).numpy()
          for im in batch])
      differ = (ours != theirs).any(axis=-1)
      if op in ra.GEOMETRIC:
        sx, sy = ra.sources(ra.affine_matrices(op, np.full(len(batch), value), h, w), h, w)
        tie = (np.abs(sx % 1 - 0.5) < 1e-4) | (np.abs(sy % 1 - 0.5) < 1e-4)
        assert not (differ & ~tie).any(), (op, batch.shape, bin_)
        assert differ.mean() < 0.02, (op, batch.shape, bin_, differ.mean())
      else:
        assert not differ.any(), (op, batch.shape, bin_, differ.sum())


def test_the_magnitude_table_is_torchvisions():
  pytest.importorskip("torch")
  from torchvision.transforms import RandAugment  # pylint: disable=import-outside-toplevel
  table = RandAugment()._augmentation_space(31, (28, 32))  # pylint: disable=protected-access
  assert tuple(table) == ra.OPS
  for op, (values, signed) in table.items():
    assert signed == (op in ra.SIGNED)
    bins = np.arange(31, dtype=float)
    want = np.broadcast_to(values.numpy(), bins.shape)
    np.testing.assert_allclose(ra.op_value(op, bins, 28, 32), want, rtol=1e-6, atol=1e-5,
                               err_msg=op)


def test_hand_computed_operations():
  x = np.array([[[[0x37], [178], [179]]]], np.uint8)  # one 1x3 grey image
  top = np.array([30.0])
  np.testing.assert_array_equal(ra.apply_op(x, "Posterize", top).ravel(), [0x30, 176, 176])
  # bin 9: threshold 255·(1 - 9/30) = 178.5, so 179 is inverted and 178 is not
  np.testing.assert_array_equal(ra.apply_op(x, "Solarize", np.array([9.0])).ravel(),
                                [0x37, 178, 76])
  np.testing.assert_array_equal(ra.blend(x, np.zeros_like(x), np.array([1.5])).ravel(),
                                [82, 255, 255])  # 82.5 truncated, 267 and 268.5 clipped
  assert ra.apply_op(x, "Color", top) is x  # grey: Color leaves it
  np.testing.assert_array_equal(ra.autocontrast(x).ravel(), [0, 252, 255])  # (v-55)·255/124
  square = np.arange(9, dtype=np.uint8).reshape(1, 3, 3, 1)
  right = ra.warp(square, ra.inverse_affine(np.zeros(1), (np.ones(1), np.zeros(1)),
                                            (np.zeros(1), np.zeros(1))))
  np.testing.assert_array_equal(right[0, :, :, 0], [[0, 0, 1], [0, 3, 4], [0, 6, 7]])
  quarter = ra.warp(square, ra.inverse_affine(np.array([-90.0]), (np.zeros(1), np.zeros(1)),
                                              (np.zeros(1), np.zeros(1))))
  np.testing.assert_array_equal(quarter[0, :, :, 0], np.rot90(square[0, :, :, 0]))


def test_reads_its_config_keys_and_is_off_by_default():
  c = config_lib.defaults()
  assert not augment.Augment.from_config(c).randaugment.active
  c.randaugment.num_ops, c.randaugment.magnitude, c.randaugment.magnitude_std = 2, 12.0, 0.5
  assert augment.Augment.from_config(c).randaugment == ra.RandAugment(2, 12.0, 0.5)
  x = images(4, 8, 8, 1)
  assert ra.RandAugment().apply(x, seed=0, batch=0, global_batch=4, rows=slice(None)) is x


def test_draws_come_from_the_generator_of_seed_and_batch():
  rows = np.array([2, 0])
  ops, magnitudes = ra.RandAugment(2, 9.0, 4.0).draw(seed=3, batch=5, global_batch=4, rows=rows)
  rng = np.random.default_rng([3, 4, 5])  # operations, signs, magnitudes
  want_ops = rng.integers(0, 14, (4, 2))
  signs = np.where(rng.random((4, 2)) < 0.5, -1.0, 1.0)
  want = signs * np.clip(rng.normal(9.0, 4.0, (4, 2)), 0, 30)
  np.testing.assert_array_equal(ops, want_ops[rows])
  np.testing.assert_array_equal(magnitudes, want[rows])
  _, plain = ra.RandAugment(2, 9.0).draw(seed=3, batch=5, global_batch=4, rows=rows)
  np.testing.assert_array_equal(np.abs(plain), 9.0)  # no std: the bin itself, signed


def test_a_row_is_augmented_the_same_whatever_rows_a_process_reads():
  x = images(8, 12, 12, 3)
  r = ra.RandAugment(num_ops=3, magnitude=20.0)
  whole = r.apply(x, seed=1, batch=2, global_batch=8, rows=slice(None))
  rows = np.array([5, 1, 6])
  np.testing.assert_array_equal(r.apply(x[rows], seed=1, batch=2, global_batch=8, rows=rows),
                                whole[rows])
  assert not np.array_equal(whole, x)
  assert not math.isclose(np.mean(whole != x), 0.0)
