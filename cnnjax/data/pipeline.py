"""grain pipelines: an endless, seeded training stream and an exact, padded evaluation pass.

Training order is a pure function of the seed: epoch ``e`` visits the examples in the order
``permutation(seed, e)``, the epochs follow each other as one endless stream, and global batch
``i`` holds stream positions ``[i·B, (i+1)·B)``. Augmentation for batch ``i`` draws from a
generator seeded by ``(seed, i)``, for the whole global batch. So batch ``i`` is the same whatever
the number of processes or threads, and a resumed run (the grain iterator state restored from the
checkpoint) sees the very same batches as an uninterrupted one.

Work is done per batch (one gather, vectorised draws), not per example: on two CPU cores a
per-example Python pipeline cannot keep up with LeNet-5. The augmentations (``augment.Augment``)
are only drawn here (``shift``, ``flip`` and the mixing's ``mix_*`` in the batch) and applied
inside the train step: the same pixel copy on the host cost LeNet-5's loop about 8% of its speed
on 2 cores, on the device it is a gather. RandAugment (``randaugment``) is the exception: it runs
here, after the crop, from the generator seeded by ``(seed, 4, i)``.

With a ``crop`` (always for images of varying size) each image is cropped on the host with PIL:
training takes torchvision's ``RandomResizedCrop(crop)`` (boxes from the generator seeded by
``(seed, 2, i)``, drawn for the whole global batch), evaluation ``Resize(resize)`` +
``CenterCrop(crop)``. That work is per image, but still inside the per-batch map that grain's
reader threads run in parallel.

With several processes, each reads only ``rows``, the rows of every global batch that its own
devices hold (``cnnjax.parallel.process_rows``, from the sharding), and ``cnnjax.parallel.to_global``
puts each device's rows on it. A row's example and its augmentation draws depend on the row's
global index only, so any split of the devices over processes gives the same global batches.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import grain
import numpy as np

from cnnjax.data import transforms
from cnnjax.data.augment import NONE, Augment
from cnnjax.data.sources import ArraySource, Dataset

_ENDLESS = 2**62  # number of batches in the training stream: it never runs out


@functools.lru_cache(maxsize=4)
def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
  """The order in which epoch ``epoch`` visits the ``n`` examples."""
  return np.random.default_rng([seed, epoch]).permutation(n)


def batch_indices(batch: int, *, n: int, global_batch: int, seed: int) -> np.ndarray:
  """Dataset indices of global training batch ``batch`` (may straddle two epochs)."""
  positions = np.arange(batch * global_batch, (batch + 1) * global_batch)
  epochs, offsets = np.divmod(positions, n)
  out = np.empty(global_batch, np.int64)
  for e in np.unique(epochs):
    sel = epochs == e
    out[sel] = epoch_permutation(seed, int(e), n)[offsets[sel]]
  return out


def _read(dataset: Dataset, indices: np.ndarray) -> tuple[list[np.ndarray] | np.ndarray,
                                                         np.ndarray]:
  """(images, int32 labels) at ``indices``: one uint8 (n, H, W, C) array for fixed-size images,
  a list of uint8 (H, W, C) arrays for variable-size ones."""
  if isinstance(dataset.source, ArraySource):
    records = dataset.source[indices]
    images, labels = records[dataset.image_key], records[dataset.label_key]
  else:
    records = [dataset.source[int(i)] for i in indices]
    images = [np.asarray(r[dataset.image_key]) for r in records]
    labels = [r[dataset.label_key] for r in records]
  if dataset.variable_size:
    images = [_with_channels(np.asarray(image, np.uint8), 3) for image in images]
  else:
    images = _with_channels(np.asarray(np.stack(images) if isinstance(images, list) else images,
                                       np.uint8), 4)
  return images, np.asarray(labels, np.int32)


def _with_channels(images: np.ndarray, ndim: int) -> np.ndarray:
  """Grey images stored without a channel axis get one."""
  return images[..., None] if images.ndim == ndim - 1 else images


def _gather(dataset: Dataset, indices: np.ndarray) -> dict[str, np.ndarray]:
  """The examples at ``indices``, unaugmented (centre-cropped when the dataset has a crop)."""
  images, labels = _read(dataset, indices)
  if dataset.crop is not None:
    images = transforms.resize_centre_crop(images, dataset.resize, dataset.crop)
  return {"image": images, "label": labels}


def crop_boxes(sizes: np.ndarray, *, batch: int, global_batch: int, seed: int,
               rows: np.ndarray | slice) -> np.ndarray:
  """Random-resized-crop boxes for ``rows`` of global batch ``batch`` (``sizes``: their (H, W)).

  The draws are made for the whole global batch, so a row's box doesn't depend on the process
  count."""
  rng = np.random.default_rng([seed, 2, batch])
  attempts = rng.random((global_batch, transforms.CROP_ATTEMPTS, 2))[rows]
  offsets = rng.random((global_batch, 2))[rows]
  return transforms.random_resized_crop_boxes(sizes, attempts, offsets)


def _train_batch(batch: int, *, dataset: Dataset, global_batch: int, seed: int, augment: Augment,
                 rows: np.ndarray | slice) -> dict[str, np.ndarray]:
  idx = batch_indices(batch, n=len(dataset), global_batch=global_batch, seed=seed)
  images, labels = _read(dataset, idx[rows])
  if dataset.crop is not None:
    sizes = np.array([image.shape[:2] for image in images], np.int64).reshape(-1, 2)
    boxes = crop_boxes(sizes, batch=batch, global_batch=global_batch, seed=seed, rows=rows)
    images = transforms.crop_and_resize(images, boxes, dataset.crop)
  images = augment.randaugment.apply(images, seed=seed, batch=batch, global_batch=global_batch,
                                     rows=rows)
  # drawn here, applied in the train step (Augment.apply, Augment.mix)
  draws = augment.draw(seed=seed, batch=batch, global_batch=global_batch, rows=rows)
  return {"image": images, "label": labels, **draws}


def _rows(rows: np.ndarray | None, global_batch: int) -> np.ndarray | slice:
  """``rows`` as an index array, checked: a wrong row would silently train on other examples."""
  if rows is None:
    return slice(None)
  rows = np.asarray(rows, np.int64)
  if rows.ndim != 1 or ((rows < 0) | (rows >= global_batch)).any():
    raise ValueError(f"rows must be a 1-D array of indices in 0..{global_batch - 1}.")
  return rows


def _read_options(num_threads: int, batches_per_element: int = 1) -> grain.ReadOptions:
  """Reader threads, and a prefetch of about 8 batches (in elements of that many batches)."""
  return grain.ReadOptions(num_threads=max(num_threads, 1),
                           prefetch_buffer_size=max(2, -(-8 // batches_per_element)))


def train_stream(dataset: Dataset, *, global_batch: int, seed: int, augment: Augment = NONE,
                 rows: np.ndarray | None = None, num_threads: int = 2,
                 **augment_fields) -> grain.DatasetIterator:
  """Endless iterator of rows ``rows`` (global row indices; None: all) of each global batch.

  Yields ``{'image': uint8 (b, H, W, C), 'label': int32 (b,)}`` with ``b = len(rows)``, in the
  order of ``rows``, and ``augment``'s draws for them (``Augment.draw``; the images are
  unaugmented: the train step applies them). ``augment_fields`` (``max_shift=2, flip=True``)
  are a shorthand for ``augment=Augment(...)``. Its ``get_state()`` / ``set_state()``
  checkpoint and resume it exactly, and the state doesn't depend on ``rows`` (a run may resume
  with another process count).
  """
  if augment_fields:
    augment = Augment(**augment_fields)
  load = _batch_loader(dataset, global_batch, seed, augment, rows)
  ds = grain.MapDataset.range(_ENDLESS).map(load)
  return iter(ds.to_iter_dataset(_read_options(num_threads)))


def _batch_loader(dataset: Dataset, global_batch: int, seed: int, augment: Augment,
                  rows: np.ndarray | None):
  """Global batch index → that batch's rows ``rows`` (checked), augmentation draws included."""
  return functools.partial(_train_batch, dataset=dataset, global_batch=global_batch, seed=seed,
                           augment=augment, rows=_rows(rows, global_batch))


