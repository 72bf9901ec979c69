"""The run directory: created and checked, and locked for one run at a time.

The lock is an OS-level ``flock`` on ``WORKDIR/run.lock`` (``files.exclusive_lock``): it
disappears with the process that holds it (kill -9 included), so nothing stale is ever left to
clean up, and a second launch on the same workdir fails at once naming the holder. With several processes, process 0 holds it.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator

import jax
import numpy as np
from jax.experimental import multihost_utils

from cnnjax import files
from cnnjax.errors import UserError


def prepare(workdir: str) -> str:
  """Creates ``workdir`` and checks it can be written; a clear error if it can't."""
  workdir = os.path.abspath(workdir)
  try:
    os.makedirs(workdir, exist_ok=True)
    probe = os.path.join(workdir, f".write_test_{socket.gethostname()}_{jax.process_index()}_"
                         f"{os.getpid()}")
    with open(probe, "w") as f:
      f.write("ok")
    os.remove(probe)
  except OSError as e:
    raise UserError(f"workdir {workdir!r} can't be written: {e.strerror or e}.") from None
  return workdir


@contextlib.contextmanager
def locked(workdir: str) -> Iterator[None]:
  """Holds ``workdir``'s lock (process 0); ``UserError`` naming the holder if it is taken, on
  every process (so none goes on alone into a collective the others never join)."""
  path = os.path.join(workdir, files.RUN_LOCK)
  lock = files.exclusive_lock(path) if jax.process_index() == 0 else contextlib.nullcontext()
  with lock as holder:
    taken = holder is not None
    if jax.process_count() > 1:
      taken = bool(multihost_utils.broadcast_one_to_all(np.int32(taken)))
    if taken:
      raise UserError(f"workdir {workdir!r} is in use by another run "
                      f"({holder or 'see process 0'}); wait for it to end, stop it, or use "
                      "another --workdir.")
    yield
