"""Experiment configs: loading ``get_config(arg)`` files, checking them, deriving step counts.

Only the loop and launch.py read a ConfigDict; everything below them takes explicit arguments.
Every check here runs before anything is compiled, and each failure is one ``UserError`` line.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import os
import sys

import ml_collections

from cnnjax import models
from cnnjax.errors import UserError
from cnnjax.train import optim


def load(spec: str) -> ml_collections.ConfigDict:
  """Loads ``path/to/file.py`` or ``path/to/file.py:arg`` (as ``--config`` does)."""
  path, _, arg = spec.partition(":")
  if not os.path.isfile(path):
    raise UserError(f"config file {path!r} does not exist.")
  root = os.path.dirname(os.path.dirname(os.path.abspath(path)))
  if root not in sys.path:
    sys.path.insert(0, root)
  module_spec = importlib.util.spec_from_file_location("_cnnjax_config", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg or None)


def _positive(config, *keys: str) -> None:
  for key in keys:
    value = config[key] if "." not in key else config[key.split(".")[0]][key.split(".")[1]]
    if value is None or value <= 0:
      raise UserError(f"config.{key} must be positive, got {value!r}.")


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks names and ranges; raises ``UserError`` naming the bad key and the valid choices."""
  spec = models.get_spec(config.model)
  models.create(config.model, num_classes=config.num_classes or spec.num_classes,
                **config.model_options)
  optim.schedule(config.schedule.name, base_lr=1.0, total_steps=10)
  optim.optimizer(config.optimizer.name, 1.0)
  _positive(config, "batch_size", "eval_batch_size", "log_every_steps", "checkpoint_every_steps",
            "keep_checkpoints", "optimizer.learning_rate")
  if config.num_steps is None:
    _positive(config, "num_epochs")
  else:
    _positive(config, "num_steps")
  if not 0.0 <= config.label_smoothing < 1.0:
    raise UserError(f"config.label_smoothing must be in [0, 1), got {config.label_smoothing}.")
  if config.data.max_shift < 0:
    raise UserError(f"config.data.max_shift must be >= 0, got {config.data.max_shift}.")
  if config.data.channels not in (None, 1, 3):
    raise UserError(f"config.data.channels must be 1 or 3, got {config.data.channels}.")
  if config.data.train_per_class is not None and config.data.train_per_class <= 0:
    raise UserError(f"config.data.train_per_class must be positive, got "
                    f"{config.data.train_per_class}.")
  if config.checkpoint_every_steps % config.log_every_steps:
    raise UserError(f"config.checkpoint_every_steps={config.checkpoint_every_steps} must be a "
                    f"multiple of config.log_every_steps={config.log_every_steps}, so that a "
                    "resumed run logs the same windows as an uninterrupted one.")
  if config.eval_every_epochs < 0:
    raise UserError(f"config.eval_every_epochs must be >= 0, got {config.eval_every_epochs}.")


@dataclasses.dataclass(frozen=True)
class Plan:
  """Step counts derived from the final config and the training split's size."""

  steps_per_epoch: float
  total_steps: int
  warmup_steps: int
  decay_steps: tuple[int, ...]
  eval_every_steps: int  # 0: only at the end


def plan(config: ml_collections.ConfigDict, num_train: int) -> Plan:
  spe = num_train / config.batch_size
  total = config.num_steps or max(1, math.ceil(config.num_epochs * spe))
  return Plan(
      steps_per_epoch=spe,
      total_steps=total,
      warmup_steps=round(config.schedule.warmup_epochs * spe),
      decay_steps=tuple(round(e * spe) for e in config.schedule.decay_epochs),
      eval_every_steps=max(1, round(config.eval_every_epochs * spe)) if config.eval_every_epochs
      else 0,
  )
