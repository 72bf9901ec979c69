"""A model traced once, every layer's output named; read or perturb them through flax.

``trace`` runs ``model.apply`` abstractly (``jax.make_jaxpr`` on shapes: no weights are
allocated) with ``capture_intermediates=True``, so the jaxpr's outputs include every submodule's
``__call__`` output and every sown feature (``stem``, ``stageN``, ``pre_logits``). The jaxpr
serves what needs the whole computation: receptive fields and the per-layer table (layers that
are plain functions rather than modules, like a global mean, are found there as structural
primitives by ``receptive.analyse``).

``forward`` evaluates the model itself with flax's public mechanisms: ``capture_intermediates``
with a filter reads module outputs (sown features are in ``intermediates`` anyway), and
``nn.intercept_methods`` adds a perturbation to a module call's output — or, for a sown feature
that a function computes after the last module (``relu(conv1(x))``), to the input of the one
module that consumes it. The gradient with respect to a perturbation at zero is the gradient
with respect to that feature map, which is what Grad-CAM needs. Which module call carries each
sown feature is read off the jaxpr once, in ``trace``: the same jaxpr variable.
"""

from __future__ import annotations

import collections
import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

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


@dataclasses.dataclass(frozen=True)
class Site:
  """Where ``forward`` finds a named output, and which module call it perturbs for it.

  ``keys`` is the path in the ``intermediates`` collection (``('stem', 0)``,
  ``('layer1_0', 'conv1', '__call__', 0)``; ``()`` for the logits). A perturbation is added to
  the output (``at='output'``) or the first argument (``at='input'``) of call number ``call``
  of module ``module``; ``module`` is None where there is no such call.
  """

  keys: tuple
  module: str | None = None
  call: int = 0
  at: str = "output"


@dataclasses.dataclass(frozen=True, eq=False)  # hashed by identity: a cache key for compiles
class Graph:
  """The traced forward pass of ``model`` on inputs of ``input_shape`` (batch included).

  Attributes:
    model: the flax module (``forward`` applies it).
    variables: shapes and dtypes of the model variables it was traced with.
    input_shape: NHWC shape of ``x``.
    taps: name -> jaxpr variable: ``input``, ``logits``, sown names, module paths
      (``conv1_1``, ``layer1_0/conv1``; ``#i`` marks the i-th call, i > 0) and the layers.
    sites: the taps ``forward`` reads (all but ``input`` and functional layers' rows).
    sown: the sown names, in model order.
    classes: module path -> class name, for every module called.
    analysis: receptive fields and structural events (``receptive.Analysis``).
    layers: the table's rows, in forward order (``layers``).
  """

  model: nn.Module
  variables: Any
  input_shape: tuple[int, ...]
  taps: Mapping[str, Any]
  sites: Mapping[str, Site]
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

  def site(self, name: str) -> Site:
    """Where ``forward`` reads ``name``; functions' outputs (a global mean) have none."""
    if name in self.sites:
      return self.sites[name]
    if name in self.taps:
      raise UserError(f"layer {name!r} is computed by a function, not a module, so it can't be "
                      f"read or perturbed; the layers that can: {', '.join(sorted(self.sites))}.")
    raise unknown("layer", name, self.sites)


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


def _named(keys: tuple) -> tuple[str, Site] | None:
  """Tap name and site of an ``intermediates`` key path (None: the top module's own output)."""
  if "__call__" not in keys:  # sown: (*module path, name, index)
    name = "/".join(map(str, keys[:-1])) + (f"#{keys[-1]}" if keys[-1] else "")
    return name, Site(keys)
  cut = keys.index("__call__")
  module, index, rest = "/".join(map(str, keys[:cut])), keys[cut + 1], keys[cut + 2:]
  if not module:
    return None
  name = module + (f"#{index}" if index else "")
  if rest:  # one part of a module's tuple or dict output: readable, not perturbed
    return f"{name}/{'/'.join(map(str, rest))}", Site(keys)
  return name, Site(keys, module, index, "output")


def _carrier(jaxpr, var, outputs: Sequence[tuple[Site, Any]],
             inputs: Sequence[tuple[str, int, Any]]) -> Site | None:
  """The module call that carries sown ``var``: its output, or its input if nothing else reads it.

  A sown feature is the output of a module call (``stageN`` after a block), or a function of
  one (``relu(conv1(x))``) that the next module reads; an add at that module's input changes
  the feature everywhere only if no operation outside that module reads it.
  """
  same = [site for site, v in outputs if v is var]
  if same:
    return min(same, key=lambda site: site.module.count("/"))
  readers = {module_path(str(e.source_info.name_stack))
             for e in jaxpr.eqns if any(v is var for v in e.invars)}
  for path, call, value in inputs:
    if value is var and readers and all(inside(r, path) for r in readers):
      return Site((), path, call, "input")
  return None


