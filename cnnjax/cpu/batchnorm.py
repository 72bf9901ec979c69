"""Training-mode batch normalization over NHWC activations whose forward pass and gradient are
oneDNN primitives (``batchnorm.cc``), and the same sums in JAX (``reference``).

``train(x, scale, shift, eps)`` returns ``(y, mean, var)``: the normalized activations and the
batch's per-channel mean and (biased) variance, for the running averages. Only ``y`` carries a
gradient: the statistics feed the running averages, which no loss differentiates.

Each pass is one ``jax.ffi.ffi_call`` wrapped in ``custom_partitioning``. On one device (or with
the batch unsharded) that is the oneDNN call. With the batch sharded over a mesh the statistics
must still be the whole batch's: each device then computes its partial sums in JAX, ``psum``'s
them over the batch's mesh axes and normalizes its own rows (``reference`` with those axes and
oneDNN's two-pass variance, so that 8 devices give the 1-device numbers). ``batch_norm`` picks
oneDNN on CPU (``jax.lax.platform_dependent``) and ``reference`` elsewhere.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.experimental.custom_partitioning import custom_partitioning
from jax.sharding import NamedSharding, PartitionSpec as P

from cnnjax.cpu import build
from cnnjax.cpu import conv as cpu_conv


def _count(x, names: tuple[str, ...]) -> jax.Array:
  """How many values each channel's statistics are over (all devices' rows)."""
  local = math.prod(x.shape[:-1])
  return local * (lax.psum(1, names) if names else 1)


def _sum(value, names: tuple[str, ...]):
  total = jnp.sum(value, axis=tuple(range(value.ndim - 1)))
  return lax.psum(total, names) if names else total


def _stats_dtype(x):
  """float32, or wider if ``x`` is (flax's ``force_float32_reductions``)."""
  return jnp.promote_types(x.dtype, jnp.float32)


def reference(x, scale, shift, eps: float, names: tuple[str, ...] = (), two_pass: bool = False):
  """``(y, mean, var)`` as flax's ``BatchNorm`` computes them (at least float32 statistics, the
  variance as E[x²] − E[x]²), or with ``two_pass`` as oneDNN does (the variance as E[(x − mean)²],
  which loses nothing to cancellation); ``names``: the mesh axes the batch is sharded over (the
  sums are ``psum``'d)."""
  xf = x.astype(_stats_dtype(x))
  n = _count(x, names)
  mean = _sum(xf, names) / n
  if two_pass:
    var = _sum(jnp.square(xf - mean), names) / n
  else:
    var = jnp.maximum(0.0, _sum(xf * xf, names) / n - mean * mean)
  y = (xf - mean) * (lax.rsqrt(var + eps) * scale) + shift
  return y.astype(x.dtype), mean, var


def reference_grad(x, dy, scale, mean, var, eps: float, names: tuple[str, ...] = ()):
  """``(dx, dscale, dshift)`` of ``reference``'s ``y`` for the cotangent ``dy``."""
  xf, dyf = x.astype(_stats_dtype(x)), dy.astype(_stats_dtype(x))
  n = _count(x, names)
  rstd = lax.rsqrt(var + eps)
  xhat = (xf - mean) * rstd
  dshift = _sum(dyf, names)
  dscale = _sum(dyf * xhat, names)
  dx = (scale * rstd) * (dyf - dshift / n - xhat * (dscale / n))
  return dx.astype(x.dtype), dscale, dshift


def _stats(x) -> jax.ShapeDtypeStruct:
  return jax.ShapeDtypeStruct(x.shape[-1:], jnp.float32)


def _ffi_fwd(x, scale, shift, eps):
  result = (jax.ShapeDtypeStruct(x.shape, x.dtype), _stats(x), _stats(x))
  return jax.ffi.ffi_call(build.TARGETS["bn_fwd"], result, vmap_method="sequential")(
      x, scale, shift, eps=np.float32(eps))


def _ffi_bwd(x, dy, scale, mean, var, eps):
  result = (jax.ShapeDtypeStruct(x.shape, x.dtype), _stats(x), _stats(x))
  return jax.ffi.ffi_call(build.TARGETS["bn_bwd"], result, vmap_method="sequential")(
      x, dy, scale, mean, var, eps=np.float32(eps))


def _partitioned(ffi_fn, jax_fn, batched: int, rule: str, statics: int):
  """``ffi_fn`` over operands whose first ``batched`` are NHWC activations (sharded along the
  batch), the rest per-channel vectors (replicated), then ``statics`` static arguments; results:
  one activation, two vectors."""
  operands = len(rule.split("->")[0].split(","))
  fn = custom_partitioning(ffi_fn, static_argnums=tuple(range(operands, operands + statics)))

  def shardings(mesh, arg_shapes):
    names = cpu_conv.batch_axis_names(arg_shapes[0].sharding)
    batch = NamedSharding(mesh, P(names or None))
    whole = NamedSharding(mesh, P())
    return names, batch, whole

  def infer(*args):
    mesh, arg_shapes = args[statics:statics + 2]
    _, batch, whole = shardings(mesh, arg_shapes)
    return batch, whole, whole

  def partition(*args):
    static, (mesh, arg_shapes) = args[:statics], args[statics:statics + 2]
    names, batch, whole = shardings(mesh, arg_shapes)
    if names:
      lower = lambda *operands: jax_fn(*operands, *static, names=names)
    else:
      lower = lambda *operands: ffi_fn(*operands, *static)
    args = (batch,) * batched + (whole,) * (len(arg_shapes) - batched)
    return mesh, lower, (batch, whole, whole), args

  fn.def_partition(partition=partition, infer_sharding_from_operands=infer, sharding_rule=rule)
  return fn


_fwd = _partitioned(_ffi_fwd, functools.partial(reference, two_pass=True), 1,
                    "n h w c, c, c -> n h w c, c, c", statics=1)
_bwd = _partitioned(_ffi_bwd, reference_grad, 2, "n h w c, n h w c, c, c, c -> n h w c, c, c",
                    statics=1)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def train(x: jax.Array, scale: jax.Array, shift: jax.Array, eps: float):
  """``(y, mean, var)`` of training-mode batch normalization (NHWC float32; see the module)."""
  return _fwd(x, scale, shift, eps)


def _train_fwd(x, scale, shift, eps):
  y, mean, var = _fwd(x, scale, shift, eps)
  return (y, mean, var), (x, scale, mean, var)


def _train_bwd(eps, residuals, cotangents):
  x, scale, mean, var = residuals
  dy = cotangents[0].astype(x.dtype)  # the statistics' cotangents: see the module docstring
  return _bwd(x, dy, scale, mean, var, eps)


train.defvjp(_train_fwd, _train_bwd)


def takes(x: jax.Array, scale: jax.Array, shift: jax.Array) -> bool:
  """Whether ``batch_norm`` runs these operands as oneDNN's primitive on CPU: 4-D float32
  activations and float32 parameters, with the extension loaded."""
  return (x.ndim == 4 and x.dtype == jnp.float32 and scale.dtype == shift.dtype == jnp.float32
          and build.load() is not None)


def batch_norm(x: jax.Array, scale: jax.Array, shift: jax.Array, eps: float):
  """``(y, mean, var)`` of training-mode batch normalization over every axis but the last:
  oneDNN's primitive on CPU where ``takes`` holds, flax's sums (``reference``) elsewhere."""
  ref = lambda x, scale, shift: reference(x, scale, shift, eps)
  if not takes(x, scale, shift):
    y, mean, var = ref(x, scale, shift)
    return y, lax.stop_gradient(mean), lax.stop_gradient(var)
  return lax.platform_dependent(
      x, scale, shift, cpu=lambda x, scale, shift: train(x, scale, shift, eps), default=ref)
