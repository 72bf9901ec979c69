"""Opening a run's two splits, prepared in one place for the weights they will meet.

Without pretrained weights a tfds dataset keeps its own statistics (``sources.STATS``) and an
image folder is resized, cropped and normalised with ImageNet's. With ``preprocessing`` (what
converted weights expect, ``cnnjax.data.preprocessing.Preprocessing``) both are normalised with
its effective mean and std, and an image folder is also decoded with its resize, crop and
interpolation, so held-out images reach the model exactly as torchvision would feed them.
"""

from __future__ import annotations

import dataclasses

from cnnjax.data import image_folder, sources
from cnnjax.data.preprocessing import Preprocessing
from cnnjax.errors import UserError


@dataclasses.dataclass(frozen=True)
class SplitOptions:
  """How to open the splits: ``config.data``'s keys, plus the dataset and the seed."""

  dataset: str
  train_split: str = "train"
  eval_split: str = "test"
  data_dir: str | None = None
  image_size: int | None = None  # image folders: the crop when no preprocessing is given
  crop: int | None = None
  resize: int | None = None
  channels: int | None = None  # image folders: default 3
  train_per_class: int | None = None
  val_fraction: float = 0.2
  in_memory: bool = True
  seed: int = 0  # the few-label subset and an image folder's train/val split


def _folder(o: SplitOptions, pre: Preprocessing | None) -> tuple[sources.Dataset, ...]:
  path = o.dataset[len(image_folder.PREFIX):]
  return tuple(image_folder.load_image_folder(
      path, split, image_size=o.crop or o.image_size or 224, resize=o.resize,
      val_fraction=o.val_fraction, seed=o.seed, channels=o.channels or 3, preprocessing=pre)
               for split in (o.train_split, o.eval_split))


def _tfds(o: SplitOptions, pre: Preprocessing | None) -> tuple[sources.Dataset, ...]:
  train, test = (sources.load(o.dataset, split, o.data_dir, crop=o.crop, resize=o.resize)
                 for split in (o.train_split, o.eval_split))
  if o.in_memory:  # splits too big to decode into memory stay on disk
    train, test = sources.in_memory_if_small(train), sources.in_memory_if_small(test)
  if pre is not None:
    stats = {"mean": pre.effective_mean, "std": pre.effective_std}
    train, test = dataclasses.replace(train, **stats), dataclasses.replace(test, **stats)
  return train, test


def open_splits(o: SplitOptions, preprocessing: Preprocessing | None = None
                ) -> tuple[sources.Dataset, sources.Dataset]:
  """The train and eval splits (train cut to ``train_per_class`` if set); an empty one is a
  ``UserError`` naming it."""
  is_folder = o.dataset.startswith(image_folder.PREFIX)
  train, test = (_folder if is_folder else _tfds)(o, preprocessing)
  if o.train_per_class:
    train = sources.per_class_subset(train, o.train_per_class, o.seed)
  for split, data in ((o.train_split, train), (o.eval_split, test)):
    if len(data) == 0:
      raise UserError(f"split {split!r} of {o.dataset} is empty.")
  return train, test
