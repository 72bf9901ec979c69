"""The cost of each optimisation part of a training recipe on one model's train step: EMA of the
weights, drop path, gradient accumulation, LARS — each alone and all together, against the plain
step (SGD with momentum), in one process so the ratios share the machine's state.

    python -m benchmarks.recipe_parts [--model=resnet20 --batch=128 --rounds=5 --steps=5]

Prints, per case, the compiled step's temporary (activation) memory per device from XLA's
``memory_analysis()`` and its images/s as the median of ``rounds`` interleaved timings of
``steps`` steps (each round in a rotated order), with the ratio to the plain step. Synthetic
data; traced inside ``cnnjax.cpu.lowering()`` as launch.py traces.
"""

from __future__ import annotations

import functools
import statistics
import time

import jax
import numpy as np
from absl import app, flags

from cnnjax import cpu, parallel
from cnnjax.models import registry
from cnnjax.train import optim, state as state_lib, step as step_lib

flags.DEFINE_string("model", "resnet20", "a registered model with drop_path (a ResNet)")
flags.DEFINE_integer("batch", 128, "global batch")
flags.DEFINE_integer("size", 32, "input size")
flags.DEFINE_integer("rounds", 5, "interleaved timing rounds")
flags.DEFINE_integer("steps", 5, "steps per timing")
FLAGS = flags.FLAGS

# name -> (drop_path, grad_accum_steps, ema_decay, optimizer)
CASES = {
    "plain": (0.0, 1, 0.0, "momentum"),
    "ema": (0.0, 1, 0.9999, "momentum"),
    "drop_path": (0.1, 1, 0.0, "momentum"),
    "grad_accum 2": (0.0, 2, 0.0, "momentum"),
    "grad_accum 4": (0.0, 4, 0.0, "momentum"),
    "lars": (0.0, 1, 0.0, "lars"),
    "all (accum 2)": (0.1, 2, 0.9999, "lars"),
}


def _compiled(mesh, drop_path, k, ema, opt, batch):
  model = registry.create(FLAGS.model, drop_path=drop_path)
  tx = optim.optimizer(opt, 0.1, weight_decay=5e-5)
  rep, data = parallel.replicated(mesh), parallel.batch_sharding(mesh)
  variables = registry.init_variables(model, jax.random.key(0), (1, FLAGS.size, FLAGS.size, 3))
  state = jax.device_put(state_lib.create(variables, tx, ema=bool(ema)), rep)
  step = jax.jit(functools.partial(step_lib.train_step, model=model, tx=tx, input_fn=lambda x: x,
                                   grad_accum_steps=k, ema_decay=ema),
                 in_shardings=(rep, data, rep), out_shardings=(rep, rep), donate_argnums=0)
  with cpu.lowering():
    lowered = step.lower(state, batch, jax.random.key(1))
  return lowered.compile(), state


def main(argv):
  del argv
  mesh = parallel.make_mesh()
  rng = np.random.default_rng(0)
  batch = jax.device_put(
      {"image": rng.normal(size=(FLAGS.batch, FLAGS.size, FLAGS.size, 3)).astype(np.float32),
       "label": rng.integers(0, 10, FLAGS.batch).astype(np.int32)},
      parallel.batch_sharding(mesh))
  runs = {name: list(_compiled(mesh, *case, batch)) for name, case in CASES.items()}
  times = {name: [] for name in CASES}
  key = jax.random.key(1)
  names = list(runs)
  for r in range(FLAGS.rounds + 1):  # the first round warms up and is dropped
    for name in names[r % len(names):] + names[:r % len(names)]:  # each round starts elsewhere
      step, state = run = runs[name]
      t = time.perf_counter()
      for _ in range(FLAGS.steps):
        state, sums = step(state, batch, key)
      jax.block_until_ready(sums)
      times[name].append(time.perf_counter() - t)
      run[1] = state
  base = None
  print(f"{FLAGS.model} batch {FLAGS.batch}, {jax.device_count()} {jax.devices()[0].platform} "
        f"device(s), median of {FLAGS.rounds} rounds of {FLAGS.steps} steps")
  print(f"{'case':16s} {'temp MiB/device':>16s} {'img/s':>9s} {'ratio':>6s}")
  for name, (step, _) in runs.items():
    rate = FLAGS.steps * FLAGS.batch / statistics.median(times[name][1:])
    base = base or rate
    temp = step.memory_analysis().temp_size_in_bytes / jax.device_count() / 2**20
    print(f"{name:16s} {temp:16.1f} {rate:9.0f} {rate / base:6.2f}")


if __name__ == "__main__":
  app.run(main)
