"""Input-pipeline throughput: how many images per second the grain training stream delivers.

Three streams, each the kind a benchmark case trains on: the embedded MNIST with the LeNet-5
experiment's random shifts (lenet5), in-memory 32×32×3 images with shifts and flips (the CIFAR
models), and variable-size images with the random-resized crop to 224 (the ImageNet models).
A stream faster than the train step never starves it. The shifts and flips are only drawn in the
stream; the train step applies them (``cnnjax.data.augment.shift_and_flip``). Needs grain (not
the model side).
"""

from __future__ import annotations

import os
import time

import numpy as np

from cnnjax.data import pipeline, sources


def synthetic(shape: tuple[int, int, int], n: int, *, crop: int | None = None,
              sizes: tuple[int, int] = (0, 0)) -> sources.Dataset:
  """``n`` random uint8 images; with ``crop``, of random sizes in ``sizes`` (variable size)."""
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 10, n).astype(np.int64)
  if crop is None:
    images = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
  else:
    images = np.empty(n, object)
    for i in range(n):
      h, w = rng.integers(sizes[0], sizes[1] + 1, 2)
      images[i] = rng.integers(0, 256, (h, w, shape[2]), dtype=np.uint8)
  source = sources.ArraySource({"image": images, "label": labels})
  return sources.Dataset(name="synthetic", split="train", source=source, image_key="image",
                         label_key="label", image_shape=(crop, crop, shape[2]) if crop else shape,
                         num_classes=10, mean=(0.5,) * shape[2], std=(0.25,) * shape[2],
                         variable_size=crop is not None, crop=crop)


def streams(data_dir: str | None = None) -> dict[str, tuple[sources.Dataset, dict, str]]:
  """name → (dataset, train_stream options, the benchmark case it feeds)."""
  mnist = sources.load("mnist5k", "train", data_dir).in_memory()
  return {
      "mnist5k, shift 2": (mnist, {"global_batch": 256, "max_shift": 2}, "lenet5@28"),
      "32×32×3, shift 4 + flip": (synthetic((32, 32, 3), 10_000),
                                  {"global_batch": 128, "max_shift": 4, "flip": True},
                                  "resnet20@32"),
      "~300×400, random-resized crop 224": (synthetic((0, 0, 3), 512, crop=224,
                                                      sizes=(256, 500)),
                                             {"global_batch": 16, "flip": True},
                                             "resnet50@224"),
  }


def measure(dataset: sources.Dataset, options: dict, *, min_time: float = 5.0,
            num_threads: int = 2) -> dict:
  stream = pipeline.train_stream(dataset, seed=0, num_threads=num_threads, **options)
  next(stream)  # start the threads and fill the prefetch buffer
  images, batches = 0, 0
  start = time.perf_counter()
  while time.perf_counter() - start < min_time or batches < 3:
    images += len(next(stream)["label"])
    batches += 1
  elapsed = time.perf_counter() - start
  return {"batches": batches, "images_per_s": images / elapsed, "threads": num_threads}


class JpegFiles:
  """A source whose every read decodes a JPEG file (as a tfds ``data_source`` of encoded images
  does): ``{"image": uint8 (H, W, 3), "label": int}``."""

  def __init__(self, paths: list[str], labels: np.ndarray):
    self.paths, self.labels = paths, labels

  def __len__(self) -> int:
    return len(self.paths)

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    from PIL import Image  # pylint: disable=import-outside-toplevel
    with Image.open(self.paths[index]) as image:
      return {"image": np.asarray(image.convert("RGB"), np.uint8), "label": self.labels[index]}


def write_jpegs(directory: str, n: int, *, sizes: tuple[int, int] = (300, 500),
                quality: int = 90) -> sources.Dataset:
  """``n`` synthetic photos-like JPEGs (smooth colour fields with noise, random sizes in
  ``sizes``) written into ``directory``, as a variable-size dataset with a 224 crop that decodes
  each file when it is read."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  os.makedirs(directory, exist_ok=True)
  rng = np.random.default_rng(0)
  paths = []
  for i in range(n):
    h, w = rng.integers(sizes[0], sizes[1] + 1, 2)
    coarse = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).resize(
        (int(w), int(h)), Image.Resampling.BICUBIC)
    noise = rng.integers(-12, 13, (int(h), int(w), 3))
    pixels = np.clip(np.asarray(coarse, np.int64) + noise, 0, 255).astype(np.uint8)
    paths.append(os.path.join(directory, f"{i:05d}.jpg"))
    Image.fromarray(pixels).save(paths[-1], quality=quality)
  source = JpegFiles(paths, rng.integers(0, 10, n).astype(np.int64))
  return sources.Dataset(name="jpeg", split="train", source=source, image_key="image",
                         label_key="label", image_shape=(224, 224, 3), num_classes=10,
                         mean=(0.5,) * 3, std=(0.25,) * 3, variable_size=True, crop=224)
