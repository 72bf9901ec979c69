"""A 2-D NHWC/HWIO convolution whose forward pass and both gradients are oneDNN primitives.

Each pass is one ``jax.ffi.ffi_call`` wrapped in ``custom_partitioning``: under ``jax.jit`` with
the batch sharded over a mesh, every device convolves its own rows (the kernel gradient's
per-device partial sums are ``psum``'d over the batch's mesh axes), instead of XLA gathering the
whole batch onto every device. On one device the partitioning is inlined away.

``conv_general_dilated`` has ``lax.conv_general_dilated``'s signature (what ``nn.Conv`` takes as
its ``conv_general_dilated`` field): the convolutions oneDNN takes run as ``conv`` on CPU
(``jax.lax.platform_dependent``: other platforms keep XLA's), everything else is passed through.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.experimental.custom_partitioning import custom_partitioning
from jax.sharding import NamedSharding, PartitionSpec as P

from cnnjax.cpu import build

NHWC = ("NHWC", "HWIO", "NHWC")


class Spec(NamedTuple):
  """The static parts of a convolution (hashable: a ``custom_vjp``/partitioning static arg)."""
  strides: tuple[int, int]
  pads: tuple[tuple[int, int], tuple[int, int]]
  dilation: tuple[int, int]
  groups: int


def out_shape(x_shape, w_shape, spec: Spec) -> tuple[int, int, int, int]:
  def size(n, k, s, d, pad):
    return (n + pad[0] + pad[1] - (d * (k - 1) + 1)) // s + 1
  return (x_shape[0], *(size(x_shape[1 + i], w_shape[i], spec.strides[i], spec.dilation[i],
                             spec.pads[i]) for i in range(2)), w_shape[3])


def _call(pass_: str, a, b, result: jax.ShapeDtypeStruct, spec: Spec):
  attrs = dict(window=np.asarray(spec.strides, np.int64),
               pads=np.asarray([p for pair in spec.pads for p in pair], np.int64),
               dilation=np.asarray(spec.dilation, np.int64), groups=np.int64(spec.groups))
  return jax.ffi.ffi_call(build.TARGETS[pass_], result, vmap_method="sequential")(a, b, **attrs)


def _batch_axes(sharding):
  spec = getattr(sharding, "spec", None)
  return spec[0] if spec else None


def _axis_names(axes) -> tuple[str, ...]:
  if axes is None:
    return ()
  return tuple(axes) if isinstance(axes, tuple) else (axes,)


def batch_axis_names(sharding) -> tuple[str, ...]:
  """The mesh axes an operand's batch (dim 0) is sharded over; () if it is not."""
  return _axis_names(_batch_axes(sharding))


def _partitioned(pass_: str, rule: str, reduce: bool):
  """``pass_``'s FFI call, partitioned along the batch (operand 0's dim 0): both operands are
  sharded as operand 0's batch, the rest replicated; ``reduce``: the result is a sum over the
  batch, so each device's part is ``psum``'d and the result replicated."""

  def fn(a, b, result_shape, spec):
    return _call(pass_, a, b, jax.ShapeDtypeStruct(result_shape, a.dtype), spec)

  fn = custom_partitioning(fn, static_argnums=(2, 3))

  def shardings(mesh, arg_shapes):
    axes = _batch_axes(arg_shapes[0].sharding)
    batch = NamedSharding(mesh, P(axes))
    other = batch if reduce else NamedSharding(mesh, P())
    return axes, batch, other

  def infer(result_shape, spec, mesh, arg_shapes, result):
    axes, batch, _ = shardings(mesh, arg_shapes)
    return NamedSharding(mesh, P()) if reduce else batch

  def partition(result_shape, spec, mesh, arg_shapes, result):
    axes, batch, other = shardings(mesh, arg_shapes)
    names = _axis_names(axes)
    local_batch = arg_shapes[0].shape[0] // int(np.prod([mesh.shape[n] for n in names] or [1]))

    def lower(a, b):
      shape = result_shape if reduce else (local_batch, *result_shape[1:])
      out = _call(pass_, a, b, jax.ShapeDtypeStruct(shape, a.dtype), spec)
      return lax.psum(out, names) if reduce and names else out

    out_sharding = NamedSharding(mesh, P()) if reduce else batch
    return mesh, lower, out_sharding, (batch, other)

  fn.def_partition(partition=partition, infer_sharding_from_operands=infer,
                   sharding_rule=rule, reduction_factors=("n",) if reduce else ())
  return fn


