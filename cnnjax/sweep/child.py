"""One run of a sweep as a child process (or sent to a warm ``worker``, which runs it as the
child would): started, watched, stopped, and its result written.

The child is ``python launch.py ...`` with exactly the flags a single run would get, so it has
all of launch.py's behaviour: resume from the newest checkpoint, a stop signal (SIGTERM, and a
scheduler's warnings SIGUSR1/SIGUSR2/SIGHUP) saves and exits 128 + signal, exit 2 for bad input
and 3 for a failed run, one run per workdir (``run.lock``). A run whose ``run.lock`` is held by a
live process (an orphan of an earlier sweep, a run on another host) is not started. Its stdout and
stderr are appended to ``log.txt`` in its workdir. The claim (``store.claim``) is held for the
child's whole life by the process that started it, and released once its result.json is
written.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time

from cnnjax import files
from cnnjax.sweep import env as env_lib, store, worker as worker_lib
from cnnjax.train import stopping

# The signals that mean "stop and resume me" (Slurm warns with USR2/USR1 before a time limit or a
# preemption, a closed terminal sends HUP): a child that exits 128 + one of them (it saved) or is
# killed by one (an older launch.py that did not handle it) is stopped, never failed.
# Exit codes of a run stopped by a signal: saved (128 + signal) or killed before it could save.
STOPPED = frozenset(code for s in stopping.SIGNALS for code in (128 + s, -s))


def lock_held(run_dir: str) -> bool:
  """Whether a live process (here or on another host) trains in ``run_dir`` now."""
  return files.is_locked(os.path.join(run_dir, files.RUN_LOCK))


class Child:
  """A started trial; ``poll()`` returns its exit code once it ended (and writes result.json).

  ``claimed`` is False when another process holds the trial's claim, ``elsewhere`` True when a
  live process holds its ``run.lock``: in both cases nothing was started. Else the claim is held
  (``self._held``) until the child has ended and its result is written."""

  def __init__(self, trial: store.Trial, sweep_dir: str, slot: env_lib.Slot, attempt: int = 1,
               cwd: str | None = None, pool: worker_lib.Pool | None = None):
    self.trial = trial
    self.run_dir = trial.run_dir(sweep_dir)
    self.slot = slot
    self.attempt = attempt
    self.proc = None
    self.worker = None  # with a ``pool``: the warm worker that runs it instead of a process
    self.returncode: int | None = None  # set once, when the result is written
    self.started = time.time()
    self._held = contextlib.ExitStack()
    self.elsewhere = False
    with contextlib.ExitStack() as claim:
      self.claimed = claim.enter_context(store.claim(self.run_dir))
      if not self.claimed:
        return  # released as the block ends
      self.elsewhere = lock_held(self.run_dir)
      if self.elsewhere:  # its child would fail with "workdir ... is in use by another run"
        return
      if pool is None:
        self._start(cwd)  # a failed start releases the claim too
      else:
        self._send(pool)
      self._held = claim.pop_all()

  def _start(self, cwd: str | None) -> None:
    env = {**os.environ, **self.slot.env}
    log = open(os.path.join(self.run_dir, store.LOG), "a")  # pylint: disable=consider-using-with
    log.write(f"=== attempt {self.attempt} on {self.slot.label or 'all devices'}, "
              f"{time.strftime('%Y-%m-%d %H:%M:%S')}: {' '.join(self.trial.argv)}\n")
    log.flush()
    try:  # no preexec_fn: the parent has JAX's threads, and a fork that runs Python can hang
      self.proc = subprocess.Popen([*env_lib.affinity_prefix(self.slot), *self.trial.argv],
                                   stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=env, cwd=cwd, start_new_session=True)
    finally:
      log.close()

  def _send(self, pool: worker_lib.Pool) -> None:
    log = os.path.join(self.run_dir, store.LOG)
    with open(log, "a") as f:
      f.write(f"=== attempt {self.attempt} on {self.slot.label or 'all devices'}, in a warm "
              f"worker, {time.strftime('%Y-%m-%d %H:%M:%S')}: {' '.join(self.trial.argv)}\n")
    self.worker = pool.worker(self.slot)
    self.worker.start(self.trial.argv[1:], log)

  def poll(self) -> int | None:
    if self.returncode is not None or (self.proc is None and self.worker is None):
      return self.returncode
    rc = self.proc.poll() if self.worker is None else self.worker.poll()
    if rc is not None:
      self._finish(rc)
      self.returncode = rc
    return rc

  def wait(self) -> int:
    while (rc := self.poll()) is None:
      time.sleep(0.2)
    return rc

  def stop(self) -> None:
    """SIGTERM to the child: it saves a checkpoint at its current step and exits 143."""
    if self.worker is not None:
      if self.worker.busy:
        self.worker.signal(signal.SIGTERM)
      return
    if self.proc is not None and self.proc.poll() is None:
      with contextlib.suppress(ProcessLookupError):
        os.kill(self.proc.pid, signal.SIGTERM)

  def _finish(self, rc: int) -> None:
    if self.worker is not None and rc < 0 and rc not in STOPPED:
      with open(os.path.join(self.run_dir, store.LOG), "a") as f:
        f.write(f"error: the sweep's worker process running this run died "
                f"({_signal_name(-rc)}); the next run starts a new one.\n")
    with self._held:  # the claim is released once the result is written
      store.write_result(self.run_dir, ended_result(
          self.trial.config_hash, rc, self.attempt, time.time() - self.started,
          previous=store.read_result(self.run_dir),
          error=store.last_error(self.run_dir) if rc != 0 else None))


def ended_result(config_hash: str, rc: int, attempt: int, wall_s: float,
                 previous: store.TrialResult | None, error: str | None) -> store.TrialResult:
  """The result of an attempt that exited with ``rc`` after ``wall_s`` (``error``: the log's
  error line); a resumed run's wall time counts every earlier attempt of this config."""
  status = "done" if rc == 0 else "stopped" if rc in STOPPED else "failed"
  before = (previous.partial_wall_s or 0.0) if (
      previous is not None and previous.config_hash == config_hash) else 0.0
  total = round(wall_s + before, 3)
  return store.TrialResult(
      status=status, config_hash=config_hash, exit_code=rc, attempt=attempt,
      ended=time.strftime("%Y-%m-%dT%H:%M:%S%z"), error=error,
      wall_s=total if status == "done" else None,
      partial_wall_s=None if status == "done" else total)


def _signal_name(signum: int) -> str:
  try:
    return f"killed by {signal.Signals(signum).name}"
  except ValueError:
    return f"killed by signal {signum}"
