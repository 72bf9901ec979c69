"""Variables compared with the model's: the reference tree, the classifier heads, and a one-line
diff (``trees.differences``, paths without the collection)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flax import linen as nn

from cnnjax import models, trees

COLLECTIONS = ("params", "batch_stats")  # the model's variables, as transfer reads and writes them


def reference(name: str, num_classes: int | None, options: Mapping[str, Any]) -> dict:
  """``{'params', 'batch_stats'}`` as ``create(name, ...)`` initialises them (ShapeDtypeStructs).

  Traced with ``jax.eval_shape`` at the model's natural input size: nothing is allocated.
  """
  spec = models.get_spec(name)
  model = models.create(name, num_classes=num_classes, **options)
  tree = models.abstract_variables(model, (1, spec.input_size, spec.input_size, spec.channels))
  return {k: v for k, v in tree.items() if k in COLLECTIONS}


def head_paths(model: nn.Module, input_shape: tuple[int, ...]) -> set[str]:
  """Paths (``params/fc/kernel``) of the leaves whose shape depends on ``num_classes`` (the
  classifier and any auxiliary classifiers): two abstract inits with different class counts."""
  seven, eleven = (trees.shapes(models.abstract_variables(model.clone(num_classes=k), input_shape))
                   for k in (7, 11))
  return {p for p in seven if seven[p] != eleven.get(p)}


def leaf_specs(variables: Mapping[str, Any]) -> dict[str, trees.Spec]:
  """``{path: (shape, dtype)}`` over ``params`` and ``batch_stats``, paths without the collection
  (``layer1_0/bn1/mean``) as skip patterns see them, so a module's parameters and statistics
  are one module in a diff. (A name in both collections, which flax allows and no cnnjax model
  has, keeps its collection on the second.)"""
  out: dict[str, trees.Spec] = {}
  for collection in COLLECTIONS:
    for path, leaf in trees.flat(dict(variables.get(collection, {}))).items():
      out[f"{collection}/{path}" if path in out else path] = trees.spec(leaf)
  return out


def mismatch(expected: Mapping[str, Any], got: Mapping[str, Any]) -> str | None:
  """None if the variables ``got`` have exactly the paths, shapes and dtypes of ``expected``,
  else one line: the differing leaves, a wholly missing or unexpected module named once."""
  lines = trees.differences(leaf_specs(got), leaf_specs(expected), "the converted weights",
                            collapse=True)
  return trees.joined(lines) if lines else None
