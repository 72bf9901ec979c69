"""The training loop and evaluation, over a resolved ``Run`` (``cnnjax.train.resolve``).

``train(config, workdir)`` takes the workdir's lock, resolves the config (every check before
anything compiles), resumes from the newest checkpoint in ``workdir/checkpoints`` that fits and
restores, and trains to the run's last step. Faults never lose work or report a wrong number:
a diverged run stops before it saves a non-finite state (``RunFailed``), SIGTERM/SIGINT save a
checkpoint at the end of the call they interrupt (``Stopped``; a call is ``steps_per_call``
steps at most), a failed save is caught after the next call.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
from collections.abc import Iterator, Sequence

import jax
import ml_collections
import numpy as np
from absl import logging

from cnnjax import checkpoint, files, parallel
from cnnjax.data import pipeline
from cnnjax.errors import RunFailed, Stopped, UserError
from cnnjax.train import calls, metrics, plots, resume, state as state_lib, stopping, timing
from cnnjax.train import workdir as workdir_lib
from cnnjax.train.resolve import Run, resolve
from cnnjax.train.writers import MetricWriter
from cnnjax.transfer import merge, pretrained


def train(config: ml_collections.ConfigDict, workdir: str,
          devices: Sequence[jax.Device] | None = None, *, quiet: bool = False) -> dict[str, float]:
  """Trains (or resumes) the experiment in ``workdir``; returns the final eval metrics. With
  ``quiet`` nothing is printed (no progress bar or lines on stderr); the workdir's files are
  the same.

  Raises ``Stopped`` after saving when SIGTERM/SIGINT arrive, ``RunFailed`` when the run
  diverges or a save fails, ``UserError`` for bad input (nothing written then)."""
  with stopping.StopRequest() as request:
    workdir = workdir_lib.prepare(workdir)
    with workdir_lib.locked(workdir):  # before the data is opened: a second launch fails at once
      run = resolve(config, devices)
      mgr = checkpoint.manager(os.path.join(workdir, files.CHECKPOINTS),
                               keep=run.keep_checkpoints)
      try:
        final = _train(run, workdir, mgr, request, quiet)
      except BaseException:
        with contextlib.suppress(Exception):  # the error in hand is the one to report
          mgr.wait_until_finished()
        raise
      checkpoint.finish(mgr)
  if jax.process_index() == 0:
    plots.curves(os.path.join(workdir, files.METRICS), os.path.join(workdir, "curves.png"),
                 title=run.name)
  return final


def _train(run: Run, workdir: str, mgr, request: stopping.StopRequest,
           quiet: bool = False) -> dict[str, float]:
  """Restores or initialises the state and the data position, then loops."""
  restored = resume.restore(workdir, run.config, mgr, abstract_state(run), quiet=quiet)
  if restored is None:
    state = init_state(run, load_init_from(run.init_from, run.init_from_ema)
                       if run.init_from else None)
  else:
    state = restored.state
  _write_config(run, workdir)
  stream = train_groups(run)
  if restored is not None:
    stream.set_state(restored.data)
  # the metric sums since the last log line, saved with every checkpoint
  window = calls.window_sums(run.mesh, restored.window if restored is not None else None)
  start = int(state.step)
  if request.signum is not None and jax.process_count() == 1:  # signalled while starting:
    # nothing trained, nothing to save. (Several processes agree inside the loop instead.)
    raise Stopped(f"stopped by {signal.Signals(request.signum).name} before step {start + 1}; "
                  "nothing new to save. Run the same command again to resume.", request.signum)
  writer = MetricWriter(workdir, total_steps=run.steps.total_steps, start_step=start,
                        enabled=jax.process_index() == 0, quiet=quiet)
  try:
    return _loop(run, state, stream, window, writer, mgr, stopping.Agreement(request, run.mesh))
  finally:
    writer.close()


def _loop(run: Run, state, stream: pipeline.TrainGroups, window, writer: MetricWriter, mgr,
          agreement: stopping.Agreement) -> dict[str, float]:
  """Each call: take → train → maybe log → maybe evaluate → maybe save → maybe stop."""
  steps, total = run.steps, run.steps.total_steps
  train_fn, eval_fn = calls.compile_steps(run)
  step = start = int(state.step)
  if start >= total:  # already finished: report the final metrics again
    return run_eval(run, eval_fn, state)
  key, final, hyper = _keys(run.seed)["dropout"], {}, calls.hyper_args(run)
  learning_rate = calls.learning_rate(run)  # one call per log line, compiled before the first step
  learning_rate(start, hyper)
  clock = timing.Clock(start, run.data.batch_size)
  placed = None  # the index of the group whose batches are on the devices
  while step < total:
    n = timing.steps_in_call(step, steps)
    group, host_batches, first = stream.take(n)
    if group != placed:  # a group cut by a log, eval or save step is placed once
      placed, batches = group, parallel.to_global(host_batches, run.mesh, 1)
    state, window = train_fn(state, batches, key, window, np.int32(first), np.int32(n),
                             hyper)
    if step == start:  # images/s leaves out the first call's compilation
      jax.block_until_ready(window)
      clock.start(step + n)
    step += n

    if timing.every(step, steps.log_every_steps, total):
      scalars = _window_metrics(mgr, step, window)
      rate = clock.lap(step)
      if rate is not None:
        scalars["train/images_per_sec"] = rate
      scalars["train/learning_rate"] = float(learning_rate(step - 1, hyper))
      writer.write(step, scalars)
      window = calls.window_sums(run.mesh)
    writer.progress(step)

    evaluating = timing.every(step, steps.eval_every_steps, total)
    saving = timing.every(step, steps.checkpoint_every_steps, total)
    if evaluating or saving:
      jax.block_until_ready(state)  # the steps before are training time, the rest is paused
      with clock.paused():
        if evaluating:
          final = run_eval(run, eval_fn, state)
          _check_finite(mgr, step, final)
          writer.write(step, final)
        if saving:
          _save(mgr, step, state, window, stream)
    checkpoint.check_saves(mgr)

    if step < total and agreement.should_stop():
      _stop(mgr, step, state, window, stream, agreement.request.signum, saved=saving)
  return final


def _window_metrics(mgr, step: int, window) -> dict[str, float]:
  """The window's train metrics, checked finite (the state's flag included)."""
  host = jax.device_get(window)
  _check_finite(mgr, step, {k: float(v) for k, v in host.items()})
  host.pop(calls.NONFINITE)
  return metrics.finalize(host, "train")


def _save(mgr, step: int, state, window, stream: pipeline.TrainGroups) -> None:
  """Saves at ``step`` with the metric window (so the logs resume exactly from any checkpoint)
  and the data position, after checking that nothing in it, the state included, is
  non-finite."""
  window = {k: float(v) for k, v in jax.device_get(window).items()}
  _check_finite(mgr, step, window)
  checkpoint.save(mgr, step, state, stream.get_state(), window)


def _stop(mgr, step: int, state, window, stream, signum: int, *, saved: bool) -> None:
  """Saves at ``step`` unless just saved, and raises ``Stopped``."""
  if not saved:
    _save(mgr, step, state, window, stream)
  checkpoint.finish(mgr)
  raise Stopped(f"stopped by {signal.Signals(signum).name} at step {step}: checkpoint saved in "
                f"{mgr.directory}/{step}; run the same command again to resume.", signum)


def _check_finite(mgr, step: int, scalars: dict[str, float]) -> None:
  """A diverged run stops here, before anything non-finite is written or saved."""
  for k, v in scalars.items():
    if not math.isfinite(v) or (k == calls.NONFINITE and v):
      what = "the train state" if k == calls.NONFINITE else k
      value = "non-finite" if k == calls.NONFINITE else v
      raise RunFailed(f"training diverged at step {step}: {what} is {value}; "
                      f"{_newest_checkpoint(mgr)} (rerun with a lower "
                      "--config.optimizer.learning_rate to resume from it).")


def _newest_checkpoint(mgr) -> str:
  step = mgr.latest_step()
  return (f"the newest checkpoint, step {step} in {mgr.directory}, is finite" if step is not None
          else "no checkpoint was saved before it")


def _keys(seed: int) -> dict[str, jax.Array]:
  """Named PRNG streams split once from the root key."""
  init, dropout = jax.random.split(jax.random.key(seed))
  return {"init": init, "dropout": dropout}


def abstract_state(run: Run) -> state_lib.TrainState:
  """The run's TrainState as shapes, replicated on the mesh: a restore target that runs nothing
  (from the variables' shapes the run was resolved with)."""
  rep = parallel.replicated(run.mesh)
  shapes = jax.eval_shape(lambda v: state_lib.create(v, run.tx, ema=bool(run.ema_decay)),
                          run.variables)
  return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=rep), shapes)