def _named_outputs(jaxpr, out_shape, inputs) -> tuple[dict, dict[str, Site], list[str]]:
  """(taps, sites, sown names) from the traced outputs: logits, intermediates, call inputs.

  ``inputs`` are (module path, call, value) of every submodule call whose first argument is an
  array; their values are the last outputs of ``jaxpr``.
  """
  outvars = iter(jaxpr.outvars)
  taps, sites, sown = {"logits": next(outvars)}, {"logits": Site(())}, []
  for path, _ in jax.tree_util.tree_flatten_with_path(out_shape[0][1])[0]:
    var, keys = next(outvars), tuple(getattr(k, "key", getattr(k, "idx", None)) for k in path)
    named = _named(keys[1:])  # past 'intermediates'
    if named is not None and named[0] not in taps:
      taps[named[0]], sites[named[0]] = var, named[1]
      if "__call__" not in keys:
        sown.append(named[0])
  inputs = [(path, call, var) for (path, call, _), var in zip(inputs, outvars)]
  outputs = [(site, taps[n]) for n, site in sites.items() if site.module is not None]
  for name in sown:
    site = _carrier(jaxpr, taps[name], outputs, inputs)
    if site is not None:
      sites[name] = dataclasses.replace(site, keys=sites[name].keys)
  return taps, sites, sown


def trace(model: nn.Module, variables: Any, input_shape: Sequence[int]) -> Graph:
  """Traces ``model`` at ``input_shape`` with ``variables`` (arrays or shapes), eval mode."""
  shapes = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), variables)
  classes: dict[str, str] = {}
  counts: collections.Counter = collections.Counter()
  inputs: list[tuple[str, int, Any]] = []  # (module path, call, first argument)

  def record(next_fun, args, kwargs, context):
    path = "/".join(context.module.path)
    classes.setdefault(path, type(context.module).__name__)
    if context.method_name == "__call__" and path:
      if args and isinstance(args[0], jax.Array):
        inputs.append((path, counts[path], args[0]))
      counts[path] += 1
    return next_fun(*args, **kwargs)

  def forward(v, x):
    counts.clear()
    inputs.clear()
    with nn.intercept_methods(record):
      out = model.apply(v, x, train=False, capture_intermediates=True, mutable=["intermediates"])
    return out, [value for *_, value in inputs]

  x = jax.ShapeDtypeStruct(tuple(input_shape), jnp.float32)
  try:
    closed, out_shape = jax.make_jaxpr(forward, return_shape=True)(shapes, x)
  except UserError:
    raise
  except Exception as e:  # pylint: disable=broad-except  # shape errors from deep in flax
    raise UserError(f"{type(model).__name__} can't take input of shape {tuple(input_shape)}: "
                    f"{str(e).splitlines()[0]}") from None
  taps, sites, sown = _named_outputs(closed.jaxpr, out_shape, inputs)
  n_var = len(jax.tree.leaves(shapes))
  analysis = receptive.analyse(closed, [None] * n_var + [receptive.input_state(x.shape)])
  taps["input"] = closed.jaxpr.invars[n_var]
  sown.sort(key=lambda name: analysis.order.get(taps[name], -1))  # model order, not a-z
  rows = layers(taps, classes, shapes, analysis)
  for layer in rows:
    taps.setdefault(layer.name, layer.var)
  return Graph(model, shapes, tuple(input_shape), taps, sites, tuple(sown), classes, analysis,
               rows)


def _adding(deltas: Mapping[tuple[str, int, str], jax.Array]):
  """An ``nn.intercept_methods`` interceptor adding ``deltas[(module, call, at)]`` there."""
  counts: collections.Counter = collections.Counter()

  def intercept(next_fun, args, kwargs, context):
    if context.method_name != "__call__":
      return next_fun(*args, **kwargs)
    path = "/".join(context.module.path)
    call = counts[path]
    counts[path] += 1
    if (path, call, "input") in deltas:
      args = (args[0] + deltas[path, call, "input"], *args[1:])
    out = next_fun(*args, **kwargs)
    return out + deltas[path, call, "output"] if (path, call, "output") in deltas else out

  return intercept


def _lookup(tree: Any, keys: tuple) -> Any:
  for key in keys:
    tree = tree[key]
  return tree


def forward(g: Graph, variables: Any, x: jax.Array, read: Sequence[str] = (),
            add: Mapping[str, jax.Array] | None = None) -> tuple[jax.Array, dict]:
  """(logits, {name: value} for ``read``) of ``g``'s model on ``x``, plus ``add[name]`` there.

  Pure and jit-able; the gradient with respect to ``add[name]`` at zero is the gradient with
  respect to that output. Every name is checked (and unknown ones listed) before anything runs.
  """
  sites = {name: g.site(name) for name in read}
  deltas = {}
  for name, delta in (add or {}).items():
    site = g.site(name)
    if site.module is None:
      can = sorted(n for n, s in g.sites.items() if s.module is not None)
      raise UserError(f"layer {name!r} isn't the output or the sole input of a module call, so "
                      f"it can't be perturbed; the layers that can: {', '.join(can)}.")
    deltas[site.module, site.call, site.at] = delta
  wanted = {"/".join(map(str, s.keys[:s.keys.index("__call__")]))
            for s in sites.values() if "__call__" in s.keys}
  capture = lambda module, method: method == "__call__" and "/".join(module.path) in wanted
  with nn.intercept_methods(_adding(deltas)):
    logits, state = g.model.apply(variables, x, train=False, capture_intermediates=capture,
                                  mutable=["intermediates"])
  found = state.get("intermediates", {})
  return logits, {n: _lookup(found, s.keys) if s.keys else logits for n, s in sites.items()}
