"""The training state: everything a step reads and writes, and nothing else."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax


@dataclasses.dataclass(frozen=True)
class TrainState:
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  # The exponential moving average of the model variables, {'params', 'batch_stats'}, or {}
  # when the run keeps none: then it is no node of the tree at all, so the tree and the
  # checkpoints are those of runs written before it existed (and they restore).
  ema: Any = dataclasses.field(default_factory=dict)

  def replace(self, **changes) -> TrainState:
    return dataclasses.replace(self, **changes)

  def variables(self) -> dict[str, Any]:
    """The model variables (``params`` and, if the model has BatchNorm, ``batch_stats``)."""
    if self.batch_stats:
      return {"params": self.params, "batch_stats": self.batch_stats}
    return {"params": self.params}

  def with_ema_weights(self) -> TrainState:
    """This state with the moving averages in place of the weights (to evaluate them)."""
    return self.replace(params=self.ema["params"], batch_stats=self.ema["batch_stats"])


_FIELDS = ("step", "params", "batch_stats", "opt_state")


def _flatten(state: TrainState):
  names = _FIELDS + (("ema",) if state.ema else ())
  return [(jax.tree_util.GetAttrKey(n), getattr(state, n)) for n in names], bool(state.ema)


def _unflatten(has_ema: bool, children) -> TrainState:
  return TrainState(*children) if has_ema else TrainState(*children, ema={})


jax.tree_util.register_pytree_with_keys(TrainState, _flatten, _unflatten)


def create(variables: dict, tx: optax.GradientTransformation, *, ema: bool = False
           ) -> TrainState:
  """A fresh state at step 0; with ``ema``, the moving averages start at ``variables``."""
  params = variables["params"]
  batch_stats = variables.get("batch_stats", {})
  averages = {"params": params, "batch_stats": batch_stats} if ema else {}
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats,
                    opt_state=tx.init(params), ema=jax.tree.map(jnp.copy, averages))


def ema_decay(decay: float, step: jax.Array, warmup: bool) -> jax.Array:
  """The decay of the average's update after ``step`` earlier updates: ``decay``, or with
  ``warmup`` ``min(decay, (1 + step) / (10 + step))`` (TensorFlow's ExponentialMovingAverage
  with ``num_updates``: 0.1, 0.18, 0.25, … so that the first updates move the average from its
  random initial weights quickly)."""
  if not warmup:
    return jnp.float32(decay)
  step = step.astype(jnp.float32)
  return jnp.minimum(jnp.float32(decay), (1.0 + step) / (10.0 + step))


def update_ema(state: TrainState, decay: jax.Array) -> TrainState:
  """``ema ← decay·ema + (1 − decay)·variables``, over params and batch stats."""
  new = {"params": state.params, "batch_stats": state.batch_stats}
  return state.replace(ema=jax.tree.map(lambda e, v: decay * e + (1.0 - decay) * v,
                                        state.ema, new))
