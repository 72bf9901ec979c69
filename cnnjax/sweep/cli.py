"""``launch.py --sweep``: expand and check the sweep, write sweep.json, run or submit it.

Every bad input (no ``get_sweep``, a misspelt key, a point that fails a single run's checks, a
sweep directory of another base config) is one ``error:`` line and exit code 2, before anything
starts.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence

from cnnjax import cli
from cnnjax.errors import UserError
from cnnjax.sweep import env as env_lib, flags as sweep_flags, naming, runner, spec, store

FLAGS = sweep_flags.FLAGS


def config_overrides(argv: Sequence[str]) -> list[str]:
  """The ``--config.key=value`` flags, applied to every run."""
  return [a for a in argv if a.startswith("--config.")]


def override_keys(overrides: Sequence[str]) -> list[str]:
  return [a[len("--config."):].split("=", 1)[0] for a in overrides]


def dry_run_table(trials: Sequence[store.Trial], workdir: str) -> str:
  """The table of ``--sweep_dry_run``: every trial, where it runs, and whether it is done."""
  rows = [("variant", "seed", "overrides", "workdir", "state")]
  for trial in trials:
    done = store.is_done(trial.run_dir(workdir), trial.config_hash)
    overrides = " ".join(f"{k}={naming.value_text(v)}" for k, v in trial.overrides.items())
    rows.append((trial.variant, str(trial.seed), overrides or "(base)", trial.run_dir(workdir),
                 "done" if done else "to run"))
  widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
  return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)


def _expand(config, argv: Sequence[str]) -> tuple[spec.SweepPlan, str, list[str]]:
  """The checked plan, the experiment file and the ``--config.*`` flags of the command."""
  config_spec = cli.config_arg(argv[1:])
  if config_spec is None:
    raise UserError("--config is required.")
  overrides = config_overrides(argv[1:])
  plan = spec.expand(spec.load(config_spec), config, override_keys(overrides))
  return plan, config_spec, overrides


def _write(plan: spec.SweepPlan, workdir: str, argv: Sequence[str], config_spec: str,
           overrides: list[str]) -> store.SweepRecord:
  try:
    return store.write_sweep(os.path.abspath(workdir), plan, launch=argv[0],
                             config_spec=config_spec, cli_overrides=overrides, command=argv)
  except OSError as e:
    raise UserError(f"--workdir={workdir!r} can't be written: {e.strerror or e}.") from None


def _run(record: store.SweepRecord, sweep_dir: str) -> int:
  if record.removed:
    print(f"no longer in the sweep (kept, not deleted): {', '.join(record.removed)}",
          file=sys.stderr)
  if FLAGS.sweep_executor == "local":
    slots = env_lib.local_slots(FLAGS.sweep_workers, FLAGS.sweep_runs_per_device)
    return runner.run(sweep_dir, record, slots, retries=FLAGS.sweep_retries,
                      warm=not FLAGS.sweep_process_per_run)
  from cnnjax.sweep import slurm  # pylint: disable=import-outside-toplevel  # submitit
  return slurm.submit(sweep_dir, record, kind=FLAGS.sweep_executor,
                      options=slurm.options_from_flags(FLAGS))


def main(config, workdir: str, argv: Sequence[str], fail: Callable[[str], None]) -> None:
  """Runs the sweep and exits: 0 all done, 2 bad input, 3 some runs failed, 128 + signal."""
  import jax  # pylint: disable=import-outside-toplevel
  # The parent only checks configs and counts MACs: it must never hold an accelerator.
  jax.config.update("jax_platforms", "cpu")
  try:
    plan, config_spec, overrides = _expand(config, argv)
    if FLAGS.sweep_dry_run:
      print(dry_run_table(plan.trials, workdir))
      print(f"{len(plan.trials)} runs; nothing started (--sweep_dry_run).")
      sys.exit(0)
    record = _write(plan, workdir, argv, config_spec, overrides)
    sys.exit(_run(record, os.path.abspath(workdir)))
  except UserError as e:
    fail(str(e))
