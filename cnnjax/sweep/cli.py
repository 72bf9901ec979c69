"""``launch.py --sweep``: expand and check the sweep, write sweep.json, run or submit it.

Every bad input (no ``get_sweep``, a misspelt key, a point that fails a single run's checks, a
sweep directory of another base config) is one ``error:`` line and exit code 2, before anything
starts.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence

from cnnjax.errors import UserError
from cnnjax.sweep import env as env_lib, flags as sweep_flags, runner, spec, store

FLAGS = sweep_flags.FLAGS


def config_arg(argv: Sequence[str]) -> str:
  """The value of ``--config`` (``path.py[:arg]``)."""
  for i, a in enumerate(argv):
    if a.startswith("--config="):
      return a.split("=", 1)[1]
    if a == "--config" and i + 1 < len(argv):
      return argv[i + 1]
  raise UserError("--config is required.")


def config_overrides(argv: Sequence[str]) -> list[str]:
  """The ``--config.key=value`` flags, applied to every run."""
  return [a for a in argv if a.startswith("--config.")]


def override_keys(overrides: Sequence[str]) -> list[str]:
  return [a[len("--config."):].split("=", 1)[0] for a in overrides]


def dry_run_table(sweep: dict) -> str:
  rows = [("variant", "seed", "overrides", "workdir", "state")]
  base = FLAGS.workdir
  for r in sweep["runs"]:
    done = store.is_done(os.path.join(base, r["workdir"]), r["config_hash"])
    overrides = " ".join(f"{k}={store.describe(v)}" for k, v in r["overrides"].items())
    rows.append((r["variant"], str(r["seed"]), overrides or "(base)",
                 os.path.join(base, r["workdir"]), "done" if done else "to run"))
  widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
  return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)


def _prepare(config, workdir: str, argv: Sequence[str]) -> dict:
  config_spec = config_arg(argv[1:])
  overrides = config_overrides(argv[1:])
  declared = spec.load(config_spec)
  plan = spec.expand(declared, config, override_keys(overrides))
  sweep_dir = os.path.abspath(workdir)
  if FLAGS.sweep_dry_run:
    runs = [{"variant": r.variant, "seed": r.seed, "workdir": r.workdir,
             "config_hash": r.config_hash, "overrides": r.overrides} for r in plan.runs]
    return {"runs": runs, "dry": True}
  try:
    return store.write_sweep(sweep_dir, plan, launch=argv[0], config_spec=config_spec,
                             cli_overrides=overrides, command=argv)
  except OSError as e:
    raise UserError(f"--workdir={workdir!r} can't be written: {e.strerror or e}.") from None


def _run(sweep: dict, sweep_dir: str) -> int:
  if sweep["removed"]:
    print(f"no longer in the sweep (kept, not deleted): {', '.join(sweep['removed'])}",
          file=sys.stderr)
  if FLAGS.sweep_executor == "local":
    slots = env_lib.local_slots(FLAGS.sweep_workers, FLAGS.sweep_runs_per_device)
    return runner.run(sweep_dir, sweep, slots, retries=FLAGS.sweep_retries)
  from cnnjax.sweep import slurm  # pylint: disable=import-outside-toplevel  # submitit
  return slurm.submit(sweep_dir, sweep, executor=FLAGS.sweep_executor,
                      options=slurm.options_from_flags(FLAGS))


def main(config, workdir: str, argv: Sequence[str], fail: Callable[[str], None]) -> None:
  """Runs the sweep and exits: 0 all done, 2 bad input, 3 some runs failed, 128 + signal."""
  import jax  # pylint: disable=import-outside-toplevel
  # The parent only checks configs and counts MACs: it must never hold an accelerator.
  jax.config.update("jax_platforms", "cpu")
  try:
    sweep = _prepare(config, workdir, argv)
    if sweep.get("dry"):
      print(dry_run_table(sweep))
      print(f"{len(sweep['runs'])} runs; nothing started (--sweep_dry_run).")
      sys.exit(0)
    sys.exit(_run(sweep, os.path.abspath(workdir)))
  except UserError as e:
    fail(str(e))
