"""Convolution, max pooling and batch normalization formulated for XLA's CPU backend, chosen per
platform.

XLA:CPU is slow on a few kinds of work that small CNNs are made of (benchmarks/conv_bench.py
measures each case; the README's Performance section has the numbers):

* max pooling's gradient: ``reduce_window`` differentiates into a variadic argmax window with
  four full-size iotas and a scatter; taking the maximum of the window's strided slices instead
  differentiates into cheap selects (3–15× faster on LeNet-5's pools);
* convolutions over tiny maps with many channels (ResNet-18's 2×2×256 and 1×1×512 stages at
  32×32 input): XLA's convolution and its input gradient take ~40 ms each where the same sums
  as one matmul per kernel tap take 2–5 ms.

* every other convolution's kernel gradient, which XLA:CPU computes over activations transposed
  to [C, H, W, N], and convolutions with 1–16 channels or strides (Eigen, not YNNPACK).

``CNNJAX_CPU_KERNELS`` chooses the CPU lowering (read at trace time):

* ``onednn`` (the default when available): every float32 (and, where the CPU has native
  bfloat16, bfloat16) 2-D convolution — forward, input and kernel gradient — and every float32
  NHWC training-mode batch normalization — forward and gradient — run as oneDNN primitives
  through XLA's FFI (``cnnjax/models/onednn/``; compiled on first use, see build.py), max
  pooling as strided slices;
* ``taps``: the pure-JAX formulations (max pooling as slices, per-tap matmuls on tiny maps);
  the default when the oneDNN extension cannot be built (one notice line on stderr says why);
* ``xla``: XLA's own ops (to compare, or to rule the others out).

Each formulation computes the same sums as the convolution, so results agree to float32
rounding (tests/models/test_kernels.py, test_onednn.py); max pooling differs only in how the
gradient is split among exactly tied maxima (evenly here, to one element in ``reduce_window``),
which after a ReLU happens only at zeros, whose gradient is zero anyway. Accelerators keep XLA's
own lowering: ``jax.lax.platform_dependent`` lowers the CPU branch only for CPU.

The oneDNN extension is built and its FFI targets registered when this module is imported
(unless ``CNNJAX_CPU_KERNELS`` is ``taps`` or ``xla``), before anything compiles or loads from
JAX's persistent compilation cache, which may hold programs that call them.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
from collections.abc import Iterator

import jax
import jax.numpy as jnp
from flax import linen as nn
from jax import lax

from cnnjax.models.onednn import batchnorm as onednn_bn
from cnnjax.models.onednn import build as onednn_build
from cnnjax.models.onednn import conv as onednn_conv

Pads = tuple[tuple[int, int], tuple[int, int]]
NHWC = ("NHWC", "HWIO", "NHWC")
ENV = "CNNJAX_CPU_KERNELS"
MODES = ("onednn", "taps", "xla")


_REFERENCE = contextvars.ContextVar("cnnjax_reference_ops", default=False)


def _requested() -> str:
  value = os.environ.get(ENV, "").strip().lower()
  if value in ("", "fast"):  # "fast": the name of the default before there was a choice
    return ""
  if value not in MODES:
    raise ValueError(f"{ENV}={value!r} is not one of {', '.join(MODES)}")
  return value


def mode() -> str:
  """The CPU lowering in use: ``onednn``, ``taps`` or ``xla`` (read at trace time)."""
  if _REFERENCE.get():
    return "xla"
  requested = _requested()
  if requested in ("taps", "xla"):
    return requested
  return "onednn" if onednn_build.load() is not None else "taps"


def enabled() -> bool:
  """Whether CPU formulations are used (``CNNJAX_CPU_KERNELS=xla``: no)."""
  return mode() != "xla"


if _requested() not in ("taps", "xla"):
  onednn_build.load()  # registers the FFI targets before any compilation or cache load


@contextlib.contextmanager
def reference_ops() -> Iterator[None]:
  """Models traced inside use XLA's own ops on every platform: for analyses that read the
  jaxpr (receptive fields, per-layer tables), which want one op per layer, not two branches."""
  token = _REFERENCE.set(True)
  try:
    yield
  finally:
    _REFERENCE.reset(token)


# ---- max pooling -------------------------------------------------------------------------

def max_pool_taps(x: jax.Array, window: int, stride: int, pads) -> jax.Array:
  """Max pooling as the elementwise maximum of the window's strided slices (NHWC)."""
  x = _pad(x, pads, -jnp.inf)
  oh = (x.shape[1] - window) // stride + 1
  ow = (x.shape[2] - window) // stride + 1
  out = None
  for i in range(window):
    for j in range(window):
      tap = lax.slice(x, (0, i, j, 0), (x.shape[0], i + stride * (oh - 1) + 1,
                                        j + stride * (ow - 1) + 1, x.shape[3]),
                      (1, stride, stride, 1))
      out = tap if out is None else jnp.maximum(out, tap)
  return out


