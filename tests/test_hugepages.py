"""``cnnjax.hugepages``: the restart with glibc's hugetlb tunable, and that it gets huge pages."""

import os
import subprocess
import sys
import textwrap

import pytest

from cnnjax import hugepages
from tests.test_launch import ROOT

# malloc's a 64 MiB block, touches it, and reports the process's anonymous huge pages
_PROBE = """
import ctypes, os
from cnnjax import hugepages
hugepages.reexec()
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
block = libc.malloc(64 << 20)
ctypes.memset(block, 1, 64 << 20)
with open("/proc/self/smaps_rollup") as f:
  huge = next(int(l.split()[1]) for l in f if l.startswith("AnonHugePages:"))
print(os.environ.get("GLIBC_TUNABLES", ""), huge)
"""


def _probe(**env):
  env = {**os.environ, "PYTHONPATH": ROOT, **env}
  env.pop("GLIBC_TUNABLES", None)
  env.pop(hugepages.RESTARTED, None)
  out = subprocess.run([sys.executable, "-c", textwrap.dedent(_PROBE)], env=env, cwd=ROOT,
                       capture_output=True, text=True, timeout=60, check=True).stdout.split()
  return (out[0] if len(out) > 1 else ""), int(out[-1])


def test_the_tunable_is_added_once_and_keeps_the_others():
  assert hugepages.environment({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"})[
      "GLIBC_TUNABLES"] == "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"
  assert hugepages.environment({})["GLIBC_TUNABLES"] == "glibc.malloc.hugetlb=1"
  assert not hugepages.wanted({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"})
  # glibc drops tunables for setuid programs: the marker alone prevents a second restart
  assert not hugepages.wanted({hugepages.RESTARTED: "1"})
  assert not hugepages.wanted({hugepages.ENV: "0"})


@pytest.mark.skipif(not hugepages.wanted({}), reason="no glibc >= 2.35 with THP in madvise mode")
@pytest.mark.e2e
def test_the_restart_gives_malloc_huge_pages():
  tunables, huge_kib = _probe()
  assert tunables == hugepages.TUNABLE and huge_kib >= 2048
  tunables, huge_kib = _probe(**{hugepages.ENV: "0"})
  assert tunables == "" and huge_kib == 0
