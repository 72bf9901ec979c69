"""cnnjax.cli, the command-line edge every tool shares: each error kind is one line and its
exit code."""

import signal

import pytest

from cnnjax import cli
from cnnjax.errors import RunFailed, Stopped, UserError


@pytest.mark.parametrize("error,code,line", [
    (UserError("bad --x"), 2, "error: bad --x"),
    (RunFailed("diverged"), 3, "error: diverged"),
    (OSError("disk full"), 3, "error: disk full"),
    (Stopped("stopped by SIGTERM at step 7", signal.SIGTERM), 128 + signal.SIGTERM,
     "stopped by SIGTERM at step 7"),
    (KeyboardInterrupt(), 128 + signal.SIGINT, "interrupted: nothing more was saved"),
])
def test_reported_errors_are_one_line_and_their_exit_code(capsys, error, code, line):
  with pytest.raises(SystemExit) as done:
    with cli.reported():
      raise error
  assert done.value.code == code
  err = capsys.readouterr().err
  assert err.startswith(line) and err.count("\n") == 1


def test_other_exceptions_are_bugs_and_pass_through():
  with pytest.raises(ZeroDivisionError):
    with cli.reported():
      raise ZeroDivisionError


def test_stray_arguments_are_refused(capsys):
  with pytest.raises(SystemExit) as done:
    cli.no_arguments(["prog", "extra"])
  assert done.value.code == 2 and "unexpected arguments 'extra'" in capsys.readouterr().err
