"""The training loop and evaluation, over a resolved ``Run`` (``cnnjax.train.resolve``).

``train(config, workdir)`` takes the workdir's lock, resolves the config (every check before
anything compiles), resumes from the newest checkpoint in ``workdir/checkpoints`` that fits and
restores, and trains to the end of the plan. Faults never lose work or report a wrong number:
a diverged run stops before it saves a non-finite state (``RunFailed``), SIGTERM/SIGINT save a
checkpoint at the end of the call they interrupt (``Stopped``; a call is ``steps_per_call``
steps at most), a failed save is caught after the next call.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import os
import signal
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from cnnjax import checkpoint, models, parallel
from cnnjax.data import pipeline
from cnnjax.errors import RunFailed, Stopped, UserError
from cnnjax.train import metrics, plots, resume, state as state_lib, step as step_lib
from cnnjax.train import stopping, workdir as workdir_lib
from cnnjax.train.resolve import Run, resolve
from cnnjax.train.writers import MetricWriter
from cnnjax.transfer import merge, pretrained


def _keys(seed: int) -> dict[str, jax.Array]:
  """Named PRNG streams split once from the root key."""
  init, dropout = jax.random.split(jax.random.key(seed))
  return {"init": init, "dropout": dropout}


def abstract_state(s: Run) -> state_lib.TrainState:
  """The run's TrainState as shapes, replicated on the mesh: a restore target that runs nothing
  (from the variables' shapes the run was resolved with)."""
  rep = parallel.replicated(s.mesh)
  shapes = jax.eval_shape(lambda v: state_lib.create(v, s.tx), s.variables)
  return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=rep), shapes)


def init_state(s: Run, loaded: dict | None = None) -> state_lib.TrainState:
  """A fresh TrainState, created directly replicated on the mesh; with ``loaded`` variables
  (from ``config.init_from``) strictly merged into the fresh init."""
  rep = parallel.replicated(s.mesh)
  fresh = functools.partial(models.init_variables, s.model, input_shape=s.input_shape)
  variables = jax.jit(fresh, out_shardings=rep)(_keys(s.options.seed)["init"])
  if loaded is not None:
    variables, skipped = merge.merge(variables, loaded, s.options.init_skip, s.heads)
    logging.info("initialised from %s; kept fresh: %s", s.options.init_from, skipped)
    variables = parallel.replicate(variables, s.mesh)
  return jax.jit(lambda v: state_lib.create(v, s.tx), out_shardings=rep)(variables)


def load_init_from(path: str) -> dict:
  """Variables to start from: converted weights (``python -m cnnjax.transfer``),
  or a training workdir or checkpoints dir (its newest step)."""
  if not os.path.isdir(path):
    raise UserError(f"config.init_from={path!r} is not a directory.")
  if os.path.isfile(os.path.join(path, pretrained.INFO)):
    return pretrained.read(path)[1]
  variables = checkpoint.latest_variables(path)
  if not variables:
    raise UserError(f"config.init_from={path!r} holds no checkpoint.")
  return variables


NONFINITE = "nonfinite_state"  # metric sums' count of steps that left a non-finite state
WINDOW_KEYS = (*metrics.SUM_KEYS, NONFINITE)  # the train metric sums of a logging window


def window_sums(mesh, values: dict[str, float] | None = None) -> dict[str, jax.Array]:
  """A window's metric sums, replicated as the train call returns them (host scalars would have
  another type and make the call trace and load a second program): zeros, made on the devices
  with no transfer, or the ``values`` restored from a checkpoint (the same on every process)."""
  if values:
    return jax.device_put({k: np.float32(values[k]) for k in WINDOW_KEYS},
                          parallel.replicated(mesh))
  return _zeros(parallel.replicated(mesh))()  # fresh arrays each time: the call donates them


@functools.lru_cache(maxsize=8)
def _zeros(sharding):
  return jax.jit(lambda: {k: jnp.zeros((), jnp.float32) for k in WINDOW_KEYS},
                 out_shardings=sharding)


def _checked_train_step(state, batch, key, window, **kwargs):
  """``train_step``, its metric sums added to ``window`` (in the step: a separate call per step
  cost LeNet-5 several percent on 2 cores), with whether the new state is finite, so no
  non-finite state is saved."""
  state, sums = step_lib.train_step(state, batch, key, **kwargs)
  sums = {**sums, NONFINITE: 1.0 - checkpoint.all_finite(state).astype(jnp.float32)}
  return state, {k: window[k] + sums[k] for k in WINDOW_KEYS}


