"""Turning a config into a frozen description of the run, once, before anything is compiled.

``resolve(config)`` is the one place that reads a ConfigDict. It validates the config, opens
the data splits (prepared for pretrained weights' preprocessing when ``config.init_from`` names
converted weights), builds the model and the optimizer once, traces the model's init abstractly
and derives the step counts. It writes nothing and compiles nothing; every bad input is one
``UserError``. Training, evaluation, ``inspect`` and sweeps all start from its ``Run``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import ml_collections
import optax
from flax import linen as nn

from cnnjax import config as config_lib, models, parallel, platforms
from cnnjax.data import augment, image_folder, sources, splits, transforms
from cnnjax.data.preprocessing import Preprocessing
from cnnjax.errors import UserError, unknown
from cnnjax.train import optim
from cnnjax.transfer import finetune, merge, pretrained


@dataclasses.dataclass(frozen=True)
class Run:
  """Everything a run needs, resolved and checked from the config, once: the loop, the
  pipeline, evaluation and the checkpoints read it (and nothing else of the config)."""

  name: str  # the model's registry name, for titles
  config: Mapping[str, Any]  # the config as JSON values: config.json, and what resume compares
  seed: int  # the model's init and dropout streams (the data's order: ``data.seed``)
  data: splits.DataSettings  # the splits, batch sizes, augmentations, reader threads
  steps: config_lib.Steps  # durations and when to log, evaluate, save; steps per call
  mesh: jax.sharding.Mesh
  model: nn.Module
  spec: models.ModelSpec
  train_data: sources.Dataset
  eval_data: sources.Dataset
  schedule: optax.Schedule
  tx: optax.GradientTransformation
  # The traced hyperparameters (``optim.TRACED``, nonzero ones) and the schedule and optimizer as
  # functions of them: the train step takes ``hyper`` as an argument and calls ``optimizer``.
  hyper: Mapping[str, Any]
  optimizer: Any  # (hyper) -> (schedule, tx)
  program_key: str  # equal for runs whose compiled calls are the same (``calls._cached``)
  label_smoothing: float
  train_mode: bool  # False for a linear probe: BatchNorm keeps the loaded statistics
  input_fn: Any
  input_shape: tuple[int, int, int, int]
  variables: Any  # the model's variables as shapes (``jax.ShapeDtypeStruct``)
  heads: frozenset[str]  # parameter paths that depend on num_classes
  frozen: frozenset[str]  # top-level modules that don't train
  init_from: str | None
  init_skip: tuple[str, ...]
  keep_checkpoints: int
  grad_accum_steps: int  # micro-batches per step
  ema_decay: float  # 0: no moving average of the weights
  ema_warmup: bool
  init_from_ema: bool  # init_from takes a checkpoint's moving averages


def _as_json(config: ml_collections.ConfigDict) -> dict[str, Any]:
  try:
    return json.loads(config.to_json_best_effort())
  except (TypeError, ValueError) as e:
    raise UserError(f"the config holds a value JSON can't store: {e}") from None


def check(config: ml_collections.ConfigDict) -> None:
  """Every check that needs only the config: ``config.validate``'s values, then the names they
  must be among (model and its options, optimizer, schedule), before any data is opened."""
  config_lib.validate(config)
  models.check_options(config.model, **config.model_options)
  if config.optimizer.name not in optim.OPTIMIZERS:
    raise unknown("optimizer", config.optimizer.name, optim.OPTIMIZERS)
  if config.schedule.name not in optim.SCHEDULES:
    raise unknown("schedule", config.schedule.name, optim.SCHEDULES)


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


def _open_splits(data: splits.DataSettings, pre: Preprocessing | None):
  """``splits.open_splits``, kept for the next runs of this process (a sweep worker's runs
  decode a small dataset into memory once): keyed by what opening reads (the seed only where it
  picks images)."""
  if pre is not None:
    return splits.open_splits(data, pre)
  picks = data.train_per_class or data.dataset.startswith(image_folder.PREFIX)
  key = dataclasses.replace(data, batch_size=0, eval_batch_size=0, augment=augment.NONE,
                            num_threads=0, seed=data.seed if picks else 0)
  if key not in _OPENED:
    _OPENED.clear()  # one dataset at a time: the splits in memory can be large
    _OPENED[key] = splits.open_splits(data, pre)
  return _OPENED[key]


_OPENED: dict = {}


def check_model_input(model: nn.Module, shape: tuple[int, ...]) -> dict:
  """The model's variables as shapes, traced abstractly (no compile, no weights).

  An input the model's layers can't take (a map shrunk below a kernel) is one ``UserError``;
  any other exception is a bug in the model and propagates as it is."""
  try:
    return models.abstract_variables(model, shape)
  except UserError:
    raise
  except (TypeError, ValueError) as e:  # shape errors from deep inside lax or flax
    raise UserError(f"{type(model).__name__} can't take input of shape {shape}: "
                    f"{str(e).splitlines()[0]}") from None


def resolve(config: ml_collections.ConfigDict,
            devices: Sequence[jax.Device] | None = None) -> Run:
  """Resolves and checks the whole run: no file is written, nothing is compiled."""
  check(config)
  mesh = parallel.make_mesh(devices)
  parallel.check_batch_size(config.batch_size, mesh)
  _check_grad_accum(config.batch_size, config.grad_accum_steps, mesh.devices.size)
  pre = _pretrained_preprocessing(config)
  data = splits.DataSettings.from_config(config)
  train_data, eval_data = _open_splits(data, pre)
  config_lib.check_against_data(config, train_data.image_shape)
  spec = models.get_spec(config.model)
  if config.num_classes is not None and config.num_classes < train_data.num_classes:
    raise UserError(f"config.num_classes={config.num_classes} is smaller than the "
                    f"{train_data.num_classes} classes of {config.dataset}.")
  num_classes = config.num_classes or train_data.num_classes
  size = spec.input_size_for(train_data.image_shape[0], config.data.image_size or (
      pre.crop if pre else None))
  config = platform_defaults(config, mesh.devices.flat[0].platform, size)
  as_json = _as_json(config)  # with the defaults filled in: what the run ran with
  model = models.create(config.model, num_classes=num_classes, **config.model_options)
  channels = config.data.channels or spec.channels
  input_fn = functools.partial(transforms.to_model_input, size=size, channels=channels,
                               mean=train_data.mean, std=train_data.std)
  shape = (1, size, size, channels)
  variables = check_model_input(model, shape)
  steps = config_lib.Steps.from_config(config, len(train_data))
  heads = _heads(config, model, shape)
  ft = config.finetune
  frozen = frozenset(finetune.frozen_modules(variables["params"], ft.mode, heads,
                                             ft.freeze_until))
  hyper = optim.traced({k: config_lib.get_key(as_json, key) for k, key in HYPER_KEYS.items()})
  optimizer = functools.partial(_optimizer, config, steps, variables["params"], frozen)
  schedule, tx = optimizer({})
  return Run(name=config.model, config=as_json, seed=config.seed, data=data, steps=steps,
             mesh=mesh, model=model, spec=spec, train_data=train_data, eval_data=eval_data,
             schedule=schedule, tx=tx, hyper=hyper, optimizer=optimizer,
             program_key=program_key(as_json, mesh), label_smoothing=config.label_smoothing,
             train_mode=ft.mode != "linear_probe", input_fn=input_fn, input_shape=shape,
             variables=variables, heads=heads, frozen=frozen, init_from=config.init_from,
             init_skip=tuple(config.init_skip), keep_checkpoints=config.keep_checkpoints,
             grad_accum_steps=config.grad_accum_steps, ema_decay=config.ema.decay,
             ema_warmup=config.ema.warmup, init_from_ema=config.init_from_ema)


def _check_grad_accum(batch_size: int, k: int, devices: int) -> None:
  """Each of the ``k`` micro-batches must split evenly over the devices."""
  if k > 1 and batch_size % (k * devices):
    raise UserError(f"config.batch_size={batch_size} must be divisible by "
                    f"config.grad_accum_steps × devices = {k} × {devices} = {k * devices}, so "
                    "that every micro-batch splits evenly over the devices.")


def platform_defaults(config: ml_collections.ConfigDict, platform: str,
                      input_size: int) -> ml_collections.ConfigDict:
  """A copy of ``config`` whose open keys (``model_options.dtype``, ``steps_per_call``) hold
  what runs fast on ``platform`` (``cnnjax.platforms``); keys the config sets stay as set."""
  config = config.copy_and_resolve_references()
  if "dtype" in config.model_options:
    config.model_options.dtype = platforms.compute_dtype(platform, config.model_options.dtype)
  config.steps_per_call = platforms.steps_per_call(platform, input_size, config.steps_per_call)
  return config


# Where each ``optim.TRACED`` hyperparameter lives in the config.
HYPER_KEYS = {"learning_rate": "optimizer.learning_rate", "momentum": "optimizer.momentum",
              "weight_decay": "optimizer.weight_decay"}
# Config keys that only reach the train and eval calls as arguments (the PRNG keys), not as part
# of their programs.
ARGUMENT_KEYS = ("seed",)


def program_key(as_json: Mapping[str, Any], mesh: jax.sharding.Mesh) -> str:
  """The config with what only enters the compiled calls as arguments left out (the traced
  hyperparameters count only as on or off), and the devices: runs with equal keys have the
  same compiled calls."""
  flat = {k: config_lib.get_key(as_json, k) for k in config_lib.leaf_keys(as_json)}
  for key in HYPER_KEYS.values():
    flat[key] = bool(flat.get(key))
  for key in ARGUMENT_KEYS:
    flat.pop(key, None)
  devices = [[d.id for d in mesh.devices.flat], list(mesh.devices.shape), list(mesh.axis_names)]
  return json.dumps([flat, devices], sort_keys=True, default=str)


def _heads(config, model: nn.Module, shape) -> frozenset[str]:
  """The num_classes-dependent parameters, needed only when transferring or freezing."""
  if config.init_from is None and config.finetune.mode == "full":
    return frozenset()
  return frozenset(merge.head_paths(model, shape))


def _optimizer(config, steps: config_lib.Steps, params, frozen: frozenset[str],
               hyper: Mapping[str, Any]):
  """The schedule and the optimizer; frozen layers and LR multipliers become optax partitions.
  The ``hyper`` given (``optim.TRACED``, traced) replace the config's values."""
  o, s = config.optimizer, config.schedule
  value = {k: hyper.get(k, config_lib.get_key(config, key)) for k, key in HYPER_KEYS.items()}
  schedule = optim.schedule(s.name, base_lr=value["learning_rate"], total_steps=steps.total_steps,
                            warmup_steps=steps.warmup_steps, decay_steps=steps.decay_steps,
                            decay_factor=s.decay_factor, final_lr_fraction=s.final_lr_fraction,
                            power=s.power)

  def make(multiplier: float) -> optax.GradientTransformation:
    lr = schedule if multiplier == 1.0 else (lambda step: multiplier * schedule(step))
    return optim.optimizer(o.name, lr, momentum=value["momentum"],
                           weight_decay=value["weight_decay"],
                           decay_all=o.decay_all, b1=o.b1, b2=o.b2, eps=o.eps, decay=o.decay,
                           trust_coefficient=o.trust_coefficient)

  multipliers = finetune.parse_multipliers(config.finetune.lr_multipliers)
  tx = make(1.0) if not frozen and not multipliers else finetune.partitioned(
      make, finetune.labels(params, frozen, multipliers))
  if o.grad_clip_norm:  # one global norm over every trained parameter
    tx = optax.chain(optax.clip_by_global_norm(o.grad_clip_norm), tx)
  return schedule, tx
