"""JAX's persistent compilation cache for this process: a program compiled once (a variant's
first seed, a run before it resumed, a notebook's earlier session) is loaded from disk the next
time instead of compiled again.

Turned on by launch.py and the ``python -m cnnjax.<tool>`` commands, and from Python (a
notebook) by calling ``persistent_cache()`` once. The directory: the argument, else
``$CNNJAX_CACHE``, else ~/.cache/cnnjax/jax. Child processes (a sweep's runs) read
``$CNNJAX_CACHE``: set it to share one cache with them.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

CACHE_ENV = "CNNJAX_CACHE"
DEFAULT_DIR = os.path.join("~", ".cache", "cnnjax", "jax")
# Train and eval steps of small models compile in well under JAX's default 1 s threshold.
MIN_CACHED_COMPILE_S = 0.2

_REQUESTS = "/jax/compilation_cache/compile_requests_use_cache"
_HITS = "/jax/compilation_cache/cache_hits"
_COMPILE = "/jax/core/compile/backend_compile_duration"


@dataclasses.dataclass
class CacheStats:
  """Counters that fill as programs are compiled or loaded from the cache."""

  dir: str
  requests: int = 0  # programs looked up in the cache
  hits: int = 0  # of them, loaded from it
  compile_s: float = 0.0  # seconds spent compiling (cache misses, and programs too fast to keep)

  def on_event(self, event: str, **kwargs) -> None:
    del kwargs
    if event == _REQUESTS:
      self.requests += 1
    elif event == _HITS:
      self.hits += 1

  def on_duration(self, event: str, seconds: float, **kwargs) -> None:
    del kwargs
    if event == _COMPILE:
      self.compile_s += seconds

  def line(self) -> str:
    return (f"compilation: {self.compile_s:.1f} s compiling; {self.hits} of {self.requests} "
            f"cacheable programs loaded from the cache {self.dir}")


def cache_dir(directory: str | None = None, environ: Mapping[str, str] | None = None) -> str:
  """The cache directory: ``directory``, else ``$CNNJAX_CACHE``, else ~/.cache/cnnjax/jax."""
  environ = os.environ if environ is None else environ
  return os.path.expanduser(directory or environ.get(CACHE_ENV) or DEFAULT_DIR)


# JAX keeps its monitoring listeners for the life of the process: they are added once, and feed
# the counters of the newest call (a notebook cell run twice, each run of a warm sweep worker:
# each counts from its call on, nothing twice).
_counting: CacheStats | None = None


def _on_event(event: str, **kwargs) -> None:
  if _counting is not None:
    _counting.on_event(event, **kwargs)


def _on_duration(event: str, seconds: float, **kwargs) -> None:
  if _counting is not None:
    _counting.on_duration(event, seconds, **kwargs)


def persistent_cache(directory: str | None = None,
                     min_compile_s: float = MIN_CACHED_COMPILE_S) -> CacheStats:
  """Turns on the persistent cache in ``cache_dir(directory)`` for programs that take at least
  ``min_compile_s`` to compile; returns counters (``CacheStats``) of what is compiled or loaded
  from now on (an earlier call's counters stop counting).

  JAX opens its cache directory once per process; this resets that, so a second call with
  another directory takes effect."""
  import jax  # pylint: disable=import-outside-toplevel  # the CLIs parse their flags first
  from jax.experimental.compilation_cache import compilation_cache  # pylint: disable=import-outside-toplevel
  global _counting
  path = cache_dir(directory)
  jax.config.update("jax_compilation_cache_dir", path)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", min_compile_s)
  compilation_cache.reset_cache()
  if _counting is None:
    jax.monitoring.register_event_listener(_on_event)
    jax.monitoring.register_event_duration_secs_listener(_on_duration)
  _counting = CacheStats(path)
  return _counting
