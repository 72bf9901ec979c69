r"""Per-convolution timing of XLA's convolution against cnnjax.cpu's oneDNN one, forward and
both gradients.

  python -m benchmarks.conv_bench --model=lenet5 --batch=256
  python -m benchmarks.conv_bench --model=resnet20 --batch=128

Every distinct convolution of the model (found by tracing the plain model) is timed three ways:
forward, input gradient, kernel gradient, each as XLA's own and as ``cnnjax.cpu.conv``'s. This is
the evidence for lowering convolutions to oneDNN on CPU: rerun it on a new CPU or JAX to check it.
"""

from __future__ import annotations

import time

import jax
import jax.extend
import numpy as np
from absl import flags
from jax import lax

from benchmarks import cli
from cnnjax import cpu
from cnnjax.cpu import conv as cpu_conv
from cnnjax.models import registry

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "lenet5", "A registered model name.")
flags.DEFINE_integer("batch", 256, "Batch size.")
flags.DEFINE_integer("size", None, "Input size (default: the model's).")
flags.DEFINE_integer("repeats", 20, "Timed calls per measurement (the median is reported).")

_PARAMS = ("window_strides", "padding", "rhs_dilation", "feature_group_count")


def model_convs(name: str, batch: int, size: int | None) -> list[tuple]:
  """(input shape, kernel shape, params) of every distinct convolution of the model."""
  spec = registry.get_spec(name)
  size = size or spec.input_size
  model = registry.create(name)
  x = jax.ShapeDtypeStruct((batch, size, size, spec.channels), np.float32)
  variables = registry.abstract_variables(model, (1, *x.shape[1:]))
  jaxpr = jax.make_jaxpr(lambda v, x: model.apply(v, x, train=True,
                                                  mutable=["batch_stats"]))(variables, x)
  found = []

  def visit(jp):
    for eqn in jp.eqns:
      if eqn.primitive.name == "conv_general_dilated":
        p = eqn.params
        key = (eqn.invars[0].aval.shape, eqn.invars[1].aval.shape,
               tuple((k, _hashable(p[k])) for k in _PARAMS))
        if key not in found:
          found.append(key)
      for sub in jax.extend.core.jaxprs_in_params(eqn.params):
        visit(sub)

  visit(jaxpr.jaxpr)
  return found


def _hashable(value):
  return tuple(_hashable(v) for v in value) if isinstance(value, (tuple, list)) else value


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


def passes(x_shape, w_shape, params, repeats: int) -> dict[str, tuple[float, float]]:
  """pass → (XLA ms, oneDNN ms)."""
  key = jax.random.key(0)
  x = jax.random.normal(key, x_shape)
  w = jax.random.normal(jax.random.fold_in(key, 1), w_shape) * 0.1
  kwargs = dict(params, dimension_numbers=cpu_conv.NHWC)
  convs = (lambda x, w: lax.conv_general_dilated(x, w, **kwargs),
           lambda x, w: cpu_conv.conv_general_dilated(x, w, **kwargs))
  dy = jax.random.normal(jax.random.fold_in(key, 2), jax.eval_shape(convs[0], x, w).shape)
  forms = {"forward": lambda f: f,
           "input grad": lambda f: lambda x, w: jax.vjp(lambda x: f(x, w), x)[1](dy)[0],
           "kernel grad": lambda f: lambda x, w: jax.vjp(lambda w: f(x, w), w)[1](dy)[0]}
  return {name: tuple(median_ms(form(f), x, w, repeats=repeats) for f in convs)
          for name, form in forms.items()}


def main(argv):
  cli.start(argv)
  if not cpu.onednn_loaded():
    raise SystemExit("conv_bench compares against oneDNN, which is not available (see above)")
  with cli.user_errors():
    convs = model_convs(FLAGS.model, FLAGS.batch, FLAGS.size)
  print(f"{FLAGS.model}, batch {FLAGS.batch}, {jax.devices()[0].device_kind}: "
        "ms per call, XLA / oneDNN")
  print("| input | kernel | strides | forward | input grad | kernel grad |")
  print("|---|---|---|---|---|---|")
  for x_shape, w_shape, params in convs:
    params = dict(params)
    times = passes(x_shape, w_shape, params, FLAGS.repeats)
    cells = [f"{a:.2f} / {b:.2f}" for a, b in times.values()]
    print(f"| {'×'.join(map(str, x_shape))} | {'×'.join(map(str, w_shape))} | "
          f"{params['window_strides']} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
  cli.run(main)
