"""Orbax checkpoints of the training state plus the data iterator's position.

Saves are atomic (orbax writes a temporary directory and renames it when complete), so a run
killed at any moment restarts from the last complete checkpoint. Together with the grain
iterator state and per-step PRNG keys, resuming reproduces an uninterrupted run exactly.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp


def manager(directory: str, *, keep: int) -> ocp.CheckpointManager:
  """A CheckpointManager in ``directory`` keeping the ``keep`` most recent checkpoints."""
  options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
  return ocp.CheckpointManager(os.path.abspath(directory), options=options)


def save(mgr: ocp.CheckpointManager, step: int, state: Any, data_state: dict) -> None:
  """Saves ``state`` and the data iterator state at ``step`` (asynchronously)."""
  mgr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                         data=ocp.args.JsonSave(data_state)), force=True)


def abstract(tree: Any) -> Any:
  """Shapes, dtypes and shardings of ``tree``: what a restore should produce."""
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


def restore_latest(mgr: ocp.CheckpointManager, like: Any) -> tuple[int, Any, dict] | None:
  """(step, state, data state) of the newest checkpoint, placed like ``like``; None if none."""
  step = mgr.latest_step()
  if step is None:
    return None
  restored = mgr.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(abstract(like)), data=ocp.args.JsonRestore()))
  return step, restored["state"], restored["data"]
