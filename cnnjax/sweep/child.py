"""One run of a sweep as a child process: started, watched, stopped, and its result written.

The child is ``python launch.py ...`` with exactly the flags a single run would get, so it has
all of launch.py's behaviour: resume from the newest checkpoint, SIGTERM saves and exits 143,
exit 2 for bad input and 3 for a failed run, one run per workdir (``run.lock``). Its stdout and
stderr are appended to ``log.txt`` in its workdir. The claim (``store.claim``) is held for the
child's whole life by the process that started it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping

from cnnjax.sweep import env as env_lib, store

STOPPED = (128 + signal.SIGTERM, 128 + signal.SIGINT, -signal.SIGTERM, -signal.SIGINT)


class Child:
  """A started run; ``poll()`` returns its exit code once it ended (and writes result.json)."""

  def __init__(self, entry: Mapping, sweep_dir: str, slot: env_lib.Slot, attempt: int = 1,
               cwd: str | None = None):
    self.entry = entry
    self.run_dir = os.path.join(sweep_dir, entry["workdir"])
    self.slot = slot
    self.attempt = attempt
    self._claim = store.claim(self.run_dir)
    self.claimed = self._claim.__enter__()
    self.proc = None
    self.started = time.time()
    if not self.claimed:
      self._claim.__exit__(None, None, None)
      return
    self._start(cwd)

  def _start(self, cwd: str | None) -> None:
    env = {**os.environ, **self.slot.env}
    log = open(os.path.join(self.run_dir, store.LOG), "a")  # pylint: disable=consider-using-with
    log.write(f"=== attempt {self.attempt} on {self.slot.label or 'all devices'}, "
              f"{time.strftime('%Y-%m-%d %H:%M:%S')}: {' '.join(self.entry['argv'])}\n")
    log.flush()
    try:  # no preexec_fn: the parent has JAX's threads, and a fork that runs Python can hang
      self.proc = subprocess.Popen([*env_lib.affinity_prefix(self.slot), *self.entry["argv"]],
                                   stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=env, cwd=cwd, start_new_session=True)
    finally:
      log.close()

  def poll(self) -> int | None:
    if self.proc is None:
      return None
    rc = self.proc.poll()
    if rc is not None:
      self._finish(rc)
    return rc

  def wait(self) -> int:
    while (rc := self.poll()) is None:
      time.sleep(0.2)
    return rc

  def stop(self) -> None:
    """SIGTERM to the child: it saves a checkpoint at its current step and exits 143."""
    if self.proc is not None and self.proc.poll() is None:
      with contextlib.suppress(ProcessLookupError):
        os.kill(self.proc.pid, signal.SIGTERM)

  def _finish(self, rc: int) -> None:
    wall = time.time() - self.started
    status = "done" if rc == 0 else "stopped" if rc in STOPPED else "failed"
    result = {"status": status, "config_hash": self.entry["config_hash"], "exit_code": rc,
              "attempt": self.attempt,
              "ended": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if status != "done":
      result["error"] = store.last_error(self.run_dir)
    previous = store.read_result(self.run_dir) or {}
    # A resumed run's wall time counts every attempt of this config.
    before = previous.get("partial_wall_s", 0.0) if previous.get(
        "config_hash") == result["config_hash"] else 0.0
    result["wall_s" if status == "done" else "partial_wall_s"] = round(wall + before, 3)
    store.write_result(self.run_dir, result)
    self._claim.__exit__(None, None, None)
