"""Running a sweep's runs on this machine, N at a time: one after another in a warm worker
process per slot (``worker``: what a run does and writes is a single run's), or each in its own
child process (``warm=False``, ``--sweep_process_per_run``).

Finished runs (result.json ``done`` with the run's config hash) are skipped; unfinished ones
resume from their checkpoints (the child does that); failed ones are retried up to
``retries`` times; runs another process has claimed are left to it; a run whose ``run.lock`` a
live process holds (an orphan of an earlier sweep, a run on another host) is "running elsewhere":
waited on, and started (resuming) once the lock frees. SIGTERM, SIGINT and SIGHUP (the terminal
closed) to the sweep are passed on to the children as SIGTERM (each saves, as a single run does);
the sweep waits for them and exits 128 + signal, and the same command carries on. A child that
stops on its own signal (``child.STOPPED``: Slurm's USR1/USR2, a HUP) is resumed without using
up a retry. results.csv is rewritten as each
run ends, and the whole report (summary, plots, mean curves) at the end.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Sequence

from cnnjax.sweep import child as child_lib, env as env_lib, results, store
from cnnjax.sweep import worker as worker_lib
from cnnjax.train import stopping

POLL_S = 0.25


@dataclasses.dataclass
class Progress:
  """Counts for the status line."""

  total: int
  done: int = 0
  failed: int = 0
  elsewhere: int = 0  # claimed by another process
  waiting: int = 0  # run.lock held by a live process: running elsewhere, waited on
  walls: list[float] = dataclasses.field(default_factory=list)

  def line(self, running: int, pending: int, workers: int) -> str:
    eta = "?"
    if self.walls:
      left = sum(self.walls) / len(self.walls) * (pending + running / 2) / max(workers, 1)
      eta = f"{int(left // 60)}m{int(left % 60):02d}s"
    extra = f", {self.elsewhere} on other hosts" if self.elsewhere else ""
    extra += f", {self.waiting} running elsewhere (waited on)" if self.waiting else ""
    return (f"sweep: {self.done}/{self.total} done, {running} running, {self.failed} failed, "
            f"{pending} pending{extra}; eta {eta}")


# Every stop signal to the sweep (stopping.SIGNALS: SIGTERM, Ctrl-C, a closed terminal's SIGHUP,
# Slurm's USR1/USR2) is recorded; the children are told in the loop.
NOTICE = ("\n{signal}: stopping the running runs (each saves a checkpoint); run the same command "
          "again to carry on.\n")


class _Status:
  def __init__(self, stream):
    self.stream = stream
    self.tty = stream.isatty()
    self.last = None

  def show(self, text: str) -> None:
    if text == self.last:
      return
    self.last = text
    if self.tty:
      self.stream.write("\r\033[K" + text)
    else:
      self.stream.write(text + "\n")
    self.stream.flush()

  def close(self) -> None:
    if self.tty and self.last:
      self.stream.write("\n")


def run(sweep_dir: str, record: store.SweepRecord, slots: Sequence[env_lib.Slot],
        retries: int = 1, stream=None, warm: bool = True) -> int:
  """Runs every trial of ``record`` not yet done; returns the exit code (0 all done, 3 some
  failed, 128 + signal when stopped). ``warm``: in a warm worker process per slot
  (``worker.Pool``), else each in its own process."""
  pool = worker_lib.Pool(worker_lib.command(record.trials[0].argv), sweep_dir,
                         record.cwd) if warm and record.trials else None
  try:
    return _run(sweep_dir, record, slots, retries, stream or sys.stderr, pool)
  finally:
    if pool is not None:
      pool.close()


def _run(sweep_dir, record, slots, retries, stream, pool) -> int:
  todo = [t for t in seed_major(record.trials)
          if not store.is_done(t.run_dir(sweep_dir), t.config_hash)]
  progress = Progress(total=len(record.trials), done=len(record.trials) - len(todo))
  attempts = {t.workdir: 0 for t in todo}  # children started
  stops = {t.workdir: 0 for t in todo}  # of them, stopped by a signal (no retry used)
  free: list[env_lib.Slot] = list(slots)
  running: dict[str, child_lib.Child] = {}
  failures: dict[str, str] = {}
  status = _Status(stream)
  waiting: list[store.Trial] = []  # run.lock held by a live process elsewhere
  with stopping.StopRequest(NOTICE) as signals:
    while todo or running or waiting:
      if signals.signum is not None:
        _stop_all(running)
        break
      todo[:0] = _freed(waiting, sweep_dir)
      while todo and free:
        trial, slot = todo.pop(0), free.pop(0)
        child = child_lib.Child(trial, sweep_dir, slot, attempts[trial.workdir] + 1, record.cwd,
                                pool)
        if not child.claimed or child.elsewhere:
          free.insert(0, slot)
          if child.elsewhere:
            waiting.append(trial)
          else:
            progress.elsewhere += 1
          continue
        attempts[trial.workdir] += 1
        running[trial.workdir] = child
      progress.waiting = len(waiting)
      status.show(progress.line(len(running), len(todo), len(slots)))
      time.sleep(POLL_S)
      for workdir, child in list(running.items()):
        rc = child.poll()
        if rc is None:
          continue
        del running[workdir]
        free.append(child.slot)
        _ended(child, rc, todo, attempts, stops, retries, progress, failures, signals)
        results.write_results(sweep_dir, record)
    status.show(progress.line(len(running), len(todo), len(slots)))
    status.close()
  return _finish(sweep_dir, record, failures, signals.signum, progress, stream)


def seed_major(trials: Sequence[store.Trial]) -> list[store.Trial]:
  """Every variant's first seed, then every variant's second, ...: the later seeds of a variant
  then start after its first has compiled, and load their programs from the cache."""
  count: dict[str, int] = {}
  keyed = []
  for i, trial in enumerate(trials):
    count[trial.variant] = count.get(trial.variant, 0) + 1
    keyed.append((count[trial.variant], i, trial))
  return [trial for _, _, trial in sorted(keyed, key=lambda t: t[:2])]


def _ended(child, rc, todo, attempts, stops, retries, progress, failures, signals) -> None:
  """Counts the ended child; queues it again if it stopped on its own or may be retried."""
  workdir = child.trial.workdir
  stops[workdir] += rc in child_lib.STOPPED
  if rc == 0:
    progress.done += 1
    result = store.read_result(child.run_dir)
    progress.walls.append((result and result.wall_s) or 0.0)
    failures.pop(workdir, None)
  elif rc in child_lib.STOPPED:  # saved: never a failure, never a retry used
    if signals.signum is None:  # stopped on its own (a HUP, USR1/USR2 sent to it): resume now
      todo.append(child.trial)
  elif attempts[workdir] - stops[workdir] <= retries:
    todo.append(child.trial)  # retried after the others
  else:
    progress.failed += 1
    failures[workdir] = f"exit {rc}: {store.last_error(child.run_dir)}"


def _freed(waiting: list[store.Trial], sweep_dir: str) -> list[store.Trial]:
  """The waiting trials whose ``run.lock`` is free now (removed from ``waiting``)."""
  freed = [t for t in waiting if not child_lib.lock_held(t.run_dir(sweep_dir))]
  waiting[:] = [t for t in waiting if t not in freed]
  return freed


def _stop_all(running: dict[str, child_lib.Child]) -> None:
  for child in running.values():
    child.stop()
  for child in running.values():
    child.wait()


def _finish(sweep_dir, record, failures, signum, progress, stream) -> int:
  results.write_results(sweep_dir, record)
  if signum is not None:
    print(f"stopped: {progress.done} of {progress.total} runs done; run the same command again to "
          "carry on.", file=stream)
    return 128 + signum
  from cnnjax.sweep import report  # pylint: disable=import-outside-toplevel  # matplotlib
  report.write_all(sweep_dir, record)
  for workdir, line in failures.items():
    print(f"failed: {workdir} ({line}); log: {os.path.join(sweep_dir, workdir, store.LOG)}",
          file=stream)
  if progress.elsewhere:
    print(f"{progress.elsewhere} run(s) were claimed by other processes; their results join the "
          "report when they end (python -m cnnjax.sweep report DIR).", file=stream)
  print(f"sweep: {progress.done} of {progress.total} runs done; summary in "
        f"{os.path.join(sweep_dir, 'summary.md')}", file=stream)
  return 3 if failures else 0
