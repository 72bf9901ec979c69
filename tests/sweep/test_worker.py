"""Warm workers: a run's outcome is its own (an exception fails that run, the worker goes on),
a dead worker fails the run it had and the next run gets a new one; and, end to end, a sweep's
runs in warm workers end bit-identical to the same runs each in its own process."""

import io
import json
import os
import sys

import pytest

from cnnjax.sweep import env, runner, store, worker

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FAKE = os.path.join(ROOT, "tests", "sweep", "fake_worker.py")


def _main(argv):
  print("to stdout", flush=True)
  os.write(2, b"to fd 2\n")  # as XLA's C++ logs write
  if argv[1] == "raise":
    raise ValueError("a bug in this run")
  if argv[1] == "fail":
    sys.exit(3)
  if argv[1] == "message":
    sys.exit("bad")


@pytest.mark.parametrize("what,code", [("ok", 0), ("fail", 3), ("raise", 1), ("message", 1)])
def test_a_run_ends_with_the_exit_code_its_own_process_would(tmp_path, what, code):
  log = tmp_path / "log.txt"
  assert worker.run_one(_main, lambda argv: argv, ["launch.py", what], str(log)) == code
  text = log.read_text()
  assert "to stdout\n" in text and "to fd 2\n" in text
  if what == "raise":
    assert "Traceback" in text and text.rstrip().endswith("ValueError: a bug in this run")
  if what == "message":
    assert text.rstrip().endswith("bad")


def test_after_a_run_the_output_goes_where_it_went(tmp_path, capfd):
  worker.run_one(_main, lambda argv: argv, ["launch.py", "ok"], str(tmp_path / "log.txt"))
  print("after", flush=True)
  assert capfd.readouterr().out == "after\n"


def _record(tmp_path, *actions):
  trials = tuple(store.Trial(f"v={i}", 0, {"v": i}, f"{i:016d}", f"v={i}/seed=0",
                             (sys.executable, FAKE, action))
                 for i, action in enumerate(actions))
  return store.SweepRecord(trials=trials, variants={t.variant: {"v": i}
                                                    for i, t in enumerate(trials)},
                           metric="eval/top1", baseline="v=0", base_hash="b" * 16, config="x.py")


@pytest.mark.e2e  # starts the (fake, JAX-free) worker processes
def test_an_exception_fails_its_run_and_a_killed_worker_is_replaced(tmp_path):
  record = _record(tmp_path, "ok", "boom", "exit3", "die", "ok")
  stream = io.StringIO()
  code = runner.run(str(tmp_path), record, [env.Slot({}, None, "test")], retries=0,
                    stream=stream, warm=True)
  assert code == 3, stream.getvalue()
  status = {t.workdir: store.read_result(t.run_dir(str(tmp_path))) for t in record.trials}
  assert [r.status for r in status.values()] == ["done", "failed", "failed", "failed", "done"]
  assert status["v=1/seed=0"].error == "RuntimeError: boom in the run"
  assert status["v=2/seed=0"].error == "error: a failed run"
  assert status["v=3/seed=0"].exit_code == -9
  assert "worker process running this run died (killed by SIGKILL)" in status["v=3/seed=0"].error

  def pid(i):
    log = open(os.path.join(record.trials[i].run_dir(str(tmp_path)), store.LOG)).read()
    return next(line for line in log.splitlines() if line.startswith("pid "))

  assert pid(0) == pid(1) == pid(2) == pid(3) != pid(4)  # one warm worker, then a new one
  workers = open(tmp_path / worker.WORKERS_DIR / "0.log").read()
  assert workers.count("=== worker started") == 2
