r"""What the training loop's host work costs against the same compiled call on a fixed batch.

  python -m benchmarks.loop_cost                       # the main command's config (LeNet-5)
  python -m benchmarks.loop_cost --steps_per_call=1

In one process, alternating: the loop's path to each call (the grain stream of groups of
``steps_per_call`` batches, placing each group on the mesh, the call) against the same compiled
call on one stack of batches already on the devices, and against the harness's own step
(``benchmarks.run``'s: SGD on float inputs of the same model and batch, which is lighter than an
experiment's step). Alternating cancels the machine's drift; the ratio of each pair is printed.
Needs the data side (grain, ml_collections). Both run on ``cnnjax.cpu``'s backend, as launch.py's.
"""

from __future__ import annotations

import statistics
import time

import jax
import numpy as np
from absl import app, flags

from benchmarks import cases, jax_bench
from cnnjax import config as config_lib, cpu, parallel
from cnnjax.train import calls as call_lib, loop
from cnnjax.train.resolve import resolve

_CONFIG = flags.DEFINE_string("config", "experiments/lenet_mnist.py", "Experiment file.")
_STEPS_PER_CALL = flags.DEFINE_integer("steps_per_call", None, "Default: the config's.")
_PAIRS = flags.DEFINE_integer("pairs", 8, "Alternating (fixed, real) measurements.")
_STEPS = flags.DEFINE_integer("steps", 320, "Train steps per measurement.")


def main(argv) -> None:
  del argv
  with cpu.lowering():  # as launch.py runs the loop
    _measure()


def _measure() -> None:
  config = config_lib.load(_CONFIG.value)
  if _STEPS_PER_CALL.value is not None:
    config.steps_per_call = _STEPS_PER_CALL.value
  run = resolve(config)
  k, batch_size = run.steps.steps_per_call, run.data.batch_size
  state = loop.init_state(run)
  train_fn, _ = call_lib.compile_steps(run)
  stream = loop.train_groups(run)
  key, hyper = jax.random.key(0), call_lib.hyper_args(run)
  fixed = parallel.to_global(stream.take(k)[1], run.mesh, 1)
  calls = max(_STEPS.value // k, 1)

  def images_per_sec(real: bool) -> float:
    nonlocal state
    window = call_lib.window_sums(run.mesh)
    jax.block_until_ready(state)
    start = time.perf_counter()
    for _ in range(calls):
      batches = parallel.to_global(stream.take(k)[1], run.mesh, 1) if real else fixed
      state, window = train_fn(state, batches, key, window, np.int32(0), np.int32(k),
                               hyper)
    jax.block_until_ready(state)
    return calls * k * batch_size / (time.perf_counter() - start)

  case = cases.parse(f"{run.name}@{run.input_shape[1]}", batch=batch_size)
  harness_step, harness_state, harness_batch, harness_key = jax_bench.compiled_train_step(case)

  def harness_images_per_sec() -> float:
    nonlocal harness_state
    jax.block_until_ready(harness_state)
    start = time.perf_counter()
    for _ in range(calls * k):
      harness_state, _ = harness_step(harness_state, harness_batch, harness_key)
    jax.block_until_ready(harness_state)
    return calls * k * batch_size / (time.perf_counter() - start)

  images_per_sec(False), images_per_sec(True), harness_images_per_sec()  # warm up
  rounds = [(images_per_sec(False), images_per_sec(True), harness_images_per_sec())
            for _ in range(_PAIRS.value)]
  median = statistics.median
  ratios = [real / fixed for fixed, real, _ in rounds]
  print(f"{run.name}, batch {batch_size}, steps_per_call={k}: fixed batch "
        f"{median(r[0] for r in rounds):,.0f} img/s, the loop's path "
        f"{median(r[1] for r in rounds):,.0f} img/s, ratio {median(ratios):.3f}"
        f" (pairs: {' '.join(f'{r:.2f}' for r in ratios)}); the harness's step "
        f"{median(r[2] for r in rounds):,.0f} img/s, the loop's path over it "
        f"{median(r[1] / r[2] for r in rounds):.3f}")


if __name__ == "__main__":
  app.run(main)
