"""cnnjax's one entry point.

  python launch.py --config=experiments/lenet_mnist.py --workdir=runs/lenet
  python launch.py --config=experiments/lenet_mnist.py --workdir=runs/lenet --mode=eval
  python launch.py --config=experiments/lenet_mnist.py:original --config.batch_size=256 ...

Bad input (an unknown model, dataset or config key, a wrong type, a missing file, a workdir that
can't be written, ...) ends with one line ``error: ...`` on stderr and exit code 2; a run that
fails (diverged, a checkpoint save failed) with one ``error:`` line and exit code 3; SIGTERM or
SIGINT save a checkpoint at the current step, print how to resume and exit with 128 + signal.

Several processes (here 2 on one machine; add ``--distributed_timeout_s`` to wait less than 300 s
for the others, a missing one ends with one line and exit code 3):

  python launch.py --config=... --workdir=runs/x --distributed --coordinator=127.0.0.1:12345 \
      --num_processes=2 --process_id=0   # and --process_id=1 in a second shell

A sweep (the experiment file's ``get_sweep(arg)``; every point × seed as its own child run, see
cnnjax/sweep): ``python launch.py --config=experiments/ablations.py:activation --workdir=DIR
--sweep [--sweep_workers=2] [--sweep_dry_run] [--sweep_executor=slurm ...]``.
"""

from __future__ import annotations

import os
import re
import signal
import sys

from absl import app, flags, logging
from ml_collections import config_flags

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


def fail(message: str, code: int = 2) -> None:  # 2: cnnjax.errors.EXIT_BAD_INPUT
  """The one way launch.py reports an error: a single line and an exit code (2: bad input)."""
  print(f"error: {message}", file=sys.stderr)
  sys.exit(code)


def _config_path(argv: list[str]) -> str | None:
  for i, arg in enumerate(argv):
    if arg.startswith("--config="):
      return arg.split("=", 1)[1].partition(":")[0]
    if arg == "--config" and i + 1 < len(argv):
      return argv[i + 1].partition(":")[0]
  return None


def _override_error(argv: list[str], error: Exception) -> str:
  """One line for a bad ``--config.key=value``: which key, and the close match if any."""
  text = str(error).replace("\\", "")
  bad = next((a.split("=", 1)[0][2:] for a in argv if a.startswith("--config.")
              and a.split("=", 1)[0][9:].split(".")[-1] in text), None)
  close = re.search(r'Did you mean "([^"]+)"', text)
  hint = f" Did you mean {close.group(1)!r}?" if close else ""
  if isinstance(error, (AttributeError, KeyError)) and bad:
    return f"unknown config key {bad!r}.{hint} See experiments/base.py for every key."
  return f"bad --config override: {text.splitlines()[0] if text else type(error).__name__}"


def parse_flags(argv: list[str]) -> list[str]:
  """absl flag parsing, with every problem reported as one line (absl would exit 1)."""
  path = _config_path(argv)
  if path is not None and not os.path.isfile(path):
    fail(f"config file {path!r} does not exist (experiment files live in experiments/).")
  try:
    return FLAGS(argv)
  except flags.Error as e:
    root = _root_cause(e)
    if "parsing config file" in str(e) and root is not e:  # the experiment file raised
      fail(f"can't load --config: {type(root).__name__}: {str(root).splitlines()[0]}")
    fail(str(e).splitlines()[0])
  except (OSError, KeyError, AttributeError, TypeError, ValueError, SyntaxError) as e:
    fail(_override_error(argv, e))
  return []


def _root_cause(error: BaseException) -> BaseException:
  while error.__cause__ or error.__context__:
    error = error.__cause__ or error.__context__
  return error


def _load_config():
  try:
    return FLAGS.config
  except Exception as e:  # pylint: disable=broad-except  # a broken experiment file
    cause = _root_cause(e)
    fail(f"can't load --config: {type(cause).__name__}: {str(cause).splitlines()[0]}")


def _compilation_cache() -> dict:
  """Turns on JAX's persistent compilation cache (``CNNJAX_CACHE``, default ~/.cache/cnnjax/jax)
  and returns counters that fill as programs are compiled or loaded from it."""
  import jax  # pylint: disable=import-outside-toplevel
  cache = os.environ.get("CNNJAX_CACHE", os.path.expanduser("~/.cache/cnnjax/jax"))
  jax.config.update("jax_compilation_cache_dir", cache)
  # Train and eval steps of small models compile in well under JAX's default 1 s threshold.
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
  stats = {"dir": cache, "requests": 0, "hits": 0, "compile_s": 0.0}

  def on_event(event: str, **kwargs) -> None:
    del kwargs
    if event == "/jax/compilation_cache/compile_requests_use_cache":
      stats["requests"] += 1
    elif event == "/jax/compilation_cache/cache_hits":
      stats["hits"] += 1

  def on_duration(event: str, seconds: float, **kwargs) -> None:
    del kwargs
    if event == "/jax/core/compile/backend_compile_duration":
      stats["compile_s"] += seconds

  jax.monitoring.register_event_listener(on_event)
  jax.monitoring.register_event_duration_secs_listener(on_duration)
  return stats