def _train_steps(state, batches, key, window, first, n, *, step):
  """``n`` of the stacked ``batches`` (leading axis: ``steps_per_call``) from ``first`` on, one
  ``step`` each, in a loop on the device; one compiled call, whatever ``first`` and ``n``."""
  if len(batches["label"]) == 1:  # steps_per_call=1: the plain step
    return step(state, jax.tree.map(lambda x: x[0], batches), key, window)

  def body(i, carry):
    state, window = carry
    batch = jax.tree.map(lambda x: jax.lax.dynamic_index_in_dim(x, i, keepdims=False), batches)
    return step(state, batch, key, window)

  return jax.lax.fori_loop(first, first + n, body, (state, window))


def compile_steps(s: Run):
  """The jitted train and eval steps: batches sharded over ``data``, state replicated.

  The train call is ``(state, batches, key, window, first, n) -> (state, window)``: ``batches``
  stacks ``steps_per_call`` batches (a ``pipeline.TrainGroups`` group) of which it trains on
  ``n`` from ``first`` on, and ``window`` are the metric sums it adds to (``window_sums``);
  it donates the state and the window."""
  rep, data = parallel.replicated(s.mesh), parallel.batch_sharding(s.mesh)
  step = functools.partial(_checked_train_step, model=s.model, tx=s.tx, input_fn=s.input_fn,
                           label_smoothing=s.options.label_smoothing,
                           aux_loss_weight=s.spec.aux_loss_weight,
                           train_mode=s.options.train_mode, frozen=s.frozen)
  evaluate = functools.partial(step_lib.eval_step, model=s.model, input_fn=s.input_fn)
  train = jax.jit(functools.partial(_train_steps, step=step),
                  in_shardings=(rep, parallel.batch_sharding(s.mesh, 1), rep, rep, rep, rep),
                  out_shardings=(rep, rep), donate_argnums=(0, 3))
  evaluate = jax.jit(evaluate, in_shardings=(rep, data), out_shardings=rep)
  return train, evaluate


