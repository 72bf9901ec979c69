"""Command-line edges of the benchmark scripts: bad input is one ``error:`` line and exit 2;
results are written as strict JSON (a failed measurement is ``null``)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

from benchmarks.cases import CaseError
from cnnjax import cli
from cnnjax.cli import fail, run  # pylint: disable=unused-import  # the benchmarks' entry point
from cnnjax.errors import EXIT_BAD_INPUT as USAGE_ERROR, UserError


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
  cli.quiet_logging()
  cli.no_arguments(argv)


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
