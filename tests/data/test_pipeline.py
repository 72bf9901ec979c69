"""The grain pipelines: seeded order, exact resume, process sharding, exact evaluation; the
augmentation record (``augment.Augment``) they draw for and the step applies."""

import jax
import numpy as np
import pytest

from cnnjax.data import augment, pipeline, sources, transforms


@pytest.fixture(scope="module")
def train(data_dir):
  return sources.load("mnist5k", "train", data_dir).in_memory()


@pytest.fixture(scope="module")
def test(data_dir):
  return sources.load("mnist5k", "test", data_dir).in_memory()


def _take(stream, n):
  return [next(stream) for _ in range(n)]


def test_each_epoch_is_a_permutation_and_epochs_differ():
  first = pipeline.batch_indices(0, n=10, global_batch=10, seed=3)
  second = pipeline.batch_indices(1, n=10, global_batch=10, seed=3)
  assert sorted(first) == sorted(second) == list(range(10))
  assert not np.array_equal(first, second)
  straddle = pipeline.batch_indices(1, n=10, global_batch=6, seed=3)  # positions 6..11
  np.testing.assert_array_equal(straddle[:4], first[6:])
  np.testing.assert_array_equal(straddle[4:], second[:2])


def test_same_seed_same_batches_other_seed_other_batches(train):
  a = _take(pipeline.train_stream(train, global_batch=32, seed=0, max_shift=2), 3)
  b = _take(pipeline.train_stream(train, global_batch=32, seed=0, max_shift=2), 3)
  c = _take(pipeline.train_stream(train, global_batch=32, seed=1, max_shift=2), 1)
  for x, y in zip(a, b):
    for key in ("image", "label", "shift"):
      np.testing.assert_array_equal(x[key], y[key], err_msg=key)
  assert not np.array_equal(a[0]["label"], c[0]["label"])
  assert not np.array_equal(a[0]["shift"], c[0]["shift"])


def test_resume_from_iterator_state_gives_the_same_batches(train):
  both = augment.Augment(max_shift=2, flip=True)
  stream = pipeline.train_stream(train, global_batch=64, seed=5, augment=both)
  _take(stream, 70)  # crosses the epoch boundary at 62.5 batches
  state = stream.get_state()
  expected = _take(stream, 3)
  resumed = pipeline.train_stream(train, global_batch=64, seed=5, augment=both)
  resumed.set_state(state)
  for x, y in zip(expected, _take(resumed, 3)):
    for key in ("image", "label", "shift", "flip"):
      np.testing.assert_array_equal(x[key], y[key], err_msg=key)


def test_groups_stack_the_streams_batches_and_resume_from_its_state(train):
  options = dict(global_batch=16, seed=4, augment=augment.Augment(max_shift=2, flip=True),
                 rows=np.arange(4, 12))
  batches = _take(pipeline.train_stream(train, **options), 12)
  stacked = lambda lo, hi: {k: np.stack([b[k] for b in batches[lo:hi]]) for k in batches[0]}
  groups = pipeline.TrainGroups(train, size=4, **options)
  taken = [groups.take(n) for n in (3, 1, 2, 2, 3)]  # batches 0-2, 3, 4-5, 6-7, 8-10
  assert [(g, first) for g, _, first in taken] == [(0, 0), (0, 3), (1, 0), (1, 2), (2, 0)]
  for g, group, _ in taken:
    for key, expected in stacked(4 * g, 4 * g + 4).items():
      np.testing.assert_array_equal(group[key], expected, err_msg=f"{key} of group {g}")
  assert groups.get_state() == {"next_index": 11}
  with pytest.raises(ValueError, match="don't fit in a group of 4"):
    groups.take(2)  # batches 11-12 straddle two groups
  # Resuming mid-group from the per-batch stream's state (another size works the same way):
  stream = pipeline.train_stream(train, **options)
  _take(stream, 6)
  resumed = pipeline.TrainGroups(train, size=4, **options)
  resumed.set_state(stream.get_state())
  group, got, first = resumed.take(2)
  assert (group, first) == (1, 2)
  for key, expected in stacked(4, 8).items():
    np.testing.assert_array_equal(got[key], expected, err_msg=key)


