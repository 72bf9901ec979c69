"""The converter's first command name, kept working: ``python -m cnnjax.convert_torchvision``
is ``python -m cnnjax.transfer`` (same flags)."""

from cnnjax import cli
from cnnjax.transfer.__main__ import main

if __name__ == "__main__":
  cli.run(main)
