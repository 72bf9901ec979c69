"""Orbax checkpoints of the training state plus the data iterator's position.

Saves are atomic (orbax writes a temporary directory and renames it when complete), so a run
killed at any moment restarts from the last complete checkpoint. Together with the grain
iterator state and per-step PRNG keys, resuming reproduces an uninterrupted run exactly.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
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


def latest_variables(directory: str) -> dict[str, Any]:
  """``{'params', 'batch_stats'}`` of the newest training checkpoint under ``directory`` (a
  workdir or its ``checkpoints/``), as host arrays, whatever the optimizer that wrote it."""
  ckpt_dir = os.path.join(directory, "checkpoints")
  ckpt_dir = ckpt_dir if os.path.isdir(ckpt_dir) else directory
  step = ocp.CheckpointManager(os.path.abspath(ckpt_dir)).latest_step()
  if step is None:
    return {}
  path = os.path.join(os.path.abspath(ckpt_dir), str(step), "state")
  checkpointer = ocp.PyTreeCheckpointer()
  # Restore as numpy arrays: valid whatever the device topology that saved it.
  meta = checkpointer.metadata(path).item_metadata.tree
  as_numpy = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), meta)
  state = checkpointer.restore(path, args=ocp.args.PyTreeRestore(restore_args=as_numpy))
  return {k: state[k] for k in ("params", "batch_stats") if state.get(k)}
