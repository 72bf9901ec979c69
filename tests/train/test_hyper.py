"""Hyperparameters as traced inputs: runs that differ only in them share one compiled train step
(in memory and, the same HLO, in the persistent cache), and a traced value trains bit for bit as
the constant it replaces."""

import os

import jax
import numpy as np
import optax
import pytest

from cnnjax import config as config_lib, parallel
from cnnjax.train import calls, loop, optim
from cnnjax.train.resolve import resolve

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


def _run(data_dir, **values):
  c = config_lib.load(os.path.join(ROOT, "experiments/lenet_mnist.py"))
  c.data.data_dir = data_dir
  c.update(num_steps=4, batch_size=8, steps_per_call=1, log_every_steps=1)
  return resolve(config_lib.with_values(c, values), devices=jax.devices()[:1])


def _one_call(run, train_fn, hyper):
  """A train step from the fresh state; the new state on the host."""
  state = loop.init_state(run)
  _, batches, _ = loop.train_groups(run).take(1)
  state, _ = train_fn(state, parallel.to_global(batches, run.mesh, 1), jax.random.key(0),
                      calls.window_sums(run.mesh), np.int32(0), np.int32(1), hyper)
  return jax.device_get(state)


def test_traced_values_are_the_nonzero_sweepable_ones():
  assert optim.traced({"learning_rate": 0.1, "momentum": 0.0, "weight_decay": 5e-4,
                       "b1": 0.9}) == {"learning_rate": np.float32(0.1),
                                       "weight_decay": np.float32(5e-4)}


def test_a_four_point_learning_rate_sweep_compiles_its_train_step_once(data_dir):
  compiles = []
  jax.monitoring.register_event_duration_secs_listener(
      lambda event, seconds, **kw: compiles.append(event) if event == COMPILE_EVENT else None)
  runs = [_run(data_dir, **{"optimizer.learning_rate": lr, "seed": i})
          for i, lr in enumerate((1e-3, 2e-3, 5e-3, 1e-2))]
  assert len({r.program_key for r in runs}) == 1
  train_fn = calls.compile_steps(runs[0])[0]
  assert all(calls.compile_steps(r)[0] is train_fn for r in runs)
  states = []
  for i, run in enumerate(runs):
    before = len(compiles)
    states.append(_one_call(run, train_fn, calls.hyper_args(run)))
    if i:  # the first point compiled (or loaded) it; the others compile nothing at all
      assert len(compiles) == before
  assert train_fn._cache_size() == 1  # pylint: disable=protected-access
  # the learning rates did reach the step: four different results
  assert len({float(np.sum(s.params["conv1"]["kernel"])) for s in states}) == 4


def test_learning_rate_points_lower_to_the_same_program(data_dir):
  """The persistent cache keys on the HLO: equal text, so a second process loads it."""
  texts = []
  for lr in (1e-3, 1e-2):
    run = _run(data_dir, **{"optimizer.learning_rate": lr})
    train_fn = calls._compile_steps(run)[0]  # pylint: disable=protected-access  # a fresh jit
    state = loop.abstract_state(run)
    _, batches, _ = loop.train_groups(run).take(1)
    texts.append(train_fn.lower(state, parallel.to_global(batches, run.mesh, 1),
                                jax.random.key(0), calls.window_sums(run.mesh), np.int32(0),
                                np.int32(1), calls.hyper_args(run)).as_text())
  assert texts[0] == texts[1]


def test_zero_and_nonzero_weight_decay_are_different_programs(data_dir):
  keys = {_run(data_dir, **{"optimizer.weight_decay": wd}).program_key for wd in (0.0, 1e-4)}
  assert len(keys) == 2
  assert (_run(data_dir, **{"optimizer.weight_decay": 1e-4}).program_key
          == _run(data_dir, **{"optimizer.weight_decay": 5e-4}).program_key)


def _updated(run, optimizer, hyper, steps=5):
  """The model's parameters after ``steps`` updates with fixed gradients, in one jitted call:
  every step of the schedule's warm-up and decay reaches the optimizer."""
  params = jax.tree.map(lambda a: np.full(a.shape, 0.5, a.dtype), run.variables["params"])
  grads = jax.tree.map(lambda a: np.linspace(-1, 1, a.size, dtype=a.dtype).reshape(a.shape),
                       params)

  def train(params, opt_state, hyper):  # the state an argument, as in the train step: its
    tx = optimizer(hyper)[1]  # step count is not a constant XLA could fold the schedule with
    for _ in range(steps):
      updates, opt_state = tx.update(grads, opt_state, params)
      params = optax.apply_updates(params, updates)
    return params

  return jax.device_get(jax.jit(train)(params, run.tx.init(params), hyper))


@pytest.mark.parametrize("values", [
    {"optimizer.name": "adam", "schedule.name": "cosine", "schedule.warmup_epochs": 0.0},
    {"optimizer.name": "nesterov", "optimizer.momentum": 0.8, "optimizer.weight_decay": 5e-4,
     "schedule.name": "step", "schedule.decay_epochs": (0.001,)},
    {"optimizer.name": "adamw", "optimizer.weight_decay": 0.05, "schedule.name": "constant"},
    {"optimizer.name": "rmsprop", "optimizer.momentum": 0.9, "schedule.name": "cosine",
     "optimizer.grad_clip_norm": 1.0},
])
def test_traced_hyperparameters_update_bit_for_bit_as_constants(data_dir, values):
  """The traced values against the same optimizer given Python constants (as optax is usually
  given them, and as this code did before); warm-up is the experiment's 1 epoch unless 0."""
  run = _run(data_dir, **{**values, "num_steps": 40})
  assert run.hyper
  traced = _updated(run, run.optimizer, calls.hyper_args(run))
  constant = _updated(run, lambda hyper: run.optimizer({}), {})
  for a, b in zip(jax.tree.leaves(traced), jax.tree.leaves(constant)):
    np.testing.assert_array_equal(a, b)
