"""The run directory: created and checked, locked for one run at a time, written atomically.

The lock is an OS-level ``flock`` on ``WORKDIR/run.lock``: it disappears with the process that
holds it (kill -9 included), so nothing stale is ever left to clean up, and a second launch on
the same workdir fails at once naming the holder. With several processes, process 0 holds it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from collections.abc import Iterator
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils

from cnnjax.errors import UserError

LOCK = "run.lock"


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
  fd, holder = None, None
  if jax.process_index() == 0:
    fd = os.open(os.path.join(workdir, LOCK), os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      os.ftruncate(fd, 0)
      os.pwrite(fd, f"host {socket.gethostname()}, pid {os.getpid()}\n".encode(), 0)
    except BlockingIOError:
      holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
      os.close(fd)
  taken = holder is not None
  if jax.process_count() > 1:
    taken = bool(multihost_utils.broadcast_one_to_all(np.int32(taken)))
  if taken:
    raise UserError(f"workdir {workdir!r} is in use by another run ({holder or 'see process 0'}); "
                    "wait for it to end, stop it, or use another --workdir.")
  try:
    yield
  finally:
    if fd is not None:
      os.close(fd)  # releases the lock


def write_json(path: str, value: Any, **kwargs) -> None:
  """Writes strict JSON (no NaN/Infinity) atomically: a temporary file renamed over ``path``."""
  text = json.dumps(value, allow_nan=False, **kwargs)
  tmp = f"{path}.tmp.{os.getpid()}"
  with open(tmp, "w") as f:
    f.write(text + "\n")
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)
