"""Datasets by tfds name, read as random-access sources (``tfds`` data_source over array_record).

The embedded datasets (``mnist5k``, ``uci_digits``) are built on first use, offline. Any other
tfds dataset must already be prepared in ``data_dir`` in the array_record format (preparing the
standard ones needs TensorFlow and network access: see ``python -m cnnjax.data``);
reading it never imports TensorFlow.

Images of no fixed size (``imagenet2012``, ``food101``, ...: tfds ``Image`` features of shape
(None, None, C), decoded by tfds with PIL) need a ``crop``: training takes an Inception-style
random-resized crop of that size, evaluation resizes the shorter side to ``resize`` and takes
the centre crop (see ``cnnjax.data.pipeline``). ``crop`` works for fixed-size images too.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from cnnjax.data import builders
from cnnjax.data.preprocessing import IMAGENET_MEAN, IMAGENET_STD
from cnnjax.errors import UserError, unknown

# Per-channel mean and std of the training images in [0, 1], for normalisation on device.
STATS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "mnist5k": ((0.1307,), (0.3081,)),
    "mnist": ((0.1307,), (0.3081,)),
    "fashion_mnist": ((0.2860,), (0.3530,)),
    "uci_digits": ((0.3061,), (0.3779,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "imagenet2012": (IMAGENET_MEAN, IMAGENET_STD),
}
DEFAULT_STATS = ((0.5,), (0.5,))
MAX_IN_MEMORY_BYTES = 2 * 2**30  # in_memory() refuses splits larger than this, decoded
EVAL_CROP_FRACTION = 0.875  # default resize = crop / 0.875 (224 → 256, as torchvision's ImageNet)


@dataclasses.dataclass(frozen=True)
class Dataset:
  """One split of a dataset, readable by index, with what the model needs to know about it."""

  name: str
  split: str
  source: Sequence[dict[str, Any]]
  image_key: str
  label_key: str
  image_shape: tuple[int, int, int]  # what the pipeline yields: (crop, crop, C) with a crop
  num_classes: int
  mean: tuple[float, ...]
  std: tuple[float, ...]
  variable_size: bool = False  # the stored images differ in height and width
  crop: int | None = None  # random-resized crop (train) / centre crop (eval) to crop × crop
  resize: int | None = None  # eval: shorter side resized to this before the centre crop

  def __len__(self) -> int:
    return len(self.source)

  def memory_bytes(self) -> int:
    """Decoded size of the split, estimated from its first image (exact for fixed sizes)."""
    return len(self) * np.asarray(self.source[0][self.image_key]).nbytes if len(self) else 0

  def in_memory(self, max_bytes: int = MAX_IN_MEMORY_BYTES) -> "Dataset":
    """The same split decoded once into numpy arrays; refuses splits over ``max_bytes``.

    Variable-size images are kept as an object array of per-image arrays."""
    if isinstance(self.source, ArraySource):
      return self
    size = self.memory_bytes()
    if size > max_bytes:
      raise UserError(f"{self.name!r} split {self.split!r} needs about "
                      f"{size / 2**30:.1f} GiB decoded, over the "
                      f"{max_bytes / 2**30:.1f} GiB in-memory limit; set "
                      "config.data.in_memory=False.")
    records = [self.source[i] for i in range(len(self.source))]
    images = [np.asarray(r[self.image_key]) for r in records]
    images = _object_array(images) if self.variable_size else np.stack(images)
    labels = np.stack([np.asarray(r[self.label_key]) for r in records])
    return dataclasses.replace(
        self, source=ArraySource({self.image_key: images, self.label_key: labels}))


def per_class_subset(dataset: Dataset, per_class: int, seed: int) -> Dataset:
  """A seeded, stratified subset: ``per_class`` examples of each class (few-label training)."""
  mem = dataset.in_memory()
  labels = np.asarray(mem.source.arrays[dataset.label_key])
  rng = np.random.default_rng([seed, 7])
  picked = []
  for c in np.unique(labels):
    members = np.flatnonzero(labels == c)
    if len(members) < per_class:
      raise UserError(f"class {c} of {dataset.name}:{dataset.split} has {len(members)} examples, "
                      f"fewer than config.data.train_per_class={per_class}.")
    picked.append(rng.choice(members, per_class, replace=False))
  idx = np.sort(np.concatenate(picked))
  arrays = {k: v[idx] for k, v in mem.source.arrays.items()}
  return dataclasses.replace(mem, source=ArraySource(arrays))


def in_memory_if_small(dataset: Dataset, max_bytes: int = MAX_IN_MEMORY_BYTES) -> Dataset:
  """``dataset.in_memory()`` if it fits in ``max_bytes``; else ``dataset`` itself, logging why."""
  size = dataset.memory_bytes()
  if size > max_bytes:
    logging.info("reading %s split %s from disk: about %.1f GiB decoded is over the %.1f GiB "
                 "in-memory limit", dataset.name, dataset.split, size / 2**30, max_bytes / 2**30)
    return dataset
  return dataset.in_memory(max_bytes)


def _object_array(arrays: list[np.ndarray]) -> np.ndarray:
  """A 1-D object array holding ``arrays`` (np.array would try to broadcast them together)."""
  out = np.empty(len(arrays), object)
  for i, array in enumerate(arrays):
    out[i] = array
  return out


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


def load(name: str, split: str, data_dir: str | None = None, *, crop: int | None = None,
         resize: int | None = None) -> Dataset:
  """Opens ``split`` of dataset ``name`` for random access, building embedded datasets first.

  ``crop`` (required for images of varying size) and ``resize`` set the crops the pipeline
  takes (see the module docstring); ``resize`` defaults to ``round(crop / 0.875)``."""
  data_dir = data_dir or default_data_dir()
  builder = get_builder(name, data_dir)
  splits = builder.info.splits
  base_split = split.split("[")[0].split("+")[0]  # tfds slicing: 'test[:64]', 'train[10%:]'
  if splits and base_split not in splits:
    raise unknown(f"split of dataset {name!r}:", base_split, list(splits))
  try:
    source = builder.as_data_source(split=split)
  except (NotImplementedError, FileNotFoundError, AssertionError, ValueError) as e:
    if builder.is_prepared():  # prepared, so the split expression itself is bad
      raise UserError(f"can't read split {split!r} of {name}: "
                      f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    raise UserError(f"dataset {name!r} is not prepared in {data_dir} (array_record format). "
                    f"Prepare it with: python -m cnnjax.data {name} "
                    f"--data_dir={data_dir}") from None
  image_key, label_key = _supervised_keys(builder)
  stored = _stored_shape(name, builder.info.features[image_key].shape)
  variable = None in stored
  resize = check_crop(name, variable, crop, resize)
  shape = stored if crop is None else (crop, crop, stored[2])
  mean, std = STATS.get(name, DEFAULT_STATS)
  return Dataset(name=name, split=split, source=source, image_key=image_key, label_key=label_key,
                 image_shape=shape, num_classes=builder.info.features[label_key].num_classes,
                 mean=mean, std=std, variable_size=variable, crop=crop, resize=resize)


def _stored_shape(name: str, shape: Sequence[int | None]) -> tuple[int | None, int | None, int]:
  """(H, W, C) of the stored images; H and W are None when they vary from image to image."""
  shape = tuple(shape)
  if len(shape) == 2:
    shape = (*shape, 1)
  if len(shape) != 3 or shape[2] is None:
    raise UserError(f"dataset {name!r} has images of shape {shape}; cnnjax needs H×W×C images "
                    "with a fixed number of channels.")
  return shape


def check_crop(name: str, variable_size: bool, crop: int | None, resize: int | None) -> int | None:
  """Checks the crop settings; returns the eval resize (default: ``crop / 0.875``)."""
  if crop is None:
    if variable_size:
      raise UserError(f"dataset {name!r} has images of varying size; set config.data.crop "
                      "(e.g. 224) to crop them to one size.")
    if resize is not None:
      raise UserError(f"config.data.resize={resize} needs config.data.crop (e.g. 224).")
    return None
  if crop <= 0:
    raise UserError(f"config.data.crop must be > 0, got {crop}.")
  resize = int(round(crop / EVAL_CROP_FRACTION)) if resize is None else resize
  if resize < crop:
    raise UserError(f"config.data.resize={resize} must be >= config.data.crop={crop}.")
  return resize
