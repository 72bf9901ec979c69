"""Command-line edges of the benchmark scripts: bad input is one ``error:`` line and exit 2;
results are written as strict JSON (a failed measurement is ``null``)."""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Iterator

from benchmarks.cases import CaseError
from cnnjax.errors import UserError

USAGE_ERROR = 2


def fail(message: str) -> None:
  print(f"error: {message}", file=sys.stderr)
  sys.exit(USAGE_ERROR)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
  """Turns a bad model name, case or batch inside the block into ``fail``."""
  try:
    yield
  except (UserError, CaseError) as e:
    fail(str(e))


def start(argv: list[str]) -> None:
  """Refuses stray arguments and keeps library INFO logs (JAX's backend probing) off stderr,
  unless ``-v`` was given."""
  from absl import flags, logging  # pylint: disable=import-outside-toplevel
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  if len(argv) > 1:
    fail(f"unexpected arguments {' '.join(argv[1:])!r}; flags look like --name=value.")


def finite_or_null(value):
  """``value`` with every NaN or ±inf float replaced by None, so the file is strict JSON.

  A measurement that could not be made (a zero time, an unknown FLOP count) reads as ``null``
  to every JSON parser, where ``NaN`` would break the strict ones.
  """
  if isinstance(value, float):
    return value if math.isfinite(value) else None
  if isinstance(value, dict):
    return {k: finite_or_null(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [finite_or_null(v) for v in value]
  return value
