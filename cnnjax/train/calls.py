"""The compiled calls of a run: several train steps in one call, with the metric window's sums
kept on the devices, and the eval step.

A call trains ``n`` steps of a stacked group of batches in a loop on the device and adds their
metric sums to the window, the sums since the last log line (saved with every checkpoint, so a
resumed run logs exactly what an uninterrupted one does).
"""

from __future__ import annotations

import collections
import functools

import jax
import jax.numpy as jnp
import numpy as np

from cnnjax import checkpoint, models, parallel
from cnnjax.train import metrics, state as state_lib, step as step_lib
from cnnjax.train.resolve import Run

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


def _checked_train_step(state, batch, key, window, hyper, *, optimizer, **kwargs):
  """``train_step`` with the optimizer of the traced ``hyper`` (``Run.optimizer``), its metric
  sums added to ``window`` (in the step: a separate call per step cost LeNet-5 several percent
  on 2 cores), with whether the new state is finite, so no non-finite state is saved."""
  state, sums = step_lib.train_step(state, batch, key, tx=optimizer(hyper)[1], **kwargs)
  sums = {**sums, NONFINITE: 1.0 - checkpoint.all_finite(state).astype(jnp.float32)}
  return state, {k: window[k] + sums[k] for k in WINDOW_KEYS}


def _train_steps(state, batches, key, window, first, n, hyper, *, step):
  """``n`` of the stacked ``batches`` (leading axis: ``steps_per_call``) from ``first`` on, one
  ``step`` each, in a loop on the device; one compiled call, whatever ``first`` and ``n``."""
  if len(batches["label"]) == 1:  # steps_per_call=1: the plain step
    return step(state, jax.tree.map(lambda x: x[0], batches), key, window, hyper)

  def body(i, carry):
    state, window = carry
    batch = jax.tree.map(lambda x: jax.lax.dynamic_index_in_dim(x, i, keepdims=False), batches)
    return step(state, batch, key, window, hyper)

  return jax.lax.fori_loop(first, first + n, body, (state, window))


def hyper_args(run: Run) -> dict[str, jax.Array]:
  """The run's traced hyperparameters (``Run.hyper``) on the devices, for the train call."""
  return jax.device_put(dict(run.hyper), parallel.replicated(run.mesh))


def compile_steps(run: Run):
  """The jitted train and eval steps: batches sharded over ``data``, state replicated; the same
  two objects for every run of this process with the same ``Run.program_key`` (the runs of a
  sweep worker that differ only in seeds or traced hyperparameters share their programs).

  The train call is ``(state, batches, key, window, first, n, hyper) -> (state, window)``:
  ``batches`` stacks ``steps_per_call`` batches (a ``pipeline.TrainGroups`` group) of which it
  trains on ``n`` from ``first`` on, ``window`` are the metric sums it adds to
  (``window_sums``), ``hyper`` the traced hyperparameters (``hyper_args``); it donates the state
  and the window."""
  return _cached(run, "steps", _compile_steps)


def learning_rate(run: Run):
  """The jitted schedule, ``(step, hyper) -> learning rate`` (shared as ``compile_steps``)."""
  optimizer = run.optimizer
  return _cached(run, "learning_rate", lambda _: jax.jit(
      lambda step, hyper: optimizer(hyper)[0](step)))


def init_calls(run: Run):
  """The jitted ``init key -> variables`` (the model's fresh init) and ``variables ->
  TrainState``, both replicated (shared as ``compile_steps``)."""
  def build(_):
    rep, tx, model, shape = parallel.replicated(run.mesh), run.tx, run.model, run.input_shape
    fresh = functools.partial(models.init_variables, model, input_shape=shape)
    return (jax.jit(fresh, out_shardings=rep),
            jax.jit(lambda v: state_lib.create(v, tx, ema=bool(run.ema_decay)),
                    out_shardings=rep))
  return _cached(run, "init", build)


# The compiled calls of this process's runs by (``Run.program_key``, what): a sweep worker's runs
# reuse them. The calls keep the model and the optimizer, never the run's data.
_CALLS: collections.OrderedDict = collections.OrderedDict()
MAX_CACHED = 32


def _cached(run: Run, what: str, build):
  key = (run.program_key, what)
  if key not in _CALLS:
    _CALLS[key] = build(run)
    while len(_CALLS) > MAX_CACHED:
      _CALLS.popitem(last=False)
  _CALLS.move_to_end(key)
  return _CALLS[key]


def _compile_steps(run: Run):
  rep, data = parallel.replicated(run.mesh), parallel.batch_sharding(run.mesh)
  step = functools.partial(_checked_train_step, model=run.model, optimizer=run.optimizer,
                           input_fn=run.input_fn, label_smoothing=run.label_smoothing,
                           aux_loss_weight=run.spec.aux_loss_weight, train_mode=run.train_mode,
                           frozen=run.frozen, augment=run.data.augment,
                           grad_accum_steps=run.grad_accum_steps, ema_decay=run.ema_decay,
                           ema_warmup=run.ema_warmup)
  evaluate = functools.partial(step_lib.eval_step, model=run.model, input_fn=run.input_fn)
  train = jax.jit(functools.partial(_train_steps, step=step),
                  in_shardings=(rep, parallel.batch_sharding(run.mesh, 1), rep, rep, rep, rep,
                                rep),
                  out_shardings=(rep, rep), donate_argnums=(0, 3))
  evaluate = jax.jit(evaluate, in_shardings=(rep, data), out_shardings=rep)
  return train, evaluate
