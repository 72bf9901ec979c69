"""Experiment configs: the defaults, loading ``get_config(arg)`` files, checking values,
deriving step counts.

``defaults()`` holds every key cnnjax reads, with its one default; experiment files start from
it. Only ``cnnjax.train.resolve`` (and the CLIs) read a ConfigDict; everything below takes
explicit arguments. The checks here need nothing but the config (names of models, optimizers
and schedules are checked where those live, by ``resolve``); each failure is one ``UserError``.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import math
import numbers
import os
import re
import sys

from collections.abc import Mapping
from typing import Any

import ml_collections
from ml_collections import ConfigDict, FieldReference

from cnnjax.errors import UserError


def none(kind):
  """A field that defaults to None but can be overridden from the command line."""
  return FieldReference(None, field_type=kind)


def defaults() -> ConfigDict:
  """Every config key cnnjax reads, with its one default: what experiment files start from.

  Durations are in epochs of the training split (``num_epochs``), or in steps when ``num_steps``
  is set; schedules are given in epochs and converted to steps in code from the final config, so
  command-line overrides of the batch size or the duration never leave them stale.
  """
  c = ConfigDict()
  c.seed = 0
  c.model = "lenet5"
  # Options passed to cnnjax.models.create; None keeps the model's own default.
  c.model_options = ConfigDict({
      "activation": none(str),  # relu | leaky_relu | elu | gelu
      "negative_slope": none(float),  # leaky ReLU's slope for x < 0
      "pool": none(str),  # max | avg
      "dropout": none(float),
      # stochastic depth (ResNets): block l of L drops its residual branch per example with
      # probability l/L · drop_path in training (Huang et al. 2016); the identity at eval
      "drop_path": none(float),
      # compute precision: float32 | bfloat16; default: the platform's (cnnjax.platforms:
      # bfloat16 on GPU and TPU, float32 on CPU). Parameters stay float32.
      "dtype": none(str),
  })
  c.num_classes = none(int)  # default: the dataset's number of classes

  c.dataset = "mnist5k"  # embedded: mnist5k, uci_digits; any prepared tfds dataset; folder:/path
  c.data = ConfigDict({
      "data_dir": none(str),  # default: $TFDS_DATA_DIR or ~/tensorflow_datasets
      "train_split": "train",
      "eval_split": "test",
      "image_size": none(int),  # default: the data's size, raised to the model's minimum
      "channels": none(int),  # default: the model's input channels (grey is tiled)
      # ImageNet-style crops, required for images of varying size (imagenet2012, food101, ...):
      # train takes a random-resized crop of crop×crop, eval resizes the shorter side to
      # `resize` (default round(crop / 0.875): 224 → 256) and takes the centre crop.
      "crop": none(int),
      "resize": none(int),
      "max_shift": 0,  # random translation by up to this many pixels
      "flip": False,  # random left-right flips
      "train_per_class": none(int),  # few-label training: a seeded stratified subset
      "val_fraction": 0.2,  # image folders (dataset='folder:/path'): held-out share per class
      "in_memory": True,  # decode the splits once into memory (skipped above 2 GiB decoded)
      "num_threads": 2,  # grain reader threads
  })

  c.batch_size = 128  # global, over all devices and processes
  c.eval_batch_size = 512  # rounded up to a multiple of the devices; padded and masked
  c.num_epochs = 10.0
  c.num_steps = none(int)  # overrides num_epochs when set

  c.optimizer = ConfigDict({
      "name": "adam",  # sgd | momentum | nesterov | adam | adamw | rmsprop | lars | lamb
      "learning_rate": 1e-3,
      "momentum": 0.9,
      "weight_decay": 0.0,
      "decay_all": False,  # also decay biases and norm scales
      "b1": 0.9,
      "b2": 0.999,
      "eps": 1e-8,
      "decay": 0.9,  # rmsprop's squared-gradient decay
      "trust_coefficient": 0.001,  # lars: the trust ratio's η (MLPerf's 0.001)
      "grad_clip_norm": none(float),
  })
  c.schedule = ConfigDict({
      "name": "cosine",  # constant | cosine | step | polynomial
      "warmup_epochs": 0.0,
      "decay_epochs": (),  # for "step": epochs at which the rate is multiplied by decay_factor
      "decay_factor": 0.1,
      "final_lr_fraction": 0.0,  # for "cosine" and "polynomial": the last rate / learning_rate
      "power": 1.0,  # for "polynomial": (1 - t/T)**power after the warm-up (MLPerf: 2)
  })
  c.label_smoothing = 0.0
  # mixup / CutMix (cnnjax.data.mixing), off while both alphas are 0: a batch is mixed with
  # chance `prob`, by CutMix with chance `switch_prob` when both alphas are > 0; targets mixed,
  # then smoothed; train top-1 counts the dominant label; evaluation is never mixed.
  c.mixup = ConfigDict({"alpha": 0.0, "prob": 1.0, "switch_prob": 0.5})
  c.cutmix = ConfigDict({"alpha": 0.0})
  # RandAugment as torchvision computes it (cnnjax.data.randaugment): num_ops per image (0: off)
  # at magnitude 0..30 (3× timm's scale: timm's m9-mstd0.5 is 27 and 1.5), N(magnitude, std).
  c.randaugment = ConfigDict({"num_ops": 0, "magnitude": 9.0, "magnitude_std": 0.0})
  # K micro-batches of batch_size / K per optimizer step (less activation memory); BatchNorm
  # sees each micro-batch and updates its running statistics K times.
  c.grad_accum_steps = 1
  # A moving average of the weights and BatchNorm statistics in the train state (checkpointed),
  # evaluated as eval_ema/*. decay 0: none; warmup: min(decay, (1 + step) / (10 + step)).
  c.ema = ConfigDict({"decay": 0.0, "warmup": False})

  # Transfer learning: initialise from a training workdir, a checkpoints directory or converted
  # weights (python -m cnnjax.transfer); init_skip: regexes of leaves kept fresh ('head' = every
  # num_classes-dependent leaf). Loading is strict otherwise.
  c.init_from = none(str)
  c.init_skip = ()
  c.init_from_ema = False  # init_from a workdir: take its checkpoint's moving averages (ema.*)
  c.finetune = ConfigDict({
      "mode": "full",  # full | linear_probe | freeze
      "freeze_until": none(str),  # for "freeze": last frozen layer (name prefix)
      "lr_multipliers": (),  # ('PATTERN:MULT', ...), e.g. ('layer1:0.1',)
  })

  c.log_every_steps = 50
  # Train steps per compiled call (a loop on the device): short steps pay per-step host work
  # otherwise. Logs, evals and saves fall on the same steps whatever it is. Default: the
  # platform's (cnnjax.platforms: 8 for small images on GPU and TPU, else 1).
  c.steps_per_call = none(int)
  c.eval_every_epochs = 1.0  # 0: evaluate only at the end
  c.checkpoint_every_steps = 500
  c.keep_checkpoints = 3
  return c


def with_saved(saved: Mapping[str, Any]) -> ConfigDict:
  """A run's ``config.json`` over ``defaults()``: keys added since the run keep their defaults,
  lists become the tuples they were."""
  config = defaults()

  def merge(into: ConfigDict, values: Mapping[str, Any]) -> None:
    for key, value in values.items():
      old = into.get(key)
      if isinstance(value, dict) and isinstance(old, ConfigDict):
        merge(old, value)
      else:
        into[key] = tuple(value) if isinstance(value, list) and isinstance(old, tuple) else value

  merge(config, saved)
  return config


def call_experiment(spec: str, function: str = "get_config", *, required: bool = True):
  """``function(arg)`` of the experiment file ``path/to/file.py[:arg]`` (``--config``'s form):
  the one loader of experiment files. None if the file has no such function and not
  ``required``.

  While the file runs, the repository it belongs to (the nearest directory above it that holds
  launch.py; else the directory above the file) is importable, so experiment files can share
  helpers (``from experiments import zoo``), as they do under launch.py; the entry is removed
  afterwards."""
  path, _, arg = spec.partition(":")
  if not os.path.isfile(path):
    raise UserError(f"config file {path!r} does not exist.")
  root = _repository(path)
  added = root not in sys.path
  if added:
    sys.path.insert(0, root)
  try:
    module_spec = importlib.util.spec_from_file_location("_cnnjax_experiment", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, function):
      if required:
        raise UserError(f"{path} defines no {function}(arg).")
      return None
    return getattr(module, function)(arg or None)
  finally:
    if added:
      sys.path.remove(root)


def _repository(path: str) -> str:
  """The nearest directory above ``path`` holding launch.py, else the directory above it."""
  here = os.path.dirname(os.path.abspath(path))
  directory = here
  while True:
    if os.path.isfile(os.path.join(directory, "launch.py")):
      return directory
    parent = os.path.dirname(directory)
    if parent == directory:
      return os.path.dirname(here)
    directory = parent


def load(spec: str) -> ConfigDict:
  """Loads ``path/to/file.py`` or ``path/to/file.py:arg`` (as ``--config`` does)."""
  return call_experiment(spec, "get_config")


def get_key(config: Mapping[str, Any], key: str) -> Any:
  """``config['a']['b']`` for the dotted key ``'a.b'`` (``--config.a.b``'s spelling); a
  ConfigDict or a dict of its JSON values."""
  value = config
  for part in key.split("."):
    value = value[part]
  return value


def leaf_keys(config: ConfigDict | Mapping[str, Any], prefix: str = "") -> list[str]:
  """Every dotted leaf key of ``config``, in its order; a ConfigDict or a dict of its JSON
  values (an empty section has none)."""
  keys = []
  for k in config.keys():
    v, full = config[k], f"{prefix}{k}"
    keys += leaf_keys(v, full + ".") if isinstance(v, (ConfigDict, Mapping)) else [full]
  return keys


def with_values(config: ConfigDict, values: Mapping[str, Any]) -> ConfigDict:
  """A copy of ``config`` with the dotted keys of ``values`` set, type-checked as ConfigDict
  checks a ``--config.key=value``; a value that doesn't fit is one ``UserError``."""
  config = copy.deepcopy(config)
  for key, value in values.items():
    *parents, leaf = key.split(".")
    node = get_key(config, ".".join(parents)) if parents else config
    try:
      node[leaf] = value
    except (TypeError, ValueError) as e:
      raise UserError(f"config.{key}={value!r} doesn't fit the config: "
                      f"{str(e).splitlines()[0]}") from None
  return config


def _fail(key: str, wording: str, value) -> UserError:
  """The one form of a range error; 'finite and' is added where inf or NaN was given."""
  if isinstance(value, numbers.Real) and not math.isfinite(value):
    wording = f"finite and {wording}"
  return UserError(f"config.{key} must be {wording}, got {value!r}.")


def _number(value) -> bool:
  return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _integer(value) -> bool:
  return isinstance(value, numbers.Integral) and not isinstance(value, bool)


# Ranges as (wording, test); each test only sees finite numbers. Fractions stop below 1 where
# 1 means a moving average that never moves (momentum, b1, b2, decay) or an example that is all
# smoothing; val_fraction excludes both ends, since either leaves one split of a folder empty.
POSITIVE = ("positive", lambda v: v > 0)
NON_NEGATIVE = (">= 0", lambda v: v >= 0)
FRACTION = ("in [0, 1)", lambda v: 0 <= v < 1)
CLOSED_FRACTION = ("in [0, 1]", lambda v: 0 <= v <= 1)
OPEN_FRACTION = ("in (0, 1)", lambda v: 0 < v < 1)
AT_LEAST_ONE = ("an integer >= 1", lambda v: _integer(v) and v >= 1)
SEED = ("an integer in [0, 2**63)", lambda v: _integer(v) and 0 <= v < 2**63)
COUNT = ("an integer >= 0", lambda v: _integer(v) and v >= 0)
MAGNITUDE_BIN = ("in [0, 30] (torchvision's RandAugment bins)", lambda v: 0 <= v <= 30)

# (key, range, optional): an optional key may be None (its default is computed elsewhere).
RANGES = (
    ("seed", SEED, False),
    ("batch_size", POSITIVE, False),
    ("eval_batch_size", POSITIVE, False),
    ("log_every_steps", POSITIVE, False),
    ("steps_per_call", AT_LEAST_ONE, True),
    ("checkpoint_every_steps", POSITIVE, False),
    ("keep_checkpoints", POSITIVE, False),
    ("eval_every_epochs", NON_NEGATIVE, False),
    ("label_smoothing", FRACTION, False),
    ("mixup.alpha", NON_NEGATIVE, False), ("mixup.prob", CLOSED_FRACTION, False),
    ("mixup.switch_prob", CLOSED_FRACTION, False), ("cutmix.alpha", NON_NEGATIVE, False),
    ("randaugment.num_ops", COUNT, False),
    ("randaugment.magnitude", MAGNITUDE_BIN, False),
    ("randaugment.magnitude_std", NON_NEGATIVE, False),
    ("grad_accum_steps", AT_LEAST_ONE, False), ("ema.decay", FRACTION, False),
    ("num_classes", AT_LEAST_ONE, True),
    ("model_options.dropout", FRACTION, True),
    ("model_options.drop_path", FRACTION, True),
    ("model_options.negative_slope", NON_NEGATIVE, True),
    ("data.image_size", POSITIVE, True),
    ("data.crop", POSITIVE, True),
    ("data.resize", POSITIVE, True),
    ("data.max_shift", NON_NEGATIVE, False),
    ("data.train_per_class", POSITIVE, True),
    ("data.val_fraction", OPEN_FRACTION, False),
    ("data.num_threads", AT_LEAST_ONE, False),
    ("optimizer.learning_rate", POSITIVE, False),
    ("optimizer.momentum", FRACTION, False),
    ("optimizer.weight_decay", NON_NEGATIVE, False),
    ("optimizer.b1", FRACTION, False),
    ("optimizer.b2", FRACTION, False),
    ("optimizer.eps", POSITIVE, False),
    ("optimizer.decay", FRACTION, False),
    ("optimizer.grad_clip_norm", POSITIVE, True),
    ("optimizer.trust_coefficient", POSITIVE, False),
    ("schedule.warmup_epochs", NON_NEGATIVE, False),
    ("schedule.decay_factor", POSITIVE, False),
    ("schedule.final_lr_fraction", CLOSED_FRACTION, False),
    ("schedule.power", POSITIVE, False),
)


def _check_range(key: str, value, wording: str, test, optional: bool = False) -> None:
  """Raises ``UserError`` unless ``value`` is a finite number passing ``test`` (or None if
  ``optional``)."""
  if value is None and optional:
    return
  if not _number(value) or not test(value):
    raise _fail(key, wording, value)


def _check_lists(config: ml_collections.ConfigDict) -> None:
  """Entries of the list-valued keys: decay epochs and init_skip regexes."""
  for i, epoch in enumerate(config.schedule.decay_epochs):
    _check_range(f"schedule.decay_epochs[{i}]", epoch, *NON_NEGATIVE)
  for i, pattern in enumerate(config.init_skip):
    try:
      re.compile(pattern)
    except (re.error, TypeError) as e:
      raise UserError(f"config.init_skip[{i}] must be a valid regular expression, got "
                      f"{pattern!r} ({e}).") from None


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks names and ranges; raises ``UserError`` naming the bad key and the valid choices.

  Everything here needs only the config, so a bad value fails before any data is read; the
  names (model, options, optimizer, schedule) are checked by ``cnnjax.train.resolve``, the checks
  that need the data's shape by ``check_against_data``.
  """
  for key, (wording, test), optional in RANGES:
    _check_range(key, get_key(config, key), wording, test, optional)
  duration = "num_epochs" if config.num_steps is None else "num_steps"
  _check_range(duration, config[duration], *POSITIVE)
  _check_lists(config)
  d = config.data
  if d.channels not in (None, 1, 3):
    raise UserError(f"config.data.channels must be 1 or 3, got {d.channels}.")
  if d.crop is not None and d.resize is not None and d.resize < d.crop:
    raise UserError(f"config.data.resize must be >= config.data.crop={d.crop}, got {d.resize}.")
  if config.checkpoint_every_steps % config.log_every_steps:
    raise UserError(f"config.checkpoint_every_steps={config.checkpoint_every_steps} must be a "
                    f"multiple of config.log_every_steps={config.log_every_steps}, so that a "
                    "resumed run logs the same windows as an uninterrupted one.")


def check_against_data(config: ml_collections.ConfigDict, image_shape: tuple[int, ...]) -> None:
  """The checks that need the opened training split: ``image_shape`` is what it yields (H, W, C).

  A shift of the full height or width would move the whole image out of the frame; unchecked,
  it fails deep in a grain reader thread, so it is refused here before anything starts.
  """
  height, width = image_shape[:2]
  if config.data.max_shift >= min(height, width):
    raise UserError(f"config.data.max_shift must be < {min(height, width)} (the training images "
                    f"are {height}x{width}), got {config.data.max_shift}.")


@dataclasses.dataclass(frozen=True)
class Steps:
  """When things happen, in steps: the durations derived from the final config and the
  training split's size, and the intervals of logging, evaluation, saving and compiled calls."""

  steps_per_epoch: float
  total_steps: int
  warmup_steps: int
  decay_steps: tuple[int, ...]
  eval_every_steps: int  # 0: only at the end
  log_every_steps: int
  checkpoint_every_steps: int
  steps_per_call: int

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict, num_train: int) -> Steps:
    spe = num_train / config.batch_size
    total = config.num_steps or max(1, math.ceil(config.num_epochs * spe))
    return cls(
        steps_per_epoch=spe,
        total_steps=total,
        warmup_steps=round(config.schedule.warmup_epochs * spe),
        decay_steps=tuple(round(e * spe) for e in config.schedule.decay_epochs),
        eval_every_steps=(max(1, round(config.eval_every_epochs * spe))
                          if config.eval_every_epochs else 0),
        log_every_steps=config.log_every_steps,
        checkpoint_every_steps=config.checkpoint_every_steps,
        steps_per_call=config.steps_per_call,
    )