def init_state(run: Run, loaded: dict | None = None) -> state_lib.TrainState:
  """A fresh TrainState, created directly replicated on the mesh; with ``loaded`` variables
  (from ``config.init_from``) strictly merged into the fresh init."""
  init, create = calls.init_calls(run)
  variables = init(_keys(run.seed)["init"])
  if loaded is not None:
    variables, skipped = merge.merge(variables, loaded, run.init_skip, run.heads)
    logging.info("initialised from %s; kept fresh: %s", run.init_from, skipped)
    variables = parallel.replicate(variables, run.mesh)
  return create(variables)


def load_init_from(path: str, ema: bool = False) -> dict:
  """Variables to start from: converted weights (``python -m cnnjax.transfer``),
  or a training workdir or checkpoints dir (its newest step; with ``ema``, its moving
  averages)."""
  if not os.path.isdir(path):
    raise UserError(f"config.init_from={path!r} is not a directory.")
  if os.path.isfile(os.path.join(path, pretrained.INFO)):
    if ema:
      raise UserError(f"config.init_from_ema is set but config.init_from={path!r} holds "
                      "converted weights, which have no moving averages.")
    return pretrained.read(path)[1]
  variables = checkpoint.latest_variables(path, ema=ema)
  if not variables:
    raise UserError(f"config.init_from={path!r} holds no checkpoint.")
  return variables


