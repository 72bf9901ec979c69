"""The defaults every experiment starts from: ``cnnjax.config.defaults()`` (every key cnnjax
reads, with its one default, documented there)."""

from cnnjax.config import defaults, none  # pylint: disable=unused-import  # none: for experiments


def get_config(arg=None):
  del arg
  return defaults()
