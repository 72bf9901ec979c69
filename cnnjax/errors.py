"""The one error type a user sees: bad input, reported as a single line.

launch.py turns a ``UserError`` into ``error: <message>`` on stderr and exit code 2, so everything
that checks user input (configs, names, options, paths) raises this, never a deep JAX traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(ValueError):
  """Bad input from the user: the message names the bad value and the valid choices."""


def unknown(kind: str, name: object, choices: Iterable[str]) -> UserError:
  """An error for a name not among ``choices``, listing close matches first."""
  choices = sorted(choices)
  close = difflib.get_close_matches(str(name), choices, n=3, cutoff=0.5)
  hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
  return UserError(f"unknown {kind} {name!r}.{hint} Valid choices: {', '.join(choices)}.")
