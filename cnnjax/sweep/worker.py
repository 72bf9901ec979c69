"""Warm workers: a local sweep's runs one after another in one process per worker.

Starting ``python launch.py`` costs a run of a small CNN about 6 s (Python, the imports, JAX's
backend, loading the compiled programs); a worker pays that once. It is ``launch.py
--sweep_worker``, started with the slot's environment and cores as a child would be, and runs
each run it is sent exactly as ``launch.py`` with the run's own command line would (the same
flags, files, lock, resume, stop signals, exit codes), its output appended to the run's
``log.txt``. What stays warm: the imports, JAX's backend, the opened datasets' caches and the
compiled calls (``cnnjax.train.calls``: runs that differ only in seeds or traced
hyperparameters share them).

Protocol: the parent writes one JSON line per run on the worker's stdin, ``{"argv": [...],
"log": path}``; the worker answers ``{"rc": exit code}`` on the pipe named by ``REPLY_FD`` and
ends at the end of its stdin. A Python exception in a run is that run's (exit code 1, the
traceback in its log); the worker goes on. A worker that dies (kill -9, a crash in XLA) fails
the run it had, with its exit code, and the next run of that slot starts a new one.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence

from absl import flags

from cnnjax import cli
from cnnjax.sweep import env as env_lib

REPLY_FD = "CNNJAX_SWEEP_REPLY_FD"
WORKERS_DIR = "workers"  # in the sweep directory: each worker's own output, between runs
CLOSE_WAIT_S = 10.0


# The worker's side.

def parse(argv: list[str]) -> list[str]:
  """launch.py's flags parsed again for one run, as its own process would parse them (absl's
  one-line errors included): the previous run's values and its ``--config.*`` override flags
  (ml_collections defines one per override it finds in ``sys.argv``) are dropped first."""
  flag_values = flags.FLAGS
  flag_values.unparse_flags()
  for name in [n for n in flag_values if n.startswith("config.")]:
    delattr(flag_values, name)
  sys.argv = list(argv)
  return cli.parse_flags(list(argv))


def serve(main: Callable[[list[str]], None], parse_argv=parse, requests=None) -> None:
  """Runs the runs sent on stdin (``requests``) until it ends: each ``argv`` parsed by
  ``parse_argv`` (absl's flags, as launch.py parses them) and given to ``main``."""
  if REPLY_FD not in os.environ:
    cli.fail("--sweep_worker is for the processes a local sweep starts itself; run a sweep "
             "with --sweep.")
  reply = int(os.environ.pop(REPLY_FD))
  for line in requests or sys.stdin:
    request = json.loads(line)
    rc = run_one(main, parse_argv, request["argv"], request["log"])
    os.write(reply, (json.dumps({"rc": rc}) + "\n").encode())


def run_one(main: Callable[[list[str]], None], parse: Callable[[list[str]], list[str]],
            argv: Sequence[str], log: str) -> int:
  """One run as ``argv`` would be run by its own process; returns that process's exit code."""
  with output_to(log):
    try:
      main(parse(list(argv)))
      return 0
    except SystemExit as e:  # launch.py's one-line errors, a stop's 128 + signal
      return exit_code(e.code)
    except Exception:  # pylint: disable=broad-except  # a bug in this run: it fails, not us
      traceback.print_exc()
      return 1


def exit_code(code) -> int:
  """The exit status ``sys.exit(code)`` gives a process."""
  if code is None:
    return 0
  if isinstance(code, int):
    return code
  print(code, file=sys.stderr)
  return 1


@contextlib.contextmanager
def output_to(path: str) -> Iterator[None]:
  """File descriptors 1 and 2 (absl's logs, XLA's C++ ones) and Python's ``sys.stdout`` and
  ``sys.stderr`` appended to ``path`` for the block."""
  streams = sys.stdout, sys.stderr
  for stream in streams:
    stream.flush()
  saved = [os.dup(1), os.dup(2)]
  fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
  try:
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    with open(fd, "w", buffering=1, closefd=False) as out:
      sys.stdout = sys.stderr = out
      try:
        yield
      finally:
        sys.stdout, sys.stderr = streams
  finally:
    os.dup2(saved[0], 1)
    os.dup2(saved[1], 2)
    for f in (fd, *saved):
      os.close(f)


# The parent's side.

class Worker:
  """One worker process (``command``) with a slot's environment and cores; one run at a time."""

  def __init__(self, command: Sequence[str], slot: env_lib.Slot, log: str,
               cwd: str | None = None):
    read, write = os.pipe()
    os.set_blocking(read, False)
    env = {**os.environ, **slot.env, REPLY_FD: str(write)}
    with open(log, "a") as out:
      try:
        self.proc = subprocess.Popen(  # pylint: disable=consider-using-with
            [*env_lib.affinity_prefix(slot), *command], stdin=subprocess.PIPE, stdout=out,
            stderr=subprocess.STDOUT, env=env, cwd=cwd, pass_fds=(write,),
            start_new_session=True)
      finally:
        os.close(write)
    self._replies = read
    self._buffer = b""
    self.busy = False

  def start(self, argv: Sequence[str], log: str) -> None:
    """Sends a run: ``argv`` as launch.py's (``argv[0]`` the program), output to ``log``."""
    self.proc.stdin.write((json.dumps({"argv": list(argv), "log": log}) + "\n").encode())
    self.proc.stdin.flush()
    self.busy = True

  def poll(self) -> int | None:
    """The running run's exit code once it ended (the worker's own if it died), else None."""
    if not self.busy:
      return None
    dead = self.proc.poll() is not None  # before reading: a reply written just before dying
    rc = self._reply()
    if rc is None and dead:
      rc = self.proc.returncode
    if rc is not None:
      self.busy = False
    return rc

  def _reply(self) -> int | None:
    with contextlib.suppress(BlockingIOError):
      while chunk := os.read(self._replies, 4096):
        self._buffer += chunk
    line, sep, rest = self._buffer.partition(b"\n")
    if not sep:
      return None
    self._buffer = rest
    return int(json.loads(line)["rc"])

  def alive(self) -> bool:
    return self.proc.poll() is None

  def signal(self, signum: int = signal.SIGTERM) -> None:
    if self.alive():
      with contextlib.suppress(ProcessLookupError):
        os.kill(self.proc.pid, signum)

  def close(self) -> None:
    """Ends the worker: the end of its stdin, then SIGKILL if it doesn't exit."""
    with contextlib.suppress(OSError):
      self.proc.stdin.close()
    try:
      self.proc.wait(CLOSE_WAIT_S)
    except subprocess.TimeoutExpired:
      self.proc.kill()
      self.proc.wait()
    os.close(self._replies)


class Pool:
  """The warm workers of a local sweep, one per slot, each started when first needed and
  started again when it died."""

  def __init__(self, command: Sequence[str], sweep_dir: str, cwd: str | None = None):
    self.command = tuple(command)
    self.cwd = cwd
    self.log_dir = os.path.join(sweep_dir, WORKERS_DIR)
    self._workers: dict[int, Worker] = {}  # by id(slot): equal slots may share a GPU
    self._names: dict[int, int] = {}
    self.started = 0

  def worker(self, slot: env_lib.Slot) -> Worker:
    """The live, idle worker of ``slot`` (a new one if it has none or its one died)."""
    worker = self._workers.get(id(slot))
    if worker is None or not worker.alive():
      if worker is not None:
        worker.close()
      os.makedirs(self.log_dir, exist_ok=True)
      name = self._names.setdefault(id(slot), len(self._names))
      log = os.path.join(self.log_dir, f"{name}.log")
      with open(log, "a") as f:
        f.write(f"=== worker started {time.strftime('%Y-%m-%d %H:%M:%S')}: "
                f"{' '.join(self.command)}\n")
      worker = self._workers[id(slot)] = Worker(self.command, slot, log, self.cwd)
      self.started += 1
    return worker

  def close(self) -> None:
    for worker in self._workers.values():
      worker.close()
    self._workers.clear()


def command(trial_argv: Sequence[str]) -> tuple[str, ...]:
  """The worker's command: a trial's Python and launch.py, with ``--sweep_worker``."""
  return (*trial_argv[:2], "--sweep_worker")
