"""The errors a user sees, each reported as a single line with its own exit code.

launch.py turns them into one line on stderr and an exit code, never a deep JAX traceback:

| error | exit code | what it means |
|---|---|---|
| ``UserError`` | 2 | bad input: the message names the bad value and the valid choices |
| ``RunFailed`` | 3 | the run itself failed (diverged, a checkpoint save failed, a peer never came) |
| ``Stopped`` | 128 + signal | SIGTERM, SIGINT, SIGHUP, SIGUSR1/2: a checkpoint was saved; rerun the same command |
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

EXIT_BAD_INPUT = 2
EXIT_RUN_FAILED = 3


class UserError(ValueError):
  """Bad input from the user: the message names the bad value and the valid choices."""


class RunFailed(RuntimeError):
  """A run that could not go on (diverged, a failed save, a missing peer); exit code 3."""


class Stopped(Exception):
  """A run stopped by ``signum`` after saving a checkpoint; exit code 128 + ``signum``."""

  def __init__(self, message: str, signum: int):
    super().__init__(message)
    self.signum = signum


def unknown(kind: str, name: object, choices: Iterable[str]) -> UserError:
  """An error for a name not among ``choices``, listing close matches first."""
  choices = sorted(choices)
  close = difflib.get_close_matches(str(name), choices, n=3, cutoff=0.5)
  hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
  return UserError(f"unknown {kind} {name!r}.{hint} Valid choices: {', '.join(choices)}.")
