r"""What a finished sweep's runs spent beside training: each run's wall time (result.json) minus
its training time, and their median.

  python -m benchmarks.sweep_overhead DIR [DIR ...]

A run's training time is its steps × batch size over the median of its logged
``train/images_per_sec`` (which leaves out the first call's compilation): the rest of the wall
time is start-up, opening the data, compiling or loading programs, evaluation, checkpoints and
plots. Reads only the sweep's files; no JAX.
"""

from __future__ import annotations

import json
import os
import statistics
import sys

from cnnjax import files
from cnnjax.sweep import store


def overheads(sweep_dir: str) -> dict[str, float]:
  """Wall time minus training time of each done run of the sweep in ``sweep_dir``, seconds."""
  record = store.read_sweep(sweep_dir)
  result = {}
  for trial in record.trials:
    run_dir = trial.run_dir(sweep_dir)
    ended = store.read_result(run_dir)
    if ended is None or ended.status != "done" or not ended.wall_s:
      continue
    rows = [json.loads(line) for line in open(os.path.join(run_dir, files.METRICS))]
    rates = [r["train/images_per_sec"] for r in rows if "train/images_per_sec" in r]
    steps = max(r["step"] for r in rows)
    batch = files.read_json(os.path.join(run_dir, files.CONFIG))["batch_size"]
    result[trial.workdir] = ended.wall_s - steps * batch / statistics.median(rates)
  return result


def main(argv: list[str]) -> None:
  for sweep_dir in argv[1:]:
    per_run = overheads(sweep_dir)
    walls = [store.read_result(os.path.join(sweep_dir, w)).wall_s for w in per_run]
    print(f"{sweep_dir}: {len(per_run)} runs; wall time per run median "
          f"{statistics.median(walls):.2f} s; beside training median "
          f"{statistics.median(per_run.values()):.2f} s (min {min(per_run.values()):.2f}, "
          f"max {max(per_run.values()):.2f})")


if __name__ == "__main__":
  main(sys.argv)
