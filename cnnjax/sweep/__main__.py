"""``python -m cnnjax.sweep status|report DIR``: a sweep's state, or its whole report, rebuilt
from the files in DIR (sweep.json and the runs' own files) without running anything.

  status   one line per run (variant, seed, status, the final metric or the error, and on Slurm
           the run's array task and Slurm's state of it) and counts
  report   rewrites results.csv, summary.csv, summary.md, curves.png, final.png and the mean
           curves, and prints summary.md
"""

from __future__ import annotations

import collections
import os
import signal
import sys

from cnnjax.cli import fail

COMMANDS = ("status", "report")


def _load(directory: str):
  from cnnjax.sweep import store  # pylint: disable=import-outside-toplevel
  try:
    record = store.read_sweep(directory)
  except store.Damaged as e:
    fail(str(e))
  if record is None:
    fail(f"{directory!r} holds no {store.SWEEP_FILE}; give the --workdir of a sweep.")
  return record


def status(directory: str) -> None:
  from cnnjax.sweep import results  # pylint: disable=import-outside-toplevel
  record = _load(directory)
  rows = results.collect(directory, record)
  metric = record.metric
  jobs, states = _slurm(directory)
  for row in rows:
    value = row.finals.get(metric)
    shown = (f"{metric}={value:.4f}" if value is not None else
             _stopped(row.exit_code) if row.status == "stopped" else
             row.error or "" if row.status == "failed" else "")
    job = jobs.get("runs", {}).get(row.workdir)
    slurm = f"slurm {job} {states.get(job, '')}".rstrip() + " " if job else ""
    print(f"{row.variant:30s} seed={row.seed:<4d} {row.status:17s} {slurm}{shown}".rstrip())
  counts = collections.Counter(row.status for row in rows)
  print(", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + f" of {len(rows)} runs")
  for workdir in record.removed:
    print(f"no longer in the sweep (kept): {workdir}")
  if jobs.get("report"):
    print(f"report job {jobs['report']}: {states.get(jobs['report'], 'ended')}")


def _stopped(code: int | None) -> str:
  """How a stopped run ended: saved on a signal (exit 128 + s), or killed by one (exit -s, a
  launch.py that did not handle it: it resumes from its last periodic checkpoint)."""
  if code is None:
    return ""
  name = signal.Signals(abs(code) % 128).name
  return (f"exit {code}: killed by {name}, resumes from its last checkpoint" if code < 0 else
          f"exit {code}: saved on {name}, resumes")


def _slurm(directory: str) -> tuple[dict, dict[str, str]]:
  """DIR/slurm.json (the array, the report job, each run's task) and Slurm's state of each."""
  from cnnjax.sweep import store  # pylint: disable=import-outside-toplevel
  if not os.path.exists(os.path.join(directory, store.SLURM_FILE)):
    return {}, {}
  from cnnjax.sweep import slurm  # pylint: disable=import-outside-toplevel  # submitit
  jobs = slurm.read_jobs(directory) or {}
  ids = [*jobs.get("runs", {}).values(), *([jobs["report"]] if jobs.get("report") else [])]
  return jobs, slurm.job_states(ids)


def report(directory: str) -> None:
  from cnnjax.sweep import report as report_lib  # pylint: disable=import-outside-toplevel
  report_lib.write_all(directory, _load(directory))
  with open(os.path.join(directory, "summary.md")) as f:
    print(f.read(), end="")


def main(argv: list[str]) -> None:
  if len(argv) != 3 or argv[1] not in COMMANDS:
    fail(f"usage: python -m cnnjax.sweep {{{'|'.join(COMMANDS)}}} DIR (got "
         f"{' '.join(argv[1:]) or 'nothing'}).")
  directory = os.path.abspath(argv[2])
  if not os.path.isdir(directory):
    fail(f"{argv[2]!r} is not a directory.")
  import jax  # pylint: disable=import-outside-toplevel
  jax.config.update("jax_platforms", "cpu")  # MACs are counted abstractly; no device needed
  (status if argv[1] == "status" else report)(directory)


if __name__ == "__main__":
  main(sys.argv)
