r"""What the training loop's host work costs against the same compiled call on a fixed batch.

  python -m benchmarks.loop_cost                       # the main command's config (LeNet-5)
  python -m benchmarks.loop_cost --steps_per_call=1

In one process, alternating: the loop's path to each call (the grain stream, stacking
``steps_per_call`` batches, placing them on the mesh, the call) against the same compiled call on
one stack of batches already on the devices, which is all the harness (``benchmarks.run``) times.
Alternating pairs cancel the machine's drift; the ratio of each pair is printed. Needs the data
side (grain, ml_collections).
"""

from __future__ import annotations

import statistics
import time

import jax
import numpy as np
from absl import app, flags

from cnnjax import config as config_lib, parallel
from cnnjax.data import pipeline
from cnnjax.train import loop
from cnnjax.train.resolve import resolve

_CONFIG = flags.DEFINE_string("config", "experiments/lenet_mnist.py", "Experiment file.")
_STEPS_PER_CALL = flags.DEFINE_integer("steps_per_call", None, "Default: the config's.")
_PAIRS = flags.DEFINE_integer("pairs", 8, "Alternating (fixed, real) measurements.")
_STEPS = flags.DEFINE_integer("steps", 320, "Train steps per measurement.")


def main(argv) -> None:
  del argv
  config = config_lib.load(_CONFIG.value)
  if _STEPS_PER_CALL.value is not None:
    config.steps_per_call = _STEPS_PER_CALL.value
  s = resolve(config)
  o, k = s.options, s.options.steps_per_call
  state = loop.init_state(s)
  train_fn, _ = loop.compile_steps(s)
  stream = pipeline.train_stream(s.train_data, global_batch=o.batch_size, seed=o.seed,
                                 max_shift=o.max_shift, flip=o.flip, num_threads=o.num_threads,
                                 rows=parallel.process_rows(s.mesh, o.batch_size))
  key = jax.random.key(0)
  fixed = parallel.to_global(loop.stack_batches(stream, k, k), s.mesh, 1)
  calls = max(_STEPS.value // k, 1)

  def images_per_sec(real: bool) -> float:
    nonlocal state
    window = loop.zero_window()
    jax.block_until_ready(state)
    start = time.perf_counter()
    for _ in range(calls):
      batches = parallel.to_global(loop.stack_batches(stream, k, k), s.mesh, 1) if real else fixed
      state, window = train_fn(state, batches, key, window, np.int32(k))
    jax.block_until_ready(state)
    return calls * k * o.batch_size / (time.perf_counter() - start)

  images_per_sec(False), images_per_sec(True)  # compile, fill the pipeline
  pairs = [(images_per_sec(False), images_per_sec(True)) for _ in range(_PAIRS.value)]
  ratios = [real / fixed for fixed, real in pairs]
  print(f"{s.name}, batch {o.batch_size}, steps_per_call={k}: fixed batch "
        f"{statistics.median(p[0] for p in pairs):,.0f} img/s, the loop's path "
        f"{statistics.median(p[1] for p in pairs):,.0f} img/s, ratio {statistics.median(ratios):.3f}"
        f" (pairs: {' '.join(f'{r:.2f}' for r in ratios)})")


if __name__ == "__main__":
  app.run(main)
