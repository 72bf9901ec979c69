"""Images of varying size (imagenet2012 via mock_data): ImageNet crops, seeded and exact.

tfds's mock generator fills the unknown height and width of an ``Image`` feature with random
sizes (5 to 49 pixels), so ``imagenet2012`` mocked yields images of many shapes without
TensorFlow. The crops are checked against torchvision's definitions.
"""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from cnnjax.data import images, pipeline, sources, transforms
from cnnjax.errors import UserError

CROP, RESIZE = 16, 20


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory):
  """24 mocked imagenet2012 training images of random sizes, decoded into memory."""
  with tfds.testing.mock_data(num_examples=24):
    ds = sources.load("imagenet2012", "train", str(tmp_path_factory.mktemp("tfds")), crop=CROP,
                      resize=RESIZE)
    return ds.in_memory()


def _take(stream, n):
  return [next(stream) for _ in range(n)]


def _boxes(sizes, n_draws=1, seed=0):
  rng = np.random.default_rng(seed)
  sizes = np.repeat(np.asarray(sizes, np.int64).reshape(-1, 2), n_draws, axis=0)
  attempts = rng.random((len(sizes), transforms.CROP_ATTEMPTS, 2))
  return sizes, transforms.random_resized_crop_boxes(sizes, attempts, rng.random((len(sizes), 2)))


def test_missing_crop_is_a_one_line_error(tmp_path):
  with tfds.testing.mock_data(num_examples=4):
    with pytest.raises(UserError, match=r"^dataset 'imagenet2012' has images of varying size; "
                       r"set config\.data\.crop \(e\.g\. 224\)[^\n]*$"):
      sources.load("imagenet2012", "train", str(tmp_path))


def test_crop_sets_the_image_shape_and_resize_defaults_to_crop_over_0_875(tmp_path):
  with tfds.testing.mock_data(num_examples=4):
    ds = sources.load("imagenet2012", "validation", str(tmp_path), crop=224)
    assert ds.variable_size and ds.image_shape == (224, 224, 3) and ds.resize == 256
    cifar = sources.load("cifar10", "train", str(tmp_path), crop=28)
    assert not cifar.variable_size and cifar.image_shape == (28, 28, 3) and cifar.resize == 32
  with pytest.raises(UserError, match=r"resize=10 must be >= config.data.crop=16"):
    sources.check_crop("x", True, 16, 10)


def test_in_memory_refuses_big_splits_and_the_loop_helper_skips_them(imagenet, tmp_path):
  with tfds.testing.mock_data(num_examples=24):
    ds = sources.load("imagenet2012", "train", str(tmp_path), crop=CROP)
    with pytest.raises(UserError, match=r"in-memory limit; set config.data.in_memory=False"):
      ds.in_memory(max_bytes=100)
    assert sources.in_memory_if_small(ds, max_bytes=100) is ds
  assert imagenet.source.arrays["image"].dtype == object  # images kept at their own sizes
  assert len({im.shape for im in imagenet.source.arrays["image"]}) > 1


def test_crop_boxes_lie_inside_the_image_with_area_and_ratio_in_range():
  sizes, boxes = _boxes([(375, 500), (500, 333), (64, 64), (33, 47)], n_draws=500)
  top, left, h, w = boxes.T
  height, width = sizes.T
  assert (top >= 0).all() and (left >= 0).all() and (h > 0).all() and (w > 0).all()
  assert (top + h <= height).all() and (left + w <= width).all()
  fraction, ratio = h * w / (height * width), w / h
  # Rounding w and h to pixels moves area and ratio a little outside the nominal ranges.
  slack = 1 / np.minimum(h, w)
  assert (fraction >= 0.08 * (1 - 2 * slack) - 1e-9).all() and (fraction <= 1).all()
  assert (ratio >= 0.75 * (1 - 2 * slack)).all() and (ratio <= 4 / 3 * (1 + 2 * slack)).all()
  assert fraction.min() < 0.12 and fraction.max() > 0.9  # the whole range is used


