"""The cnnjax side: one registered model's train step and inference, on synthetic data.

Only jax, flax, optax and numpy are needed (no dataset, no grain/tfds/ml_collections), so it runs
on a bare accelerator image. The step is the one training uses (``cnnjax.train.step.train_step``:
cross-entropy, SGD with momentum) compiled with ``jax.jit`` over a ``data`` mesh of every local
device, so on N devices it measures data-parallel throughput. Steps are traced inside
``cnnjax.cpu.lowering()``, as launch.py traces them (``CNNJAX_ONEDNN=0``: XLA's own ops).
"""

from __future__ import annotations

import dataclasses
import functools
import resource
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks import hardware, timing
from benchmarks.cases import Case, CaseError
from cnnjax import cpu, parallel
from cnnjax.models import registry
from cnnjax.train import state as state_lib
from cnnjax.train import step as step_lib


def synthetic_batch(case: Case, mesh, steps_per_call: int = 1) -> dict[str, jax.Array]:
  """A fixed random batch placed as training places it: rows sharded over ``data``; with
  ``steps_per_call`` > 1, that many different batches stacked on a leading axis."""
  rng = np.random.default_rng(0)
  lead = (steps_per_call,) if steps_per_call > 1 else ()
  images = rng.standard_normal((*lead, case.batch, case.size, case.size, case.channels),
                               np.float32)
  labels = rng.integers(0, case.num_classes, (*lead, case.batch)).astype(np.int32)
  return parallel.to_global({"image": images, "label": labels}, mesh, len(lead))


def _compiled_size(compiled) -> float:
  """Bytes a compiled program needs on its device: arguments, outputs and temporaries."""
  m = compiled.memory_analysis()
  return float(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
               - m.alias_size_in_bytes)


def _memory(compiled, device) -> dict[str, float | None]:
  out: dict[str, float | None] = {"peak_device_bytes": None}
  try:
    out["compiled_bytes"] = _compiled_size(compiled)
  except Exception:  # pylint: disable=broad-except  # not every backend reports it
    out["compiled_bytes"] = None
  stats = device.memory_stats() if hasattr(device, "memory_stats") else None
  if stats and "peak_bytes_in_use" in stats:
    out["peak_device_bytes"] = float(stats["peak_bytes_in_use"])
  out["peak_host_rss_bytes"] = float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
  return out


def _flops(compiled) -> float | None:
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else None
  flops = (cost or {}).get("flops")
  return float(flops) if flops and flops > 0 else None


def _reference_flops(case: Case, state, batch, key, xla_ops: bool = True) -> float | None:
  """One step's FLOPs. ``xla_ops``: counted on XLA's own ops (the plain model, traced outside
  the CPU backend's lowering), as XLA's cost analysis counts none inside FFI custom calls."""
  _, _, _, step, _ = _setup(case)
  if xla_ops:
    return _flops(step.lower(state, batch, key).compile())
  return _flops(_compile(step, state, batch, key)[0])


def _compile(jitted, *args) -> tuple[object, float, float]:
  t = time.perf_counter()
  with cpu.lowering():
    lowered = jitted.lower(*args)
  lower_s = time.perf_counter() - t
  t = time.perf_counter()
  compiled = lowered.compile()
  return compiled, lower_s, time.perf_counter() - t


def _scanned(step):
  """``step`` over a stack of batches in one call (``steps_per_call``), as the loop's call does:
  one dispatch and one transfer for the whole stack."""
  def steps(state, batches, key):
    return jax.lax.scan(lambda s, batch: step(s, batch, key), state, batches)
  return steps


def _setup(case: Case, steps_per_call: int = 1):
  """(model, mesh, jitted init and train step, key) for the case; nothing is computed yet.

  With ``steps_per_call`` > 1 the step trains on a stack of that many batches per call."""
  mesh = parallel.make_mesh()
  if case.batch % mesh.devices.size:
    raise CaseError(f"batch {case.batch} is not divisible by the {mesh.devices.size} devices.")
  model = registry.create(case.model, num_classes=case.num_classes, dtype=case.dtype)
  tx = optax.sgd(0.01, momentum=0.9)
  rep, data = parallel.replicated(mesh), parallel.batch_sharding(mesh)
  init = jax.jit(lambda k: state_lib.create(
      registry.init_variables(model, k, (1, case.size, case.size, case.channels)), tx),
      out_shardings=rep)
  step = functools.partial(step_lib.train_step, model=model, tx=tx, input_fn=lambda x: x)
  if steps_per_call > 1:
    step, data = _scanned(step), parallel.batch_sharding(mesh, 1)
  step = jax.jit(step, in_shardings=(rep, data, rep), out_shardings=(rep, rep), donate_argnums=0)
  return model, mesh, init, step, jax.random.key(0)


def compiled_bytes(case: Case) -> float:
  """Device memory the compiled train step needs for this case (arguments, outputs, temps),
  from shapes alone: no state or batch is allocated."""
  _, mesh, init, step, key = _setup(case)
  shape = (case.batch, case.size, case.size, case.channels)
  data = parallel.batch_sharding(mesh)
  batch = {"image": jax.ShapeDtypeStruct(shape, jnp.float32, sharding=data),
           "label": jax.ShapeDtypeStruct((case.batch,), jnp.int32, sharding=data)}
  with cpu.lowering():
    lowered = step.lower(jax.eval_shape(init, key), batch, key)
  return _compiled_size(lowered.compile())


