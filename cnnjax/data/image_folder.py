"""A folder of the user's own images, one subfolder per class, as a ``sources.Dataset``.

    photos/cat/001.jpg, photos/cat/x/002.png, photos/dog/003.jpeg, ...

Class names sorted → labels 0, 1, ... (torchvision's ImageFolder order). Files are listed
recursively in sorted order; each class is split on its own (stratified) by a seeded permutation,
so a (seed, val_fraction) pair always gives the same split. Only the requested split's files are
decoded: converted to RGB (or grey), resized (shorter side) and centre-cropped with the same
code as the weights' eval transform (``cnnjax.data.images``), so every image has one fixed shape
and, with a pretrained model's preprocessing, held-out images reach the model exactly as
torchvision would feed them. Files PIL can't read (corrupt, not images) are skipped and counted.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
from absl import logging

from cnnjax.data import images
from cnnjax.data.preprocessing import IMAGENET_MEAN, IMAGENET_STD
from cnnjax.data.sources import ArraySource, Dataset
from cnnjax.errors import UserError, unknown

PREFIX = "folder:"  # the proposed ``config.dataset`` spelling: 'folder:/path/to/images'
SPLITS = ("train", "val", "test", "all")  # "test" is "val", so a default eval_split works


@dataclasses.dataclass(frozen=True)
class FolderSplit:
  """One split, decoded: ``images`` uint8 (N, S, S, C), ``labels`` int32 (N,), and the files
  that could not be read, with the reason."""

  classes: tuple[str, ...]
  images: np.ndarray
  labels: np.ndarray
  skipped: tuple[tuple[str, str], ...]


def list_classes(path: str) -> tuple[str, list[list[str]]]:
  """(sorted class names, per class the sorted file paths under it); hidden entries ignored."""
  if not os.path.isdir(path):
    raise UserError(f"image folder {path!r} does not exist or is not a directory.")
  classes = sorted(e.name for e in os.scandir(path) if e.is_dir() and not e.name.startswith("."))
  if not classes:
    raise UserError(f"image folder {path!r} has no class subfolders; expected "
                    f"{path}/<class name>/<image files>.")
  if len(classes) == 1:  # one class: every label is 0, nothing to learn or to measure
    raise UserError(f"image folder {path!r} has one class subfolder, {classes[0]!r}; a classifier "
                    "needs at least 2.")
  files = []
  for name in classes:
    found = []
    for root, dirs, names in os.walk(os.path.join(path, name)):
      dirs[:] = sorted(d for d in dirs if not d.startswith("."))
      found += [os.path.join(root, n) for n in sorted(names) if not n.startswith(".")]
    if not found:
      raise UserError(f"class folder {os.path.join(path, name)!r} has no files.")
    files.append(found)
  return tuple(classes), files


def split_files(files: list[list[str]], split: str, *, val_fraction: float,
                seed: int) -> list[tuple[str, int]]:
  """(file, label) of ``split``: per class a seeded permutation; its first n·f (rounded) are val."""
  if split not in SPLITS:
    raise unknown("split of an image folder:", split, SPLITS)
  if not 0.0 <= val_fraction < 1.0:
    raise UserError(f"val_fraction must be in [0, 1), got {val_fraction}.")
  out = []
  for label, paths in enumerate(files):
    order = np.random.default_rng([seed, label]).permutation(len(paths))
    n_val = int(len(paths) * val_fraction + 0.5)  # rounded half up
    if split == "all":
      chosen = order
    elif split == "train":
      chosen = order[n_val:]
    else:
      chosen = order[:n_val]
    out += [(paths[i], label) for i in np.sort(chosen)]
  return out


def read_split(path: str, split: str, *, image_size: int, resize: int | None = None,
               val_fraction: float = 0.2, seed: int = 0, channels: int = 3,
               interpolation: str = "bilinear") -> FolderSplit:
  """Decodes ``split`` of the folder into arrays (see the module docstring)."""
  if channels not in images.MODES:
    raise UserError(f"channels must be 1 or 3, got {channels}.")
  resize = resize or image_size
  if not 0 < image_size <= resize:
    raise UserError(f"need 0 < image_size <= resize, got image_size={image_size}, "
                    f"resize={resize}.")
  images.check_interpolation(interpolation)
  classes, files = list_classes(path)
  arrays, labels, skipped = [], [], []
  for file, label in split_files(files, split, val_fraction=val_fraction, seed=seed):
    try:
      arrays.append(images.load(file, resize=resize, crop=image_size, channels=channels,
                                interpolation=interpolation))
    except images.DECODE_ERRORS as e:
      skipped.append((file, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"))
      continue
    labels.append(label)
  if not arrays:
    raise UserError(f"split {split!r} of image folder {path!r} has no readable images "
                    f"({len(skipped)} skipped; val_fraction={val_fraction}).")
  return FolderSplit(classes, np.stack(arrays), np.asarray(labels, np.int32), tuple(skipped))


def load_image_folder(path: str, split: str, *, image_size: int = 224, resize: int | None = None,
                      val_fraction: float = 0.2, seed: int = 0, channels: int = 3,
                      preprocessing=None) -> Dataset:
  """``split`` ('train', 'val' (= 'test'), 'all') of an image folder as an in-memory Dataset.

  With ``preprocessing`` (a ``cnnjax.data.preprocessing.Preprocessing``, e.g. from
  ``load_pretrained``) its crop, resize, interpolation and (effective) mean/std are used and
  ``image_size`` / ``resize`` are ignored; without it images are resized to ``resize``
  (default ``image_size``), cropped to ``image_size`` and normalised with ImageNet's statistics.
  Unreadable files are skipped; their number is logged (``read_split`` returns them).
  """
  mean, std = IMAGENET_MEAN, IMAGENET_STD
  interpolation = "bilinear"
  if preprocessing is not None:
    image_size, resize = preprocessing.crop, preprocessing.resize
    mean, std = preprocessing.effective_mean, preprocessing.effective_std
    interpolation = preprocessing.interpolation
  data = read_split(path, split, image_size=image_size, resize=resize, val_fraction=val_fraction,
                    seed=seed, channels=channels, interpolation=interpolation)
  if data.skipped:
    logging.warning("image folder %s, split %s: skipped %d unreadable files, e.g. %s (%s)",
                    path, split, len(data.skipped), *data.skipped[0])
  return Dataset(name=f"{PREFIX}{path}", split=split,
                 source=ArraySource({"image": data.images, "label": data.labels}),
                 image_key="image", label_key="label", image_shape=data.images.shape[1:],
                 num_classes=len(data.classes), mean=tuple(mean), std=tuple(std))
