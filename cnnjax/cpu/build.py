"""Compiles conv.cc and batchnorm.cc on first use into a cache, loads it and registers its FFI targets.

The shared library is built with the system's C++ compiler (``$CXX``, default ``g++``) against
``jax.ffi.include_dir()`` and the oneDNN headers of the ``onednn-devel-cpu-gomp`` package, and
linked with ``libdnnl.so.3`` from ``onednn-cpu-gomp`` (both install into the environment's
prefix, ``sys.prefix``; ``$CNNJAX_ONEDNN_ROOT`` names another prefix). It goes into
``$CNNJAX_KERNEL_CACHE`` (default ``~/.cache/cnnjax/kernels``) under a name keyed by a hash of the
sources, the jaxlib version, the compiler, the flags and the oneDNN prefix, so a changed source or
an upgraded jaxlib builds anew and never loads a stale library. The build writes a temporary file
and renames it into place under a file lock: concurrent processes build once and never load a
half-written file. Any failure (no compiler, no oneDNN, a compile error) prints one notice line on
stderr and returns None; convolutions and batch normalization then stay XLA's own.

Nothing here runs at import: ``load`` is called by ``cnnjax.cpu.lowering``, at an entry point.
"""

from __future__ import annotations

import ctypes
import fcntl
import functools
import hashlib
import os
import shutil
import subprocess
import sys

import jax
import jaxlib

from cnnjax import files

VERSION = 2  # in the FFI target names: bump when the handlers' signature changes
TARGETS = {"fwd": f"cnnjax_onednn_conv_fwd_v{VERSION}",
           "bwd_data": f"cnnjax_onednn_conv_bwd_data_v{VERSION}",
           "bwd_weights": f"cnnjax_onednn_conv_bwd_weights_v{VERSION}",
           "bn_fwd": f"cnnjax_onednn_bn_fwd_v{VERSION}",
           "bn_bwd": f"cnnjax_onednn_bn_bwd_v{VERSION}"}
_SYMBOLS = {"fwd": "CnnjaxOnednnConvFwd", "bwd_data": "CnnjaxOnednnConvBwdData",
            "bwd_weights": "CnnjaxOnednnConvBwdWeights", "bn_fwd": "CnnjaxOnednnBnFwd",
            "bn_bwd": "CnnjaxOnednnBnBwd"}
_HERE = os.path.dirname(__file__)
SOURCES = tuple(os.path.join(_HERE, name) for name in ("conv.cc", "batchnorm.cc"))
HEADERS = (os.path.join(_HERE, "onednn.h"),)
CACHE_ENV = "CNNJAX_KERNEL_CACHE"
ROOT_ENV = "CNNJAX_ONEDNN_ROOT"
SWITCH_ENV = "CNNJAX_ONEDNN"  # "0": XLA's own ops
FLAGS = ("-O2", "-std=c++17", "-shared", "-fPIC", "-fopenmp", "-w")


class BuildError(Exception):
  """Why the extension is not available (one line)."""


def cache_dir() -> str:
  return os.environ.get(CACHE_ENV) or os.path.join(
      os.path.expanduser("~"), ".cache", "cnnjax", "kernels")


def _onednn_root() -> str:
  root = os.environ.get(ROOT_ENV) or sys.prefix
  if not os.path.exists(os.path.join(root, "include", "oneapi", "dnnl", "dnnl.hpp")):
    raise BuildError(f"no oneDNN headers under {root}/include (pip install -r requirements.txt "
                     "installs onednn-devel-cpu-gomp)")
  if not os.path.exists(os.path.join(root, "lib", "libdnnl.so.3")):
    raise BuildError(f"no {root}/lib/libdnnl.so.3 (pip install onednn-cpu-gomp==2023.2.0)")
  return root


def _command(compiler: str, root: str, out: str) -> list[str]:
  lib = os.path.join(root, "lib")
  return [compiler, *FLAGS, f"-I{jax.ffi.include_dir()}", f"-I{os.path.join(root, 'include')}",
          *SOURCES, "-o", out, f"-L{lib}", "-l:libdnnl.so.3", f"-Wl,-rpath,{lib}"]


def library_path() -> tuple[str, list[str]]:
  """Where the library for this source, jaxlib, compiler and oneDNN lives, and its build command."""
  compiler = shutil.which(os.environ.get("CXX", "g++"))
  if compiler is None:
    raise BuildError(f"no C++ compiler ({os.environ.get('CXX', 'g++')}) on PATH")
  root = _onednn_root()
  sources = []
  for name in SOURCES + HEADERS:
    with open(name, "rb") as f:
      sources.append(f.read())
  key = hashlib.sha256(b"\0".join([
      *sources, jaxlib.__version__.encode(), compiler.encode(), " ".join(FLAGS).encode(),
      os.path.realpath(root).encode()])).hexdigest()[:16]
  path = os.path.join(cache_dir(), f"cnnjax_onednn_v{VERSION}_{key}.so")
  return path, _command(compiler, root, "{out}")


def build(path: str, command: list[str]) -> None:
  """Compiles into ``path`` once, safe against concurrent processes."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path + ".lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if os.path.exists(path):  # another process built it while we waited
      return
    with files.atomic_path(path) as tmp:  # a concurrent loader never sees half a library
      proc = subprocess.run([a.replace("{out}", tmp) for a in command], capture_output=True,
                            text=True, check=False)
      if proc.returncode:
        errors = [l for l in proc.stderr.splitlines() if "error" in l] or proc.stderr.splitlines()
        raise BuildError(f"compiling {', '.join(os.path.basename(s) for s in SOURCES)} failed: "
                         f"{(errors or ['exit status %d' % proc.returncode])[0].strip()}")


def _register(lib: ctypes.CDLL) -> None:
  for name, target in TARGETS.items():
    jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(lib, _SYMBOLS[name])),
                                platform="cpu")


@functools.cache
def load() -> ctypes.CDLL | None:
  """The extension, built if needed, with its FFI targets registered; None (after one notice
  line on stderr) when it cannot be built or loaded, and None when ``CNNJAX_ONEDNN=0``."""
  if os.environ.get(SWITCH_ENV, "").strip() == "0":
    return None
  try:
    path, command = library_path()
    if not os.path.exists(path):
      build(path, command)
    try:
      lib = ctypes.CDLL(path)
    except OSError as e:
      raise BuildError(f"cannot load {path}: {e}") from None
    _register(lib)
    return lib
  except Exception as e:  # pylint: disable=broad-except  # never break a run: fall back
    print(f"cnnjax: oneDNN CPU convolutions unavailable ({e}); using XLA's own",
          file=sys.stderr)
    return None


@functools.cache
def supports_bf16() -> bool:
  lib = load()
  return bool(lib is not None and lib.cnnjax_onednn_supports_bf16())
