r"""Per-convolution timing of each formulation in cnnjax/models/kernels.py, forward and backward.

  python -m benchmarks.conv_bench --model=lenet5 --batch=256
  python -m benchmarks.conv_bench --model=resnet20 --batch=128

Every stride-1 float32 convolution of the model (found by tracing it) is timed as XLA's
convolution and as the per-tap formulation (forward and input gradient; the arrow shows what
``kernels.taps_on_cpu`` picks) and XLA's kernel gradient. This is the evidence behind that
threshold: rerun it on a new CPU to check it.
"""

from __future__ import annotations

import time

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
from absl import flags

from benchmarks import cli
from cnnjax.models import kernels, registry

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "lenet5", "A registered model name.")
flags.DEFINE_integer("batch", 256, "Batch size.")
flags.DEFINE_integer("size", None, "Input size (default: the model's).")
flags.DEFINE_integer("repeats", 20, "Timed calls per measurement (the median is reported).")


def model_convs(name: str, batch: int, size: int | None) -> list[tuple]:
  """(input shape, kernel shape, pads) of every distinct stride-1 convolution of the model."""
  spec = registry.get_spec(name)
  size = size or spec.input_size
  model = registry.create(name)
  x = jnp.zeros((batch, size, size, spec.channels))
  variables = registry.abstract_variables(model, x[:1].shape)
  jaxpr = jax.make_jaxpr(lambda v, x: model.apply(v, x, train=True,
                                                  mutable=["batch_stats"]))(variables, x)
  found = []

  def visit(jp):
    for eqn in jp.eqns:
      if eqn.primitive.name == "conv_general_dilated":
        p = eqn.params
        if tuple(p["window_strides"]) == (1, 1) and p["feature_group_count"] == 1:
          key = (eqn.invars[0].aval.shape, eqn.invars[1].aval.shape,
                 tuple(tuple(q) for q in p["padding"]))
          if key not in found:
            found.append(key)
      for sub in jax.extend.core.jaxprs_in_params(eqn.params):
        visit(sub)

  visit(jaxpr.jaxpr)
  return found


def median_ms(fn, *args, repeats: int) -> float:
  compiled = jax.jit(fn).lower(*args).compile()
  for _ in range(3):
    jax.block_until_ready(compiled(*args))
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    times.append(time.perf_counter() - t)
  return 1e3 * float(np.median(times))


def passes(x_shape, w_shape, pads, repeats: int) -> dict[str, tuple[float, float | None]]:
  """pass → (XLA ms, per-tap ms); the kernel gradient has no per-tap form (None)."""
  key = jax.random.key(0)
  x = jax.random.normal(key, x_shape)
  w = jax.random.normal(jax.random.fold_in(key, 1), w_shape) * 0.1
  xla = lambda x, w: kernels._xla_conv(x, w, pads)  # pylint: disable=protected-access
  dy = jax.random.normal(jax.random.fold_in(key, 2), jax.eval_shape(xla, x, w).shape)
  candidates = {
      "forward": (xla, lambda x, w: kernels._forward_taps(x, w, pads)),
      "input grad": (lambda x, w: jax.vjp(lambda x: xla(x, w), x)[1](dy)[0],
                     lambda x, w: kernels._input_grad_taps(x.shape, w, dy, pads)),
  }
  times = {name: tuple(median_ms(f, x, w, repeats=repeats) for f in pair)
           for name, pair in candidates.items()}
  kernel_grad = lambda x, w: jax.vjp(lambda w: xla(x, w), w)[1](dy)[0]
  times["kernel grad"] = (median_ms(kernel_grad, x, w, repeats=repeats), None)
  return times


def main(argv):
  cli.start(argv)
  with cli.user_errors():
    convs = model_convs(FLAGS.model, FLAGS.batch, FLAGS.size)
  print(f"{FLAGS.model}, batch {FLAGS.batch}, {jax.devices()[0].device_kind}: "
        "ms per call, XLA conv / per-tap (→ what CPU lowering uses); kernel grad: XLA's")
  print("| input | kernel | forward | input grad | kernel grad |")
  print("|---|---|---|---|---|")
  for x_shape, w_shape, pads in convs:
    choice = "taps" if kernels.taps_on_cpu(x_shape) else "xla"
    times = passes(x_shape, w_shape, pads, FLAGS.repeats)
    cells = [f"{a:.2f} / {b:.2f} → {choice}" for a, b in (times["forward"], times["input grad"])]
    cells.append(f"{times['kernel grad'][0]:.2f}")
    print(f"| {'×'.join(map(str, x_shape))} | {'×'.join(map(str, w_shape))} | "
          + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
  cli.run(main)
