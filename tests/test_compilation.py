"""The persistent compilation cache from Python: where it lives, what it counts, and that a
second call (a notebook cell run again, a sweep worker's next run, another directory) counts
from then on, nothing twice, and does not keep the old directory."""

import os

import jax
import jax.numpy as jnp
import pytest
from jax.experimental.compilation_cache import compilation_cache as jax_cache

from cnnjax import compilation


def test_the_directory_is_the_argument_then_the_environment_then_the_default():
  env = {compilation.CACHE_ENV: "/from/env"}
  assert compilation.cache_dir("/given", env) == "/given"
  assert compilation.cache_dir(None, env) == "/from/env"
  assert compilation.cache_dir(None, {}) == os.path.expanduser("~/.cache/cnnjax/jax")


def test_the_counters_count_requests_hits_and_compile_seconds():
  stats = compilation.CacheStats("/c")
  for event in ("/jax/compilation_cache/compile_requests_use_cache",) * 3 + (
      "/jax/compilation_cache/cache_hits", "/jax/something_else"):
    stats.on_event(event, extra=1)
  stats.on_duration("/jax/core/compile/backend_compile_duration", 0.25)
  stats.on_duration("/jax/core/compile/backend_compile_duration", 0.5)
  stats.on_duration("/jax/other_duration", 9.0)
  assert (stats.requests, stats.hits, stats.compile_s) == (3, 1, 0.75)
  assert stats.line() == ("compilation: 0.8 s compiling; 1 of 3 cacheable programs loaded from "
                          "the cache /c")


@pytest.fixture
def restored_jax_cache():
  """JAX's cache settings as they were before the test (the cache is process-wide)."""
  before = (jax.config.jax_compilation_cache_dir,
            jax.config.jax_persistent_cache_min_compile_time_secs)
  yield
  jax.config.update("jax_compilation_cache_dir", before[0])
  jax.config.update("jax_persistent_cache_min_compile_time_secs", before[1])
  jax_cache.reset_cache()


def test_a_second_directory_takes_effect_and_nothing_is_counted_twice(tmp_path,
                                                                      restored_jax_cache):
  del restored_jax_cache
  x = jnp.ones(5)
  stats = compilation.persistent_cache(str(tmp_path / "a"), min_compile_s=0.0)
  jax.jit(lambda x: jnp.sin(x) * 7.0 + 0.125)(x).block_until_ready()
  assert len(os.listdir(tmp_path / "a")) >= 1  # the program was written to the cache
  assert (stats.requests, stats.hits) == (1, 0)
  again = compilation.persistent_cache(str(tmp_path / "b"), min_compile_s=0.0)
  assert again.dir == str(tmp_path / "b") and again.requests == 0  # counts from its call on
  written = sorted(os.listdir(tmp_path / "a"))
  jax.jit(lambda x: jnp.cos(x) * 5.0 - 0.25)(x).block_until_ready()
  assert (again.requests, again.hits) == (1, 0)  # once, though turned on twice
  assert stats.requests == 1  # the first call's counters stopped
  assert os.listdir(tmp_path / "b") and sorted(os.listdir(tmp_path / "a")) == written
