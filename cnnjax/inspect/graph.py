"""A model as one traced graph in which every layer's output is addressable by name.

``trace`` runs ``model.apply`` abstractly (``jax.make_jaxpr`` on shapes: no weights are
allocated) with ``capture_intermediates=True``, so the jaxpr's outputs include every submodule's
``__call__`` output and every sown feature (``stem``, ``stageN``, ``pre_logits``). Layers that
are plain functions rather than modules (LeNet's pooling, a global mean) are found as
structural primitives by ``receptive.analyse``. ``run`` evaluates the jaxpr again, jit-able
and differentiable, returning any named outputs ("taps") and optionally adding a perturbation
at one of them — which is how Grad-CAM gets the gradient with respect to a feature map that a
model only sows.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn
from jax.extend import core as jcore

from cnnjax.errors import UserError, unknown
from cnnjax.inspect import receptive


@dataclasses.dataclass(frozen=True)
class Layer:
  """One row of a per-layer table (see ``layers``)."""

  name: str  # module path (``conv1_1``, ``layer1_0/bn1``) or ``<module>/pool<n>`` for a function
  kind: str  # module class (Conv, Dense, BatchNorm, Pool, ...) or the op (max_pool, ...)
  var: Any  # the jaxpr variable holding its output
  module: str | None  # module path when the layer is a module (it owns its parameters)
  macs: int


@dataclasses.dataclass(frozen=True, eq=False)  # hashed by identity: a cache key for compiles
class Graph:
  """The traced forward pass of ``model`` on inputs of ``input_shape`` (batch included).

  Attributes:
    closed: the jaxpr of ``(variables, x) -> (logits, intermediates)``.
    variables: shapes and dtypes of the model variables it was traced with.
    input_shape: NHWC shape of ``x``.
    taps: name -> jaxpr variable: ``input``, ``logits``, sown names, module paths
      (``conv1_1``, ``layer1_0/conv1``; ``#i`` marks the i-th call, i > 0) and the layers.
    sown: the sown names, in model order.
    classes: module path -> class name, for every module called.
    analysis: receptive fields and structural events (``receptive.Analysis``).
    layers: the table's rows, in forward order (``layers``).
  """

  closed: jcore.ClosedJaxpr
  variables: Any
  input_shape: tuple[int, ...]
  taps: Mapping[str, Any]
  sown: tuple[str, ...]
  classes: Mapping[str, str]
  analysis: receptive.Analysis
  layers: tuple[Layer, ...] = ()

  def var(self, name: str):
    if name not in self.taps:
      raise unknown("layer", name, self.taps)
    return self.taps[name]

  def shape(self, name: str) -> tuple[int, ...]:
    return tuple(self.var(name).aval.shape)

  def field(self, name: str) -> receptive.State:
    """The receptive-field state of a named output (one ``receptive.Axis`` per H, W)."""
    return self.analysis.states[self.var(name)]


def module_path(scope: str) -> str:
  """Module path of a jaxpr name scope: drop the top class and method scopes (``Cls.method``)."""
  parts = scope.split("/")[1:]
  return "/".join(p for p in parts if "." not in p)


def inside(path: str, owner: str) -> bool:
  return path == owner or path.startswith(owner + "/")


def subtree(tree: Mapping, path: str) -> Any:
  """The part of a nested dict at module ``path`` ({} if there is none)."""
  for key in path.split("/") if path else ():
    if not isinstance(tree, Mapping) or key not in tree:
      return {}
    tree = tree[key]
  return tree


def _size(tree: Any) -> int:
  return sum(math.prod(a.shape) for a in jax.tree.leaves(tree))


def layers(taps: Mapping[str, Any], classes: Mapping[str, str], variables: Any,
           analysis: receptive.Analysis) -> tuple[Layer, ...]:
  """The rows: leaf modules with parameters or a structural op, then functional pools etc.

  A leaf module (Conv, Dense, BatchNorm, ``layers.Pool``) is one row, named by its path. A
  structural op outside every such module (``layers.pool``, a global mean) is a row named after
  the module that calls it: ``pool<n>``, ``global_pool<n>``, ``conv<n>``, ``dense<n>``.
  """
  paths = [p for p in classes if p and p in taps]
  leaves = [p for p in paths if not any(q.startswith(p + "/") for q in paths)]
  scopes = {module_path(e.scope) for e in analysis.events}
  params = variables.get("params", {})
  owners = [p for p in leaves if _size(subtree(params, p)) or any(inside(e, p) for e in scopes)]
  found = []
  for path in owners:
    macs = sum(e.macs for e in analysis.events if inside(module_path(e.scope), path))
    found.append(Layer(path, classes[path], taps[path], path, macs))
  counters: dict[str, int] = {}
  for e in analysis.events:
    where = module_path(e.scope)
    if any(inside(where, o) for o in owners):
      continue
    family = e.kind if e.kind in ("conv", "dense") else (
        "global_pool" if e.kind.startswith("global") else "pool")
    key = f"{where}/{family}" if where else family
    counters[key] = counters.get(key, 0) + 1
    found.append(Layer(f"{key}{counters[key]}", e.kind, e.var, None, e.macs))
  return tuple(sorted(found, key=lambda layer: analysis.order.get(layer.var, -1)))


def _tap_name(path) -> str | None:
  keys = [getattr(k, "key", getattr(k, "idx", None)) for k in path]
  if keys[0] == 0:
    return "logits"
  keys = keys[2:]  # past ('intermediates' dict of the mutable output)
  if "__call__" in keys:
    cut = keys.index("__call__")
    module, index = "/".join(map(str, keys[:cut])), keys[cut + 1]
    if not module:
      return None  # the top-level module's output: the logits again
    rest = "/".join(map(str, keys[cut + 2:]))
  else:
    module, index, rest = "/".join(map(str, keys[:-1])), keys[-1], ""
  name = module + (f"#{index}" if index else "")
  return f"{name}/{rest}" if rest else name


def trace(model: nn.Module, variables: Any, input_shape: Sequence[int]) -> Graph:
  """Traces ``model`` at ``input_shape`` with ``variables`` (arrays or shapes), eval mode."""
  shapes = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), variables)
  classes: dict[str, str] = {}

  def record(next_fun, args, kwargs, context):
    classes.setdefault("/".join(context.module.path), type(context.module).__name__)
    return next_fun(*args, **kwargs)

  def forward(v, x):
    return model.apply(v, x, train=False, capture_intermediates=True,
                       mutable=["intermediates"])

  x = jax.ShapeDtypeStruct(tuple(input_shape), jnp.float32)
  try:
    with nn.intercept_methods(record):
      closed, out_shape = jax.make_jaxpr(forward, return_shape=True)(shapes, x)
  except UserError:
    raise
  except Exception as e:  # pylint: disable=broad-except  # shape errors from deep in flax
    raise UserError(f"{type(model).__name__} can't take input of shape {tuple(input_shape)}: "
                    f"{str(e).splitlines()[0]}") from None
  paths = [p for p, _ in jax.tree_util.tree_flatten_with_path(out_shape)[0]]
  taps, sown = {}, []
  for path, var in zip(paths, closed.jaxpr.outvars):
    name = _tap_name(path)
    if name is not None and isinstance(var, jcore.Var):
      taps.setdefault(name, var)
      keys = [getattr(k, "key", None) for k in path]
      if "__call__" not in keys:
        sown.append(name)
  n_var = len(jax.tree.leaves(shapes))
  states = [None] * n_var + [receptive.input_state(x.shape)]
  analysis = receptive.analyse(closed, states)
  taps["input"] = closed.jaxpr.invars[n_var]
  sown.sort(key=lambda name: analysis.order.get(taps[name], -1))  # model order, not a-z
  rows = layers(taps, classes, shapes, analysis)
  for layer in rows:
    taps.setdefault(layer.name, layer.var)
  return Graph(closed, shapes, tuple(input_shape), taps, tuple(sown), classes, analysis, rows)


def run(graph: Graph, variables: Any, x: jax.Array, taps: Sequence[str] = (),
        perturb: Mapping[str, jax.Array] | None = None) -> tuple[jax.Array, dict]:
  """Evaluates the traced model: (logits, {tap: value}), adding ``perturb[tap]`` to taps.

  Pure and jit-able; gradients with respect to a perturbation at zero are gradients with
  respect to that feature map.
  """
  jaxpr = graph.closed.jaxpr
  leaves = jax.tree.leaves(variables)
  if jax.tree.structure(variables) != jax.tree.structure(graph.variables):
    raise UserError("the variables don't match the traced model's structure.")
  add = {graph.var(k): v for k, v in (perturb or {}).items()}
  env: dict = {}

  def write(v, value):
    env[v] = value + add[v] if v in add else value

  read = lambda v: v.val if isinstance(v, jcore.Literal) else env[v]
  for v, c in zip(jaxpr.constvars, graph.closed.consts):
    env[v] = c
  for v, value in zip(jaxpr.invars, [*leaves, x]):
    write(v, value)
  for eqn in jaxpr.eqns:
    bound = eqn.primitive.get_bind_params(eqn.params)  # older JAX: (subfuns, params)
    subfuns, params = bound if isinstance(bound, tuple) else ((), bound)
    outs = eqn.primitive.bind(*subfuns, *map(read, eqn.invars), **params)
    outs = outs if eqn.primitive.multiple_results else [outs]
    for v, value in zip(eqn.outvars, outs):
      if not isinstance(v, jcore.DropVar):
        write(v, value)
  return read(graph.taps["logits"]), {name: read(graph.var(name)) for name in taps}