def max_pool(x: jax.Array, window: int, stride: int, pads) -> jax.Array:
  """``nn.max_pool`` with explicit ``pads``; the slice formulation when lowered for CPU."""
  reference = lambda x: nn.max_pool(x, (window, window), (stride, stride), padding=pads)
  if not enabled() or not jnp.issubdtype(x.dtype, jnp.floating):
    return reference(x)
  return lax.platform_dependent(
      x, cpu=lambda x: max_pool_taps(x, window, stride, pads), default=reference)


# ---- convolution ---------------------------------------------------------------------------

def taps_on_cpu(x_shape) -> bool:
  """Whether a stride-1 conv on inputs of this shape runs as per-tap matmuls on CPU (forward
  and input gradient; the kernel gradient stays XLA's, which no formulation beat in a whole
  train step).

  From benchmarks/conv_bench.py on a 2-core AMD EPYC (AVX-512): on inputs of at most 4 pixels
  (ResNet-18's last stages at 32×32), XLA's convolution takes 40 ms where per-tap matmuls take
  2–5 ms, for both passes. Elsewhere XLA's convolution wins or ties in a whole train step
  (per-tap forms of small-channel convs win alone but lose once fused into their neighbours).
  """
  return x_shape[1] * x_shape[2] <= 4


def _xla_conv(x, w, pads: Pads):
  return lax.conv_general_dilated(x, w, (1, 1), pads, dimension_numbers=NHWC)


def _pad(x, pads, value=0.0):
  """Pads the two spatial axes of an NHWC array."""
  return jnp.pad(x, [(0, 0), *pads, (0, 0)], constant_values=value)


def _real_taps(kernel: tuple[int, int], out: tuple[int, int], size: tuple[int, int], pads: Pads):
  """The taps (i, j) whose window rows/columns meet the real input, not only its zero padding
  (on a 1×1 map with padding 1, only the centre tap of a 3×3 kernel)."""
  def meets(k: int, n_out: int, n_in: int, low: int) -> bool:
    return k < low + n_in and k + n_out > low

  return [(i, j) for i in range(kernel[0]) for j in range(kernel[1])
          if meets(i, out[0], size[0], pads[0][0]) and meets(j, out[1], size[1], pads[1][0])]


def _forward_taps(x, w, pads: Pads):
  """y = Σ over taps (i, j) of the shifted input times that tap's C×F matrix."""
  kh, kw = w.shape[:2]
  xp = _pad(x, pads)
  oh, ow = xp.shape[1] - kh + 1, xp.shape[2] - kw + 1
  out = jnp.zeros((x.shape[0], oh, ow, w.shape[3]), x.dtype)  # if every tap reads padding
  for i, j in _real_taps((kh, kw), (oh, ow), x.shape[1:3], pads):
    out = out + lax.dot_general(xp[:, i:i + oh, j:j + ow, :], w[i, j], (((3,), (0,)), ((), ())))
  return out


def _input_grad_taps(x_shape, w, dy, pads: Pads):
  """dx: every tap's dy·W_ijᵀ in one matmul, each added back where its inputs were.

  The adds are in-place updates of one buffer, not a sum of padded copies: XLA would fuse such
  a sum into every consumer and recompute it there (4× under a 2×2 max pool's gradient).
  """
  kh, kw, c, f = w.shape
  n, oh, ow = dy.shape[:3]
  (top, bottom), (left, right) = pads
  taps = _real_taps((kh, kw), (oh, ow), x_shape[1:3], pads)
  used = w[tuple(i for i, _ in taps), tuple(j for _, j in taps)]  # (taps, C, F)
  z = lax.dot_general(dy, used, (((3,), (2,)), ((), ())))
  out = jnp.zeros((n, x_shape[1] + top + bottom, x_shape[2] + left + right, c), dy.dtype)
  for t, (i, j) in enumerate(taps):
    out = out.at[:, i:i + oh, j:j + ow, :].add(z[:, :, :, t, :])
  return out[:, top:top + x_shape[1], left:left + x_shape[2], :]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def taps_conv(x, w, pads: Pads):
  """A stride-1 NHWC/HWIO convolution as per-tap matmuls, forward and input gradient."""
  return _forward_taps(x, w, pads)


def _taps_fwd(x, w, pads):
  return taps_conv(x, w, pads), (x, w)


def _taps_bwd(pads, residuals, dy):
  x, w = residuals
  dw = jax.vjp(lambda w: _xla_conv(x, w, pads), w)[1](dy)[0]
  return _input_grad_taps(x.shape, w, dy, pads), dw


taps_conv.defvjp(_taps_fwd, _taps_bwd)


