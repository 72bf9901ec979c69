"""Datasets by tfds name, read as random-access sources (``tfds`` data_source over array_record).

The embedded datasets (``mnist5k``, ``uci_digits``) are built on first use, offline. Any other
tfds dataset must already be prepared in ``data_dir`` in the array_record format (preparing the
standard ones needs TensorFlow and network access: see ``python -m cnnjax.data.prepare``);
reading it never imports TensorFlow.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from cnnjax.data import builders
from cnnjax.errors import UserError, unknown

# Per-channel mean and std of the training images in [0, 1], for normalisation on device.
STATS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "mnist5k": ((0.1307,), (0.3081,)),
    "mnist": ((0.1307,), (0.3081,)),
    "fashion_mnist": ((0.2860,), (0.3530,)),
    "uci_digits": ((0.3061,), (0.3779,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "imagenet2012": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}
DEFAULT_STATS = ((0.5,), (0.5,))


@dataclasses.dataclass(frozen=True)
class Dataset:
  """One split of a dataset, readable by index, with what the model needs to know about it."""

  name: str
  split: str
  source: Sequence[dict[str, Any]]
  image_key: str
  label_key: str
  image_shape: tuple[int, int, int]
  num_classes: int
  mean: tuple[float, ...]
  std: tuple[float, ...]

  def __len__(self) -> int:
    return len(self.source)

  def in_memory(self) -> "Dataset":
    """The same split decoded once into numpy arrays (for datasets that fit in memory)."""
    if isinstance(self.source, ArraySource):
      return self
    records = [self.source[i] for i in range(len(self.source))]
    arrays = {k: np.stack([np.asarray(r[k]) for r in records])
              for k in (self.image_key, self.label_key)}
    return dataclasses.replace(self, source=ArraySource(arrays))


class ArraySource:
  """A random-access source over in-memory arrays (one record per leading index)."""

  def __init__(self, arrays: dict[str, np.ndarray]):
    self.arrays = arrays
    self._len = len(next(iter(arrays.values())))

  def __len__(self) -> int:
    return self._len

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    return {k: v[index] for k, v in self.arrays.items()}


def default_data_dir() -> str:
  return os.environ.get("TFDS_DATA_DIR") or os.path.expanduser("~/tensorflow_datasets")


def _build_quietly(builder) -> None:
  """Builds an embedded dataset (seconds, offline) without tfds's progress bars."""
  active = tfds.core.utils.tqdm_utils._active  # pylint: disable=protected-access
  tfds.display_progress_bar(False)
  try:
    builder.download_and_prepare(file_format="array_record")
  finally:
    tfds.display_progress_bar(active)


def get_builder(name: str, data_dir: str):
  """The tfds builder of ``name``; embedded datasets are built on first use."""
  if name in builders.EMBEDDED:
    builder = builders.EMBEDDED[name](data_dir=data_dir)
    if not builder.is_prepared():
      _build_quietly(builder)
    return builder
  if name.split(":")[0].split("/")[0] not in _catalogue():
    raise _unknown_dataset(name)
  return tfds.builder(name, data_dir=data_dir)


def _catalogue() -> list[str]:
  # Community datasets are left out: listing them would import TensorFlow.
  return tfds.list_builders(with_community_datasets=False)


def _unknown_dataset(name: str) -> UserError:
  close = difflib.get_close_matches(name, sorted({*builders.EMBEDDED, *_catalogue()}), n=3)
  hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
  return UserError(f"unknown dataset {name!r}.{hint} Valid choices: the embedded "
                   f"{', '.join(builders.EMBEDDED)}, or any tfds catalogue name.")


def _supervised_keys(builder) -> tuple[str, str]:
  keys = builder.info.supervised_keys
  if keys and isinstance(keys[0], str):
    return keys[0], keys[1]
  features = builder.info.features
  if "image" in features and "label" in features:
    return "image", "label"
  raise UserError(f"dataset {builder.name!r} has no (image, label) features; it has "
                  f"{', '.join(features)}.")


def load(name: str, split: str, data_dir: str | None = None) -> Dataset:
  """Opens ``split`` of dataset ``name`` for random access, building embedded datasets first."""
  data_dir = data_dir or default_data_dir()
  builder = get_builder(name, data_dir)
  splits = builder.info.splits
  if splits and split not in splits:
    raise unknown(f"split of dataset {name!r}:", split, list(splits))
  try:
    source = builder.as_data_source(split=split)
  except (NotImplementedError, FileNotFoundError, AssertionError, ValueError):
    raise UserError(f"dataset {name!r} is not prepared in {data_dir} (array_record format). "
                    f"Prepare it with: python -m cnnjax.data.prepare {name} "
                    f"--data_dir={data_dir}") from None
  image_key, label_key = _supervised_keys(builder)
  image = builder.info.features[image_key]
  shape = tuple(image.shape)
  if len(shape) == 2:
    shape = (*shape, 1)
  if len(shape) != 3 or None in shape:
    raise UserError(f"dataset {name!r} has images of shape {image.shape}; cnnjax needs a fixed "
                    "H×W×C shape (resize it when preparing).")
  mean, std = STATS.get(name, DEFAULT_STATS)
  return Dataset(name=name, split=split, source=source, image_key=image_key, label_key=label_key,
                 image_shape=shape, num_classes=builder.info.features[label_key].num_classes,
                 mean=mean, std=std)
