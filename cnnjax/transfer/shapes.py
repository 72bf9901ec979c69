"""Variable trees compared by paths and shapes: the reference tree, the classifier heads, and a
one-line diff."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flax import linen as nn

from cnnjax import models, trees

_SHOWN = 8  # paths listed per kind of difference


def reference(name: str, num_classes: int | None, options: Mapping[str, Any]) -> dict:
  """``{'params', 'batch_stats'}`` as ``create(name, ...)`` initialises them (ShapeDtypeStructs).

  Traced with ``jax.eval_shape`` at the model's natural input size: nothing is allocated.
  """
  spec = models.get_spec(name)
  model = models.create(name, num_classes=num_classes, **options)
  tree = models.abstract_variables(model, (1, spec.input_size, spec.input_size, spec.channels))
  return {k: v for k, v in tree.items() if k in ("params", "batch_stats")}


def head_paths(model: nn.Module, input_shape: tuple[int, ...]) -> set[str]:
  """Paths (``params/fc/kernel``) of the leaves whose shape depends on ``num_classes`` (the
  classifier and any auxiliary classifiers): two abstract inits with different class counts."""
  a, b = (trees.shapes(models.abstract_variables(model.clone(num_classes=k), input_shape))
          for k in (7, 11))
  return {p for p in a if a[p] != b.get(p)}


def _listed(kind: str, items: list[str]) -> str:
  more = f" (+{len(items) - _SHOWN} more)" if len(items) > _SHOWN else ""
  return f"{kind} {', '.join(items[:_SHOWN])}{more}"


def _collapsed(paths: list[str], universe: list[str]) -> list[str]:
  """``paths`` (a subset of ``universe``) as the fewest module paths, collection dropped:
  a module whose every leaf is in ``paths`` is named once (``layer4_1``, not its 10 leaves)."""
  inside = set(paths)
  modules = [u.split("/", 1)[1] for u in universe]
  out: dict[str, None] = {}
  for path in paths:
    parts = path.split("/")[1:]
    for k in range(1, len(parts) + 1):
      prefix = "/".join(parts[:k])
      under = [u for u, m in zip(universe, modules) if m == prefix or m.startswith(prefix + "/")]
      if all(u in inside for u in under):
        out[prefix] = None
        break
  return list(out)


def mismatch(expected: Mapping[str, Any], got: Mapping[str, Any]) -> str | None:
  """None if ``got`` has exactly the paths and shapes of ``expected``, else one line naming the
  missing and unexpected modules and the mis-shaped leaves."""
  want, have = trees.shapes(expected), trees.shapes(got)
  missing = _collapsed([p for p in want if p not in have], list(want))
  unexpected = _collapsed([p for p in have if p not in want], list(have))
  shaped = [f"{p} {have[p]} (model {want[p]})" for p in want if p in have and have[p] != want[p]]
  parts = [_listed(kind, items) for kind, items in (
      ("missing", missing), ("unexpected", unexpected), ("mis-shaped", shaped)) if items]
  return "; ".join(parts) or None
