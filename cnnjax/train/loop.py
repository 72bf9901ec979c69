"""The training loop and evaluation: the one place that reads the config.

``train(config, workdir)`` sets everything up (and checks it) before compiling, resumes from the
newest checkpoint in ``workdir/checkpoints`` if there is one, and trains to the end of the plan.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import socket
import time
from collections.abc import Sequence
from typing import Any

import jax
import ml_collections
import optax
from absl import logging
from flax import linen as nn

from cnnjax import checkpoint, config as config_lib, models, parallel
from cnnjax.data import image_folder, pipeline, sources, transforms
from cnnjax.errors import UserError
from cnnjax.train import metrics, optim, plots, state as state_lib, step as step_lib
from cnnjax.train.writers import MetricWriter
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


def prepare_workdir(workdir: str) -> str:
  """Creates ``workdir`` and checks it can be written; a clear error if it can't."""
  workdir = os.path.abspath(workdir)
  try:
    os.makedirs(workdir, exist_ok=True)
    probe = os.path.join(workdir, f".write_test_{socket.gethostname()}_{jax.process_index()}_"
                         f"{os.getpid()}")
    with open(probe, "w") as f:
      f.write("ok")
    os.remove(probe)
  except OSError as e:
    raise UserError(f"workdir {workdir!r} can't be written: {e.strerror or e}.") from None
  return workdir


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
  workdir = prepare_workdir(workdir)
  mesh = parallel.make_mesh(devices)
  parallel.check_batch_size(config.batch_size, mesh)
  pre = _pretrained_preprocessing(config)
  train_data, eval_data = _open_data(config, pre)
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


def _keys(seed: int) -> dict[str, jax.Array]:
  """Named PRNG streams split once from the root key."""
  init, dropout = jax.random.split(jax.random.key(seed))
  return {"init": init, "dropout": dropout}


def init_state(s: Setup, loaded: dict | None = None) -> state_lib.TrainState:
  """A fresh TrainState, created directly replicated on the mesh; with ``loaded`` variables
  (from ``config.init_from``) strictly merged into the fresh init."""
  rep = parallel.replicated(s.mesh)
  variables = jax.jit(lambda key: state_lib.init_variables(s.model, key, s.input_shape),
                      out_shardings=rep)(_keys(s.config.seed)["init"])
  if loaded is not None:
    variables, skipped = merge.merge(variables, loaded, s.config.init_skip, s.heads)
    logging.info("initialised from %s; kept fresh: %s", s.config.init_from, skipped)
    variables = parallel.replicate(variables, s.mesh)
  return jax.jit(lambda v: state_lib.create(v, s.tx), out_shardings=rep)(variables)


def load_init_from(path: str) -> dict:
  """Variables to start from: converted weights (``python -m cnnjax.convert_torchvision``),
  or a training workdir or checkpoints dir (its newest step)."""
  if not os.path.isdir(path):
    raise UserError(f"config.init_from={path!r} is not a directory.")
  if os.path.isfile(os.path.join(path, pretrained.INFO)):
    return pretrained.read(path)[1]
  variables = checkpoint.latest_variables(path)
  if not variables:
    raise UserError(f"config.init_from={path!r} holds no checkpoint.")
  return variables


def compile_steps(s: Setup):
  """The jitted train and eval steps: batch sharded over ``data``, state replicated."""
  rep, data = parallel.replicated(s.mesh), parallel.batch_sharding(s.mesh)
  train = functools.partial(step_lib.train_step, model=s.model, tx=s.tx, input_fn=s.input_fn,
                            label_smoothing=s.config.label_smoothing,
                            aux_loss_weight=s.spec.aux_loss_weight,
                            train_mode=s.config.finetune.mode != "linear_probe",
                            frozen=s.frozen)
  evaluate = functools.partial(step_lib.eval_step, model=s.model, input_fn=s.input_fn)
  train = jax.jit(train, in_shardings=(rep, data, rep), out_shardings=(rep, rep),
                  donate_argnums=0)
  evaluate = jax.jit(evaluate, in_shardings=(rep, data), out_shardings=rep)
  return train, evaluate


