"""The workdir: created and checked, and locked for one run at a time."""

import os
import socket
import subprocess
import sys

import pytest

from cnnjax import files
from cnnjax.errors import UserError
from cnnjax.train import workdir as workdir_lib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_prepare_creates_the_directory_and_refuses_one_it_cant_write(tmp_path):
  path = workdir_lib.prepare(str(tmp_path / "a" / "b"))
  assert os.path.isdir(path) and os.listdir(path) == []
  (tmp_path / "file").write_text("")
  with pytest.raises(UserError, match=r"^workdir '.*file/run' can't be written: "):
    workdir_lib.prepare(str(tmp_path / "file" / "run"))


def test_a_second_holder_is_refused_naming_the_first(tmp_path):
  # flock belongs to an open file description: a second open in this process conflicts too.
  workdir = str(tmp_path)
  with workdir_lib.locked(workdir):
    with files.exclusive_lock(os.path.join(workdir, files.RUN_LOCK)) as holder:
      assert holder == f"host {socket.gethostname()}, pid {os.getpid()}"
    with pytest.raises(UserError, match=(rf"^workdir '{workdir}' is in use by another run "
                                         rf"\(host .*, pid {os.getpid()}\); wait for it")):
      with workdir_lib.locked(workdir):
        pass
  with workdir_lib.locked(workdir):  # released when the block ended
    pass


@pytest.mark.e2e
def test_a_lock_held_by_another_process_goes_with_it(tmp_path):
  path = os.path.join(str(tmp_path), files.RUN_LOCK)
  holder = subprocess.Popen(
      [sys.executable, "-c", "import sys, time; from cnnjax import files\n"
       f"with files.exclusive_lock({path!r}):\n  print('held', flush=True); time.sleep(60)"],
      stdout=subprocess.PIPE, text=True, cwd=ROOT)
  try:
    assert holder.stdout.readline() == "held\n"
    with pytest.raises(UserError, match=rf"in use by another run \(host .*, pid {holder.pid}\)"):
      with workdir_lib.locked(str(tmp_path)):
        pass
  finally:
    holder.kill()
    holder.wait()
  with workdir_lib.locked(str(tmp_path)):  # kill -9 released it
    pass
