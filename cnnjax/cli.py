"""The command-line edge shared by launch.py, every ``python -m cnnjax.<tool>`` and the
benchmarks: one-line errors with their exit codes, absl flag parsing that never prints a usage
dump, quiet logging, and JAX's persistent compilation cache.

Exit codes (``cnnjax.errors``): 2 bad input, 3 a run that failed, 128 + signal a run stopped by
SIGTERM/SIGINT after saving. Nothing here imports JAX at module level, so a bad flag fails in
well under a second.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
from collections.abc import Callable, Iterator

from absl import app, flags, logging

from cnnjax.errors import EXIT_BAD_INPUT, EXIT_RUN_FAILED, RunFailed, Stopped, UserError

FLAGS = flags.FLAGS
CACHE_ENV = "CNNJAX_CACHE"
# Train and eval steps of small models compile in well under JAX's default 1 s threshold.
MIN_CACHED_COMPILE_S = 0.2


def fail(message: str, code: int = EXIT_BAD_INPUT) -> None:
  """The one way a command reports an error: ``error: message`` on stderr and exit ``code``."""
  print(f"error: {message}", file=sys.stderr)
  sys.exit(code)


def no_arguments(argv: list[str]) -> None:
  """Refuses positional arguments (absl leaves them in argv)."""
  if len(argv) > 1:
    fail(f"unexpected arguments {' '.join(argv[1:])!r}; flags look like --name=value.")


def require(*names: str, hint: str = "") -> None:
  """Fails with one line for the first of the flags ``names`` that was not given."""
  for name in names:
    if FLAGS[name].value is None:
      fail(f"--{name} is required{', ' + hint if hint else ''}.")


def _root_cause(error: BaseException) -> BaseException:
  while error.__cause__ or error.__context__:
    error = error.__cause__ or error.__context__
  return error


def config_arg(argv) -> str | None:
  """The value of ``--config`` in ``argv`` (``path.py[:arg]``), read before absl parses it;
  None if it is not given."""
  for i, arg in enumerate(argv):
    if arg.startswith("--config="):
      return arg.split("=", 1)[1]
    if arg == "--config" and i + 1 < len(argv):
      return argv[i + 1]
  return None


def _override_error(argv: list[str], error: Exception) -> str:
  """One line for a bad ``--config.key=value``: which key, and the close match if any."""
  text = str(error).replace("\\", "")
  bad = next((a.split("=", 1)[0][2:] for a in argv if a.startswith("--config.")
              and a.split("=", 1)[0][9:].split(".")[-1] in text), None)
  close = re.search(r'Did you mean "([^"]+)"', text)
  hint = f" Did you mean {close.group(1)!r}?" if close else ""
  if isinstance(error, (AttributeError, KeyError)) and bad:
    return f"unknown config key {bad!r}.{hint} See cnnjax/config.py (defaults) for every key."
  return f"bad --config override: {text.splitlines()[0] if text else type(error).__name__}"


def parse_flags(argv: list[str]) -> list[str]:
  """absl flag parsing, with every problem reported as one line and exit 2 (absl exits 1).

  With a ``--config`` file flag (ml_collections), a missing file, an experiment file that
  raises and a bad ``--config.key=value`` are one line each too."""
  spec = config_arg(argv) if "config" in FLAGS else None
  path = spec.partition(":")[0] if spec is not None else None
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


def config_flag():
  """The value of the ``--config`` flag, a broken experiment file reported as one line."""
  try:
    return FLAGS.config
  except Exception as e:  # pylint: disable=broad-except  # the experiment file raised
    cause = _root_cause(e)
    fail(f"can't load --config: {type(cause).__name__}: {str(cause).splitlines()[0]}")


def _orbax_failures(record) -> bool:
  """Drops orbax's ERROR logs (tracebacks from its save threads, and asyncio's "Future exception
  was never retrieved" for its reads left pending by a failed restore): the loop reports the
  same failure as one line that quotes orbax's message. ``-v 0`` shows them again."""
  return not (record.levelno >= logging.ERROR and (
      f"{os.sep}orbax{os.sep}" in record.pathname or record.name == "asyncio"))


def quiet_logging() -> None:
  """Library INFO logs (orbax logs every save, JAX its backend probing) stay off stderr unless
  ``-v`` was given."""
  if not FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
    logging.get_absl_handler().addFilter(_orbax_failures)


# The counters of the current run: a sweep worker (cnnjax/sweep/worker.py) calls
# ``compilation_cache`` once per run, and JAX's listeners can only be added, once per process.
_CACHE_STATS: list[dict] = []


def compilation_cache() -> dict:
  """Turns on JAX's persistent compilation cache (``CNNJAX_CACHE``, default ~/.cache/cnnjax/jax)
  and returns counters that fill as programs are compiled or loaded from it (from now on)."""
  import jax  # pylint: disable=import-outside-toplevel
  cache = os.environ.get(CACHE_ENV, os.path.expanduser("~/.cache/cnnjax/jax"))
  jax.config.update("jax_compilation_cache_dir", cache)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_CACHED_COMPILE_S)
  stats = {"dir": cache, "requests": 0, "hits": 0, "compile_s": 0.0}
  if _CACHE_STATS:
    _CACHE_STATS[0] = stats
    return stats
  _CACHE_STATS.append(stats)

  def on_event(event: str, **kwargs) -> None:
    del kwargs
    if event == "/jax/compilation_cache/compile_requests_use_cache":
      _CACHE_STATS[0]["requests"] += 1
    elif event == "/jax/compilation_cache/cache_hits":
      _CACHE_STATS[0]["hits"] += 1

  def on_duration(event: str, seconds: float, **kwargs) -> None:
    del kwargs
    if event == "/jax/core/compile/backend_compile_duration":
      _CACHE_STATS[0]["compile_s"] += seconds

  jax.monitoring.register_event_listener(on_event)
  jax.monitoring.register_event_duration_secs_listener(on_duration)
  return stats


def cache_line(stats: dict) -> str:
  return (f"compilation: {stats['compile_s']:.1f} s compiling; {stats['hits']} of "
          f"{stats['requests']} cacheable programs loaded from the cache {stats['dir']}")


@contextlib.contextmanager
def reported() -> Iterator[None]:
  """Errors raised inside become one line and their exit code: ``UserError`` 2; ``RunFailed``
  and ``OSError`` 3; ``Stopped`` its message and 128 + signal; Ctrl-C outside training 130."""
  try:
    yield
  except UserError as e:
    fail(str(e))
  except Stopped as e:  # a stop signal (stopping.SIGNALS): the checkpoint is saved
    print(str(e), file=sys.stderr)
    sys.exit(128 + e.signum)
  except KeyboardInterrupt:  # Ctrl-C outside training (evaluation, start-up): nothing to save
    print("interrupted: nothing more was saved; the checkpoints are as they were.",
          file=sys.stderr)
    sys.exit(128 + signal.SIGINT)
  except (RunFailed, OSError) as e:
    fail(str(e), EXIT_RUN_FAILED)


def run(main: Callable[[list[str]], None]) -> None:
  """``absl.app.run`` with ``parse_flags``: the entry point of every command."""
  app.run(main, flags_parser=parse_flags)
