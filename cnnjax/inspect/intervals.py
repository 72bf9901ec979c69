"""Interval arithmetic over jaxpr primitives: the rules behind ``receptive``.

An ``Axis`` says where one input spatial axis (H or W) lives in an array and which input
interval each of its indices can depend on; each rule maps the operands' axes to the outputs'
(see ``receptive`` for the method). A rule returns ``(output states, event)`` where the event
names a structural op (``(kind, macs, macs without padding taps)``), ``None``, or
``"approximate"`` when the rule had to assume "depends on everything".
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import numpy as np

EMPTY_LO, EMPTY_HI = 2**40, -(2**40)  # an index that depends on no input pixel


@dataclasses.dataclass(frozen=True)
class Axis:
  """Where one input spatial axis lives in an array, and the input interval of each index.

  ``dim`` is the array axis carrying it (``None`` once it has been reduced or flattened away:
  then ``lo``/``hi`` hold one interval, the hull); ``jump`` is the input distance between
  neighbouring indices (the effective stride), ``None`` when irregular or reduced.
  """

  dim: int | None
  lo: np.ndarray
  hi: np.ndarray
  jump: int | None

  @property
  def size(self) -> int:
    """The receptive-field size along this axis: the widest interval."""
    widths = self.hi - self.lo + 1
    return int(widths[self.lo <= self.hi].max(initial=0))

  def hull(self) -> "Axis":
    keep = self.lo <= self.hi
    lo = self.lo[keep].min(initial=EMPTY_LO)
    hi = self.hi[keep].max(initial=EMPTY_HI)
    return Axis(None, np.array([lo]), np.array([hi]), None)

  def at(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Intervals at (possibly out-of-range, i.e. padding) indices, extrapolated on the grid."""
    n = len(self.lo)
    jump = self.jump if self.jump is not None else (
        max(1, round((self.lo[-1] - self.lo[0]) / (n - 1))) if n > 1 else 1)
    clipped = np.clip(idx, 0, n - 1)
    shift = (idx - clipped) * jump
    lo, hi = self.lo[clipped], self.hi[clipped]
    empty = lo > hi
    return np.where(empty, EMPTY_LO, lo + shift), np.where(empty, EMPTY_HI, hi + shift)


State = tuple  # one Axis per input spatial axis; None for arrays that don't depend on the input


def input_state(shape: Sequence[int], dims: Sequence[int] = (1, 2)) -> State:
  """The input's own state: index i of axis H (W) is input row (column) i."""
  return tuple(Axis(d, np.arange(shape[d]), np.arange(shape[d]), 1) for d in dims)


def _union(axes: Sequence[Axis], dim: int | None, length: int | None) -> Axis:
  """Index-wise union of ``axes`` that live on array axis ``dim`` (or are reduced)."""
  mapped = [a for a in axes if a.dim is not None]
  if not mapped or any(a.dim != dim or len(a.lo) != length for a in mapped):
    hulls = [a.hull() for a in axes]
    return Axis(None, np.minimum.reduce([h.lo for h in hulls]),
                np.maximum.reduce([h.hi for h in hulls]), None)
  lo = np.minimum.reduce([np.broadcast_to(a.lo, (length,)) for a in axes])
  hi = np.maximum.reduce([np.broadcast_to(a.hi, (length,)) for a in axes])
  jumps = {a.jump for a in mapped}
  return Axis(dim, lo, hi, jumps.pop() if len(jumps) == 1 else None)


def _join(states: Sequence[State], dim_of: Callable[[Axis], int | None], shape) -> State:
  """Union of several operands' states, each axis first moved by ``dim_of``."""
  out = []
  for k in range(len(states[0])):
    moved = []
    for s in states:
      a = s[k]
      d = dim_of(a) if a.dim is not None else None
      moved.append(a.hull() if d is None else dataclasses.replace(a, dim=d))
    dims = {a.dim for a in moved if a.dim is not None}
    dim = dims.pop() if len(dims) == 1 else None
    out.append(_union(moved, dim, shape[dim] if dim is not None else None))
  return tuple(out)


