"""cnnjax.files: the atomic write, the tolerant JSON-lines reader and the exclusive lock."""

import json
import multiprocessing
import os

import pytest

from cnnjax import files


def test_write_json_replaces_the_file_whole_and_leaves_no_temporary(tmp_path):
  path = str(tmp_path / "result.json")
  files.write_json(path, {"a": 1})
  files.write_json(path, {"a": 2, "b": [1, 2]}, indent=1)
  assert files.read_json(path) == {"a": 2, "b": [1, 2]}
  assert os.listdir(tmp_path) == ["result.json"]


def test_a_failed_write_keeps_the_old_file_and_no_temporary(tmp_path):
  path = str(tmp_path / "config.json")
  files.write_json(path, {"ok": True})
  with pytest.raises(ValueError):  # NaN is not JSON: refused before anything is renamed
    files.write_json(path, {"loss": float("nan")})
  assert files.read_json(path) == {"ok": True}
  assert os.listdir(tmp_path) == ["config.json"]


def test_atomic_path_renames_only_when_the_block_succeeds(tmp_path):
  path = str(tmp_path / "lib.so")
  with pytest.raises(RuntimeError):
    with files.atomic_path(path) as tmp:
      with open(tmp, "w") as f:
        f.write("half")
      raise RuntimeError("the compiler failed")
  assert os.listdir(tmp_path) == []
  with files.atomic_path(path) as tmp:
    with open(tmp, "w") as f:
      f.write("whole")
  assert open(path).read() == "whole"


def test_read_jsonl_skips_torn_and_blank_lines(tmp_path):
  path = tmp_path / "metrics.jsonl"
  path.write_text('{"step": 1}\n\n{"step": 2, "x": 0.5}\n{"step": 3, "x"\n[1, 2]\n')
  assert files.read_jsonl(str(path)) == [{"step": 1}, {"step": 2, "x": 0.5}]
  assert files.read_jsonl(str(tmp_path / "missing.jsonl")) == []


def _hold(path, ready, release):
  with files.exclusive_lock(path) as holder:
    assert holder is None
    ready.set()
    release.wait(30)


def test_the_lock_names_its_holder_and_frees_when_it_ends(tmp_path):
  path = str(tmp_path / "run.lock")
  ctx = multiprocessing.get_context("spawn")
  ready, release = ctx.Event(), ctx.Event()
  holder = ctx.Process(target=_hold, args=(path, ready, release))
  holder.start()
  try:
    assert ready.wait(60)
    assert files.is_locked(path)
    with files.exclusive_lock(path) as taken_by:
      assert taken_by == f"host {os.uname().nodename}, pid {holder.pid}"
  finally:
    release.set()
    holder.join(30)
  assert not files.is_locked(path)
  with files.exclusive_lock(path) as taken_by:
    assert taken_by is None
  assert json.dumps(files.is_locked(str(tmp_path / "never_created.lock"))) == "false"