def test_crop_boxes_follow_torchvision_get_params():
  torch = pytest.importorskip("torch")
  from PIL import Image
  from torchvision.transforms import RandomResizedCrop
  # Both ways, the same distribution: compare mean area fraction and log aspect ratio.
  _, ours = _boxes([(120, 200)], n_draws=3000)
  image = Image.new("RGB", (200, 120))
  torch.manual_seed(0)
  theirs = np.array([RandomResizedCrop.get_params(image, [0.08, 1.0], [3 / 4, 4 / 3])
                     for _ in range(3000)])
  stats = lambda b: (np.mean(b[:, 2] * b[:, 3] / (120 * 200)), np.mean(np.log(b[:, 3] / b[:, 2])))
  np.testing.assert_allclose(stats(ours), stats(theirs), atol=0.02)
  # With areas over 100% no try fits: the fallback box must be torchvision's, exactly.
  for size in [(10, 300), (300, 10), (40, 50)]:
    want = RandomResizedCrop.get_params(Image.new("RGB", size[::-1]), [1.5, 1.5], [3 / 4, 4 / 3])
    got = transforms.random_resized_crop_boxes(
        np.array([size]), np.full((1, transforms.CROP_ATTEMPTS, 2), 0.5), np.zeros((1, 2)),
        scale=(1.5, 1.5))
    assert tuple(got[0]) == tuple(want), size


def test_crop_and_resize_is_torchvision_resized_crop():
  pytest.importorskip("torchvision")
  from torchvision.transforms import InterpolationMode, functional as F
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, (37, 53, 3), np.uint8)
  for top, left, h, w in [(0, 0, 37, 53), (5, 7, 20, 11), (30, 40, 7, 13)]:
    want = F.resized_crop(images.from_array(image), top, left, h, w, [CROP, CROP],
                          InterpolationMode.BILINEAR, antialias=True)
    got = transforms.crop_and_resize([image], np.array([[top, left, h, w]]), CROP)[0]
    np.testing.assert_array_equal(got, np.asarray(want))


def test_eval_batches_are_torchvision_resize_and_centre_crop(imagenet):
  pytest.importorskip("torchvision")
  from torchvision import transforms as T
  reference = T.Compose([T.Resize(RESIZE), T.CenterCrop(CROP)])
  batches = list(pipeline.eval_batches(imagenet, global_batch=10))
  got = np.concatenate([b["image"] for b in batches])[:len(imagenet)]
  assert got.shape == (24, CROP, CROP, 3)
  for i in range(len(imagenet)):
    want = np.asarray(reference(images.from_array(imagenet.source[i]["image"])))
    np.testing.assert_array_equal(got[i], want)  # same PIL calls: bit for bit


def test_train_batches_are_seeded_and_resume_exactly(imagenet):
  make = lambda seed: pipeline.train_stream(imagenet, global_batch=8, seed=seed, flip=True)
  a, b, c = _take(make(0), 4), _take(make(0), 4), _take(make(1), 1)
  assert a[0]["image"].shape == (8, CROP, CROP, 3) and a[0]["image"].dtype == np.uint8
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x["image"], y["image"])
  assert not np.array_equal(a[0]["image"], c[0]["image"])
  stream = make(0)
  _take(stream, 2)
  resumed = make(0)
  resumed.set_state(stream.get_state())
  for x, y in zip(a[2:], _take(resumed, 2)):
    np.testing.assert_array_equal(x["image"], y["image"])


def test_processes_split_each_global_batch(imagenet):
  whole = _take(pipeline.train_stream(imagenet, global_batch=12, seed=0, flip=True), 2)
  for rows in (np.arange(0, 4), np.arange(4, 8), np.array([2, 9, 11])):
    parts = _take(pipeline.train_stream(imagenet, global_batch=12, seed=0, flip=True,
                                        rows=rows), 2)
    for w, part in zip(whole, parts):  # crop boxes and flips are drawn for the global batch
      np.testing.assert_array_equal(part["image"], w["image"][rows])
      np.testing.assert_array_equal(part["label"], w["label"][rows])


def test_on_disk_source_gives_the_same_batches_as_in_memory(imagenet, tmp_path):
  with tfds.testing.mock_data(num_examples=24):
    disk = sources.load("imagenet2012", "train", str(tmp_path), crop=CROP, resize=RESIZE)
    a = next(pipeline.train_stream(disk, global_batch=8, seed=3))
    e = next(pipeline.eval_batches(disk, global_batch=8))
  np.testing.assert_array_equal(a["image"], next(pipeline.train_stream(
      imagenet, global_batch=8, seed=3))["image"])
  np.testing.assert_array_equal(e["image"], next(pipeline.eval_batches(
      imagenet, global_batch=8))["image"])
