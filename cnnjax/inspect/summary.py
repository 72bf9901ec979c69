"""Per-layer tables of any registered model, computed from shapes alone (no weights allocated).

Rows, in forward order: the input; every leaf module that has parameters or does a structural
operation (Conv, Dense, BatchNorm, ``layers.Pool``, ...); and the pooling done by plain
functions (``layers.pool``, a global mean), named ``<module>/pool<n>`` or
``<module>/global_pool<n>`` after the module that calls them. Activations (ReLU), dropout and
concatenations are not rows (nor an output layer computed by plain functions, like the 1998
LeNet's RBF units): like the course's VGG-16 table, ``activations`` counts the input plus each
row's output once. The forward pass is the inference one (``train=False``), so
auxiliary heads are not rows; their parameters are in the totals.

MACs: a convolution's ``out_h·out_w·out_c·(k_h·k_w·in_c/groups)``, a dense layer's
``in·out``; everything else (bias adds, BatchNorm, pooling) is not counted, so XLA's flop count
is a little above 2·MACs — once the taps that land on zero padding, which XLA skips, are left
out (``macs_excluding_padding``). RF and jump come from ``receptive`` (per axis).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from cnnjax import models
from cnnjax.errors import UserError
from cnnjax.inspect import graph as graph_lib

FORMATS = ("table", "json", "csv")


@dataclasses.dataclass(frozen=True)
class Row:
  name: str
  kind: str
  shape: tuple[int, ...]  # per image (no batch axis)
  activations: int
  activation_bytes: int
  params: int
  weights: int  # the params in kernels (ndim >= 2): the course's "weights"
  non_trainable: int
  macs: int
  rf: tuple[int, ...]  # receptive-field size per input axis (H, W)
  jump: tuple[int | None, ...]  # effective stride per input axis; None once reduced


@dataclasses.dataclass(frozen=True)
class Summary:
  model: str
  input_shape: tuple[int, ...]  # per image, HWC
  num_classes: int
  rows: tuple[Row, ...]
  totals: Mapping[str, int]


def _size(tree: Any) -> int:
  return sum(math.prod(a.shape) for a in jax.tree.leaves(tree))


def _bytes(tree: Any) -> int:
  return sum(math.prod(a.shape) * np.dtype(a.dtype).itemsize for a in jax.tree.leaves(tree))


def _counts(variables: Mapping, path: str | None) -> tuple[int, int, int]:
  """(params, kernel params, non-trainable variables) owned by module ``path``."""
  if path is None:
    return 0, 0, 0
  params = graph_lib.subtree(variables.get("params", {}), path)
  weights = sum(math.prod(a.shape) for a in jax.tree.leaves(params) if len(a.shape) >= 2)
  other = sum(_size(graph_lib.subtree(tree, path)) for col, tree in variables.items()
              if col != "params")
  return _size(params), weights, other


def _row(g: graph_lib.Graph, name: str, kind: str, var, counts=(0, 0, 0), macs=0) -> Row:
  shape = tuple(var.aval.shape[1:])
  n = math.prod(shape)
  state = g.analysis.states.get(var)
  rf = tuple(a.size for a in state) if state else (0, 0)
  jump = tuple(a.jump for a in state) if state else (None, None)
  return Row(name, kind, shape, n, n * np.dtype(var.aval.dtype).itemsize, *counts, macs, rf, jump)


def rows(g: graph_lib.Graph) -> list[Row]:
  """The table's rows for a traced model: the input, then ``g.layers``."""
  return [_row(g, "input", "input", g.taps["input"])] + [
      _row(g, layer.name, layer.kind, layer.var, _counts(g.variables, layer.module), layer.macs)
      for layer in g.layers]


def totals(g: graph_lib.Graph, table: list[Row]) -> dict[str, int]:
  v = g.variables
  params = _size(v.get("params", {}))
  acts = sum(r.activations for r in table)
  act_bytes = sum(r.activation_bytes for r in table)
  return {
      "params": params,
      "non_trainable_params": _size({k: t for k, t in v.items() if k != "params"}),
      "param_bytes": _bytes(v),
      "params_outside_rows": params - sum(r.params for r in table),
      "activations": acts,
      "activation_bytes": act_bytes,
      "activation_bytes_fwd_bwd": 2 * act_bytes,
      "macs": sum(e.macs for e in g.analysis.events),
      "macs_excluding_padding": sum(e.macs_inside for e in g.analysis.events),
  }