def _cache_line(stats: dict) -> str:
  return (f"compilation: {stats['compile_s']:.1f} s compiling; {stats['hits']} of "
          f"{stats['requests']} cacheable programs loaded from the cache {stats['dir']}")


def _orbax_failures(record) -> bool:
  """Drops orbax's ERROR logs (tracebacks from its save threads, and asyncio's "Future exception
  was never retrieved" for its reads left pending by a failed restore): the loop reports the
  same failure as one line that quotes orbax's message. ``-v 0`` shows them again."""
  return not (record.levelno >= logging.ERROR and (
      f"{os.sep}orbax{os.sep}" in record.pathname or record.name == "asyncio"))


def _initialize_distributed() -> None:
  """With --distributed, joins the other processes: exit 2 for bad flags, 3 for a missing peer."""
  # pylint: disable=import-outside-toplevel  # flag errors stay quick: no JAX import before them
  from cnnjax import distributed
  from cnnjax.errors import EXIT_RUN_FAILED, RunFailed, UserError
  if not FLAGS.distributed:
    given = [f"--{k}" for k in ("coordinator", "num_processes", "process_id",
                                "distributed_timeout_s") if FLAGS[k].present]
    if given:
      one = len(given) == 1
      fail(f"{', '.join(given)} {'is' if one else 'are'} only read with --distributed; add "
           f"--distributed or drop {'it' if one else 'them'}.")
    return
  try:
    distributed.initialize(FLAGS.coordinator, FLAGS.num_processes, FLAGS.process_id,
                           FLAGS.distributed_timeout_s)
  except UserError as e:
    fail(str(e))
  except RunFailed as e:
    fail(str(e), EXIT_RUN_FAILED)


def _sweep(config) -> None:
  """--sweep hands the whole command to the sweep runner, which exits."""
  given = sweep_flags.given_without_sweep()
  if given:
    fail(f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} only read with --sweep.")
  if FLAGS.mode != "train" or FLAGS.distributed:
    fail("--sweep runs training runs on one host each: drop --mode and --distributed.")
  from cnnjax.sweep import cli  # pylint: disable=import-outside-toplevel
  cli.main(config, FLAGS.workdir, sys.argv, fail)


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    fail(f"unexpected arguments {' '.join(argv[1:])!r}; flags look like --name=value.")
  config = _load_config()
  if config is None:
    fail("--config is required, e.g. --config=experiments/lenet_mnist.py.")
  if FLAGS.workdir is None:
    fail("--workdir is required, e.g. --workdir=runs/lenet.")
  if FLAGS.sweep or sweep_flags.given_without_sweep():
    _sweep(config)
  if not FLAGS["verbosity"].present:  # orbax logs every save at INFO; -v 0 brings it back
    logging.set_verbosity(logging.WARNING)
    logging.get_absl_handler().addFilter(_orbax_failures)
  _initialize_distributed()
  from cnnjax import errors  # pylint: disable=import-outside-toplevel
  from cnnjax.train import loop  # pylint: disable=import-outside-toplevel
  cache_stats = _compilation_cache()
  try:
    if FLAGS.mode == "train":
      result = loop.train(config, FLAGS.workdir)
    else:
      result = loop.evaluate(config, FLAGS.workdir)
  except errors.UserError as e:
    fail(str(e))
  except errors.Stopped as e:  # SIGTERM/SIGINT: the checkpoint is saved
    print(str(e), file=sys.stderr)
    sys.exit(128 + e.signum)
  except KeyboardInterrupt:  # Ctrl-C outside training (evaluation, start-up): nothing to save
    print("interrupted: nothing more was saved; the checkpoints are as they were.",
          file=sys.stderr)
    sys.exit(128 + signal.SIGINT)
  except (errors.RunFailed, OSError) as e:
    fail(str(e), errors.EXIT_RUN_FAILED)
  logging.info("final: %s", result)
  print(_cache_line(cache_stats))
  print("final " + " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                            for k, v in result.items()))


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