def train_groups(run: Run) -> pipeline.TrainGroups:
  """The run's training stream, ``steps_per_call`` batches per group, this process's rows."""
  data = run.data
  return pipeline.TrainGroups(
      run.train_data, global_batch=data.batch_size, seed=data.seed,
      size=run.steps.steps_per_call, augment=data.augment,
      rows=parallel.process_rows(run.mesh, data.batch_size), num_threads=data.num_threads)


def eval_batches(run: Run) -> Iterator[dict[str, jax.Array]]:
  """Every evaluation example exactly once, in order, as global batches sharded over the mesh;
  the last batch is padded, and its ``mask`` marks the real rows."""
  n = run.mesh.devices.size
  # Evaluation pads and masks anyway, so its batch is rounded up to a multiple of the devices.
  global_batch = -(-run.data.eval_batch_size // n) * n
  batches = pipeline.eval_batches(run.eval_data, global_batch=global_batch,
                                  rows=parallel.process_rows(run.mesh, global_batch),
                                  num_threads=run.data.num_threads)
  for batch in batches:
    yield parallel.to_global(batch, run.mesh)


def run_eval(run: Run, eval_fn, state) -> dict[str, float]:
  """Metrics over every evaluation example exactly once (``eval/*``), and those of the moving
  averages of the weights (``eval_ema/*``) when the state keeps them."""
  result = _eval_sums(run, eval_fn, state, "eval")
  if state.ema:
    result.update(_eval_sums(run, eval_fn, state.with_ema_weights(), "eval_ema"))
  return result


def _eval_sums(run: Run, eval_fn, state, prefix: str) -> dict[str, float]:
  sums = None
  for batch in eval_batches(run):
    sums = metrics.add(sums, eval_fn(state, batch))
  return metrics.finalize(jax.device_get(sums), prefix)


def _write_config(run: Run, workdir: str) -> None:
  """config.json, atomically, once the restore has succeeded (so a refused resume keeps it)."""
  if jax.process_index() == 0:
    try:
      files.write_json(os.path.join(workdir, files.CONFIG), run.config, indent=2, sort_keys=True)
    except ValueError as e:
      raise UserError(f"the config holds a value JSON can't store: {e}") from None


def state_to_evaluate(run: Run, workdir: str,
                      quiet: bool = False) -> tuple[int, state_lib.TrainState, str]:
  """(step, state, what it is) of the newest checkpoint in ``workdir``, else of the weights of
  ``config.init_from``; a ``UserError`` when there is neither. ``quiet``: no line on stderr."""
  workdir = workdir_lib.prepare(workdir)
  mgr = checkpoint.manager(os.path.join(workdir, files.CHECKPOINTS), keep=run.keep_checkpoints)
  restored = resume.restore(workdir, run.config, mgr, abstract_state(run),
                            keys=resume.MODEL_KEYS, set_aside=False, quiet=quiet)
  if restored is not None:
    return restored.step, restored.state, f"the checkpoint of step {restored.step}"
  if run.init_from:
    return (0, init_state(run, load_init_from(run.init_from, run.init_from_ema)),
            f"the weights of config.init_from={run.init_from!r}")
  raise UserError(f"no checkpoint in {mgr.directory} to evaluate (and no config.init_from); "
                  "train first.")


def evaluate(config: ml_collections.ConfigDict, workdir: str,
             devices: Sequence[jax.Device] | None = None) -> dict[str, float]:
  """Evaluates the newest checkpoint in ``workdir`` on the eval split — or, when ``workdir`` has
  none, the weights named by ``config.init_from`` (e.g. converted torchvision weights, with their
  own preprocessing) — and writes eval.json (atomically).

  The checkpoint must fit the config as on resume (model keys, then the tree). Evaluation only
  reads: it takes no lock (a running training can be evaluated) and moves no checkpoint."""
  run = resolve(config, devices)
  step, state, what = state_to_evaluate(run, workdir)
  result = run_eval(run, calls.compile_steps(run)[1], state)
  for k, v in result.items():
    if not math.isfinite(v):
      raise RunFailed(f"{k} is {v}: evaluating {what} gives non-finite outputs on "
                      f"{run.data.dataset}'s {run.eval_data.split} split.")
  result = {"step": step, **result}
  if jax.process_index() == 0:
    files.write_json(os.path.join(workdir, files.EVAL), result, indent=2)
  return result