# Factors: n = batch; every other dimension is its own factor (kept whole on each device).
_fwd = _partitioned("fwd", "n a b c, d e f g -> n h i j", reduce=False)
_bwd_data = _partitioned("bwd_data", "n a b c, d e f g -> n h i j", reduce=False)
_bwd_weights = _partitioned("bwd_weights", "n a b c, n d e f -> g h i j", reduce=True)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv(x: jax.Array, w: jax.Array, spec: Spec) -> jax.Array:
  """``lax.conv_general_dilated(x, w, strides, pads, rhs_dilation=dilation,
  dimension_numbers=NHWC, feature_group_count=groups)`` through oneDNN."""
  return _fwd(x, w, out_shape(x.shape, w.shape, spec), spec)


def _conv_fwd(x, w, spec):
  return conv(x, w, spec), (x, w)


def _conv_bwd(spec, residuals, dy):
  x, w = residuals
  dy = dy.astype(x.dtype)
  return _bwd_data(dy, w, x.shape, spec), _bwd_weights(x, dy, w.shape, spec)


conv.defvjp(_conv_fwd, _conv_bwd)


# ---- which convolutions oneDNN takes ------------------------------------------------------

def _onednn_spec(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                 dimension_numbers, feature_group_count, batch_group_count,
                 preferred_element_type) -> Spec | None:
  """The oneDNN convolution computing this ``lax.conv_general_dilated``, or None if it is not
  one oneDNN takes here (dtype, layout, base dilation, batch groups, negative padding)."""
  dtypes = (jnp.float32, jnp.bfloat16) if build.supports_bf16() else (jnp.float32,)
  if not (lhs.ndim == 4 and lhs.dtype == rhs.dtype and any(lhs.dtype == d for d in dtypes)
          and batch_group_count == 1 and preferred_element_type in (None, lhs.dtype)
          and (lhs_dilation is None or tuple(lhs_dilation) == (1, 1))
          and lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
          == lax.conv_dimension_numbers(lhs.shape, rhs.shape, NHWC)
          and lhs.shape[3] == rhs.shape[2] * feature_group_count
          and rhs.shape[3] % feature_group_count == 0):
    return None
  strides = tuple(int(s) for s in window_strides)
  dilation = (1, 1) if rhs_dilation is None else tuple(int(d) for d in rhs_dilation)
  if isinstance(padding, str):
    dilated = [d * (k - 1) + 1 for d, k in zip(dilation, rhs.shape[:2])]
    padding = lax.padtype_to_pads(lhs.shape[1:3], dilated, strides, padding)
  pads = tuple(tuple(int(p) for p in pair) for pair in padding)
  if len(pads) != 2 or any(p < 0 for pair in pads for p in pair):
    return None
  spec = Spec(strides, pads, dilation, int(feature_group_count))
  return spec if min(out_shape(lhs.shape, rhs.shape, spec)[1:3]) > 0 else None


def _real_tap_window(x_shape, w_shape, spec: Spec):
  """The kernel rows and columns (two slices) whose taps read the real input somewhere, not
  only its zero padding, and the convolution by those taps alone: the same output, without the
  products with padding (on ResNet-18's 1×1 maps at 32×32 input, a 3×3 convolution is its
  centre tap, a ninth of the work). Kernel-dilated convolutions are kept whole."""
  if spec.dilation != (1, 1):
    return (slice(None), slice(None)), spec
  out = out_shape(x_shape, w_shape, spec)
  windows, pads = [], []
  for axis in range(2):
    k, n, stride, (low, high) = w_shape[axis], x_shape[1 + axis], spec.strides[axis], spec.pads[axis]
    last = stride * (out[1 + axis] - 1)  # the last window's offset
    real = [i for i in range(k) if i - low <= n - 1 and i - low + last >= 0]
    if not real:  # every window lies in the padding: nothing to crop to
      return (slice(None), slice(None)), spec
    first, end = real[0], real[-1] + 1
    windows.append(slice(first, end))
    pads.append((low - first, high - (k - end)))
  if any(p < 0 for pair in pads for p in pair):
    return (slice(None), slice(None)), spec
  return tuple(windows), spec._replace(pads=tuple(pads))


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                         batch_group_count=1, precision=None, preferred_element_type=None):
  """``lax.conv_general_dilated`` (same signature); on CPU, oneDNN's convolution where it takes
  this one (NHWC/HWIO, any strides, padding, kernel dilation and groups) and the extension is
  loaded; everything else is passed through unchanged."""
  reference = functools.partial(
      lax.conv_general_dilated, window_strides=window_strides, padding=padding,
      lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
      feature_group_count=feature_group_count, batch_group_count=batch_group_count,
      precision=precision, preferred_element_type=preferred_element_type)
  spec = None
  if build.load() is not None:
    spec = _onednn_spec(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                        dimension_numbers, feature_group_count, batch_group_count,
                        preferred_element_type)
  if spec is None:
    return reference(lhs, rhs)
  taps, cropped = _real_tap_window(lhs.shape, rhs.shape, spec)
  oned = lambda x, w: conv(x, w[taps[0], taps[1]], cropped)
  return lax.platform_dependent(lhs, rhs, cpu=oned, default=reference)