def largest_batch(case: Case, limit_bytes: float | None = None, fraction: float = 0.9,
                  max_batch: int = 1 << 14, start: int | None = None) -> Case:
  """The case at the largest power-of-two batch whose train step fits in ``fraction`` of device
  memory (``limit_bytes``, default: what the device reports), found by compiling, not running:
  ``start`` (default: the device count), twice that, ... (a larger start compiles fewer)."""
  if limit_bytes is None:
    stats = jax.local_devices()[0].memory_stats() or {}
    if "bytes_limit" not in stats:
      raise CaseError("--max_batch needs a device that reports its memory (a GPU or TPU).")
    limit_bytes = float(stats["bytes_limit"])
  batch = start or jax.device_count()
  best = None
  while batch <= max_batch:
    candidate = dataclasses.replace(case, batch=batch)
    if compiled_bytes(candidate) > fraction * limit_bytes:
      break
    best, batch = candidate, batch * 2
  if best is None:
    raise CaseError(f"even batch {start or jax.device_count()} of {case.label} needs more than "
                    f"{fraction:.0%} of {limit_bytes / 2**30:.1f} GiB.")
  return best


def compiled_train_step(case: Case):
  """(compiled train step, state, batch, key): the step ``measure`` times, ready to call."""
  _, mesh, init, step, key = _setup(case)
  state, batch = init(key), synthetic_batch(case, mesh)
  with cpu.lowering():
    lowered = step.lower(state, batch, key)
  return lowered.compile(), state, batch, key


def measure(case: Case, *, min_time: float = 10.0, min_steps: int = 5, max_steps: int = 500,
            warmup: int = 3, inference: bool = True, steps_per_call: int = 1,
            flops_per_step: float | None = None) -> dict:
  """Train-step (and inference) throughput, step times, compile time, FLOPs, MFU and memory.

  With ``steps_per_call`` = K > 1 each timed call trains K steps (``step_ms_*`` are per call,
  ``images_per_s`` per image); the FLOPs are counted on the one-step program (XLA's cost
  analysis counts a loop's body once), or ``flops_per_step`` when given (a measurement of the
  same case with another K: no compile to count them again)."""
  model, mesh, init, step, key = _setup(case, steps_per_call)
  rep, data = parallel.replicated(mesh), parallel.batch_sharding(mesh)
  state, batch = init(key), synthetic_batch(case, mesh, steps_per_call)
  compiled, lower_s, compile_s = _compile(step, state, batch, key)
  device = jax.local_devices()[0]

  holder = {"state": state}

  def run_train():
    holder["state"], metrics = compiled(holder["state"], batch, key)
    jax.block_until_ready((holder["state"].step, metrics))

  for _ in range(warmup):
    run_train()
  train = timing.summarize(timing.timed_steps(run_train, min_time, min_steps, max_steps),
                           case.batch * steps_per_call)
  n = mesh.devices.size
  # XLA's cost analysis counts one device's share of the step
  onednn = device.platform == "cpu" and cpu.onednn_loaded()
  if flops_per_step is not None:
    per_device = flops_per_step / n
  elif onednn or steps_per_call > 1:
    one = synthetic_batch(case, mesh)
    per_device = _reference_flops(case, holder["state"], one, key, xla_ops=onednn)
  else:
    per_device = _flops(compiled)
  flops = per_device * n if per_device else None
  peak, peak_source = hardware.peak_flops(case.dtype)
  peak *= n
  result = {
      "framework": "jax", "version": f"jax {jax.__version__}", "case": case.label,
      "model": case.model, "batch": case.batch, "size": case.size, "dtype": case.dtype,
      "steps_per_call": steps_per_call,
      "device": hardware.device_name(device), "devices": mesh.devices.size,
      "cpu_kernels": ("onednn" if onednn else "xla") if device.platform == "cpu" else None,
      "lower_s": lower_s, "compile_s": compile_s, "train": train,
      "train_flops_per_step": flops, "peak_flops": peak, "peak_source": peak_source,
  }
  if flops:
    achieved = flops * steps_per_call / (train["step_ms_median"] / 1e3)
    result.update(train_flops_per_s=achieved, mfu=achieved / peak)
  if inference:
    if steps_per_call > 1:
      batch = synthetic_batch(case, mesh)
    forward = jax.jit(lambda v, x: model.apply(v, x, train=False), in_shardings=(rep, data),
                      out_shardings=data)
    infer_compiled, _, infer_compile_s = _compile(forward, holder["state"].variables(),
                                                  batch["image"])
    variables = holder["state"].variables()
    run = lambda: jax.block_until_ready(infer_compiled(variables, batch["image"]))
    for _ in range(warmup):
      run()
    result["inference"] = timing.summarize(
        timing.timed_steps(run, min_time / 2, min_steps, max_steps), case.batch)
    result["inference_compile_s"] = infer_compile_s
  result["memory"] = _memory(compiled, device)
  return result
