"""cnnjax's one entry point.

  python launch.py --config=experiments/lenet_mnist.py --workdir=runs/lenet
  python launch.py --config=experiments/lenet_mnist.py --workdir=runs/lenet --mode=eval
  python launch.py --config=experiments/lenet_mnist.py:original --config.batch_size=256 ...

Bad input (an unknown model, dataset or config key, a wrong type, a missing file, a workdir that
can't be written, ...) ends with one line ``error: ...`` on stderr and exit code 2; a run that
fails (diverged, a checkpoint save failed) with one ``error:`` line and exit code 3; SIGTERM,
SIGINT, SIGHUP, SIGUSR1 and SIGUSR2 (Slurm's warnings) save a checkpoint at the current step,
print how to resume and exit with 128 + signal.

Several processes (here 2 on one machine; add ``--distributed_timeout_s`` to wait less than 300 s
for the others, a missing one ends with one line and exit code 3):

  python launch.py --config=... --workdir=runs/x --distributed --coordinator=127.0.0.1:12345 \
      --num_processes=2 --process_id=0   # and --process_id=1 in a second shell

A sweep (the experiment file's ``get_sweep(arg)``; every point × seed as its own child run, see
cnnjax/sweep): ``python launch.py --config=experiments/ablations.py:activation --workdir=DIR
--sweep [--sweep_workers=2] [--sweep_dry_run] [--sweep_executor=slurm ...]``.
"""

from __future__ import annotations

if __name__ == "__main__":  # first: restarts once with huge pages for XLA's buffers
  from cnnjax import hugepages
  hugepages.reexec()

import sys  # pylint: disable=wrong-import-position

from absl import flags, logging
from ml_collections import config_flags

from cnnjax import cli, compilation
from cnnjax.cli import fail
from cnnjax.sweep import flags as sweep_flags

MODES = ("train", "eval")

config_flags.DEFINE_config_file("config", None, "Experiment file: experiments/NAME.py[:ARG].",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and plots.")
flags.DEFINE_enum("mode", "train", MODES, "What to do with the experiment.")
flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize (multi-host runs).")
flags.DEFINE_string("coordinator", None, "With --distributed: coordinator host:port.")
flags.DEFINE_integer("num_processes", None, "With --distributed: number of processes.")
flags.DEFINE_integer("process_id", None, "With --distributed: this process's index.")
flags.DEFINE_float("distributed_timeout_s", 300.0, "With --distributed: how long the processes "
                   "wait for each other before the run fails.")
FLAGS = flags.FLAGS


def _initialize_distributed() -> None:
  """With --distributed, joins the other processes: exit 2 for bad flags, 3 for a missing peer."""
  if not FLAGS.distributed:
    given = [f"--{k}" for k in ("coordinator", "num_processes", "process_id",
                                "distributed_timeout_s") if FLAGS[k].present]
    if given:
      one = len(given) == 1
      fail(f"{', '.join(given)} {'is' if one else 'are'} only read with --distributed; add "
           f"--distributed or drop {'it' if one else 'them'}.")
    return
  from cnnjax import distributed  # pylint: disable=import-outside-toplevel  # imports JAX
  with cli.reported():
    distributed.initialize(FLAGS.coordinator, FLAGS.num_processes, FLAGS.process_id,
                           FLAGS.distributed_timeout_s)


def _sweep(config) -> None:
  """--sweep hands the whole command to the sweep runner, which exits."""
  given = sweep_flags.given_without_sweep()
  if given:
    fail(f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} only read with --sweep.")
  if FLAGS.mode != "train" or FLAGS.distributed:
    fail("--sweep runs training runs on one host each: drop --mode and --distributed.")
  from cnnjax.sweep import cli as sweep_cli  # pylint: disable=import-outside-toplevel
  sweep_cli.main(config, FLAGS.workdir, sys.argv, fail)


def main(argv: list[str]) -> None:
  if FLAGS.sweep_worker:  # a local sweep's warm worker: runs main for each run it is sent
    from cnnjax.sweep import worker  # pylint: disable=import-outside-toplevel
    worker.serve(main)
    return
  cli.no_arguments(argv)
  config = cli.config_flag()
  if config is None:
    fail("--config is required, e.g. --config=experiments/lenet_mnist.py.")
  cli.require("workdir", hint="e.g. --workdir=runs/lenet")
  if FLAGS.sweep or sweep_flags.given_without_sweep():
    _sweep(config)
  cli.quiet_logging()
  _initialize_distributed()
  from cnnjax import cpu  # pylint: disable=import-outside-toplevel  # imports JAX
  from cnnjax.train import loop  # pylint: disable=import-outside-toplevel
  cache_stats = compilation.persistent_cache()
  with cpu.lowering(), cli.reported():  # the CPU backend's FFI targets before any compilation
    run = loop.train if FLAGS.mode == "train" else loop.evaluate
    result = run(config, FLAGS.workdir)
  logging.info("final: %s", result)
  print(cache_stats.line())
  print("final " + " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                            for k, v in result.items()))


if __name__ == "__main__":
  cli.run(main)