def _window(a: Axis, k: int, s: int, pad_lo: int, n_out: int, d: int = 1, ld: int = 1) -> Axis:
  """A sliding window along ``a.dim``: output o reads taps (o·s + t·d − pad_lo) / ld."""
  pos = np.arange(n_out)[:, None] * s + np.arange(k)[None, :] * d - pad_lo
  real = pos % ld == 0
  lo, hi = a.at(pos // ld)
  lo = np.where(real, lo, EMPTY_LO).min(axis=1)
  hi = np.where(real, hi, EMPTY_HI).max(axis=1)
  jump = a.jump * s // ld if a.jump is not None and (a.jump * s) % ld == 0 else None
  return Axis(a.dim, lo, hi, jump)


def _conv(eqn, states, shapes):
  lhs, rhs = states[:2]
  if rhs is not None:
    return fallback(eqn, states, shapes)
  lhs_spec, rhs_spec, out_spec = eqn.params["dimension_numbers"]
  rhs_shape, out_shape = shapes[1], eqn.outvars[0].aval.shape
  out = []
  for a in lhs:
    if a.dim is None:
      out.append(a)
    elif a.dim in lhs_spec[2:]:
      i = lhs_spec[2:].index(a.dim)
      moved = dataclasses.replace(a, dim=out_spec[2 + i])
      out.append(_window(moved, rhs_shape[rhs_spec[2 + i]], eqn.params["window_strides"][i],
                         eqn.params["padding"][i][0], out_shape[out_spec[2 + i]],
                         eqn.params["rhs_dilation"][i], eqn.params["lhs_dilation"][i]))
    elif a.dim == lhs_spec[0]:
      out.append(dataclasses.replace(a, dim=out_spec[0]))
    else:  # a spatial axis folded into the features: every output reads all of it
      out.append(a.hull())
  per_output = math.prod(rhs_shape[i] for i in rhs_spec[1:])
  macs = math.prod(out_shape) * per_output
  inside = out_shape[out_spec[0]] * out_shape[out_spec[1]] * rhs_shape[rhs_spec[1]]
  for i, n_in in enumerate(shapes[0][d] for d in lhs_spec[2:]):
    inside *= _taps_inside(rhs_shape[rhs_spec[2 + i]], eqn.params["window_strides"][i],
                           eqn.params["padding"][i][0], out_shape[out_spec[2 + i]], n_in,
                           eqn.params["rhs_dilation"][i], eqn.params["lhs_dilation"][i])
  return [tuple(out)], ("conv", macs, inside)


def _taps_inside(k: int, s: int, pad_lo: int, n_out: int, n_in: int, d: int, ld: int) -> int:
  """How many (output, tap) pairs of one axis read a real input, not padding."""
  pos = np.arange(n_out)[:, None] * s + np.arange(k)[None, :] * d - pad_lo
  return int(((pos >= 0) & (pos <= (n_in - 1) * ld) & (pos % ld == 0)).sum())


def _reduce_window(eqn, states, shapes):
  n = len(eqn.invars) // 2 if eqn.primitive.name == "reduce_window" else 1
  deps = [s for s in states[:n] if s is not None]
  p = eqn.params
  out_shape = eqn.outvars[0].aval.shape
  base = p.get("base_dilation") or (1,) * len(out_shape)
  wdil = p.get("window_dilation") or (1,) * len(out_shape)
  joined = deps[0] if len(deps) == 1 else _join(deps, lambda a: a.dim, shapes[0])
  out = tuple(a if a.dim is None else _window(
      a, p["window_dimensions"][a.dim], p["window_strides"][a.dim], p["padding"][a.dim][0],
      out_shape[a.dim], wdil[a.dim], base[a.dim]) for a in joined)
  kind = "max_pool" if eqn.primitive.name in ("reduce_window_max", "reduce_window_min") else (
      "avg_pool")
  return [out] * len(eqn.outvars), (kind, 0, 0)


def _reduce(eqn, states, shapes):
  axes = tuple(eqn.params["axes"])
  dim_of = lambda a: None if a.dim in axes else a.dim - sum(x < a.dim for x in axes)
  (state,) = [s for s in states if s is not None]
  out = _join([state], dim_of, eqn.outvars[0].aval.shape)
  event = None
  if all(a.dim in axes for a in state if a.dim is not None) and all(
      a.dim is not None for a in state):
    kind = "max" if eqn.primitive.name in ("reduce_max", "argmax") else "avg"
    event = (f"global_{kind}_pool", 0, 0)
  return [out], event


def _dot_general(eqn, states, shapes):
  (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
  out_shape = eqn.outvars[0].aval.shape
  ranks = [len(s) for s in shapes[:2]]
  contract, batch = (lc, rc), (lb, rb)

  def mover(side):
    free = [d for d in range(ranks[side]) if d not in contract[side] and d not in batch[side]]
    offset = len(lb) + (0 if side == 0 else ranks[0] - len(lc) - len(lb))

    def dim_of(a):
      if a.dim in batch[side]:
        return list(batch[side]).index(a.dim)
      return None if a.dim in contract[side] else offset + free.index(a.dim)
    return dim_of

  parts = [_join([s], mover(i), out_shape) for i, s in enumerate(states[:2]) if s is not None]
  out = parts[0] if len(parts) == 1 else _join(parts, lambda a: a.dim, out_shape)
  macs = math.prod(out_shape) * math.prod(shapes[0][d] for d in lc)
  return [out], ("dense", macs, macs)


def _reshape(eqn, states, shapes):
  (state,) = [s for s in states if s is not None]
  src, dst = shapes[0], eqn.outvars[0].aval.shape
  before_dst = [math.prod(dst[:n]) for n in range(len(dst))]

  def dim_of(a):
    """The output axis that carries ``a`` unchanged, else None (merged or split: the hull)."""
    if src[a.dim] == 1:  # can't be told from other length-1 axes (the batch): one interval
      return None
    before = math.prod(src[:a.dim])
    for n, p in enumerate(before_dst):
      if p == before and dst[n] == src[a.dim]:
        return n
    return None
  return [_join([state], dim_of, dst)], None


def _broadcast(eqn, states, shapes):
  state = states[0]
  dst, dims = eqn.outvars[0].aval.shape, eqn.params["broadcast_dimensions"]
  out = []
  for a in state:
    if a.dim is None:
      out.append(a)
      continue
    d = dims[a.dim]
    lo, hi = (a.lo, a.hi) if len(a.lo) == dst[d] else (np.repeat(a.lo, dst[d]),
                                                        np.repeat(a.hi, dst[d]))
    out.append(Axis(d, lo, hi, a.jump))
  return [tuple(out)], None


def _transpose(eqn, states, shapes):
  perm = list(eqn.params["permutation"])
  return [_join([states[0]], lambda a: perm.index(a.dim), eqn.outvars[0].aval.shape)], None


def _squeeze(eqn, states, shapes):
  gone = eqn.params["dimensions"]
  dim_of = lambda a: None if a.dim in gone else a.dim - sum(g < a.dim for g in gone)
  return [_join([states[0]], dim_of, eqn.outvars[0].aval.shape)], None


def _slice(eqn, states, shapes):
  p = eqn.params
  strides = p["strides"] or (1,) * len(shapes[0])
  out = []
  for a in states[0]:
    if a.dim is None:
      out.append(a)
      continue
    sl = slice(p["start_indices"][a.dim], p["limit_indices"][a.dim], strides[a.dim])
    jump = a.jump * strides[a.dim] if a.jump is not None else None
    out.append(Axis(a.dim, a.lo[sl], a.hi[sl], jump))
  return [tuple(out)], None


def _pad(eqn, states, shapes):
  if states[1] is not None:
    return fallback(eqn, states, shapes)
  out = []
  dst = eqn.outvars[0].aval.shape
  for a in states[0]:
    if a.dim is None:
      out.append(a)
      continue
    low, _, interior = eqn.params["padding_config"][a.dim]
    pos = np.arange(dst[a.dim]) - low
    real = pos % (interior + 1) == 0
    lo, hi = a.at(pos // (interior + 1))
    if interior:  # interior padding leaves holes that depend on nothing
      lo, hi = np.where(real, lo, EMPTY_LO), np.where(real, hi, EMPTY_HI)
    out.append(Axis(a.dim, lo, hi, a.jump if not interior else None))
  return [tuple(out)], None


def _concatenate(eqn, states, shapes):
  dim = eqn.params["dimension"]
  dst = eqn.outvars[0].aval.shape
  out = []
  for k in range(len(next(s for s in states if s is not None))):
    along = [s[k] for s in states if s is not None and s[k].dim == dim]
    if not along:  # concatenated along another axis (channels): union of the branches
      out.append(_join([s for s in states if s is not None], lambda a: a.dim, dst)[k])
      continue
    los, his = [], []
    for s, shape in zip(states, shapes):
      a = None if s is None else s[k]
      if a is not None and a.dim == dim:
        los.append(a.lo), his.append(a.hi)
      else:
        h = a.hull() if a is not None else Axis(None, np.array([EMPTY_LO]),
                                                np.array([EMPTY_HI]), None)
        los.append(np.repeat(h.lo, shape[dim])), his.append(np.repeat(h.hi, shape[dim]))
    out.append(Axis(dim, np.concatenate(los), np.concatenate(his), None))
  return [tuple(out)], None


def _split(eqn, states, shapes):
  axis, sizes = eqn.params["axis"], eqn.params["sizes"]
  outs, start = [], 0
  for size in sizes:
    outs.append(tuple(a if a.dim != axis else Axis(
        a.dim, a.lo[start:start + size], a.hi[start:start + size], a.jump) for a in states[0]))
    start += size
  return outs, None


def _elementwise(eqn, states, shapes):
  deps = [s for s in states if s is not None]
  return [_join(deps, lambda a: a.dim, eqn.outvars[0].aval.shape)] * len(eqn.outvars), None


def fallback(eqn, states, shapes):
  deps = [s for s in states if s is not None]
  hull = _join(deps, lambda a: None, None)
  return [hull] * len(eqn.outvars), "approximate"


ELEMENTWISE = frozenset("""
  abs acos acosh add and asin asinh atan atan2 atanh cbrt ceil clamp complex conj
  convert_element_type copy copy_p cos cosh digamma div eq erf erf_inv erfc exp exp2 expm1
  floor ge gt imag integer_pow is_finite le lgamma log log1p logistic lt max min mul ne neg
  nextafter not optimization_barrier or population_count pow real reduce_precision rem round
  rsqrt select_n shift_left shift_right_arithmetic shift_right_logical sign sin sinh sqrt
  square sub tan tanh xor""".split())

RULES: dict[str, Callable] = {
    "conv_general_dilated": _conv,
    "reduce_window_max": _reduce_window, "reduce_window_min": _reduce_window,
    "reduce_window_sum": _reduce_window, "reduce_window": _reduce_window,
    "reduce_sum": _reduce, "reduce_max": _reduce, "reduce_min": _reduce, "reduce_prod": _reduce,
    "reduce_and": _reduce, "reduce_or": _reduce, "argmax": _reduce, "argmin": _reduce,
    "dot_general": _dot_general, "reshape": _reshape, "broadcast_in_dim": _broadcast,
    "transpose": _transpose, "squeeze": _squeeze, "slice": _slice, "pad": _pad,
    "concatenate": _concatenate, "split": _split,
    **{name: _elementwise for name in ELEMENTWISE},
}


