"""Datasets by name: clear errors, and any tfds dataset through the same code (mock_data)."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from cnnjax.data import pipeline, sources
from cnnjax.errors import UserError


def test_unknown_dataset_lists_close_matches(data_dir):
  with pytest.raises(UserError, match=r"unknown dataset 'mnist5kk'.*'mnist5k'"):
    sources.load("mnist5kk", "train", data_dir)


def test_unknown_split(data_dir):
  with pytest.raises(UserError, match=r"'validation'.*test, train"):
    sources.load("mnist5k", "validation", data_dir)


def test_unprepared_tfds_dataset_says_how_to_prepare(tmp_path):
  with pytest.raises(UserError, match=r"not prepared.*cnnjax.data cifar10"):
    sources.load("cifar10", "train", str(tmp_path))


@pytest.mark.parametrize("name,shape,classes", [("cifar10", (32, 32, 3), 10),
                                                 ("fashion_mnist", (28, 28, 1), 10)])
def test_other_tfds_datasets_go_through_the_same_pipeline(tmp_path, name, shape, classes):
  with tfds.testing.mock_data(num_examples=24):
    ds = sources.load(name, "train", str(tmp_path))
    assert ds.image_shape == shape and ds.num_classes == classes and len(ds) == 24
    batch = next(pipeline.train_stream(ds, global_batch=8, seed=0, max_shift=2, flip=True))
    assert batch["image"].shape == (8, *shape) and batch["image"].dtype == np.uint8
    assert batch["label"].shape == (8,) and batch["label"].max() < classes
    evals = list(pipeline.eval_batches(ds, global_batch=10))
    assert sum(b["mask"].sum() for b in evals) == 24
