"""Initialising from a checkpoint: a strict merge into a fresh init.

The fresh init is the reference tree. The checkpoint fills it leaf by leaf; only leaves whose path
matches an explicit skip pattern keep their init. Anything else that differs — a missing leaf, an
unexpected one, a shape mismatch — is an error naming the paths and shapes.

Paths are written without the collection: ``conv1/kernel``, ``layer1_0/bn1/mean``. A pattern is a
regular expression searched in that path; the keyword ``head`` stands for every parameter whose
shape depends on the number of classes (the classifier and any auxiliary classifiers).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from flax import traverse_util
from flax import linen as nn

from cnnjax import trees
from cnnjax.errors import UserError
from cnnjax.transfer import shapes

HEAD = "head"
SHOWN = 12  # differences an error lists before "(and K more)"


def flatten(variables: Mapping[str, Any]) -> dict[tuple[str, str], Any]:
  """{(collection, 'module/.../leaf'): value} over the model collections."""
  return {(collection, path): value for collection in shapes.COLLECTIONS
          for path, value in trees.flat(dict(variables.get(collection, {}))).items()}


def unflatten(flat: Mapping[tuple[str, str], Any]) -> dict[str, Any]:
  out: dict[str, dict] = {}
  for (collection, path), value in flat.items():
    out.setdefault(collection, {})[tuple(path.split("/"))] = value
  return {c: traverse_util.unflatten_dict(v) for c, v in out.items()}


def head_paths(model: nn.Module, input_shape: tuple[int, ...]) -> set[str]:
  """The paths (collection dropped, as skip patterns see them) of the leaves whose shape
  depends on ``num_classes``."""
  return {p.split("/", 1)[1] for p in shapes.head_paths(model, input_shape)}


def _matcher(patterns: Iterable[str], heads: set[str]):
  compiled = []
  for p in patterns:
    try:
      compiled.append(re.compile(p))
    except re.error as e:
      raise UserError(f"bad pattern {p!r}: {e}.") from None
  use_head = HEAD in patterns
  return lambda path: (use_head and path in heads) or any(c.search(path) for c in compiled
                                                          if c.pattern != HEAD)


def merge(reference: Mapping[str, Any], loaded: Mapping[str, Any], skip: Sequence[str] = (),
          heads: set[str] = frozenset()) -> tuple[dict[str, Any], list[str]]:
  """``reference`` with every leaf taken from ``loaded``, except those matching ``skip``.

  Returns the merged variables and the skipped paths. Raises ``UserError`` listing every
  missing, unexpected or mis-shaped leaf that no pattern explains.
  """
  keep_fresh = _matcher(skip, heads)
  problems = trees.differences(
      {p: s for p, s in shapes.leaf_specs(loaded).items() if not keep_fresh(p)},
      {p: s for p, s in shapes.leaf_specs(reference).items() if not keep_fresh(p)},
      "the checkpoint", collapse=True)
  if problems:
    plural = "s" if len(problems) > 1 else ""
    raise UserError(f"the checkpoint does not fit the model ({len(problems)} difference{plural} "
                    f"outside config.init_skip={tuple(skip)!r}; add skip patterns, e.g. "
                    f"config.init_skip=('head',), for leaves to keep fresh): "
                    f"{trees.joined(problems, SHOWN)}")
  ref, new = flatten(reference), flatten(loaded)
  merged = {key: init if keep_fresh(key[1]) else new[key] for key, init in ref.items()}
  return unflatten(merged), [f"{c}/{p}" for c, p in ref if keep_fresh(p)]
