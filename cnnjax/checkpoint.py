"""Orbax checkpoints of the training state, the data iterator's position and the metric window.

Saves are atomic (orbax writes a temporary directory and renames it when complete), so a run
killed at any moment restarts from the last complete checkpoint. Together with the grain
iterator state and per-step PRNG keys, resuming reproduces an uninterrupted run exactly.

Restoring is defensive: the checkpoint's tree (paths, shapes, dtypes) is compared with the
state the config describes before anything is read, and a checkpoint that can't be read (a
truncated file, a missing one) or holds non-finite values gets a one-line warning and the next
older one is tried; training then moves it aside to ``WORKDIR/damaged_checkpoints/``. Every read
(resuming, evaluating, inspecting, ``init_from``'s partial restore, the sweep's parameter count)
goes through the one fallback loop, ``_newest_that_restores``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils
from absl import logging

from cnnjax import files, trees
from cnnjax.errors import RunFailed, UserError

DAMAGED = "damaged_checkpoints"  # beside checkpoints/: what a restore could not use
_WINDOW = "window"  # the metric sums since the last logging step (exact logs after a stop)
T = TypeVar("T")


def manager(directory: str, *, keep: int) -> ocp.CheckpointManager:
  """A CheckpointManager in ``directory`` keeping the ``keep`` most recent checkpoints."""
  _drop_closed_loop_noise()
  options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
  return ocp.CheckpointManager(os.path.abspath(directory), options=options)


def save(mgr: ocp.CheckpointManager, step: int, state: Any, data_state: dict,
         window: dict[str, float] | None = None) -> None:
  """Saves ``state``, the data iterator state and the metric ``window`` at ``step`` (async).

  A failed save (disk full, permissions) raises ``RunFailed`` here or at the next
  ``check_saves`` / ``finish``; the older checkpoints stay as they were."""
  items = {"state": ocp.args.StandardSave(state), "data": ocp.args.JsonSave(data_state),
           _WINDOW: ocp.args.JsonSave(window or {})}
  try:
    mgr.save(step, args=ocp.args.Composite(**items), force=True)
  except Exception as e:  # pylint: disable=broad-except  # any I/O failure of the save
    raise _save_failed(mgr, step, e) from None


def check_saves(mgr: ocp.CheckpointManager) -> None:
  """Raises ``RunFailed`` if a background save has failed (cheap: it checks a thread)."""
  try:
    mgr.check_for_errors()
  except Exception as e:  # pylint: disable=broad-except
    raise _save_failed(mgr, None, e) from None


def finish(mgr: ocp.CheckpointManager) -> None:
  """Waits for the save in flight to be complete on disk; ``RunFailed`` if it failed."""
  try:
    mgr.wait_until_finished()
    mgr.check_for_errors()
  except Exception as e:  # pylint: disable=broad-except
    raise _save_failed(mgr, None, e) from None


def _save_failed(mgr: ocp.CheckpointManager, step: int | None, error: Exception) -> RunFailed:
  directory = str(mgr.directory)
  failed = sorted({int(d.split(".", 1)[0]) for d in os.listdir(directory)
                   if ".orbax-checkpoint-tmp" in d and d.split(".", 1)[0].isdigit()})
  which = f"of step {failed[-1]} " if failed else (f"of step {step} " if step is not None else "")
  intact = [s for s in _complete_steps(directory) if s not in failed]
  kept = f"the checkpoints there are intact up to step {intact[-1]}" if intact else \
      "no checkpoint there is complete"
  return RunFailed(f"saving the checkpoint {which}in {directory} failed ({_one_line(error)}); "
                   f"{kept}. Free space (or fix permissions) and rerun the same command.")


def _drop_closed_loop_noise() -> None:
  """After a failed restore, orbax's other pending reads finish into its closed asyncio loop and
  each prints an "Event loop is closed" traceback through ``sys.unraisablehook`` (a failed save's
  pending writes likewise): noise about an error already reported in one line. Filter exactly
  those; installed once, by the first manager or partial read."""
  previous = sys.unraisablehook
  if getattr(previous, "_cnnjax_filter", False):
    return

  def hook(unraisable):
    e = unraisable.exc_value
    if not (isinstance(e, RuntimeError) and str(e) == "Event loop is closed"):
      previous(unraisable)

  hook._cnnjax_filter = True  # pylint: disable=protected-access
  sys.unraisablehook = hook


def _one_line(error: BaseException, limit: int = 240) -> str:
  """``Type: first line`` of an error; long tensorstore messages keep their specific end."""
  while error.__cause__ is not None:  # orbax wraps the OSError that says what happened
    error = error.__cause__
  text = (str(error).strip().splitlines() or [""])[0]
  if len(text) > limit:  # 'OUT_OF_RANGE: Error reading "x" in ... : <what happened>'
    text = "...: " + ": ".join(text.split(": ")[-2:])[-limit:]
  return f"{type(error).__name__}: {text}".rstrip(": ")


def _complete_steps(directory: str) -> list[int]:
  if not os.path.isdir(directory):
    return []
  return sorted(int(d) for d in os.listdir(directory) if d.isdigit())


def abstract(tree: Any) -> Any:
  """Shapes, dtypes and shardings of ``tree``: what a restore should produce."""
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


# ---- comparing a checkpoint's tree with the one the config describes ----

leaf_specs = trees.leaf_specs  # {path: (shape, dtype)}; train/resume.py reads it from here


def tree_differences(saved: dict, expected: dict) -> list[str]:
  """How the leaves ``saved`` in a checkpoint differ from those ``expected`` (both
  ``{path: (shape, dtype)}``), one line each, in path order."""
  return trees.differences(saved, expected, "the checkpoint", "this config's state")


# ---- restoring with fallback ----

@dataclasses.dataclass(frozen=True)
class Restored:
  step: int
  state: Any
  data: dict | None
  window: dict[str, float]


def _step_dir(mgr: ocp.CheckpointManager, step: int) -> str:
  return os.path.join(str(mgr.directory), str(step))


def saved_specs(mgr: ocp.CheckpointManager, step: int) -> dict[str, tuple]:
  """The leaves of the train state saved at ``step`` (raises if its metadata can't be read)."""
  path = os.path.join(_step_dir(mgr, step), "state")
  with _quiet():  # orbax warns that the item dir has no step metadata of its own: it never does
    return leaf_specs(_tree_metadata(path))


def _tree_metadata(path: str) -> Any:
  """The saved tree of shapes and dtypes of the pytree item at ``path``."""
  meta = ocp.PyTreeCheckpointer().metadata(path).item_metadata
  if meta is None:
    raise FileNotFoundError(f"its metadata in {path} is missing or unreadable")
  return meta.tree


@contextlib.contextmanager
def _quiet():
  level = logging.get_verbosity()
  logging.set_verbosity(logging.ERROR)
  try:
    yield
  finally:
    logging.set_verbosity(level)


def _restore_step(mgr: ocp.CheckpointManager, step: int, like: Any) -> Restored:
  has_window = os.path.isdir(os.path.join(_step_dir(mgr, step), _WINDOW))
  items = {"state": ocp.args.StandardRestore(abstract(like)), "data": ocp.args.JsonRestore()}
  if has_window:  # older checkpoints have no window: logging then restarts at the resume step
    items[_WINDOW] = ocp.args.JsonRestore()
  restored = mgr.restore(step, args=ocp.args.Composite(**items))
  return Restored(step, _finite(restored["state"]), restored["data"],
                  dict(restored[_WINDOW] or {}) if has_window else {})


@jax.jit
def all_finite(tree: Any) -> jax.Array:
  """True iff every floating-point leaf of ``tree`` is finite (one fused reduction)."""
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
            if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


def _finite(tree: Any) -> Any:
  if not all_finite(tree):
    raise FloatingPointError("it holds non-finite values: a diverged run saved it")
  return tree


def _set_aside(mgr: ocp.CheckpointManager, steps: list[int]) -> str:
  """Moves damaged checkpoints out of the manager's directory (kept, never deleted); every
  process waits for the move, then rereads the directory."""
  dst_dir = os.path.join(os.path.dirname(str(mgr.directory)), DAMAGED)
  if jax.process_index() == 0:
    os.makedirs(dst_dir, exist_ok=True)
    for step in steps:
      dst = os.path.join(dst_dir, str(step))
      if os.path.exists(dst):  # set aside before: keep both
        dst = f"{dst}.{time.strftime('%Y%m%d-%H%M%S')}.{os.getpid()}"
      shutil.move(_step_dir(mgr, step), dst)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices("cnnjax_set_aside_checkpoints")
  mgr.reload()
  return dst_dir


def _say(line: str) -> None:
  if jax.process_index() == 0:
    print(line, file=sys.stderr, flush=True)


def _newest_that_restores(directory: str, steps: Iterable[int], read_one: Callable[[int], T], *,
                          context: str = "", error: type[Exception] = RunFailed,
                          warn: bool = True) -> tuple[int, T, list[int]] | None:
  """The one fallback loop: ``(step, read_one(step), the newer steps that failed)`` for the
  newest of ``steps`` that ``read_one`` reads; None if there are no steps.

  A step that fails (unreadable, truncated, non-finite) gets one warning line and the next
  older one is tried; a ``UserError`` (the config's fault, not the checkpoint's) propagates at
  once. If none reads, ``error`` names each step's problem in one line."""
  steps = sorted(steps, reverse=True)
  problems = []
  for i, step in enumerate(steps):
    try:
      return step, read_one(step), steps[:i]
    except UserError:
      raise
    except Exception as e:  # pylint: disable=broad-except  # truncated, missing, non-finite
      problems.append(f"step {step}: {_one_line(e)}")
      if warn:
        older = f"trying step {steps[i + 1]}" if i + 1 < len(steps) else "no older one is left"
        _say(f"warning: {context}checkpoint step {step} can't be restored ({_one_line(e)}); "
             f"{older}.")
  if not steps:
    return None
  raise error(f"{context}none of the checkpoints in {directory} can be restored "
              f"({'; '.join(problems)}); nothing was moved.")


def restore_newest(mgr: ocp.CheckpointManager, like: Any,
                   check: Callable[[int, dict], None] | None = None, *,
                   set_aside: bool = True) -> Restored | None:
  """The newest checkpoint that restores, placed like ``like`` (arrays or ShapeDtypeStructs).

  ``check(step, saved_leaf_specs)`` may raise ``UserError`` when the checkpoint doesn't fit
  the config (that is the config's fault: no fallback). A checkpoint that can't be read or
  holds non-finite values gets one warning line and the next older one is tried. Once one has
  restored, the newer ones that failed are moved to ``damaged_checkpoints/`` when
  ``set_aside`` (training: it will save those steps again; readers such as ``cnnjax.inspect``
  and evaluation pass False). None if there is no checkpoint; ``RunFailed`` naming each
  problem, moving nothing, if none restores."""
  def read_one(step: int) -> Restored:
    specs = saved_specs(mgr, step)  # the metadata first: a tree that doesn't fit reads nothing
    if check is not None:
      check(step, specs)
    return _restore_step(mgr, step, like)

  found = _newest_that_restores(str(mgr.directory), mgr.all_steps(), read_one)
  if found is None:
    return None
  _, restored, failed = found
  if failed and set_aside:
    _say(f"warning: moved the damaged checkpoints {', '.join(map(str, failed))} to "
         f"{_set_aside(mgr, failed)}.")
  return restored


def _checkpoints_dir(directory: str) -> str:
  """A workdir's ``checkpoints/``, or ``directory`` itself when it is one."""
  inside = os.path.join(directory, files.CHECKPOINTS)
  return os.path.abspath(inside if os.path.isdir(inside) else directory)


def latest_variables(directory: str, *, ema: bool = False) -> dict[str, Any]:
  """``{'params', 'batch_stats'}`` of the newest training checkpoint under ``directory`` (a
  workdir or its ``checkpoints/``), as host arrays, whatever the optimizer that wrote it; ``{}``
  if there is none. With ``ema``, the moving averages of those (the state's ``ema``), and a
  ``UserError`` if the run kept none.

  Only those two subtrees are read (a partial restore): a damaged or foreign optimizer state
  doesn't matter. Falls back to older checkpoints, without moving anything (not our run)."""
  ckpt_dir = _checkpoints_dir(directory)
  _drop_closed_loop_noise()
  found = _newest_that_restores(
      ckpt_dir, _complete_steps(ckpt_dir),
      lambda step: _finite(_read_variables(os.path.join(ckpt_dir, str(step), "state"), ema)),
      context="config.init_from: ", error=UserError)
  return {} if found is None else found[1]


def _read_variables(path: str, ema: bool = False) -> dict[str, Any]:
  checkpointer = ocp.PyTreeCheckpointer()
  with _quiet():
    meta = _tree_metadata(path)
  if ema:
    if not meta.get("ema"):
      raise UserError(f"{os.path.dirname(path)} holds no moving averages of the weights (its "
                      "run had config.ema.decay=0).")
    wanted = {"ema": {k: meta["ema"][k] for k in ("params", "batch_stats")
                      if meta["ema"].get(k)}}
  else:
    wanted = {k: meta[k] for k in ("params", "batch_stats") if meta.get(k)}
  # Restore as numpy arrays: valid whatever the device topology that saved it.
  as_numpy = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), wanted)
  restored = checkpointer.restore(path, args=ocp.args.PyTreeRestore(
      item=wanted, restore_args=as_numpy, partial_restore=True))
  return restored["ema"] if ema else restored


def param_count(directory: str) -> int | None:
  """The number of parameters in the newest readable checkpoint under ``directory`` (a workdir
  or its ``checkpoints/``), from the saved tree's shapes: no array is read. None if no
  checkpoint there has readable metadata."""
  ckpt_dir = _checkpoints_dir(directory)

  def count(step: int) -> int:
    with _quiet():
      meta = _tree_metadata(os.path.join(ckpt_dir, str(step), "state"))
    return sum(math.prod(shape) for shape, _ in trees.leaf_specs(meta.get("params", {})).values())

  try:
    found = _newest_that_restores(ckpt_dir, _complete_steps(ckpt_dir), count, warn=False)
  except RunFailed:
    return None
  return None if found is None else found[1]