def steps_in_call(step: int, total: int, per_call: int, every: Sequence[int]) -> int:
  """How many steps the call starting after ``step`` takes: up to the next multiple of
  ``per_call`` (so a call stays in one group of batches), cut at the next multiple of any of
  ``every`` (logging, evaluation, saving) and at ``total``."""
  return min([total] + [(step // e + 1) * e for e in (per_call, *every) if e]) - step


def run_eval(s: Run, eval_fn, state) -> dict[str, float]:
  """Metrics over every evaluation example exactly once."""
  sums, n = None, s.mesh.devices.size
  # Evaluation pads and masks anyway, so its batch is rounded up to a multiple of the devices.
  global_batch = -(-s.options.eval_batch_size // n) * n
  batches = pipeline.eval_batches(s.eval_data, global_batch=global_batch,
                                  rows=parallel.process_rows(s.mesh, global_batch),
                                  num_threads=s.options.num_threads)
  for batch in batches:
    sums = metrics.add(sums, eval_fn(state, parallel.to_global(batch, s.mesh)))
  return metrics.finalize(jax.device_get(sums), "eval")


def _write_config(s: Run, workdir: str) -> None:
  """config.json, atomically, once the restore has succeeded (so a refused resume keeps it)."""
  if jax.process_index() == 0:
    try:
      workdir_lib.write_json(os.path.join(workdir, "config.json"), s.config, indent=2,
                             sort_keys=True)
    except ValueError as e:
      raise UserError(f"the config holds a value JSON can't store: {e}") from None


def _newest_checkpoint(mgr) -> str:
  step = mgr.latest_step()
  return (f"the newest checkpoint, step {step} in {mgr.directory}, is finite" if step is not None
          else "no checkpoint was saved before it")


def _check_finite(mgr, step: int, scalars: dict[str, float]) -> None:
  """A diverged run stops here, before anything non-finite is written or saved."""
  for k, v in scalars.items():
    if not math.isfinite(v) or (k == NONFINITE and v):
      what = "the train state" if k == NONFINITE else k
      value = "non-finite" if k == NONFINITE else v
      raise RunFailed(f"training diverged at step {step}: {what} is {value}; "
                      f"{_newest_checkpoint(mgr)} (rerun with a lower "
                      "--config.optimizer.learning_rate to resume from it).")


def train(config: ml_collections.ConfigDict, workdir: str,
          devices: Sequence[jax.Device] | None = None) -> dict[str, float]:
  """Trains (or resumes) the experiment in ``workdir``; returns the final eval metrics.

  Raises ``Stopped`` after saving when SIGTERM/SIGINT arrive, ``RunFailed`` when the run
  diverges or a save fails, ``UserError`` for bad input (nothing written then)."""
  with stopping.StopRequest() as request:
    workdir = workdir_lib.prepare(workdir)
    with workdir_lib.locked(workdir):  # before the data is opened: a second launch fails at once
      s = resolve(config, devices)
      mgr = checkpoint.manager(os.path.join(workdir, "checkpoints"),
                               keep=s.options.keep_checkpoints)
      try:
        final = _train(s, workdir, mgr, request)
      except BaseException:
        with contextlib.suppress(Exception):  # the error in hand is the one to report
          mgr.wait_until_finished()
        raise
      checkpoint.finish(mgr)
  if jax.process_index() == 0:
    plots.curves(os.path.join(workdir, "metrics.jsonl"), os.path.join(workdir, "curves.png"),
                 title=s.name)
  return final


def _train(s: Run, workdir: str, mgr, request: stopping.StopRequest) -> dict[str, float]:
  o = s.options
  restored = resume.restore(workdir, s.config, mgr, abstract_state(s))
  if restored is None:
    state = init_state(s, load_init_from(o.init_from) if o.init_from else None)
  else:
    state = restored.state
  _write_config(s, workdir)
  stream = pipeline.TrainGroups(
      s.train_data, global_batch=o.batch_size, seed=o.seed, size=o.steps_per_call,
      max_shift=o.max_shift, flip=o.flip, rows=parallel.process_rows(s.mesh, o.batch_size),
      num_threads=o.num_threads)
  if restored is not None:
    stream.set_state(restored.data)
  # the metric sums since the last log line, saved with every checkpoint
  window = window_sums(s.mesh, restored.window if restored is not None else None)
  train_fn, eval_fn = compile_steps(s)
  start = int(state.step)
  if request.signum is not None and jax.process_count() == 1:  # signalled while starting:
    # nothing trained, nothing to save. (Several processes agree inside the loop instead.)
    raise Stopped(f"stopped by {signal.Signals(request.signum).name} before step {start + 1}; "
                  "nothing new to save. Run the same command again to resume.", request.signum)
  writer = MetricWriter(workdir, total_steps=s.plan.total_steps, start_step=start,
                        enabled=jax.process_index() == 0)
  try:
    return _loop(_Loop(s, train_fn, eval_fn, stream, writer, mgr,
                       stopping.Agreement(request, s.mesh)), state, start, window)
  finally:
    writer.close()


@dataclasses.dataclass
class _Loop:
  """What the loop works with besides the state."""

  s: Run
  train_fn: Any
  eval_fn: Any
  stream: Any
  writer: MetricWriter
  mgr: Any
  agreement: stopping.Agreement


def _loop(r: _Loop, state, start: int, sums) -> dict[str, float]:
  o, plan, mgr = r.s.options, r.s.plan, r.mgr
  total = plan.total_steps
  if start >= total:  # already finished: report the final metrics again
    return run_eval(r.s, r.eval_fn, state)
  dropout_key, final = _keys(o.seed)["dropout"], {}
  every = (o.log_every_steps, plan.eval_every_steps, o.checkpoint_every_steps)
  learning_rate = jax.jit(r.s.schedule)  # one call per log line, compiled before the first step
  learning_rate(start)
  tick, tick_step, paused_s = time.monotonic(), start, 0.0  # paused: eval and saving
  done, placed = start, (None, None)  # (group index, its batches on the devices)
  while done < total:
    step, n = done, steps_in_call(done, total, o.steps_per_call, every)
    group, batches, first = r.stream.take(n)
    if placed[0] != group:  # a group cut by a logging/eval/save step is placed once
      placed = (group, parallel.to_global(batches, r.s.mesh, 1))
    state, sums = r.train_fn(state, placed[1], dropout_key, sums, np.int32(first), np.int32(n))
    done = step + n
    if step == start:  # don't count compilation in images/s
      jax.block_until_ready(sums)
      tick, tick_step = time.monotonic(), done
    saved = False
    if done % o.log_every_steps == 0 or done == total:
      host = jax.device_get(sums)
      _check_finite(mgr, done, {k: float(v) for k, v in host.items()})
      host.pop(NONFINITE)
      scalars = metrics.finalize(host, "train")
      now = time.monotonic()
      if done > tick_step:
        scalars["train/images_per_sec"] = ((done - tick_step) * o.batch_size
                                           / max(now - tick - paused_s, 1e-9))
      scalars["train/learning_rate"] = float(learning_rate(done - 1))
      r.writer.write(done, scalars)
      r.writer.progress(done, loss=scalars["train/loss"],
                        img_s=scalars.get("train/images_per_sec", 0.0))
      sums, tick, tick_step, paused_s = window_sums(r.s.mesh), now, done, 0.0
    r.writer.progress(done)
    evaluating = done == total or (plan.eval_every_steps and done % plan.eval_every_steps == 0)
    saving = done == total or done % o.checkpoint_every_steps == 0
    if evaluating or saving:  # timed from the end of the steps before: not counted in images/s
      jax.block_until_ready(state)
      pause = time.monotonic()
    if evaluating:
      final = run_eval(r.s, r.eval_fn, state)
      _check_finite(mgr, done, final)
      r.writer.write(done, final)
    if saving:
      _save(r, done, state, sums)
      saved = True
    if evaluating or saving:
      paused_s += time.monotonic() - pause
    checkpoint.check_saves(mgr)
    if done < total and r.agreement.should_stop():
      _stop(r, done, state, sums, saved)
  return final


def _save(r: _Loop, done: int, state, sums) -> None:
  """Saves at step ``done`` with the metric window (so the logs resume exactly from any
  checkpoint), after checking that nothing in it, the state included, is non-finite."""
  window = {k: float(v) for k, v in jax.device_get(sums).items()}
  _check_finite(r.mgr, done, window)
  checkpoint.save(r.mgr, done, state, r.stream.get_state(), window)


def _stop(r: _Loop, done: int, state, sums, saved: bool) -> None:
  """Saves at step ``done`` unless just saved, and raises ``Stopped``."""
  request = r.agreement.request
  if not saved:
    _save(r, done, state, sums)
  checkpoint.finish(r.mgr)
  signum = request.signum
  raise Stopped(f"stopped by {signal.Signals(signum).name} at step {done}: checkpoint saved in "
                f"{r.mgr.directory}/{done}; run the same command again to resume.", signum)


def evaluate(config: ml_collections.ConfigDict, workdir: str,
             devices: Sequence[jax.Device] | None = None) -> dict[str, float]:
  """Evaluates the newest checkpoint in ``workdir`` on the eval split — or, when ``workdir`` has
  none, the weights named by ``config.init_from`` (e.g. converted torchvision weights, with their
  own preprocessing) — and writes eval.json (atomically).

  The checkpoint must fit the config as on resume (model keys, then the tree). Evaluation only
  reads: it takes no lock (a running training can be evaluated) and moves no checkpoint."""
  s = resolve(config, devices)
  workdir = workdir_lib.prepare(workdir)
  mgr = checkpoint.manager(os.path.join(workdir, "checkpoints"), keep=s.options.keep_checkpoints)
  restored = resume.restore(workdir, s.config, mgr, abstract_state(s), keys=resume.MODEL_KEYS,
                            set_aside=False)
  init_from = s.options.init_from
  if restored is not None:
    step, state, what = restored.step, restored.state, f"the checkpoint of step {restored.step}"
  elif init_from:
    step, state = 0, init_state(s, load_init_from(init_from))
    what = f"the weights of config.init_from={init_from!r}"
  else:
    raise UserError(f"no checkpoint in {mgr.directory} to evaluate (and no config.init_from); "
                    "train first.")
  result = run_eval(s, compile_steps(s)[1], state)
  for k, v in result.items():
    if not math.isfinite(v):
      raise RunFailed(f"{k} is {v}: evaluating {what} gives non-finite outputs on "
                      f"{s.dataset}'s {s.eval_data.split} split.")
  result = {"step": step, **result}
  if jax.process_index() == 0:
    workdir_lib.write_json(os.path.join(workdir, "eval.json"), result, indent=2)
  return result
