"""A split as arrays: every example once, in the split's order, as evaluation reads it."""

import dataclasses

import numpy as np
import pytest
from sklearn.datasets import load_digits

from cnnjax.data import sources, splits
from cnnjax.errors import UserError


def test_a_split_by_name_is_its_records_in_order(data_dir):
  images, labels = splits.arrays("uci_digits", "test[:37]", data_dir=data_dir)
  dataset = sources.load("uci_digits", "test[:37]", data_dir)
  assert images.shape == (37, 8, 8, 1) and images.dtype == np.uint8
  assert labels.shape == (37,) and labels.dtype == np.int32
  for i in (0, 17, 36):
    record = dataset.source[i]
    assert (images[i, ..., 0] == np.asarray(record["image"]).reshape(8, 8)).all()
    assert labels[i] == record["label"]


def test_an_open_split_gives_the_same_arrays_and_the_two_splits_hold_every_digit(data_dir):
  dataset = sources.load("uci_digits", "train", data_dir)
  images, labels = splits.arrays(dataset)
  again, again_labels = splits.arrays("uci_digits", "train", data_dir=data_dir)
  assert (images == again).all() and (labels == again_labels).all()
  assert len(images) == len(dataset)
  test_labels = splits.arrays("uci_digits", "test", data_dir=data_dir)[1]
  # sklearn's 1,797 digits, each in one split: the class counts add up to sklearn's
  total = np.bincount(labels, minlength=10) + np.bincount(test_labels, minlength=10)
  assert (total == np.bincount(load_digits().target, minlength=10)).all()


def test_wrong_arguments_and_too_large_splits_are_one_line(data_dir, monkeypatch):
  with pytest.raises(UserError, match=r"arrays\('mnist5k'\) needs the split too"):
    splits.arrays("mnist5k")
  dataset = sources.load("uci_digits", "test[:4]", data_dir)
  with pytest.raises(UserError, match=r"takes no split or data_dir"):
    splits.arrays(dataset, "test")
  monkeypatch.setattr(sources, "MAX_IN_MEMORY_BYTES", 100)
  with pytest.raises(UserError, match=r"in-memory limit; take a slice"):
    splits.arrays(dataset)
  empty = dataclasses.replace(dataset, source=sources.ArraySource(
      {"image": np.zeros((0, 8, 8, 1), np.uint8), "label": np.zeros((0,), np.int64)}))
  with pytest.raises(UserError, match=r"is empty"):
    splits.arrays(empty)