def _explicit_pads(padding) -> Pads | None:
  if isinstance(padding, str):
    if padding.upper() != "VALID":
      return None
    return ((0, 0), (0, 0))
  pads = tuple(tuple(int(p) for p in pair) for pair in padding)
  return pads if len(pads) == 2 and all(len(p) == 2 for p in pads) else None


def _onednn_spec(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                 dimension_numbers, feature_group_count, batch_group_count,
                 preferred_element_type) -> onednn_conv.Spec | None:
  """The oneDNN convolution computing this ``lax.conv_general_dilated``, or None if it is not
  one oneDNN takes here (dtype, layout, base dilation, batch groups, negative padding)."""
  dtypes = (jnp.float32, jnp.bfloat16) if onednn_build.supports_bf16() else (jnp.float32,)
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
  spec = onednn_conv.Spec(strides, pads, dilation, int(feature_group_count))
  return spec if min(onednn_conv.out_shape(lhs.shape, rhs.shape, spec)[1:3]) > 0 else None


def _real_tap_window(x_shape, w_shape, spec: onednn_conv.Spec):
  """The kernel rows and columns (two slices) whose taps read the real input somewhere, not
  only its zero padding, and the convolution by those taps alone: the same output, without the
  products with padding (on ResNet-18's 1×1 maps at 32×32 input, a 3×3 convolution is its
  centre tap, a ninth of the work). Kernel-dilated convolutions are kept whole."""
  if spec.dilation != (1, 1):
    return (slice(None), slice(None)), spec
  out = onednn_conv.out_shape(x_shape, w_shape, spec)
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
  """``lax.conv_general_dilated`` (same signature); on CPU, oneDNN's convolution or
  ``taps_conv`` (see ``mode``).

  oneDNN takes NHWC/HWIO convolutions with any strides, padding, kernel dilation and groups;
  ``taps`` only float32 stride-1 ones for which ``taps_on_cpu`` holds. Everything else is passed
  through unchanged.
  """
  reference = functools.partial(
      lax.conv_general_dilated, window_strides=window_strides, padding=padding,
      lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
      feature_group_count=feature_group_count, batch_group_count=batch_group_count,
      precision=precision, preferred_element_type=preferred_element_type)
  lowering = mode()
  if lowering == "onednn":
    spec = _onednn_spec(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                        dimension_numbers, feature_group_count, batch_group_count,
                        preferred_element_type)
    if spec is not None:
      taps, cropped = _real_tap_window(lhs.shape, rhs.shape, spec)
      oned = lambda x, w: onednn_conv.conv(x, w[taps[0], taps[1]], cropped)
      return lax.platform_dependent(lhs, rhs, cpu=oned, default=reference)
  plain = (lowering != "xla" and lhs.ndim == 4 and lhs.dtype == rhs.dtype == jnp.float32
           and tuple(window_strides) == (1, 1) and feature_group_count == 1
           and batch_group_count == 1 and preferred_element_type is None
           and all(d is None or tuple(d) == (1, 1) for d in (lhs_dilation, rhs_dilation))
           and lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
           == lax.conv_dimension_numbers(lhs.shape, rhs.shape, NHWC))
  pads = _explicit_pads(padding) if plain else None
  if pads is None or not taps_on_cpu(lhs.shape):
    return reference(lhs, rhs)
  return lax.platform_dependent(
      lhs, rhs, cpu=lambda x, w: taps_conv(x, w, pads), default=reference)


Conv = functools.partial(nn.Conv, conv_general_dilated=conv_general_dilated)


# ---- batch normalization -------------------------------------------------------------------

def batch_norm(x: jax.Array, scale: jax.Array, shift: jax.Array, eps: float,
               relu: bool = False):
  """Training-mode batch normalization over every axis but the last: ``(y, mean, var)`` with
  ``y = (x - mean) / sqrt(var + eps) * scale + shift`` (then a ReLU if ``relu``) and the batch's
  float32 mean and biased variance. On CPU with ``onednn``, 4-D float32 inputs run as oneDNN's
  primitive (forward and gradient; the ReLU fused into it); elsewhere flax's ``BatchNorm`` sums
  (``onednn.batchnorm.reference``). Only ``y`` carries a gradient (the statistics feed running
  averages)."""
  reference = lambda x, scale, shift: onednn_bn.reference(x, scale, shift, eps, relu)
  if not (mode() == "onednn" and x.ndim == 4 and x.dtype == jnp.float32
          and scale.dtype == shift.dtype == jnp.float32):
    y, mean, var = reference(x, scale, shift)
    return y, lax.stop_gradient(mean), lax.stop_gradient(var)
  return lax.platform_dependent(
      x, scale, shift, cpu=lambda x, scale, shift: onednn_bn.train(x, scale, shift, eps, relu),
      default=reference)
