"""Transparent huge pages for XLA's buffers: glibc's ``malloc`` tunable, set by restarting once.

XLA:CPU allocates each step's activations with ``malloc``; glibc serves buffers this large with
fresh ``mmap``'d memory, 4 KiB pages that fault in (zeroed) on every step. With the tunable
``glibc.malloc.hugetlb=1`` glibc asks the kernel for transparent huge pages (2 MiB) for them
(``madvise``), so a step's buffers fault in 512 times fewer pages (the effect per model is
measured in docs/performance.md, "Huge pages"). glibc reads tunables only when a process
starts, so ``reexec`` restarts the Python process, once, with it added to ``GLIBC_TUNABLES`` —
before anything heavy is imported, so the restart costs a Python start-up.

It does nothing where it would do nothing (not Linux, not glibc ≥ 2.35, transparent huge pages
``never`` or already ``always``), where the tunable is already set, or with
``CNNJAX_HUGEPAGES=0``. Only entry points call it (``launch.py``); importing cnnjax never
restarts anything.
"""

from __future__ import annotations

import os
import platform
import sys

ENV = "CNNJAX_HUGEPAGES"
TUNABLE = "glibc.malloc.hugetlb=1"
THP = "/sys/kernel/mm/transparent_hugepage/enabled"


def _glibc_at_least(version: tuple[int, int]) -> bool:
  libc, found = platform.libc_ver()
  try:
    return libc == "glibc" and tuple(int(p) for p in found.split(".")[:2]) >= version
  except ValueError:
    return False


def _thp_mode() -> str | None:
  """The kernel's transparent huge page mode (the bracketed word), or None if unknown."""
  try:
    with open(THP) as f:
      text = f.read()
  except OSError:
    return None
  start, end = text.find("["), text.find("]")
  return text[start + 1:end] if 0 <= start < end else None


RESTARTED = "CNNJAX_HUGEPAGES_RESTARTED"  # set before the restart: never a second one


def wanted(environ=os.environ) -> bool:
  """Whether restarting with the tunable would change anything here."""
  return (environ.get(ENV, "1").strip() != "0" and RESTARTED not in environ
          and "glibc.malloc.hugetlb" not in environ.get("GLIBC_TUNABLES", "")
          and sys.platform == "linux" and _glibc_at_least((2, 35)) and _thp_mode() == "madvise")


def environment(environ=os.environ) -> dict[str, str]:
  """``environ`` with the tunable added to ``GLIBC_TUNABLES``."""
  tunables = ":".join(t for t in (environ.get("GLIBC_TUNABLES", ""), TUNABLE) if t)
  return {**environ, "GLIBC_TUNABLES": tunables, RESTARTED: "1"}


def reexec() -> None:
  """Restarts this process with the tunable if it is ``wanted`` (the same interpreter, command
  line and environment otherwise); returns if not, or if the restart fails."""
  if not wanted():
    return
  try:
    # argv[0] is the interpreter's path, so the restart finds the same environment (venv)
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], environment())
  except OSError:
    pass
