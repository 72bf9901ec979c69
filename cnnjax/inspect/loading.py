"""What ``visualize`` looks at: a model, its variables, its preprocessing and (maybe) images.

A directory becomes an ``Inspectable`` through the first loader in ``LOADERS`` that recognises
it:

* a training run (``config.json`` + ``checkpoints/``): its config, resolved as training resolves
  it (``cnnjax.train.resolve``; keys added to ``cnnjax.config.defaults()`` since the run keep
  their defaults), rebuilds the model, the input transform and the evaluation split, and the
  newest checkpoint fills the variables;
* a pretrained-weights directory (``pretrained.json`` + ``variables/``, written by
  ``python -m cnnjax.transfer``): ``transfer.pretrained.load_pretrained`` gives the model,
  variables and preprocessing; it has no dataset of its own.

Another source plugs in as one more ``(recognises, load)`` entry returning the same record.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import numpy as np
from flax import linen as nn

from cnnjax import checkpoint, config as config_lib
from cnnjax.data import sources, transforms
from cnnjax.errors import UserError
from cnnjax.train import loop, resolve
from cnnjax.transfer import pretrained


@dataclasses.dataclass(frozen=True)
class Inspectable:
  """A model ready to look inside.

  Attributes:
    name: registry name of the model.
    model: the module.
    variables: ``{'params': ..., 'batch_stats': ...}`` as arrays.
    input_shape: one model input, HWC.
    preprocess: uint8 NHWC images -> model input, on the host (numpy or jax inside).
    display: uint8 NHWC images -> the same geometry as ``preprocess`` but as [0, 1] pixels (to
      draw on).
    dataset: images to pick an input from and to search for top-activating patches; None when
      the source has none (then pass an image file, and the patches are skipped).
    origin: where it came from, for titles.
  """

  name: str
  model: nn.Module
  variables: Any
  input_shape: tuple[int, int, int]
  preprocess: Callable[[np.ndarray], Any]
  display: Callable[[np.ndarray], Any]
  dataset: sources.Dataset | None
  origin: str


def run_config(directory: str) -> ml_collections.ConfigDict:
  """The config of the run in ``directory``: its config.json over today's defaults."""
  with open(os.path.join(directory, "config.json")) as f:
    return config_lib.with_saved(json.load(f))


def is_training_run(directory: str) -> bool:
  return all(os.path.exists(os.path.join(directory, f)) for f in ("config.json", "checkpoints"))


def load_training_run(directory: str, data_dir: str | None = None, *,
                      ema: bool = False) -> Inspectable:
  """The newest checkpoint of a ``launch.py`` run, rebuilt from its ``config.json``; with
  ``ema``, its moving averages of the weights."""
  config = run_config(directory)
  if data_dir is not None:
    config.data.data_dir = data_dir
  run = resolve.resolve(config, devices=jax.devices()[:1])
  mgr = checkpoint.manager(os.path.join(directory, "checkpoints"), keep=run.keep_checkpoints)
  restored = checkpoint.restore_newest(mgr, loop.abstract_state(run), set_aside=False)
  mgr.close()
  if restored is None:
    raise UserError(f"no checkpoint in {mgr.directory}; train first.")
  step, state = restored.step, restored.state
  if ema:
    if not state.ema:
      raise UserError(f"--ema: the run in {directory} keeps no moving averages of the weights "
                      "(config.ema.decay=0).")
    state = state.with_ema_weights()
  size, channels = run.input_shape[1], run.input_shape[3]
  display = functools.partial(transforms.to_model_input, size=size, channels=channels,
                              mean=(0.0,), std=(1.0,))
  return Inspectable(name=run.name, model=run.model,
                     variables=jax.device_get(state.variables()),
                     input_shape=tuple(run.input_shape[1:]), preprocess=run.input_fn,
                     display=display, dataset=run.eval_data,
                     origin=f"{run.name}, step {step}{', EMA weights' if ema else ''}")


def is_pretrained(directory: str) -> bool:
  return os.path.isfile(os.path.join(directory, pretrained.INFO))


def load_weights_dir(directory: str, data_dir: str | None = None, *,
                     ema: bool = False) -> Inspectable:
  """A converted-weights directory: weights plus the preprocessing they expect."""
  del data_dir  # no dataset of its own
  if ema:
    raise UserError(f"--ema: {directory} holds converted weights, which have no moving "
                    "averages; --ema is for training runs.")
  info = pretrained.read_info(directory)
  model, variables, prep = pretrained.load_pretrained(directory)
  channels = len(prep.mean)
  return Inspectable(name=info["model"], model=model, variables=variables,
                     input_shape=(prep.crop, prep.crop, channels), preprocess=prep,
                     display=lambda raw: prep.crop_images(raw).astype(np.float32) / 255.0,
                     dataset=None, origin=f"{info['model']}, pretrained")


# name -> (recognises directory, load(directory, data_dir)); tried in order.
LOADERS: dict[str, tuple[Callable[[str], bool], Callable[..., Inspectable]]] = {
    "training run (config.json + checkpoints/)": (is_training_run, load_training_run),
    "pretrained weights (pretrained.json)": (is_pretrained, load_weights_dir),
}


def load(directory: str, data_dir: str | None = None, *, ema: bool = False) -> Inspectable:
  """The ``Inspectable`` in ``directory``, from the first loader that recognises it (``ema``:
  a training run's moving averages of the weights)."""
  if not os.path.isdir(directory):
    raise UserError(f"--workdir {directory!r} is not a directory.")
  for recognises, loader in LOADERS.values():
    if recognises(directory):
      return loader(directory, data_dir, ema=ema)
  raise UserError(f"{directory!r} is neither of: {'; '.join(LOADERS)}.")


def read_image(path: str) -> np.ndarray:
  """An image file as uint8 HWC (grey stays one channel, everything else becomes RGB)."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  try:
    with Image.open(path) as im:
      array = np.asarray(im.convert("L" if im.mode in ("L", "1", "I;16", "I") else "RGB"))
  except (OSError, ValueError, SyntaxError) as e:
    raise UserError(f"--image {path!r} can't be read as an image: {e}.") from None
  return array[..., None] if array.ndim == 2 else array


def dataset_image(dataset: sources.Dataset, index: int) -> tuple[np.ndarray, int]:
  """(uint8 HWC image, label) of example ``index``, centre-cropped if the dataset crops."""
  if not 0 <= index < len(dataset):
    raise UserError(f"--index={index} is out of range: the {dataset.split} split of "
                    f"{dataset.name} has {len(dataset)} examples.")
  record = dataset.source[index]
  image = np.asarray(record[dataset.image_key], np.uint8)
  image = image[..., None] if image.ndim == 2 else image
  if getattr(dataset, "crop", None) is not None:
    image = transforms.resize_centre_crop([image], dataset.resize, dataset.crop)[0]
  return image, int(record[dataset.label_key])