@pytest.mark.parametrize("rows", [np.arange(4, 8), np.array([0, 1, 10, 11]), np.arange(12)])
def test_a_process_reads_exactly_its_rows_of_each_global_batch(train, rows):
  whole = next(pipeline.train_stream(train, global_batch=12, seed=0, max_shift=2, flip=True))
  part = next(pipeline.train_stream(train, global_batch=12, seed=0, max_shift=2, flip=True,
                                    rows=rows))
  assert set(part) == set(whole) == {"image", "label", "shift", "flip"}
  for key in whole:
    np.testing.assert_array_equal(part[key], whole[key][rows], err_msg=key)


def test_rows_outside_the_global_batch_are_refused(train):
  with pytest.raises(ValueError, match=r"indices in 0\.\.11"):
    pipeline.train_stream(train, global_batch=12, seed=0, rows=np.array([3, 12]))


@pytest.mark.parametrize("batch,processes", [(128, 1), (384, 1), (1000, 1), (96, 2), (64, 4)])
def test_eval_sees_every_example_exactly_once(test, batch, processes):
  seen, real = [], 0
  for rows in np.array_split(np.arange(batch), processes):
    for b in pipeline.eval_batches(test, global_batch=batch, rows=rows):
      assert b["image"].shape[0] == batch // processes
      seen.extend(b["label"][b["mask"] == 1].tolist())
      real += int(b["mask"].sum())
  assert real == 1000
  assert np.bincount(seen).tolist() == [100] * 10


def test_shift_and_flip_moves_pixels():
  image = np.zeros((1, 5, 5, 1), np.uint8)
  image[0, 2, 2, 0] = 9
  out = np.asarray(augment.shift_and_flip(image, np.array([[1, -2]]), np.array([False])))
  assert out[0, 3, 0, 0] == 9 and out.sum() == 9
  flipped = np.asarray(augment.shift_and_flip(image, np.array([[0, 1]]), np.array([True])))
  assert flipped[0, 2, 1, 0] == 9  # shifted to column 3, then mirrored to 5-1-3 = 1


def _shifted_copies(images, shifts, flips):
  """The augmentation one image at a time: a zero-padded crop, then a mirror."""
  n, h, w, _ = images.shape
  m = int(np.abs(shifts).max())
  padded = np.pad(images, [(0, 0), (m, m), (m, m), (0, 0)])
  out = np.empty_like(images)
  for i, ((dy, dx), f) in enumerate(zip(shifts, flips)):
    crop = padded[i, m - dy:m - dy + h, m - dx:m - dx + w]
    out[i] = crop[:, ::-1] if f else crop
  return out


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_shift_and_flip_equals_the_per_image_copy(dtype):
  rng = np.random.default_rng(0)
  images = rng.integers(1, 255, (40, 7, 10, 3)).astype(dtype)
  shifts = rng.integers(-6, 7, (40, 2)).astype(np.int32)  # some move the image out entirely
  flips = rng.random(40) < 0.5
  out = np.asarray(jax.jit(augment.shift_and_flip)(images, shifts, flips))
  assert out.dtype == dtype
  np.testing.assert_array_equal(out, _shifted_copies(images, shifts, flips))


def test_the_stream_draws_shifts_and_flips_and_leaves_the_images_as_stored(train):
  batch = next(pipeline.train_stream(train, global_batch=256, seed=3, max_shift=2, flip=True))
  assert batch["shift"].dtype == np.int32 and batch["shift"].shape == (256, 2)
  assert batch["flip"].dtype == bool and 0 < batch["flip"].sum() < 256
  assert sorted(np.unique(batch["shift"])) == [-2, -1, 0, 1, 2]
  stored = train.source[pipeline.batch_indices(0, n=len(train), global_batch=256, seed=3)]
  np.testing.assert_array_equal(batch["image"],
                                stored[train.image_key].reshape(batch["image"].shape))
  plain = next(pipeline.train_stream(train, global_batch=256, seed=3))
  assert set(plain) == {"image", "label"}


