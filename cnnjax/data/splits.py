"""Opening a run's two splits, prepared in one place for the weights they will meet.

Without pretrained weights a tfds dataset keeps its own statistics (``sources.STATS``) and an
image folder is resized, cropped and normalised with ImageNet's. With ``preprocessing`` (what
converted weights expect, ``cnnjax.data.preprocessing.Preprocessing``) both are normalised with
its effective mean and std, and an image folder is also decoded with its resize, crop and
interpolation, so held-out images reach the model exactly as torchvision would feed them.

``arrays`` gives a whole split as numpy arrays, as evaluation reads it (to plot, to count, to
feed a model of one's own).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from cnnjax.data import image_folder, pipeline, sources
from cnnjax.data.augment import Augment
from cnnjax.data.preprocessing import Preprocessing
from cnnjax.errors import UserError


@dataclasses.dataclass(frozen=True)
class DataSettings:
  """A run's data: which splits and how to open them, and how the pipeline reads them. Built once
  from the config (``from_config``) and read by ``open_splits``, the training stream and
  evaluation."""

  dataset: str
  seed: int = 0  # the data order, the augmentations, the few-label subset, a folder's split
  batch_size: int = 128  # global
  eval_batch_size: int = 512
  augment: Augment = Augment()
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
  num_threads: int = 2  # grain reader threads

  @classmethod
  def from_config(cls, config: Mapping[str, Any]) -> DataSettings:
    """The top-level keys of the same names, ``config.data``'s for the rest."""
    data = config["data"]
    return cls(dataset=config["dataset"], seed=config["seed"], batch_size=config["batch_size"],
               eval_batch_size=config["eval_batch_size"], augment=Augment.from_config(config),
               **{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})


def _folder(o: DataSettings, pre: Preprocessing | None) -> tuple[sources.Dataset, ...]:
  path = o.dataset[len(image_folder.PREFIX):]
  return tuple(image_folder.load_image_folder(
      path, split, image_size=o.crop or o.image_size or 224, resize=o.resize,
      val_fraction=o.val_fraction, seed=o.seed, channels=o.channels or 3, preprocessing=pre)
               for split in (o.train_split, o.eval_split))


def _tfds(o: DataSettings, pre: Preprocessing | None) -> tuple[sources.Dataset, ...]:
  train, test = (sources.load(o.dataset, split, o.data_dir, crop=o.crop, resize=o.resize)
                 for split in (o.train_split, o.eval_split))
  if o.in_memory:  # splits too big to decode into memory stay on disk
    train, test = sources.in_memory_if_small(train), sources.in_memory_if_small(test)
  if pre is not None:
    stats = {"mean": pre.effective_mean, "std": pre.effective_std}
    train, test = dataclasses.replace(train, **stats), dataclasses.replace(test, **stats)
  return train, test


def open_splits(o: DataSettings, preprocessing: Preprocessing | None = None
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


def arrays(dataset: sources.Dataset | str, split: str | None = None, *,
           data_dir: str | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Every example of a split, in order: (uint8 images (N, H, W, C), int32 labels (N,)),
  exactly as evaluation reads them (centre-cropped when the dataset has a crop).

  ``arrays("mnist5k", "test")`` opens the split by name (``sources.load``); ``arrays(dataset)``
  takes one already open (a run's ``eval_data``, ``cnnjax.inspect.loading.load(workdir).dataset``).
  A split too large for memory (``sources.MAX_IN_MEMORY_BYTES`` decoded) is a ``UserError``."""
  if isinstance(dataset, str):
    if split is None:
      raise UserError(f"arrays({dataset!r}) needs the split too, e.g. arrays({dataset!r}, 'test').")
    dataset = sources.load(dataset, split, data_dir)
  elif split is not None or data_dir is not None:
    raise UserError(f"arrays() of an open dataset ({dataset.name}:{dataset.split}) takes no split "
                    "or data_dir; give them with a dataset name instead.")
  size = dataset.memory_bytes()
  if size > sources.MAX_IN_MEMORY_BYTES:
    raise UserError(f"{dataset.name!r} split {dataset.split!r} needs about {size / 2**30:.1f} GiB "
                    f"decoded, over the {sources.MAX_IN_MEMORY_BYTES / 2**30:.1f} GiB in-memory "
                    "limit; take a slice of it (e.g. 'test[:1000]').")
  if len(dataset) == 0:
    raise UserError(f"split {dataset.split!r} of {dataset.name} is empty.")
  batch = next(pipeline.eval_batches(dataset, global_batch=len(dataset)))
  return batch["image"], batch["label"]
