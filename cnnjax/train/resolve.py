"""Turning a config into a checked description of the run, before anything is compiled.

``setup(config, workdir)`` validates the config, opens the data splits (prepared for pretrained
weights' preprocessing when ``config.init_from`` names converted weights), builds the model and
the optimizer and traces the model's init abstractly: every bad input is one ``UserError``.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Sequence
from typing import Any

import jax
import ml_collections
import optax
from flax import linen as nn

from cnnjax import config as config_lib, models, parallel
from cnnjax.data import image_folder, sources, transforms
from cnnjax.errors import UserError
from cnnjax.train import optim, state as state_lib, workdir as workdir_lib
from cnnjax.transfer import finetune, merge, pretrained
from cnnjax.transfer.preprocessing import Preprocessing


@dataclasses.dataclass(frozen=True)
class Setup:
  """Everything a run needs, resolved and checked from the config."""

  config: ml_collections.ConfigDict
  workdir: str
  mesh: jax.sharding.Mesh
  model: nn.Module
  spec: models.ModelSpec
  train_data: sources.Dataset
  eval_data: sources.Dataset
  plan: config_lib.Plan
  schedule: optax.Schedule
  tx: optax.GradientTransformation
  input_fn: Any
  input_shape: tuple[int, int, int, int]
  heads: set[str]  # parameter paths that depend on num_classes
  frozen: frozenset[str]  # top-level modules that don't train


def _open_data(config, pre: Preprocessing | None) -> tuple[sources.Dataset, sources.Dataset]:
  """The train and eval splits; with pretrained weights, normalised as those weights expect."""
  d = config.data
  if config.dataset.startswith(image_folder.PREFIX):
    path = config.dataset[len(image_folder.PREFIX):]
    load = functools.partial(image_folder.load_image_folder, path,
                             image_size=d.crop or d.image_size or 224, resize=d.resize,
                             val_fraction=d.val_fraction, seed=config.seed,
                             channels=d.channels or 3, preprocessing=pre)
    train = load(d.train_split)
    if d.train_per_class:
      train = sources.per_class_subset(train, d.train_per_class, config.seed)
    return train, load(d.eval_split)
  train = sources.load(config.dataset, d.train_split, d.data_dir, crop=d.crop, resize=d.resize)
  test = sources.load(config.dataset, d.eval_split, d.data_dir, crop=d.crop, resize=d.resize)
  if d.in_memory:  # splits too big to decode into memory stay on disk
    train, test = sources.in_memory_if_small(train), sources.in_memory_if_small(test)
  if d.train_per_class:
    train = sources.per_class_subset(train, d.train_per_class, config.seed)
  if pre is not None:
    stats = {"mean": pre.effective_mean, "std": pre.effective_std}
    train, test = dataclasses.replace(train, **stats), dataclasses.replace(test, **stats)
  return train, test


def _pretrained_preprocessing(config) -> Preprocessing | None:
  """The preprocessing of converted weights named by ``config.init_from``, if any."""
  path = config.init_from
  if not path or not os.path.isfile(os.path.join(path, pretrained.INFO)):
    return None
  info = pretrained.read_info(path)
  if info["model"] != config.model:
    raise UserError(f"config.init_from={path!r} holds {info['model']} weights but "
                    f"config.model={config.model!r}.")
  return Preprocessing.from_json(info["preprocessing"])


def _input_size(spec: models.ModelSpec, native: int, requested: int | None) -> int:
  if requested is not None:
    if requested < spec.min_input_size:
      raise UserError(f"config.data.image_size={requested} is below {spec.name}'s minimum "
                      f"input size {spec.min_input_size}.")
    return requested
  if spec.min_input_size == spec.input_size:  # a fixed-size model (LeNet-5)
    return spec.input_size
  return max(native, spec.min_input_size)


def check_model_input(model: nn.Module, shape: tuple[int, ...]) -> dict:
  """Traces ``model.init`` abstractly (no compile, no weights): a clear error if it can't run.

  Returns the abstract variables (shapes and dtypes)."""
  try:
    return jax.eval_shape(lambda: state_lib.init_variables(model, jax.random.key(0), shape))
  except UserError:
    raise
  except Exception as e:  # pylint: disable=broad-except  # shape errors from deep inside flax
    raise UserError(f"{type(model).__name__} can't take input of shape {shape}: "
                    f"{str(e).splitlines()[0]}") from None


def setup(config: ml_collections.ConfigDict, workdir: str,
          devices: Sequence[jax.Device] | None = None) -> Setup:
  """Resolves and checks the whole run without compiling anything."""
  config_lib.validate(config)
  workdir = workdir_lib.prepare(workdir)
  mesh = parallel.make_mesh(devices)
  parallel.check_batch_size(config.batch_size, mesh)
  pre = _pretrained_preprocessing(config)
  train_data, eval_data = _open_data(config, pre)
  config_lib.check_against_data(config, train_data.image_shape)
  for split, data in ((config.data.train_split, train_data), (config.data.eval_split, eval_data)):
    if len(data) == 0:
      raise UserError(f"split {split!r} of {config.dataset} is empty.")
  spec = models.get_spec(config.model)
  if config.num_classes is not None and config.num_classes < train_data.num_classes:
    raise UserError(f"config.num_classes={config.num_classes} is smaller than the "
                    f"{train_data.num_classes} classes of {config.dataset}.")
  model = models.create(config.model, num_classes=config.num_classes or train_data.num_classes,
                        **config.model_options)
  size = _input_size(spec, train_data.image_shape[0], config.data.image_size or (
      pre.crop if pre else None))
  channels = config.data.channels or spec.channels
  input_fn = functools.partial(transforms.to_model_input, size=size, channels=channels,
                               mean=train_data.mean, std=train_data.std)
  shape = (1, size, size, channels)
  abstract = check_model_input(model, shape)
  plan = config_lib.plan(config, len(train_data))
  heads = _heads(config, shape)
  ft = config.finetune
  frozen = frozenset(finetune.frozen_modules(abstract["params"], ft.mode, heads, ft.freeze_until))
  schedule, tx = _optimizer(config, plan, abstract["params"], frozen)
  return Setup(config, workdir, mesh, model, spec, train_data, eval_data, plan, schedule, tx,
               input_fn, shape, heads, frozen)


def _heads(config, shape) -> set[str]:
  if config.init_from is None and config.finetune.mode == "full":
    return set()
  make = lambda k: models.create(config.model, num_classes=k, **config.model_options)
  return merge.head_paths(make, shape)


def _optimizer(config, plan: config_lib.Plan, params, frozen: frozenset[str]):
  """The schedule and the optimizer; frozen layers and LR multipliers become optax partitions."""
  o, s = config.optimizer, config.schedule
  schedule = optim.schedule(s.name, base_lr=o.learning_rate, total_steps=plan.total_steps,
                            warmup_steps=plan.warmup_steps, decay_steps=plan.decay_steps,
                            decay_factor=s.decay_factor, final_lr_fraction=s.final_lr_fraction)

  def make(multiplier: float) -> optax.GradientTransformation:
    lr = schedule if multiplier == 1.0 else (lambda step: multiplier * schedule(step))
    return optim.optimizer(o.name, lr, momentum=o.momentum, weight_decay=o.weight_decay,
                           decay_all=o.decay_all, b1=o.b1, b2=o.b2, eps=o.eps, decay=o.decay)

  multipliers = finetune.parse_multipliers(config.finetune.lr_multipliers)
  tx = make(1.0) if not frozen and not multipliers else finetune.partitioned(
      make, finetune.labels(params, frozen, multipliers))
  if o.grad_clip_norm:  # one global norm over every trained parameter
    tx = optax.chain(optax.clip_by_global_norm(o.grad_clip_norm), tx)
  return schedule, tx