def _train_group(group: int, *, size: int, load) -> dict[str, np.ndarray]:
  """Global batches ``[group·size, (group+1)·size)`` stacked on a new leading axis."""
  batches = [load(group * size + i) for i in range(size)]
  return {k: np.stack([b[k] for b in batches]) for k in batches[0]}


class TrainGroups:
  """The training stream read ``size`` batches at a time, for a loop that trains on several
  steps per call: group ``g`` stacks batches ``[g·size, (g+1)·size)`` of ``train_stream``
  (the same batches, one grain element per group instead of per batch).

  ``take(n)`` hands out the next ``n`` batches, which must lie in one group: the group and the
  offset of the first of them in it. ``get_state()`` is the position in batches, the same as
  ``train_stream``'s iterator state, so either resumes from the other's checkpoint and a run
  may resume with another group size.
  """

  def __init__(self, dataset: Dataset, *, global_batch: int, seed: int, size: int,
               augment: Augment = NONE, rows: np.ndarray | None = None, num_threads: int = 2):
    self.size = size
    self._load = functools.partial(
        _train_group, size=size, load=_batch_loader(dataset, global_batch, seed, augment, rows))
    self._options = _read_options(num_threads, size)
    self.set_state({"next_index": 0})

  def set_state(self, state: dict) -> None:
    self._next = int(state["next_index"])
    ds = grain.MapDataset.range(self._next // self.size, _ENDLESS // self.size).map(self._load)
    self._groups = iter(ds.to_iter_dataset(self._options))
    self._current: tuple[int, dict[str, np.ndarray]] | None = None

  def get_state(self) -> dict:
    return {"next_index": self._next}

  def take(self, n: int) -> tuple[int, dict[str, np.ndarray], int]:
    """(group index, its stacked batches, offset of the next batch in it); advances by ``n``."""
    group, offset = divmod(self._next, self.size)
    if not 1 <= n <= self.size - offset:
      raise ValueError(f"{n} batches from offset {offset} don't fit in a group of {self.size}.")
    if self._current is None or self._current[0] != group:
      self._current = (group, next(self._groups))
    self._next += n
    return group, self._current[1], offset


def eval_batches(dataset: Dataset, *, global_batch: int, rows: np.ndarray | None = None,
                 num_threads: int = 2) -> Iterator[dict[str, np.ndarray]]:
  """Every example exactly once, in order; the last batch is padded and ``mask`` marks the real rows.

  Yields rows ``rows`` (None: all) of each global batch as ``{'image', 'label', 'mask'}``;
  padded rows repeat example 0 with mask 0.
  """
  n = len(dataset)
  rows = _rows(rows, global_batch)

  def load(batch: int) -> dict[str, np.ndarray]:
    positions = np.arange(batch * global_batch, (batch + 1) * global_batch)[rows]
    out = _gather(dataset, np.where(positions < n, positions, 0))
    return {**out, "mask": (positions < n).astype(np.float32)}

  ds = grain.MapDataset.range(-(-n // global_batch)).map(load)
  return iter(ds.to_iter_dataset(_read_options(num_threads)))
