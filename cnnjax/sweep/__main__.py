"""``python -m cnnjax.sweep status|report DIR``: a sweep's state, or its whole report, rebuilt
from the files in DIR (sweep.json and the runs' own files) without running anything.

  status   one line per run (variant, seed, status, the final metric or the error) and counts
  report   rewrites results.csv, summary.csv, summary.md, curves.png, final.png and the mean
           curves, and prints summary.md
"""

from __future__ import annotations

import collections
import os
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
  for row in rows:
    value = row.finals.get(metric)
    shown = f"{metric}={value:.4f}" if value is not None else row.error or ""
    print(f"{row.variant:30s} seed={row.seed:<4d} {row.status:8s} {shown}")
  counts = collections.Counter(row.status for row in rows)
  print(", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + f" of {len(rows)} runs")
  for workdir in record.removed:
    print(f"no longer in the sweep (kept): {workdir}")


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
