"""Theoretical receptive fields, by interval analysis of the traced computation (a jaxpr).

For every array the model computes we track, for each spatial axis of the input (H and W),
which input rows (columns) each of its indices can depend on: an interval ``[lo[i], hi[i]]``
per index ``i``. The input starts with ``lo = hi = arange(H)`` and every primitive maps
intervals to intervals:

* a window op (``conv_general_dilated``, ``reduce_window_*``) of kernel ``k``, stride ``s``,
  dilation ``d`` and low padding ``p`` gives output ``o`` the union over its taps
  ``o·s + t·d − p``, ``t < k`` — which composes to the textbook ``r_out = r_in + (k−1)·d·j_in``,
  ``j_out = j_in·s`` (Araujo, Norris & Sim, Distill 2019) on a plain chain;
* element-wise ops (a residual add, ReLU, BatchNorm) take the union of their operands, and a
  channel concatenation the union of its branches: a multi-branch block gets the hull of its
  branches, i.e. the max over paths when (as in every model here) the branches are centred;
* slices, pads, transposes, reshapes and broadcasts move the intervals with the data; reducing
  or flattening a spatial axis (global pooling, a dense layer) leaves one interval, the hull.

Padding positions are extrapolated on the layer's own grid (index ``−1`` sits one jump before
index 0), so sizes are the architecture's — independent of the image border — as in the paper.
The result is exact for everything the models use. Why not gradients: a gradient is zero where
a ReLU is off or a max pool didn't pick a pixel, so it measures an *effective* field (we draw it
in ``visualize``), never the theoretical one; setting weights to ones doesn't fix max pooling.
A primitive without a rule in ``intervals`` falls back to "depends on everything" for the axes
it touches and is listed in ``Analysis.approximate``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from jax.extend import core as jcore

from cnnjax.inspect.intervals import RULES, Axis, State, fallback, input_state

__all__ = ["Analysis", "Axis", "Event", "State", "analyse", "input_state"]


@dataclasses.dataclass
class Event:
  """One structural operation met on the way (a conv, a dense layer, a pool)."""

  order: int
  scope: str  # flax module path + method scopes, '/'-joined
  kind: str  # conv | dense | max_pool | avg_pool | global_avg_pool | global_max_pool
  var: object  # the jaxpr variable it produces
  macs: int  # multiply-accumulates for the traced batch
  macs_inside: int  # the same without the taps that fall on zero padding (what XLA counts)


@dataclasses.dataclass
class Analysis:
  states: dict  # jaxpr Var -> State (top-level and nested variables)
  events: list[Event]
  order: dict  # jaxpr Var -> position in the walk (for ordering rows)
  approximate: set[str]


CALLS = frozenset({"jit", "pjit", "closed_call", "core_call", "custom_jvp_call",
                   "custom_vjp_call", "custom_vjp_call_jaxpr", "remat", "checkpoint"})


def _call_jaxpr(eqn):
  """The sub-jaxpr of a call-like primitive (jit, custom_jvp/vjp, remat), or None."""
  if eqn.primitive.name not in CALLS:
    return None
  for value in eqn.params.values():
    jaxpr = getattr(value, "jaxpr", value)
    if isinstance(jaxpr, jcore.Jaxpr) and len(jaxpr.invars) == len(eqn.invars) and len(
        jaxpr.outvars) == len(eqn.outvars):
      return jaxpr
  return None


def _scope(prefix: str, eqn) -> str:
  inner = str(eqn.source_info.name_stack)
  return "/".join(p for p in (prefix, inner) if p)


def analyse(closed: jcore.ClosedJaxpr, input_states: Sequence[State | None]) -> Analysis:
  """Receptive-field states of every variable of ``closed`` given its inputs' states."""
  result = Analysis({}, [], {}, set())
  _walk(closed.jaxpr, list(input_states), "", result)
  return result


def _walk(jaxpr: jcore.Jaxpr, in_states, prefix: str, result: Analysis) -> list:
  env = dict(zip(jaxpr.invars, in_states))
  result.states.update(env)
  read = lambda v: None if isinstance(v, jcore.Literal) else env.get(v)
  for eqn in jaxpr.eqns:
    states = [read(v) for v in eqn.invars]
    scope = _scope(prefix, eqn)
    if all(s is None for s in states):
      outs = [None] * len(eqn.outvars)
    elif (sub := _call_jaxpr(eqn)) is not None:
      outs = _walk(sub, states, scope, result)
    else:
      shapes = [getattr(v.aval, "shape", ()) for v in eqn.invars]
      rule = RULES.get(eqn.primitive.name, fallback)
      outs, event = rule(eqn, states, shapes)
      if event == "approximate":
        result.approximate.add(eqn.primitive.name)
      elif event is not None:
        result.events.append(Event(len(result.order), scope, event[0], eqn.outvars[0],
                                   *event[1:]))
    for v, s in zip(eqn.outvars, outs):
      if not isinstance(v, jcore.DropVar):
        env[v] = s
        result.states[v] = s
        result.order[v] = len(result.order)
  return [read(v) for v in jaxpr.outvars]
