"""A warm worker for the tests, without JAX: ``launch.py --sweep_worker`` with a ``main`` that
does what its run's first argument says (``ok``, ``boom``: raises, ``die``: kill -9 itself,
``exit3``) and prints its process id."""

import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from cnnjax.sweep import worker  # pylint: disable=wrong-import-position


def main(argv):
  print(f"pid {os.getpid()}", flush=True)
  action = argv[1]
  if action == "boom":
    raise RuntimeError("boom in the run")
  if action == "die":
    os.kill(os.getpid(), signal.SIGKILL)
  if action == "exit3":
    print("error: a failed run", file=sys.stderr)
    sys.exit(3)


if __name__ == "__main__":
  assert sys.argv[1:] == ["--sweep_worker"], sys.argv
  worker.serve(main, parse_argv=lambda argv: argv)
