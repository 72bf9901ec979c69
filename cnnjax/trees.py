"""Variable trees addressed by paths: the one flattener every module shares.

A leaf's path is its keys joined by ``/`` (``params/conv1/kernel``, ``opt_state/0/mu/fc/bias``),
the same for dict keys, dataclass fields and tuple indices, so paths read alike in every error
message (a checkpoint that doesn't fit, a transfer that doesn't merge, converted weights).
"""

from __future__ import annotations

from typing import Any

import jax


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