def test_to_model_input_resizes_tiles_and_normalises():
  images = np.full((2, 8, 8, 1), 255, np.uint8)
  x = transforms.to_model_input(images, size=16, channels=3, mean=(0.5,), std=(0.25,))
  assert x.shape == (2, 16, 16, 3)
  np.testing.assert_allclose(np.asarray(x), 2.0, rtol=1e-6)


def test_augment_reads_the_config_keys_of_its_fields():
  from cnnjax import config as config_lib  # pylint: disable=import-outside-toplevel
  c = config_lib.defaults()
  assert augment.Augment.from_config(c) == augment.NONE
  assert not augment.NONE.active
  c.data.max_shift, c.data.flip = 3, True
  assert augment.Augment.from_config(c) == augment.Augment(max_shift=3, flip=True)


def test_augment_draws_from_the_generator_of_seed_and_batch():
  rows = np.array([1, 3])
  draws = augment.Augment(max_shift=1, flip=True).draw(seed=7, batch=2, global_batch=4,
                                                       rows=rows)
  rng = np.random.default_rng([7, 1, 2])  # the stream's generator for batch 2: shifts, then flips
  shifts = rng.integers(0, 3, size=(4, 2)) - 1
  flips = rng.random(4) < 0.5
  np.testing.assert_array_equal(draws["shift"], shifts[rows])
  np.testing.assert_array_equal(draws["flip"], flips[rows])
  assert draws["shift"].dtype == np.int32 and draws["flip"].dtype == bool
  shift_only = augment.Augment(max_shift=1).draw(seed=7, batch=2, global_batch=4, rows=rows)
  np.testing.assert_array_equal(shift_only["shift"], shifts[rows])  # the same shifts
  assert not shift_only["flip"].any()
  assert augment.NONE.draw(seed=7, batch=2, global_batch=4, rows=rows) == {}


def test_augment_applies_the_draws_in_the_batch():
  images = np.arange(2 * 3 * 3, dtype=np.float32).reshape(2, 3, 3, 1)
  batch = {"shift": np.array([[0, 1], [0, 0]], np.int32), "flip": np.array([False, True])}
  out = np.asarray(augment.Augment(max_shift=1, flip=True).apply(images, batch))
  np.testing.assert_array_equal(out[0, :, :, 0], [[0, 0, 1], [0, 3, 4], [0, 6, 7]])
  np.testing.assert_array_equal(out[1, :, :, 0], [[11, 10, 9], [14, 13, 12], [17, 16, 15]])
  assert augment.NONE.apply(images, {}) is images


def test_the_stream_applies_randaugment_and_carries_the_mixing_draws(train):
  """RandAugment runs in the stream on each row as the whole global batch would have it; the
  mixing's draws ride along for the step."""
  from cnnjax.data import mixing, randaugment  # pylint: disable=import-outside-toplevel
  ra = randaugment.RandAugment(num_ops=2, magnitude=12.0)
  mix = mixing.Mixing(mixup_alpha=0.2, cutmix_alpha=1.0)
  rows = np.array([5, 2, 7])
  plain = _take(pipeline.train_stream(train, global_batch=8, seed=3), 2)[1]
  stream = pipeline.train_stream(train, global_batch=8, seed=3, rows=rows,
                                 augment=augment.Augment(randaugment=ra, mixing=mix))
  batch = _take(stream, 2)[1]
  want = ra.apply(plain["image"], seed=3, batch=1, global_batch=8, rows=slice(None))[rows]
  np.testing.assert_array_equal(batch["image"], want)
  assert not np.array_equal(batch["image"], plain["image"][rows])
  np.testing.assert_array_equal(batch["label"], plain["label"][rows])
  for key, value in mix.draw(seed=3, batch=1, global_batch=8, rows=rows).items():
    np.testing.assert_array_equal(batch[key], value, err_msg=key)
