"""Variable trees addressed by paths: the one flattener and the one tree diff every module shares.

A leaf's path is its keys joined by ``/`` (``params/conv1/kernel``, ``opt_state/0/mu/fc/bias``),
the same for dict keys, dataclass fields and tuple indices, so paths read alike in every error
message. Every "this tree doesn't fit that one" message (a checkpoint that doesn't fit the
config's state, a checkpoint that doesn't merge into a fresh init, converted weights that don't
fit the model) is written by ``differences`` and cut to one line by ``joined``; the callers add
only their own context (which config keys may cause it, which skip patterns apply).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

Spec = tuple[tuple[int, ...], str]  # (shape, dtype name): what a diff compares
SHOWN = 8  # lines a joined diff shows before "(and K more)"


def _key(k: Any) -> str:
  for attr in ("key", "name", "idx"):
    if hasattr(k, attr):
      return str(getattr(k, attr))
  return str(k)


def flat(tree: Any) -> dict[str, Any]:
  """``{'a/b/c': leaf}`` for every leaf of ``tree``, in the tree's order."""
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {"/".join(_key(k) for k in path): leaf for path, leaf in leaves}


def shapes(tree: Any) -> dict[str, tuple[int, ...]]:
  """``{'a/b/c': shape}`` for every leaf with a shape (arrays, ShapeDtypeStructs, metadata)."""
  return {p: tuple(leaf.shape) for p, leaf in flat(tree).items() if hasattr(leaf, "shape")}


def spec(leaf: Any) -> Spec:
  """(shape, dtype name) of an array, a ShapeDtypeStruct, orbax's metadata or a number."""
  if hasattr(leaf, "shape") and hasattr(leaf, "dtype"):
    return tuple(leaf.shape), str(np.dtype(leaf.dtype))
  leaf = np.asarray(leaf)
  return leaf.shape, str(leaf.dtype)


def leaf_specs(tree: Any) -> dict[str, Spec]:
  """``{path: (shape, dtype)}`` of every leaf of ``tree`` that has a shape."""
  return {p: spec(leaf) for p, leaf in flat(tree).items() if hasattr(leaf, "shape")}


def _written(s: Spec) -> str:
  return f"{s[1]}{list(s[0])}"  # float32[3, 3, 64, 64]


def _modules(paths: Sequence[str], universe: Sequence[str]) -> dict[str, str]:
  """Each of ``paths`` (a subset of ``universe``) -> the shortest prefix whose every leaf in
  ``universe`` is in ``paths`` (the module that is wholly missing), or the path itself."""
  def prefixes(path):
    parts = path.split("/")
    return ["/".join(parts[:k]) for k in range(1, len(parts))]
  inside = Counter(p for path in paths for p in prefixes(path))
  total = Counter(p for path in universe for p in prefixes(path))
  return {path: next((p for p in prefixes(path) if inside[p] == total[p]), path)
          for path in paths}


def differences(got: Mapping[str, Spec], expected: Mapping[str, Spec], got_name: str,
                expected_name: str = "the model", *, collapse: bool = False) -> list[str]:
  """One line per leaf where ``got`` differs from ``expected`` (both ``{path: (shape, dtype)}``),
  in path order; the names say what each tree is (``'the checkpoint'``, ``'the model'``)::

    fc/bias float32[10] is not in the checkpoint
    aux/kernel float32[3, 4] is in the checkpoint, not in the model
    fc/kernel is float32[84, 10] in the checkpoint, float32[84, 12] in the model

  With ``collapse``, a module of which every leaf is missing (or unexpected) is one line,
  ``layer4_1 (10 leaves) is not in the checkpoint``."""
  missing = [p for p in expected if p not in got]
  unexpected = [p for p in got if p not in expected]
  lines: list[tuple[str, str]] = []  # (the path or its module, the line)
  for paths, universe, where in ((missing, expected, f"is not in {got_name}"),
                                 (unexpected, got, f"is in {got_name}, not in {expected_name}")):
    groups: dict[str, list[str]] = {}  # module -> its leaves in ``paths``
    for path, module in (_modules(paths, list(universe)) if collapse else
                         {p: p for p in paths}).items():
      groups.setdefault(module, []).append(path)
    for module, leaves in groups.items():
      if len(leaves) == 1:  # a leaf, or a module of one leaf: the leaf itself
        lines.append((leaves[0], f"{leaves[0]} {_written(universe[leaves[0]])} {where}"))
      else:
        lines.append((module, f"{module} ({len(leaves)} leaves) {where}"))
  for path in expected:
    if path in got and got[path] != expected[path]:
      lines.append((path, f"{path} is {_written(got[path])} in {got_name}, "
                          f"{_written(expected[path])} in {expected_name}"))
  return [line for _, line in sorted(lines)]


def joined(lines: Sequence[str], shown: int = SHOWN) -> str:
  """``'a; b; c (and K more)'``: the first ``shown`` of ``lines`` on one line."""
  more = f" (and {len(lines) - shown} more)" if len(lines) > shown else ""
  return "; ".join(lines[:shown]) + more