def run_eval(s: Setup, eval_fn, state) -> dict[str, float]:
  """Metrics over every evaluation example exactly once."""
  sums, n = None, s.mesh.devices.size
  # Evaluation pads and masks anyway, so its batch is rounded up to a multiple of the devices.
  global_batch = -(-s.config.eval_batch_size // n) * n
  batches = pipeline.eval_batches(s.eval_data, global_batch=global_batch,
                                  rows=parallel.process_rows(s.mesh, global_batch),
                                  num_threads=s.config.data.num_threads)
  for batch in batches:
    sums = metrics.add(sums, eval_fn(state, parallel.to_global(batch, s.mesh)))
  return metrics.finalize(jax.device_get(sums), "eval")


# What a resumed run must share with the run that wrote the checkpoint: the data order (dataset,
# split, batch size, seed) and the shape of the train state (model, optimizer, frozen layers).
RESUME_KEYS = ("model", "model_options", "num_classes", "dataset", "data.train_split",
               "data.train_per_class", "batch_size", "seed", "optimizer.name", "finetune")


def _check_resume_config(s: Setup) -> None:
  path = os.path.join(s.workdir, "config.json")
  if not os.path.exists(path):
    return
  with open(path) as f:
    old = json.load(f)
  new = json.loads(s.config.to_json_best_effort())

  def get(tree, key):
    for part in key.split("."):
      tree = tree.get(part) if isinstance(tree, dict) else None
    return tree

  changed = [k for k in RESUME_KEYS if get(old, k) != get(new, k)]
  if changed:
    k = changed[0]
    raise UserError(f"{s.workdir} holds a run with config.{k}={get(old, k)!r}, not "
                    f"{get(new, k)!r}: resuming needs the same {', '.join(changed)}; use a new "
                    "--workdir (or config.init_from to start from its weights).")


def _write_config(s: Setup) -> None:
  if jax.process_index() == 0:
    with open(os.path.join(s.workdir, "config.json"), "w") as f:
      f.write(s.config.to_json_best_effort(indent=2, sort_keys=True))


def _restore_or_init(s: Setup, mgr):
  if mgr.latest_step() is None:
    init_from = s.config.init_from
    return init_state(s, load_init_from(init_from) if init_from else None), None
  restored = checkpoint.restore_latest(mgr, init_state(s))
  step, state, data_state = restored
  logging.info("resumed from step %d in %s", step, mgr.directory)
  return state, data_state


def train(config: ml_collections.ConfigDict, workdir: str,
          devices: Sequence[jax.Device] | None = None) -> dict[str, float]:
  """Trains (or resumes) the experiment in ``workdir``; returns the final eval metrics."""
  s = setup(config, workdir, devices)
  mgr = checkpoint.manager(os.path.join(s.workdir, "checkpoints"), keep=config.keep_checkpoints)
  if mgr.latest_step() is not None:
    _check_resume_config(s)
  _write_config(s)
  state, data_state = _restore_or_init(s, mgr)
  stream = pipeline.train_stream(
      s.train_data, global_batch=config.batch_size, seed=config.seed,
      max_shift=config.data.max_shift, flip=config.data.flip,
      rows=parallel.process_rows(s.mesh, config.batch_size),
      num_threads=config.data.num_threads)
  if data_state is not None:
    stream.set_state(data_state)
  train_fn, eval_fn = compile_steps(s)
  start, total = int(state.step), s.plan.total_steps
  writer = MetricWriter(s.workdir, total_steps=total, start_step=start,
                        enabled=jax.process_index() == 0)
  dropout_key = _keys(config.seed)["dropout"]
  try:
    state, final = _loop(s, state, stream, train_fn, eval_fn, dropout_key, writer, mgr, start)
  finally:
    mgr.wait_until_finished()
    writer.close()
  if jax.process_index() == 0:
    plots.curves(writer.path, os.path.join(s.workdir, "curves.png"), title=config.model)
  return final


def _loop(s: Setup, state, stream, train_fn, eval_fn, dropout_key, writer, mgr, start):
  config, plan = s.config, s.plan
  total, final, sums = plan.total_steps, {}, None
  if start >= total:  # already finished: report the final metrics again
    return state, run_eval(s, eval_fn, state)
  tick, tick_step = time.monotonic(), start
  for step in range(start, total):
    state, batch_sums = train_fn(state, parallel.to_global(next(stream), s.mesh), dropout_key)
    sums, done = metrics.add(sums, batch_sums), step + 1
    if step == start:  # don't count compilation in images/s
      jax.block_until_ready(sums)
      tick, tick_step = time.monotonic(), done
    if done % config.log_every_steps == 0 or done == total:
      scalars = metrics.finalize(jax.device_get(sums), "train")
      now = time.monotonic()
      if done > tick_step:
        scalars["train/images_per_sec"] = (done - tick_step) * config.batch_size / (now - tick)
      scalars["train/learning_rate"] = float(s.schedule(step))
      metrics.check_finite(done, scalars)  # on every process: the values are replicated
      writer.write(done, scalars)
      writer.progress(done, loss=scalars["train/loss"],
                      img_s=scalars.get("train/images_per_sec", 0.0))
      sums, tick, tick_step = None, now, done
    writer.progress(done)
    paused = False
    if done == total or (plan.eval_every_steps and done % plan.eval_every_steps == 0):
      final = run_eval(s, eval_fn, state)
      metrics.check_finite(done, final)
      writer.write(done, final)
      paused = True
    if done == total or done % config.checkpoint_every_steps == 0:
      checkpoint.save(mgr, done, state, stream.get_state())
      paused = True
    if paused and tick_step == done:  # eval and saving don't count in images/s
      tick = time.monotonic()
  return state, final


def evaluate(config: ml_collections.ConfigDict, workdir: str,
             devices: Sequence[jax.Device] | None = None) -> dict[str, float]:
  """Evaluates the newest checkpoint in ``workdir`` on the eval split — or, when ``workdir`` has
  none, the weights named by ``config.init_from`` (e.g. converted torchvision weights, with their
  own preprocessing) — and writes eval.json."""
  s = setup(config, workdir, devices)
  mgr = checkpoint.manager(os.path.join(s.workdir, "checkpoints"), keep=config.keep_checkpoints)
  restored = checkpoint.restore_latest(mgr, init_state(s))
  if restored is None and config.init_from:
    restored = 0, init_state(s, load_init_from(config.init_from)), None
  if restored is None:
    raise UserError(f"no checkpoint in {mgr.directory} to evaluate (and no config.init_from); "
                    "train first.")
  step, state, _ = restored
  result = {"step": step, **run_eval(s, compile_steps(s)[1], state)}
  if jax.process_index() == 0:
    with open(os.path.join(s.workdir, "eval.json"), "w") as f:
      json.dump(result, f, indent=2)
  return result
