"""The files cnnjax writes and reads, in one place: their names, the one atomic write, the one
tolerant JSON-lines reader and the one exclusive lock.

Every file a reader may open while a run or a sweep is writing it (``config.json``,
``result.json``, ``sweep.json``, CSV and Markdown reports, a compiled extension) is written to a
temporary file in the same directory and renamed over its name (``atomic_path``): a reader sees
the old file or the new one, never half of one, and a kill mid-write leaves the old one.
``metrics.jsonl`` is appended line by line, so its reader skips a line torn by a kill.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import tempfile
from collections.abc import Iterator
from typing import Any

# A run's workdir (launch.py --workdir)
CONFIG = "config.json"  # the resolved config, written once a restore has succeeded
METRICS = "metrics.jsonl"  # one JSON object per logged step
EVAL = "eval.json"  # --mode=eval's result
CHECKPOINTS = "checkpoints"  # orbax's steps
RUN_LOCK = "run.lock"  # held while a run trains there


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
  """A temporary path beside ``path`` to write to; renamed over ``path`` when the block ends
  without an error (removed otherwise)."""
  directory = os.path.dirname(os.path.abspath(path))
  fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
  os.close(fd)
  try:
    yield tmp
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def write_atomic(path: str, text: str) -> None:
  """Writes ``text`` to ``path`` atomically (flushed to disk before the rename)."""
  with atomic_path(path) as tmp:
    with open(tmp, "w") as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
    os.chmod(tmp, 0o644)


def write_json(path: str, value: Any, **kwargs) -> None:
  """Strict JSON (a NaN or infinity raises ``ValueError``: they are not JSON), atomically."""
  write_atomic(path, json.dumps(value, allow_nan=False, **kwargs) + "\n")


def read_json(path: str) -> Any:
  with open(path) as f:
    return json.load(f)


def read_jsonl(path: str) -> list[dict[str, Any]]:
  """The objects of a JSON-lines file, in order; a blank line, or one torn by a kill, is
  skipped; a missing file has none."""
  if not os.path.isfile(path):
    return []
  rows = []
  with open(path) as f:
    for line in f:
      try:
        row = json.loads(line)
      except json.JSONDecodeError:
        continue
      if isinstance(row, dict):
        rows.append(row)
  return rows


@contextlib.contextmanager
def exclusive_lock(path: str) -> Iterator[str | None]:
  """Tries to take an exclusive ``flock`` on ``path`` without waiting. Yields None when this
  process holds it (its host and pid are written into the file), else what the holder wrote.

  The lock is the kernel's: it goes away with the process that holds it (kill -9 included), so
  nothing stale is ever left to clean up."""
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      yield os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
      return
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"host {socket.gethostname()}, pid {os.getpid()}\n".encode(), 0)
    yield None
  finally:
    os.close(fd)  # releases the lock


def is_locked(path: str) -> bool:
  """Whether another process holds ``path``'s lock now (here or on another host)."""
  if not os.path.exists(path):
    return False
  with exclusive_lock(path) as holder:
    return holder is not None
