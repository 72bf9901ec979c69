"""The one model registry: every name, in one visible table built from the family files.

Each family file exports ``SPECS``, a tuple of ``ModelSpec``; the families are listed here
explicitly, in the course's order. A duplicate name is an error at import.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from cnnjax.errors import UserError, unknown
from cnnjax.models import alexnet, googlenet, inception_v3, lenet, resnet, vgg, zfnet
from cnnjax.models.spec import ModelSpec

_FAMILIES = (lenet, alexnet, zfnet, vgg, googlenet, resnet, inception_v3)

# Module fields that are plumbing, never user options.
_NOT_OPTIONS = frozenset({"parent", "name", "num_classes"})


def _build(families) -> dict[str, ModelSpec]:
  table: dict[str, ModelSpec] = {}
  for family in families:
    for spec in family.SPECS:
      if spec.name in table:
        raise ValueError(f"model {spec.name!r} is registered twice")
      table[spec.name] = spec
  return table


_REGISTRY = _build(_FAMILIES)


def names() -> list[str]:
  """Every registered model name, in registration order."""
  return list(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
  """The ``ModelSpec`` of ``name``; an unknown name raises listing close matches."""
  if name not in _REGISTRY:
    raise unknown("model", name, _REGISTRY)
  return _REGISTRY[name]


def options(name: str) -> dict[str, Any]:
  """The options ``create(name, ...)`` accepts, with their defaults."""
  spec = get_spec(name)
  return {f.name: f.default for f in dataclasses.fields(spec.module)
          if f.name not in _NOT_OPTIONS and f.name not in spec.fixed}


def _resolve_dtype(value: Any) -> Any:
  if isinstance(value, str):
    try:
      return jnp.dtype(value)
    except TypeError as e:
      raise UserError(f"unknown dtype {value!r}. Valid choices: float32, bfloat16, float16.") from e
  return value


def check_options(name: str, **opts: Any) -> None:
  """Raises ``UserError`` for an unknown model or an option it doesn't take (None: unset)."""
  valid = options(name)
  bad = sorted(k for k, v in opts.items() if k not in valid and v is not None)
  if bad:
    raise UserError(f"model {name!r} takes no option {bad[0]!r}. "
                    f"Valid options: {', '.join(sorted(valid))}.")


def create(name: str, *, num_classes: int | None = None, **opts: Any) -> nn.Module:
  """Builds the registered model ``name`` as a ``flax.linen.Module``.

  Args:
    name: a registry name (see ``names()``).
    num_classes: size of the classifier head; the model's default when None.
    **opts: module options (``activation``, ``pool``, ``dtype``, ...). An option set to None
      keeps the model's default, so configs can list options without overriding them.
  """
  spec = get_spec(name)
  check_options(name, **opts)
  kwargs = {k: v for k, v in opts.items() if v is not None}
  if "dtype" in kwargs:
    kwargs["dtype"] = _resolve_dtype(kwargs["dtype"])
  if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 1):
    raise UserError(f"num_classes must be a positive integer, got {num_classes!r}.")
  return spec.module(num_classes=num_classes or spec.num_classes, **spec.fixed, **kwargs)


def init_variables(model: nn.Module, key: jax.Array, input_shape: tuple[int, ...]) -> dict:
  """Fresh variables of ``model`` for inputs of ``input_shape`` (batch dimension included)."""
  params_key, dropout_key = jax.random.split(key)
  return model.init({"params": params_key, "dropout": dropout_key},
                    jnp.zeros(input_shape, jnp.float32), train=False)


def abstract_variables(model: nn.Module, input_shape: tuple[int, ...]) -> dict:
  """``init_variables``'s shapes and dtypes (``jax.ShapeDtypeStruct``s): traced, nothing is
  computed or allocated."""
  return jax.eval_shape(lambda: init_variables(model, jax.random.key(0), input_shape))