def summarize(name: str, input_size: int | None = None, num_classes: int | None = None,
              **options: Any) -> Summary:
  """The per-layer table of registered model ``name`` for one image of ``input_size``²."""
  spec = models.get_spec(name)
  size = input_size or spec.input_size
  if size < spec.min_input_size:
    raise UserError(f"--input_size={size} is below {name}'s minimum input size "
                    f"{spec.min_input_size}.")
  model = models.create(name, num_classes=num_classes, **options)
  shape = (1, size, size, spec.channels)
  g = graph_lib.trace(model, models.abstract_variables(model, tuple(shape)), shape)
  return of_graph(name, g, model.num_classes)


def of_graph(name: str, g: graph_lib.Graph, num_classes: int) -> Summary:
  """The table of an already traced model (batch 1)."""
  table = rows(g)
  return Summary(name, g.input_shape[1:], num_classes, tuple(table), totals(g, table))


# ---- formatting ----


def _axes(values: tuple) -> str:
  if all(v is None for v in values):
    return "-"
  return str(values[0]) if len(set(values)) == 1 else "x".join(map(str, values))


def _mb(n: int) -> str:
  """Bytes in decimal units, as the course writes them (93MB, 150K)."""
  for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
    if n >= scale:
      return f"{n / scale:,.1f} {unit}"
  return f"{n} B"


def to_json(s: Summary) -> str:
  layers = [dict(dataclasses.asdict(r), shape=list(r.shape), rf=list(r.rf), jump=list(r.jump))
            for r in s.rows]
  return json.dumps({"model": s.model, "input_shape": list(s.input_shape),
                     "num_classes": s.num_classes, "layers": layers, "totals": dict(s.totals)},
                    indent=1, allow_nan=False)


def to_csv(s: Summary) -> str:
  out = io.StringIO()
  w = csv.writer(out, lineterminator="\n")
  w.writerow(["layer", "kind", "output", "activations", "params", "weights", "non_trainable",
              "macs", "rf_h", "rf_w", "jump_h", "jump_w"])
  for r in s.rows:
    w.writerow([r.name, r.kind, "x".join(map(str, r.shape)), r.activations, r.params, r.weights,
                r.non_trainable, r.macs, *r.rf, *("" if j is None else j for j in r.jump)])
  t = s.totals
  w.writerow(["total", "", "", t["activations"], t["params"], "", t["non_trainable_params"],
              t["macs"], "", "", "", ""])
  return out.getvalue()


def to_table(s: Summary) -> str:
  head = ("layer", "kind", "output", "activations", "params", "MACs", "RF", "jump")
  body = [(r.name, r.kind, "x".join(map(str, r.shape)), f"{r.activations:,}",
           f"{r.params:,}", f"{r.macs:,}", _axes(r.rf), _axes(r.jump)) for r in s.rows]
  t = s.totals
  body.append(("total", "", "", f"{t['activations']:,}", f"{t['params']:,}",
               f"{t['macs']:,}", "", ""))
  widths = [max(len(str(row[i])) for row in (head, *body)) for i in range(len(head))]
  fmt = lambda row: "  ".join(str(c).ljust(w) if i < 3 else str(c).rjust(w)
                              for i, (c, w) in enumerate(zip(row, widths))).rstrip()
  lines = [f"{s.model}: {'x'.join(map(str, s.input_shape))} input, {s.num_classes} classes",
           fmt(head), *map(fmt, body), ""]
  lines.append(f"params: {t['params']:,} trainable + {t['non_trainable_params']:,} "
               f"non-trainable = {_mb(t['param_bytes'])}")
  if t["params_outside_rows"]:
    lines.append(f"  ({t['params_outside_rows']:,} of them in modules the inference pass "
                 "doesn't run, e.g. auxiliary heads)")
  lines.append(f"activations per image: {t['activations']:,} values = "
               f"{_mb(t['activation_bytes'])} forward, "
               f"{_mb(t['activation_bytes_fwd_bwd'])} forward + backward (x2)")
  lines.append(f"MACs per image: {t['macs']:,} ({2 * t['macs'] / 1e9:,.2f} GFLOPs); "
               f"{t['macs_excluding_padding']:,} without the taps on zero padding "
               "(what XLA's cost analysis counts)")
  return "\n".join(lines)


def render(s: Summary, fmt: str) -> str:
  if fmt not in FORMATS:
    raise UserError(f"unknown format {fmt!r}. Valid choices: {', '.join(FORMATS)}.")
  return {"table": to_table, "json": to_json, "csv": to_csv}[fmt](s)
