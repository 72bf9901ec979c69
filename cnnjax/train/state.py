"""The training state: everything a step reads and writes, and nothing else."""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax
from flax import linen as nn


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any

  def variables(self) -> dict[str, Any]:
    """The model variables (``params`` and, if the model has BatchNorm, ``batch_stats``)."""
    if self.batch_stats:
      return {"params": self.params, "batch_stats": self.batch_stats}
    return {"params": self.params}


def init_variables(model: nn.Module, key: jax.Array, input_shape: tuple[int, ...]) -> dict:
  """Fresh model variables for inputs of ``input_shape`` (batch dimension included)."""
  params_key, dropout_key = jax.random.split(key)
  return model.init({"params": params_key, "dropout": dropout_key},
                    jnp.zeros(input_shape, jnp.float32), train=False)


def create(variables: dict, tx: optax.GradientTransformation) -> TrainState:
  params = variables["params"]
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    batch_stats=variables.get("batch_stats", {}), opt_state=tx.init(params))
